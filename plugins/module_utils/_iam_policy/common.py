# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Names, owner marks and small IAM helpers shared by the _iam_policy modules.

Private to the collection: not a public API, may change without notice.
"""

from __future__ import annotations

import re

POLICY_NAME = "cloudefigo-instance"
# owned by instance_quarantine: instance_role never writes, deletes or counts it
QUARANTINE_POLICY_NAME = "cloudefigo-quarantine"
TAG_INSTANCE_ID = "cloudefigo:instance-id"
TAG_LAUNCH_ID = "cloudefigo:launch-id"
RESERVED_TAGS = (TAG_INSTANCE_ID, TAG_LAUNCH_ID)
DEFAULT_PATH = "/cloudefigo/"
LEGACY_PATH = "/"

KEY_SID = "ReadOwnVolumeKey"
BOOTSTRAP_SID = "ReadBootstrapObjects"
KMS_SID = "DecryptOwnVolumeKeyViaS3"
PROGRESS_SID = "TagOwnProgress"
PROGRESS_TAG = "cloudefigo:progress"
DENY_VPC_SID = "DenyOutsideInstanceVpc"
DENY_IP_SID = "DenyOutsideInstancePrivateIp"
DENY_IMDSV1_SID = "DenyImdsV1Credentials"
DENY_NO_ENDPOINT_SID = "DenyKeyWithoutVpcEndpoint"
CONDITIONED_DENY_SIDS = (DENY_VPC_SID, DENY_IP_SID, DENY_IMDSV1_SID, DENY_NO_ENDPOINT_SID)
RESERVED_SIDS = (KEY_SID, BOOTSTRAP_SID, KMS_SID, PROGRESS_SID) + CONDITIONED_DENY_SIDS

ROLE_NAME_RE = re.compile(r"^[\w+=,.@-]{1,64}$")
INSTANCE_ID_RE = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
LAUNCH_ID_RE = re.compile(r"^[\w+=,.@:/-]{1,128}$")
KMS_KEY_ARN_RE = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):kms:([a-z0-9-]+):(\d{12}):key/[0-9a-fA-F-]{1,64}$")


class ValidationError(Exception):
    """Bad module input; the message names the option."""


def as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def iam_pattern_match(pattern, value, ignore_case):
    """IAM wildcard matching: `*` any run of characters, `?` one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(pattern))
    return re.fullmatch(regex, value, re.IGNORECASE if ignore_case else 0) is not None


def s3_object_arn(partition, bucket, key):
    return "arn:%s:s3:::%s/%s" % (partition, bucket, key)


def instance_arn(partition, region, account_id, instance_id):
    return "arn:%s:ec2:%s:%s:instance/%s" % (partition, region, account_id, instance_id)
