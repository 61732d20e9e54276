"""Event-Driven Ansible with the real gate: lifecycle notifications from the lab's Auto Scaling
stand-in (lab/services/asg_lifecycle.py, in the AWS proxy) reach moto's SQS, ansible-rulebook runs
playbooks/asg_gate.yml for each instance, and the gate completes the lifecycle actions.

One test, one ansible-rulebook: a scale-out of two where the first instance's scan fails ends with
it abandoned (contained, terminated through the terminating hook, its key shredded) and the other
one and the replacement in production, every message deleted by the gate; then forged
notifications (an instance that no longer waits, an instance of no group) change nothing.
The test plays the instances' part (Chef node, progress tag) as test_asg_gate.py does, with its
fixture and helpers.
"""
import json
import os
import uuid

import pytest

from _eda import Rulebook, notification, queue_counts, wait_until
from _lab import ROOT, secure_launch_lab_vars
# gate_lab is a fixture (moto, the proxy's stand-in, Chef and Nessus reset around the test): pytest
# finds it by the import
from test_asg_gate import KEY_BUCKET, LAUNCHING, ROLE, TERMINATING, poll, scans_of
from test_asg_gate import gate_lab  # noqa: F401 pylint: disable=unused-import

# no VM: runs in the VM lab's lane to balance the two integration lanes (tools/integration.sh)
pytestmark = pytest.mark.vmlane

GATE = os.path.join(ROOT, "playbooks", "asg_gate.yml")
QUEUE = "cloudefigo-asg-events"


@pytest.fixture
def events(gate_lab, tmp_path):
    """The gate lab, a lifecycle queue, and ansible-rulebook gating what arrives there."""
    env = gate_lab
    url = env.sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    arn = env.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    settings = dict(secure_launch_lab_vars(env.lab), **{
        "cloudefigo_aws_endpoint_url": env.lab["LAB_AWS_PROXY_ENDPOINT"],
        "secure_launch_key_bucket": KEY_BUCKET,
        "secure_launch_omit_conditioned_denies": True,
        "secure_launch_report_dir": str(tmp_path),
        "secure_launch_nessus_poll_interval": 1,
        "secure_launch_nessus_fail_on": "critical",
        "asg_gate_pull_poll_interval": 1,
        "asg_gate_pull_timeout": 60,
    })
    # no security group exists yet: the first two runs (one per instance, at once) both create them
    book = Rulebook(env.lab, str(tmp_path), url, GATE, settings, env.lab["LAB_AWS_PROXY_ENDPOINT"], visibility=60)
    book.start()
    yield env, book, arn
    book.stop()


def test_events_gate_a_scale_out_and_forged_notifications_change_nothing(events):
    env, book, arn = events
    name = "eda-scale-out"
    hooks = [dict(LifecycleHookName="launch", LifecycleTransition=LAUNCHING, HeartbeatTimeout=300, DefaultResult="ABANDON",
                  NotificationTargetARN=arn, RoleARN=ROLE),
             dict(LifecycleHookName="shred", LifecycleTransition=TERMINATING, HeartbeatTimeout=300,
                  NotificationTargetARN=arn, RoleARN=ROLE)]
    failing, passing = env.group(name, hooks, 2)
    # the gates start at once and wait for the instances to configure themselves (pull mode)
    env.scan_as(failing, {"report": "dojo_nessus_with_cvssv3.nessus", "scan_seconds": 1})
    env.scan_as(passing, {"scan_seconds": 1})
    env.play_instance(failing)
    env.play_instance(passing)

    # ABANDON: the group terminates the failing one (terminating hook -> event -> clean-up) and replaces it
    replacement, = poll(lambda: [i for i, s in env.states(name).items() if i not in (failing, passing)] or None,
                        timeout=180)
    env.scan_as(replacement, {"scan_seconds": 1})
    env.play_instance(replacement)
    poll(lambda: env.states(name) == {passing: "InService", replacement: "InService"}, timeout=240)
    poll(lambda: env.instance(failing)["State"]["Name"] == "terminated", timeout=120)
    wait_until(lambda: queue_counts(env.sqs, book.queue_url) == (0, 0), 60, "the gate to delete every message")
    wait_until(book.idle, 60, "every gate run to end")
    log = book.log()
    assert book.proc.poll() is None, log[-5000:]

    assert [e["result"] for e in env.completions(failing)][:1] == ["ABANDON"]
    for instance in (passing, replacement):
        assert [e["result"] for e in env.completions(instance)] == ["CONTINUE"]
        assert env.groups_of(instance) == ["cloudefigo-production"]
        assert env.tags(instance)["SecurityStatus"] == "production"
        assert len(env.key_versions(instance)) == 1
        assert len(scans_of(env.lab, env.instance(instance)["PrivateIpAddress"])) == 1
    # the abandoned one: contained, then shredded by the terminating hook's event
    assert env.key_versions(failing) == []
    assert env.role(failing) is None
    assert env.chef.request("GET", "/nodes/%s" % failing, missing_ok=True) is None
    assert "deleting test notification" in log  # PutLifecycleHook's, one per hook

    # forged: a launching notification for an instance in service (a fresh token), and one for an
    # instance no group knows; the gate reads the lifecycle state from Auto Scaling and does nothing
    before = {"tags": env.tags(passing), "groups": env.groups_of(passing), "states": env.states(name),
              "completions": len(env.requests("CompleteLifecycleAction")),
              "heartbeats": len(env.requests("RecordLifecycleActionHeartbeat")),
              "scans": len(scans_of(env.lab, env.instance(passing)["PrivateIpAddress"])),
              "claims": env.s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="claims/").get("Versions", []),
              "keys": env.key_versions(passing)}
    runs_before = log.count("PLAY RECAP")
    for instance_id in (passing, "i-0123456789abcdef0"):
        env.sqs.send_message(QueueUrl=book.queue_url, MessageBody=notification(
            instance_id, AutoScalingGroupName=name, LifecycleHookName="launch", LifecycleActionToken=str(uuid.uuid4())))
    wait_until(lambda: book.log().count("PLAY RECAP") >= runs_before + 2 and book.idle(), 120,
               "the gate to run for both forged messages")
    wait_until(lambda: queue_counts(env.sqs, book.queue_url) == (0, 0), 30, "the gate to release both forged messages")
    after = {"tags": env.tags(passing), "groups": env.groups_of(passing), "states": env.states(name),
             "completions": len(env.requests("CompleteLifecycleAction")),
             "heartbeats": len(env.requests("RecordLifecycleActionHeartbeat")),
             "scans": len(scans_of(env.lab, env.instance(passing)["PrivateIpAddress"])),
             "claims": env.s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="claims/").get("Versions", []),
             "keys": env.key_versions(passing)}
    assert json.dumps(after, sort_keys=True, default=str) == json.dumps(before, sort_keys=True, default=str)
