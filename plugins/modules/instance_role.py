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
  - The role's permissions follow the instance's life. At O(stage=launch) it may read its own
    volume key and the bootstrap objects it needs to configure itself (for example the Chef
    validator); at O(stage=production) it may read its own key object and nothing else;
    O(stage=absent) removes it.
  - The module owns the role. At O(stage=launch) and O(stage=production) it writes one inline
    policy (named C(cloudefigo-instance)), removes every other inline policy and detaches every
    managed policy, so the returned RV(policy) is exactly what the role may do (within
    O(permissions_boundary)).
  - The trust policy lets only C(ec2.amazonaws.com) assume the role.
  - Unlike the original Cloudefigo launch policy, no stage grants C(iam:*), C(iam:PassRole), or
    wildcard or write actions on every resource; O(extra_statements) that would do so are refused
    (see O(allow_privileged_statements)).
  - IAM is eventually consistent; calls made right after a role or profile is created are retried
    while IAM still answers C(NoSuchEntity), and after adding the role to the instance profile the
    module waits (up to 60 seconds) until IAM reads the profile back with the role in it. EC2 may
    still need a few more seconds before it accepts a brand-new profile in C(RunInstances); retry
    that call (as C(amazon.aws.ec2_instance) users do with C(retries)/C(until)).
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
        instance profiles, deletes the instance profile and the role. Already absent is not an error.
    type: str
    choices: [launch, production, absent]
    default: launch
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
  bootstrap_objects:
    description:
      - S3 objects the instance may read at O(stage=launch) only, for example the Chef validator key.
      - Each item is either a string C(bucket/key) (split at the first C(/)) or a dictionary with
        C(bucket) and C(key).
      - Wildcards (C(*), C(?)) are refused, because a pattern could cover other instances' objects.
      - Ignored at O(stage=production).
    type: list
    elements: raw
    default: []
  instance_id:
    description:
      - The EC2 instance ID once it is known (C(i-...)).
      - When set, every statement the module generates carries the condition
        C(ArnEquals ec2:SourceInstanceARN = arn:PARTITION:ec2:REGION:ACCOUNT:instance/ID), so the
        role's credentials read the key only when they are used by that instance. The account comes
        from C(sts:GetCallerIdentity), the region from O(region).
      - Without it at O(stage=production) the module warns.
    type: str
  extra_statements:
    description:
      - Further IAM policy statements (dictionaries) appended to the generated policy at
        O(stage=launch) and O(stage=production).
      - Refused, unless O(allow_privileged_statements=true), when an C(Allow) statement uses
        C(NotAction) or C(NotResource); grants any C(iam:) action (C(iam:*), C(iam:PassRole), C(*), ...);
        grants on every resource (C(*), C(arn:aws:s3:::*), ...) an action whose name does not start
        with C(Describe), C(Get) or C(List) (so C(ec2:*) or C(s3:PutObject) on C(*)); or lets the role
        read (C(s3:GetObject), C(s3:GetObjectVersion)) any object of O(key_bucket) other than
        O(key_object), that is other instances' keys; or lets the role write or delete any object
        of O(key_bucket), its own key included (that would overwrite or crypto-shred a volume key).
      - C(Deny) statements are always accepted.
      - Sids C(ReadOwnVolumeKey) and C(ReadBootstrapObjects) are reserved.
    type: list
    elements: dict
    default: []
  allow_privileged_statements:
    description:
      - Accept O(extra_statements) that the checks described there refuse; the module then warns
        instead of failing. Use only when you know why an instance needs more.
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
        so a different path on an existing role is an error.
    type: str
    default: /
  tags:
    description:
      - Tags for the role and the instance profile. When omitted, tags are not managed.
    type: dict
  purge_tags:
    description:
      - Remove tags not listed in O(tags). Has no effect when O(tags) is omitted.
    type: bool
    default: true
attributes:
  check_mode:
    description: In check mode nothing is changed; the result shows what would be.
    support: full
  diff_mode:
    description: Shows the role's policy, tags, trust policy and instance profile before and after.
    support: full
notes:
  - Policy documents and tags are compared semantically, so a second run with the same options
    reports no change.
  - Requires C(iam:GetRole), C(iam:CreateRole), C(iam:DeleteRole), C(iam:PutRolePolicy),
    C(iam:GetRolePolicy), C(iam:DeleteRolePolicy), C(iam:ListRolePolicies),
    C(iam:ListAttachedRolePolicies), C(iam:DetachRolePolicy), C(iam:UpdateAssumeRolePolicy),
    C(iam:TagRole), C(iam:UntagRole), C(iam:ListRoleTags), C(iam:PutRolePermissionsBoundary),
    the C(iam:*InstanceProfile*) actions for the profile, and C(sts:GetCallerIdentity).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Create the launch-stage role before the instance exists
  cloudefigo.core.instance_role:
    name: web-01
    stage: launch
    key_bucket: cloudefigo-keys
    key_object: volumes/web-01.key
    bootstrap_objects:
      - cloudefigo-bootstrap/chef/validator.pem
      - bucket: cloudefigo-bootstrap
        key: chef/client.rb
    tags:
      Project: cloudefigo
  register: web_role

- name: Bind the key to the instance and drop bootstrap access once it is configured
  cloudefigo.core.instance_role:
    name: web-01
    stage: production
    key_bucket: cloudefigo-keys
    key_object: volumes/web-01.key
    instance_id: i-0123456789abcdef0
    tags:
      Project: cloudefigo

- name: Remove the role and its instance profile when the instance is terminated
  cloudefigo.core.instance_role:
    name: web-01
    stage: absent
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
  sample: arn:aws:iam::123456789012:role/web-01
instance_profile_arn:
  description:
    - ARN of the instance profile (to pass to C(amazon.aws.ec2_instance) as C(iam_instance_profile)).
      Null with O(stage=absent), and in check mode when the profile would be created.
  returned: always
  type: str
  sample: arn:aws:iam::123456789012:instance-profile/web-01
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
tags:
  description: Tags of the role. Empty with O(stage=absent).
  returned: always
  type: dict
  sample:
    Project: cloudefigo
"""

import copy
import json
import re
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
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import partition_for_region
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_key_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict

POLICY_NAME = "cloudefigo-instance"
KEY_SID = "ReadOwnVolumeKey"
BOOTSTRAP_SID = "ReadBootstrapObjects"
RESERVED_SIDS = (KEY_SID, BOOTSTRAP_SID)
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"},
            "Action": "sts:AssumeRole",
        }
    ],
}
ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
READ_ONLY_PREFIXES = ("describe", "get", "list")
# An object in the key bucket that is not this instance's key: a resource pattern matching it
# would let the instance read other instances' keys.
OTHER_KEY_SENTINEL = "cloudefigo-other-instance/volume.key"
KEY_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")

# IAM answers NoSuchEntity for a while after a role or profile is created.
retry_new_entity = AWSRetry.jittered_backoff(retries=12, delay=1, catch_extra_error_codes=["NoSuchEntity"])


class ValidationError(Exception):
    """Bad module input; the message names the option."""


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _iam_pattern_match(pattern, value, ignore_case):
    """IAM wildcard matching: `*` any run of characters, `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(pattern))
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def _action_may_be_of(action, service):
    """Whether an action pattern (`iam:Pass*`, `*`, `s?:Put*`) can name an action of a service."""
    prefix = action.split(":", 1)[0] if ":" in action else action
    return _iam_pattern_match(prefix, service, ignore_case=True)


def _action_is_read_only(action):
    if ":" not in action:
        return False
    name = action.split(":", 1)[1].lower()
    return name.startswith(READ_ONLY_PREFIXES)


def _resource_is_everything(resource):
    """`*`, or an ARN whose service part has a wildcard or whose resource part is only wildcards
    and separators (arn:aws:s3:::*, and arn:aws:s3:::*/* which is every object of every bucket)."""
    if resource.strip() == "*":
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6:
        return "*" in resource
    return "*" in parts[2] or re.fullmatch(r"[*?/:]*", parts[5].strip()) is not None


def s3_object_arn(partition, bucket, key):
    return "arn:%s:s3:::%s/%s" % (partition, bucket, key)


def parse_bootstrap_objects(items):
    """[str 'bucket/key' | {bucket, key}] -> sorted list of (bucket, key); raises ValidationError."""
    parsed = []
    for index, item in enumerate(items or []):
        where = "bootstrap_objects[%d]" % index
        if isinstance(item, dict):
            unknown = set(item) - {"bucket", "key"}
            if unknown:
                raise ValidationError("%s: unknown field(s) %s; use bucket and key" % (where, ", ".join(sorted(unknown))))
            bucket, key = item.get("bucket"), item.get("key")
        elif isinstance(item, str):
            bucket, sep, key = item.partition("/")
            if not sep:
                raise ValidationError("%s: %r is not 'bucket/key'" % (where, item))
        else:
            raise ValidationError("%s: expected a 'bucket/key' string or a dictionary with bucket and key" % where)
        bucket = "" if bucket is None else str(bucket)
        key = "" if key is None else str(key)
        problem = s3_bucket_name_problem(bucket)
        if problem:
            raise ValidationError("%s: bucket %r is not a valid S3 bucket name: %s" % (where, bucket, problem))
        problem = s3_key_problem(key)
        if problem:
            raise ValidationError("%s: key is not usable: %s" % (where, problem))
        if "*" in key or "?" in key:
            raise ValidationError("%s: wildcards are not allowed in %r; name each object" % (where, key))
        parsed.append((bucket, key))
    return sorted(set(parsed))


def _covers_other_key(resource, partition, key_bucket, key_object):
    """Whether a resource pattern covers an object of the key bucket other than this instance's key."""
    if _iam_pattern_match(resource, s3_object_arn(partition, key_bucket, OTHER_KEY_SENTINEL), ignore_case=False):
        return True
    parts = resource.split(":", 5)
    if len(parts) < 6 or not _iam_pattern_match(parts[2], "s3", ignore_case=False):
        return False
    bucket, _sep, key = parts[5].partition("/")
    if not _iam_pattern_match(bucket, key_bucket, ignore_case=False):
        return False
    return "*" in key or "?" in key or key != key_object


def statement_problems(statement, partition, key_bucket, key_object=None):
    """Why an extra statement would give an instance more than it should have (list of strings)."""
    if statement.get("Effect") != "Allow":
        return []
    problems = []
    if "NotAction" in statement or "NotResource" in statement:
        problems.append("Allow with NotAction or NotResource grants more than it names")
    actions = [str(a) for a in _as_list(statement.get("Action"))]
    resources = [str(r) for r in _as_list(statement.get("Resource"))]
    iam_actions = [a for a in actions if _action_may_be_of(a, "iam")]
    if iam_actions:
        problems.append("grants IAM actions (%s): an instance could pass or create roles and escalate" % ", ".join(iam_actions))
    if any(_resource_is_everything(r) for r in resources):
        broad = [a for a in actions if a not in iam_actions and not _action_is_read_only(a)]
        if broad:
            problems.append("grants wildcard or write actions (%s) on every resource" % ", ".join(broad))
    if key_bucket and any(_iam_pattern_match(a, read, ignore_case=True) for a in actions for read in KEY_READ_ACTIONS):
        if any(_covers_other_key(r, partition, key_bucket, key_object) for r in resources):
            problems.append("lets the instance read other objects of key_bucket %s (other instances' keys)" % key_bucket)
    if key_bucket:
        # a write or delete in the key bucket overwrites or crypto-shreds a key (its own or another
        # instance's), destroying the data that key protects
        writes = [a for a in actions if not _action_is_read_only(a) and _action_may_be_of(a, "s3")]
        if writes and any(_covers_key_bucket(r, partition, key_bucket, key_object) for r in resources):
            problems.append("lets the instance write or delete objects of key_bucket %s (%s): that destroys volume keys"
                            % (key_bucket, ", ".join(writes)))
    return problems


def _covers_key_bucket(resource, partition, key_bucket, key_object):
    """Whether a resource pattern covers any object of the key bucket, this instance's key included."""
    own = key_object or OTHER_KEY_SENTINEL
    return (_iam_pattern_match(resource, s3_object_arn(partition, key_bucket, own), ignore_case=False)
            or _covers_other_key(resource, partition, key_bucket, key_object))


def validate_extra_statements(statements, partition, key_bucket, allow_privileged, key_object=None):
    """Raises ValidationError for malformed or (unless allowed) privileged statements; returns warnings."""
    warnings = []
    for index, statement in enumerate(statements or []):
        where = "extra_statements[%d]" % index
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise ValidationError("%s: Effect must be Allow or Deny" % where)
        if "Action" not in statement and "NotAction" not in statement:
            raise ValidationError("%s: needs Action or NotAction" % where)
        if "Resource" not in statement and "NotResource" not in statement:
            raise ValidationError("%s: needs Resource or NotResource" % where)
        if statement.get("Sid") in RESERVED_SIDS:
            raise ValidationError("%s: Sid %s is reserved for the statements the module generates" % (where, statement["Sid"]))
        for problem in statement_problems(statement, partition, key_bucket, key_object):
            message = "%s %s" % (where, problem)
            if not allow_privileged:
                raise ValidationError(message + "; refused (set allow_privileged_statements=true to override)")
            warnings.append(message + "; accepted because allow_privileged_statements=true")
    return warnings


def build_policy(stage, partition, key_bucket, key_object, bootstrap_objects=None, instance_arn=None, extra_statements=None):
    """The inline policy document for a stage (launch or production)."""
    condition = {"ArnEquals": {"ec2:SourceInstanceARN": instance_arn}} if instance_arn else None
    statements = [{"Sid": KEY_SID, "Effect": "Allow", "Action": "s3:GetObject", "Resource": s3_object_arn(partition, key_bucket, key_object)}]
    if stage == "launch" and bootstrap_objects:
        statements.append(
            {
                "Sid": BOOTSTRAP_SID,
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": [s3_object_arn(partition, bucket, key) for bucket, key in bootstrap_objects],
            }
        )
    if condition:
        for statement in statements:
            statement["Condition"] = copy.deepcopy(condition)
    statements.extend(copy.deepcopy(extra_statements or []))
    return {"Version": "2012-10-17", "Statement": statements}


def validate(params, partition="aws"):
    """Checks that need no AWS call; returns (bootstrap_objects as tuples, warnings)."""
    name = params["name"]
    if not ROLE_NAME_RE.match(name or ""):
        raise ValidationError("name %r is not a valid IAM role name: use at most 64 letters, digits and +=,.@_-" % name)
    stage = params["stage"]
    if stage not in ("launch", "production", "absent"):  # AnsibleModule's choices check runs first; kept for direct callers
        raise ValidationError("stage must be one of launch, production, absent, got %r" % stage)
    if stage == "absent":
        return [], []
    for option in ("key_bucket", "key_object"):
        if params.get(option) is None:
            raise ValidationError("stage=%s needs %s (the instance's volume key location)" % (stage, option))
    problem = s3_bucket_name_problem(params["key_bucket"])
    if problem:
        raise ValidationError("key_bucket %r is not a valid S3 bucket name: %s" % (params["key_bucket"], problem))
    problem = s3_key_problem(params["key_object"])
    if problem:
        raise ValidationError("key_object is not usable: %s" % problem)
    if "*" in params["key_object"] or "?" in params["key_object"]:
        raise ValidationError("key_object must name one object; wildcards are not allowed")
    if params.get("instance_id") is not None and not INSTANCE_ID_RE.match(params["instance_id"]):
        raise ValidationError("instance_id %r is not an EC2 instance ID (i- followed by 8 or 17 hex digits)" % params["instance_id"])
    boundary = params.get("permissions_boundary")
    if boundary is not None and not re.match(r"^arn:[\w-]+:iam::(\d{12}|aws):policy/", boundary):
        raise ValidationError("permissions_boundary must be the ARN of a managed policy (arn:aws:iam::ACCOUNT:policy/NAME)")
    path = params.get("path") or "/"
    if not re.match(r"^/([\x21-\x7e]*/)?$", path):
        raise ValidationError("path must begin and end with / (for example /cloudefigo/)")
    bootstrap = parse_bootstrap_objects(params.get("bootstrap_objects"))
    warnings = validate_extra_statements(
        params.get("extra_statements"), partition, params["key_bucket"], params.get("allow_privileged_statements"), params["key_object"]
    )
    if stage == "production" and not params.get("instance_id"):
        warnings.append("stage=production without instance_id: the key is not bound to one instance (ec2:SourceInstanceARN)")
    return bootstrap, warnings


class InstanceRole:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.name = module.params["name"]
        self.iam = retrying_client(module, "iam")
        self.changed = False
        self.before = {}
        self.after = {}

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
            "other_inline_policies": sorted(p for p in inline if p != POLICY_NAME),
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
            "roles": sorted(r["RoleName"] for r in profile.get("Roles", [])),
            # GetInstanceProfile answers the tags (moto lacks ListInstanceProfileTags)
            "tags": tag_dict(profile.get("Tags")),
        }

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

    def sync_tags(self, current, kind, **ident):
        wanted = self.params.get("tags")
        if wanted is None:
            return current
        wanted = {k: str(v) for k, v in wanted.items()}
        to_set, to_unset = compare_aws_tags(current, wanted, purge_tags=self.params["purge_tags"])
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
        path = params["path"] or "/"
        role = self.get_role()
        if role is None and params["stage"] == "production":
            self.module.fail_json(
                msg="missing instance role for production: role %s does not exist; run stage=launch first "
                "(production only narrows an existing instance's role)" % self.name
            )
        before = self.role_state(role) if role else {}
        if role and before["path"] != path:
            self.module.fail_json(
                msg="path: role %s exists with path %s, not %s; IAM cannot move a role (stage=absent, then create it again)"
                % (self.name, before["path"], path)
            )
        profile = self.get_profile()
        profile_before = self.profile_state(profile)
        self.before = {"role": copy.deepcopy(before), "instance_profile": copy.deepcopy(profile_before)}

        after = copy.deepcopy(before)
        if role is None:
            create = {
                "RoleName": self.name,
                "Path": path,
                "AssumeRolePolicyDocument": _json(TRUST_POLICY),
                "Description": "cloudefigo.core per-instance role",
            }
            if params.get("tags"):
                create["Tags"] = boto3_tags(params["tags"])
            if params.get("permissions_boundary"):
                create["PermissionsBoundary"] = params["permissions_boundary"]
            created = self.call("create role %s" % self.name, "create_role", **create)
            after = {
                "role_arn": created["Role"]["Arn"] if created else None,
                "path": path,
                "policy": {},
                "other_inline_policies": [],
                "managed_policies": [],
                "trust_policy": copy.deepcopy(TRUST_POLICY),
                "permissions_boundary": params.get("permissions_boundary"),
                "tags": {k: str(v) for k, v in (params.get("tags") or {}).items()},
            }
        else:
            if compare_policies(before["trust_policy"], TRUST_POLICY):
                self.call("update the trust policy of %s" % self.name, "update_assume_role_policy", RoleName=self.name, PolicyDocument=_json(TRUST_POLICY))
                after["trust_policy"] = copy.deepcopy(TRUST_POLICY)
            boundary = params.get("permissions_boundary")
            if boundary and boundary != before["permissions_boundary"]:
                self.call("set the permissions boundary of %s" % self.name, "put_role_permissions_boundary", RoleName=self.name, PermissionsBoundary=boundary)
                after["permissions_boundary"] = boundary
            after["tags"] = self.sync_tags(before["tags"], "role", RoleName=self.name)

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
            create = {"InstanceProfileName": self.name, "Path": path}
            if params.get("tags"):
                create["Tags"] = boto3_tags(params["tags"])
            created = self.call("create instance profile %s" % self.name, "create_instance_profile", **create)
            profile_after = {
                "arn": created["InstanceProfile"]["Arn"] if created else None,
                "roles": [],
                "tags": {k: str(v) for k, v in (params.get("tags") or {}).items()},
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
        return {
            "role_arn": after["role_arn"],
            "instance_profile_arn": profile_after["arn"],
            "policy": policy,
            "trust_policy": after["trust_policy"],
            "tags": after["tags"],
        }

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
        self.before = {"role": copy.deepcopy(before), "instance_profile": self.profile_state(profile)}
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
        }


def _json(document):
    return json.dumps(document, sort_keys=True)


def main():
    argument_spec = dict(
        name=dict(type="str", required=True),
        stage=dict(type="str", default="launch", choices=["launch", "production", "absent"]),
        key_bucket=dict(type="str", no_log=False),
        key_object=dict(type="str", no_log=False),
        bootstrap_objects=dict(type="list", elements="raw", default=[]),
        instance_id=dict(type="str"),
        extra_statements=dict(type="list", elements="dict", default=[]),
        allow_privileged_statements=dict(type="bool", default=False),
        permissions_boundary=dict(type="str"),
        path=dict(type="str", default="/"),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params

    try:
        bootstrap, warnings = validate(params, partition_for_region(module.region))
    except ValidationError as e:
        module.fail_json(msg=str(e))

    stage = params["stage"]
    manager = InstanceRole(module)
    if stage == "absent":
        result = manager.absent()
    else:
        account_id, partition = get_aws_account_info(module)
        instance_arn = None
        if params.get("instance_id"):
            if not module.region:
                module.fail_json(msg="instance_id needs region (the instance's region, for its ARN)")
            instance_arn = "arn:%s:ec2:%s:%s:instance/%s" % (partition, module.region, account_id, params["instance_id"])
        policy = build_policy(stage, partition, params["key_bucket"], params["key_object"], bootstrap, instance_arn, params["extra_statements"])
        result = manager.present(policy)

    for warning in warnings:
        module.warn(warning)
    result.update(changed=manager.changed, role_name=manager.name, stage=stage, policy_name=POLICY_NAME)
    if module._diff:
        result["diff"] = {"before": manager.before, "after": manager.after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
