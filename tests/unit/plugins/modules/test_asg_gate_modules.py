"""Unit tests for asg_lifecycle_info, asg_lifecycle_action and asg_gate_claim: input, decisions, check mode.

The AWS clients are stubs (retrying_client patched): what is called, and what is not, is the test.
"""
import json
import threading

import pytest
from botocore.exceptions import ClientError

from ansible.module_utils.testing import patch_module_args
from ansible_collections.cloudefigo.core.plugins.modules import asg_gate_claim
from ansible_collections.cloudefigo.core.plugins.modules import asg_lifecycle_action
from ansible_collections.cloudefigo.core.plugins.modules import asg_lifecycle_info

IID = "i-0123456789abcdef0"
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
BASE = {"region": "us-east-1", "access_key": "testing", "secret_key": "testing", "endpoint_url": "http://127.0.0.1:9"}


class Stub:
    """An autoscaling + sqs client: records calls; answers from `state` (lifecycle state of IID)."""

    def __init__(self, state="Pending:Wait", group="web", hooks=None, complete_error=None, waits=None):
        self.state, self.group = state, group
        self.hooks = hooks if hooks is not None else [{"LifecycleHookName": "launch", "LifecycleTransition": LAUNCHING,
                                                       "HeartbeatTimeout": 3, "GlobalTimeout": 300, "DefaultResult": "ABANDON"}]
        self.complete_error = complete_error
        self.waits = waits  # after this many state reads, the instance no longer waits
        self.calls = []

    def describe_auto_scaling_instances(self, InstanceIds, **_kw):
        self.calls.append("describe")
        if self.waits is not None:
            self.waits -= 1
            if self.waits < 0:
                self.state = "InService"
        if self.state is None:
            return {"AutoScalingInstances": []}
        return {"AutoScalingInstances": [{"InstanceId": InstanceIds[0], "AutoScalingGroupName": self.group,
                                          "LifecycleState": self.state}]}

    def describe_lifecycle_hooks(self, AutoScalingGroupName, **_kw):
        self.calls.append("hooks")
        return {"LifecycleHooks": self.hooks}

    def complete_lifecycle_action(self, **kwargs):
        self.calls.append(("complete", kwargs["LifecycleActionResult"]))
        if self.complete_error:
            raise ClientError({"Error": {"Code": "ValidationError", "Message": self.complete_error}}, "CompleteLifecycleAction")

    def record_lifecycle_action_heartbeat(self, **_kwargs):
        self.calls.append("heartbeat")

    def change_message_visibility(self, VisibilityTimeout, **_kw):
        self.calls.append(("visibility", VisibilityTimeout))

    def delete_message(self, **_kw):
        self.calls.append("delete_message")

    def get_paginator(self, name):
        stub = self

        class Pages:
            def paginate(self, **kwargs):
                stub.calls.append((name, kwargs))
                if name == "describe_auto_scaling_groups":
                    return [{"AutoScalingGroups": [{"AutoScalingGroupName": g, "Instances": [
                        {"InstanceId": IID, "LifecycleState": stub.state, "HealthStatus": "Healthy", "AvailabilityZone": "us-east-1a"}]}
                        for g in kwargs["AutoScalingGroupNames"] if g == stub.group]}]
                return [{"AutoScalingInstances": [{"InstanceId": IID, "AutoScalingGroupName": stub.group, "LifecycleState": stub.state}]
                         if IID in kwargs["InstanceIds"] else []}]
        return Pages()


@pytest.fixture
def run(capsys, monkeypatch):
    def _run(module, stub, **args):
        monkeypatch.setattr(module, "retrying_client", lambda _module, _service, **_kw: stub)
        # an option given as None is left out (endpoint_url=None: no custom endpoint)
        with patch_module_args({k: v for k, v in dict(BASE, **args).items() if v is not None}):
            with pytest.raises(SystemExit):
                module.main()
        return json.loads(capsys.readouterr().out)
    return _run


ACTION = {"instance_id": IID, "group_name": "web", "hook_name": "launch"}
SQS = {"sqs_queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/lifecycle", "sqs_receipt_handle": "handle"}


@pytest.mark.parametrize("args, text", [
    ({"instance_id": "web-1"}, "instance_id"),
    ({"hook_name": "bad hook!"}, "hook_name"),
    ({"result": None}, "result is required"),
    ({"action": "heartbeat", "result": "CONTINUE"}, "result is only used"),
    ({"sqs_queue_url": "https://sqs/q"}, "go together"),
    ({"action": "keep_alive", "result": None}, "stop_file is required"),
    ({"action": "release_message", "result": None}, "release_message needs"),
    ({"sqs_visibility_timeout": 0, **SQS}, "43200"),
])
def test_action_input_is_checked(run, args, text):
    stub = Stub()
    result = run(asg_lifecycle_action, stub, **dict(dict(ACTION, result="CONTINUE"), **args))
    assert result["failed"] and text in result["msg"], result
    assert stub.calls == []


def test_complete_continue_then_delete_the_message(run):
    stub = Stub()
    result = run(asg_lifecycle_action, stub, result="CONTINUE", **dict(ACTION, **SQS))
    assert result["changed"] and result["completed"] and result["message_deleted"], result
    assert stub.calls == ["describe", ("complete", "CONTINUE"), "delete_message"]


def test_complete_in_check_mode_calls_nothing(run):
    stub = Stub()
    result = run(asg_lifecycle_action, stub, result="ABANDON", _ansible_check_mode=True, _ansible_diff=True, **dict(ACTION, **SQS))
    assert result["changed"] and not result["completed"] and not result["message_deleted"], result
    assert result["diff"] == {"before": {"lifecycle_state": "Pending:Wait"}, "after": {"lifecycle_state": "Pending:Proceed"}}
    assert stub.calls == ["describe"]


@pytest.mark.parametrize("state, group", [("InService", "web"), ("Terminating:Wait", "web"), ("Pending:Wait", "other"), (None, None)])
def test_complete_leaves_an_instance_that_does_not_wait_alone(run, state, group):
    stub = Stub(state=state, group=group)
    result = run(asg_lifecycle_action, stub, result="CONTINUE", **dict(ACTION, **SQS))
    assert not result["changed"] and not result["completed"] and result["message_deleted"], result
    assert stub.calls == ["describe", "delete_message"]


def test_complete_raced_by_another_run_is_not_a_change(run):
    stub = Stub(complete_error="No active Lifecycle Action found with instance ID %s" % IID)
    result = run(asg_lifecycle_action, stub, result="CONTINUE", **ACTION)
    assert not result["changed"] and not result["completed"], result


def test_complete_other_errors_fail(run):
    stub = Stub(complete_error="Rate exceeded")
    result = run(asg_lifecycle_action, stub, result="CONTINUE", **ACTION)
    assert result["failed"] and "Could not complete" in result["msg"], result


def test_keep_alive_until_the_stop_file(run, tmp_path):
    stop = tmp_path / "stop"
    stub = Stub()
    timer = threading.Timer(1.5, stop.write_text, args=("done",))
    timer.start()
    try:
        result = run(asg_lifecycle_action, stub, action="keep_alive", stop_file=str(stop), **dict(ACTION, **SQS))
    finally:
        timer.cancel()
    assert result["stopped_because"] == "stop_file" and result["heartbeat_interval"] == 1, result
    assert result["heartbeats"] >= 2 and result["visibility_extensions"] == result["heartbeats"], result
    assert ("visibility", 30) in stub.calls and "delete_message" not in stub.calls
    assert not any(isinstance(c, tuple) and c[0] == "complete" for c in stub.calls)


def test_keep_alive_stops_when_the_instance_no_longer_waits(run, tmp_path):
    stub = Stub(waits=2)
    result = run(asg_lifecycle_action, stub, action="keep_alive", stop_file=str(tmp_path / "never"), **ACTION)
    assert result["stopped_because"] == "not_waiting" and result["heartbeats"] == 1, result


def test_keep_alive_refuses_an_interval_as_long_as_the_timeout(run, tmp_path):
    result = run(asg_lifecycle_action, Stub(), action="keep_alive", stop_file=str(tmp_path / "s"), heartbeat_interval=3, **ACTION)
    assert result["failed"] and "not shorter" in result["msg"], result


def test_keep_alive_in_check_mode_records_nothing(run, tmp_path):
    stub = Stub()
    result = run(asg_lifecycle_action, stub, action="keep_alive", stop_file=str(tmp_path / "s"), _ansible_check_mode=True, **ACTION)
    assert result["changed"] and result["stopped_because"] == "check_mode" and result["heartbeats"] == 0, result
    assert stub.calls == ["describe"]


@pytest.mark.parametrize("state, deleted", [("Pending:Wait", False), ("Terminating:Wait", False), ("InService", True), (None, True)])
def test_release_message_only_when_nothing_waits(run, state, deleted):
    stub = Stub(state=state)
    result = run(asg_lifecycle_action, stub, action="release_message", instance_id=IID, **SQS)
    assert result["message_deleted"] is deleted and result["changed"] is deleted, result
    assert ("delete_message" in stub.calls) is deleted
    assert not any(isinstance(c, tuple) and c[0] == "complete" for c in stub.calls)


def test_info_lists_waiting_instances_with_their_hook(run):
    stub = Stub()
    result = run(asg_lifecycle_info, stub, groups=["web"])
    assert result["instances"][0]["waiting"] and result["instances"][0]["hook"]["name"] == "launch", result
    assert result["groups"] == [{"name": "web", "hooks": [asg_lifecycle_info.gate.hook_view(stub.hooks[0])]}]


def test_info_fails_on_a_missing_group(run):
    result = run(asg_lifecycle_info, Stub(), groups=["web", "typo"])
    assert result["failed"] and "typo" in result["msg"], result


def test_info_unknown_instance(run):
    result = run(asg_lifecycle_info, Stub(), instance_ids=["i-0fedcba9876543210"])
    assert result["instances"] == [] and result["unknown_instance_ids"] == ["i-0fedcba9876543210"], result


def test_info_refuses_to_guess_between_two_hooks(run):
    hooks = [{"LifecycleHookName": n, "LifecycleTransition": LAUNCHING, "HeartbeatTimeout": 30} for n in ("a", "b")]
    result = run(asg_lifecycle_info, Stub(hooks=hooks), groups=["web"])
    assert result["failed"] and "asg_gate_hook_name" in result["msg"], result
    result = run(asg_lifecycle_info, Stub(hooks=hooks), groups=["web"], hook_name="b")
    assert result["instances"][0]["hook"]["name"] == "b"


@pytest.mark.parametrize("args, text", [
    ({"prefix": "volumes/"}, "apart"),
    ({"run_id": None}, "run_id"),
    ({"omit_conditioned_denies": True, "endpoint_url": None}, "lab switch"),
    ({"instance_id": "i-zz"}, "instance_id"),
    ({"bucket": "Bad_Bucket"}, "bucket"),
])
def test_claim_input_is_checked(run, args, text):
    stub = Stub()
    result = run(asg_gate_claim, stub, **dict({"bucket": "keys", "instance_id": IID, "run_id": "run-1"}, **args))
    assert result["failed"] and text in result["msg"], result
    assert stub.calls == []
