#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_lifecycle_info
short_description: The instances of Auto Scaling groups, their lifecycle states and the lifecycle hooks that hold them
version_added: 0.2.0
description:
  - Lists the instances of O(groups) (C(DescribeAutoScalingGroups)), or only O(instance_ids)
    (C(DescribeAutoScalingInstances)), with their lifecycle state, and each group's lifecycle hooks
    (C(DescribeLifecycleHooks)).
  - For an instance that waits in C(Pending:Wait) or C(Terminating:Wait), RV(instances[].hook) is the
    hook of that transition that holds it (O(hook_name) picks one when a group has several).
  - Used by C(playbooks/asg_gate.yml) to find what to gate; reads only.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  groups:
    description:
      - Names of the Auto Scaling groups. A group that does not exist fails the module (a typo must
        not read as "nothing to gate").
      - With O(instance_ids), only instances of these groups are returned.
    type: list
    elements: str
    default: []
  instance_ids:
    description:
      - Only these instances (the event path gates one instance). An instance no group knows (already
        terminated, or not in a group) is left out of RV(instances) and listed in RV(unknown_instance_ids).
    type: list
    elements: str
    default: []
  hook_name:
    description:
      - The lifecycle hook the gate completes, when a group has more than one hook of a transition.
        Without it, a group with two launching (or two terminating) hooks fails the module.
    type: str
attributes:
  check_mode:
    description: The module only reads; it runs the same in check mode.
    support: full
  diff_mode:
    description: Nothing is changed, so there is no diff.
    support: none
notes:
  - The caller needs C(autoscaling:DescribeAutoScalingGroups), C(autoscaling:DescribeAutoScalingInstances)
    and C(autoscaling:DescribeLifecycleHooks).
  - O(groups) or O(instance_ids) must be given.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: What waits in the web group?
  cloudefigo.core.asg_lifecycle_info:
    groups: [web]
  register: web

- name: The instances waiting for the launching hook
  ansible.builtin.debug:
    msg: "{{ web.instances | selectattr('lifecycle_state', 'equalto', 'Pending:Wait') | map(attribute='instance_id') }}"
"""

RETURN = r"""
instances:
  description: The instances found, sorted by group and instance id.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The instance.
      type: str
      sample: i-0123456789abcdef0
    group_name:
      description: Its Auto Scaling group.
      type: str
      sample: web
    lifecycle_state:
      description: Its lifecycle state (C(Pending:Wait), C(InService), C(Terminating:Wait), ...).
      type: str
      sample: Pending:Wait
    health_status:
      description: C(Healthy) or C(Unhealthy).
      type: str
      sample: Healthy
    availability_zone:
      description: Its availability zone.
      type: str
      sample: us-east-1a
    waiting:
      description: Whether it waits for a lifecycle hook (C(Pending:Wait) or C(Terminating:Wait)).
      type: bool
      sample: true
    transition:
      description: The transition it waits for (C(autoscaling:EC2_INSTANCE_LAUNCHING) or C(..._TERMINATING)), or null.
      type: str
      sample: autoscaling:EC2_INSTANCE_LAUNCHING
    hook:
      description: The hook of that transition (null when not waiting or the group has none).
      type: dict
      contains:
        name:
          description: Hook name.
          type: str
        transition:
          description: Its transition.
          type: str
        heartbeat_timeout:
          description: Seconds before the action times out without a heartbeat.
          type: int
        global_timeout:
          description: Longest the instance can wait, heartbeats or not (seconds).
          type: int
        default_result:
          description: C(CONTINUE) or C(ABANDON) at a timeout.
          type: str
        notification_target_arn:
          description: Where the notifications go (an SQS queue or SNS topic ARN), if anywhere.
          type: str
groups:
  description: The groups read, with their hooks.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Group name.
      type: str
    hooks:
      description: Its lifecycle hooks (the shape of RV(instances[].hook)).
      type: list
      elements: dict
unknown_instance_ids:
  description: Of O(instance_ids), the ones no Auto Scaling group (of O(groups), when given) knows.
  returned: always
  type: list
  elements: str
"""

try:
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError

    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils import _asg_gate as gate
from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client


def validate(params):
    """The first problem with the module's input (a message naming the option), or None."""
    if not params["groups"] and not params["instance_ids"]:
        return "give groups (Auto Scaling group names) or instance_ids"
    for name in params["groups"]:
        problem = gate.group_name_problem(name)
        if problem:
            return "groups: " + problem
    for instance_id in params["instance_ids"]:
        problem = custody.instance_id_problem(instance_id)
        if problem:
            return "instance_ids: " + problem
    if params.get("hook_name") is not None:
        problem = gate.hook_name_problem(params["hook_name"])
        if problem:
            return "hook_name " + problem
    return None


def read_instances(module, client):
    """[(group name, AWS instance entry)] of the groups or instance ids asked for."""
    params = module.params
    found = []
    try:
        if params["instance_ids"]:
            pages = client.get_paginator("describe_auto_scaling_instances").paginate(InstanceIds=params["instance_ids"])
            for page in pages:
                for entry in page.get("AutoScalingInstances", []):
                    if not params["groups"] or entry["AutoScalingGroupName"] in params["groups"]:
                        found.append((entry["AutoScalingGroupName"], entry))
        else:
            pages = client.get_paginator("describe_auto_scaling_groups").paginate(AutoScalingGroupNames=params["groups"])
            seen = set()
            for page in pages:
                for group in page.get("AutoScalingGroups", []):
                    seen.add(group["AutoScalingGroupName"])
                    for entry in group.get("Instances", []):
                        found.append((group["AutoScalingGroupName"], entry))
            missing = sorted(set(params["groups"]) - seen)
            if missing:
                module.fail_json(msg="groups: no Auto Scaling group named %s in this account and region" % ", ".join(missing))
    except AWS_ERRORS as e:
        module.fail_json_aws(e, msg="Could not read the Auto Scaling instances")
    return found


def read_hooks(module, client, group_name):
    try:
        answer = client.describe_lifecycle_hooks(AutoScalingGroupName=group_name, aws_retry=True)
    except AWS_ERRORS as e:
        module.fail_json_aws(e, msg="Could not read the lifecycle hooks of group %s" % group_name)
    return [gate.hook_view(h) for h in answer.get("LifecycleHooks", [])]


def main():
    argument_spec = dict(
        groups=dict(type="list", elements="str", default=[]),
        instance_ids=dict(type="list", elements="str", default=[]),
        hook_name=dict(type="str"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    problem = validate(module.params)
    if problem:
        module.fail_json(msg=problem)
    client = retrying_client(module, "autoscaling")

    found = read_instances(module, client)
    group_names = sorted(set(module.params["groups"]) | set(name for name, _entry in found))
    hooks = dict((name, read_hooks(module, client, name)) for name in group_names)
    instances = []
    for group_name, entry in found:
        state = entry.get("LifecycleState")
        transition = gate.transition_of(state)
        hook = None
        if transition:
            try:
                hook = gate.pick_hook(hooks[group_name], transition, module.params.get("hook_name"))
            except gate.GateError as e:
                module.fail_json(msg="group %s: %s" % (group_name, e))
        instances.append({
            "instance_id": entry["InstanceId"],
            "group_name": group_name,
            "lifecycle_state": state,
            "health_status": entry.get("HealthStatus"),
            "availability_zone": entry.get("AvailabilityZone"),
            "waiting": transition is not None,
            "transition": transition,
            "hook": hook,
        })
    instances.sort(key=lambda i: (i["group_name"], i["instance_id"]))
    known = set(i["instance_id"] for i in instances)
    module.exit_json(
        changed=False,
        instances=instances,
        groups=[{"name": name, "hooks": hooks[name]} for name in group_names],
        unknown_instance_ids=sorted(set(module.params["instance_ids"]) - known),
    )


if __name__ == "__main__":
    main()
