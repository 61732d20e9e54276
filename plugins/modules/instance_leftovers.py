#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance_leftovers
short_description: Find what outlived its instance (key, role and profile, data volumes, Chef node and client), proven by launch records
version_added: 0.2.0
description:
  - Reads every launch record (M(cloudefigo.core.launch_record)) in O(bucket) under O(prefix), looks
    up each record's instance, and for every instance that is gone reads what its record names (the
    volume key (every version's tags), the instance role and instance profile (tags, quarantine
    policy), the data volumes (state, tags), the Chef node (ownership marks) and its API client).
  - An instance is gone when EC2 reports it C(terminated), or no longer knows it (it is missing from
    C(DescribeInstances), which AWS does about an hour after termination) in a region of O(regions)
    of the caller's account. A record of another account or of a region not audited, and any lookup
    error, make the record I(unknown) (RV(unknown)); nothing of it is judged or removable.
  - A resource is ours (C(ours) in RV(leftovers[].resources)) only when the record names it AND its own
    ownership marks (tags C(cloudefigo:instance-id) and C(cloudefigo:launch-id), the Chef node's
    C(cloudefigo) attributes, every version of the key) name the record's instance and launch. A
    look-alike with copied marks but no record, or a resource of the same name with other marks, is
    never ours. A data volume is removable only when C(available) (detached).
  - The first time a record's instance is seen gone, the module tags the record with
    C(cloudefigo:gone-since) (the controller alone may tag objects of the key bucket); an instance
    seen again loses the tag. Once gone for O(reconcile_after), RV(leftovers[].remove) says what to
    remove. The module itself removes nothing; the audit playbook removes with the modules that
    check the marks again (M(cloudefigo.core.volume_key), M(cloudefigo.core.instance_role),
    M(cloudefigo.core.chef_node), C(amazon.aws.ec2_vol), M(cloudefigo.core.launch_record)).
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  bucket:
    description: The key bucket holding the launch records.
    type: str
    required: true
  prefix:
    description: Key prefix of the records.
    type: str
    default: cloudefigo-records/
  regions:
    description:
      - Regions audited. A record of another region is unknown, never gone. Default every region
        enabled for the account.
    type: list
    elements: str
  reconcile_after:
    description:
      - How long an instance must have been seen gone before its leftovers are removable. Seconds
        (V(86400)) or a duration like V(1d), V(12h), V(1d12h), V(30m), V(45s). V(0) makes them
        removable on the run that first sees the instance gone.
    type: raw
    default: 1d
  expected_bucket_owner:
    description: Account that must own O(bucket); default the caller's account.
    type: str
attributes:
  check_mode:
    description: In check mode the record is not tagged with the time the instance was first seen gone (so no clock starts).
    support: full
  diff_mode:
    description: No diff (the only write is the gone-since tag of a record).
    support: none
notes:
  - The caller must be one of the key bucket's controller principals (to list and tag the records
    and read the keys' tags) and able to read EC2 instances and volumes, IAM roles and profiles, and
    Chef nodes and clients.
  - Between this module's answer and the removal, the removal modules check the ownership marks again.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
  - cloudefigo.core.chef
  - cloudefigo.core.chef.validate_certs_aws
"""

EXAMPLES = r"""
- name: Find the leftovers of instances gone for a day
  cloudefigo.core.instance_leftovers:
    bucket: cloudefigo-keys
    regions: [eu-west-1]
    reconcile_after: 1d
    chef_server_url: https://chef.example.com/organizations/ops
    client_name: auditor
    client_key: /etc/chef/auditor.pem
  register: leftovers
"""

RETURN = r"""
leftovers:
  description: One item per record whose instance is gone.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: The gone instance.
      type: str
    launch_id:
      description: Its launch.
      type: str
    region:
      description: Its region.
      type: str
    account:
      description: Its account.
      type: str
    record:
      description: The record's object key.
      type: str
    status:
      description: C(gone).
      type: str
    reason:
      description: Why it is gone.
      type: str
    gone_since:
      description: When the audit first saw it gone (UTC, C(YYYY-MM-DDTHH:MM:SSZ)).
      type: str
    due:
      description: Whether it has been gone for O(reconcile_after).
      type: bool
    key_object:
      description: Object key of the volume key (for the removal).
      type: str
    resources:
      description: "Each resource the record names, with C(kind) (key, role, instance_profile, volume, chef_node, chef_client),
        C(name), C(present), C(ours), C(remove) (removable once due) and C(reason)."
      type: list
      elements: dict
    remove:
      description:
        - "What to remove now (empty unless due): C(key_object), C(role) (with its profile), C(volumes), C(chef_node)
          (with its client), and C(record) (true when everything present goes, then the record goes last)."
      type: dict
  sample:
    - instance_id: i-0123456789abcdef0
      launch_id: 20240501-web-01
      region: us-east-1
      account: "123456789012"
      record: cloudefigo-records/us-east-1/i-0123456789abcdef0
      status: gone
      reason: instance is terminated
      gone_since: "2024-05-02T03:00:00Z"
      due: true
      key_object: volumes/web-01.key
      resources:
        - {kind: role, name: cloudefigo-web-01, present: true, ours: true, remove: true, reason: marked for the record's instance and launch}
      remove: {key_object: volumes/web-01.key, role: cloudefigo-web-01, volumes: [], chef_node: web-01, record: true}
unknown:
  description: "Records whose instance could not be judged (another account, a region not audited, a lookup error,
    a record that cannot be read); nothing of them is removable."
  returned: always
  type: list
  elements: dict
  sample: [{instance_id: i-0123456789abcdef0, region: ap-south-1, record: cloudefigo-records/ap-south-1/i-0123456789abcdef0,
            status: unknown, reason: region ap-south-1 is not audited}]
live:
  description: Number of records whose instance exists.
  returned: always
  type: int
  sample: 42
reconcile_after:
  description: O(reconcile_after) in seconds.
  returned: always
  type: int
  sample: 86400
totals:
  description: Counts (records, live, gone, unknown, leftover resources present, removable now).
  returned: always
  type: dict
  sample: {records: 44, live: 42, gone: 1, unknown: 1, resources: 5, removable: 5}
"""

import time

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils import _reconcile as reconcile
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import enabled_regions
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import regional_clients
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict
from ansible_collections.cloudefigo.core.plugins.module_utils._chef import CHEF_MUTUALLY_EXCLUSIVE
from ansible_collections.cloudefigo.core.plugins.module_utils._chef import CHEF_REQUIRED_ONE_OF
from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefError
from ansible_collections.cloudefigo.core.plugins.module_utils._chef import chef_argument_spec
from ansible_collections.cloudefigo.core.plugins.module_utils._chef import chef_client
from ansible_collections.cloudefigo.core.plugins.module_utils._chef import node_owner
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import QUARANTINE_POLICY_NAME

FILTER_CHUNK = 200  # values per DescribeInstances filter
NOT_FOUND = ("NoSuchEntity", "NoSuchKey", "404", "NotFound", "InvalidVolume.NotFound")


class LookupFailed(Exception):
    """A lookup that failed: the record is unknown, nothing of it is judged."""


def error_code(exc):
    return ((getattr(exc, "response", None) or {}).get("Error") or {}).get("Code") or type(exc).__name__


def missing_ok(call, what, **kwargs):
    """call(**kwargs), None when AWS says the thing does not exist, LookupFailed on any other error."""
    try:
        return call(aws_retry=True, **kwargs)
    except AWS_ERRORS as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise LookupFailed("could not read %s: %s" % (what, error_code(exc)))


class Leftovers:
    def __init__(self, module, account, owner, regions):
        self.module = module
        self.bucket = module.params["bucket"]
        self.owner = owner
        self.account = account
        self.regions = regions
        self.s3 = retrying_client(module, "s3")
        self.iam = retrying_client(module, "iam")
        self.ec2 = regional_clients(module, "ec2", regions)
        self.chef = chef_client(module)
        self.changed = False

    # --- records ------------------------------------------------------------------------------
    def record_keys(self):
        keys = []
        try:
            pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.module.params["prefix"],
                                                                      ExpectedBucketOwner=self.owner)
            for page in pages:
                keys += [item["Key"] for item in page.get("Contents") or []]
        except AWS_ERRORS as exc:
            if error_code(exc) == "NoSuchBucket":
                # no key bucket yet: no launch, no record, nothing to judge or remove
                self.module.warn("bucket %s does not exist: no launch records to read" % self.bucket)
                return []
            self.module.fail_json_aws(exc, msg="Could not list the launch records in s3://%s/%s" % (self.bucket, self.module.params["prefix"]))
        return sorted(keys)

    def read_record(self, key):
        try:
            answer = self.s3.get_object_tagging(Bucket=self.bucket, Key=key, ExpectedBucketOwner=self.owner, aws_retry=True)
        except AWS_ERRORS as exc:
            raise LookupFailed("could not read the record's tags: %s" % error_code(exc))
        try:
            return reconcile.record_from_tags(tag_dict(answer.get("TagSet")), key[len(self.module.params["prefix"]):])
        except reconcile.RecordError as exc:
            raise LookupFailed("not a launch record: %s" % exc)

    def write_gone_since(self, key, record, value):
        self.changed = True
        if self.module.check_mode:
            return
        tags = reconcile.record_tags(dict(record, gone_since=value))
        try:
            self.s3.put_object_tagging(Bucket=self.bucket, Key=key, Tagging={"TagSet": boto3_tags(tags)},
                                       ExpectedBucketOwner=self.owner, aws_retry=True)
        except AWS_ERRORS as exc:
            self.module.fail_json_aws(exc, msg="Could not tag the launch record s3://%s/%s with %s" % (self.bucket, key, reconcile.TAG_GONE_SINCE))

    # --- instances ----------------------------------------------------------------------------
    def outcomes(self, records):
        """{instance_id: outcome} for the records in audited regions of the audited account."""
        wanted = {}
        for record in records:
            if record["account"] == self.account and record["region"] in self.regions:
                wanted.setdefault(record["region"], []).append(record["instance_id"])
        out = {}
        for region, ids in sorted(wanted.items()):
            for start in range(0, len(ids), FILTER_CHUNK):
                chunk = ids[start:start + FILTER_CHUNK]
                try:
                    pages = self.ec2[region].get_paginator("describe_instances").paginate(
                        Filters=[{"Name": "instance-id", "Values": chunk}])
                    found = dict((i["InstanceId"], i["State"]["Name"]) for page in pages
                                 for reservation in page.get("Reservations") or [] for i in reservation.get("Instances") or [])
                except AWS_ERRORS as exc:
                    for instance_id in chunk:
                        out[instance_id] = ("error", error_code(exc), "DescribeInstances in %s failed" % region)
                    continue
                for instance_id in chunk:
                    # missing from DescribeInstances: what EC2 answers (InvalidInstanceID.NotFound) when asked by id
                    out[instance_id] = ("found", found[instance_id]) if instance_id in found else ("error", "InvalidInstanceID.NotFound")
        return out

    # --- resources ----------------------------------------------------------------------------
    def key_versions_tags(self, key_object):
        tags = []
        try:
            pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key_object, ExpectedBucketOwner=self.owner)
            versions = [v for page in pages for v in page.get("Versions") or [] if v.get("Key") == key_object]
        except AWS_ERRORS as exc:
            raise LookupFailed("could not list the versions of the key %s: %s" % (key_object, error_code(exc)))
        for version in versions:
            answer = missing_ok(self.s3.get_object_tagging, "the tags of key %s" % key_object, Bucket=self.bucket, Key=key_object,
                                VersionId=version["VersionId"], ExpectedBucketOwner=self.owner)
            tags.append(tag_dict((answer or {}).get("TagSet")))
        return tags

    def resources(self, record):
        out = []
        if record["key_object"]:
            out.append(reconcile.judge_key(record, record["key_object"], self.key_versions_tags(record["key_object"])))
        if record["role_name"]:
            role = missing_ok(self.iam.get_role, "role %s" % record["role_name"], RoleName=record["role_name"])
            quarantined = None
            if role is not None:
                policies = missing_ok(self.iam.list_role_policies, "the policies of role %s" % record["role_name"],
                                      RoleName=record["role_name"]) or {}
                if QUARANTINE_POLICY_NAME in (policies.get("PolicyNames") or []):
                    quarantined = "role is quarantined (%s): released with instance_quarantine first" % QUARANTINE_POLICY_NAME
            out.append(reconcile.judge_tagged(record, "role", record["role_name"],
                                              tag_dict(role["Role"].get("Tags")) if role else None, quarantined))
        if record["instance_profile_name"]:
            profile = missing_ok(self.iam.get_instance_profile, "instance profile %s" % record["instance_profile_name"],
                                 InstanceProfileName=record["instance_profile_name"])
            out.append(reconcile.judge_tagged(record, "instance_profile", record["instance_profile_name"],
                                              tag_dict(profile["InstanceProfile"].get("Tags")) if profile else None))
        for volume_id in record["volume_ids"]:
            answer = missing_ok(self.ec2[record["region"]].describe_volumes, "volume %s" % volume_id, VolumeIds=[volume_id])
            volumes = (answer or {}).get("Volumes") or []
            out.append(reconcile.judge_volume(record, volume_id, volumes[0] if volumes else None))
        if record["chef_node"]:
            try:
                node = self.chef.get("/nodes/%s" % record["chef_node"], missing_ok=True)
                client = self.chef.get("/clients/%s" % record["chef_node"], missing_ok=True)
            except ChefError as exc:
                raise LookupFailed("could not read Chef node %s: %s" % (record["chef_node"], exc))
            out += reconcile.judge_node(record, record["chef_node"], False if node is None else node_owner(node), client is not None)
        return out

    def run(self, after, now):
        leftovers, unknown, live = [], [], 0
        keys = self.record_keys()
        records = {}
        for key in keys:
            try:
                records[key] = self.read_record(key)
            except LookupFailed as exc:
                unknown.append({"record": key, "status": "unknown", "reason": str(exc), "instance_id": None, "region": None})
        outcomes = self.outcomes(records.values())
        for key, record in sorted(records.items()):
            status, reason = reconcile.instance_status(record, self.regions, self.account, outcomes.get(record["instance_id"]))
            entry = {"instance_id": record["instance_id"], "launch_id": record["launch_id"], "region": record["region"],
                     "account": record["account"], "record": key, "status": status, "reason": reason}
            if status == "unknown":
                unknown.append(entry)
                continue
            gone_since, changes = reconcile.gone_since_update(status, record["gone_since"], now)
            if changes:
                self.write_gone_since(key, record, gone_since)
            if status == "live":
                live += 1
                continue
            try:
                resources = self.resources(record)
            except LookupFailed as exc:
                entry.update(status="unknown", reason=str(exc))
                unknown.append(entry)
                continue
            is_due = reconcile.due(gone_since, now, after)
            entry.update(gone_since=gone_since, due=is_due, key_object=record["key_object"], resources=resources,
                         remove=reconcile.plan(record, resources, is_due))
            leftovers.append(entry)
        present = [r for entry in leftovers for r in entry["resources"] if r["present"]]
        totals = {"records": len(keys), "live": live, "gone": len(leftovers), "unknown": len(unknown),
                  "resources": len(present),
                  "removable": sum(1 for entry in leftovers if entry["due"] for r in entry["resources"] if r["present"] and r["remove"])}
        return leftovers, unknown, live, totals


def main():
    argument_spec = chef_argument_spec(aws_module=True)
    argument_spec.update(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default=reconcile.DEFAULT_PREFIX),
        regions=dict(type="list", elements="str"),
        reconcile_after=dict(type="raw", default="1d"),
        expected_bucket_owner=dict(type="str"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, mutually_exclusive=CHEF_MUTUALLY_EXCLUSIVE,
                              required_one_of=CHEF_REQUIRED_ONE_OF, supports_check_mode=True)
    problem = s3_bucket_name_problem(module.params["bucket"])
    if problem:
        module.fail_json(msg="bucket: %s" % problem)
    try:
        after = reconcile.parse_duration(module.params["reconcile_after"], "reconcile_after")
    except reconcile.RecordError as exc:
        module.fail_json(msg=str(exc))
    try:
        account = retrying_client(module, "sts").get_caller_identity(aws_retry=True)["Account"]
    except AWS_ERRORS as exc:
        module.fail_json_aws(exc, msg="Could not identify the caller (sts:GetCallerIdentity)")
    regions = enabled_regions(module, module.params["regions"])
    finder = Leftovers(module, account, module.params["expected_bucket_owner"] or account, regions)
    leftovers, unknown, live, totals = finder.run(after, int(time.time()))
    module.exit_json(changed=finder.changed, leftovers=leftovers, unknown=unknown, live=live, reconcile_after=after, totals=totals)


if __name__ == "__main__":
    main()
