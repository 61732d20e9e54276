#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: volume_key_info
short_description: Whether a volume key object exists in S3 and whose it is, without reading the key
version_added: 0.2.0
description:
  - Reads the versions of exactly O(object) in O(bucket) (C(ListObjectVersions)) and the ownership
    marks (C(cloudefigo:instance-id), C(cloudefigo:launch-id), C(cloudefigo:instance-arn)) of its
    newest version (C(GetObjectTagging)), the same calls and the same choice of version
    C(cloudefigo.core.volume_key) uses to decide whose a key is.
  - It never reads the object or its metadata (C(GetObject), C(HeadObject)); the key bucket's policy
    denies those to everyone but the owning instance, so C(amazon.aws.s3_object_info) gets C(403) there.
  - Every S3 request carries C(ExpectedBucketOwner) (O(expected_bucket_owner)).
  - A missing bucket or object is reported as RV(exists=false). Any other lookup error stops the
    module; it is never taken for "no key".
  - With O(objects), the same for several objects of the bucket in one call (RV(objects)), for
    example the keys of a whole batch before a launch.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  bucket:
    description:
      - Name of the S3 bucket that holds the keys.
    type: str
    required: true
  object:
    description:
      - Object key of the volume's key in O(bucket), for example C(volumes/web-01.key). Objects whose
        keys merely start with it are not considered.
      - Exactly one of O(object) and O(objects) is required.
    type: str
  objects:
    description:
      - Several object keys of O(bucket), each looked up as O(object) is; the answers are in RV(objects),
        in the same order.
    type: list
    elements: str
  expected_bucket_owner:
    description:
      - Account id that must own O(bucket); sent as C(ExpectedBucketOwner) with every S3 request.
      - Defaults to the caller's account (C(sts:GetCallerIdentity)).
    type: str
attributes:
  check_mode:
    description: The module only reads; it runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing is changed, so there is no diff.
    support: none
notes:
  - The marks are read from the current version, or, when a delete marker is on top, from the newest
    older version (RV(owner) then still names who owns the name, as C(cloudefigo.core.volume_key) sees it).
  - The caller needs C(s3:ListBucketVersions) on the bucket and C(s3:GetObjectVersionTagging) on the
    object, which the key bucket's policy leaves to its controller principals.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Whose is web-01's volume key?
  cloudefigo.core.volume_key_info:
    bucket: cloudefigo-keys
    object: volumes/web-01.key
  register: web_key

- name: Stop when another launch owns it
  ansible.builtin.assert:
    that: web_key.owner is none or web_key.owner.launch_id == launch_id

- name: The keys of a whole batch, in one call
  cloudefigo.core.volume_key_info:
    bucket: cloudefigo-keys
    objects: [volumes/web-01.key, volumes/web-02.key]
  register: batch_keys
"""

RETURN = r"""
bucket:
  description: The bucket.
  returned: always
  type: str
  sample: cloudefigo-keys
objects:
  description: With O(objects), one entry per object, in the order given, each with RV(object), RV(exists),
    RV(versions), RV(delete_marker_current) and RV(owner) as for O(object).
  returned: with O(objects)
  type: list
  elements: dict
  sample: [{"object": "volumes/web-01.key", "exists": false, "versions": 0, "delete_marker_current": false, "owner": null}]
object:
  description: The object key.
  returned: with O(object)
  type: str
  sample: volumes/web-01.key
exists:
  description: Whether the object has a current version (a version that is not a delete marker).
  returned: with O(object)
  type: bool
  sample: true
versions:
  description: Number of versions of exactly O(object) (delete markers not counted).
  returned: with O(object)
  type: int
  sample: 1
delete_marker_current:
  description: Whether the object's current version is a delete marker.
  returned: with O(object)
  type: bool
  sample: false
owner:
  description:
    - The ownership marks of the newest version; null when there is no version or it carries no marks.
  returned: with O(object)
  type: dict
  contains:
    instance_id:
      description: The C(cloudefigo:instance-id) mark (null when missing).
      type: str
      sample: i-0123456789abcdef0
    launch_id:
      description: The C(cloudefigo:launch-id) mark (null when missing).
      type: str
      sample: launch-2026-11-29
    instance_arn:
      description: The C(cloudefigo:instance-arn) mark (null when missing).
      type: str
      sample: arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0
expected_bucket_owner:
  description: The account id sent as C(ExpectedBucketOwner).
  returned: always
  type: str
  sample: "123456789012"
"""

try:
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError

    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_key_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict


def validate(params):
    """The first problem with the module's input (a message naming the option), or None."""
    problem = s3_bucket_name_problem(params["bucket"])
    if problem:
        return "bucket %r is not a valid S3 bucket name: %s" % (params["bucket"], problem)
    for name, key in [("object", params["object"])] if params.get("object") is not None else [
            ("objects[%d]" % index, key) for index, key in enumerate(params.get("objects") or [])]:
        problem = s3_key_problem(key)
        if problem:
            return "%s is not a usable S3 object key: %s" % (name, problem)
    if params.get("expected_bucket_owner") is not None:
        problem = custody.account_problem(params["expected_bucket_owner"])
        if problem:
            return "expected_bucket_owner " + problem
    return None


def look_up(module, s3, bucket, key, owner):
    """The module's result for s3://bucket/key (reads only); fails the module on any lookup error but 'no such bucket'."""
    where = "s3://%s/%s" % (bucket, key)
    result = {"exists": False, "versions": 0, "delete_marker_current": False, "owner": None}
    try:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key, ExpectedBucketOwner=owner)
        versions, markers = custody.key_versions(pages, key)
    except is_boto3_error_code("NoSuchBucket"):
        return result
    except AWS_ERRORS as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg="Could not list the versions of %s (is bucket owned by account %s, expected_bucket_owner?); "
                                    "a failed lookup is never taken for 'no key'" % (where, owner))
    newest = custody.newest_version(versions)
    result["versions"] = len(versions)
    result["exists"] = any(v.get("IsLatest") for v in versions)
    result["delete_marker_current"] = any(m.get("IsLatest") for m in markers)
    if newest is not None:
        try:
            answer = s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=newest["VersionId"], ExpectedBucketOwner=owner, aws_retry=True)
        except AWS_ERRORS as e:
            module.fail_json_aws(e, msg="Could not read the tags of version %s of %s (bucket %s, expected_bucket_owner %s); "
                                        "a failed lookup is never taken for 'no owner'" % (newest["VersionId"], where, bucket, owner))
        result["owner"] = custody.key_owner(tag_dict(answer.get("TagSet")))
    return result


def main():
    argument_spec = dict(
        bucket=dict(type="str", required=True),
        object=dict(type="str"),
        objects=dict(type="list", elements="str"),
        expected_bucket_owner=dict(type="str"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True,
                              required_one_of=[("object", "objects")], mutually_exclusive=[("object", "objects")])
    problem = validate(module.params)
    if problem:
        module.fail_json(msg=problem)

    owner = module.params.get("expected_bucket_owner")
    if owner is None:
        sts = retrying_client(module, "sts")
        try:
            owner = sts.get_caller_identity(aws_retry=True)["Account"]
        except AWS_ERRORS as e:
            module.fail_json_aws(e, msg="Could not identify the caller (sts:GetCallerIdentity) to default expected_bucket_owner: "
                                        "set expected_bucket_owner")
    s3 = retrying_client(module, "s3")
    bucket = module.params["bucket"]
    if module.params["objects"] is not None:
        found = [dict(look_up(module, s3, bucket, key, owner), object=key) for key in module.params["objects"]]
        module.exit_json(changed=False, bucket=bucket, objects=found, expected_bucket_owner=owner)
    result = look_up(module, s3, bucket, module.params["object"], owner)
    module.exit_json(changed=False, bucket=bucket, object=module.params["object"], expected_bucket_owner=owner, **result)


if __name__ == "__main__":
    main()
