#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: launch_record
short_description: The controller's record of what one launch made, the proof the audit's reconciliation needs
version_added: 0.2.0
description:
  - Writes (O(state=present)) or removes (O(state=absent)) the launch record of one instance, an empty
    object C(<prefix><region>/<instance id>) in the key bucket (the bucket of M(cloudefigo.core.volume_key)),
    whose object tags name the instance, the launch, the region and account, the instance role and
    profile, the volume key object, the data volumes and the Chef node (and client) of that launch.
  - The key bucket's policy lets only the controller principals write or tag objects, so a record
    cannot be forged by the instance, by someone who can only write tags, or by another principal
    of the account, unlike the resources' own tags and a Chef node's attributes.
    M(cloudefigo.core.instance_leftovers) removes a leftover only when a record names it and its
    own ownership marks agree with the record.
  - Written once per instance by the secure launch and by the Auto Scaling gate, right after the data
    volume is attached and the volume key made (the bucket exists then), naming both, and the role,
    profile and Chef node before they exist (a record naming something never made is harmless; a
    resource made without a record could never be reconciled); removed by C(terminate.yml) once
    everything it names is gone.
  - Idempotent. The data volumes only ever grow (the union of the recorded and the given ones).
    A record of the same instance naming another launch is never overwritten; O(state=absent)
    refuses a record of another launch too.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  bucket:
    description: The key bucket (it must exist, with the policy M(cloudefigo.core.volume_key) keeps).
    type: str
    required: true
  prefix:
    description: Key prefix of the records in O(bucket).
    type: str
    default: cloudefigo-records/
  state:
    description: V(present) writes or updates the record, V(absent) deletes every version of it.
    type: str
    choices: [present, absent]
    default: present
  instance_id:
    description: The instance (C(i-...)).
    type: str
    required: true
  launch_id:
    description: The launch. Required with O(state=present); compared when given with O(state=absent).
    type: str
  role_name:
    description: Name of the instance role.
    type: str
  instance_profile_name:
    description: Name of the instance profile; default O(role_name) (M(cloudefigo.core.instance_role) gives both one name).
    type: str
  key_object:
    description: Object key of the volume key in O(bucket).
    type: str
  instance_region:
    description:
      - Region of the instance; default the module's O(region) (the key bucket's connection). The audit
        removes records of instances in other regions with it.
    type: str
  volume_ids:
    description: Data volumes of the instance (added to those already recorded).
    type: list
    elements: str
    default: []
  chef_node:
    description: Name of the Chef node and of its API client.
    type: str
  expected_bucket_owner:
    description: Account that must own O(bucket); default the caller's account.
    type: str
attributes:
  check_mode:
    description: In check mode nothing is written; the result says what would be.
    support: full
  diff_mode:
    description: Shows the record's fields before and after.
    support: full
notes:
  - The record's account is the caller's (C(sts:GetCallerIdentity)), its region the module's O(region).
  - The record carries no C(cloudefigo:instance-arn) tag, so the bucket policy lets no instance read it.
  - See C(docs/audit.md) (Leftovers) for how the audit uses it.
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Record what the launch of web-01 makes
  cloudefigo.core.launch_record:
    bucket: cloudefigo-keys
    instance_id: i-0123456789abcdef0
    launch_id: "{{ launch_id }}"
    role_name: cloudefigo-web-01
    key_object: volumes/web-01.key
    chef_node: web-01

- name: Add the data volume once attached
  cloudefigo.core.launch_record:
    bucket: cloudefigo-keys
    instance_id: i-0123456789abcdef0
    launch_id: "{{ launch_id }}"
    volume_ids: [vol-0123456789abcdef0]

- name: Forget the launch once terminate.yml removed everything
  cloudefigo.core.launch_record:
    bucket: cloudefigo-keys
    instance_id: i-0123456789abcdef0
    launch_id: "{{ launch_id }}"
    state: absent
"""

RETURN = r"""
record:
  description: The record after the task (null with O(state=absent)).
  returned: always
  type: dict
  sample:
    instance_id: i-0123456789abcdef0
    launch_id: 20240501-web-01
    region: us-east-1
    account: "123456789012"
    role_name: cloudefigo-web-01
    instance_profile_name: cloudefigo-web-01
    key_object: volumes/web-01.key
    volume_ids: [vol-0123456789abcdef0]
    chef_node: web-01
    gone_since: null
object:
  description: Object key of the record in the bucket.
  returned: always
  type: str
  sample: cloudefigo-records/us-east-1/i-0123456789abcdef0
deleted_versions:
  description: Versions and delete markers deleted (O(state=absent)).
  returned: when O(state=absent)
  type: int
  sample: 1
errors:
  description: The C(Errors) of S3's C(DeleteObjects) answer when the record could not be deleted (the module fails).
  returned: on failure to delete the record
  type: list
  elements: dict
  sample: [{"Key": "cloudefigo-records/us-east-1/i-0123456789abcdef0", "Code": "AccessDenied", "Message": "Access Denied"}]
"""

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils import _launch_record as records
from ansible_collections.cloudefigo.core.plugins.module_utils import _reconcile as reconcile
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._key_custody import instance_id_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._key_custody import launch_id_problem


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            bucket=dict(type="str", required=True),
            prefix=dict(type="str", default=reconcile.DEFAULT_PREFIX),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            instance_id=dict(type="str", required=True),
            launch_id=dict(type="str"),
            role_name=dict(type="str"),
            instance_profile_name=dict(type="str"),
            key_object=dict(type="str", no_log=False),
            instance_region=dict(type="str"),
            volume_ids=dict(type="list", elements="str", default=[]),
            chef_node=dict(type="str"),
            expected_bucket_owner=dict(type="str"),
        ),
        required_if=[("state", "present", ["launch_id"])],
        supports_check_mode=True,
    )
    params = module.params
    if params["state"] == "present" and not params["launch_id"]:
        module.fail_json(msg="launch_id is required with state=present: the record names the launch that made the resources")
    checks = [("bucket", s3_bucket_name_problem(params["bucket"])), ("instance_id", instance_id_problem(params["instance_id"]))]
    if params["launch_id"]:
        checks.append(("launch_id", launch_id_problem(params["launch_id"])))
    for option, problem in checks:
        if problem:
            module.fail_json(msg="%s: %s" % (option, problem))
    instance_region = params["instance_region"] or module.region
    if not instance_region:
        module.fail_json(msg="region is required: the record says in which region its instance lives")
    try:
        identity = retrying_client(module, "sts").get_caller_identity(aws_retry=True)
    except AWS_ERRORS as e:
        module.fail_json_aws(e, msg="Could not identify the caller (sts:GetCallerIdentity)")
    owner = params["expected_bucket_owner"] or identity["Account"]
    s3 = retrying_client(module, "s3")
    bucket = params["bucket"]
    key = reconcile.record_key(params["prefix"], instance_region, params["instance_id"])
    result = {"changed": False, "object": key}

    if params["state"] == "absent":
        current = records.read_record(module, s3, bucket, key, owner)
        if current is not None and (current["instance_id"] != params["instance_id"]
                                    or (params["launch_id"] and current["launch_id"] != params["launch_id"])):
            module.fail_json(msg="the launch record s3://%s/%s names launch %s, not %s: refusing to delete it"
                             % (bucket, key, current["launch_id"], params["launch_id"]))
        deleted = records.delete_all_versions(module, s3, bucket, key, owner)
        result.update(changed=deleted > 0, record=None, deleted_versions=deleted)
        if module._diff:
            result["diff"] = {"before": current or {}, "after": {}}
        module.exit_json(**result)

    wanted = records.wanted_record(
        params["instance_id"], params["launch_id"], instance_region, identity["Account"], role_name=params["role_name"],
        instance_profile_name=params["instance_profile_name"], key_object=params["key_object"], volume_ids=params["volume_ids"],
        chef_node=params["chef_node"])
    changed, current, after = records.ensure_record(module, s3, bucket, key, owner, wanted, module.check_mode)
    result.update(changed=changed, record=after)
    if module._diff:
        result["diff"] = {"before": current or {}, "after": after}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
