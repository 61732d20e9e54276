#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: volume_key
short_description: A random volume (LUKS) key held in S3, owned by one instance, readable by it only, crypto-shredded on request
version_added: 0.1.0
description:
  - With O(state=present), makes sure O(bucket) is fit to hold keys (see below) and creates a random
    key of O(key_bytes) bytes at O(object) only if no object exists there. An existing key is never
    overwritten, because that would destroy the data it protects; the upload is conditional
    (C(If-None-Match) C(*)), so two concurrent runs cannot both write.
  - The key is generated on the managed node from the operating system's CSPRNG and sent straight
    to S3. The module never reads the key back (it never even reads the object's metadata; the
    bucket policy forbids that to everyone but the instance) and never returns it.
  - B(Ownership.) The key object carries the marks C(cloudefigo:instance-id), C(cloudefigo:launch-id)
    and C(cloudefigo:instance-arn) from its creation. A key whose marks name another instance or
    launch is never adopted, re-tagged, rewritten or deleted; the module fails naming the owner.
    A key without marks (made by 0.1.0 or by hand) is taken over only with O(adopt_instance_id).
  - B(The bucket defends itself.) The bucket is created if missing and kept with versioning, default
    encryption SSE-KMS with a dedicated KMS key (alias C(alias/cloudefigo/volume-keys/<bucket>),
    created once and reused, its key policy naming O(controller_principals)) or O(kms_key_id), all
    four public access blocks, ACLs disabled (C(BucketOwnerEnforced)), and a bucket policy whose
    statements (Sids C(Cloudefigo*); other statements are kept) deny reading a key object to every
    request that does not come from the instance named by the object's C(cloudefigo:instance-arn)
    tag (C(${ec2:SourceInstanceARN})), or comes without any instance, or with IMDSv1-delivered
    credentials; deny everything else (write, delete, tag, list, administer) to all but
    O(controller_principals); and deny requests without TLS. The policy is written before any key.
  - A bucket with replication or S3 Object Lock is refused; a replica or a retained version is a
    copy of the key that O(state=absent) cannot shred (see C(docs/key-custody.md)).
  - Every S3 request carries C(ExpectedBucketOwner) (O(expected_bucket_owner)), except CreateBucket,
    which has no such parameter (a bucket it creates is the caller's).
  - With O(state=bucket), only makes sure O(bucket) is fit to hold keys (the bucket, its settings, its
    policy and its dedicated KMS key with its alias, as above) and returns RV(kms_key_arn); no key
    object is read or written. A batch of launches runs it once before creating the keys of its
    instances (passing RV(kms_key_arn) on as their O(kms_key_id)), so concurrent first runs never
    race to create the bucket's KMS key.
  - With O(launch_record) (O(state=present) only), the same run also writes the launch record of the
    instance (what M(cloudefigo.core.launch_record) writes) in O(bucket), naming the key it just made,
    right after the key. The record is planned (read, merged, checked) before anything is written, so a
    refusal of either the key or the record leaves both as they were.
  - With O(state=absent), deletes every version and every delete marker of exactly O(object)
    (crypto-shred), after checking that every version is marked for O(instance_id) (and
    O(launch_id) when given); objects whose keys merely start with O(object) are not touched. Any
    error while looking the key up stops the module; it is never taken for "no key". The bucket,
    its settings and the KMS key are left alone.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  bucket:
    description:
      - Name of the S3 bucket that holds the keys. Must follow the S3 bucket naming rules.
    type: str
    required: true
  object:
    description:
      - Object key of this volume's key in O(bucket), for example C(volumes/web-01.key).
      - Required with O(state=present) and O(state=absent); refused with O(state=bucket).
    type: str
  state:
    description:
      - V(present) creates the key if it does not exist yet.
      - V(absent) deletes every version and delete marker of the object.
      - V(bucket) (added in 0.2.0) only makes sure the bucket, its policy and its KMS key are ready
        (no key object is touched) and returns RV(kms_key_arn).
    type: str
    choices: [present, absent, bucket]
    default: present
  instance_id:
    version_added: 0.2.0
    description:
      - The EC2 instance the key belongs to (C(i-...)). Written as the C(cloudefigo:instance-id) mark
        and, as the instance's ARN, as the C(cloudefigo:instance-arn) tag the bucket policy compares
        with C(${ec2:SourceInstanceARN}).
      - Required with O(state=present) and O(state=absent); refused with O(state=bucket).
    type: str
  launch_id:
    version_added: 0.2.0
    description:
      - The launch that owns the key. Required with O(state=present) (written as the
        C(cloudefigo:launch-id) mark); with O(state=absent) compared when given.
    type: str
  adopt_instance_id:
    version_added: 0.2.0
    description:
      - Explicit adoption of a key made by 0.1.0 (or by hand) that carries no ownership marks, or
        carries the instance mark without a launch id. Must equal O(instance_id). The module then
        writes the marks. Without it such a key is refused.
      - Until a 0.1.0 key is adopted its instance cannot read it any more; the bucket policy lets an
        instance read only objects tagged with its ARN.
    type: str
  key_bytes:
    description:
      - Length of a new key in bytes; at least 32 (256 bits), at most 8192 (cryptsetup's key file
        limit is far above that).
      - Only used when the key is created; an existing key keeps its length (the module warns when
        it differs).
    type: int
    default: 64
  kms_key_id:
    description:
      - KMS key (ID, ARN or alias) for SSE-KMS of the key objects and the bucket's default
        encryption. Its key policy is not managed; it must let the instance roles decrypt through S3.
      - When omitted, a dedicated KMS key is created for the bucket (once; found again by its alias
        C(alias/cloudefigo/volume-keys/<bucket>), dots in the bucket name become C(_)) and its key
        policy is kept; O(controller_principals) administer it and encrypt through S3, and the account
        may grant C(kms:Decrypt) through S3 for objects of this bucket only. An alias that names a key
        not tagged C(cloudefigo:key-bucket=<bucket>) is refused.
    type: str
  controller_principals:
    version_added: 0.2.0
    description:
      - IAM role or user ARNs (with their path) that may write, delete, tag, list and administer the
        key bucket and administer its KMS key. Everyone else is denied all of it by the bucket policy.
      - Defaults to the caller (for an assumed role, the role's ARN, read with C(iam:GetRole)). Must
        include the caller, or the run would lock itself out.
      - Name a break-glass role too; only these principals (and the account's root user) can change
        the bucket policy, and only these can administer the dedicated KMS key.
    type: list
    elements: str
  expected_bucket_owner:
    version_added: 0.2.0
    description:
      - Account id that must own O(bucket); sent as C(ExpectedBucketOwner) with every S3 request, so a
        bucket of the same name in another account is never written to or read from.
      - Defaults to the caller's account.
    type: str
  tags:
    description:
      - Tags of the key object. When omitted, tags other than the ownership marks are not managed.
      - The marks C(cloudefigo:instance-id), C(cloudefigo:launch-id) and C(cloudefigo:instance-arn)
        are reserved; they cannot be set (to another value) here, and are never purged.
    type: dict
  purge_tags:
    description:
      - Remove object tags not listed in O(tags) (never the ownership marks). Has no effect when
        O(tags) is omitted.
    type: bool
    default: true
  launch_record:
    version_added: 0.2.0
    description:
      - Also write the launch record of O(instance_id), as M(cloudefigo.core.launch_record) with
        O(cloudefigo.core.launch_record#module:state=present) would, in the same run (one module call
        per instance instead of two). Omitted (the default), no record is read or written.
      - The record's bucket, instance, launch and key object are this module's O(bucket), O(instance_id),
        O(launch_id) and O(object); they cannot be set here, so the record can never name another key
        than the one this call made (or found, marked for this instance and launch).
      - The record is written only after the key is made or found to be this instance's and launch's; when
        the key is refused (it belongs to another instance or launch), no record is written. A record of
        the same instance naming another launch is never overwritten (the module fails before writing
        anything); the recorded data volumes only ever grow.
      - Only with O(state=present); refused with O(state=absent) and O(state=bucket) (the record is
        removed by M(cloudefigo.core.launch_record) with O(cloudefigo.core.launch_record#module:state=absent)).
      - The record's account is the caller's, its owner check O(expected_bucket_owner).
    type: dict
    suboptions:
      prefix:
        description: Key prefix of the records in O(bucket); the record is C(<prefix><instance_region>/<instance_id>).
        type: str
        default: cloudefigo-records/
      role_name:
        description: Name of the instance role the launch makes.
        type: str
      instance_profile_name:
        description: Name of the instance profile; default O(launch_record.role_name).
        type: str
      volume_ids:
        description: Data volumes of the instance (added to those already recorded).
        type: list
        elements: str
        default: []
      chef_node:
        description: Name of the Chef node and of its API client.
        type: str
      instance_region:
        description: Region of the instance; default the module's O(region).
        type: str
  omit_conditioned_denies:
    version_added: 0.2.0
    description:
      - B(Lab switch.) Leaves every conditioned C(Deny) statement out of the bucket policy (and
        removes the module's own from it). moto applies a bucket policy's Deny statements without
        evaluating their conditions, so they would refuse every object request in the lab.
      - Accepted only together with a custom C(endpoint_url). Never use it on AWS; those statements
        are what keep the keys to their instances.
    type: bool
    default: false
  deny_insecure_transport:
    description:
      - Deprecated, removed in 0.3.0; use O(omit_conditioned_denies).
      - V(false) is taken as O(omit_conditioned_denies=true) (same conditions); V(true) changes
        nothing (the TLS statement is always written).
    type: bool
attributes:
  check_mode:
    description:
      - In check mode nothing is changed; no key is generated; no KMS key is created (with O(state=bucket) too);
        no launch record is written (RV(launch_record) says what would be).
    support: full
  diff_mode:
    description:
      - Shows the bucket settings, the bucket policy and the key's version and tags (never its bytes) before and after.
      - With O(launch_record), the record's fields too (the C(launch_record) part of the diff).
    support: full
notes:
  - A key object whose current version is a delete marker does not exist; O(state=present) then
    writes a new key (older versions stay, and the module warns) if the newest older version is
    this instance's. Use O(state=absent) to shred all of them.
  - The key's bytes never appear in the module's result, diff or logs.
  - The instances read their keys with their own role (C(cloudefigo.core.instance_role) grants
    C(s3:GetObject) on the object and C(kms:Decrypt) through S3 on RV(kms_key_arn)).
  - See C(docs/key-custody.md) for the threat model.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Make sure web-01's instance has a volume key
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    object: volumes/web-01.key
    instance_id: i-0123456789abcdef0
    launch_id: "{{ launch_id }}"
    controller_principals:
      - arn:aws:iam::123456789012:role/cloudefigo-controller
      - arn:aws:iam::123456789012:role/break-glass
  register: web_key

- name: Make web-01's volume key and record the launch in the same call
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    object: volumes/web-01.key
    instance_id: i-0123456789abcdef0
    launch_id: "{{ launch_id }}"
    launch_record:
      role_name: cloudefigo-web-01
      volume_ids: [vol-0123456789abcdef0]
      chef_node: web-01
  register: web_key_and_record

- name: Adopt a key made by cloudefigo.core 0.1.0 (no ownership marks)
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    object: volumes/db-01.key
    instance_id: i-0fedcba9876543210
    launch_id: adopted-2024-05
    adopt_instance_id: i-0fedcba9876543210

- name: Make sure the key bucket and its KMS key are ready, once before a batch of launches
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    state: bucket
  register: key_bucket

- name: Crypto-shred web-01's data by deleting every version of its key
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    object: volumes/web-01.key
    instance_id: i-0123456789abcdef0
    launch_id: "{{ launch_id }}"
    state: absent
"""

RETURN = r"""
created:
  description: Whether a new key was written (or would be, in check mode). Always false with O(state=bucket).
  returned: always
  type: bool
  sample: true
adopted:
  description: Whether a key without ownership marks was adopted (O(adopt_instance_id)). Always false with O(state=bucket).
  returned: always
  type: bool
  sample: false
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: cloudefigo-keys
object:
  description: The object key. Null with O(state=bucket).
  returned: always
  type: str
  sample: volumes/web-01.key
arn:
  description: ARN of the key object (for an IAM policy's C(Resource)). Null with O(state=bucket).
  returned: always
  type: str
  sample: arn:aws:s3:::cloudefigo-keys/volumes/web-01.key
version_id:
  description:
    - Version id of the key's current version. Null with O(state=absent), and in check mode when
      the key would be created, and with O(state=bucket).
  returned: always
  type: str
  sample: 3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY
size:
  description: Length of the key in bytes. Null with O(state=absent) and O(state=bucket).
  returned: always
  type: int
  sample: 64
encryption:
  description:
    - Server-side encryption S3 reported when the key was written (C(aws:kms)). Null for a key that
      already existed (its metadata is readable by its instance only).
  returned: when O(state=present)
  type: str
  sample: aws:kms
kms_key_arn:
  description:
    - ARN of the KMS key of the bucket's default encryption (the dedicated key or O(kms_key_id)),
      for C(cloudefigo.core.instance_role)'s O(cloudefigo.core.instance_role#module:kms_key_arn).
      Null in check mode when the dedicated key would be created, and with O(state=absent).
  returned: always
  type: str
  sample: arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab
expected_bucket_owner:
  description: The account every S3 request required as the bucket's owner.
  returned: always
  type: str
  sample: "123456789012"
controller_principals:
  description: The principals the bucket policy and the KMS key policy name as controllers.
  returned: when O(state=present) or O(state=bucket)
  type: list
  elements: str
  sample: [arn:aws:iam::123456789012:role/cloudefigo-controller]
tags:
  description: Tags of the key object, the ownership marks included.
  returned: when O(state=present)
  type: dict
  sample:
    cloudefigo:instance-id: i-0123456789abcdef0
    cloudefigo:launch-id: 20240501-web-01
    cloudefigo:instance-arn: arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0
deleted_versions:
  description: Number of object versions deleted (or that would be, in check mode).
  returned: when O(state=absent)
  type: int
  sample: 1
deleted_delete_markers:
  description: Number of delete markers deleted (or that would be, in check mode).
  returned: when O(state=absent)
  type: int
  sample: 0
bucket_changes:
  description: The bucket and KMS settings that were changed (or would be, in check mode).
  returned: when O(state=present) or O(state=bucket)
  type: list
  elements: str
  sample: [kms_key, created, versioning, encryption, public_access_block, policy]
kms_key_alias:
  description:
    - Alias of the bucket's dedicated KMS key (C(alias/cloudefigo/volume-keys/<bucket>)); null when
      O(kms_key_id) is given.
  returned: when O(state=bucket)
  type: str
  sample: alias/cloudefigo/volume-keys/cloudefigo-keys
  version_added: 0.2.0
launch_record:
  description:
    - The launch record after the task (what would be written, in check mode), as
      M(cloudefigo.core.launch_record) returns it in its RV(cloudefigo.core.launch_record#module:record).
  returned: when O(launch_record) is given
  type: dict
  version_added: 0.2.0
  sample:
    instance_id: i-0123456789abcdef0
    launch_id: 20240501-web-01
    region: us-east-1
    account: "123456789012"
    role_name: cloudefigo-web-01
    instance_profile_name: cloudefigo-web-01
    key_object: volumes/web-01.key
    volume_ids: [vol-0123456789abcdef0]
    chef_node: web-01
    gone_since: null
errors:
  description: The C(Errors) of S3's C(DeleteObjects) answer when versions of the key could not be deleted (the module fails).
  returned: on failure to delete the key's versions
  type: list
  elements: dict
  sample: [{"Key": "volumes/i-0123/luks.key", "VersionId": "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", "Code": "AccessDenied", "Message": "Access Denied"}]
"""

import copy
import json
import os
from urllib.parse import urlencode

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.policy import compare_policies

from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody
from ansible_collections.cloudefigo.core.plugins.module_utils import _launch_record as records
from ansible_collections.cloudefigo.core.plugins.module_utils import _reconcile as reconcile
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import partition_for_region
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_key_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict

MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 8192
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}
OWNERSHIP_CONTROLS = {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


class ValidationError(Exception):
    """Bad module input; the message names the option."""


def validate(params):
    problem = s3_bucket_name_problem(params["bucket"])
    if problem:
        raise ValidationError("bucket %r is not a valid S3 bucket name: %s" % (params["bucket"], problem))
    if params["state"] not in ("present", "absent", "bucket"):  # AnsibleModule's choices check runs first
        raise ValidationError("state must be present, absent or bucket, got %r" % params["state"])
    validate_launch_record(params)
    if params["state"] == "bucket":
        given = [name for name in ("object", "instance_id", "launch_id", "adopt_instance_id", "tags") if params.get(name) is not None]
        if given:
            raise ValidationError("%s: not used with state=bucket (it touches no key object); leave %s out"
                                  % (", ".join(given), "them" if len(given) > 1 else "it"))
        return validate_bucket(params)
    for name in ("object", "instance_id"):
        if params.get(name) is None:
            raise ValidationError("%s is required with state=%s" % (name, params["state"]))
    problem = s3_key_problem(params["object"])
    if problem:
        raise ValidationError("object is not a usable S3 object key: %s" % problem)
    key_bytes = params["key_bytes"]
    if not MIN_KEY_BYTES <= key_bytes <= MAX_KEY_BYTES:
        raise ValidationError(
            "key_bytes must be between %d and %d (a volume key needs at least 256 bits), got %d" % (MIN_KEY_BYTES, MAX_KEY_BYTES, key_bytes)
        )
    problem = custody.instance_id_problem(params.get("instance_id"))
    if problem:
        raise ValidationError("instance_id " + problem)
    if params["state"] == "present" and not params.get("launch_id"):
        raise ValidationError("launch_id is required with state=present: it marks the key as this launch's")
    if params.get("launch_id") is not None:
        problem = custody.launch_id_problem(params["launch_id"])
        if problem:
            raise ValidationError("launch_id " + problem)
    adopt = params.get("adopt_instance_id")
    if adopt is not None and adopt != params.get("instance_id"):
        raise ValidationError("adopt_instance_id (%s) must equal instance_id (%s): a key is only adopted by the instance it belongs to"
                              % (adopt, params.get("instance_id")))
    return validate_bucket(params)


def validate_launch_record(params):
    """The option launch_record: only where a key of this instance and launch is made."""
    if params.get("launch_record") is None:
        return
    if params["state"] != "present":
        raise ValidationError("launch_record: only with state=present (the record names the key this call makes); leave it out with "
                              "state=%s, and remove a record with cloudefigo.core.launch_record state=absent" % params["state"])
    for name in ("instance_id", "launch_id", "object"):
        if not params.get(name):
            raise ValidationError("launch_record needs %s: the record names this call's instance, launch and key object" % name)


def validate_bucket(params):
    """The options every state shares (the bucket's custody)."""
    if params.get("kms_key_id") is not None and not params["kms_key_id"].strip():
        raise ValidationError("kms_key_id is empty; omit it to use the bucket's dedicated KMS key")
    if params.get("expected_bucket_owner") is not None:
        problem = custody.account_problem(params["expected_bucket_owner"])
        if problem:
            raise ValidationError("expected_bucket_owner " + problem)
    for principal in params.get("controller_principals") or []:
        problem = custody.principal_problem(principal)
        if problem:
            raise ValidationError("controller_principals: " + problem)
    if params.get("controller_principals") == []:
        raise ValidationError("controller_principals is empty: omit it to use the caller, or name the controller role(s)")
    if omit_conditioned_denies(params) and not params.get("endpoint_url"):
        raise ValidationError(
            "omit_conditioned_denies (or deny_insecure_transport=false) is a lab switch for emulators such as moto and is "
            "accepted only together with a custom endpoint_url; on AWS the conditioned Deny statements are what protect the keys")
    if params.get("deny_insecure_transport") is True and params.get("omit_conditioned_denies"):
        raise ValidationError("deny_insecure_transport=true contradicts omit_conditioned_denies=true: drop deny_insecure_transport (deprecated)")


def omit_conditioned_denies(params):
    """The lab switch, or its deprecated spelling deny_insecure_transport=false."""
    return bool(params.get("omit_conditioned_denies")) or params.get("deny_insecure_transport") is False


def new_key(key_bytes):
    return os.urandom(key_bytes)


class VolumeKey:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.bucket = module.params["bucket"]
        self.key = module.params["object"]
        self.s3 = retrying_client(module, "s3")
        self.partition = partition_for_region(module.region)
        self.changed = False
        self.account = None
        self.owner = None
        self.caller = None

    @property
    def arn(self):
        if self.key is None:
            return None
        return "arn:%s:s3:::%s/%s" % (self.partition, self.bucket, self.key)

    @property
    def where(self):
        return "s3://%s/%s" % (self.bucket, self.key)

    def fail(self, error, what):
        where = "bucket %s, object %s" % (self.bucket, self.key) if self.key else "bucket %s" % self.bucket
        self.module.fail_json_aws(error, msg="Could not %s (%s)" % (what, where))

    def call(self, what, method, **kwargs):
        """One S3 read, always with ExpectedBucketOwner."""
        try:
            return getattr(self.s3, method)(ExpectedBucketOwner=self.owner, aws_retry=True, **kwargs)
        except AWS_ERRORS as e:
            self.fail(e, what)

    def write(self, what, method, client=None, **kwargs):
        """One write; nothing happens in check mode.  S3 writes carry ExpectedBucketOwner."""
        self.changed = True
        if self.module.check_mode:
            return None
        if client is None:
            client = self.s3
            kwargs["ExpectedBucketOwner"] = self.owner
        try:
            return getattr(client, method)(aws_retry=True, **kwargs)
        except AWS_ERRORS as e:
            self.fail(e, what)

    # --- who is asking -------------------------------------------------------------------------
    def identify(self):
        sts = retrying_client(self.module, "sts")
        try:
            identity = sts.get_caller_identity(aws_retry=True)
        except AWS_ERRORS as e:
            self.fail(e, "identify the caller (sts:GetCallerIdentity)")
        self.account = identity["Account"]
        self.owner = self.params.get("expected_bucket_owner") or self.account
        try:
            principal, role_name = custody.caller_principal(identity["Arn"])
        except custody.CustodyError as e:
            if self.params["state"] != "absent" and not self.params.get("controller_principals"):
                self.module.fail_json(msg=str(e))
            return
        if role_name is not None:
            iam = retrying_client(self.module, "iam")
            try:
                principal = iam.get_role(RoleName=role_name, aws_retry=True)["Role"]["Arn"]
            except AWS_ERRORS as e:
                if self.params["state"] != "absent" and not self.params.get("controller_principals"):
                    self.module.fail_json_aws(e, msg="Could not read the caller's role %s to derive controller_principals: "
                                                     "set controller_principals to its ARN (with its path)" % role_name)
                return
        self.caller = principal

    def controllers(self):
        principals = sorted(set(self.params.get("controller_principals") or [self.caller]))
        if self.caller is None or not custody.principal_covers(principals, self.caller):
            self.module.fail_json(msg="controller_principals (%s) does not include the caller (%s): the bucket policy would lock "
                                      "this run out of the key bucket. Add the caller's role to controller_principals"
                                  % (", ".join(principals), self.caller or "unknown"))
        return principals

    # --- bucket --------------------------------------------------------------------------------
    def bucket_exists(self):
        try:
            self.s3.head_bucket(Bucket=self.bucket, ExpectedBucketOwner=self.owner, aws_retry=True)
            return True
        except is_boto3_error_code(["404", "NoSuchBucket", "NotFound"]):
            return False
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "check the bucket (is it owned by account %s, expected_bucket_owner?)" % self.owner)

    def _get(self, method, missing_codes, what):
        try:
            return getattr(self.s3, method)(Bucket=self.bucket, ExpectedBucketOwner=self.owner, aws_retry=True)
        except is_boto3_error_code(missing_codes):
            return None
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "read the bucket's " + what)

    def bucket_state(self, exists):
        if not exists:
            return {"exists": False, "versioning": None, "encryption": [], "public_access_block": {}, "ownership": None, "policy": {}}
        problem = custody.copies_problem(
            (self._get("get_bucket_replication", ["ReplicationConfigurationNotFoundError"], "replication") or {}).get("ReplicationConfiguration"),
            (self._get("get_object_lock_configuration", ["ObjectLockConfigurationNotFoundError"], "object lock") or {}).get("ObjectLockConfiguration"),
        )
        if problem:
            self.module.fail_json(msg="bucket %s cannot hold volume keys: %s" % (self.bucket, problem))
        versioning = self.call("read the bucket's versioning", "get_bucket_versioning", Bucket=self.bucket)
        encryption = self._get("get_bucket_encryption", ["ServerSideEncryptionConfigurationNotFoundError"], "encryption") or {}
        pab = self._get("get_public_access_block", ["NoSuchPublicAccessBlockConfiguration"], "public access block") or {}
        ownership = self._get("get_bucket_ownership_controls", ["OwnershipControlsNotFoundError"], "ownership controls") or {}
        policy = self._get("get_bucket_policy", ["NoSuchBucketPolicy"], "policy") or {}
        rules = (ownership.get("OwnershipControls") or {}).get("Rules") or []
        return {
            "exists": True,
            "versioning": versioning.get("Status"),
            "encryption": (encryption.get("ServerSideEncryptionConfiguration") or {}).get("Rules", []),
            "public_access_block": pab.get("PublicAccessBlockConfiguration", {}),
            "ownership": rules[0].get("ObjectOwnership") if rules else None,
            "policy": json.loads(policy["Policy"]) if policy.get("Policy") else {},
        }

    def ensure_bucket(self, before, kms):
        after = copy.deepcopy(before)
        changes = []
        if not before["exists"]:
            create = {"Bucket": self.bucket, "ObjectOwnership": "BucketOwnerEnforced"}
            if self.module.region and self.module.region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": self.module.region}
            # CreateBucket is the one S3 call without ExpectedBucketOwner: the new bucket is the caller's
            self.changed = True
            if not self.module.check_mode:
                try:
                    self.s3.create_bucket(aws_retry=True, **create)
                except AWS_ERRORS as e:
                    self.fail(e, "create the bucket")
            after["exists"] = True
            changes.append("created")
        if before["versioning"] != "Enabled":
            self.write("enable versioning", "put_bucket_versioning", Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
            after["versioning"] = "Enabled"
            changes.append("versioning")
        if custody.encryption_needs_change(before["encryption"], kms["arn"], [kms.get("id")]):
            rules = [custody.encryption_rule(kms["arn"] or "(new key %s)" % kms["alias"])]
            if kms["arn"]:
                self.write("set default encryption", "put_bucket_encryption", Bucket=self.bucket, ServerSideEncryptionConfiguration={"Rules": rules})
            else:
                self.changed = True  # check mode, the KMS key would be created first
            after["encryption"] = rules
            changes.append("encryption")
        if any(not before["public_access_block"].get(k) for k in PUBLIC_ACCESS_BLOCK):
            self.write("block public access", "put_public_access_block", Bucket=self.bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
            after["public_access_block"] = dict(PUBLIC_ACCESS_BLOCK)
            changes.append("public_access_block")
        if after["exists"] and before["ownership"] != "BucketOwnerEnforced" and "created" not in changes:
            self.write("disable ACLs (BucketOwnerEnforced)", "put_bucket_ownership_controls", Bucket=self.bucket, OwnershipControls=OWNERSHIP_CONTROLS)
            changes.append("ownership_controls")
        after["ownership"] = "BucketOwnerEnforced"
        return after, changes

    def ensure_policy(self, before, after, changes, controllers):
        wanted = custody.merge_bucket_policy(
            before["policy"], custody.bucket_statements(self.partition, self.bucket, controllers, omit_conditioned_denies(self.params)))
        if wanted is None:
            if before["policy"]:
                self.write("delete the bucket policy", "delete_bucket_policy", Bucket=self.bucket)
                changes.append("policy")
            after["policy"] = {}
        elif not before["policy"] or compare_policies(before["policy"], wanted):
            self.write("put the bucket policy", "put_bucket_policy", Bucket=self.bucket, Policy=json.dumps(wanted))
            after["policy"] = wanted
            changes.append("policy")

    # --- KMS -----------------------------------------------------------------------------------
    def ensure_kms_key(self, controllers):
        """{'arn', 'id', 'alias', 'changes'}: the key given in kms_key_id, or the bucket's dedicated key."""
        kms = retrying_client(self.module, "kms")
        given = self.params.get("kms_key_id")
        alias = custody.kms_alias(self.bucket)
        try:
            found = kms.describe_key(KeyId=given or alias, aws_retry=True)["KeyMetadata"]
        except is_boto3_error_code("NotFoundException"):
            found = None
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "read the KMS key %s" % (given or alias))
        if given:
            if found is None:
                self.module.fail_json(msg="kms_key_id %s does not exist (or is not visible to the caller)" % given)
            if found.get("KeyState") != "Enabled":
                self.module.fail_json(msg="kms_key_id %s is %s, not Enabled" % (given, found.get("KeyState")))
            return {"arn": found["Arn"], "id": found["KeyId"], "alias": None, "changes": []}

        wanted = custody.kms_key_policy(self.partition, self.module.region, self.account, self.bucket, controllers)
        if found is None:
            self.changed = True
            if self.module.check_mode:
                return {"arn": None, "id": None, "alias": alias, "changes": ["kms_key"]}
            try:
                created = kms.create_key(
                    Description="cloudefigo.core volume keys of s3://%s (only S3 uses it; see docs/key-custody.md)" % self.bucket,
                    KeyUsage="ENCRYPT_DECRYPT", KeySpec="SYMMETRIC_DEFAULT", Policy=json.dumps(wanted),
                    Tags=[{"TagKey": custody.TAG_KEY_BUCKET, "TagValue": self.bucket}], aws_retry=True)["KeyMetadata"]
                kms.enable_key_rotation(KeyId=created["KeyId"], aws_retry=True)
                kms.create_alias(AliasName=alias, TargetKeyId=created["KeyId"], aws_retry=True)
            except AWS_ERRORS as e:
                self.fail(e, "create the bucket's KMS key %s" % alias)
            return {"arn": created["Arn"], "id": created["KeyId"], "alias": alias, "changes": ["kms_key"]}

        try:
            tags = dict((t["TagKey"], t["TagValue"]) for t in kms.list_resource_tags(KeyId=found["KeyId"], aws_retry=True).get("Tags", []))
        except AWS_ERRORS as e:
            self.fail(e, "read the tags of KMS key %s" % alias)
        if tags.get(custody.TAG_KEY_BUCKET) != self.bucket:
            self.module.fail_json(msg="%s names KMS key %s, which is not marked %s=%s (it is %r): refusing to use or rewrite it. "
                                      "Set kms_key_id, or point the alias at the bucket's own key"
                                  % (alias, found["Arn"], custody.TAG_KEY_BUCKET, self.bucket, tags.get(custody.TAG_KEY_BUCKET)))
        if found.get("KeyState") != "Enabled":
            self.module.fail_json(msg="the bucket's KMS key %s (%s) is %s, not Enabled" % (alias, found["Arn"], found.get("KeyState")))
        changes = []
        try:
            current = json.loads(kms.get_key_policy(KeyId=found["KeyId"], PolicyName="default", aws_retry=True)["Policy"])
        except AWS_ERRORS as e:
            self.fail(e, "read the key policy of %s" % alias)
        if compare_policies(current, wanted):
            self.write("put the key policy of %s" % alias, "put_key_policy", client=kms, KeyId=found["KeyId"], PolicyName="default",
                       Policy=json.dumps(wanted))
            changes.append("kms_key_policy")
        return {"arn": found["Arn"], "id": found["KeyId"], "alias": alias, "changes": changes}

    # --- the key object ------------------------------------------------------------------------
    def versions(self, missing_bucket_ok):
        """(versions, delete markers) of exactly this key, newest first: [{'Key', 'VersionId', 'IsLatest', 'Size'}]."""
        versions, markers = [], []
        try:
            pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=self.key, ExpectedBucketOwner=self.owner)
            versions, markers = custody.key_versions(pages, self.key)
        except is_boto3_error_code("NoSuchBucket"):
            if missing_bucket_ok:
                return [], []
            self.module.fail_json(msg="bucket %s disappeared while reading %s" % (self.bucket, self.key))
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "list the key object's versions (a failed lookup is never taken for 'no key')")
        return versions, markers

    def version_tags(self, version_id):
        return tag_dict(self.call("read the tags of version %s" % version_id, "get_object_tagging",
                                  Bucket=self.bucket, Key=self.key, VersionId=version_id).get("TagSet"))

    def decide(self, tags, launch_id, what):
        try:
            return custody.ownership(tags, self.params["instance_id"], launch_id, self.params.get("adopt_instance_id"), what)
        except custody.CustodyError as e:
            self.module.fail_json(msg=str(e))

    def put_new_key(self, kms_arn, tags):
        """Conditional upload: S3 refuses it (412) if an object appeared meanwhile. The put_object answer, or None."""
        kwargs = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Body": new_key(self.params["key_bytes"]),
            "IfNoneMatch": "*",
            "ContentType": "application/octet-stream",
            "ServerSideEncryption": "aws:kms",
            "SSEKMSKeyId": kms_arn,
            "BucketKeyEnabled": False,
            "Tagging": urlencode(sorted(tags.items())),
            "ExpectedBucketOwner": self.owner,
        }
        try:
            return self.s3.put_object(aws_retry=True, **kwargs)
        except is_boto3_error_code(["PreconditionFailed", "ConditionalRequestConflict"]):
            self.module.fail_json(msg="%s appeared while this run was creating it (another run?): run again to check its owner" % self.where)
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "write the new key")
        finally:
            kwargs.pop("Body", None)

    def wanted_tags(self, current, marks):
        user = self.params.get("tags")
        if user is None:
            wanted = dict(current)
        else:
            user = dict((k, str(v)) for k, v in user.items())
            wanted = user if self.params["purge_tags"] else dict(current, **user)
        wanted.update(marks)  # the marks are never purged or changed by `tags`
        return wanted

    def present(self):
        self.identify()
        controllers = self.controllers()
        bucket_before = self.bucket_state(self.bucket_exists())

        arn = custody.instance_arn(self.partition, self.module.region, self.account, self.params["instance_id"])
        marks = custody.marks(self.params["instance_id"], self.params["launch_id"], arn)
        problem = custody.user_tags_problem(self.params.get("tags"), marks)
        if problem:
            self.module.fail_json(msg=problem)

        # Whose name is this? Decided (reads only) before anything is written, so a refusal leaves
        # the bucket, the KMS key and the key as they were.
        versions, markers = self.versions(missing_bucket_ok=True) if bucket_before["exists"] else ([], [])
        current = next((v for v in versions if v["IsLatest"]), None)
        tags = {}
        decision = None
        if current is not None:
            tags = self.version_tags(current["VersionId"])
            decision = self.decide(tags, self.params["launch_id"], "key %s" % self.where)
        elif versions:
            # no current version (a delete marker on top): the newest old version says whose name this is
            newest = custody.newest_version(versions)
            decision = self.decide(self.version_tags(newest["VersionId"]), self.params["launch_id"],
                                   "the older versions of %s (no current version)" % self.where)
        before = {"bucket": bucket_before, "key": _key_view(current, tags)}
        # the launch record too is decided (reads only) before anything is written
        record = self.plan_launch_record() if self.params.get("launch_record") is not None else None

        kms = self.ensure_kms_key(controllers)
        bucket_after, bucket_changes = self.ensure_bucket(bucket_before, kms)
        bucket_changes = kms["changes"] + bucket_changes
        # then the bucket policy, then the key: a key never sits in the bucket before the policy that guards it
        self.ensure_policy(bucket_before, bucket_after, bucket_changes, controllers)

        created = False
        result_tags = self.wanted_tags(tags, marks)
        encryption = None
        if current is None:
            if versions or markers:
                self.module.warn(
                    "object %s has no current version but %d older version(s) and %d delete marker(s): writing a new key on top; "
                    "use state=absent to shred the old ones" % (self.key, len(versions), len(markers)))
            self.changed = True
            created = True
            encryption = "aws:kms"
            if not self.module.check_mode:
                answer = self.put_new_key(kms["arn"], result_tags)
                encryption = answer.get("ServerSideEncryption")
                versions, markers = self.versions(missing_bucket_ok=False)
                current = next((v for v in versions if v["IsLatest"]), None)
                if current is None:
                    self.module.fail_json(msg="object %s: the new key was written but is not listed (bucket %s)" % (self.key, self.bucket))
        else:
            if current.get("Size") != self.params["key_bytes"]:
                self.module.warn("object %s holds a %s-byte key, not key_bytes=%d; it is kept (never overwritten)"
                                 % (self.key, current.get("Size"), self.params["key_bytes"]))
            if result_tags != tags:
                if decision == "adopt":
                    self.module.warn("adopting %s for instance %s, launch %s (adopt_instance_id)"
                                     % (self.where, self.params["instance_id"], self.params["launch_id"]))
                self.write("tag the key object", "put_object_tagging", Bucket=self.bucket, Key=self.key,
                           VersionId=current["VersionId"], Tagging={"TagSet": boto3_tags(result_tags)})
        after = {"bucket": bucket_after, "key": _key_view(current, result_tags) if current else {"exists": True, "version_id": None, "tags": result_tags}}
        result = {
            "created": created,
            "adopted": decision == "adopt",
            "version_id": current.get("VersionId") if current else None,
            "size": current.get("Size") if current else self.params["key_bytes"],
            "encryption": encryption,
            "tags": result_tags,
            "bucket_changes": bucket_changes,
            "kms_key_arn": kms["arn"],
            "expected_bucket_owner": self.owner,
            "controller_principals": controllers,
        }
        if record is not None:
            # only now: the key is this instance's and launch's (made, or found marked so)
            record_key, record_before, record_after = record
            if records.write_record(self.module, self.s3, self.bucket, record_key, self.owner, record_before, record_after,
                                    self.module.check_mode):
                self.changed = True
            before["launch_record"] = record_before or {}
            after["launch_record"] = record_after
            result["launch_record"] = record_after
        return result, before, after

    def plan_launch_record(self):
        """(object key, current record or None, record to write) of the option launch_record; fails on a refusal."""
        options = self.params["launch_record"]
        region = options.get("instance_region") or self.module.region
        if not region:
            self.module.fail_json(msg="launch_record.instance_region: no region (set region or launch_record.instance_region); "
                                      "the record says in which region its instance lives")
        key = reconcile.record_key(options.get("prefix"), region, self.params["instance_id"])
        problem = s3_key_problem(key)
        if problem:
            self.module.fail_json(msg="launch_record.prefix: the record's object key %r is not usable: %s" % (key, problem))
        if key == self.key:
            self.module.fail_json(msg="launch_record.prefix: the record's object key %s is the volume key's object; choose another prefix"
                                  % key)
        wanted = records.wanted_record(
            self.params["instance_id"], self.params["launch_id"], region, self.account,
            role_name=options.get("role_name"), instance_profile_name=options.get("instance_profile_name"),
            key_object=self.key, volume_ids=options.get("volume_ids"), chef_node=options.get("chef_node"))
        current, after = records.plan_record(self.module, self.s3, self.bucket, key, self.owner, wanted, option="launch_record")
        return key, current, after

    def custody_only(self):
        """state=bucket: the bucket, its settings, its KMS key and its policy; no key object."""
        self.identify()
        controllers = self.controllers()
        bucket_before = self.bucket_state(self.bucket_exists())
        kms = self.ensure_kms_key(controllers)
        bucket_after, bucket_changes = self.ensure_bucket(bucket_before, kms)
        bucket_changes = kms["changes"] + bucket_changes
        self.ensure_policy(bucket_before, bucket_after, bucket_changes, controllers)
        return {
            "created": False,
            "adopted": False,
            "version_id": None,
            "size": None,
            "bucket_changes": bucket_changes,
            "kms_key_arn": kms["arn"],
            "kms_key_alias": kms["alias"],
            "expected_bucket_owner": self.owner,
            "controller_principals": controllers,
        }, {"bucket": bucket_before}, {"bucket": bucket_after}

    def absent(self):
        self.identify()
        versions, markers = self.versions(missing_bucket_ok=True)
        # every version must be this instance's (and launch's, when given) before anything is deleted
        adopted = False
        for version in versions:
            decision = self.decide(self.version_tags(version["VersionId"]), self.params.get("launch_id"),
                                   "version %s of %s" % (version["VersionId"], self.where))
            adopted = adopted or decision == "adopt"
        before = {"versions": [v["VersionId"] for v in versions], "delete_markers": [m["VersionId"] for m in markers]}
        everything = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions + markers]
        if everything:
            self.changed = True
        if everything and not self.module.check_mode:
            for start in range(0, len(everything), 1000):
                batch = everything[start:start + 1000]
                answer = self.call("delete the key's versions", "delete_objects", Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                errors = answer.get("Errors") or []
                if errors:
                    self.module.fail_json(
                        msg="Could not delete %d version(s) of %s in %s: %s"
                        % (len(errors), self.key, self.bucket, errors[0].get("Message", errors[0].get("Code"))),
                        errors=errors,
                    )
            left, left_markers = self.versions(missing_bucket_ok=True)
            if left or left_markers:
                self.module.fail_json(msg="object %s still has %d version(s) and %d delete marker(s) after deletion" % (self.key, len(left), len(left_markers)))
        return {
            "created": False,
            "adopted": adopted,
            "version_id": None,
            "size": None,
            "deleted_versions": len(versions),
            "deleted_delete_markers": len(markers),
            "kms_key_arn": None,
            "expected_bucket_owner": self.owner,
        }, before, {"versions": [], "delete_markers": []}


def _key_view(version, tags):
    if version is None:
        return {"exists": False}
    return {"exists": True, "version_id": version.get("VersionId"), "size": version.get("Size"), "tags": tags}


def main():
    argument_spec = dict(
        bucket=dict(type="str", required=True),
        object=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent", "bucket"]),
        instance_id=dict(type="str"),
        launch_id=dict(type="str"),
        adopt_instance_id=dict(type="str"),
        key_bytes=dict(type="int", default=64, no_log=False),
        kms_key_id=dict(type="str", no_log=False),
        controller_principals=dict(type="list", elements="str"),
        expected_bucket_owner=dict(type="str"),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        launch_record=dict(type="dict", options=dict(
            prefix=dict(type="str", default=reconcile.DEFAULT_PREFIX),
            role_name=dict(type="str"),
            instance_profile_name=dict(type="str"),
            volume_ids=dict(type="list", elements="str", default=[]),
            chef_node=dict(type="str"),
            instance_region=dict(type="str"),
        )),
        omit_conditioned_denies=dict(type="bool", default=False),
        deny_insecure_transport=dict(type="bool", removed_in_version="0.3.0", removed_from_collection="cloudefigo.core"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True,
                              required_if=[("state", "present", ["object", "instance_id"]),
                                           ("state", "absent", ["object", "instance_id"])])
    try:
        validate(module.params)
    except ValidationError as e:
        module.fail_json(msg=str(e))

    manager = VolumeKey(module)
    if module.params["state"] == "present":
        result, before, after = manager.present()
    elif module.params["state"] == "bucket":
        result, before, after = manager.custody_only()
    else:
        result, before, after = manager.absent()
    result.update(changed=manager.changed, bucket=manager.bucket, object=manager.key, arn=manager.arn)
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
