# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Checks of instance_role's options that need no AWS call.

Private to the collection: not a public API, may change without notice.
"""

from __future__ import annotations

import re

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import partition_for_region
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_key_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import INSTANCE_ID_RE
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import KMS_KEY_ARN_RE
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import LAUNCH_ID_RE
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import RESERVED_TAGS
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import ROLE_NAME_RE
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import ValidationError
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.guard import validate_extra_statements


def parse_bootstrap_objects(items, key_bucket=None):
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
        if "*" in key or "?" in key or "${" in key:
            raise ValidationError("%s: wildcards and policy variables are not allowed in %r; name each object" % (where, key))
        if key_bucket is not None and bucket == key_bucket:
            raise ValidationError(
                "%s: %s/%s is inside key_bucket, which holds volume keys only; keep bootstrap objects in "
                "another bucket" % (where, bucket, key))
        parsed.append((bucket, key))
    return sorted(set(parsed))


def _check_id(option, value, regex, what):
    if value is not None and not regex.match(value):
        raise ValidationError("%s %r is not %s" % (option, value, what))


def validate(params):
    """Checks that need no AWS call; returns (bootstrap_objects as tuples, warnings)."""
    name = params["name"]
    if not ROLE_NAME_RE.match(name or ""):
        raise ValidationError("name %r is not a valid IAM role name: use at most 64 letters, digits and +=,.@_-" % name)
    stage = params["stage"]
    if stage not in ("launch", "production", "absent"):  # AnsibleModule's choices check runs first; kept for direct callers
        raise ValidationError("stage must be one of launch, production, absent, got %r" % stage)
    instance_id = params.get("instance_id")
    if not instance_id:
        raise ValidationError(
            "instance_id is required for every stage: a role is bound to its instance from creation on "
            "(launch the instance without a profile, then run stage=launch with its id)")
    _check_id("instance_id", instance_id, INSTANCE_ID_RE, "an EC2 instance ID (i- followed by 8 or 17 hex digits)")
    _check_id("launch_id", params.get("launch_id"), LAUNCH_ID_RE, "a launch id (1-128 letters, digits and +=,.@:/_-)")
    adopt = params.get("adopt_instance_id")
    if adopt is not None and adopt != instance_id:
        raise ValidationError(
            "adopt_instance_id %s must equal instance_id %s: adoption binds a 0.1.0 role to the instance it "
            "was made for" % (adopt, instance_id))
    path = params.get("path") or "/"
    if not re.match(r"^/([\x21-\x7e]*/)?$", path):
        raise ValidationError("path must begin and end with / (for example /cloudefigo/)")
    reserved = sorted(set(params.get("tags") or {}) & set(RESERVED_TAGS))
    if reserved:
        raise ValidationError(
            "tags: %s are reserved for the owner marks the module writes from instance_id and launch_id; "
            "remove them from tags" % ", ".join(reserved))
    if params.get("omit_conditioned_denies") and not params.get("endpoint_url"):
        raise ValidationError(
            "omit_conditioned_denies is a lab switch for moto and is accepted only together with a custom "
            "endpoint_url; against AWS the Deny statements are what keeps stolen credentials useless")
    if stage == "absent":
        return [], []
    if not params.get("launch_id"):
        raise ValidationError("stage=%s needs launch_id (the launch that owns this instance's role)" % stage)
    for option in ("key_bucket", "key_object"):
        if params.get(option) is None:
            raise ValidationError("stage=%s needs %s (the instance's volume key location)" % (stage, option))
    problem = s3_bucket_name_problem(params["key_bucket"])
    if problem:
        raise ValidationError("key_bucket %r is not a valid S3 bucket name: %s" % (params["key_bucket"], problem))
    problem = s3_key_problem(params["key_object"])
    if problem:
        raise ValidationError("key_object is not usable: %s" % problem)
    if "*" in params["key_object"] or "?" in params["key_object"] or "${" in params["key_object"]:
        raise ValidationError("key_object must name one object; wildcards and policy variables are not allowed")
    boundary = params.get("permissions_boundary")
    if boundary is not None and not re.match(r"^arn:[\w-]+:iam::(\d{12}|aws):policy/", boundary):
        raise ValidationError("permissions_boundary must be the ARN of a managed policy (arn:aws:iam::ACCOUNT:policy/NAME)")
    kms_key_arn = params.get("kms_key_arn")
    if kms_key_arn is not None:
        match = KMS_KEY_ARN_RE.match(kms_key_arn)
        if not match:
            raise ValidationError("kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); aliases are not accepted")
        if params.get("region") and match.group(2) != params["region"]:
            raise ValidationError(
                "kms_key_arn is in region %s, the key bucket's S3 in %s: S3 can only use a key of its own region"
                % (match.group(2), params["region"]))
    bootstrap = parse_bootstrap_objects(params.get("bootstrap_objects"), params["key_bucket"])
    region = params.get("region")
    warnings = validate_extra_statements(
        params.get("extra_statements"), partition_for_region(region), params["key_bucket"],
        params.get("allow_privileged_statements"), params["key_object"], instance_id, region)
    return bootstrap, warnings
