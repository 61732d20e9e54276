# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The asg_lifecycle event source: AWS's notification shapes parse, anything doubtful is dropped,
and a lifecycle notification is never deleted by the source (moto's SQS, in process)."""

from __future__ import annotations

import asyncio
import json
import logging

import boto3
import pytest
from moto import mock_aws

from ansible_collections.cloudefigo.core.extensions.eda.plugins.event_source import asg_lifecycle as src

# the lifecycle notification Auto Scaling sends to an SQS target (AWS's documented example)
LAUNCHING = {
    "Origin": "EC2",
    "Destination": "AutoScalingGroup",
    "Service": "AWS Auto Scaling",
    "Time": "2021-01-19T00:36:26.533Z",
    "RequestId": "18b2ec17-3e9b-4c15-8024-ff2e8ce8786a",
    "LifecycleActionToken": "71514b9d-6a40-4b26-8523-05e7ee35fa40",
    "AccountId": "123456789012",
    "AutoScalingGroupName": "my-asg",
    "LifecycleHookName": "my-hook",
    "EC2InstanceId": "i-0598c7d356eba48d7",
    "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
    "NotificationMetadata": "additional-info",
}
TEST_NOTIFICATION = {
    "AccountId": "123456789012",
    "RequestId": "18b2ec17-3e9b-4c15-8024-ff2e8ce8786a",
    "AutoScalingGroupARN": "arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:042cba90-ad2f-431c-9b4d-6d9055bcc9fb"
                           ":autoScalingGroupName/my-asg",
    "AutoScalingGroupName": "my-asg",
    "Service": "AWS Auto Scaling",
    "Event": "autoscaling:TEST_NOTIFICATION",
    "Time": "2021-01-19T00:35:52.359Z",
}
EVENTBRIDGE = {
    "version": "0",
    "id": "12345678-1234-1234-1234-123456789012",
    "detail-type": "EC2 Instance-terminate Lifecycle Action",
    "source": "aws.autoscaling",
    "account": "123456789012",
    "time": "2021-01-13T00:12:37.214Z",
    "region": "us-west-2",
    "resources": ["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:042cba90:autoScalingGroupName/my-asg"],
    "detail": {
        "LifecycleActionToken": "71514b9d-6a40-4b26-8523-05e7ee35fa40",
        "AutoScalingGroupName": "my-asg",
        "LifecycleHookName": "my-terminate-hook",
        "EC2InstanceId": "i-0598c7d356eba48d7",
        "LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
        "NotificationMetadata": "x",
        "Origin": "AutoScalingGroup",
        "Destination": "EC2",
    },
}


def sns(doc):
    return {"Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:us-west-2:123456789012:t",
            "Subject": "Auto Scaling:  Lifecycle action 'LAUNCHING'", "Message": json.dumps(doc)}


def with_(**changes):
    doc = dict(LAUNCHING)
    for key, value in changes.items():
        if value is None:
            doc.pop(key)
        else:
            doc[key] = value
    return json.dumps(doc)


# --- the parser -------------------------------------------------------------------------------
def test_sqs_target_notification():
    assert src.parse_body(json.dumps(LAUNCHING)) == {
        "instance_id": "i-0598c7d356eba48d7", "group": "my-asg", "hook": "my-hook",
        "transition": "autoscaling:EC2_INSTANCE_LAUNCHING", "token": "71514b9d-6a40-4b26-8523-05e7ee35fa40",
        "account_id": "123456789012", "time": "2021-01-19T00:36:26.533Z", "origin": "EC2",
        "destination": "AutoScalingGroup"}


def test_sns_envelope_and_eventbridge_say_the_same():
    assert src.parse_body(json.dumps(sns(LAUNCHING))) == src.parse_body(json.dumps(LAUNCHING))
    parsed = src.parse_body(json.dumps(EVENTBRIDGE))
    assert parsed["transition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert parsed["hook"] == "my-terminate-hook"
    assert parsed["account_id"] == "123456789012"


def test_test_notification_is_none_in_every_wrapping():
    assert src.parse_body(json.dumps(TEST_NOTIFICATION)) is None
    assert src.parse_body(json.dumps(sns(TEST_NOTIFICATION))) is None


def test_notification_metadata_is_not_passed_on():
    # free text set on the hook; it would become a playbook extra var
    assert "additional-info" not in json.dumps(src.parse_body(json.dumps(LAUNCHING)))


@pytest.mark.parametrize("body, reason", [
    ("not json", "not JSON"),
    ("[1, 2]", "not an object"),
    (json.dumps({"Type": "Notification", "TopicArn": "arn", "Message": "{"}), "SNS Message is not JSON"),
    (json.dumps(dict(EVENTBRIDGE, source="evil.app")), "not aws.autoscaling"),
    (json.dumps(dict(EVENTBRIDGE, **{"detail-type": "EC2 Instance Launch Successful"})), "not a lifecycle action"),
    (json.dumps({"Event": "autoscaling:EC2_INSTANCE_LAUNCH", "EC2InstanceId": "i-0598c7d356eba48d7"}),
     "not a lifecycle hook notification"),
    (with_(LifecycleTransition="autoscaling:EC2_INSTANCE_STOPPING"), "LifecycleTransition"),
    (with_(LifecycleTransition=None), "LifecycleTransition"),
    (with_(EC2InstanceId=None), "EC2InstanceId is missing"),
    (with_(EC2InstanceId=12), "EC2InstanceId is missing or not a string"),
    (with_(EC2InstanceId="i-0598c7d356eba48d"), "EC2InstanceId has an unexpected form"),
    (with_(EC2InstanceId="i-0598c7d356eba48d7 "), "EC2InstanceId"),
    (with_(EC2InstanceId="i-0598c7d356eba48d7\n"), "EC2InstanceId"),
    (with_(EC2InstanceId="{{ lookup('pipe', 'id') }}"), "EC2InstanceId"),
    (with_(AutoScalingGroupName="web{{ lookup('pipe', 'touch /tmp/x') }}"), "AutoScalingGroupName"),
    (with_(AutoScalingGroupName="web{% if 1 %}"), "AutoScalingGroupName"),
    (with_(AutoScalingGroupName="web$(id)"), "AutoScalingGroupName"),
    (with_(AutoScalingGroupName=""), "AutoScalingGroupName"),
    (with_(LifecycleHookName="hook name"), "LifecycleHookName"),
    (with_(LifecycleActionToken="not-a-token"), "LifecycleActionToken"),
    (with_(LifecycleActionToken=None), "LifecycleActionToken"),
    (with_(AccountId="12345"), "AccountId"),
    (with_(Time="{{ now() }}"), "Time"),
])
def test_malformed_is_refused_with_the_reason(body, reason):
    with pytest.raises(src.Malformed, match=reason.replace("(", r"\(").replace("$", r"\$")):
        src.parse_body(body)


def test_eight_digit_instance_ids_and_optional_fields():
    parsed = src.parse_body(with_(EC2InstanceId="i-0598c7d3", AccountId=None, Time=None, Origin=None, Destination=None))
    assert parsed["instance_id"] == "i-0598c7d3"
    assert parsed["account_id"] is None and parsed["time"] is None


def test_event_carries_receipt_handle_and_queue():
    message = {"MessageId": "m-1", "ReceiptHandle": "rh-1", "Body": json.dumps(LAUNCHING),
               "Attributes": {"ApproximateReceiveCount": "3", "SenderId": "AROAEXAMPLE:AutoScaling"}}
    kind, event = src.classify(message, "https://sqs.us-west-2.amazonaws.com/123456789012/q")
    assert kind == "event"
    assert event["sqs"] == {"queue_url": "https://sqs.us-west-2.amazonaws.com/123456789012/q", "receipt_handle": "rh-1",
                            "message_id": "m-1", "receive_count": 3, "sender_id": "AROAEXAMPLE:AutoScaling"}
    assert event["asg_lifecycle"]["instance_id"] == "i-0598c7d356eba48d7"
    assert src.classify(dict(message, Body=json.dumps(TEST_NOTIFICATION)), "q") == ("test", None)
    assert src.classify(dict(message, Body="{"), "q") == ("malformed", "the body is not JSON")


def test_excerpt_is_short_and_printable():
    text = src.excerpt("a\x1b[31mb\n" + "c" * 500)
    assert len(text) == src.LOG_EXCERPT and "\x1b" not in text and "\n" not in text


@pytest.mark.parametrize("url, region", [
    ("https://sqs.eu-west-1.amazonaws.com/123456789012/q", "eu-west-1"),
    ("https://us-west-2.queue.amazonaws.com/123456789012/q", "us-west-2"),
    ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
    ("http://127.0.0.1:5000/123456789012/q", None),
])
def test_region_from_queue_url(url, region):
    assert src.region_from_queue_url(url) == region


@pytest.mark.parametrize("args, message", [
    ({}, "queue_url is required"),
    ({"queue_url": "sqs-queue"}, "queue_url is required"),
    ({"queue_url": "https://q", "visibility_timeout": 50000}, "visibility_timeout must be from 0 to 43200"),
    ({"queue_url": "https://q", "wait_time_seconds": "x"}, "wait_time_seconds must be a number"),
    ({"queue_url": "https://q", "max_messages": 11}, "max_messages must be from 1 to 10"),
    ({"queue_url": "https://q", "delete_after": True}, "unknown argument"),
])
def test_bad_arguments_name_the_argument(args, message):
    with pytest.raises(ValueError, match=message):
        src.check_args(args)


def test_argument_defaults_and_rendered_nones():
    # the rulebook renders unset variables as None
    settings = src.check_args({"queue_url": "https://q", "region": None, "endpoint_url": None, "visibility_timeout": "30"})
    assert settings == {"queue_url": "https://q", "region": None, "endpoint_url": None, "profile": None,
                        "wait_time_seconds": 20, "max_messages": 10, "visibility_timeout": 30, "retry_delay": 5.0}


# --- the source against moto's SQS ------------------------------------------------------------
class ListQueue:
    def __init__(self):
        self.events = []

    async def put(self, event):
        self.events.append(event)


@pytest.fixture
def sqs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def counts(sqs, url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def drain(source, rounds=1):
    """What the source puts on the rulebook queue in `rounds` receives."""
    queue = ListQueue()
    for _round in range(rounds):
        for message in source.receive():
            event = source.handle(message)
            if event is not None:
                asyncio.run(queue.put(event))
    return queue.events


def make_source(sqs, url, **args):
    settings = src.check_args(dict({"queue_url": url, "region": "us-east-1", "wait_time_seconds": 1}, **args))
    source = src.Source(src.sqs_client(settings), settings)
    source.start()
    return source


def test_notification_becomes_an_event_and_stays_in_flight(sqs):
    url = sqs.create_queue(QueueName="asg")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(LAUNCHING))
    events = drain(make_source(sqs, url, visibility_timeout=600))
    assert [e["asg_lifecycle"]["instance_id"] for e in events] == ["i-0598c7d356eba48d7"]
    # not deleted: hidden for the visibility timeout, for the gate to delete
    assert counts(sqs, url) == (0, 1)
    sqs.delete_message(QueueUrl=url, ReceiptHandle=events[0]["sqs"]["receipt_handle"])
    assert counts(sqs, url) == (0, 0)


def test_undeleted_notification_comes_back_after_the_visibility_timeout(sqs):
    url = sqs.create_queue(QueueName="asg")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(LAUNCHING))
    source = make_source(sqs, url, visibility_timeout=0)
    first, second = drain(source), drain(source)
    assert first[0]["sqs"]["receive_count"] == 1 and second[0]["sqs"]["receive_count"] == 2
    assert first[0]["asg_lifecycle"] == second[0]["asg_lifecycle"]


def test_test_and_malformed_messages_are_deleted_without_a_dead_letter_queue(sqs, caplog):
    url = sqs.create_queue(QueueName="asg")["QueueUrl"]
    for body in (json.dumps(TEST_NOTIFICATION), "garbage", with_(EC2InstanceId="{{ 7 * 7 }}"), json.dumps(LAUNCHING)):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    with caplog.at_level(logging.INFO, logger="cloudefigo.core.asg_lifecycle"):
        events = drain(make_source(sqs, url, visibility_timeout=600))
    assert len(events) == 1
    assert counts(sqs, url) == (0, 1)  # only the lifecycle notification remains, in flight
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert any("deleted: the body is not JSON; body starts 'garbage'" in w for w in warnings)
    assert any("EC2InstanceId has an unexpected form" in w for w in warnings)


def test_malformed_message_goes_to_the_dead_letter_queue_when_there_is_one(sqs):
    dlq = sqs.create_queue(QueueName="asg-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url = sqs.create_queue(QueueName="asg", Attributes={
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="garbage")
    source = make_source(sqs, url, visibility_timeout=0)
    assert source.has_dead_letter_queue
    assert drain(source, rounds=3) == []
    # received twice, left both times, then moved by SQS: no loop, nothing lost
    assert counts(sqs, url) == (0, 0)
    moved = sqs.receive_message(QueueUrl=dlq)["Messages"]
    assert [m["Body"] for m in moved] == ["garbage"]


def test_run_survives_receive_errors_and_bad_messages(sqs, caplog):
    url = sqs.create_queue(QueueName="asg")["QueueUrl"]
    source = make_source(sqs, url)
    calls = []

    def receive():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("endpoint unreachable")
        if len(calls) == 2:
            return [{"MessageId": "broken"}, {"MessageId": "m", "ReceiptHandle": "rh", "Body": json.dumps(LAUNCHING)}]
        raise asyncio.CancelledError()  # the rulebook stops the source

    def handle(message):
        if message["MessageId"] == "broken":
            raise KeyError("ReceiptHandle")
        return src.Source.handle(source, message)

    source.receive, source.handle = receive, handle
    queue = ListQueue()
    with caplog.at_level(logging.WARNING, logger="cloudefigo.core.asg_lifecycle"):
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(src.run(source, queue, retry_delay=0))
    assert [e["sqs"]["receipt_handle"] for e in queue.events] == ["rh"]
    text = caplog.text
    assert "ReceiveMessage failed (endpoint unreachable)" in text
    assert "message broken not handled" in text


def test_main_fails_loudly_on_a_queue_it_cannot_read(sqs):
    with pytest.raises(Exception, match="NonExistentQueue|does not exist"):
        asyncio.run(src.main(ListQueue(), {"queue_url": "https://sqs.us-east-1.amazonaws.com/123456789012/nope",
                                           "region": "us-east-1"}))
