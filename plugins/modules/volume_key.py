#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: volume_key
short_description: A random volume (LUKS) key held in S3, created once and crypto-shredded on request
version_added: 0.1.0
description:
  - With O(state=present), makes sure O(bucket) is fit to hold keys (see below) and creates a random
    key of O(key_bytes) bytes at O(object) only if no object exists there. An existing key is never
    overwritten, because that would destroy the data it protects; the upload is conditional
    (C(If-None-Match) C(*)), so two concurrent runs cannot both write.
  - The key is generated on the managed node from the operating system's CSPRNG and sent straight
    to S3. The module never reads the key back and never returns it.
  - The bucket is created if missing and then kept with versioning enabled (every key keeps a
    version id, and O(state=absent) can find every copy), default encryption (SSE-KMS with
    O(kms_key_id), otherwise SSE-S3 C(AES256); an existing default encryption is kept unless
    O(kms_key_id) asks for another key), all four public access blocks on, and a bucket policy
    statement (Sid C(CloudefigoDenyInsecureTransport)) that denies requests without TLS (see
    O(deny_insecure_transport)). Other statements of the bucket policy are kept; the statement is
    merged by its Sid.
  - With O(state=absent), deletes every version and every delete marker of exactly O(object)
    (crypto-shred); objects whose keys merely start with O(object) are not touched. The bucket and
    its settings are left alone.
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
    type: str
    required: true
  state:
    description:
      - V(present) creates the key if it does not exist yet.
      - V(absent) deletes every version and delete marker of the object.
    type: str
    choices: [present, absent]
    default: present
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
      - KMS key (ID, ARN or alias ARN) for SSE-KMS of the key object and the bucket's default
        encryption. When omitted, SSE-S3 (C(AES256)) is used.
    type: str
  tags:
    description:
      - Tags of the key object. When omitted, tags are not managed.
    type: dict
  purge_tags:
    description:
      - Remove object tags not listed in O(tags). Has no effect when O(tags) is omitted.
    type: bool
    default: true
  deny_insecure_transport:
    description:
      - Merge the C(CloudefigoDenyInsecureTransport) statement (deny C(s3:*) when
        C(aws:SecureTransport) is C(false)) into the bucket policy, keeping other statements.
      - V(false) leaves the bucket policy alone (it does not remove the statement). Only for
        emulators such as moto, which apply a bucket policy's C(Deny) but ignore its C(Bool)
        condition and so refuse every object request once the statement is in place; the
        policy is written after the key for the same reason.
    type: bool
    default: true
attributes:
  check_mode:
    description: In check mode nothing is changed; no key is generated.
    support: full
  diff_mode:
    description: Shows the bucket settings and the key's version (never its bytes) before and after.
    support: full
notes:
  - A key object whose current version is a delete marker does not exist; O(state=present) then
    writes a new key (older versions stay, and the module warns). Use O(state=absent) to shred all
    of them.
  - The key's bytes never appear in the module's result, diff or logs.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Make sure web-01 has a volume key
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    object: volumes/web-01.key
    tags:
      Instance: web-01
  register: web_key

- name: Use a customer-managed KMS key and a 512-bit key
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    object: volumes/db-01.key
    key_bytes: 64
    kms_key_id: arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab

- name: Crypto-shred web-01's data by deleting every version of its key
  cloudefigo.core.volume_key:
    bucket: cloudefigo-keys
    object: volumes/web-01.key
    state: absent
"""

RETURN = r"""
created:
  description: Whether a new key was written (or would be, in check mode).
  returned: always
  type: bool
  sample: true
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: cloudefigo-keys
object:
  description: The object key.
  returned: always
  type: str
  sample: volumes/web-01.key
arn:
  description: ARN of the key object (for an IAM policy's C(Resource)).
  returned: always
  type: str
  sample: arn:aws:s3:::cloudefigo-keys/volumes/web-01.key
version_id:
  description:
    - Version id of the key's current version. Null with O(state=absent), and in check mode when
      the key would be created.
  returned: always
  type: str
  sample: 3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY
size:
  description: Length of the key in bytes. Null with O(state=absent), or when unknown in check mode.
  returned: always
  type: int
  sample: 64
encryption:
  description: Server-side encryption of the key's current version (C(AES256) or C(aws:kms)).
  returned: when O(state=present)
  type: str
  sample: AES256
tags:
  description: Tags of the key object.
  returned: when O(state=present)
  type: dict
  sample:
    Instance: web-01
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
  description: The bucket settings that were changed (or would be, in check mode).
  returned: when O(state=present)
  type: list
  elements: str
  sample: [created, versioning, encryption, public_access_block, policy]
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
    import botocore  # noqa: F401 pylint: disable=unused-import
except ImportError:
    pass  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.policy import compare_policies
from ansible_collections.amazon.aws.plugins.module_utils.tagging import compare_aws_tags

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import partition_for_region
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_key_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict

TLS_SID = "CloudefigoDenyInsecureTransport"
MIN_KEY_BYTES = 32
MAX_KEY_BYTES = 8192
PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


class ValidationError(Exception):
    """Bad module input; the message names the option."""


def validate(params):
    problem = s3_bucket_name_problem(params["bucket"])
    if problem:
        raise ValidationError("bucket %r is not a valid S3 bucket name: %s" % (params["bucket"], problem))
    problem = s3_key_problem(params["object"])
    if problem:
        raise ValidationError("object is not a usable S3 object key: %s" % problem)
    if params["state"] not in ("present", "absent"):  # AnsibleModule's choices check runs first
        raise ValidationError("state must be present or absent, got %r" % params["state"])
    key_bytes = params["key_bytes"]
    if not MIN_KEY_BYTES <= key_bytes <= MAX_KEY_BYTES:
        raise ValidationError(
            "key_bytes must be between %d and %d (a volume key needs at least 256 bits), got %d" % (MIN_KEY_BYTES, MAX_KEY_BYTES, key_bytes)
        )
    if params.get("kms_key_id") is not None and not params["kms_key_id"].strip():
        raise ValidationError("kms_key_id is empty; omit it for SSE-S3")


def tls_statement(partition, bucket):
    bucket_arn = "arn:%s:s3:::%s" % (partition, bucket)
    return {
        "Sid": TLS_SID,
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, bucket_arn + "/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


def merge_policy(current, statement):
    """The bucket policy with `statement` in place of any statement of the same Sid; others kept."""
    policy = copy.deepcopy(current) if current else {"Version": "2012-10-17", "Statement": []}
    statements = policy.get("Statement") or []
    if isinstance(statements, dict):
        statements = [statements]
    kept = [s for s in statements if s.get("Sid") != statement["Sid"]]
    policy["Statement"] = kept + [statement]
    policy.setdefault("Version", "2012-10-17")
    return policy


def encryption_rule(kms_key_id):
    if kms_key_id:
        return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_id}, "BucketKeyEnabled": True}
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}


def encryption_needs_change(current_rules, kms_key_id):
    """Keep any existing default encryption, unless a KMS key is asked for and not the one in use."""
    defaults = [r.get("ApplyServerSideEncryptionByDefault") or {} for r in current_rules or []]
    algorithms = [d.get("SSEAlgorithm") for d in defaults if d.get("SSEAlgorithm")]
    if not algorithms:
        return True
    if kms_key_id:
        return not any(d.get("SSEAlgorithm") in ("aws:kms", "aws:kms:dsse") and d.get("KMSMasterKeyID") == kms_key_id for d in defaults)
    return False


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

    @property
    def arn(self):
        return "arn:%s:s3:::%s/%s" % (self.partition, self.bucket, self.key)

    def fail(self, error, what):
        self.module.fail_json_aws(error, msg="Could not %s (bucket %s, object %s)" % (what, self.bucket, self.key))

    def write(self, what, method, **kwargs):
        """One S3 write; nothing happens in check mode."""
        self.changed = True
        if self.module.check_mode:
            return None
        try:
            return getattr(self.s3, method)(aws_retry=True, **kwargs)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self.fail(e, what)

    # --- bucket --------------------------------------------------------------------------------
    def bucket_exists(self):
        try:
            self.s3.head_bucket(Bucket=self.bucket, aws_retry=True)
            return True
        except is_boto3_error_code(["404", "NoSuchBucket", "NotFound"]):
            return False
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.fail(e, "check the bucket")

    def _get(self, method, missing_codes, what):
        try:
            return getattr(self.s3, method)(Bucket=self.bucket, aws_retry=True)
        except is_boto3_error_code(missing_codes):
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.fail(e, "read the bucket's " + what)

    def bucket_state(self, exists):
        if not exists:
            return {"exists": False, "versioning": None, "encryption": [], "public_access_block": {}, "policy": {}}
        try:
            versioning = self.s3.get_bucket_versioning(Bucket=self.bucket, aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self.fail(e, "read the bucket's versioning")
        encryption = self._get("get_bucket_encryption", ["ServerSideEncryptionConfigurationNotFoundError"], "encryption") or {}
        pab = self._get("get_public_access_block", ["NoSuchPublicAccessBlockConfiguration"], "public access block") or {}
        policy = self._get("get_bucket_policy", ["NoSuchBucketPolicy"], "policy") or {}
        return {
            "exists": True,
            "versioning": versioning.get("Status"),
            "encryption": (encryption.get("ServerSideEncryptionConfiguration") or {}).get("Rules", []),
            "public_access_block": pab.get("PublicAccessBlockConfiguration", {}),
            "policy": json.loads(policy["Policy"]) if policy.get("Policy") else {},
        }

    def ensure_bucket(self):
        before = self.bucket_state(self.bucket_exists())
        after = copy.deepcopy(before)
        changes = []
        if not before["exists"]:
            create = {"Bucket": self.bucket}
            if self.module.region and self.module.region != "us-east-1":
                create["CreateBucketConfiguration"] = {"LocationConstraint": self.module.region}
            self.write("create the bucket", "create_bucket", **create)
            after["exists"] = True
            changes.append("created")
        if before["versioning"] != "Enabled":
            self.write("enable versioning", "put_bucket_versioning", Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
            after["versioning"] = "Enabled"
            changes.append("versioning")
        if encryption_needs_change(before["encryption"], self.params.get("kms_key_id")):
            rules = [encryption_rule(self.params.get("kms_key_id"))]
            self.write("set default encryption", "put_bucket_encryption", Bucket=self.bucket, ServerSideEncryptionConfiguration={"Rules": rules})
            after["encryption"] = rules
            changes.append("encryption")
        if any(not before["public_access_block"].get(k) for k in PUBLIC_ACCESS_BLOCK):
            self.write("block public access", "put_public_access_block", Bucket=self.bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
            after["public_access_block"] = dict(PUBLIC_ACCESS_BLOCK)
            changes.append("public_access_block")
        return before, after, changes

    def ensure_tls_policy(self, before, after, changes):
        """Merge the deny-non-TLS statement into the bucket policy (last: see deny_insecure_transport)."""
        if not self.params["deny_insecure_transport"]:
            return
        wanted = merge_policy(before["policy"], tls_statement(self.partition, self.bucket))
        if not before["policy"] or compare_policies(before["policy"], wanted):
            self.write("put the bucket policy", "put_bucket_policy", Bucket=self.bucket, Policy=json.dumps(wanted))
            after["policy"] = wanted
            changes.append("policy")

    # --- the key object ------------------------------------------------------------------------
    def head(self):
        """The key's current version (head_object response) or None when there is none."""
        try:
            return self.s3.head_object(Bucket=self.bucket, Key=self.key, aws_retry=True)
        except is_boto3_error_code(["404", "NoSuchKey", "NotFound", "NoSuchBucket"]):
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.fail(e, "read the key object's metadata")

    def object_tags(self):
        try:
            return tag_dict(self.s3.get_object_tagging(Bucket=self.bucket, Key=self.key, aws_retry=True).get("TagSet"))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
            self.fail(e, "read the key object's tags")

    def versions(self):
        """(versions, delete markers) of exactly this key: [{'Key', 'VersionId'}]."""
        versions, markers = [], []
        try:
            for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=self.key):
                versions += [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in page.get("Versions", []) if v["Key"] == self.key]
                markers += [{"Key": m["Key"], "VersionId": m["VersionId"]} for m in page.get("DeleteMarkers", []) if m["Key"] == self.key]
        except is_boto3_error_code("NoSuchBucket"):
            return [], []
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.fail(e, "list the key object's versions")
        return versions, markers

    def put_new_key(self):
        """Conditional upload: S3 refuses it (412) if an object appeared meanwhile. True if written."""
        kwargs = {
            "Bucket": self.bucket,
            "Key": self.key,
            "Body": new_key(self.params["key_bytes"]),
            "IfNoneMatch": "*",
            "ContentType": "application/octet-stream",
        }
        if self.params.get("kms_key_id"):
            kwargs.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=self.params["kms_key_id"])
        else:
            kwargs["ServerSideEncryption"] = "AES256"
        if self.params.get("tags"):
            kwargs["Tagging"] = urlencode(sorted((k, str(v)) for k, v in self.params["tags"].items()))
        try:
            self.s3.put_object(aws_retry=True, **kwargs)
            return True
        except is_boto3_error_code(["PreconditionFailed", "ConditionalRequestConflict"]):
            return False
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:  # pylint: disable=duplicate-except
            self.fail(e, "write the new key")
        finally:
            kwargs.pop("Body", None)

    def present(self):
        bucket_before, bucket_after, bucket_changes = self.ensure_bucket()
        current = self.head() if bucket_before["exists"] else None
        before = {"bucket": bucket_before, "key": _key_view(current)}
        created = False
        if current is None:
            if bucket_before["exists"]:
                versions, markers = self.versions()
                if versions or markers:
                    self.module.warn(
                        "object %s has no current version but %d older version(s) and %d delete marker(s): writing a new key on top; "
                        "use state=absent to shred the old ones" % (self.key, len(versions), len(markers))
                    )
            self.changed = True
            if not self.module.check_mode:
                created = self.put_new_key()
                current = self.head()
                if current is None:
                    self.module.fail_json(msg="object %s: the new key was written but cannot be read back (bucket %s)" % (self.key, self.bucket))
            else:
                created = True
        elif current.get("ContentLength") != self.params["key_bytes"]:
            self.module.warn(
                "object %s holds a %s-byte key, not key_bytes=%d; it is kept (never overwritten)"
                % (self.key, current.get("ContentLength"), self.params["key_bytes"])
            )
        if current is not None and self.params.get("kms_key_id") and current.get("ServerSideEncryption") != "aws:kms":
            self.module.warn("object %s is not encrypted with SSE-KMS although kms_key_id is set; it is kept as it is (never rewritten)" % self.key)

        wanted = None if self.params.get("tags") is None else {k: str(v) for k, v in self.params["tags"].items()}
        if current is None:  # check mode, key to be created
            tags = wanted or {}
        else:
            tags = self.object_tags()
            if wanted is not None and not created:
                to_set, to_unset = compare_aws_tags(tags, wanted, purge_tags=self.params["purge_tags"])
                if to_set or to_unset:
                    tags = {k: v for k, v in tags.items() if k not in to_unset}
                    tags.update(to_set)
                    self.write("tag the key object", "put_object_tagging", Bucket=self.bucket, Key=self.key,
                               VersionId=current["VersionId"], Tagging={"TagSet": boto3_tags(tags)})
        self.ensure_tls_policy(bucket_before, bucket_after, bucket_changes)
        after = {"bucket": bucket_after, "key": _key_view(current) if current else {"exists": True, "version_id": None}}
        return {
            "created": created,
            "version_id": current.get("VersionId") if current else None,
            "size": current.get("ContentLength") if current else (self.params["key_bytes"] if created else None),
            "encryption": current.get("ServerSideEncryption") if current else ("aws:kms" if self.params.get("kms_key_id") else "AES256"),
            "tags": tags,
            "bucket_changes": bucket_changes,
        }, before, after

    def absent(self):
        versions, markers = self.versions()
        before = {"versions": [v["VersionId"] for v in versions], "delete_markers": [m["VersionId"] for m in markers]}
        everything = versions + markers
        if everything:
            self.changed = True
        if everything and not self.module.check_mode:
            for start in range(0, len(everything), 1000):
                batch = everything[start:start + 1000]
                try:
                    answer = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}, aws_retry=True)
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
                    self.fail(e, "delete the key's versions")
                errors = answer.get("Errors") or []
                if errors:
                    self.module.fail_json(
                        msg="Could not delete %d version(s) of %s in %s: %s"
                        % (len(errors), self.key, self.bucket, errors[0].get("Message", errors[0].get("Code"))),
                        errors=errors,
                    )
            left, left_markers = self.versions()
            if left or left_markers:
                self.module.fail_json(msg="object %s still has %d version(s) and %d delete marker(s) after deletion" % (self.key, len(left), len(left_markers)))
        return {
            "created": False,
            "version_id": None,
            "size": None,
            "deleted_versions": len(versions),
            "deleted_delete_markers": len(markers),
        }, before, {"versions": [], "delete_markers": []}


def _key_view(head):
    if head is None:
        return {"exists": False}
    return {
        "exists": True,
        "version_id": head.get("VersionId"),
        "size": head.get("ContentLength"),
        "encryption": head.get("ServerSideEncryption"),
    }


def main():
    argument_spec = dict(
        bucket=dict(type="str", required=True),
        object=dict(type="str", required=True),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        key_bytes=dict(type="int", default=64, no_log=False),
        kms_key_id=dict(type="str", no_log=False),
        tags=dict(type="dict"),
        purge_tags=dict(type="bool", default=True),
        deny_insecure_transport=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        validate(module.params)
    except ValidationError as e:
        module.fail_json(msg=str(e))

    manager = VolumeKey(module)
    if module.params["state"] == "present":
        result, before, after = manager.present()
    else:
        result, before, after = manager.absent()
    result.update(changed=manager.changed, bucket=manager.bucket, object=manager.key, arn=manager.arn)
    if module._diff:
        result["diff"] = {"before": before, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
