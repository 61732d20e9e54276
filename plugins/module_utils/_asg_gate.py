# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The Auto Scaling gate's decisions: which hook holds an instance, how often to send heartbeats,
where a claim lives and whether the key bucket guards it.

Private to the collection: not a public API, may change without notice.

Plain functions, no AWS calls: the modules asg_lifecycle_info, asg_lifecycle_action and
asg_gate_claim read state, ask these, and write.  See docs/asg-gate.md.
"""

from __future__ import annotations

import re

from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
# the lifecycle states in which an instance waits for a hook of that transition
WAIT_STATES = {"Pending:Wait": LAUNCHING, "Terminating:Wait": TERMINATING}
# after a heartbeat or a completion the instance shows these for a moment (AWS's state machine)
PROCEED_STATES = {"Pending:Proceed": LAUNCHING, "Terminating:Proceed": TERMINATING}
RESULTS = ("CONTINUE", "ABANDON")

# Claim marks (S3 object tags of the claim object)
TAG_CLAIM_RUN = "cloudefigo:claim-run"
TAG_CLAIM_TIME = "cloudefigo:claimed-at"
TAG_CLAIM_GROUP = "cloudefigo:asg-group"
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/=+@-]{0,127}$")
# an Auto Scaling group or hook name, as the API accepts it (1-255, no control characters)
GROUP_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,255}$")
HOOK_NAME = re.compile(r"^[A-Za-z0-9\-_/]{1,255}$")
# CompleteLifecycleAction / RecordLifecycleActionHeartbeat for an instance that no longer waits
NO_ACTIVE_ACTION = re.compile(r"no active lifecycle action", re.IGNORECASE)


class GateError(Exception):
    """A refusal; the message names the option or the fix."""


def run_id_problem(value):
    if not value or not RUN_ID.match(value):
        return "must be 1-128 characters (letters, digits, _.:/=+@-) starting with a letter or digit, got %r" % (value,)
    return None


def group_name_problem(value):
    if not value or not GROUP_NAME.match(value):
        return "must be an Auto Scaling group name (1-255 characters, no control characters), got %r" % (value,)
    return None


def hook_name_problem(value):
    if not value or not HOOK_NAME.match(value):
        return "must be a lifecycle hook name (1-255 letters, digits, -_/), got %r" % (value,)
    return None


def transition_of(lifecycle_state):
    """The hook transition an instance in this lifecycle state waits for, or None."""
    return WAIT_STATES.get(lifecycle_state)


def hook_view(hook):
    """The public shape of a DescribeLifecycleHooks entry."""
    return {
        "name": hook.get("LifecycleHookName"),
        "transition": hook.get("LifecycleTransition"),
        "heartbeat_timeout": hook.get("HeartbeatTimeout"),
        "global_timeout": hook.get("GlobalTimeout"),
        "default_result": hook.get("DefaultResult"),
        "notification_target_arn": hook.get("NotificationTargetARN"),
    }


def pick_hook(hooks, transition, hook_name=None):
    """The hook (hook_view shape) of `transition` that holds an instance, or None when the group has none.

    AWS does not say which hook an instance waits for; with several hooks of one transition the
    caller must name it (hook_name), else the choice would be a guess.
    """
    candidates = [h for h in hooks if h.get("transition") == transition]
    if hook_name:
        named = [h for h in candidates if h.get("name") == hook_name]
        return named[0] if named else None
    if len(candidates) > 1:
        raise GateError("the group has %d %s hooks (%s): name the gate's hook (hook_name / asg_gate_hook_name)"
                        % (len(candidates), transition, ", ".join(sorted(h["name"] for h in candidates))))
    return candidates[0] if candidates else None


def heartbeat_interval(heartbeat_timeout, wanted=None):
    """Seconds between two heartbeats: `wanted`, or a third of the hook's timeout (at least 1 s).

    A wanted interval not shorter than the timeout would let the action expire between two
    heartbeats: refused.
    """
    timeout = int(heartbeat_timeout or 0)
    if timeout <= 0:
        raise GateError("the hook has no heartbeat timeout (%r): cannot plan heartbeats" % (heartbeat_timeout,))
    if wanted:
        if int(wanted) >= timeout:
            raise GateError("heartbeat_interval %s is not shorter than the hook's heartbeat timeout %s: the action would expire "
                            "between two heartbeats; leave heartbeat_interval unset (a third of the timeout)" % (wanted, timeout))
        return max(1, int(wanted))
    return max(1, timeout // 3)


def visibility_timeout(interval, wanted=None):
    """SQS visibility timeout to set at each heartbeat: `wanted`, else three heartbeat intervals (at least 30 s)."""
    if wanted:
        if int(wanted) <= int(interval):
            raise GateError("sqs_visibility_timeout %s must be longer than the heartbeat interval %s, or the message would "
                            "reappear between two extensions" % (wanted, interval))
        return min(int(wanted), 43200)
    return min(max(30, 3 * int(interval)), 43200)


def no_active_action(message):
    """Whether an Auto Scaling error says the instance has no lifecycle action to complete or extend."""
    return bool(NO_ACTIVE_ACTION.search(message or ""))


def claim_object(prefix, instance_id):
    problem = custody.instance_id_problem(instance_id)
    if problem:
        raise GateError("instance_id " + problem)
    return "%s%s.claim" % (prefix or "", instance_id)


def claim_tags(instance_id, run_id, group_name, claimed_at):
    tags = {custody.TAG_INSTANCE_ID: instance_id, TAG_CLAIM_RUN: run_id, TAG_CLAIM_TIME: claimed_at}
    if group_name:
        # S3 tag values: letters, digits, spaces and + - = . _ : / @ only
        tags[TAG_CLAIM_GROUP] = re.sub(r"[^A-Za-z0-9 +\-=._:/@]", "_", group_name)[:256]
    return tags


def claim_holder(tags):
    """{'run_id', 'instance_id', 'claimed_at', 'group_name'} of a claim object's tags."""
    return {
        "run_id": tags.get(TAG_CLAIM_RUN),
        "instance_id": tags.get(custody.TAG_INSTANCE_ID),
        "claimed_at": tags.get(TAG_CLAIM_TIME),
        "group_name": tags.get(TAG_CLAIM_GROUP),
    }


def _as_list(value):
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def bucket_guards_claims(policy, partition, bucket):
    """Whether the key bucket's policy denies writing objects to everyone but named principals.

    That is volume_key's statement CloudefigoDenyEverythingElseToAllButControllers: a Deny to
    Principal "*" of everything but reading, on the bucket's objects, unless aws:PrincipalArn is a
    controller.  Without it any principal of the account with s3:PutObject could pre-create a claim
    (and keep the gate away from an instance until the hook's timeout).
    """
    _bucket_arn, objects_arn = custody.bucket_arns(partition, bucket)
    for statement in custody._statements(policy):  # pylint: disable=protected-access
        if statement.get("Effect") != "Deny" or statement.get("Principal") not in ("*", {"AWS": "*"}):
            continue
        if objects_arn not in _as_list(statement.get("Resource")):
            continue
        not_actions = _as_list(statement.get("NotAction"))
        actions = _as_list(statement.get("Action"))
        put = ("s3:PutObject", "s3:Put*", "s3:*", "*")
        if not_actions:
            writes_denied = not any(action in not_actions for action in put)
        else:
            writes_denied = any(action in actions for action in put)
        condition = statement.get("Condition") or {}
        by_principal = any("aws:PrincipalArn" in (condition.get(op) or {}) for op in ("ArnNotEquals", "ArnNotLike"))
        if writes_denied and by_principal and len(condition) == 1:
            return True
    return False
