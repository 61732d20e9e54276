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
  - O(state=quarantined) cuts an instance off the network and off its credentials. First it writes
    the quarantine record (each interface's groups, termination protection and the instance's
    roles) into O(evidence_bucket), where the instance cannot write; no record, no quarantine.
    Then it adds the inline policy C(cloudefigo-quarantine) to the role of the instance's profile
    association. The policy denies every action to requests whose C(ec2:SourceInstanceARN) is
    this instance, which also kills copies of its credentials used elsewhere and leaves other
    instances that share the role alone. It puts every network interface in an isolation security
    group with no ingress and no egress rule (created in the instance's VPC when missing, its
    default egress rule revoked), tags the instance C(SecurityStatus=quarantined) and turns on
    termination protection.
  - Forensic capture, optional and done once per O(case_id). O(snapshot_volumes) snapshots every
    attached EBS volume, tagged with the case. The C(describe_instances) output (as found, before
    isolation) and the console output go to O(evidence_bucket) as one JSON object.
  - O(state=released) reads the record back and puts back on every interface exactly the groups
    recorded, after checking that every one of them exists in the instance's VPC (a record that
    names a group elsewhere is refused, nothing changes). It restores the termination protection
    setting recorded, removes the C(cloudefigo-quarantine) policy and tags the instance
    C(SecurityStatus=released). The isolation group is kept; other instances may use it.
  - Tags are never read as a record. The record tags of 0.1.0 (C(cloudefigo:quarantine:*)) are
    removed on release and ignored otherwise. A quarantined instance without a record (0.1.0) is
    not released; restore its groups by hand.
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
      - Required with O(state=quarantined).
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
      - S3 bucket of the quarantine record C(PREFIX/records/INSTANCE_ID.json) and of the evidence
        C(PREFIX/CASE_ID/INSTANCE_ID.json) (the C(describe_instances) output and the console
        output; an existing evidence object is not overwritten).
      - Only the controller may write it. The instance's role must not, or a quarantined instance
        could rewrite its own record.
      - Required since 0.2.0. Quarantine writes its record there and release reads it.
    type: str
    required: true
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
    evidence_bucket: acme-forensics
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
  returned: when O(state=quarantined)
  type: dict
  sample: {"bucket": "acme-forensics", "key": "quarantine/IR-2024-0042/i-0123456789abcdef0.json"}
record:
  description:
    - Where the quarantine record is, and what it holds (in check mode, what it would hold).
    - Null when a released instance has no record.
  returned: always
  type: dict
  version_added: 0.2.0
  contains:
    bucket:
      description: Evidence bucket.
      type: str
    key:
      description: Object key of the record.
      type: str
    state:
      description: V(quarantined) or V(released) after the task.
      type: str
    network_interfaces:
      description: Recorded groups by interface id.
      type: dict
    termination_protection:
      description: Termination protection recorded at quarantine.
      type: bool
  sample: {"bucket": "acme-forensics", "key": "quarantine/records/i-0123456789abcdef0.json", "state": "quarantined",
           "network_interfaces": {"eni-0abc": ["sg-0123"]}, "termination_protection": false}
revoked_roles:
  description:
    - Roles that carry the C(cloudefigo-quarantine) policy after the task (empty after release).
  returned: always
  type: list
  elements: str
  version_added: 0.2.0
  sample: ["cloudefigo-web-1"]
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
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import (
    boto3_tags,
    partition_for_region,
    retrying_client,
    s3_bucket_name_problem,
    tag_dict,
)
from ansible_collections.cloudefigo.core.plugins.module_utils._isolation import (  # noqa: F401 pylint: disable=unused-import
    ISOLATION_DESCRIPTION,
    ForeignGroup,
    ensure_isolation_group,
    find_isolation_group,
    foreign_group_message,
    owned_isolation_group,
)
from ansible_collections.cloudefigo.core.plugins.module_utils._quarantine import (
    REVOCATION_POLICY_NAME,
    RecordError,
    instance_arn,
    record_key,
    legacy_tag_keys,
    new_record,
    parse_record,
    recorded_groups,
    release_problems,
    revocation_policy,
    revoked_arns,
    same_policy,
)

STATUS_TAG = "SecurityStatus"
CASE_TAG = "QuarantineCaseId"


class Quarantine(object):
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.ec2 = retrying_client(module, "ec2")
        self.actions = []
        self.diff_result = None
        self._s3 = None
        self._iam = None
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
                # instance too: emulators (moto) keep instance-level groups apart from the
                # interface's. AWS refuses this when several interfaces are attached; the interface
                # call below then does the same thing (on AWS both calls set one and the same set).
                try:
                    self.ec2.modify_instance_attribute(InstanceId=self.params["instance_id"], Groups=groups,
                                                       aws_retry=True)
                except is_boto3_error_code("InvalidInstanceID"):
                    pass
            self.ec2.modify_network_interface_attribute(NetworkInterfaceId=eni_id, Groups=groups, aws_retry=True)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not set the security groups of %s to %s" % (eni_id, ", ".join(groups)))

    # --- isolation group ---

    def isolation_group(self, check_only=False):
        """The isolation group id (created, and emptied of rules, if needed); None in check mode.

        ``check_only``: only refuse a group of that name that is not the collection's."""
        name, vpc_id = self.params["isolation_group_name"], self.instance.get("VpcId")
        if not vpc_id:
            self.module.fail_json(msg="instance %s is not in a VPC; quarantine needs one" % self.params["instance_id"])
        try:
            if check_only:
                return find_isolation_group(self.ec2, name, vpc_id)
            return ensure_isolation_group(self.ec2, name, vpc_id, self.act)
        except ForeignGroup as exc:
            self.module.fail_json(msg=foreign_group_message(name, exc.group["GroupId"], vpc_id, "quarantine")
                                  .replace("Use an isolation group name", "Set isolation_group_name to a group name"))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not make isolation group %s in %s ready" % (name, vpc_id))

    # --- the record (in the evidence bucket, written by the controller) ---

    @property
    def s3(self):
        if self._s3 is None:
            self._s3 = retrying_client(self.module, "s3")
        return self._s3

    def record_location(self):
        return self.params["evidence_bucket"], record_key(self.params["evidence_prefix"], self.params["instance_id"])

    def read_record(self):
        """The record of this instance, or None when there is none; a bad record fails the task."""
        bucket, key = self.record_location()
        try:
            body = self.s3.get_object(Bucket=bucket, Key=key, aws_retry=True)["Body"].read()
        except is_boto3_error_code(["NoSuchKey", "404", "NotFound"]):
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:  # pylint: disable=duplicate-except
            # an unreadable record is not "no record": stop before anything changes
            self.fail(exc, "Could not read the quarantine record s3://%s/%s; check evidence_bucket and the"
                           " controller's s3:GetObject permission" % (bucket, key))
        try:
            return parse_record(body, self.params["instance_id"])
        except RecordError as exc:
            self.module.fail_json(msg="The quarantine record s3://%s/%s cannot be used: %s. Nothing was changed;"
                                      " inspect it (it may have been tampered with)" % (bucket, key, exc))

    def write_record(self, record, text):
        bucket, key = self.record_location()
        if self.act("%s s3://%s/%s" % (text, bucket, key)):
            body = json.dumps(record, sort_keys=True, indent=1).encode("utf-8")
            try:
                self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json",
                                   ServerSideEncryption="AES256", aws_retry=True)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                self.fail(exc, "Could not write the quarantine record s3://%s/%s; nothing else was changed"
                               % (bucket, key))

    def record_result(self, record):
        if record is None:
            return None
        bucket, key = self.record_location()
        return {"bucket": bucket, "key": key, "state": record["state"],
                "network_interfaces": record["network_interfaces"],
                "termination_protection": record["termination_protection"]}

    # --- credentials (an inline Deny on the instance's role, keyed to the instance) ---

    @property
    def iam(self):
        if self._iam is None:
            self._iam = retrying_client(self.module, "iam")
        return self._iam

    def instance_roles(self):
        """Role names of the instance's current profile association (AWS's view, not a tag)."""
        instance_id = self.params["instance_id"]
        try:
            associations = self.ec2.describe_iam_instance_profile_associations(
                Filters=[{"Name": "instance-id", "Values": [instance_id]}], aws_retry=True)["IamInstanceProfileAssociations"]
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not read the instance profile association of %s" % instance_id)
        roles = []
        for association in associations:
            if association.get("State") == "disassociated":
                continue
            profile = association["IamInstanceProfile"]["Arn"].rsplit("/", 1)[-1]
            try:
                answer = self.iam.get_instance_profile(InstanceProfileName=profile, aws_retry=True)
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                # fail closed: an instance whose role cannot be found keeps working credentials
                self.fail(exc, "Could not read instance profile %s of %s to revoke its credentials" % (profile, instance_id))
            roles.extend(role["RoleName"] for role in answer["InstanceProfile"].get("Roles", []))
        return sorted(set(roles))

    def instance_arn(self):
        owner = self.described[0].get("OwnerId") if self.described else None
        if not owner:
            self.module.fail_json(msg="Could not tell the account of %s (no OwnerId in describe_instances)"
                                  % self.params["instance_id"])
        return instance_arn(partition_for_region(self.module.region), self.module.region, owner,
                            self.params["instance_id"])

    def revocation(self, role):
        """The current cloudefigo-quarantine document of ``role``, or None."""
        try:
            return self.iam.get_role_policy(RoleName=role, PolicyName=REVOCATION_POLICY_NAME,
                                            aws_retry=True)["PolicyDocument"]
        except is_boto3_error_code("NoSuchEntity"):
            return None
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:  # pylint: disable=duplicate-except
            self.fail(exc, "Could not read policy %s of role %s" % (REVOCATION_POLICY_NAME, role))

    def revoke(self, roles):
        arn = self.instance_arn()
        for role in roles:
            current = self.revocation(role)
            wanted = revocation_policy(revoked_arns(current) + [arn])
            if not same_policy(current, wanted) and self.act(
                    "revoke the credentials of %s on role %s" % (self.params["instance_id"], role)):
                self.put_revocation(role, wanted)

    def put_revocation(self, role, document):
        try:
            if document is not None:
                self.iam.put_role_policy(RoleName=role, PolicyName=REVOCATION_POLICY_NAME,
                                         PolicyDocument=json.dumps(document), aws_retry=True)
                return
            try:
                self.iam.delete_role_policy(RoleName=role, PolicyName=REVOCATION_POLICY_NAME, aws_retry=True)
            except is_boto3_error_code("NoSuchEntity"):
                pass
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            self.fail(exc, "Could not change policy %s of role %s" % (REVOCATION_POLICY_NAME, role))

    def lift(self, roles):
        """Take this instance out of the revocation; other quarantined instances of a shared role stay in."""
        arn = self.instance_arn()
        for role in roles:
            current = self.revocation(role)
            arns = revoked_arns(current)
            if arn not in arns:
                continue
            if self.act("lift the revocation of %s on role %s" % (self.params["instance_id"], role)):
                self.put_revocation(role, revocation_policy([other for other in arns if other != arn]))

    def revoked_roles(self, roles):
        if self.module.check_mode:
            return sorted(roles) if self.params["state"] == "quarantined" else []
        arn = self.instance_arn()
        return [role for role in sorted(roles) if arn in revoked_arns(self.revocation(role))]

    # --- states ---

    def quarantine(self):
        params = self.params
        instance_id = params["instance_id"]
        if not self.instance.get("VpcId"):
            # checked before the record and the revocation: no half quarantine
            self.module.fail_json(msg="instance %s is not in a VPC; quarantine needs one" % instance_id)
        # a group of that name that is not the collection's stops here, before the record and the revocation
        self.isolation_group(check_only=True)
        protection = self.termination_protection()
        roles = self.instance_roles()
        record = self.read_record()
        if record is None or record["state"] != "quarantined":
            # the state before anything changes, kept where the instance cannot write
            record = new_record(
                instance_id, self.instance.get("VpcId"), params["case_id"],
                datetime.datetime.now(datetime.timezone.utc).isoformat(), protection,
                dict((eni["NetworkInterfaceId"], [group["GroupId"] for group in eni.get("Groups", [])])
                     for eni in self.enis),
                roles)
            self.write_record(record, "record the pre-quarantine state in")
        else:
            # a re-run: the record stays; a role associated since then is revoked and recorded too
            new_roles = sorted(set(roles) - set(record.get("roles", [])))
            if new_roles:
                record = dict(record, roles=sorted(set(record.get("roles", [])) | set(roles)))
                self.write_record(record, "add roles %s to" % ", ".join(new_roles))
        self.revoke(roles)

        isolation_id = self.isolation_group()
        interfaces = []
        for eni in self.enis:
            eni_id = eni["NetworkInterfaceId"]
            before = [group["GroupId"] for group in eni.get("Groups", [])]
            after = [isolation_id] if isolation_id else ["(isolation group)"]
            if before != [isolation_id]:
                if self.act("isolate %s" % eni_id):
                    self.set_groups(eni, [isolation_id])
            else:
                after = before
            interfaces.append({"network_interface_id": eni_id, "groups_before": before, "groups": after})

        if params["termination_protection"] and not protection:
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
                  "termination_protection": protection_after, "security_status": "quarantined",
                  "record": self.record_result(record), "revoked_roles": self.revoked_roles(roles)}
        if params["snapshot_volumes"]:
            result["snapshots"] = self.snapshot_volumes()
        result["evidence"] = self.store_evidence()
        self.diff(protection, protection_after, interfaces, "quarantined")
        return result

    def release(self):
        instance_id = self.params["instance_id"]
        record = self.read_record()
        status = self.tags.get(STATUS_TAG)
        protection = self.termination_protection()
        if record is None and status == "quarantined":
            bucket, key = self.record_location()
            self.module.fail_json(msg="%s is quarantined but has no quarantine record at s3://%s/%s (quarantined by"
                                      " 0.1.0, or evidence_bucket/evidence_prefix differ from the quarantine's)."
                                      " Tags are not trusted as a record: restore its groups and termination"
                                      " protection by hand" % (instance_id, bucket, key))
        active = record is not None and record["state"] == "quarantined"
        if active:
            self.check_restorable(record)
        roles = sorted(set(self.instance_roles()) | set((record or {}).get("roles", [])))
        roles = [role for role in roles if self.role_exists(role)]

        interfaces = []
        for eni in self.enis:
            eni_id = eni["NetworkInterfaceId"]
            before = [group["GroupId"] for group in eni.get("Groups", [])]
            after = before
            previous = record["network_interfaces"].get(eni_id) if active else None
            if previous and sorted(previous) != sorted(before):
                if self.act("restore groups of %s" % eni_id):
                    self.set_groups(eni, previous)
                after = previous
            legacy = legacy_tag_keys(tag_dict(eni.get("TagSet")))
            if legacy and self.act("remove the 0.1.0 record tags of %s" % eni_id):
                self.untag(eni_id, legacy)
            interfaces.append({"network_interface_id": eni_id, "groups_before": before, "groups": after})

        protection_after = protection
        if active and record["termination_protection"] != protection:
            self.set_termination_protection(record["termination_protection"])
            protection_after = record["termination_protection"]
        legacy = legacy_tag_keys(self.tags)
        if legacy and self.act("remove the 0.1.0 record tags of %s" % instance_id):
            self.untag(instance_id, legacy)

        self.lift(roles)
        if status == "quarantined":
            status = "released"
            if self.act("tag %s released" % instance_id):
                self.tag(instance_id, {STATUS_TAG: "released"})
        if active:
            record = dict(record, state="released",
                          released_at=datetime.datetime.now(datetime.timezone.utc).isoformat())
            self.write_record(record, "mark released")
        self.diff(protection, protection_after, interfaces, status)
        return {"network_interfaces": interfaces, "termination_protection": protection_after,
                "security_status": status, "record": self.record_result(record),
                "revoked_roles": self.revoked_roles(roles)}

    def role_exists(self, role):
        try:
            self.iam.get_role(RoleName=role, aws_retry=True)
        except is_boto3_error_code("NoSuchEntity"):
            return False
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:  # pylint: disable=duplicate-except
            self.fail(exc, "Could not read role %s" % role)
        return True

    def check_restorable(self, record):
        """Refuse (before any change) a record whose groups are not all in the instance's VPC."""
        vpc_id = self.instance.get("VpcId")
        wanted = recorded_groups(record)
        found = {}
        for group in wanted:
            # one by one: a missing group fails DescribeSecurityGroups for the whole list
            try:
                answer = self.ec2.describe_security_groups(GroupIds=[group], aws_retry=True)["SecurityGroups"]
            except is_boto3_error_code(["InvalidGroup.NotFound", "InvalidGroupId.Malformed"]):
                continue
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:  # pylint: disable=duplicate-except
                self.fail(exc, "Could not read security group %s of the quarantine record" % group)
            for item in answer:
                found[item["GroupId"]] = item.get("VpcId")
        problems = release_problems(record, vpc_id, found)
        if problems:
            bucket, key = self.record_location()
            self.module.fail_json(msg="Refusing to release %s: the record s3://%s/%s names groups it cannot get back"
                                      " (%s). Nothing was changed; check the record and restore by hand"
                                      % (self.params["instance_id"], bucket, key, "; ".join(problems)))

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
        s3 = self.s3
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
            evidence_bucket=dict(type="str", required=True),
            evidence_prefix=dict(type="str", default="quarantine/"),
        ),
        required_if=[("state", "quarantined", ["case_id"])],
        supports_check_mode=True,
    )
    problem = s3_bucket_name_problem(module.params["evidence_bucket"])
    if problem:
        module.fail_json(msg="evidence_bucket %r is not a usable S3 bucket name: %s. Quarantine keeps its record"
                             " there: give the controller's evidence bucket" % (module.params["evidence_bucket"], problem))
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
