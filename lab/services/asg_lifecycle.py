"""Lab stand-in for Amazon EC2 Auto Scaling lifecycle actions (a behaviour of the AWS proxy).

Why: moto 5.2.5 stores lifecycle hooks but puts every new instance straight into ``InService``,
sends no notification and answers ``CompleteLifecycleAction`` / ``RecordLifecycleActionHeartbeat``
with NotImplemented.  This module sits in the lab's AWS proxy (lab/services/aws_proxy.py) in front
of moto and plays AWS's documented lifecycle state machine on top of moto's groups:

- a launching hook (``autoscaling:EC2_INSTANCE_LAUNCHING``) holds each NEW instance of its group in
  ``Pending:Wait`` and notifies; ``CONTINUE`` (by token or instance id) -> ``Pending:Proceed`` ->
  ``InService``; ``ABANDON`` -> the instance is terminated (through the terminating hooks, if any)
  and moto launches a replacement, which is held and notified in turn;
- a terminating hook (``autoscaling:EC2_INSTANCE_TERMINATING``) holds an instance the group removes
  (SetDesiredCapacity / UpdateAutoScalingGroup lower, TerminateInstanceInAutoScalingGroup, an
  abandoned launch) in ``Terminating:Wait`` -- still running in EC2 -- and notifies;
  ``CONTINUE``/``ABANDON``/timeout -> ``Terminating:Proceed`` -> terminated in EC2;
- ``HeartbeatTimeout`` + ``DefaultResult`` on timeout, ``RecordLifecycleActionHeartbeat`` restarts
  the heartbeat timeout, global timeout = min(172800, 100 x HeartbeatTimeout) seconds;
- notifications to the hook's ``NotificationTargetARN`` (SQS queue or SNS topic on moto) in AWS's
  JSON format, and the ``autoscaling:TEST_NOTIFICATION`` message on PutLifecycleHook.

Moto keeps the instances and groups; the stand-in keeps the hooks, the lifecycle actions and the
instances in a wait state, and overlays ``LifecycleState`` in DescribeAutoScalingGroups /
DescribeAutoScalingInstances.  An instance in ``Terminating:*`` is detached from moto's group
(moto would terminate it at once) and added back to those answers by the overlay.

Lab control (JSON, under ``/_lab/proxy/``): ``GET asg`` -> the state (settings, hooks, instances in a
wait state, actions, events, notifications); ``POST asg/settings`` -> change settings
(``min_heartbeat_timeout``, ``proceed_seconds``, ``tick_seconds``); ``POST asg/credentials`` -> the
keys the stand-in signs its own moto calls with (moto IAM enforcement); ``POST asg/expire``
``{"instance_id"|"token", "hook"?}`` -> time that action out now.  ``POST reset`` forgets all of it.
Deviations from AWS are listed in docs/lab-asg-lifecycle.md.  The Query API shapes (parameters, XML
answers and errors, the Describe overlay) live in lab/services/_asg_query.py.
"""
import http.client
import json
import threading
import time
import urllib.parse
import uuid
from xml.sax.saxutils import escape

from . import _asg_query as query
from ._asg_query import LifecycleError

LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
TRANSITIONS = (LAUNCHING, TERMINATING)
RESULTS = ("CONTINUE", "ABANDON")
GLOBAL_TIMEOUT_MAX = 172800  # 48 h
HEARTBEAT_MAX = 7200
DEFAULT_HEARTBEAT = 3600
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "expect", "content-length"}
DEFAULT_SETTINGS = {
    # AWS accepts 30..7200; the lab accepts from this value up so tests can time out in seconds
    "min_heartbeat_timeout": 1,
    # how long Pending:Proceed / Terminating:Proceed stay visible before InService / terminated
    "proceed_seconds": 0.5,
    # how often timeouts and proceed states are checked
    "tick_seconds": 0.1,
}
# actions the stand-in answers or post-processes; every other autoscaling action goes to moto,
# then the stand-in re-reads the groups it tracks
DESCRIBES = ("DescribeAutoScalingGroups", "DescribeAutoScalingInstances")


class Lifecycle:
    """The stand-in's state and behaviour; one per proxy (thread-safe)."""

    def __init__(self, upstream, response_class, region="us-east-1", account="123456789012"):
        self.upstream = upstream.rstrip("/")
        self.response_class = response_class  # aws_proxy.Response (status, body, headers)
        self.region = region
        self.account = account
        self.lock = threading.RLock()
        self._stop = threading.Event()
        self.reset()
        self._ticker = threading.Thread(target=self._tick_loop, daemon=True, name="asg-lifecycle-ticker")
        self._ticker.start()

    # --- state ---------------------------------------------------------------------------------
    def reset(self):
        with self.lock:
            self.settings = dict(DEFAULT_SETTINGS)
            self.hooks = {}      # (group, hook name) -> hook dict (DescribeLifecycleHooks shape)
            self.groups = {}     # group -> {"arn": ..., "known": set(instance ids seen in the group)}
            self.instances = {}  # instance id -> {"group", "state", "since", "until", "member", "tokens"}
            self.actions = {}    # token -> action dict
            self.events = []     # lifecycle transitions, oldest first
            self.notifications = []  # every message sent (test notifications too)
            self.credentials = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
            self._clients = {}

    def stop(self):
        self._stop.set()

    def snapshot(self):
        with self.lock:
            return {
                "settings": dict(self.settings),
                "hooks": [dict(h) for h in self.hooks.values()],
                "instances": {i: {k: (sorted(v) if isinstance(v, set) else v) for k, v in r.items() if k != "member"}
                              for i, r in self.instances.items()},
                "actions": [dict(a) for a in self.actions.values()],
                "events": list(self.events),
                "notifications": list(self.notifications),
            }

    def update_settings(self, wanted):
        with self.lock:
            for key, value in wanted.items():
                if key not in DEFAULT_SETTINGS:
                    raise ValueError("unknown setting %r (known: %s)" % (key, ", ".join(sorted(DEFAULT_SETTINGS))))
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise ValueError("setting %r must be a number >= 0" % key)
                self.settings[key] = value
            return dict(self.settings)

    def _event(self, instance_id, group, state, cause, **extra):
        record = {"time": time.time(), "instance_id": instance_id, "group": group, "state": state, "cause": cause}
        record.update(extra)
        self.events.append(record)

    # --- moto (the stand-in's own calls, signed with the lab's test credentials) ----------------
    def set_credentials(self, wanted):
        """With moto's IAM enforcement on, the stand-in needs keys of a principal moto knows."""
        keys = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
        if not isinstance(wanted, dict) or set(wanted) - set(keys) or not all(
                isinstance(wanted.get(k), str) and wanted.get(k) for k in keys[:2]):
            raise ValueError("give aws_access_key_id and aws_secret_access_key (and optionally aws_session_token)")
        with self.lock:
            self.credentials = dict(wanted)
            self._clients = {}

    def client(self, service):
        with self.lock:
            if service not in self._clients:
                import boto3  # the lab venv has it; imported late so the proxy starts without it
                self._clients[service] = boto3.client(
                    service, endpoint_url=self.upstream, region_name=self.region, **self.credentials)
            return self._clients[service]

    def _moto_groups(self, names):
        if not names:
            return {}
        found = {}
        names = sorted(names)
        for start in range(0, len(names), 50):
            paginator = self.client("autoscaling").get_paginator("describe_auto_scaling_groups")
            for page in paginator.paginate(AutoScalingGroupNames=names[start:start + 50]):
                for group in page["AutoScalingGroups"]:
                    found[group["AutoScalingGroupName"]] = group
        return found

    def _forward(self, request):
        parts = urllib.parse.urlsplit(self.upstream)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        try:
            headers = {k: v for k, v in request.headers.items() if k not in HOP_BY_HOP}
            headers["content-length"] = str(len(request.body))
            conn.request(request.method, request.target, body=request.body or None, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.read(), answer.getheaders()
        finally:
            conn.close()

    # --- the behaviour ---------------------------------------------------------------------------
    def behaviour(self, request):
        """Answer or post-process Auto Scaling calls (and EC2 TerminateInstances); None = not ours."""
        if request.method == "POST" and request.path == "/moto-api/reset":
            self.reset()  # moto emptied through the proxy: forget everything too
            return None
        service = request.service
        if service not in ("autoscaling", "ec2"):
            return None
        action = request.action
        if service == "ec2":
            if action != "TerminateInstances" or not self.hooks:
                return None
            return self._forward_then_sync(request)
        params = query.params(request)
        always = ("PutLifecycleHook", "DescribeLifecycleHooks", "DeleteLifecycleHook", "CompleteLifecycleAction",
                  "RecordLifecycleActionHeartbeat", "DisableMetricsCollection")
        if not self.groups and action not in always and not (
                action == "CreateAutoScalingGroup" and query.members(params, "LifecycleHookSpecificationList")):
            return None  # nothing tracked: moto answers as it would without the stand-in
        handler = {
            "PutLifecycleHook": self._put_lifecycle_hook,
            "DescribeLifecycleHooks": self._describe_lifecycle_hooks,
            "DeleteLifecycleHook": self._delete_lifecycle_hook,
            "CompleteLifecycleAction": self._complete_lifecycle_action,
            "RecordLifecycleActionHeartbeat": self._record_heartbeat,
            "CreateAutoScalingGroup": self._create_group,
            "SetDesiredCapacity": self._scale,
            "UpdateAutoScalingGroup": self._scale,
            "TerminateInstanceInAutoScalingGroup": self._terminate_in_group,
            "DeleteAutoScalingGroup": self._delete_group,
            "DisableMetricsCollection": self._disable_metrics_collection,
        }.get(action)
        try:
            with self.lock:
                if handler is not None:
                    result = handler(request, params)
                elif action in DESCRIBES:
                    result = self._describe(request, action)
                else:
                    result = self._forward_then_sync(request)
        except LifecycleError as error:
            result = query.error(error)
        return self._response(*result) if isinstance(result, tuple) else result

    def _response(self, status, body, headers=None):
        return self.response_class(status, body, headers or {"Content-Type": "text/xml"})

    def _forward_then_sync(self, request):
        with self.lock:
            status, body, headers = self._forward(request)
            if status < 300:
                self.sync()
        return self._response(status, body, dict(headers))

    # --- hooks -----------------------------------------------------------------------------------
    def _require_group(self, name):
        groups = self._moto_groups([name]) if name else {}
        if name not in groups:
            raise LifecycleError("AutoScalingGroup name not found - AutoScalingGroup '%s' not found" % name)
        return groups[name]

    def _validate_hook(self, group, name, spec, existing):
        if not name:
            raise LifecycleError("LifecycleHookName is required")
        transition = spec.get("LifecycleTransition") or (existing or {}).get("LifecycleTransition")
        if transition not in TRANSITIONS:
            raise LifecycleError("Invalid Lifecycle Transition name: %s" % (spec.get("LifecycleTransition") or ""))
        hook = dict(existing or {
            "LifecycleHookName": name, "AutoScalingGroupName": group, "HeartbeatTimeout": DEFAULT_HEARTBEAT,
            "DefaultResult": "ABANDON"})
        hook["LifecycleTransition"] = transition
        timeout = query.int_param(spec, "HeartbeatTimeout")
        if timeout is not None:
            low = self.settings["min_heartbeat_timeout"]
            if timeout < low or timeout > HEARTBEAT_MAX:
                raise LifecycleError("Heartbeat timeout must be between %s and %s seconds (got %s)"
                                     % (int(low) if low == int(low) else low, HEARTBEAT_MAX, timeout))
            hook["HeartbeatTimeout"] = timeout
        if spec.get("DefaultResult"):
            if spec["DefaultResult"] not in RESULTS:
                raise LifecycleError("Valid values for DefaultResult are CONTINUE and ABANDON, got %s" % spec["DefaultResult"])
            hook["DefaultResult"] = spec["DefaultResult"]
        for field in ("NotificationTargetARN", "RoleARN", "NotificationMetadata"):
            if field in spec:
                if spec[field] == "":
                    hook.pop(field, None)  # AWS: an empty string overrides (clears) the value
                else:
                    hook[field] = spec[field]
        target = hook.get("NotificationTargetARN")
        if target:
            if not (target.startswith("arn:aws:sqs:") or target.startswith("arn:aws:sns:")):
                raise LifecycleError("Notification target %s is not an Amazon SQS queue or Amazon SNS topic" % target)
            if not hook.get("RoleARN"):
                raise LifecycleError("RoleARN is required when a NotificationTargetARN is specified")
        hook["GlobalTimeout"] = min(GLOBAL_TIMEOUT_MAX, 100 * hook["HeartbeatTimeout"])
        return hook

    def _test_notification(self, hook, group_arn):
        message = {
            "AccountId": self.account,
            "RequestId": str(uuid.uuid4()),
            "AutoScalingGroupARN": group_arn,
            "AutoScalingGroupName": hook["AutoScalingGroupName"],
            "Service": "AWS Auto Scaling",
            "Event": "autoscaling:TEST_NOTIFICATION",
            "Time": query.now_iso(),
        }
        try:
            self._send(hook["NotificationTargetARN"], message)
        except Exception as exc:  # noqa: BLE001 - AWS refuses the hook when the test message fails
            raise LifecycleError(
                "Unable to publish test message to notification target %s using IAM role %s. Please check "
                "your target and role configuration and try to put lifecycle hook again. (lab: %s)"
                % (hook["NotificationTargetARN"], hook.get("RoleARN"), exc))

    def _put_lifecycle_hook(self, request, params):
        group_name = params.get("AutoScalingGroupName")
        moto_group = self._require_group(group_name)
        self._track_group(moto_group, known_now=True)
        name = params.get("LifecycleHookName")
        existing = self.hooks.get((group_name, name))
        hook = self._validate_hook(group_name, name, params, existing)
        if params.get("NotificationTargetARN"):
            self._test_notification(hook, moto_group["AutoScalingGroupARN"])
        self._forward(request)  # moto keeps its own (partial) copy; harmless
        self.hooks[(group_name, name)] = hook
        return query.answer("PutLifecycleHook")

    def _describe_lifecycle_hooks(self, request, params):
        group_name = params.get("AutoScalingGroupName")
        self.sync()
        wanted = [m for k, m in sorted(params.items()) if k.startswith("LifecycleHookNames.member.")]
        members = []
        for (group, name), hook in sorted(self.hooks.items()):
            if group != group_name or (wanted and name not in wanted):
                continue
            fields = "".join("<%s>%s</%s>" % (k, escape(str(hook[k])), k) for k in (
                "LifecycleHookName", "AutoScalingGroupName", "LifecycleTransition", "NotificationTargetARN",
                "RoleARN", "NotificationMetadata", "HeartbeatTimeout", "GlobalTimeout", "DefaultResult") if k in hook)
            members.append("<member>%s</member>" % fields)
        return query.answer("DescribeLifecycleHooks", "<LifecycleHooks>%s</LifecycleHooks>" % "".join(members))

    def _delete_lifecycle_hook(self, request, params):
        key = (params.get("AutoScalingGroupName"), params.get("LifecycleHookName"))
        hook = self.hooks.get(key)
        if hook is None:
            raise LifecycleError("No Lifecycle Hook found with name %s for group %s" % (key[1], key[0]))
        # AWS: outstanding actions complete first (ABANDON for launching, CONTINUE for terminating);
        # the hook is gone before, so a replacement launched meanwhile is not held by it
        del self.hooks[key]
        for action in [a for a in self.actions.values() if (a["AutoScalingGroupName"], a["LifecycleHookName"]) == key]:
            self._resolve(action, "ABANDON" if action["LifecycleTransition"] == LAUNCHING else "CONTINUE",
                          "hook deleted")
        self._forward(request)
        return query.answer("DeleteLifecycleHook")

    # --- actions ---------------------------------------------------------------------------------
    def _find_action(self, params):
        group, hook = params.get("AutoScalingGroupName"), params.get("LifecycleHookName")
        token, instance_id = params.get("LifecycleActionToken"), params.get("InstanceId")
        if not hook or not group:
            raise LifecycleError("LifecycleHookName and AutoScalingGroupName are required")
        if token:
            action = self.actions.get(token)
            if action is None or (action["AutoScalingGroupName"], action["LifecycleHookName"]) != (group, hook) or (
                    instance_id and action["EC2InstanceId"] != instance_id):
                raise LifecycleError("No active Lifecycle Action found with token %s" % token)
            return action
        if instance_id:
            for action in self.actions.values():
                if (action["EC2InstanceId"], action["AutoScalingGroupName"], action["LifecycleHookName"]) == (
                        instance_id, group, hook):
                    return action
            raise LifecycleError("No active Lifecycle Action found with instance ID %s" % instance_id)
        raise LifecycleError("Either LifecycleActionToken or InstanceId must be specified")

    def _complete_lifecycle_action(self, request, params):
        result = params.get("LifecycleActionResult")
        if result not in RESULTS:
            raise LifecycleError("Valid values for LifecycleActionResult are CONTINUE and ABANDON, got %s" % result)
        action = self._find_action(params)
        self._resolve(action, result, "CompleteLifecycleAction")
        return query.answer("CompleteLifecycleAction")

    def _record_heartbeat(self, request, params):
        action = self._find_action(params)
        now = time.time()
        action["HeartbeatDeadline"] = min(now + action["HeartbeatTimeout"], action["GlobalDeadline"])
        action["Heartbeats"] += 1
        self._event(action["EC2InstanceId"], action["AutoScalingGroupName"],
                    (self.instances.get(action["EC2InstanceId"]) or {}).get("state"),
                    "RecordLifecycleActionHeartbeat", hook=action["LifecycleHookName"])
        return query.answer("RecordLifecycleActionHeartbeat")

    def expire(self, instance_id=None, token=None, hook=None):
        """Lab control: time an action out now (its hook's DefaultResult applies)."""
        with self.lock:
            for action in list(self.actions.values()):
                if (token and action["LifecycleActionToken"] == token) or (
                        instance_id and action["EC2InstanceId"] == instance_id and hook in (None, action["LifecycleHookName"])):
                    self._resolve(action, action["DefaultResult"], "HeartbeatTimeout (lab expire)")
                    return action
        raise KeyError("no active lifecycle action for %s" % (token or instance_id))

    def _start_actions(self, instance_id, group, transition):
        """Create one action per hook of that transition; notify.  Returns the tokens."""
        tokens = []
        now = time.time()
        for key, hook in sorted(self.hooks.items()):
            if key[0] != group or hook["LifecycleTransition"] != transition:
                continue
            token = str(uuid.uuid4())
            action = {
                "LifecycleActionToken": token, "EC2InstanceId": instance_id, "AutoScalingGroupName": group,
                "LifecycleHookName": hook["LifecycleHookName"], "LifecycleTransition": transition,
                "HeartbeatTimeout": hook["HeartbeatTimeout"], "DefaultResult": hook["DefaultResult"],
                "Started": now, "HeartbeatDeadline": now + hook["HeartbeatTimeout"],
                "GlobalDeadline": now + hook["GlobalTimeout"], "Heartbeats": 0,
            }
            self.actions[token] = action
            tokens.append(token)
            if hook.get("NotificationTargetARN"):
                self._notify(hook, action)
        return tokens

    def _notify(self, hook, action):
        launching = action["LifecycleTransition"] == LAUNCHING
        message = {
            "Origin": "EC2" if launching else "AutoScalingGroup",
            "LifecycleHookName": hook["LifecycleHookName"],
            "Destination": "AutoScalingGroup" if launching else "EC2",
            "AccountId": self.account,
            "RequestId": str(uuid.uuid4()),
            "LifecycleTransition": action["LifecycleTransition"],
            "AutoScalingGroupName": action["AutoScalingGroupName"],
            "Service": "AWS Auto Scaling",
            "Time": query.now_iso(),
            "EC2InstanceId": action["EC2InstanceId"],
            "LifecycleActionToken": action["LifecycleActionToken"],
        }
        if hook.get("NotificationMetadata"):
            message["NotificationMetadata"] = hook["NotificationMetadata"]
        try:
            self._send(hook["NotificationTargetARN"], message)
        except Exception as exc:  # noqa: BLE001 - AWS drops an undeliverable notification too
            self._event(action["EC2InstanceId"], action["AutoScalingGroupName"], None, "notification failed: %s" % exc)

    def _send(self, target, message):
        body = json.dumps(message)
        arn = target.split(":")
        if target.startswith("arn:aws:sqs:"):
            sqs = self.client("sqs")
            url = sqs.get_queue_url(QueueName=arn[5], QueueOwnerAWSAccountId=arn[4])["QueueUrl"]
            sqs.send_message(QueueUrl=url, MessageBody=body)
        else:
            self.client("sns").publish(TopicArn=target, Message=body)
        self.notifications.append({"time": time.time(), "target": target, "message": message})

    def _resolve(self, action, result, cause):
        """One action ends with CONTINUE or ABANDON; move the instance on when its actions are done."""
        self.actions.pop(action["LifecycleActionToken"], None)
        instance_id = action["EC2InstanceId"]
        record = self.instances.get(instance_id)
        if record is None:
            return
        record["tokens"] = [t for t in record["tokens"] if t != action["LifecycleActionToken"]]
        self._event(instance_id, record["group"], record["state"], cause, hook=action["LifecycleHookName"], result=result)
        if result == "ABANDON":
            # ABANDON stops the instance's remaining actions (launch: it will not go into service)
            for token in record["tokens"]:
                self.actions.pop(token, None)
            record["tokens"] = []
        if record["tokens"]:
            return
        if action["LifecycleTransition"] == LAUNCHING:
            if result == "CONTINUE":
                self._set_state(record, instance_id, "Pending:Proceed", cause)
            else:
                self._begin_termination(instance_id, record["group"], decrement=False, cause="launch abandoned")
        else:
            self._set_state(record, instance_id, "Terminating:Proceed", cause)

    def _set_state(self, record, instance_id, state, cause):
        record["state"] = state
        record["since"] = time.time()
        record["until"] = time.time() + self.settings["proceed_seconds"] if state.endswith(":Proceed") else None
        self._event(instance_id, record["group"], state, cause)

    # --- groups ----------------------------------------------------------------------------------
    def _track_group(self, moto_group, known_now):
        """Start tracking a group: its current instances are known (not new launches) when known_now."""
        name = moto_group["AutoScalingGroupName"]
        tracked = self.groups.get(name)
        if tracked is None or tracked["arn"] != moto_group["AutoScalingGroupARN"]:
            self._forget_group(name)
            known = {i["InstanceId"] for i in moto_group["Instances"]} if known_now else set()
            self.groups[name] = {"arn": moto_group["AutoScalingGroupARN"], "known": known}
        return self.groups[name]

    def _forget_group(self, name):
        self.groups.pop(name, None)
        for key in [k for k in self.hooks if k[0] == name]:
            del self.hooks[key]
        for token in [t for t, a in self.actions.items() if a["AutoScalingGroupName"] == name]:
            del self.actions[token]
        for instance_id in [i for i, r in self.instances.items() if r["group"] == name]:
            del self.instances[instance_id]

    def sync(self):
        """Re-read the tracked groups from moto: hold new instances, forget vanished ones."""
        with self.lock:
            if not self.groups:
                return
            moto_groups = self._moto_groups(list(self.groups))
            for name in list(self.groups):
                moto_group = moto_groups.get(name)
                if moto_group is None or moto_group["AutoScalingGroupARN"] != self.groups[name]["arn"]:
                    self._forget_group(name)  # deleted, or moto was reset and the name reused
                    continue
                tracked = self.groups[name]
                members = {i["InstanceId"]: i for i in moto_group["Instances"]}
                for instance_id, member in members.items():
                    if instance_id in tracked["known"]:
                        continue
                    tracked["known"].add(instance_id)
                    self._launched(instance_id, name, member)
                for instance_id in list(tracked["known"]):
                    record = self.instances.get(instance_id)
                    if instance_id in members or (record and record["state"].startswith("Terminating")):
                        continue
                    tracked["known"].discard(instance_id)
                    if record is not None:  # left the group some other way (EC2 terminate, detach)
                        for token in record["tokens"]:
                            self.actions.pop(token, None)
                        del self.instances[instance_id]
                        self._event(instance_id, name, None, "left the group outside the lifecycle")

    def _launched(self, instance_id, group, member):
        record = {"group": group, "state": "Pending", "since": time.time(), "until": None, "member": member, "tokens": []}
        self.instances[instance_id] = record
        self._event(instance_id, group, "Pending", "launched")
        if self._has_hook(group, LAUNCHING):
            # the state first, then the notifications: whoever reads one sees Pending:Wait
            self._set_state(record, instance_id, "Pending:Wait", "launching lifecycle hook")
            record["tokens"] = self._start_actions(instance_id, group, LAUNCHING)
        else:
            del self.instances[instance_id]
            self._event(instance_id, group, "InService", "no launching hook")

    def _begin_termination(self, instance_id, group, decrement, cause, member=None):
        """Take the instance out of moto's group (kept running) and hold or terminate it."""
        record = self.instances.get(instance_id)
        if record is None:
            record = {"group": group, "state": "Terminating", "since": time.time(), "until": None,
                      "member": member or {}, "tokens": []}
            self.instances[instance_id] = record
        for token in record["tokens"]:
            self.actions.pop(token, None)
        record["tokens"] = []
        record["state"] = "Terminating"  # before the detach: sync must not take it for gone
        if not record["member"]:
            record["member"] = member or {}
        self._event(instance_id, group, "Terminating", cause)
        # moto launches the replacement at once when the capacity is not decremented
        self.client("autoscaling").detach_instances(
            AutoScalingGroupName=group, InstanceIds=[instance_id], ShouldDecrementDesiredCapacity=decrement)
        if self._has_hook(group, TERMINATING):
            self._set_state(record, instance_id, "Terminating:Wait", "terminating lifecycle hook")
            record["tokens"] = self._start_actions(instance_id, group, TERMINATING)
        else:
            self._set_state(record, instance_id, "Terminating:Proceed", "no terminating hook")
        self.sync()

    def _has_hook(self, group, transition):
        return any(g == group and h["LifecycleTransition"] == transition for (g, unused_name), h in self.hooks.items())

    def _create_group(self, request, params):
        specs = query.members(params, "LifecycleHookSpecificationList")
        name = params.get("AutoScalingGroupName")
        hooks = []
        for spec in specs:  # validated before anything is created, as AWS does
            if not spec.get("LifecycleTransition"):
                raise LifecycleError("LifecycleTransition is required in a LifecycleHookSpecification")
            hooks.append(self._validate_hook(name, spec.get("LifecycleHookName"), spec, None))
        status, body, headers = self._forward(request)
        if status >= 300 or not hooks:
            if status < 300:
                self.sync()
            return self._response(status, body, dict(headers))
        moto_group = self._require_group(name)
        self.groups.pop(name, None)
        self._track_group(moto_group, known_now=False)  # its instances are all new launches
        for hook in hooks:
            self.hooks[(name, hook["LifecycleHookName"])] = hook
            if hook.get("NotificationTargetARN"):
                try:
                    self._test_notification(hook, moto_group["AutoScalingGroupARN"])
                except LifecycleError as error:  # the group exists already; record the failed test message
                    self._event(None, name, None, error.message)
        self.sync()
        return self._response(status, body, dict(headers))

    def _scale(self, request, params):
        """SetDesiredCapacity / UpdateAutoScalingGroup: a scale-in holds the removed instances."""
        name = params.get("AutoScalingGroupName")
        if name in self.groups and self._has_hook(name, TERMINATING):
            moto_group = self._moto_groups([name]).get(name)
            if moto_group is not None:
                self._scale_in_first(moto_group, params, request.action)
        status, body, headers = self._forward(request)
        if status < 300:
            self.sync()
        return self._response(status, body, dict(headers))

    def _scale_in_first(self, group, params, action):
        desired = query.int_param(params, "DesiredCapacity")
        low = query.int_param(params, "MinSize")
        high = query.int_param(params, "MaxSize")
        low = group["MinSize"] if low is None else low
        high = group["MaxSize"] if high is None else high
        members = group["Instances"]
        if desired is None and action == "UpdateAutoScalingGroup" and high < len(members):
            desired = high
        if desired is None or desired < low or desired > high or desired >= len(members):
            return  # no scale-in, or an invalid request moto answers
        # moto's choice (the order of the group, unprotected first); AWS's default policy differs
        victims = [m for m in members if not m.get("ProtectedFromScaleIn")][:len(members) - desired]
        for member in victims:
            self._begin_termination(member["InstanceId"], group["AutoScalingGroupName"], decrement=True,
                                    cause="scale-in (%s %s)" % (action, desired), member=member)

    def _terminate_in_group(self, request, params):
        instance_id = params.get("InstanceId")
        decrement = params.get("ShouldDecrementDesiredCapacity", "false").lower() == "true"
        self.sync()
        group = next((g for g, t in self.groups.items() if instance_id in t["known"]), None)
        record = self.instances.get(instance_id)
        if group is None or not (self._has_hook(group, TERMINATING) or record is not None):
            return self._forward_then_sync(request)
        if record is not None and record["state"].startswith("Terminating"):
            raise LifecycleError("The instance %s is already terminating" % instance_id)
        moto_group = self._moto_groups([group])[group]
        member = next((m for m in moto_group["Instances"] if m["InstanceId"] == instance_id), {})
        before = moto_group["DesiredCapacity"]
        self._begin_termination(instance_id, group, decrement=decrement, cause="TerminateInstanceInAutoScalingGroup",
                                member=member)
        description = "Terminating EC2 instance: %s" % instance_id
        cause = ("At %s instance %s was taken out of service in response to a user request%s."
                 % (query.now_iso()[:19] + "Z", instance_id,
                    ", shrinking the capacity from %d to %d" % (before, before - 1) if decrement else ""))
        inner = ("<Activity><ActivityId>%s</ActivityId><AutoScalingGroupName>%s</AutoScalingGroupName>"
                 "<Description>%s</Description><Cause>%s</Cause><StartTime>%s</StartTime>"
                 "<StatusCode>InProgress</StatusCode><Progress>0</Progress><Details>%s</Details></Activity>"
                 % (uuid.uuid4(), escape(group), escape(description), escape(cause), query.now_iso(),
                    escape(json.dumps({"Availability Zone": member.get("AvailabilityZone", "")}))))
        return query.answer("TerminateInstanceInAutoScalingGroup", inner)

    def _delete_group(self, request, params):
        status, body, headers = self._forward(request)
        if status < 300:
            name = params.get("AutoScalingGroupName")
            for instance_id, record in list(self.instances.items()):
                if record["group"] == name and record["state"].startswith("Terminating"):
                    self._terminate_now(instance_id)
            self._forget_group(name)
        return self._response(status, body, dict(headers))

    def _disable_metrics_collection(self, request, params):
        """moto 5.2.5 answers 500 NotImplemented; amazon.aws.autoscaling_group calls it on every update."""
        self._require_group(params.get("AutoScalingGroupName"))
        return query.answer_empty("DisableMetricsCollection")

    # --- describe overlay ------------------------------------------------------------------------
    def _describe(self, request, action):
        self.sync()
        status, body, headers = self._forward(request)
        if status >= 300 or not self.instances:
            return self._response(status, body, dict(headers))
        wanted = {v for k, v in query.params(request).items() if k.startswith("InstanceIds.member.")}
        body = query.overlay_describe(action, body, self.instances, wanted)
        headers = {k: v for k, v in headers if k.lower() not in ("content-length", "transfer-encoding")}
        return self._response(status, body, headers)

    # --- time --------------------------------------------------------------------------------------
    def _terminate_now(self, instance_id):
        record = self.instances.pop(instance_id, None)
        try:
            self.client("ec2").terminate_instances(InstanceIds=[instance_id])
        except Exception as exc:  # noqa: BLE001 - already gone (moto reset): nothing to terminate
            self._event(instance_id, record and record["group"], None, "terminate failed: %s" % exc)
        if record is not None:
            tracked = self.groups.get(record["group"])
            if tracked:
                tracked["known"].discard(instance_id)
            self._event(instance_id, record["group"], "Terminated", "terminated in EC2")

    def tick(self):
        """Apply timeouts and end the Proceed states; called by the ticker thread (and by tests)."""
        with self.lock:
            now = time.time()
            due = [a for a in self.actions.values() if now >= min(a["HeartbeatDeadline"], a["GlobalDeadline"])]
            ending = [i for i, r in self.instances.items() if r.get("until") is not None and now >= r["until"]]
            if not (due or ending):
                return
            self.sync()  # moto may have been reset or changed behind the proxy's back: forget what is gone
            for action in sorted(due, key=lambda a: min(a["HeartbeatDeadline"], a["GlobalDeadline"])):
                if action["LifecycleActionToken"] not in self.actions:
                    continue  # resolved meanwhile (ABANDON of a sibling, group gone)
                cause = "GlobalTimeout" if action["GlobalDeadline"] <= action["HeartbeatDeadline"] else "HeartbeatTimeout"
                try:
                    self._resolve(action, action["DefaultResult"], cause)
                except Exception as exc:  # noqa: BLE001 - never retry a failing action every tick
                    self.actions.pop(action["LifecycleActionToken"], None)
                    self._event(action["EC2InstanceId"], action["AutoScalingGroupName"], None,
                                "%s failed: %r" % (cause, exc))
            for instance_id in ending:
                record = self.instances.get(instance_id)
                if record is None or record.get("until") is None or now < record["until"]:
                    continue
                if record["state"] == "Pending:Proceed":
                    del self.instances[instance_id]
                    self._event(instance_id, record["group"], "InService", "lifecycle actions completed")
                elif record["state"] == "Terminating:Proceed":
                    self._terminate_now(instance_id)

    def _tick_loop(self):
        while not self._stop.wait(self.settings["tick_seconds"] or 0.1):
            if not (self.actions or self.instances):
                continue
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - keep ticking; the event log says what failed
                with self.lock:
                    self._event(None, None, None, "tick failed: %r" % exc)
                self._stop.wait(1)  # moto down or reset mid-way: do not spin

    # --- lab control ---------------------------------------------------------------------------------
    def control(self, method, name, body):
        """``/_lab/proxy/asg...``: (status, JSON-able) or None when not ours."""
        if name == "asg" and method == "GET":
            self.sync()
            return 200, self.snapshot()
        if name == "asg/settings" and method == "POST":
            try:
                return 200, {"settings": self.update_settings(json.loads(body or b"{}"))}
            except (ValueError, AttributeError) as exc:
                return 400, {"error": str(exc)}
        if name == "asg/credentials" and method == "POST":
            try:
                self.set_credentials(json.loads(body or b"{}"))
            except ValueError as exc:
                return 400, {"error": str(exc)}
            return 200, {"ok": True}
        if name == "asg/expire" and method == "POST":
            try:
                wanted = json.loads(body or b"{}")
                action = self.expire(wanted.get("instance_id"), wanted.get("token"), wanted.get("hook"))
            except (ValueError, AttributeError, KeyError) as exc:
                return 400, {"error": str(exc)}
            return 200, {"ok": True, "action": action}
        return None
