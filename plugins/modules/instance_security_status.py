#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_security_status
short_description: Set an EC2 instance's security status (groups and status tags) in one call
version_added: 0.2.0
description:
  - Puts an instance in its security posture at once, the way the secure launch promotes or contains
    it and the Auto Scaling gate takes it in. The security groups of every network interface of the
    instance, the C(SecurityStatus) and C(SecurityReason) tags (and extra tags) of the instance, and
    the same status tags on every attached EBS volume.
  - One C(DescribeInstances), then the checks, before any change. The instance must exist and not be
    C(shutting-down) or C(terminated); every group of O(security_groups) must exist and be in the
    instance's VPC. Then C(ModifyNetworkInterfaceAttribute) for each interface whose groups differ,
    then C(CreateTags) over every resource whose tags differ (one call per distinct set of tags,
    so one when neither O(tags) nor O(volume_tags) are given). Nothing is written when everything already matches.
  - Runs on the controller. The principal running it needs C(ec2:DescribeInstances),
    C(ec2:DescribeSecurityGroups), C(ec2:DescribeVolumes), C(ec2:CreateTags),
    C(ec2:ModifyNetworkInterfaceAttribute) and C(ec2:ModifyInstanceAttribute)
    (the controller policy, docs/controller-policy.md). An instance's own role never gets them.
notes:
  - Tags are never evidence. Anyone allowed C(ec2:CreateTags) on an instance can write
    C(SecurityStatus=production) on it. This module writes the status as a label for people and for
    routing (which instances to look at), never as a proof. Nothing in this collection promotes,
    trusts or releases an instance because of its C(SecurityStatus). The secure launch and the Auto
    Scaling gate decide on evidence they gather (the Chef server, the Nessus scan). A re-run keeps an
    instance in production only when it is in the production group as well, and then only keeps its
    role at the production stage, which takes permissions away. C(terminate.yml) refuses to destroy
    an instance tagged C(SecurityStatus=quarantined), so a forged tag there can only stop a deletion. The
    audit reads no status tag.
  - Every network interface is changed, not only the primary one. An instance with a second interface
    would otherwise keep its old groups there, for example the remediation group's outbound access on
    an instance that was contained.
  - A group in another VPC, or one that does not exist, is refused before anything changes. A group
    from another VPC cannot be put on an interface anyway, and the instance would be left half-moved.
  - The groups replace the interfaces' groups. Existing connections that the old groups tracked may
    survive the change. Use network ACLs, or stop the instance, when that matters
    (M(cloudefigo.core.instance_quarantine) for incident response).
  - Tags are added or overwritten, never removed. With O(reason) omitted, an existing
    C(SecurityReason) stays as it was.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  instance_id:
    description:
      - The instance.
    type: str
    required: true
  status:
    description:
      - Value of the C(SecurityStatus) tag, for example V(production), V(remediation), V(quarantined).
    type: str
    required: true
  reason:
    description:
      - Value of the C(SecurityReason) tag (at most 256 characters). Left alone when omitted.
    type: str
  security_groups:
    description:
      - Security group ids (C(sg-...)) that replace the groups of every network interface of the instance.
      - Every group must exist and be in the instance's VPC, or nothing changes.
      - When omitted, the groups are left alone.
    type: list
    elements: str
  isolation_group:
    description:
      - Name of an isolation security group (no rule in, no rule out) that replaces the groups of every
        network interface, instead of O(security_groups). It is looked up by name in the instance's
        VPC and created there when missing (tagged C(cloudefigo:purpose=isolation)); any rule found on
        it is revoked.
      - A group of that name this collection did not create (without the tag
        C(cloudefigo:purpose=isolation), or 0.1.0's C(Purpose=quarantine) with its description) is
        refused before anything changes (making it an isolation group would remove all its rules).
      - Several runs may need it at once (instances of a batch failing together, gate runs); a create
        that loses the race takes the group the other run made, and nothing waits for a rule to appear.
      - In check mode a missing group is not created and the groups are reported unchanged.
    type: str
    version_added: 0.2.0
  tags:
    description:
      - Extra tags for the instance only (not its volumes). Added or overwritten, other tags kept.
      - C(SecurityStatus) and C(SecurityReason) are set by O(status) and O(reason), not here.
    type: dict
    default: {}
  volume_tags:
    description:
      - Extra tags for every EBS volume attached to the instance (not the instance). Added or
        overwritten, other tags kept. Needs O(volumes=true).
      - The secure launch marks the data volume it launched with the instance this way
        (C(cloudefigo:instance-id)), in the call that also tells the instance its data volume.
      - C(SecurityStatus) and C(SecurityReason) are set by O(status) and O(reason), not here.
    type: dict
    default: {}
    version_added: 0.2.0
  volumes:
    description:
      - Also put the C(SecurityStatus) (and C(SecurityReason)) tags, and O(volume_tags), on every EBS
        volume attached to the instance.
    type: bool
    default: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Reads everything, reports what would change and changes nothing.
  diff_mode:
    support: full
    description: Shows the state before and after.
    details: Shows the groups of every network interface, and the status tags of the instance and of its volumes.
"""

EXAMPLES = r"""
- name: Contain an instance in the isolation group of its VPC (made when missing)
  cloudefigo.core.instance_security_status:
    instance_id: i-0123456789abcdef0
    status: remediation
    reason: "scan 42 not passed"
    isolation_group: cloudefigo-isolation

- name: Promote an instance that passed its scan
  cloudefigo.core.instance_security_status:
    instance_id: i-0123456789abcdef0
    status: production
    reason: "passed: scan 42 at high"
    security_groups: [sg-0123456789abcdef0]

- name: Contain an instance that failed
  cloudefigo.core.instance_security_status:
    instance_id: i-0123456789abcdef0
    status: remediation
    reason: "scan 42 found 3 critical findings"
    security_groups: [sg-0fedcba9876543210]

- name: Mark the volumes launched with an instance as its own, and tell the instance its data volume
  cloudefigo.core.instance_security_status:
    instance_id: i-0123456789abcdef0
    status: remediation
    tags:
      cloudefigo:data-volume: vol-0123456789abcdef0
    volume_tags:
      cloudefigo:instance-id: i-0123456789abcdef0

- name: Label an instance taken in by the Auto Scaling gate (extra tags on the instance only)
  cloudefigo.core.instance_security_status:
    instance_id: i-0123456789abcdef0
    status: remediation
    reason: Auto Scaling gate in progress
    tags:
      cloudefigo:launch-id: asg-i-0123456789abcdef0
    security_groups: [sg-0aaaabbbbccccdddd]
"""

RETURN = r"""
instance_id:
  description: The instance.
  returned: always
  type: str
  sample: i-0123456789abcdef0
security_groups:
  description: The instance's security group ids after the task (in check mode, what they would be).
  returned: always
  type: list
  elements: str
  sample: [sg-0123456789abcdef0]
interfaces:
  description: Every network interface of the instance with its group ids after the task.
  returned: always
  type: dict
  sample: {"eni-0abc": ["sg-0123456789abcdef0"], "eni-0def": ["sg-0123456789abcdef0"]}
volume_ids:
  description: The EBS volumes attached to the instance (given the status tags when O(volumes=true)).
  returned: always
  type: list
  elements: str
  sample: [vol-0123456789abcdef0]
tags:
  description: Every tag of the instance after the task.
  returned: always
  type: dict
  sample: {"Name": "web-1", "SecurityStatus": "production", "SecurityReason": "passed: scan 42 at high"}
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags, retrying_client, tag_dict
from ansible_collections.cloudefigo.core.plugins.module_utils._isolation import (
    ForeignGroup,
    ensure_isolation_group,
    foreign_group_message,
)
from ansible_collections.cloudefigo.core.plugins.module_utils._security_status import (
    REASON_TAG,
    STATUS_TAG,
    group_problems,
    instance_problem,
    interface_groups,
    interfaces_to_change,
    option_problem,
    status_view,
    tag_writes,
    unique,
    volume_ids,
    wanted_tags,
)


class SecurityStatus(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.instance_id = module.params["instance_id"]
        self.ec2 = retrying_client(module, "ec2")

    def describe_instance(self):
        try:
            reservations = self.ec2.describe_instances(InstanceIds=[self.instance_id], aws_retry=True)["Reservations"]
        except is_boto3_error_code(["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"]):
            reservations = []
        except (BotoCoreError, ClientError) as exc:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(exc, msg="Could not describe instance_id %s" % self.instance_id)
        found = [i for r in reservations for i in r.get("Instances", []) if i["InstanceId"] == self.instance_id]
        return found[0] if found else None

    def check_groups(self, wanted, vpc_id):
        """Refuse (before any change) a group that does not exist or is not in the instance's VPC."""
        found = {}
        try:
            answer = self.ec2.describe_security_groups(GroupIds=wanted, aws_retry=True)["SecurityGroups"]
            found = dict((group["GroupId"], group.get("VpcId")) for group in answer)
        except is_boto3_error_code(["InvalidGroup.NotFound", "InvalidGroupId.NotFound", "InvalidGroupId.Malformed"]):
            # one missing group fails the whole lookup: look at them one by one to name it
            for group in wanted:
                try:
                    answer = self.ec2.describe_security_groups(GroupIds=[group], aws_retry=True)["SecurityGroups"]
                except is_boto3_error_code(["InvalidGroup.NotFound", "InvalidGroupId.NotFound", "InvalidGroupId.Malformed"]):
                    continue
                except (BotoCoreError, ClientError) as exc:  # pylint: disable=duplicate-except
                    self.module.fail_json_aws(exc, msg="Could not read security_groups %s" % group)
                found.update((item["GroupId"], item.get("VpcId")) for item in answer)
        except (BotoCoreError, ClientError) as exc:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(exc, msg="Could not read security_groups %s" % ", ".join(wanted))
        problems = group_problems(wanted, found, vpc_id)
        if problems:
            self.module.fail_json(msg="security_groups cannot be put on %s: %s. Nothing was changed; give groups of"
                                      " the instance's VPC" % (self.instance_id, "; ".join(problems)))

    def isolation_group(self, name, vpc_id):
        """[the isolation group's id], found or made ready; None in check mode when it does not exist yet."""
        if not vpc_id:
            self.module.fail_json(msg="instance_id %s is not in a VPC: isolation_group needs one" % self.instance_id)
        try:
            group_id = ensure_isolation_group(self.ec2, name, vpc_id, lambda text: not self.module.check_mode)
        except ForeignGroup as exc:
            self.module.fail_json(msg="isolation_group: " + foreign_group_message(
                name, exc.group["GroupId"], vpc_id, "isolating %s there" % self.instance_id))
        except (BotoCoreError, ClientError) as exc:
            self.module.fail_json_aws(exc, msg="Could not make isolation_group %s ready in %s" % (name, vpc_id))
        return [group_id] if group_id else None

    def volume_tags(self, volumes):
        if not volumes:
            return {}
        try:
            found = self.ec2.describe_volumes(VolumeIds=volumes, aws_retry=True)["Volumes"]
        except (BotoCoreError, ClientError) as exc:
            self.module.fail_json_aws(exc, msg="Could not read the volumes of instance_id %s" % self.instance_id)
        return dict((volume["VolumeId"], tag_dict(volume.get("Tags"))) for volume in found)

    def set_interface_groups(self, eni_id, groups):
        try:
            self.ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=groups, aws_retry=True)
        except (BotoCoreError, ClientError) as exc:
            self.module.fail_json_aws(exc, msg="Could not set the security groups of %s (instance_id %s) to %s"
                                               % (eni_id, self.instance_id, ", ".join(groups)))

    def set_instance_groups(self, groups):
        # The instance-level view of the groups. On AWS it is the interfaces' groups, already set
        # above; emulators (moto) keep it apart and show it on every interface, so it is set too.
        # AWS refuses this call (InvalidInstanceID) when several interfaces are attached: the
        # interface calls did the work then.
        try:
            self.ec2.modify_instance_attribute(InstanceId=self.instance_id, Groups=groups, aws_retry=True)
        except is_boto3_error_code("InvalidInstanceID"):
            pass
        except (BotoCoreError, ClientError) as exc:  # pylint: disable=duplicate-except
            self.module.fail_json_aws(exc, msg="Could not set the security groups of instance_id %s to %s"
                                               % (self.instance_id, ", ".join(groups)))

    def create_tags(self, resources, tags):
        try:
            self.ec2.create_tags(Resources=resources, Tags=boto3_tags(tags), aws_retry=True)
        except (BotoCoreError, ClientError) as exc:
            self.module.fail_json_aws(exc, msg="Could not tag %s" % ", ".join(resources))

    def run(self):
        params, module = self.params, self.module
        instance = self.describe_instance()
        problem = instance_problem(self.instance_id, instance, module.region)
        if problem:
            module.fail_json(msg=problem)

        # --- read and decide: every check before any change ---
        wanted_groups = unique(params["security_groups"]) if params["security_groups"] is not None else None
        if params["isolation_group"]:
            wanted_groups = self.isolation_group(params["isolation_group"], instance.get("VpcId"))
        interfaces_before = interface_groups(instance)
        instance_groups_before = sorted(group["GroupId"] for group in instance.get("SecurityGroups") or [])
        if wanted_groups is not None and not params["isolation_group"]:
            self.check_groups(wanted_groups, instance.get("VpcId"))
        if wanted_groups is not None:
            change_interfaces = interfaces_to_change(interfaces_before, wanted_groups)
            change_instance = set(instance_groups_before) != set(wanted_groups)
            interfaces_after = dict((eni, sorted(wanted_groups)) for eni in interfaces_before)
            groups_after = list(wanted_groups)
        else:
            change_interfaces, change_instance = [], False
            interfaces_after, groups_after = interfaces_before, instance_groups_before

        volumes = volume_ids(instance)
        instance_tags = tag_dict(instance.get("Tags"))
        want_instance, want_volume = wanted_tags(params["status"], params["reason"], params["tags"], params["volume_tags"])
        current = {self.instance_id: instance_tags}
        wanted = {self.instance_id: want_instance}
        if params["volumes"]:
            current.update(self.volume_tags(volumes))
            wanted.update((volume, want_volume) for volume in volumes)
        writes = tag_writes(current, wanted)

        changed = bool(change_interfaces or change_instance or writes)
        tags_after = dict(instance_tags)
        tags_after.update(want_instance)
        result = dict(changed=changed, instance_id=self.instance_id, security_groups=groups_after,
                      interfaces=interfaces_after, volume_ids=volumes, tags=tags_after)
        if module._diff:
            result["diff"] = self.diff(interfaces_before, interfaces_after, current, wanted)

        # --- write: interfaces, then the tags ---
        if module.check_mode or not changed:
            module.exit_json(**result)
        for eni in change_interfaces:
            self.set_interface_groups(eni, wanted_groups)
        if change_instance:
            self.set_instance_groups(wanted_groups)
        for tags, resources in writes:
            self.create_tags(resources, tags)
        module.exit_json(**result)

    def diff(self, interfaces_before, interfaces_after, current, wanted):
        before, after = {}, {}
        for resource, tags in wanted.items():
            keys = set(tags) | set((STATUS_TAG, REASON_TAG))
            before[resource] = status_view(current.get(resource), keys)
            merged = dict(current.get(resource) or {})
            merged.update(tags)
            after[resource] = status_view(merged, keys)
        return {"before": {"interfaces": interfaces_before, "tags": before},
                "after": {"interfaces": interfaces_after, "tags": after}}


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_id=dict(type="str", required=True),
            status=dict(type="str", required=True),
            reason=dict(type="str"),
            security_groups=dict(type="list", elements="str"),
            isolation_group=dict(type="str"),
            tags=dict(type="dict", default={}),
            volume_tags=dict(type="dict", default={}),
            volumes=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
        mutually_exclusive=[("security_groups", "isolation_group")],
    )
    problem = option_problem(module.params)
    if problem:
        module.fail_json(msg=problem)
    SecurityStatus(module).run()


if __name__ == "__main__":
    main()
