#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: instance_quarantine
short_description: Isolate an EC2 instance for incident response, and release it
version_added: 0.1.0
description:
  - O(state=quarantined) cuts an instance off the network. It puts every network interface in
    an isolation security group with no ingress and no egress rule (created in the instance's
    VPC when missing, its default egress rule revoked) and records each interface's previous
    groups in tags on that interface. It tags the instance C(SecurityStatus=quarantined) and
    turns on termination protection.
  - Forensic capture, optional and done once per O(case_id). O(snapshot_volumes) snapshots every
    attached EBS volume, tagged with the case. O(evidence_bucket) receives the
    C(describe_instances) output (as found, before isolation) and the console output as one JSON object.
  - O(state=released) puts back on every interface exactly the groups recorded at quarantine,
    restores the termination protection setting found at quarantine, and tags the instance
    C(SecurityStatus=released). The isolation group is kept; other instances may use it.
  - Existing connections tracked by the old groups may survive the change of groups; stop the
    instance or use network ACLs when that matters.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  instance_id:
    description:
      - The instance to quarantine or release.
    type: str
    required: true
  state:
    description:
      - V(quarantined) isolates, V(released) restores.
    type: str
    choices: [quarantined, released]
    default: quarantined
  isolation_group_name:
    description:
      - Name of the isolation security group in the instance's VPC. Created when missing, tagged
        C(cloudefigo:purpose=isolation), and kept without any rule.
      - An existing group of that name must carry that tag (or be a group this collection's 0.1.0
        created, with the tag C(Purpose=quarantine) and its description); any other group is refused
        before anything changes, because quarantine removes every rule of the group.
    type: str
    default: cloudefigo-isolation
  case_id:
    description:
      - Incident case identifier, tagged on the instance (C(QuarantineCaseId)) and on the evidence.
      - Required with O(snapshot_volumes) or O(evidence_bucket).
    type: str
  termination_protection:
    description:
      - Whether quarantine turns on termination protection. Release restores the setting found
        at quarantine.
    type: bool
    default: true
  snapshot_volumes:
    description:
      - Snapshot every attached EBS volume, tagged C(CaseId), C(InstanceId) and C(VolumeId).
        A volume that already has a snapshot for O(case_id) is not snapshotted again.
    type: bool
    default: false
  evidence_bucket:
    description:
      - S3 bucket that receives C(PREFIX/CASE_ID/INSTANCE_ID.json) with the C(describe_instances)
        output and the console output. An existing object is not overwritten.
    type: str
  evidence_prefix:
    description:
      - Key prefix in O(evidence_bucket).
    type: str
    default: quarantine/
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Reports what would change and changes nothing.
  diff_mode:
    support: full
    description: Shows the state before and after.
    details: Shows the groups of every network interface, the C(SecurityStatus) tag and termination protection.
"""

EXAMPLES = r"""
- name: Quarantine an instance and capture evidence
  cloudefigo.core.instance_quarantine:
    instance_id: i-0123456789abcdef0
    region: eu-west-1
    case_id: IR-2024-0042
    snapshot_volumes: true
    evidence_bucket: acme-forensics

- name: Release it once the case is closed
  cloudefigo.core.instance_quarantine:
    instance_id: i-0123456789abcdef0
    region: eu-west-1
    state: released
"""

RETURN = r"""
instance_id:
  description: The instance.
  returned: always
  type: str
security_status:
  description: Value of the C(SecurityStatus) tag after the task.
  returned: always
  type: str
  sample: quarantined
isolation_group_id:
  description: Id of the isolation security group (null in check mode when it would be created).
  returned: when O(state=quarantined)
  type: str
  sample: sg-0123456789abcdef0
network_interfaces:
  description: Every network interface of the instance with its groups before and after the task.
  returned: always
  type: list
  elements: dict
  contains:
    network_interface_id:
      description: Interface id.
      type: str
    groups_before:
      description: Security group ids before the task.
      type: list
      elements: str
    groups:
      description: Security group ids after the task.
      type: list
      elements: str
termination_protection:
  description: Whether termination protection is on after the task.
  returned: always
  type: bool
snapshots:
  description: Snapshots of the case for the attached volumes, made now or earlier.
  returned: when O(snapshot_volumes=true)
  type: list
  elements: dict
  sample: [{"volume_id": "vol-0abc", "snapshot_id": "snap-0def"}]
evidence:
  description: Where the evidence object is.
  returned: when O(evidence_bucket) is set
  type: dict
  sample: {"bucket": "acme-forensics", "key": "quarantine/IR-2024-0042/i-0123456789abcdef0.json"}
actions:
  description: What the task did (or would do in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create isolation group cloudefigo-isolation", "isolate eni-0abc"]
"""

import base64
import datetime
import json

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags, retrying_client, tag_dict

STATUS_TAG = "SecurityStatus"
CASE_TAG = "QuarantineCaseId"
GROUPS_TAG = "cloudefigo:quarantine:groups"
PROTECTION_TAG = "cloudefigo:quarantine:termination-protection"
TAG_VALUE_MAX = 255


ISOLATION_PURPOSE = "isolation"
ISOLATION_DESCRIPTION = "Quarantine: no inbound, no outbound traffic (cloudefigo.core)"


def owned_isolation_group(group):
    """Whether this collection created the security group as an isolation group (its rules may go)."""
    tags = tag_dict(group.get("Tags"))
    if tags.get("cloudefigo:purpose") == ISOLATION_PURPOSE:
        return True
    # made by 0.1.0: no cloudefigo:purpose tag yet
    return tags.get("Purpose") == "quarantine" and group.get("Description") == ISOLATION_DESCRIPTION


def encode_groups(group_ids):
    """Previous group ids as tags: comma-separated, split over numbered keys past 255 characters."""
    value = ",".join(group_ids)
    chunks = [value[i:i + TAG_VALUE_MAX] for i in range(0, len(value), TAG_VALUE_MAX)] or [""]
    return dict(((GROUPS_TAG if index == 0 else "%s:%d" % (GROUPS_TAG, index + 1)), chunk)
                for index, chunk in enumerate(chunks))


def decode_groups(tags):
    """The group ids recorded by encode_groups(), or None when the interface has no record."""
    if GROUPS_TAG not in tags:
        return None
    value, index = tags[GROUPS_TAG], 2
    while "%s:%d" % (GROUPS_TAG, index) in tags:
        value += tags["%s:%d" % (GROUPS_TAG, index)]
        index += 1
    return [group for group in value.split(",") if group]


def group_tag_keys(tags):
    return sorted(key for key in tags if key == GROUPS_TAG or key.startswith(GROUPS_TAG + ":"))


class Quarantine(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.ec2 = retrying_client(module, "ec2")
        self.actions = []
        self.diff_result = None
        self.instance = self.describe_instance()
        self.tags = tag_dict(self.instance.get("Tags"))
        self.enis = self.describe_enis()

    def fail(self, exc, msg):
        self.module.fail_json_aws(exc, msg=msg)

    def act(self, text):
        self.actions.append(text)
        return not self.module.check_mode

    def describe_instance(self):
        instance_id = self.params["instance_id"]
        try:
            reservations = self.ec2.describe_instances(InstanceIds=[instance_id], aws_retry=True)["Reservations"]
        except is_boto3_error_code(["InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"]) as exc:
            self.module.fail_json_aws(exc, msg="instance_id %s not found in %s" % (instance_id, self.module.region))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:  # pylint: disable=duplicate-except
            self.fail(exc, "Could not describe instance %s" % instance_id)
        instances = [i for r in reservations for i in r.get("Instances", []) if i["InstanceId"] == instance_id]
        if not instances:
            self.module.fail_json(msg="instance_id %s not found in %s" % (instance_id, self.module.region))
        self.described = reservations
        return instances[0]

    def describe_enis(self):
        ids = [eni["NetworkInterfaceId"] for eni in self.instance.get("NetworkInterfaces", [])]
        if not ids:
            return []
        try:
            found = self.ec2.describe_network_interfaces(NetworkInterfaceIds=ids, aws_retry=True)["NetworkInterfaces"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not describe the network interfaces of %s" % self.params["instance_id"])
        return sorted(found, key=lambda eni: (eni.get("Attachment") or {}).get("DeviceIndex", 0))

    def termination_protection(self):
        try:
            answer = self.ec2.describe_instance_attribute(InstanceId=self.params["instance_id"],
                                                          Attribute="disableApiTermination", aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not read termination protection of %s" % self.params["instance_id"])
        return bool(answer.get("DisableApiTermination", {}).get("Value"))

    def set_termination_protection(self, value):
        if self.act("%s termination protection" % ("enable" if value else "disable")):
            try:
                self.ec2.modify_instance_attribute(InstanceId=self.params["instance_id"],
                                                   DisableApiTermination={"Value": value}, aws_retry=True)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                self.fail(exc, "Could not change termination protection of %s" % self.params["instance_id"])

    def tag(self, resource, tags):
        try:
            self.ec2.create_tags(Resources=[resource], Tags=boto3_tags(tags), aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not tag %s" % resource)

    def untag(self, resource, keys):
        try:
            self.ec2.delete_tags(Resources=[resource], Tags=[{"Key": key} for key in keys], aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not untag %s" % resource)

    def set_groups(self, eni, groups):
        eni_id = eni["NetworkInterfaceId"]
        try:
            if (eni.get("Attachment") or {}).get("DeviceIndex") == 0:
                # The primary interface's groups are the instance's groups. Set them on the
                # instance: emulators (moto) keep instance-level groups apart and would show them on
                # every interface. AWS refuses this when several interfaces are attached; then the
                # interface call below does the same thing.
                try:
                    self.ec2.modify_instance_attribute(InstanceId=self.params["instance_id"], Groups=groups,
                                                       aws_retry=True)
                    if len(self.enis) == 1:
                        return
                except is_boto3_error_code("InvalidInstanceID"):
                    pass
            self.ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=groups, aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not set the security groups of %s to %s" % (eni_id, ", ".join(groups)))

    # --- isolation group ---

    def isolation_group(self):
        """The isolation group id (created, and emptied of rules, if needed); None in check mode."""
        name, vpc_id = self.params["isolation_group_name"], self.instance.get("VpcId")
        if not vpc_id:
            self.module.fail_json(msg="instance %s is not in a VPC; quarantine needs one" % self.params["instance_id"])
        try:
            groups = self.ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}],
                aws_retry=True)["SecurityGroups"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not look up security group %s in %s" % (name, vpc_id))
        if groups:
            group = groups[0]
            if not owned_isolation_group(group):
                self.module.fail_json(
                    msg="security group %s (%s) in %s was not created by cloudefigo.core (tag cloudefigo:purpose=%s "
                        "missing): quarantine would remove all its rules, refusing. Set isolation_group_name to a "
                        "group name of its own (it is created), or tag the group cloudefigo:purpose=%s if its "
                        "rules may be removed." % (name, group["GroupId"], vpc_id, ISOLATION_PURPOSE,
                                                   ISOLATION_PURPOSE))
        elif self.act("create isolation group %s in %s" % (name, vpc_id)):
            try:
                group_id = self.ec2.create_security_group(
                    GroupName=name, VpcId=vpc_id,
                    Description=ISOLATION_DESCRIPTION,
                    TagSpecifications=[{"ResourceType": "security-group",
                                        "Tags": boto3_tags({"Name": name, "Purpose": "quarantine",
                                                            "cloudefigo:purpose": ISOLATION_PURPOSE})}],
                    aws_retry=True)["GroupId"]
                group = self.ec2.describe_security_groups(GroupIds=[group_id], aws_retry=True)["SecurityGroups"][0]
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                self.fail(exc, "Could not create security group %s in %s" % (name, vpc_id))
        else:
            return None
        # a new group allows all egress; someone may have added rules to an old one
        for kind, call in (("IpPermissions", "revoke_security_group_ingress"),
                           ("IpPermissionsEgress", "revoke_security_group_egress")):
            rules = group.get(kind) or []
            if rules and self.act("revoke %d %s rule(s) of %s" % (len(rules), kind, group["GroupId"])):
                try:
                    getattr(self.ec2, call)(GroupId=group["GroupId"], IpPermissions=rules, aws_retry=True)
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                    self.fail(exc, "Could not empty isolation group %s" % group["GroupId"])
        return group["GroupId"]

    # --- states ---

    def quarantine(self):
        params = self.params
        instance_id = params["instance_id"]
        isolation_id = self.isolation_group()
        interfaces = []
        for eni in self.enis:
            eni_id = eni["NetworkInterfaceId"]
            before = [group["GroupId"] for group in eni.get("Groups", [])]
            after = [isolation_id] if isolation_id else ["(isolation group)"]
            if before != [isolation_id]:
                eni_tags = tag_dict(eni.get("TagSet"))
                # a second run after a partial failure must not record the isolation group as "previous"
                if decode_groups(eni_tags) is None and self.act("record groups of %s" % eni_id):
                    self.tag(eni_id, encode_groups(before))
                if self.act("isolate %s" % eni_id):
                    self.set_groups(eni, [isolation_id])
            else:
                after = before
            interfaces.append({"network_interface_id": eni_id, "groups_before": before, "groups": after})

        protection = self.termination_protection()
        if params["termination_protection"] and not protection:
            if PROTECTION_TAG not in self.tags and self.act("record termination protection"):
                self.tag(instance_id, {PROTECTION_TAG: "false"})
            self.set_termination_protection(True)
            protection_after = True
        else:
            protection_after = protection

        wanted = {STATUS_TAG: "quarantined"}
        if params["case_id"]:
            wanted[CASE_TAG] = params["case_id"]
        if any(self.tags.get(key) != value for key, value in wanted.items()) and self.act("tag %s" % instance_id):
            self.tag(instance_id, wanted)

        result = {"isolation_group_id": isolation_id, "network_interfaces": interfaces,
                  "termination_protection": protection_after, "security_status": "quarantined"}
        if params["snapshot_volumes"]:
            result["snapshots"] = self.snapshot_volumes()
        if params["evidence_bucket"]:
            result["evidence"] = self.store_evidence()
        self.diff(protection, protection_after, interfaces, "quarantined")
        return result

    def release(self):
        instance_id = self.params["instance_id"]
        interfaces = []
        for eni in self.enis:
            eni_id = eni["NetworkInterfaceId"]
            before = [group["GroupId"] for group in eni.get("Groups", [])]
            eni_tags = tag_dict(eni.get("TagSet"))
            previous = decode_groups(eni_tags)
            after = before
            if previous is not None:
                if previous and previous != before and self.act("restore groups of %s" % eni_id):
                    self.set_groups(eni, previous)
                if self.act("forget recorded groups of %s" % eni_id):
                    self.untag(eni_id, group_tag_keys(eni_tags))
                after = previous or before
            interfaces.append({"network_interface_id": eni_id, "groups_before": before, "groups": after})

        protection = self.termination_protection()
        protection_after = protection
        if PROTECTION_TAG in self.tags:
            recorded = self.tags[PROTECTION_TAG] == "true"
            if recorded != protection:
                self.set_termination_protection(recorded)
                protection_after = recorded
            if self.act("forget recorded termination protection"):
                self.untag(instance_id, [PROTECTION_TAG])

        status = self.tags.get(STATUS_TAG)
        if status == "quarantined":
            status = "released"
            if self.act("tag %s released" % instance_id):
                self.tag(instance_id, {STATUS_TAG: "released"})
        self.diff(protection, protection_after, interfaces, status)
        return {"network_interfaces": interfaces, "termination_protection": protection_after,
                "security_status": status}

    def diff(self, protection_before, protection_after, interfaces, status):
        if self.module._diff:
            self.diff_result = {
                "before": {"security_status": self.tags.get(STATUS_TAG), "termination_protection": protection_before,
                           "network_interfaces": dict((i["network_interface_id"], i["groups_before"]) for i in interfaces)},
                "after": {"security_status": status, "termination_protection": protection_after,
                          "network_interfaces": dict((i["network_interface_id"], i["groups"]) for i in interfaces)},
            }

    # --- forensics ---

    def snapshot_volumes(self):
        case_id, instance_id = self.params["case_id"], self.params["instance_id"]
        out = []
        for mapping in self.instance.get("BlockDeviceMappings", []):
            volume_id = (mapping.get("Ebs") or {}).get("VolumeId")
            if not volume_id:
                continue
            try:
                existing = self.ec2.describe_snapshots(
                    OwnerIds=["self"], aws_retry=True,
                    Filters=[{"Name": "volume-id", "Values": [volume_id]}, {"Name": "tag:CaseId", "Values": [case_id]}],
                )["Snapshots"]
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                self.fail(exc, "Could not look up snapshots of %s" % volume_id)
            if existing:
                out.append({"volume_id": volume_id, "snapshot_id": existing[0]["SnapshotId"]})
                continue
            snapshot_id = None
            if self.act("snapshot %s" % volume_id):
                tags = {"CaseId": case_id, "InstanceId": instance_id, "VolumeId": volume_id,
                        "DeviceName": mapping.get("DeviceName", ""), "Name": "%s %s %s" % (case_id, instance_id, volume_id)}
                try:
                    snapshot_id = self.ec2.create_snapshot(
                        VolumeId=volume_id, aws_retry=True,
                        Description="Forensic snapshot, case %s, instance %s" % (case_id, instance_id),
                        TagSpecifications=[{"ResourceType": "snapshot", "Tags": boto3_tags(tags)}])["SnapshotId"]
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                    self.fail(exc, "Could not snapshot %s" % volume_id)
            out.append({"volume_id": volume_id, "snapshot_id": snapshot_id})
        return out

    def console_output(self):
        try:
            answer = self.ec2.get_console_output(InstanceId=self.params["instance_id"], aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not read the console output of %s" % self.params["instance_id"])
        raw = answer.get("Output") or ""
        try:
            return base64.b64decode(raw).decode("utf-8", "replace")
        except (ValueError, TypeError):
            return raw

    def store_evidence(self):
        bucket = self.params["evidence_bucket"]
        key = "%s%s/%s.json" % (self.params["evidence_prefix"], self.params["case_id"], self.params["instance_id"])
        s3 = retrying_client(self.module, "s3")
        try:
            s3.head_object(Bucket=bucket, Key=key, aws_retry=True)
            return {"bucket": bucket, "key": key}
        except is_boto3_error_code(["404", "NoSuchKey", "NotFound"]):
            pass
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:  # pylint: disable=duplicate-except
            self.fail(exc, "Could not read s3://%s/%s; check evidence_bucket" % (bucket, key))
        if self.act("store evidence in s3://%s/%s" % (bucket, key)):
            document = {
                "case_id": self.params["case_id"],
                "instance_id": self.params["instance_id"],
                "region": self.module.region,
                "captured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
                "describe_instances": {"Reservations": self.described},
                "console_output": self.console_output(),
            }
            body = json.dumps(document, default=str, sort_keys=True, indent=1).encode("utf-8")
            try:
                s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                              ServerSideEncryption="AES256", aws_retry=True)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                self.fail(exc, "Could not write s3://%s/%s" % (bucket, key))
        return {"bucket": bucket, "key": key}


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            instance_id=dict(type="str", required=True),
            state=dict(type="str", default="quarantined", choices=["quarantined", "released"]),
            isolation_group_name=dict(type="str", default="cloudefigo-isolation"),
            case_id=dict(type="str"),
            termination_protection=dict(type="bool", default=True),
            snapshot_volumes=dict(type="bool", default=False),
            evidence_bucket=dict(type="str"),
            evidence_prefix=dict(type="str", default="quarantine/"),
        ),
        required_if=[("snapshot_volumes", True, ["case_id"])],
        required_by={"evidence_bucket": ["case_id"]},
        supports_check_mode=True,
    )
    quarantine = Quarantine(module)
    if module.params["state"] == "quarantined":
        result = quarantine.quarantine()
    else:
        result = quarantine.release()
    result.update(instance_id=module.params["instance_id"], actions=quarantine.actions,
                  changed=bool(quarantine.actions))
    if quarantine.diff_result:
        result["diff"] = quarantine.diff_result
    module.exit_json(**result)


if __name__ == "__main__":
    main()
