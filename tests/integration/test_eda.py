"""Event-Driven Ansible: the asg_gate rulebook under a real ansible-rulebook, on moto's SQS.

One ansible-rulebook process serves the module (its JVM start is the slow part); the restart test
at the end kills it and starts a second one on the same queue.  The gate here is
tests/integration/eda/gate_recorder.yml, a stand-in that takes the gate's agreed variables,
records each run and deletes the message as the gate does once it finished.
"""
import json
import os
import uuid

import pytest

from _eda import Rulebook, notification, queue_counts, wait_until
from _lab import ROOT, moto_reset, secure_launch_lab_vars

RECORDER = os.path.join(ROOT, "tests", "integration", "eda", "gate_recorder.yml")
QUEUE = "cloudefigo-asg-lifecycle"
# long enough for a recorder run (so no test sees a duplicate), short enough for the restart test
VISIBILITY = 10
HELD = "i-0aaaaaaaaaaaaaaa1"


class RecorderRulebook(Rulebook):
    """The rulebook with the recording stand-in gate; records() lists its runs."""

    def __init__(self, lab, workdir, queue_url):
        self.record = os.path.join(workdir, "record.jsonl")
        self.release = os.path.join(workdir, "release")
        inventory_vars = dict(secure_launch_lab_vars(lab), lab_aws_endpoint=lab["LAB_AWS_ENDPOINT"],
                              eda_test_record=self.record, eda_test_release=self.release,
                              eda_test_hold=[HELD], eda_test_fail=[])
        super().__init__(lab, workdir, queue_url, RECORDER, inventory_vars, lab["LAB_AWS_ENDPOINT"], VISIBILITY)

    def records(self):
        if not os.path.exists(self.record):
            return []
        with open(self.record) as handle:
            return [json.loads(line) for line in handle if line.strip()]


@pytest.fixture(scope="module")
def sqs(lab):
    import boto3
    moto_reset(lab)
    yield boto3.client("sqs", endpoint_url=lab["LAB_AWS_ENDPOINT"], region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")
    moto_reset(lab)


@pytest.fixture(scope="module")
def rulebook(lab, sqs, tmp_path_factory):
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    book = RecorderRulebook(lab, str(tmp_path_factory.mktemp("eda")), url)
    book.start()
    yield book
    book.stop()


def send(sqs, rulebook, body):
    return sqs.send_message(QueueUrl=rulebook.queue_url, MessageBody=body)["MessageId"]


def test_test_notification_is_deleted_and_gates_nothing(rulebook, sqs):
    test = json.dumps({"AccountId": "123456789012", "RequestId": str(uuid.uuid4()),
                       "AutoScalingGroupARN": "arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:"
                                              "042cba90-ad2f-431c-9b4d-6d9055bcc9fb:autoScalingGroupName/cloudefigo-web",
                       "AutoScalingGroupName": "cloudefigo-web", "Service": "AWS Auto Scaling",
                       "Event": "autoscaling:TEST_NOTIFICATION", "Time": "2026-11-29T23:00:00.000Z"})
    message_id = send(sqs, rulebook, test)
    wait_until(lambda: "deleting test notification %s" % message_id in rulebook.log(), 30, "the test notification")
    # the log line comes just before the delete
    wait_until(lambda: queue_counts(sqs, rulebook.queue_url) == (0, 0), 10, "the test notification to be deleted")
    assert rulebook.records() == []


def test_malformed_messages_are_dropped_and_the_next_notifications_gated(rulebook, sqs):
    garbage = send(sqs, rulebook, "this is not a lifecycle notification")
    # a forged notification trying to get a template into the gate's extra vars (ansible_eda.event
    # is one; Ansible templates extra vars when they are used)
    pwned = os.path.join(rulebook.workdir, "pwned")
    forged = send(sqs, rulebook, notification("i-0123456789abcdef0",
                                              AutoScalingGroupName="{{ lookup('pipe', 'touch %s') }}" % pwned))
    launching = "i-0123456789abcdef1"
    terminating = "i-0123456789abcdef2"
    send(sqs, rulebook, notification(launching))
    send(sqs, rulebook, notification(terminating, "autoscaling:EC2_INSTANCE_TERMINATING",
                                     LifecycleHookName="cloudefigo-terminate"))
    wait_until(lambda: len(rulebook.records()) >= 2, 90, "two gate runs")
    wait_until(lambda: queue_counts(sqs, rulebook.queue_url) == (0, 0), 30, "the gate to delete both messages")
    log = rulebook.log()
    assert "malformed message %s from" % garbage in log and "deleted: the body is not JSON" in log
    assert "malformed message %s from" % forged in log and "AutoScalingGroupName has an unexpected form" in log
    assert rulebook.proc.poll() is None
    runs = {r["instance_id"]: r for r in rulebook.records()}
    assert sorted(runs) == [launching, terminating]
    assert runs[launching]["rule"] == "Gate a launching instance"
    assert runs[launching]["notification"]["transition"] == "autoscaling:EC2_INSTANCE_LAUNCHING"
    assert runs[terminating]["rule"] == "Release a terminating instance"
    assert runs[terminating]["notification"]["hook"] == "cloudefigo-terminate"
    assert runs[terminating]["notification"]["group"] == "cloudefigo-web"
    for run in runs.values():
        assert run["queue_url"] == rulebook.queue_url and run["receipt_handle"]
        assert run["receive_count"] == 1
    assert not os.path.exists(pwned)


def test_restart_before_the_gate_deletes_loses_no_message(rulebook, sqs):
    # the gate for HELD starts and waits (a long scan); then the host dies
    send(sqs, rulebook, notification(HELD))
    wait_until(lambda: [r for r in rulebook.records() if r["instance_id"] == HELD], 60, "the held gate run")
    rulebook.kill()
    assert queue_counts(sqs, rulebook.queue_url) == (0, 1)  # in flight, not deleted
    with open(rulebook.release, "w") as handle:
        handle.write("go")
    rulebook.start()
    runs = wait_until(lambda: [r for r in rulebook.records() if r["instance_id"] == HELD][1:], VISIBILITY + 60,
                      "the held notification to be gated again after the restart")
    wait_until(lambda: queue_counts(sqs, rulebook.queue_url) == (0, 0), 30, "the gate to delete the message")
    first = [r for r in rulebook.records() if r["instance_id"] == HELD][0]
    assert runs[0]["receive_count"] == 2
    assert runs[0]["receipt_handle"] != first["receipt_handle"]
    assert len([r for r in rulebook.records() if r["instance_id"] == HELD]) == 2


def test_rulebook_without_a_gate_playbook_stops_at_start(lab, tmp_path):
    """Not an error per delivered message that loops until the dead-letter queue: it stops at once."""
    book = Rulebook(lab, str(tmp_path), "http://127.0.0.1:1/123456789012/none", RECORDER, {}, lab["LAB_AWS_ENDPOINT"], 5)
    with open(book.vars) as handle:
        settings = json.load(handle)
    del settings["asg_eda_playbook"]
    with open(book.vars, "w") as handle:
        json.dump(settings, handle)
    try:
        with pytest.raises(AssertionError):
            book.start()
        assert book.proc.wait(timeout=60) != 0
    finally:
        book.stop()
    assert "'asg_eda_playbook' is undefined" in book.log()
