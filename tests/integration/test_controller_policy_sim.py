"""The controller's policy (playbooks/controller_policy.yml) evaluated by the IAM simulator.

moto checks the actions of the policy (test_controller_policy.py) but scopes no IAM, EC2 or KMS
resource and evaluates no condition but StringEquals. What only resources and conditions decide is
proven here, on the policy exactly as rendered, with @cloud-copilot/iam-simulate (tests/iam_sim,
checked against AWS's documented examples in test_iam_sim_harness.py): roles only under
/cloudefigo/, iam:PassRole only of those roles and only to EC2, the permissions boundary on role
writes, S3 writes only in the named buckets and never a read of a volume key, termination only of
launched instances, the bucket's KMS key only, and the optional quarantine statement.
No lab needed: the playbook renders locally. The reference renderings in docs/ are checked here too.
"""
import json
import os
import subprocess
import sys
import tempfile

import pytest

from _iam_sim import ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY, Case, simulate

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLAYBOOK = os.path.join(ROOT, "playbooks", "controller_policy.yml")
ACCOUNT = "111122223333"
OTHER = "444455556666"
CONTROLLER = "arn:aws:iam::%s:role/cloudefigo-controller" % ACCOUNT
BOUNDARY = "arn:aws:iam::%s:policy/cloudefigo-instance-boundary" % ACCOUNT
KEY_BUCKET = "example-volume-keys"
ROLE = "arn:aws:iam::%s:role/cloudefigo/cloudefigo-web-1" % ACCOUNT
PROFILE = "arn:aws:iam::%s:instance-profile/cloudefigo/cloudefigo-web-1" % ACCOUNT
# the settings docs/controller-policy.json and docs/controller-policy-quarantine.json are rendered with
REFERENCE_SETTINGS = os.path.join(ROOT, "docs", "controller-policy-reference.yml")


def render(settings_file=None, **settings):
    """(controller policy, quarantine policy or None) as playbooks/controller_policy.yml writes them."""
    with tempfile.TemporaryDirectory() as workdir:
        dest, quarantine_dest = os.path.join(workdir, "c.json"), os.path.join(workdir, "q.json")
        extra = dict({"controller_policy_account_id": ACCOUNT, "controller_policy_key_bucket": KEY_BUCKET,
                      "controller_policy_dest": dest, "controller_policy_quarantine_dest": quarantine_dest}, **settings)
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
                   ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
                   ANSIBLE_PYTHON_INTERPRETER=sys.executable, ANSIBLE_NOCOLOR="1")
        files = ["-e", "@" + settings_file] if settings_file else []
        proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), PLAYBOOK, "-i", "localhost,"]
                              + files + ["-e", json.dumps(extra)], cwd=ROOT, env=env, capture_output=True, text=True, check=False,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        with open(dest) as handle:
            controller = json.load(handle)
        quarantine = None
        if os.path.exists(quarantine_dest):
            with open(quarantine_dest) as handle:
                quarantine = json.load(handle)
        return controller, quarantine


@pytest.fixture(scope="module")
def plain():
    return render()


@pytest.fixture(scope="module")
def full():
    return render(REFERENCE_SETTINGS)


def _policies(rendered):
    return [p for p in rendered if p]


# KMS needs its key policy to allow too: the default key policy, which leaves the decision to IAM
DEFAULT_KEY_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::%s:root" % ACCOUNT}, "Action": "kms:*", "Resource": "*"}]}


def _case(rendered, action, resource, context=None):
    key_policy = DEFAULT_KEY_POLICY if action.startswith("kms:") and resource != "*" else None
    return Case(CONTROLLER, action, resource, identity_policies=_policies(rendered), context=context or {},
                resource_policy=key_policy)


def _results(cases):
    results = simulate(cases)
    for case, result in zip(cases, results):
        assert result.result in (ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY), (case, result)
        # a key the case relies on must reach the evaluation, or the case proves nothing
        assert not set(case.context) & set(result.ignored_context_keys), (case.action, result.ignored_context_keys)
    return [r.result for r in results]


def test_reference_renderings_in_docs_are_current(full):
    controller, quarantine = full
    with open(os.path.join(ROOT, "docs", "controller-policy.json")) as handle:
        assert json.load(handle) == controller
    with open(os.path.join(ROOT, "docs", "controller-policy-quarantine.json")) as handle:
        assert json.load(handle) == quarantine


def test_no_wildcard_service_and_no_unscoped_write(full):
    for policy in _policies(full):
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not [a for a in actions if a in ("*", "*:*") or a.endswith(":*")], statement
            assert "NotAction" not in statement and "NotResource" not in statement
            if statement["Effect"] == "Allow" and statement["Resource"] == "*" and "Condition" not in statement:
                # Resource "*" only for calls that accept no resource: reads of the account
                assert all(a.split(":")[1].startswith(("Describe", "Get", "List")) for a in actions), statement


def test_optional_parts_only_when_asked(plain):
    controller, quarantine = plain
    sids = [s["Sid"] for s in controller["Statement"]]
    assert quarantine is None
    assert "InstanceRoleWritesOnlyWithTheBoundary" not in sids
    assert not [s for s in sids if "Audit" in s or "CloudTrail" in s or "Data" in s]


def test_roles_only_under_the_path_and_passrole_only_to_ec2(plain):
    results = _results([
        _case(plain, "iam:CreateRole", ROLE),
        _case(plain, "iam:CreateRole", "arn:aws:iam::%s:role/cloudefigo-web-1" % ACCOUNT),  # path /
        _case(plain, "iam:CreateRole", "arn:aws:iam::%s:role/admin/cloudefigo-web-1" % ACCOUNT),
        _case(plain, "iam:CreateRole", "arn:aws:iam::%s:role/cloudefigo/x" % OTHER),
        _case(plain, "iam:PutRolePolicy", ROLE),
        _case(plain, "iam:PutRolePolicy", "arn:aws:iam::%s:role/app" % ACCOUNT),
        _case(plain, "iam:AttachRolePolicy", ROLE),
        _case(plain, "iam:DeleteRole", "arn:aws:iam::%s:role/app" % ACCOUNT),
        _case(plain, "iam:CreateInstanceProfile", PROFILE),
        _case(plain, "iam:CreateInstanceProfile", "arn:aws:iam::%s:instance-profile/app" % ACCOUNT),
        _case(plain, "iam:PassRole", ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}),
        _case(plain, "iam:PassRole", ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
        _case(plain, "iam:PassRole", ROLE),
        _case(plain, "iam:PassRole", "arn:aws:iam::%s:role/admin" % ACCOUNT, {"iam:PassedToService": "ec2.amazonaws.com"}),
        _case(plain, "iam:CreateUser", "arn:aws:iam::%s:user/x" % ACCOUNT),
        _case(plain, "sts:AssumeRole", ROLE),
    ])
    assert results == [ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, IMPLICIT_DENY, ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY,
                       IMPLICIT_DENY, ALLOWED, IMPLICIT_DENY, ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, IMPLICIT_DENY,
                       IMPLICIT_DENY, IMPLICIT_DENY]


def test_role_writes_need_the_boundary_when_one_is_set(full, plain):
    other = "arn:aws:iam::%s:policy/wide-open" % ACCOUNT
    cases = []
    # the controller's policy alone: the quarantine policy writes any role (test_quarantine_...)
    controller = (full[0], None)
    for action in ("iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"):
        cases += [_case(controller, action, ROLE, {"iam:PermissionsBoundary": BOUNDARY}),
                  _case(controller, action, ROLE, {"iam:PermissionsBoundary": other}),
                  _case(controller, action, ROLE)]
    # without a boundary setting the same create is allowed: the condition is what denies above
    cases.append(_case(plain, "iam:CreateRole", ROLE))
    assert _results(cases) == [ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY] * 3 + [ALLOWED]


def test_s3_writes_only_in_the_named_buckets_and_no_key_read(full):
    key = "arn:aws:s3:::%s/volumes/web-1.key" % KEY_BUCKET
    results = _results([
        _case(full, "s3:PutObject", key),
        _case(full, "s3:DeleteObjectVersion", key),
        _case(full, "s3:GetObject", key),
        _case(full, "s3:GetObjectVersion", key),
        _case(full, "s3:PutObject", "arn:aws:s3:::%s/elsewhere/x" % KEY_BUCKET),
        _case(full, "s3:PutObject", "arn:aws:s3:::another-bucket/x"),
        _case(full, "s3:PutBucketPolicy", "arn:aws:s3:::another-bucket"),
        _case(full, "s3:PutObject", "arn:aws:s3:::example-audit-reports/state/x.json"),
        _case(full, "s3:PutObject", "arn:aws:s3:::example-cloudtrail-logs/AWSLogs/x"),
        _case(full, "s3:GetObject", "arn:aws:s3:::example-cloudtrail-logs/AWSLogs/x"),
        _case(full, "s3:PutObject", "arn:aws:s3:::example-quarantine-evidence/case/x.json"),
    ])
    assert results == [ALLOWED, ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, IMPLICIT_DENY, IMPLICIT_DENY, IMPLICIT_DENY,
                       ALLOWED, IMPLICIT_DENY, ALLOWED, ALLOWED]


def test_terminate_only_launched_instances_in_the_account(plain):
    instance = "arn:aws:ec2:eu-west-1:%s:instance/i-0123456789abcdef0" % ACCOUNT
    launched = {"aws:ResourceTag/cloudefigo:launch-id": "20260101T000000Z-1"}
    results = _results([
        _case(plain, "ec2:TerminateInstances", instance, launched),
        _case(plain, "ec2:TerminateInstances", instance),
        _case(plain, "ec2:TerminateInstances", "arn:aws:ec2:eu-west-1:%s:instance/i-0123456789abcdef0" % OTHER, launched),
        _case(plain, "ec2:DeleteVolume", "arn:aws:ec2:eu-west-1:%s:volume/vol-0123456789abcdef0" % ACCOUNT, launched),
        _case(plain, "ec2:DeleteVolume", "arn:aws:ec2:eu-west-1:%s:volume/vol-0123456789abcdef0" % ACCOUNT),
    ])
    assert results == [ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, ALLOWED, IMPLICIT_DENY]


def test_only_the_key_buckets_own_kms_key(plain):
    key = "arn:aws:kms:eu-west-1:%s:key/11111111-2222-3333-4444-555555555555" % ACCOUNT
    results = _results([
        _case(plain, "kms:CreateKey", "*", {"aws:RequestTag/cloudefigo:key-bucket": KEY_BUCKET,
                                            "aws:TagKeys": ["cloudefigo:key-bucket"]}),
        _case(plain, "kms:CreateKey", "*", {"aws:RequestTag/cloudefigo:key-bucket": "another-bucket",
                                            "aws:TagKeys": ["cloudefigo:key-bucket"]}),
        _case(plain, "kms:CreateKey", "*"),
        _case(plain, "kms:PutKeyPolicy", key, {"aws:ResourceTag/cloudefigo:key-bucket": KEY_BUCKET}),
        _case(plain, "kms:PutKeyPolicy", key, {"aws:ResourceTag/cloudefigo:key-bucket": "another-bucket"}),
        _case(plain, "kms:PutKeyPolicy", key),
        # the controller never decrypts: reading volume keys is the instances' business
        _case(plain, "kms:Decrypt", key, {"aws:ResourceTag/cloudefigo:key-bucket": KEY_BUCKET}),
    ])
    assert results == [ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, IMPLICIT_DENY]


def test_given_kms_key_only_that_key(plain):
    given = "arn:aws:kms:eu-west-1:%s:key/11111111-2222-3333-4444-555555555555" % ACCOUNT
    rendered = render(controller_policy_key_bucket_kms_key_arn=given)
    sids = [s["Sid"] for s in rendered[0]["Statement"]]
    assert "CreateTheKeyBucketKmsKey" not in sids and "UseTheKeyBucketKmsKey" in sids
    results = _results([
        _case(rendered, "kms:GenerateDataKey", given),
        _case(rendered, "kms:GenerateDataKey", given.replace("1111", "9999")),
        _case(rendered, "kms:CreateKey", "*", {"aws:RequestTag/cloudefigo:key-bucket": KEY_BUCKET,
                                               "aws:TagKeys": ["cloudefigo:key-bucket"]}),
        _case(rendered, "kms:PutKeyPolicy", given),
    ])
    assert results == [ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, IMPLICIT_DENY]


def test_quarantine_statement_reaches_any_role_but_the_protected_ones(full, plain):
    foreign = "arn:aws:iam::%s:role/apps/shadow-app" % ACCOUNT
    results = _results([
        _case(plain, "iam:PutRolePolicy", foreign),
        _case(full, "iam:PutRolePolicy", foreign),
        _case(full, "iam:DeleteRolePolicy", foreign),
        _case(full, "iam:PutRolePolicy", CONTROLLER),
        # the risk documented in docs/controller-policy.md: no condition names the inline policy, and
        # the quarantine statement carries no boundary condition, so it also writes instance roles
        _case(full, "iam:PutRolePolicy", ROLE),
        _case(full, "iam:AttachRolePolicy", foreign),
        _case(full, "iam:PassRole", foreign, {"iam:PassedToService": "ec2.amazonaws.com"}),
    ])
    assert results == [IMPLICIT_DENY, ALLOWED, ALLOWED, EXPLICIT_DENY, ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY]
