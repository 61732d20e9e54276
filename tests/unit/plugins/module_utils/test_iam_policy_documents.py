"""_iam_policy.documents: the policy a stage gets."""
import json

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import documents
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import CONDITIONED_DENY_SIDS

INSTANCE_ARN = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"
KMS = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
BOOT = [("boot", "chef/validator.pem")]


def _build(stage="launch", **kwargs):
    args = dict(bootstrap_objects=BOOT)
    args.update(kwargs)
    return documents.build_policy(stage, "aws", "us-east-1", "keys", "volumes/web-01.key", INSTANCE_ARN, **args)


def _allows(policy):
    return [s for s in policy["Statement"] if s["Effect"] == "Allow"]


def test_every_allow_is_bound_to_the_instance():
    policy = _build(kms_key_arn=KMS)
    assert len(_allows(policy)) == 4
    for statement in _allows(policy):
        assert statement["Condition"]["ArnEquals"] == {"ec2:SourceInstanceARN": INSTANCE_ARN}


def test_no_unbound_policy_can_be_built():
    with pytest.raises(ValueError):
        documents.build_policy("launch", "aws", "us-east-1", "keys", "k", None)


def test_launch_reads_key_and_bootstrap_objects_and_tags_its_progress_only():
    allows = _allows(_build())
    assert [s["Action"] for s in allows] == ["s3:GetObject", "s3:GetObject", "ec2:CreateTags"]
    assert allows[0]["Resource"] == "arn:aws:s3:::keys/volumes/web-01.key"
    assert allows[1]["Resource"] == ["arn:aws:s3:::boot/chef/validator.pem"]
    progress = allows[2]
    assert progress["Sid"] == "TagOwnProgress" and progress["Resource"] == INSTANCE_ARN
    assert progress["Condition"] == {"ArnEquals": {"ec2:SourceInstanceARN": INSTANCE_ARN},
                                     "ForAllValues:StringLike": {"aws:TagKeys": "cloudefigo:progress*"},
                                     "Null": {"aws:TagKeys": "false"}}


def test_production_cannot_tag():
    assert not [s for s in _build("production", kms_key_arn=KMS)["Statement"] if "ec2:" in json.dumps(s.get("Action"))]


def test_production_drops_bootstrap_objects():
    allows = _allows(_build("production"))
    assert [s["Sid"] for s in allows] == ["ReadOwnVolumeKey"]


def test_kms_decrypt_only_via_s3_of_the_region():
    statement = [s for s in _build(kms_key_arn=KMS)["Statement"] if s.get("Sid") == "DecryptOwnVolumeKeyViaS3"][0]
    assert statement["Action"] == "kms:Decrypt"
    assert statement["Resource"] == KMS
    assert statement["Condition"]["StringEquals"] == {"kms:ViaService": "s3.us-east-1.amazonaws.com"}


@pytest.mark.parametrize("stage", ["launch", "production"])
@pytest.mark.parametrize("kms", [None, KMS])
@pytest.mark.parametrize("extra", [[], [{"Effect": "Allow", "Action": "ec2:DescribeTags", "Resource": "*"}]])
def test_without_the_switch_every_document_keeps_the_conditioned_denies(stage, kms, extra):
    policy = _build(stage, kms_key_arn=kms, extra_statements=extra)
    assert documents.conditioned_deny_sids(policy) == list(CONDITIONED_DENY_SIDS)
    with_switch = _build(stage, kms_key_arn=kms, extra_statements=extra, omit_conditioned_denies=True)
    assert documents.conditioned_deny_sids(with_switch) == []
    assert _allows(with_switch) == _allows(policy)


def test_deny_statements_follow_the_data_perimeter_pattern():
    by_sid = {s["Sid"]: s for s in _build()["Statement"] if "Sid" in s}
    vpc = by_sid["DenyOutsideInstanceVpc"]
    assert (vpc["Effect"], vpc["Action"], vpc["Resource"]) == ("Deny", "*", "*")
    assert vpc["Condition"] == {
        "StringNotEquals": {"aws:EC2InstanceSourceVPC": "${aws:SourceVpc}"},
        "Null": {"ec2:SourceInstanceARN": "false"},
        "BoolIfExists": {"aws:ViaAWSService": "false"},
    }
    assert by_sid["DenyOutsideInstancePrivateIp"]["Condition"]["StringNotEquals"] == {
        "aws:EC2InstanceSourcePrivateIPv4": "${aws:VpcSourceIp}"}
    assert by_sid["DenyImdsV1Credentials"]["Condition"] == {"NumericLessThan": {"ec2:RoleDelivery": "2.0"}}
    no_endpoint = by_sid["DenyKeyWithoutVpcEndpoint"]
    assert no_endpoint["Condition"] == {"Null": {"aws:SourceVpc": "true"}}
    assert no_endpoint["Resource"] == ["arn:aws:s3:::keys/volumes/web-01.key", "arn:aws:s3:::boot/chef/validator.pem"]


def test_no_iam_or_wildcard_allow():
    text = json.dumps(_allows(_build(kms_key_arn=KMS)))
    assert "iam:" not in text.lower()
    assert '"*"' not in text


def test_partition_is_used():
    policy = documents.build_policy("production", "aws-cn", "cn-north-1", "keys", "k",
                                    "arn:aws-cn:ec2:cn-north-1:123456789012:instance/i-0123456789abcdef0")
    assert policy["Statement"][0]["Resource"] == "arn:aws-cn:s3:::keys/k"


def test_extra_statements_appended_unchanged():
    extra = [{"Effect": "Allow", "Action": "ec2:DescribeTags", "Resource": "*"}]
    assert _build("production", extra_statements=extra)["Statement"][-1] == extra[0]
