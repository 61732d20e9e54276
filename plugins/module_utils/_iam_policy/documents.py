# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The trust policy and the inline policy of a per-instance role.

Private to the collection: not a public API, may change without notice.

Every Allow is bound to the instance (``ec2:SourceInstanceARN``), which stops another instance
but travels with stolen credentials. The Deny statements make the credentials useless elsewhere,
following AWS's data-perimeter examples for EC2 role credentials:

- outside the instance's VPC: ``aws:EC2InstanceSourceVPC`` != ``${aws:SourceVpc}``;
- from another address: ``aws:EC2InstanceSourcePrivateIPv4`` != ``${aws:VpcSourceIp}``;
  both only for requests made with EC2 role credentials (``Null ec2:SourceInstanceARN = false``)
  and not for calls an AWS service makes on the role's behalf (``BoolIfExists
  aws:ViaAWSService = false``: S3 calling KMS to decrypt the key object);
- credentials delivered by IMDSv1 (``NumericLessThan ec2:RoleDelivery 2.0``);
- the key and bootstrap objects when the request carries no ``aws:SourceVpc`` (no S3 gateway
  endpoint): there ``${aws:SourceVpc}`` does not resolve and the first Deny does not match, so
  this explicit Deny keeps an unresolved variable from opening anything.

At the launch stage the instance may also set the tag ``cloudefigo:progress`` (and only keys that
start so) on itself and on nothing else: a self-configuring instance (pull mode) reports its steps
there. ``ForAllValues`` is true for an empty key set, hence the ``Null aws:TagKeys = false`` guard.
A progress tag is never evidence: the controller still checks Chef and the scan. The production
stage has no tag right at all.

moto treats every condition but StringEquals as met, so these Deny statements would block
everything in the lab: ``omit_conditioned_denies`` leaves them out (the module accepts it only
with a custom endpoint_url); their logic is proven with an IAM simulator (tests/iam_sim).
"""

from __future__ import annotations

import copy

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import BOOTSTRAP_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import DENY_IMDSV1_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import DENY_IP_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import DENY_NO_ENDPOINT_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import DENY_VPC_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import KEY_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import KMS_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import PROGRESS_SID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import PROGRESS_TAG
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import s3_object_arn

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

# requests signed with EC2 role credentials, made by the caller itself (not an AWS service on its behalf)
_OWN_EC2_CALL = {
    "Null": {"ec2:SourceInstanceARN": "false"},
    "BoolIfExists": {"aws:ViaAWSService": "false"},
}


def network_denies(object_arns):
    """The conditioned Deny statements (see the module docstring)."""
    vpc = copy.deepcopy(_OWN_EC2_CALL)
    vpc["StringNotEquals"] = {"aws:EC2InstanceSourceVPC": "${aws:SourceVpc}"}
    address = copy.deepcopy(_OWN_EC2_CALL)
    address["StringNotEquals"] = {"aws:EC2InstanceSourcePrivateIPv4": "${aws:VpcSourceIp}"}
    return [
        {"Sid": DENY_VPC_SID, "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": vpc},
        {"Sid": DENY_IP_SID, "Effect": "Deny", "Action": "*", "Resource": "*", "Condition": address},
        {"Sid": DENY_IMDSV1_SID, "Effect": "Deny", "Action": "*", "Resource": "*",
         "Condition": {"NumericLessThan": {"ec2:RoleDelivery": "2.0"}}},
        {"Sid": DENY_NO_ENDPOINT_SID, "Effect": "Deny", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
         "Resource": object_arns if len(object_arns) > 1 else object_arns[0],
         "Condition": {"Null": {"aws:SourceVpc": "true"}}},
    ]


def progress_statement(instance_arn):
    """ec2:CreateTags on the instance itself, for cloudefigo:progress* keys only (see the docstring)."""
    return {"Sid": PROGRESS_SID, "Effect": "Allow", "Action": "ec2:CreateTags", "Resource": instance_arn,
            "Condition": {"ArnEquals": {"ec2:SourceInstanceARN": instance_arn},
                          "ForAllValues:StringLike": {"aws:TagKeys": PROGRESS_TAG + "*"},
                          "Null": {"aws:TagKeys": "false"}}}


def build_policy(stage, partition, region, key_bucket, key_object, instance_arn, bootstrap_objects=None,
                 extra_statements=None, kms_key_arn=None, omit_conditioned_denies=False):
    """The inline policy document for a stage (launch or production) of one instance's role."""
    if not instance_arn:
        raise ValueError("build_policy needs the instance ARN: no statement may be unbound")
    bound = {"ArnEquals": {"ec2:SourceInstanceARN": instance_arn}}
    key_arn = s3_object_arn(partition, key_bucket, key_object)
    statements = [{"Sid": KEY_SID, "Effect": "Allow", "Action": "s3:GetObject", "Resource": key_arn,
                   "Condition": copy.deepcopy(bound)}]
    object_arns = [key_arn]
    if stage == "launch" and bootstrap_objects:
        bootstrap_arns = [s3_object_arn(partition, bucket, key) for bucket, key in bootstrap_objects]
        statements.append({"Sid": BOOTSTRAP_SID, "Effect": "Allow", "Action": "s3:GetObject",
                           "Resource": bootstrap_arns, "Condition": copy.deepcopy(bound)})
        object_arns += bootstrap_arns
    if stage == "launch":
        statements.append(progress_statement(instance_arn))
    if kms_key_arn:
        # only as S3 decrypting the key object for this instance (SSE-KMS), never directly
        condition = copy.deepcopy(bound)
        condition["StringEquals"] = {"kms:ViaService": "s3.%s.amazonaws.com" % region}
        statements.append({"Sid": KMS_SID, "Effect": "Allow", "Action": "kms:Decrypt", "Resource": kms_key_arn,
                           "Condition": condition})
    if not omit_conditioned_denies:
        statements.extend(network_denies(object_arns))
    statements.extend(copy.deepcopy(extra_statements or []))
    return {"Version": "2012-10-17", "Statement": statements}


def conditioned_deny_sids(policy):
    """Sids of the conditioned Deny statements a document carries (for tests and diffs)."""
    return [s.get("Sid") for s in policy.get("Statement", []) if s.get("Effect") == "Deny" and s.get("Condition")]
