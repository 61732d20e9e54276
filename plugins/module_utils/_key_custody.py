# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Key custody: who owns a volume key, and the policies that make its bucket defend itself.

Private to the collection: not a public API, may change without notice.

Plain functions, no AWS calls: the volume_key module reads state, asks these what to do, and
writes.  See docs/key-custody.md for the threat model these documents answer.
"""

from __future__ import annotations

import copy
import re

# Ownership marks (tags), written when a resource is created and compared before any write.
TAG_INSTANCE_ID = "cloudefigo:instance-id"
TAG_LAUNCH_ID = "cloudefigo:launch-id"
# Binds the key object to its instance at the bucket: compared with ${ec2:SourceInstanceARN}.
TAG_INSTANCE_ARN = "cloudefigo:instance-arn"
RESERVED_TAGS = (TAG_INSTANCE_ID, TAG_LAUNCH_ID, TAG_INSTANCE_ARN)
# Marks the dedicated KMS key of a key bucket.
TAG_KEY_BUCKET = "cloudefigo:key-bucket"
MAX_OBJECT_TAGS = 10  # S3's limit per object

SID_PREFIX = "Cloudefigo"
SID_TLS = "CloudefigoDenyInsecureTransport"
SID_READ_NO_INSTANCE = "CloudefigoDenyKeyReadOutsideAnInstance"
SID_READ_OTHER_INSTANCE = "CloudefigoDenyKeyReadByAnotherInstance"
SID_READ_IMDSV1 = "CloudefigoDenyKeyReadWithImdsV1Credentials"
SID_CONTROLLERS_ONLY = "CloudefigoDenyEverythingElseToAllButControllers"
BUCKET_SIDS = (SID_TLS, SID_READ_NO_INSTANCE, SID_READ_OTHER_INSTANCE, SID_READ_IMDSV1, SID_CONTROLLERS_ONLY)

# The only object actions an instance needs; everything else is the controllers'.
KEY_READ_ACTIONS = ["s3:GetObject", "s3:GetObjectVersion"]

# What the controllers may do with the dedicated KMS key (never kms:Decrypt: reading keys is
# the instances' business).
KMS_ADMIN_ACTIONS = [
    "kms:CancelKeyDeletion", "kms:CreateAlias", "kms:DeleteAlias", "kms:DescribeKey", "kms:DisableKey",
    "kms:DisableKeyRotation", "kms:EnableKey", "kms:EnableKeyRotation", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus",
    "kms:ListAliases", "kms:ListResourceTags", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion", "kms:TagResource",
    "kms:UntagResource", "kms:UpdateAlias", "kms:UpdateKeyDescription",
]
KMS_ENCRYPT_ACTIONS = ["kms:GenerateDataKey"]

INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
ACCOUNT_ID = re.compile(r"^\d{12}$")
LAUNCH_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/=+@-]{0,127}$")
PRINCIPAL_ARN = re.compile(r"^arn:aws(?:-cn|-us-gov)?:iam::(\d{12}):(?:root|(?:user|role)/[\w+=,.@/-]+)$")
CALLER_ARN = re.compile(r"^arn:(aws(?:-cn|-us-gov)?):(iam|sts)::(\d{12}):(.+)$")


class CustodyError(Exception):
    """A refusal; the message names the option or the owner."""


# --- input ------------------------------------------------------------------------------------
def instance_id_problem(value):
    if not value or not INSTANCE_ID.match(value):
        return "must be an EC2 instance id (i- and 8 or 17 hex digits), got %r" % (value,)
    return None


def launch_id_problem(value):
    if not value or not LAUNCH_ID.match(value):
        return "must be 1-128 characters (letters, digits, _.:/=+@-) starting with a letter or digit, got %r" % (value,)
    return None


def account_problem(value):
    if not value or not ACCOUNT_ID.match(value):
        return "must be a 12-digit AWS account id, got %r" % (value,)
    return None


def principal_problem(value):
    if not PRINCIPAL_ARN.match(value or ""):
        return ("%r is not an IAM role, user or account root ARN (arn:aws:iam::123456789012:role/path/name); "
                "assumed-role session ARNs (arn:aws:sts::...) are not principals a policy can name" % (value,))
    return None


def user_tags_problem(tags, marks):
    """Why the user's `tags` cannot go on a key object with `marks`, or None."""
    for key, value in (tags or {}).items():
        if key in RESERVED_TAGS and str(value) != marks.get(key):
            return ("tags may not set %s (reserved: the module writes it from instance_id/launch_id); "
                    "remove it from tags" % key)
    merged = dict((k, str(v)) for k, v in (tags or {}).items())
    merged.update(marks)
    if len(merged) > MAX_OBJECT_TAGS:
        return "tags: an S3 object takes at most %d tags, and %d are the module's ownership marks" % (MAX_OBJECT_TAGS, len(marks))
    return None


def instance_arn(partition, region, account, instance_id):
    return "arn:%s:ec2:%s:%s:instance/%s" % (partition, region, account, instance_id)


def marks(instance_id, launch_id, arn):
    return {TAG_INSTANCE_ID: instance_id, TAG_LAUNCH_ID: launch_id, TAG_INSTANCE_ARN: arn}


def caller_principal(caller_arn):
    """(principal ARN, role name to look up) for the caller of STS GetCallerIdentity.

    A user or the root is its own principal.  An assumed-role session names its role without the
    role's path, so the module has to look the role up (returned as the second element).
    """
    match = CALLER_ARN.match(caller_arn or "")
    if not match:
        raise CustodyError("cannot derive controller_principals from the caller %r: set controller_principals" % (caller_arn,))
    partition, service, account, rest = match.groups()
    if rest == "root":
        return "arn:%s:iam::%s:root" % (partition, account), None
    if rest.startswith("user/"):  # moto's caller is arn:aws:sts::123456789012:user/moto
        return "arn:%s:iam::%s:%s" % (partition, account, rest), None
    if service == "sts" and rest.startswith("assumed-role/") and rest.count("/") >= 2:
        return None, rest.split("/")[1]
    raise CustodyError("the caller %s is not an IAM user or role session: set controller_principals to the role(s) "
                       "that administer the key bucket" % caller_arn)


def principal_covers(principals, caller):
    """Whether the caller's principal ARN is one of the controller principals (the account root covers all)."""
    for principal in principals:
        if principal == caller:
            return True
        if principal.endswith(":root") and principal.split(":")[4] == caller.split(":")[4]:
            return True
    return False


# --- ownership --------------------------------------------------------------------------------
def owner(tags):
    """{'instance_id', 'launch_id'} named by the marks, or None when the object carries none."""
    tags = tags or {}
    if TAG_INSTANCE_ID not in tags and TAG_LAUNCH_ID not in tags:
        return None
    return {"instance_id": tags.get(TAG_INSTANCE_ID), "launch_id": tags.get(TAG_LAUNCH_ID)}


def key_owner(tags):
    """owner() plus the object's cloudefigo:instance-arn mark, or None when the object carries no marks."""
    found = owner(tags)
    if found is not None:
        found["instance_arn"] = (tags or {}).get(TAG_INSTANCE_ARN)
    return found


def key_versions(pages, key):
    """(versions, delete markers) of exactly `key` from ListObjectVersions pages (Prefix=key), in S3's order.

    Objects whose keys merely start with `key` are left out.
    """
    versions, markers = [], []
    for page in pages:
        versions += [dict((k, v.get(k)) for k in ("Key", "VersionId", "IsLatest", "Size", "LastModified"))
                     for v in page.get("Versions") or [] if v.get("Key") == key]
        markers += [dict((k, m.get(k)) for k in ("Key", "VersionId", "IsLatest", "LastModified"))
                    for m in page.get("DeleteMarkers") or [] if m.get("Key") == key]
    return versions, markers


def newest_version(versions):
    """The version that says whose name this is: the current one, else (a delete marker on top) the newest older one."""
    current = next((v for v in versions if v.get("IsLatest")), None)
    if current is not None or not versions:
        return current
    return max(versions, key=lambda v: v.get("LastModified") or 0)


def describe_owner(found):
    return "instance %s, launch %s" % (found.get("instance_id") or "(none)", found.get("launch_id") or "(none)")


def ownership(tags, instance_id, launch_id, adopt_instance_id, what):
    """'own' or 'adopt' for an object with `tags`, else raise CustodyError naming the owner.

    `launch_id` None means "not compared" (state=absent without launch_id).  An object without
    marks (made by 0.1.0 or by hand) is adopted only when adopt_instance_id names this instance.
    """
    found = owner(tags)
    if found is None:
        if adopt_instance_id and adopt_instance_id == instance_id:
            return "adopt"
        raise CustodyError(
            "%s carries no ownership marks (%s, %s): it was not made for this launch by this module (or by 0.1.0). "
            "If it is instance %s's key, set adopt_instance_id=%s to adopt it; otherwise leave it alone"
            % (what, TAG_INSTANCE_ID, TAG_LAUNCH_ID, instance_id, instance_id))
    if found["instance_id"] != instance_id:
        raise CustodyError("%s is owned by %s, not by instance %s: refusing to touch it" % (what, describe_owner(found), instance_id))
    if launch_id is not None and not found["launch_id"]:
        if adopt_instance_id and adopt_instance_id == instance_id:
            return "adopt"
        raise CustodyError("%s is marked for instance %s but carries no launch id: set adopt_instance_id=%s to adopt it"
                           % (what, instance_id, instance_id))
    if launch_id is not None and found["launch_id"] != launch_id:
        raise CustodyError("%s is owned by %s, not by launch %s: refusing to touch it" % (what, describe_owner(found), launch_id))
    return "own"


# --- bucket policy ----------------------------------------------------------------------------
def bucket_arns(partition, bucket):
    arn = "arn:%s:s3:::%s" % (partition, bucket)
    return arn, arn + "/*"


def bucket_statements(partition, bucket, controllers, omit_conditioned_denies=False):
    """The statements volume_key owns in the key bucket's policy (Sids start with Cloudefigo).

    Every one is a Deny with a condition: nothing here grants anything (identity policies do), so
    an unresolved policy variable can only keep a Deny in force, never open a door.
    With omit_conditioned_denies (the lab switch for moto, which applies Deny statements without
    evaluating their conditions) all of them are left out.
    """
    if omit_conditioned_denies:
        return []
    bucket_arn, objects_arn = bucket_arns(partition, bucket)
    return [
        {
            "Sid": SID_TLS,
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, objects_arn],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        },
        {
            # without an instance there is nothing to compare the object's tag with: no read at all
            "Sid": SID_READ_NO_INSTANCE,
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(KEY_READ_ACTIONS),
            "Resource": objects_arn,
            "Condition": {"Null": {"ec2:SourceInstanceARN": "true"}},
        },
        {
            # an object without the tag, or tagged for another instance: no read
            "Sid": SID_READ_OTHER_INSTANCE,
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(KEY_READ_ACTIONS),
            "Resource": objects_arn,
            "Condition": {"StringNotEquals": {"s3:ExistingObjectTag/" + TAG_INSTANCE_ARN: "${ec2:SourceInstanceARN}"}},
        },
        {
            "Sid": SID_READ_IMDSV1,
            "Effect": "Deny",
            "Principal": "*",
            "Action": list(KEY_READ_ACTIONS),
            "Resource": objects_arn,
            "Condition": {"NumericLessThan": {"ec2:RoleDelivery": "2.0"}},
        },
        {
            # write, delete, tag, list and administer: the controllers only
            "Sid": SID_CONTROLLERS_ONLY,
            "Effect": "Deny",
            "Principal": "*",
            "NotAction": list(KEY_READ_ACTIONS),
            "Resource": [bucket_arn, objects_arn],
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": sorted(controllers)}},
        },
    ]


def _statements(policy):
    statements = (policy or {}).get("Statement") or []
    return [statements] if isinstance(statements, dict) else list(statements)


def merge_bucket_policy(current, wanted):
    """The bucket policy with the module's statements replaced by `wanted`; other statements kept.

    Statements whose Sid starts with "Cloudefigo" belong to the module: ones no longer wanted
    (e.g. with the lab switch) are removed.  Returns None when nothing is left.
    """
    kept = [s for s in _statements(current) if not str(s.get("Sid", "")).startswith(SID_PREFIX)]
    statements = kept + copy.deepcopy(wanted)
    if not statements:
        return None
    policy = dict(copy.deepcopy(current or {}))
    policy["Version"] = policy.get("Version") or "2012-10-17"
    policy["Statement"] = statements
    return policy


def conditioned_denies(policy):
    """The Sids of the Deny statements of `policy` that carry a Condition (for tests and checks)."""
    return sorted(s.get("Sid", "") for s in _statements(policy) if s.get("Effect") == "Deny" and s.get("Condition"))


# --- KMS --------------------------------------------------------------------------------------
def kms_alias(bucket):
    """alias/cloudefigo/volume-keys/<bucket> ('.' is not allowed in an alias: '_', never in a bucket name)."""
    return "alias/cloudefigo/volume-keys/" + bucket.replace(".", "_")


def kms_key_policy(partition, region, account, bucket, controllers):
    """Key policy of the bucket's dedicated KMS key.

    Controllers administer the key and encrypt through S3; they never decrypt.  Decryption is
    delegated to IAM (the account) only through S3 in this region, only for objects of this
    bucket, so an instance role's kms:Decrypt (granted by instance_role) works for its own key
    when S3 calls KMS on its behalf, and the bucket policy decides which object it may read.
    """
    via_s3 = "s3.%s.amazonaws.com" % region
    controllers = sorted(controllers)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CloudefigoKeyAdministration",
                "Effect": "Allow",
                "Principal": {"AWS": controllers},
                "Action": list(KMS_ADMIN_ACTIONS),
                "Resource": "*",
            },
            {
                "Sid": "CloudefigoControllersEncryptThroughS3",
                "Effect": "Allow",
                "Principal": {"AWS": controllers},
                "Action": list(KMS_ENCRYPT_ACTIONS),
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": via_s3},
                    "ArnLike": {"kms:EncryptionContext:aws:s3:arn": "arn:%s:s3:::%s/*" % (partition, bucket)},
                },
            },
            {
                "Sid": "CloudefigoInstancesDecryptThroughS3",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:%s:iam::%s:root" % (partition, account)},
                "Action": "kms:Decrypt",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"kms:ViaService": via_s3, "kms:CallerAccount": account},
                    "ArnLike": {"kms:EncryptionContext:aws:s3:arn": "arn:%s:s3:::%s/*" % (partition, bucket)},
                },
            },
        ],
    }


def encryption_rule(kms_key_arn):
    # No S3 Bucket Key: S3 then calls KMS per object, with the object's ARN as encryption context,
    # which the key policy's condition (and CloudTrail) can see.
    return {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key_arn}, "BucketKeyEnabled": False}


def encryption_needs_change(current_rules, kms_key_arn, kms_key_ids=()):
    """True unless the default encryption is SSE-KMS with this key (by ARN or one of its other ids)."""
    accepted = set([kms_key_arn] + list(kms_key_ids))
    for rule in current_rules or []:
        default = rule.get("ApplyServerSideEncryptionByDefault") or {}
        if default.get("SSEAlgorithm") == "aws:kms" and default.get("KMSMasterKeyID") in accepted and not rule.get("BucketKeyEnabled"):
            return False
    return True


# --- backups and replicas ---------------------------------------------------------------------
def copies_problem(replication, object_lock):
    """Why a bucket keeps copies crypto-shredding cannot reach, or None."""
    rules = (replication or {}).get("Rules") or []
    if rules:
        targets = sorted(set((r.get("Destination") or {}).get("Bucket", "?") for r in rules))
        return ("it has a replication configuration (to %s): every key would also live in the replica, where "
                "state=absent cannot shred it. Remove the replication or use another bucket" % ", ".join(targets))
    if (object_lock or {}).get("ObjectLockEnabled") == "Enabled":
        return ("it has S3 Object Lock enabled: a retained key version cannot be deleted, so a key could never be "
                "crypto-shredded. Use a bucket without Object Lock")
    return None
