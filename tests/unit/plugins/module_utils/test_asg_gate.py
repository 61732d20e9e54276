"""Unit tests for the Auto Scaling gate's decisions (module_utils/_asg_gate.py)."""
import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils import _asg_gate as gate
from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody

LAUNCH = {"name": "launch", "transition": gate.LAUNCHING, "heartbeat_timeout": 300}
SHRED = {"name": "shred", "transition": gate.TERMINATING, "heartbeat_timeout": 60}


def test_transition_of_wait_states_only():
    assert gate.transition_of("Pending:Wait") == gate.LAUNCHING
    assert gate.transition_of("Terminating:Wait") == gate.TERMINATING
    for state in ("Pending", "Pending:Proceed", "InService", "Terminating", "Terminating:Proceed", None):
        assert gate.transition_of(state) is None


def test_pick_hook():
    assert gate.pick_hook([LAUNCH, SHRED], gate.LAUNCHING) == LAUNCH
    assert gate.pick_hook([LAUNCH, SHRED], gate.TERMINATING) == SHRED
    assert gate.pick_hook([SHRED], gate.LAUNCHING) is None
    other = dict(LAUNCH, name="other")
    with pytest.raises(gate.GateError, match="asg_gate_hook_name"):
        gate.pick_hook([LAUNCH, other], gate.LAUNCHING)
    assert gate.pick_hook([LAUNCH, other], gate.LAUNCHING, "other") == other
    assert gate.pick_hook([LAUNCH], gate.LAUNCHING, "missing") is None


def test_heartbeat_interval_stays_inside_the_timeout():
    assert gate.heartbeat_interval(300) == 100
    assert gate.heartbeat_interval(2) == 1
    assert gate.heartbeat_interval(300, 30) == 30
    with pytest.raises(gate.GateError, match="not shorter"):
        gate.heartbeat_interval(30, 30)
    with pytest.raises(gate.GateError, match="no heartbeat timeout"):
        gate.heartbeat_interval(None)


def test_visibility_timeout_outlasts_the_interval():
    assert gate.visibility_timeout(5) == 30
    assert gate.visibility_timeout(100) == 300
    assert gate.visibility_timeout(100, 600) == 600
    assert gate.visibility_timeout(20000) == 43200
    with pytest.raises(gate.GateError, match="longer than the heartbeat interval"):
        gate.visibility_timeout(100, 100)


def test_no_active_action_message():
    assert gate.no_active_action("No active Lifecycle Action found with instance ID i-0123")
    assert not gate.no_active_action("Rate exceeded")


def test_claim_object_and_marks():
    assert gate.claim_object("claims/asg-gate/", "i-0123456789abcdef0") == "claims/asg-gate/i-0123456789abcdef0.claim"
    with pytest.raises(gate.GateError, match="instance_id"):
        gate.claim_object("claims/", "../volumes/web")
    tags = gate.claim_tags("i-0123456789abcdef0", "run-1", "web group#1", "2026-11-29T00:00:00Z")
    assert tags[gate.TAG_CLAIM_GROUP] == "web group_1"
    assert gate.claim_holder(tags) == {"run_id": "run-1", "instance_id": "i-0123456789abcdef0",
                                       "claimed_at": "2026-11-29T00:00:00Z", "group_name": "web group_1"}
    assert gate.run_id_problem("awx-42") is None
    assert gate.run_id_problem("") and gate.run_id_problem("a b")


def test_bucket_guards_claims_with_volume_keys_statement_only():
    controllers = ["arn:aws:iam::123456789012:role/controller"]
    policy = custody.merge_bucket_policy({}, custody.bucket_statements("aws", "keys", controllers))
    assert gate.bucket_guards_claims(policy, "aws", "keys")
    assert not gate.bucket_guards_claims(policy, "aws", "other-bucket")
    assert not gate.bucket_guards_claims({}, "aws", "keys")
    assert not gate.bucket_guards_claims(custody.merge_bucket_policy({}, custody.bucket_statements("aws", "keys", controllers, True)) or {},
                                         "aws", "keys")
    # a Deny that leaves PutObject out, or one with more conditions than the principal, does not guard
    statement = [s for s in policy["Statement"] if s["Sid"] == custody.SID_CONTROLLERS_ONLY][0]
    weaker = dict(statement, NotAction=statement["NotAction"] + ["s3:PutObject"])
    assert not gate.bucket_guards_claims({"Statement": [weaker]}, "aws", "keys")
    narrower = dict(statement, Condition=dict(statement["Condition"], Bool={"aws:SecureTransport": "true"}))
    assert not gate.bucket_guards_claims({"Statement": [narrower]}, "aws", "keys")
    allow = dict(statement, Effect="Allow")
    assert not gate.bucket_guards_claims({"Statement": [allow]}, "aws", "keys")
