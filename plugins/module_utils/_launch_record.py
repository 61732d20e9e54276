# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The S3 side of launch records: read, write, delete one record object.

Private to the collection: not a public API, may change without notice.

What a record means (its tags, the merge rules, who may overwrite it) is decided by the plain
functions of ``_reconcile``; this module only does the S3 calls around them, once for the two
modules that write records: ``launch_record`` and ``volume_key`` (option ``launch_record``, which
writes the record in the same run that makes the key it names).  Every function takes the
module (for ``fail_json``) and a retrying S3 client, and sends ``ExpectedBucketOwner``.
"""

from __future__ import annotations

from urllib.parse import quote

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code

from ansible_collections.cloudefigo.core.plugins.module_utils import _reconcile as reconcile
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict


def wanted_record(instance_id, launch_id, region, account, role_name=None, instance_profile_name=None, key_object=None,
                  volume_ids=None, chef_node=None):
    """The fields a launch asks to record (before the merge with what is recorded already)."""
    return {
        "instance_id": instance_id, "launch_id": launch_id, "region": region, "account": account,
        "role_name": role_name, "instance_profile_name": instance_profile_name or role_name,
        "key_object": key_object, "volume_ids": list(volume_ids or []), "chef_node": chef_node,
    }


def read_record(module, s3, bucket, key, owner):
    """The record's fields, or None when there is no record; fails on any other error."""
    try:
        answer = s3.get_object_tagging(Bucket=bucket, Key=key, ExpectedBucketOwner=owner, aws_retry=True)
    except is_boto3_error_code(["NoSuchKey", "404", "NotFound", "NoSuchBucket"]):
        # (no bucket: no record; writing one then fails with NoSuchBucket, naming the bucket)
        return None
    except AWS_ERRORS as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg="Could not read the launch record s3://%s/%s (a failed lookup is never taken for 'no record')"
                             % (bucket, key))
    try:
        return reconcile.record_from_tags(tag_dict(answer.get("TagSet")), key)
    except reconcile.RecordError as e:
        module.fail_json(msg="s3://%s/%s is not a launch record this module wrote: %s; refusing to touch it" % (bucket, key, e))


def delete_all_versions(module, s3, bucket, key, owner):
    """Deletes every version and delete marker of exactly `key` (not in check mode); how many there were."""
    found = []
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key, ExpectedBucketOwner=owner):
            found += [{"Key": v["Key"], "VersionId": v["VersionId"]}
                      for v in (page.get("Versions") or []) + (page.get("DeleteMarkers") or []) if v.get("Key") == key]
    except is_boto3_error_code("NoSuchBucket"):
        return 0
    except AWS_ERRORS as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg="Could not list the versions of s3://%s/%s" % (bucket, key))
    if found and not module.check_mode:
        try:
            answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": found, "Quiet": True}, ExpectedBucketOwner=owner, aws_retry=True)
        except AWS_ERRORS as e:
            module.fail_json_aws(e, msg="Could not delete s3://%s/%s" % (bucket, key))
        if answer.get("Errors"):
            module.fail_json(msg="Could not delete %d version(s) of s3://%s/%s: %s"
                             % (len(answer["Errors"]), bucket, key, answer["Errors"][0].get("Message")), errors=answer["Errors"])
    return len(found)


def plan_record(module, s3, bucket, key, owner, wanted, option=None):
    """Reads only: (current record or None, the record to have).  Fails (nothing written) when the
    record of this instance names another launch or a field cannot be recorded; `option` (e.g.
    ``launch_record``) prefixes that message with the option the caller set."""
    current = read_record(module, s3, bucket, key, owner)
    try:
        after = reconcile.merge_record(current, wanted)
        reconcile.record_tags(after)
    except reconcile.RecordError as e:
        module.fail_json(msg="%s%s" % ("%s: " % option if option else "", e))
    return current, after


def write_record(module, s3, bucket, key, owner, current, after, check_mode):
    """Writes `after` unless `current` has the same tags already; whether it changed (or would, in check mode)."""
    tags = reconcile.record_tags(after)
    if current is not None and reconcile.record_tags(current) == tags:
        return False
    if check_mode:
        return True
    try:
        if current is None:
            s3.put_object(Bucket=bucket, Key=key, Body=b"", ContentType="application/octet-stream", ExpectedBucketOwner=owner,
                          Tagging="&".join("%s=%s" % (quote(k, safe=""), quote(v, safe="")) for k, v in sorted(tags.items())), aws_retry=True)
        else:
            s3.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": boto3_tags(tags)}, ExpectedBucketOwner=owner, aws_retry=True)
    except AWS_ERRORS as e:
        module.fail_json_aws(e, msg="Could not write the launch record s3://%s/%s" % (bucket, key))
    return True


def ensure_record(module, s3, bucket, key, owner, wanted, check_mode, option=None):
    """Merges `wanted` into the record at `key` and writes it: (changed, before or None, after)."""
    current, after = plan_record(module, s3, bucket, key, owner, wanted, option=option)
    return write_record(module, s3, bucket, key, owner, current, after, check_mode), current, after
