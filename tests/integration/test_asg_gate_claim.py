"""The Auto Scaling gate's claim (asg_gate_claim): atomic, and out of reach of everyone but the controllers.

0. The controller's own policy (playbooks/controller_policy.yml with controller_policy_asg_gate)
   grants what the gate calls, for the named groups and queue only.
1. Who can pre-create a claim (which would keep the gate away from an instance until its hook times
   out): the key bucket's policy -- the statements volume_key writes, computed by the same code --
   evaluated by the IAM simulator (tests/iam_sim): a principal of the account with s3:* (an
   administrator, the gated instance's own role) is denied PutObject on the claim; a controller is
   allowed. asg_gate_claim refuses a bucket whose policy lacks that statement.
2. The module against moto: of two claims for one instance only the first is written (If-None-Match),
   the same run's retry keeps it, check mode writes nothing, and a claim marked for another
   instance is never deleted.
"""
import json
import os

import pytest

from _iam_sim import ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY, Case, simulate
from _lab import ROOT, run_aws_module, run_playbook
from ansible_collections.cloudefigo.core.plugins.module_utils import _asg_gate as gate
from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody

ACCOUNT = "123456789012"
BUCKET = "claim-keys"
INSTANCE = "i-0123456789abcdef0"
CLAIM = "arn:aws:s3:::%s/claims/asg-gate/%s.claim" % (BUCKET, INSTANCE)
CONTROLLER = "arn:aws:iam::%s:role/cloudefigo-controller" % ACCOUNT
ADMIN = "arn:aws:iam::%s:role/ops-admin" % ACCOUNT
INSTANCE_ROLE = "arn:aws:iam::%s:role/cloudefigo-%s" % (ACCOUNT, INSTANCE)
BROAD = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*"], "Resource": "*"}]}


def _session(role_arn):
    return "arn:aws:sts::%s:assumed-role/%s/session" % (ACCOUNT, role_arn.split("/")[-1])


def test_only_a_controller_can_write_a_claim():
    policy = custody.merge_bucket_policy({}, custody.bucket_statements("aws", BUCKET, [CONTROLLER]))
    assert gate.bucket_guards_claims(policy, "aws", BUCKET)
    context = {"aws:SecureTransport": "true", "aws:ViaAWSService": "false"}
    who = [(ADMIN, EXPLICIT_DENY), (INSTANCE_ROLE, EXPLICIT_DENY), (CONTROLLER, ALLOWED)]
    cases = []
    for principal, _expected in who:
        for action in ("s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObjectVersion"):
            cases.append(Case(_session(principal), action, CLAIM, identity_policies=[BROAD], resource_policy=policy,
                              context=dict(context, **{"aws:PrincipalArn": principal})))
    results = simulate(cases)
    expected = [e for _p, e in who for _a in range(3)]
    assert [r.result for r in results] == expected, [(c.principal, c.action, r.result) for c, r in zip(cases, results)]
    # the statement that denies is volume_key's controllers-only statement: without it the admin may
    without = {"Version": policy["Version"], "Statement": [s for s in policy["Statement"] if s["Sid"] != custody.SID_CONTROLLERS_ONLY]}
    assert not gate.bucket_guards_claims(without, "aws", BUCKET)
    got = simulate([Case(_session(ADMIN), "s3:PutObject", CLAIM, identity_policies=[BROAD], resource_policy=without,
                         context=dict(context, **{"aws:PrincipalArn": ADMIN}))])
    assert got[0].result == ALLOWED


@pytest.fixture
def claim_bucket(aws):
    aws.client("s3").create_bucket(Bucket=BUCKET)
    return aws.client("s3")


def _claim(lab, **args):
    return run_aws_module(lab, "asg_gate_claim", **dict({"bucket": BUCKET, "instance_id": INSTANCE}, **args))


def test_claim_module_refuses_a_bucket_that_does_not_guard_claims(lab, claim_bucket):
    out = _claim(lab, run_id="run-a")
    assert out.get("failed") and custody.SID_CONTROLLERS_ONLY in out["msg"], out
    assert claim_bucket.list_object_versions(Bucket=BUCKET).get("Versions", []) == []


def test_claim_is_written_once(lab, claim_bucket):
    switch = {"omit_conditioned_denies": True}
    check = _claim(lab, run_id="run-a", _ansible_check_mode=True, **switch)
    assert check["changed"] and check["claimed"], check
    assert claim_bucket.list_object_versions(Bucket=BUCKET).get("Versions", []) == []

    first = _claim(lab, run_id="run-a", group_name="web", **switch)
    assert first["changed"] and first["claimed"] and first["holder"]["run_id"] == "run-a", first
    second = _claim(lab, run_id="run-b", group_name="web", **switch)
    assert not second["changed"] and not second["claimed"] and second["holder"]["run_id"] == "run-a", second
    again = _claim(lab, run_id="run-a", **switch)
    assert not again["changed"] and again["claimed"], again
    versions = claim_bucket.list_object_versions(Bucket=BUCKET)["Versions"]
    assert len(versions) == 1
    tags = {t["Key"]: t["Value"] for t in claim_bucket.get_object_tagging(Bucket=BUCKET, Key=versions[0]["Key"])["TagSet"]}
    assert tags["cloudefigo:claim-run"] == "run-a" and tags["cloudefigo:instance-id"] == INSTANCE

    # a claim object marked for another instance is never deleted
    other = "claims/asg-gate/i-0fedcba9876543210.claim"
    claim_bucket.put_object(Bucket=BUCKET, Key=other, Body=b"{}", Tagging="cloudefigo:instance-id=%s" % INSTANCE)
    refused = run_aws_module(lab, "asg_gate_claim", bucket=BUCKET, instance_id="i-0fedcba9876543210", state="absent")
    assert refused.get("failed") and "not i-0fedcba9876543210" in refused["msg"], refused
    gone = _claim(lab, state="absent")
    assert gone["changed"] and gone["deleted_versions"] == 1, gone
    assert [v["Key"] for v in claim_bucket.list_object_versions(Bucket=BUCKET).get("Versions", [])] == [other]
    assert not _claim(lab, state="absent")["changed"]


def test_controller_policy_grants_the_gate_its_calls_and_no_more(lab, tmp_path):
    dest = str(tmp_path / "controller.json")
    queue = "arn:aws:sqs:us-east-1:%s:lifecycle" % ACCOUNT
    result = run_playbook(lab, os.path.join(ROOT, "playbooks", "controller_policy.yml"), json_output=False, extra_vars={
        "controller_policy_account_id": ACCOUNT, "controller_policy_key_bucket": BUCKET, "controller_policy_dest": dest,
        "controller_policy_asg_gate": True, "controller_policy_asg_group_names": ["web"], "controller_policy_asg_queue_arns": [queue]})
    assert result.rc == 0, result.stdout[-3000:]
    with open(dest) as handle:
        policy = json.load(handle)
    group = "arn:aws:autoscaling:us-east-1:%s:autoScalingGroup:%s:autoScalingGroupName/%s"
    bucket_policy = custody.merge_bucket_policy({}, custody.bucket_statements("aws", BUCKET, [CONTROLLER]))
    context = {"aws:SecureTransport": "true", "aws:PrincipalArn": CONTROLLER}
    matrix = [
        ("autoscaling:DescribeAutoScalingInstances", "*", ALLOWED),
        ("autoscaling:CompleteLifecycleAction", group % (ACCOUNT, "0a1b2c3d-1111-2222-3333-444455556666", "web"), ALLOWED),
        ("autoscaling:RecordLifecycleActionHeartbeat", group % (ACCOUNT, "0a1b2c3d-1111-2222-3333-444455556666", "web"), ALLOWED),
        ("autoscaling:CompleteLifecycleAction", group % (ACCOUNT, "0a1b2c3d-1111-2222-3333-444455556666", "other"), IMPLICIT_DENY),
        ("sqs:DeleteMessage", queue, ALLOWED),
        ("sqs:ChangeMessageVisibility", queue, ALLOWED),
        ("sqs:DeleteMessage", queue + "-other", IMPLICIT_DENY),
        ("s3:PutObject", CLAIM, ALLOWED),
        ("s3:DeleteObjectVersion", CLAIM, ALLOWED),
        ("s3:PutObject", "arn:aws:s3:::%s/elsewhere/x.claim" % BUCKET, IMPLICIT_DENY),
    ]
    cases = [Case(_session(CONTROLLER), action, resource, identity_policies=[policy],
                  resource_policy=bucket_policy if action.startswith("s3:") else None, context=context)
             for action, resource, _expected in matrix]
    got = [r.result for r in simulate(cases)]
    assert got == [expected for _a, _r, expected in matrix], list(zip([m[:2] for m in matrix], got))
