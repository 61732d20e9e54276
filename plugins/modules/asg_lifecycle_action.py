#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_lifecycle_action
short_description: Complete an Auto Scaling lifecycle action, or keep it (and its SQS message) alive with heartbeats
version_added: 0.2.0
description:
  - O(action=complete) completes the lifecycle action that holds O(instance_id) with O(result)
    (C(CompleteLifecycleAction)), then deletes the SQS message that announced it (O(sqs_queue_url),
    O(sqs_receipt_handle)) if one is given. An instance that no longer waits for O(hook_name) (its
    action completed by another run, timed out, or the instance is gone) is left alone
    (not a change) and its message deleted, as nothing is left to do for it.
  - O(action=heartbeat) records one heartbeat (C(RecordLifecycleActionHeartbeat)) and extends the
    SQS message's visibility (C(ChangeMessageVisibility)) to O(sqs_visibility_timeout).
  - O(action=keep_alive) does that every O(heartbeat_interval) seconds until the instance no longer
    waits, O(stop_file) exists, or O(max_duration) has passed. Run it with C(async) and C(poll=0)
    beside a long step (a Nessus scan) so the hook's heartbeat timeout never expires meanwhile; the
    gate writes O(stop_file) when it is done.
  - O(action=release_message) deletes the SQS message when O(instance_id) waits for no lifecycle
    hook at all (completed, timed out, gone); it never completes anything. A message whose
    instance still waits is kept (another run is at it; it is delivered again).
  - The message is deleted only by O(action=complete), after the action completed, or by
    O(action=release_message), so an event the gate has not finished is delivered again.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  action:
    description:
      - V(complete), V(heartbeat), V(keep_alive) or V(release_message), see above.
    type: str
    choices: [complete, heartbeat, keep_alive, release_message]
    default: complete
  instance_id:
    description:
      - The instance held by the hook.
    type: str
    required: true
  group_name:
    description:
      - Its Auto Scaling group. Required except with O(action=release_message).
    type: str
  hook_name:
    description:
      - The lifecycle hook that holds it. Required except with O(action=release_message).
    type: str
  transition:
    description:
      - Which wait the action belongs to; an instance in the other wait state is not touched.
    type: str
    choices: [launching, terminating]
    default: launching
  result:
    description:
      - With O(action=complete), V(CONTINUE) (the instance goes on, into service or to termination)
        or V(ABANDON) (a launching instance is terminated and replaced).
    type: str
    choices: [CONTINUE, ABANDON]
  lifecycle_action_token:
    description:
      - The token of the notification, when known; without it the instance id identifies the action.
    type: str
  heartbeat_interval:
    description:
      - Seconds between two heartbeats of O(action=keep_alive); default a third of the hook's
        heartbeat timeout (read with C(DescribeLifecycleHooks)). Must be shorter than that timeout.
    type: int
  max_duration:
    description:
      - Longest O(action=keep_alive) runs, in seconds (also bounded by the C(async) of the task).
    type: int
    default: 7200
  stop_file:
    description:
      - O(action=keep_alive) stops as soon as this path exists (checked every second).
    type: path
  sqs_queue_url:
    description:
      - The queue the lifecycle notification came from (the event path). With O(sqs_receipt_handle).
    type: str
  sqs_receipt_handle:
    description:
      - The receipt handle of that message. Heartbeats extend its visibility; O(action=complete)
        deletes it once the action is completed (or nothing is left to complete).
    type: str
  sqs_visibility_timeout:
    description:
      - Visibility timeout set at each heartbeat, in seconds (at most 43200). With O(action=keep_alive)
        it defaults to three heartbeat intervals (at least 30) and must be longer than one interval;
        with O(action=heartbeat) it defaults to 300.
    type: int
attributes:
  check_mode:
    description: Reads the instance's state and reports what would be done; completes, records and deletes nothing.
    support: full
  diff_mode:
    description: The lifecycle state before and after completing.
    support: full
notes:
  - The caller needs C(autoscaling:DescribeAutoScalingInstances), C(autoscaling:DescribeLifecycleHooks),
    C(autoscaling:CompleteLifecycleAction), C(autoscaling:RecordLifecycleActionHeartbeat) on the group,
    and C(sqs:ChangeMessageVisibility), C(sqs:DeleteMessage) on the queue.
  - A hook's global timeout (100 times its heartbeat timeout, at most 48 hours) ends the wait whatever
    the heartbeats; the hook's default result then applies. Make it C(ABANDON).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Keep the action alive while the scan runs
  cloudefigo.core.asg_lifecycle_action:
    action: keep_alive
    instance_id: "{{ instance_id }}"
    group_name: web
    hook_name: cloudefigo-gate
    stop_file: /tmp/gate-{{ instance_id }}.done
  async: 7200
  poll: 0
  register: heartbeats

- name: Let the instance into service
  cloudefigo.core.asg_lifecycle_action:
    instance_id: "{{ instance_id }}"
    group_name: web
    hook_name: cloudefigo-gate
    result: CONTINUE
"""

RETURN = r"""
instance_id:
  description: The instance.
  returned: always
  type: str
  sample: i-0123456789abcdef0
lifecycle_state:
  description: Its lifecycle state when the module started (null when no group knows it).
  returned: always
  type: str
  sample: Pending:Wait
waiting:
  description: Whether it waited for O(hook_name)'s transition when the module started.
  returned: always
  type: bool
  sample: true
completed:
  description: With O(action=complete), whether this run completed the action (false in check mode and when nothing waited).
  returned: always
  type: bool
  sample: true
result:
  description: The result sent (O(action=complete)), else null.
  returned: always
  type: str
  sample: CONTINUE
heartbeats:
  description: Heartbeats recorded by this run.
  returned: always
  type: int
  sample: 3
stopped_because:
  description:
    - Why O(action=keep_alive) stopped (C(stop_file), C(not_waiting), C(max_duration), or C(check_mode), at once and
      with nothing recorded); null for the other actions.
  returned: always
  type: str
  sample: stop_file
heartbeat_interval:
  description: The interval used by O(action=keep_alive) (null for the other actions).
  returned: always
  type: int
  sample: 100
message_deleted:
  description: Whether the SQS message was deleted.
  returned: always
  type: bool
  sample: true
visibility_extensions:
  description: How many times the SQS message's visibility was extended.
  returned: always
  type: int
  sample: 3
"""

import os
import time

try:
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError

    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_message
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils import _asg_gate as gate
from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client

TRANSITIONS = {"launching": gate.LAUNCHING, "terminating": gate.TERMINATING}


def validate(params):
    """The first problem with the module's input (a message naming the option), or None."""
    problem = custody.instance_id_problem(params["instance_id"])
    if problem:
        return "instance_id " + problem
    if params["action"] == "release_message":
        if not params.get("sqs_receipt_handle"):
            return "action=release_message needs sqs_queue_url and sqs_receipt_handle"
        if params.get("result"):
            return "result is only used with action=complete; drop it for action=release_message"
    else:
        problem = gate.group_name_problem(params.get("group_name"))
        if problem:
            return "group_name (required with action=%s) %s" % (params["action"], problem)
        problem = gate.hook_name_problem(params.get("hook_name"))
        if problem:
            return "hook_name (required with action=%s) %s" % (params["action"], problem)
    if params["action"] == "complete" and not params.get("result"):
        return "result is required with action=complete: CONTINUE or ABANDON"
    if params["action"] != "complete" and params.get("result"):
        return "result is only used with action=complete; drop it for action=%s" % params["action"]
    if bool(params.get("sqs_queue_url")) != bool(params.get("sqs_receipt_handle")):
        return "sqs_queue_url and sqs_receipt_handle go together: give both (the event path) or neither (the schedule)"
    if params.get("sqs_visibility_timeout") is not None and not 1 <= params["sqs_visibility_timeout"] <= 43200:
        return "sqs_visibility_timeout must be 1 to 43200 seconds (SQS's limit)"
    if params.get("heartbeat_interval") is not None and params["heartbeat_interval"] < 1:
        return "heartbeat_interval must be at least 1 second"
    if params["max_duration"] < 1:
        return "max_duration must be at least 1 second"
    if params["action"] == "keep_alive" and not params.get("stop_file"):
        return "stop_file is required with action=keep_alive: the gate writes it when it is done, which stops the heartbeats"
    return None


class Action:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.autoscaling = retrying_client(module, "autoscaling")
        self.sqs = retrying_client(module, "sqs") if module.params.get("sqs_queue_url") else None
        self.transition = TRANSITIONS[module.params["transition"]]
        self.heartbeats = 0
        self.extensions = 0

    def state(self):
        """The instance's lifecycle state and group (None, None when no group knows it)."""
        try:
            found = self.autoscaling.describe_auto_scaling_instances(InstanceIds=[self.params["instance_id"]], aws_retry=True)
        except AWS_ERRORS as e:
            self.module.fail_json_aws(e, msg="Could not read the lifecycle state of %s" % self.params["instance_id"])
        for entry in found.get("AutoScalingInstances", []):
            if entry["InstanceId"] == self.params["instance_id"]:
                return entry.get("LifecycleState"), entry.get("AutoScalingGroupName")
        return None, None

    def waiting(self, state, group):
        return group == self.params["group_name"] and gate.transition_of(state) == self.transition

    def action_args(self):
        kwargs = {"LifecycleHookName": self.params["hook_name"], "AutoScalingGroupName": self.params["group_name"],
                  "InstanceId": self.params["instance_id"]}
        if self.params.get("lifecycle_action_token"):
            kwargs["LifecycleActionToken"] = self.params["lifecycle_action_token"]
        return kwargs

    def heartbeat(self, visibility):
        """One heartbeat and one visibility extension; False when the action is gone (nothing to keep alive)."""
        if self.module.check_mode:
            return True
        try:
            self.autoscaling.record_lifecycle_action_heartbeat(aws_retry=True, **self.action_args())
        except is_boto3_error_message("No active Lifecycle Action"):
            return False
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(e, msg="Could not record a heartbeat for %s (hook %s)" % (self.params["instance_id"], self.params["hook_name"]),
                                      **self.counters())
        self.heartbeats += 1
        if self.sqs is not None:
            try:
                self.sqs.change_message_visibility(QueueUrl=self.params["sqs_queue_url"], ReceiptHandle=self.params["sqs_receipt_handle"],
                                                   VisibilityTimeout=visibility, aws_retry=True)
                self.extensions += 1
            except AWS_ERRORS as e:
                # the lifecycle action matters, the message is only its announcement: go on, say so
                self.module.warn("Could not extend the visibility of the SQS message: %s" % e)
        return True

    def delete_message(self):
        if self.sqs is None or self.module.check_mode:
            return False
        try:
            self.sqs.delete_message(QueueUrl=self.params["sqs_queue_url"], ReceiptHandle=self.params["sqs_receipt_handle"], aws_retry=True)
        except AWS_ERRORS as e:
            self.module.fail_json_aws(e, msg="Completed, but could not delete the SQS message (it will be delivered again; "
                                             "the gate then finds nothing to do and deletes it)", **self.counters())
        return True

    def counters(self):
        return {"heartbeats": self.heartbeats, "visibility_extensions": self.extensions}

    def hook_timeout(self):
        try:
            hooks = self.autoscaling.describe_lifecycle_hooks(AutoScalingGroupName=self.params["group_name"],
                                                              LifecycleHookNames=[self.params["hook_name"]], aws_retry=True)
        except AWS_ERRORS as e:
            self.module.fail_json_aws(e, msg="Could not read hook %s of group %s" % (self.params["hook_name"], self.params["group_name"]))
        for hook in hooks.get("LifecycleHooks", []):
            if hook.get("LifecycleHookName") == self.params["hook_name"]:
                return hook.get("HeartbeatTimeout")
        self.module.fail_json(msg="hook_name: group %s has no lifecycle hook %s" % (self.params["group_name"], self.params["hook_name"]))
        return None

    def complete(self, state):
        completed = False
        if not self.module.check_mode:
            try:
                self.autoscaling.complete_lifecycle_action(LifecycleActionResult=self.params["result"], aws_retry=True, **self.action_args())
                completed = True
            except is_boto3_error_message("No active Lifecycle Action"):
                # another run completed it, or it timed out, between the read and now
                completed = False
            except AWS_ERRORS as e:  # pylint: disable=duplicate-except
                self.module.fail_json_aws(e, msg="Could not complete the lifecycle action of %s with %s (hook %s, group %s)"
                                          % (self.params["instance_id"], self.params["result"], self.params["hook_name"], self.params["group_name"]))
        return completed

    def keep_alive(self):
        timeout = self.hook_timeout()
        try:
            interval = gate.heartbeat_interval(timeout, self.params.get("heartbeat_interval"))
            visibility = gate.visibility_timeout(interval, self.params.get("sqs_visibility_timeout"))
        except gate.GateError as e:
            self.module.fail_json(msg=str(e))
        stop_file = self.params["stop_file"]
        deadline = time.monotonic() + self.params["max_duration"]
        reason = None
        while reason is None:
            if os.path.exists(stop_file):
                reason = "stop_file"
                break
            state, group = self.state()
            if not self.waiting(state, group) or not self.heartbeat(visibility):
                reason = "not_waiting"
                break
            next_beat = time.monotonic() + interval
            while reason is None and time.monotonic() < next_beat:
                if os.path.exists(stop_file):
                    reason = "stop_file"
                elif time.monotonic() >= deadline:
                    reason = "max_duration"
                else:
                    time.sleep(min(1.0, max(0.0, next_beat - time.monotonic())))
        return interval, reason


def main():
    argument_spec = dict(
        action=dict(type="str", default="complete", choices=["complete", "heartbeat", "keep_alive", "release_message"]),
        instance_id=dict(type="str", required=True),
        group_name=dict(type="str"),
        hook_name=dict(type="str"),
        transition=dict(type="str", default="launching", choices=["launching", "terminating"]),
        result=dict(type="str", choices=list(gate.RESULTS)),
        lifecycle_action_token=dict(type="str", no_log=True),
        heartbeat_interval=dict(type="int"),
        max_duration=dict(type="int", default=7200),
        stop_file=dict(type="path"),
        sqs_queue_url=dict(type="str"),
        sqs_receipt_handle=dict(type="str", no_log=True),
        sqs_visibility_timeout=dict(type="int"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    problem = validate(module.params)
    if problem:
        module.fail_json(msg=problem)
    action = Action(module)
    state, group = action.state()
    waiting = action.waiting(state, group)
    result = {"instance_id": module.params["instance_id"], "lifecycle_state": state, "waiting": waiting, "completed": False,
              "result": None, "stopped_because": None, "heartbeat_interval": None, "message_deleted": False}
    changed = False
    if module.params["action"] == "complete":
        result["result"] = module.params["result"]
        if waiting:
            changed = True
            result["completed"] = action.complete(state)
            if not module.check_mode and not result["completed"]:
                changed = False
        # completed now, or nothing left to complete: the announcement has served its purpose
        result["message_deleted"] = action.delete_message()
        if module._diff:
            result["diff"] = {"before": {"lifecycle_state": state},
                              "after": {"lifecycle_state": (("Pending:Proceed" if action.transition == gate.LAUNCHING else "Terminating:Proceed")
                                                            if changed else state)}}
    elif module.params["action"] == "release_message":
        # any wait, of any group: a message whose instance still waits stays for the run at it
        if gate.transition_of(state) is None:
            changed = True
            result["message_deleted"] = action.delete_message()
    elif module.params["action"] == "heartbeat":
        if waiting:
            changed = action.heartbeat(min(module.params.get("sqs_visibility_timeout") or 300, 43200))
    elif not waiting:
        result["stopped_because"] = "not_waiting"
    elif module.check_mode:
        # nothing is recorded in check mode, so there is nothing to repeat
        changed = True
        result["stopped_because"] = "check_mode"
    else:
        result["heartbeat_interval"], result["stopped_because"] = action.keep_alive()
        changed = action.heartbeats > 0
    result.update(action.counters())
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
