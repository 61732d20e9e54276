"""Unit tests for module_utils/_key_custody: ownership decisions and the key bucket's policies."""
import json

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as kc

IID = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"
ARN = "arn:aws:ec2:us-east-1:123456789012:instance/" + IID
CONTROLLER = "arn:aws:iam::123456789012:role/cloudefigo/controller"
BREAK_GLASS = "arn:aws:iam::123456789012:role/break-glass"


def marked(instance_id=IID, launch_id="l1"):
    return kc.marks(instance_id, launch_id, "arn:aws:ec2:us-east-1:123456789012:instance/" + instance_id)


# --- ownership ---------------------------------------------------------------------------------
def test_own_key_is_owned():
    assert kc.ownership(marked(), IID, "l1", None, "key") == "own"
    # state=absent without launch_id compares the instance only
    assert kc.ownership(marked(), IID, None, None, "key") == "own"


@pytest.mark.parametrize("tags, launch_id, text", [
    (marked(OTHER, "l1"), "l1", "owned by instance %s, launch l1" % OTHER),
    (marked(OTHER, "l1"), None, "owned by instance %s" % OTHER),
    (marked(IID, "l0"), "l1", "not by launch l1"),
    ({kc.TAG_LAUNCH_ID: "l0"}, "l1", "owned by instance (none), launch l0"),
])
def test_foreign_key_is_refused_naming_the_owner(tags, launch_id, text):
    with pytest.raises(kc.CustodyError) as err:
        kc.ownership(tags, IID, launch_id, None, "key s3://b/k")
    assert text in str(err.value) and "s3://b/k" in str(err.value)


def test_adoption_never_takes_a_foreign_key():
    # adopt_instance_id only lifts the "no marks" refusal, never another owner's
    with pytest.raises(kc.CustodyError):
        kc.ownership(marked(OTHER, "l1"), IID, "l1", IID, "key")
    with pytest.raises(kc.CustodyError):
        kc.ownership(marked(IID, "l0"), IID, "l1", IID, "key")


def test_unmarked_key_needs_explicit_adoption():
    with pytest.raises(kc.CustodyError) as err:
        kc.ownership({"Name": "web-01"}, IID, "l1", None, "key")
    assert "adopt_instance_id=%s" % IID in str(err.value)
    assert kc.ownership({"Name": "web-01"}, IID, "l1", IID, "key") == "adopt"
    assert kc.ownership({}, IID, None, IID, "key") == "adopt"
    # marked for this instance but without a launch id (hand-made): adoption too
    assert kc.ownership({kc.TAG_INSTANCE_ID: IID}, IID, "l1", IID, "key") == "adopt"
    with pytest.raises(kc.CustodyError):
        kc.ownership({kc.TAG_INSTANCE_ID: IID}, IID, "l1", None, "key")


def test_user_tags_cannot_change_marks():
    marks = marked()
    assert kc.user_tags_problem({"Name": "x"}, marks) is None
    assert kc.user_tags_problem({kc.TAG_INSTANCE_ID: IID}, marks) is None  # same value: harmless
    assert "reserved" in kc.user_tags_problem({kc.TAG_INSTANCE_ID: OTHER}, marks)
    assert "reserved" in kc.user_tags_problem({kc.TAG_INSTANCE_ARN: "arn:aws:ec2:us-east-1:1:instance/" + OTHER}, marks)
    assert "at most 10" in kc.user_tags_problem(dict(("t%d" % i, "v") for i in range(8)), marks)


@pytest.mark.parametrize("caller, principal, role", [
    ("arn:aws:iam::123456789012:user/ops/alice", "arn:aws:iam::123456789012:user/ops/alice", None),
    ("arn:aws:sts::123456789012:user/moto", "arn:aws:iam::123456789012:user/moto", None),
    ("arn:aws:iam::123456789012:root", "arn:aws:iam::123456789012:root", None),
    ("arn:aws:sts::123456789012:assumed-role/controller/session-1", None, "controller"),
])
def test_caller_principal(caller, principal, role):
    assert kc.caller_principal(caller) == (principal, role)


def test_caller_principal_refuses_federated():
    with pytest.raises(kc.CustodyError):
        kc.caller_principal("arn:aws:sts::123456789012:federated-user/bob")


def test_principal_covers():
    assert kc.principal_covers([CONTROLLER], CONTROLLER)
    assert not kc.principal_covers([BREAK_GLASS], CONTROLLER)
    assert kc.principal_covers(["arn:aws:iam::123456789012:root"], CONTROLLER)
    assert not kc.principal_covers(["arn:aws:iam::999999999999:root"], CONTROLLER)


@pytest.mark.parametrize("check, value, ok", [
    (kc.instance_id_problem, IID, True),
    (kc.instance_id_problem, "i-12345678", True),
    (kc.instance_id_problem, "web-01", False),
    (kc.instance_id_problem, None, False),
    (kc.account_problem, "123456789012", True),
    (kc.account_problem, "12345", False),
    (kc.principal_problem, CONTROLLER, True),
    (kc.principal_problem, "arn:aws:sts::123456789012:assumed-role/c/s", False),
    (kc.principal_problem, "*", False),
    (kc.launch_id_problem, "20240501-web-01", True),
    (kc.launch_id_problem, "bad id with spaces", False),
])
def test_input_checks(check, value, ok):
    assert (check(value) is None) is ok


# --- bucket policy -----------------------------------------------------------------------------
def test_bucket_statements_bind_reads_to_the_instance_and_everything_else_to_controllers():
    statements = {s["Sid"]: s for s in kc.bucket_statements("aws", "keys", [CONTROLLER, BREAK_GLASS])}
    assert set(statements) == set(kc.BUCKET_SIDS)
    for statement in statements.values():
        # nothing is granted by the bucket policy: an unresolved variable can only keep a Deny in force
        assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Condition"]
    other = statements[kc.SID_READ_OTHER_INSTANCE]
    assert other["Action"] == ["s3:GetObject", "s3:GetObjectVersion"] and other["Resource"] == "arn:aws:s3:::keys/*"
    assert other["Condition"] == {"StringNotEquals": {"s3:ExistingObjectTag/cloudefigo:instance-arn": "${ec2:SourceInstanceARN}"}}
    # the variable's key absent (no instance) is denied by a statement of its own
    assert statements[kc.SID_READ_NO_INSTANCE]["Condition"] == {"Null": {"ec2:SourceInstanceARN": "true"}}
    assert statements[kc.SID_READ_IMDSV1]["Condition"] == {"NumericLessThan": {"ec2:RoleDelivery": "2.0"}}
    rest = statements[kc.SID_CONTROLLERS_ONLY]
    assert rest["NotAction"] == ["s3:GetObject", "s3:GetObjectVersion"] and "Action" not in rest
    assert rest["Resource"] == ["arn:aws:s3:::keys", "arn:aws:s3:::keys/*"]
    assert rest["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": sorted([CONTROLLER, BREAK_GLASS])}}
    tls = statements[kc.SID_TLS]
    assert tls["Action"] == "s3:*" and tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_without_the_lab_switch_every_document_keeps_its_conditioned_denies():
    policy = kc.merge_bucket_policy({}, kc.bucket_statements("aws", "keys", [CONTROLLER]))
    assert kc.conditioned_denies(policy) == sorted(kc.BUCKET_SIDS)
    # merged into a policy with statements of its own: still all there, theirs kept
    theirs = {"Sid": "Theirs", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::keys"}
    merged = kc.merge_bucket_policy({"Version": "2012-10-17", "Statement": [theirs]}, kc.bucket_statements("aws", "keys", [CONTROLLER]))
    assert kc.conditioned_denies(merged) == sorted(kc.BUCKET_SIDS)
    assert merged["Statement"][0] == theirs
    # other partitions too
    assert kc.conditioned_denies({"Statement": kc.bucket_statements("aws-cn", "keys", [CONTROLLER])}) == sorted(kc.BUCKET_SIDS)


def test_lab_switch_leaves_every_conditioned_deny_out_and_removes_ours():
    assert kc.bucket_statements("aws", "keys", [CONTROLLER], omit_conditioned_denies=True) == []
    ours = kc.merge_bucket_policy({}, kc.bucket_statements("aws", "keys", [CONTROLLER]))
    assert kc.merge_bucket_policy(ours, []) is None
    theirs = {"Sid": "Theirs", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::keys"}
    ours["Statement"].append(theirs)
    assert kc.merge_bucket_policy(ours, [])["Statement"] == [theirs]


def test_merge_replaces_stale_statements_by_sid_and_accepts_a_single_statement_dict():
    stale = dict(kc.bucket_statements("aws", "keys", [BREAK_GLASS])[-1])
    merged = kc.merge_bucket_policy({"Statement": stale}, kc.bucket_statements("aws", "keys", [CONTROLLER]))
    sids = [s["Sid"] for s in merged["Statement"]]
    assert len(sids) == len(set(sids)) == len(kc.BUCKET_SIDS)
    assert BREAK_GLASS not in json.dumps(merged)


# --- KMS ---------------------------------------------------------------------------------------
def test_kms_key_policy_names_the_controllers_and_never_lets_them_decrypt():
    policy = kc.kms_key_policy("aws", "eu-west-1", "123456789012", "keys", [CONTROLLER, BREAK_GLASS])
    assert kc.conditioned_denies(policy) == []  # no Deny here: the lab switch leaves it untouched
    admin, encrypt, decrypt = policy["Statement"]
    assert admin["Principal"] == {"AWS": sorted([CONTROLLER, BREAK_GLASS])}
    assert "kms:Decrypt" not in admin["Action"] and "kms:*" not in admin["Action"]
    assert encrypt["Principal"] == admin["Principal"] and encrypt["Action"] == ["kms:GenerateDataKey"]
    assert encrypt["Condition"]["StringEquals"] == {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Principal"] == {"AWS": "arn:aws:iam::123456789012:root"}
    assert decrypt["Condition"]["StringEquals"] == {"kms:ViaService": "s3.eu-west-1.amazonaws.com", "kms:CallerAccount": "123456789012"}
    assert decrypt["Condition"]["ArnLike"] == {"kms:EncryptionContext:aws:s3:arn": "arn:aws:s3:::keys/*"}


def test_kms_alias_is_injective_for_bucket_names():
    assert kc.kms_alias("keys") == "alias/cloudefigo/volume-keys/keys"
    assert kc.kms_alias("a.b") != kc.kms_alias("a-b")


@pytest.mark.parametrize("rules, needed", [
    ([], True),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}], True),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:k1"}}], False),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k1-id"}}], False),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:k1"}, "BucketKeyEnabled": True}], True),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:k2"}}], True),
])
def test_encryption_needs_change(rules, needed):
    assert kc.encryption_needs_change(rules, "arn:k1", ["k1-id"]) is needed


def test_encryption_rule_has_no_bucket_key():
    assert kc.encryption_rule("arn:k1") == {
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "arn:k1"}, "BucketKeyEnabled": False}


# --- copies ------------------------------------------------------------------------------------
def test_copies_problem():
    assert kc.copies_problem(None, None) is None
    assert kc.copies_problem({"Rules": []}, {"ObjectLockEnabled": "Disabled"}) is None
    problem = kc.copies_problem({"Role": "r", "Rules": [{"Destination": {"Bucket": "arn:aws:s3:::replica"}}]}, None)
    assert "replication" in problem and "arn:aws:s3:::replica" in problem
    assert "Object Lock" in kc.copies_problem(None, {"ObjectLockEnabled": "Enabled"})
