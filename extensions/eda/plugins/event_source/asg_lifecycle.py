# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""ansible-rulebook event source: Auto Scaling lifecycle hook notifications from an SQS queue.

The parser (``parse_body`` and friends) is plain functions with unit tests; ``main`` is the
plumbing ansible-rulebook calls.  The file is self-contained on purpose: ansible-rulebook loads
an event source by its path, so nothing else of the collection is importable from here.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

DOCUMENTATION = r"""
---
short_description: Auto Scaling lifecycle hook notifications read from an SQS queue
description:
  - Long-polls one SQS queue (the notification target of Auto Scaling lifecycle hooks) and puts one
    event per lifecycle notification (C(autoscaling:EC2_INSTANCE_LAUNCHING),
    C(autoscaling:EC2_INSTANCE_TERMINATING)) on the rulebook's queue.
  - The message is B(not) deleted: the event carries the queue URL and the receipt handle, and the
    action that handles it (C(playbooks/asg_gate.yml)) deletes it once it finished for that
    instance and extends its visibility while it works.  If the rulebook or the gate dies first,
    the message becomes visible again after O(visibility_timeout) and is delivered again.
  - Accepts the notification as Auto Scaling sends it to an SQS target, wrapped in an SNS envelope
    (SNS topic target with an SQS subscription, raw delivery off) or as an EventBridge event
    (C(EC2 Instance-launch Lifecycle Action), C(EC2 Instance-terminate Lifecycle Action)).
  - C(autoscaling:TEST_NOTIFICATION) (sent when a hook is created) is deleted, no event.
  - A malformed message (not JSON, an unknown shape or transition, a field that fails validation)
    is logged (message id, sender, reason, the first 200 characters) and never becomes an event.
    Without a redrive policy on the queue it is deleted; with one it is left for SQS to move to the
    dead-letter queue after C(maxReceiveCount) receives.  Either way it cannot loop for ever.
  - Field values are validated strictly (instance id C(i-) + 8 or 17 hex digits, hook and group
    names without template or shell metacharacters, token a UUID) because they become extra vars
    of a playbook run.  C(NotificationMetadata) is free text and is not passed on.
  - Credentials come from boto3's usual chain (environment, profile, container or instance role).
options:
  queue_url:
    description: URL of the SQS queue the lifecycle hooks notify.
    type: str
    required: true
  region:
    description: AWS region of the queue; default from boto3's chain, else read from O(queue_url).
    type: str
  endpoint_url:
    description: Another SQS endpoint (a VPC endpoint, or the lab's moto server).
    type: str
  profile:
    description: A named profile of the AWS config files.
    type: str
  wait_time_seconds:
    description: Long-poll time of one C(ReceiveMessage), 1 to 20 seconds.
    type: int
    default: 20
  max_messages:
    description: Messages per C(ReceiveMessage), 1 to 10.
    type: int
    default: 10
  visibility_timeout:
    description:
      - Seconds a received message stays hidden (C(ReceiveMessage VisibilityTimeout)), 0 to 43200.
        The gate must delete it, or extend it, before then; after it the message is delivered
        again (a restart loses nothing, a gate that hangs is retried).
    type: int
    default: 300
  retry_delay:
    description:
      - Seconds to wait after a failed C(ReceiveMessage) (network, throttling); doubles on each
        further failure up to 60.  The source never stops on such errors, only on bad arguments or a
        queue it cannot read at start.
    type: float
    default: 5
"""

EXAMPLES = r"""
- name: Auto Scaling lifecycle notifications
  hosts: localhost
  sources:
    - cloudefigo.core.asg_lifecycle:
        queue_url: https://sqs.eu-west-1.amazonaws.com/123456789012/asg-lifecycle
        region: eu-west-1
        visibility_timeout: 300
  rules:
    - name: Gate a launching instance
      condition: event.asg_lifecycle.transition == "autoscaling:EC2_INSTANCE_LAUNCHING"
      action:
        debug:
"""

LOG = logging.getLogger("cloudefigo.core.asg_lifecycle")

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TEST_NOTIFICATION = "autoscaling:TEST_NOTIFICATION"
TRANSITIONS = (LAUNCHING, TERMINATING)
EVENTBRIDGE_TYPES = {
    "EC2 Instance-launch Lifecycle Action": LAUNCHING,
    "EC2 Instance-terminate Lifecycle Action": TERMINATING,
}

INSTANCE_ID = re.compile(r"\Ai-(?:[0-9a-f]{8}|[0-9a-f]{17})\Z")
# AWS allows [A-Za-z0-9-_/] in a hook name
HOOK_NAME = re.compile(r"\A[A-Za-z0-9_/-]{1,255}\Z")
# AWS allows nearly any character in a group name; these values end up in playbook extra vars,
# so anything a template engine or a shell gives meaning to is refused
GROUP_NAME = re.compile(r"\A[A-Za-z0-9 _.:/@+=,-]{1,255}\Z")
TOKEN = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
ACCOUNT_ID = re.compile(r"\A[0-9]{12}\Z")
SAFE_TEXT = re.compile(r"\A[A-Za-z0-9 _.:/@+=,-]{0,255}\Z")
# the part of a malformed body written to the log
LOG_EXCERPT = 200


class Malformed(ValueError):
    """A message that is not a lifecycle notification this source understands."""


def _unwrap(doc: Any) -> dict[str, Any]:
    """The Auto Scaling notification inside an SNS envelope or an EventBridge event, or doc itself."""
    if not isinstance(doc, dict):
        raise Malformed("the body is JSON but not an object")
    if doc.get("Type") == "Notification" and "TopicArn" in doc:
        inner = doc.get("Message")
        if not isinstance(inner, str):
            raise Malformed("SNS envelope without a Message string")
        try:
            doc = json.loads(inner)
        except ValueError:
            raise Malformed("the SNS Message is not JSON") from None
        if not isinstance(doc, dict):
            raise Malformed("the SNS Message is JSON but not an object")
        return doc
    if "detail-type" in doc:
        if doc.get("source") != "aws.autoscaling":
            raise Malformed("EventBridge event from %r, not aws.autoscaling" % (doc.get("source"),))
        detail = doc.get("detail")
        if not isinstance(detail, dict):
            raise Malformed("EventBridge event without a detail object")
        transition = EVENTBRIDGE_TYPES.get(doc["detail-type"])
        if transition is None:
            raise Malformed("EventBridge detail-type %r is not a lifecycle action" % (doc["detail-type"],))
        detail = dict(detail)
        detail.setdefault("LifecycleTransition", transition)
        if detail["LifecycleTransition"] != transition:
            raise Malformed("EventBridge detail-type and LifecycleTransition disagree")
        detail.setdefault("AccountId", doc.get("account"))
        detail.setdefault("Time", doc.get("time"))
        return detail
    return doc


def _field(doc: dict[str, Any], key: str, pattern: re.Pattern[str], required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise Malformed("%s is missing or not a string" % key)
    if not pattern.match(value):
        raise Malformed("%s has an unexpected form" % key)
    return value


def parse_body(body: Any) -> dict[str, Any] | None:
    """What a message body says.

    Returns None for Auto Scaling's test notification, else the lifecycle notification as a dict
    with the keys instance_id, group, hook, transition, token, account_id, time, origin,
    destination.  Raises Malformed (with the reason) for anything else.
    """
    if not isinstance(body, str):
        raise Malformed("the body is not text")
    try:
        doc = json.loads(body)
    except ValueError:
        raise Malformed("the body is not JSON") from None
    doc = _unwrap(doc)
    if doc.get("Event") == TEST_NOTIFICATION:
        return None
    if "Event" in doc and "LifecycleTransition" not in doc:
        # an Auto Scaling *notification configuration* message (EC2_INSTANCE_LAUNCH, ...):
        # not a lifecycle hook, nothing to gate
        raise Malformed("Auto Scaling event %r is not a lifecycle hook notification" % (str(doc["Event"])[:64],))
    transition = doc.get("LifecycleTransition")
    if transition not in TRANSITIONS:
        raise Malformed("LifecycleTransition %r is not one of %s" % (str(transition)[:64], ", ".join(TRANSITIONS)))
    return {
        "instance_id": _field(doc, "EC2InstanceId", INSTANCE_ID),
        "group": _field(doc, "AutoScalingGroupName", GROUP_NAME),
        "hook": _field(doc, "LifecycleHookName", HOOK_NAME),
        "transition": transition,
        "token": _field(doc, "LifecycleActionToken", TOKEN),
        "account_id": _field(doc, "AccountId", ACCOUNT_ID, required=False),
        "time": _field(doc, "Time", SAFE_TEXT, required=False),
        "origin": _field(doc, "Origin", SAFE_TEXT, required=False),
        "destination": _field(doc, "Destination", SAFE_TEXT, required=False),
    }


def make_event(notification: dict[str, Any], message: dict[str, Any], queue_url: str) -> dict[str, Any]:
    """The rulebook event for one lifecycle notification and the SQS message that carried it."""
    attributes = message.get("Attributes") or {}
    return {
        "asg_lifecycle": dict(notification),
        "sqs": {
            "queue_url": queue_url,
            "receipt_handle": message["ReceiptHandle"],
            "message_id": message.get("MessageId"),
            "receive_count": int(attributes.get("ApproximateReceiveCount", "0") or 0),
            "sender_id": attributes.get("SenderId"),
        },
    }


def excerpt(body: Any) -> str:
    """The first LOG_EXCERPT characters of a body, printable, for the log."""
    text = body if isinstance(body, str) else repr(body)
    text = text[:LOG_EXCERPT]
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def classify(message: dict[str, Any], queue_url: str) -> tuple[str, Any]:
    """('event', event) | ('test', None) | ('malformed', reason) for one received message."""
    try:
        notification = parse_body(message.get("Body"))
    except Malformed as exc:
        return "malformed", str(exc)
    if notification is None:
        return "test", None
    return "event", make_event(notification, message, queue_url)


def region_from_queue_url(queue_url: str) -> str | None:
    """The region in an AWS queue URL (sqs.REGION.amazonaws.com or the legacy REGION.queue.amazonaws.com)."""
    match = re.match(r"\Ahttps://(?:sqs\.([a-z0-9-]+)|([a-z0-9-]+)\.queue)\.amazonaws\.com(?:\.cn)?/", queue_url)
    if match:
        return match.group(1) or match.group(2)
    return None


def check_args(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments with defaults, or ValueError naming the argument and the fix."""
    known = {"queue_url", "region", "endpoint_url", "profile", "wait_time_seconds", "max_messages",
             "visibility_timeout", "retry_delay"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError("asg_lifecycle: unknown argument(s) %s; known: %s" % (", ".join(unknown), ", ".join(sorted(known))))
    queue_url = args.get("queue_url")
    if not isinstance(queue_url, str) or not re.match(r"\Ahttps?://", queue_url):
        raise ValueError("asg_lifecycle: queue_url is required, the queue's URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)")

    def number(name, default, low, high, kind=int):
        value = args.get(name, default)
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise ValueError("asg_lifecycle: %s must be a number from %s to %s" % (name, low, high)) from None
        if not low <= value <= high:
            raise ValueError("asg_lifecycle: %s must be from %s to %s, not %s" % (name, low, high, value))
        return value

    return {
        "queue_url": queue_url,
        "region": args.get("region") or None,
        "endpoint_url": args.get("endpoint_url") or None,
        "profile": args.get("profile") or None,
        "wait_time_seconds": number("wait_time_seconds", 20, 1, 20),
        "max_messages": number("max_messages", 10, 1, 10),
        "visibility_timeout": number("visibility_timeout", 300, 0, 43200),
        "retry_delay": number("retry_delay", 5, 0, 60, float),
    }


def sqs_client(settings: dict[str, Any]) -> Any:
    # only the running source needs it
    import boto3  # pylint: disable=import-outside-toplevel

    session = boto3.session.Session(profile_name=settings["profile"]) if settings["profile"] else boto3.session.Session()
    region = settings["region"] or session.region_name or region_from_queue_url(settings["queue_url"])
    return session.client("sqs", region_name=region, endpoint_url=settings["endpoint_url"])


class Source:
    """Receive, classify, put: one SQS queue into one rulebook queue."""

    def __init__(self, client: Any, settings: dict[str, Any]) -> None:
        self.client = client
        self.settings = settings
        self.queue_url = settings["queue_url"]
        self.has_dead_letter_queue = False

    def start(self) -> None:
        """Reads the queue's redrive policy; fails loudly on a queue that cannot be read."""
        attributes = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["RedrivePolicy"])
        self.has_dead_letter_queue = bool(attributes.get("Attributes", {}).get("RedrivePolicy"))
        LOG.info("asg_lifecycle: reading %s (malformed messages: %s)", self.queue_url,
                 "left to the dead-letter queue" if self.has_dead_letter_queue else "deleted")

    def receive(self) -> list[dict[str, Any]]:
        answer = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.settings["max_messages"],
            WaitTimeSeconds=self.settings["wait_time_seconds"],
            VisibilityTimeout=self.settings["visibility_timeout"],
            AttributeNames=["ApproximateReceiveCount", "SenderId"],
        )
        return answer.get("Messages", [])

    def delete(self, message: dict[str, Any]) -> None:
        self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def handle(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """The event for a message, or None after dealing with a test or malformed message."""
        kind, value = classify(message, self.queue_url)
        if kind == "event":
            LOG.info("asg_lifecycle: %s for %s (group %s, hook %s, message %s)", value["asg_lifecycle"]["transition"],
                     value["asg_lifecycle"]["instance_id"], value["asg_lifecycle"]["group"],
                     value["asg_lifecycle"]["hook"], message.get("MessageId"))
            return value
        if kind == "test":
            LOG.info("asg_lifecycle: deleting test notification %s", message.get("MessageId"))
            self._delete_quietly(message)
            return None
        sender = (message.get("Attributes") or {}).get("SenderId")
        if self.has_dead_letter_queue:
            LOG.warning("asg_lifecycle: malformed message %s from %s left for the dead-letter queue: %s; body starts %r",
                        message.get("MessageId"), sender, value, excerpt(message.get("Body")))
        else:
            LOG.warning("asg_lifecycle: malformed message %s from %s deleted: %s; body starts %r",
                        message.get("MessageId"), sender, value, excerpt(message.get("Body")))
            self._delete_quietly(message)
        return None

    def _delete_quietly(self, message: dict[str, Any]) -> None:
        try:
            self.delete(message)
        except Exception as exc:  # pylint: disable=broad-except
            # it comes back and is dropped again
            LOG.warning("asg_lifecycle: could not delete message %s: %s", message.get("MessageId"), exc)


async def run(source: Source, queue: Any, retry_delay: float) -> None:
    """Receive for ever; errors of one receive or one message never stop the source."""
    failures = 0
    while True:
        try:
            messages = await asyncio.to_thread(source.receive)
        except Exception as exc:  # pylint: disable=broad-except
            # network, throttling, credentials expiring
            failures += 1
            pause = min(60.0, retry_delay * (2 ** min(failures - 1, 6)))
            LOG.warning("asg_lifecycle: ReceiveMessage failed (%s); again in %.1f s", exc, pause)
            await asyncio.sleep(pause)
            continue
        failures = 0
        for message in messages:
            try:
                event = await asyncio.to_thread(source.handle, message)
            except Exception as exc:  # pylint: disable=broad-except
                # one bad message, the next is handled
                LOG.warning("asg_lifecycle: message %s not handled (%s); it comes back after the visibility timeout",
                            message.get("MessageId"), exc)
                continue
            if event is not None:
                await queue.put(event)


async def main(queue: Any, args: dict[str, Any]) -> None:
    """Entry point of the event source (ansible-rulebook calls it)."""
    settings = check_args(args)
    source = Source(await asyncio.to_thread(sqs_client, settings), settings)
    await asyncio.to_thread(source.start)
    await run(source, queue, settings["retry_delay"])


if __name__ == "__main__":
    # python asg_lifecycle.py QUEUE_URL [ENDPOINT_URL]: print the events (never deletes a notification)
    import sys

    class _PrintQueue:
        async def put(self, event: dict[str, Any]) -> None:
            print(json.dumps(event))

    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(_PrintQueue(), {"queue_url": sys.argv[1], "endpoint_url": (sys.argv[2:] or [None])[0]}))
