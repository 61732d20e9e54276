#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: asg_gate_claim
short_description: Claim an Auto Scaling instance for one gate run, atomically (a conditional S3 put)
version_added: 0.2.0
description:
  - The Auto Scaling gate runs from a schedule and from events at the same time. Before it touches
    an instance, a run claims it; only the run whose claim was written gates the instance, so no
    instance is ever gated (scanned, completed) twice.
  - With O(state=present), writes the claim object C(<prefix><instance_id>.claim) into the key bucket
    with the condition C(If-None-Match) C(*) -- S3 writes it only if no object exists there, so of two concurrent runs
    exactly one succeeds. A tag cannot do this (C(CreateTags) has no condition and the last writer wins).
  - RV(claimed) is true for the run that wrote the claim, and for a later call of the same O(run_id)
    (a retry of the same run); false when another run holds it (RV(holder) names it).
  - The claim lives in the key bucket because its policy (written by C(cloudefigo.core.volume_key))
    already denies every write to all but the controller principals, so no other principal can
    pre-create a claim and keep the gate away from an instance. The module refuses a bucket whose
    policy lacks that statement, unless O(omit_conditioned_denies) (the lab switch) is set.
  - With O(state=absent), deletes every version of the claim object (the gate does it when the
    instance terminates), after checking its C(cloudefigo:instance-id) mark names O(instance_id).
  - Every S3 request carries C(ExpectedBucketOwner). Like C(cloudefigo.core.volume_key_info), the
    module never reads an object body or its metadata (the key bucket denies that to all but instances).
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  bucket:
    description:
      - The key bucket (C(secure_launch_key_bucket)). It must exist, with C(cloudefigo.core.volume_key)'s
        bucket policy.
    type: str
    required: true
  prefix:
    description:
      - Where claims live in O(bucket). Keep it apart from the volume keys' prefix.
    type: str
    default: claims/asg-gate/
  instance_id:
    description:
      - The instance to claim.
    type: str
    required: true
  run_id:
    description:
      - Who claims, one id per gate run (an AWX job id, a random id). Required with O(state=present).
    type: str
  group_name:
    description:
      - The instance's Auto Scaling group, recorded on the claim.
    type: str
  state:
    description:
      - V(present) claims, V(absent) removes the claim.
    type: str
    choices: [present, absent]
    default: present
  omit_conditioned_denies:
    description:
      - The lab switch (moto applies bucket-policy Deny statements without their conditions, so the lab's
        key bucket has no policy) accepts a bucket without the controllers-only statement.
      - Accepted only together with a custom C(endpoint_url); never on AWS.
    type: bool
    default: false
  expected_bucket_owner:
    description:
      - Account id that must own O(bucket); defaults to the caller's account.
    type: str
attributes:
  check_mode:
    description: Reads the claim and reports whether it would be written (RV(claimed) is what the run would get); writes nothing.
    support: full
  diff_mode:
    description: The claim's holder before and after.
    support: full
notes:
  - The caller needs C(s3:PutObject), C(s3:PutObjectTagging), C(s3:ListBucketVersions),
    C(s3:GetObjectVersionTagging), C(s3:GetBucketPolicy), C(s3:DeleteObjectVersion) on the key bucket, and
    C(kms:GenerateDataKey) through S3 on its KMS key (the bucket's default encryption) -- what the
    controller already holds for C(cloudefigo.core.volume_key).
  - A claim is never taken over. When the run that holds it dies, the instance waits until the hook's
    timeout and its default result applies (make it C(ABANDON) to fail closed).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Claim the instance for this run
  cloudefigo.core.asg_gate_claim:
    bucket: cloudefigo-keys
    instance_id: "{{ instance_id }}"
    run_id: "{{ tower_job_id | default(lookup('ansible.builtin.password', '/dev/null chars=hexdigits length=16')) }}"
    group_name: web
  register: claim

- name: Gate only what this run claimed
  ansible.builtin.debug:
    msg: "{{ instance_id }} is ours"
  when: claim.claimed
"""

RETURN = r"""
claimed:
  description: Whether this run (O(run_id)) holds the claim (with O(state=absent), false).
  returned: always
  type: bool
  sample: true
holder:
  description: Who holds the claim now (null when nobody does).
  returned: always
  type: dict
  contains:
    run_id:
      description: The run that claimed it.
      type: str
    instance_id:
      description: The instance mark of the claim.
      type: str
    claimed_at:
      description: When (UTC, ISO 8601).
      type: str
    group_name:
      description: The group recorded on the claim.
      type: str
object:
  description: The claim object's key in the bucket.
  returned: always
  type: str
  sample: claims/asg-gate/i-0123456789abcdef0.claim
deleted_versions:
  description: With O(state=absent), how many versions and delete markers were deleted.
  returned: always
  type: int
  sample: 1
"""

import datetime
import json
from urllib.parse import urlencode

try:
    from botocore.exceptions import BotoCoreError
    from botocore.exceptions import ClientError

    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils import _asg_gate as gate
from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as custody
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import s3_key_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict


def validate(params):
    """The first problem with the module's input (a message naming the option), or None."""
    problem = s3_bucket_name_problem(params["bucket"])
    if problem:
        return "bucket %r is not a valid S3 bucket name: %s" % (params["bucket"], problem)
    problem = custody.instance_id_problem(params["instance_id"])
    if problem:
        return "instance_id " + problem
    problem = s3_key_problem(gate.claim_object(params["prefix"], params["instance_id"]))
    if problem:
        return "prefix does not make a usable S3 object key: %s" % problem
    if params["prefix"].startswith("volumes/"):
        return "prefix %r lies among the volume keys: keep claims apart (default claims/asg-gate/)" % params["prefix"]
    if params["state"] == "present":
        problem = gate.run_id_problem(params.get("run_id"))
        if problem:
            return "run_id " + problem
    if params.get("group_name") is not None:
        problem = gate.group_name_problem(params["group_name"])
        if problem:
            return "group_name " + problem
    if params.get("expected_bucket_owner") is not None:
        problem = custody.account_problem(params["expected_bucket_owner"])
        if problem:
            return "expected_bucket_owner " + problem
    if params["omit_conditioned_denies"] and not params.get("endpoint_url"):
        return ("omit_conditioned_denies is a lab switch for emulators such as moto and is accepted only together with a custom "
                "endpoint_url; on AWS the key bucket's policy is what keeps other principals from pre-creating claims")
    return None


class Claim:
    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.bucket = module.params["bucket"]
        self.key = gate.claim_object(module.params["prefix"], module.params["instance_id"])
        self.s3 = retrying_client(module, "s3")
        self.owner = module.params.get("expected_bucket_owner")
        self.partition = "aws"

    def fail(self, error, what):
        self.module.fail_json_aws(error, msg="Could not %s (bucket %s, claim %s)" % (what, self.bucket, self.key))

    def identify(self):
        sts = retrying_client(self.module, "sts")
        try:
            identity = sts.get_caller_identity(aws_retry=True)
        except AWS_ERRORS as e:
            self.fail(e, "identify the caller (sts:GetCallerIdentity)")
        self.partition = identity["Arn"].split(":")[1]
        if self.owner is None:
            self.owner = identity["Account"]

    def check_bucket(self):
        """The bucket must exist and (off the lab switch) deny writes to all but the controllers."""
        try:
            answer = self.s3.get_bucket_policy(Bucket=self.bucket, ExpectedBucketOwner=self.owner, aws_retry=True)
            policy = json.loads(answer["Policy"])
        except is_boto3_error_code(["NoSuchBucket"]):
            self.module.fail_json(msg="bucket %s does not exist: the claims live in the key bucket, which "
                                      "cloudefigo.core.volume_key creates (secure_launch_key_bucket)" % self.bucket)
        except is_boto3_error_code(["NoSuchBucketPolicy"]):  # pylint: disable=duplicate-except
            policy = {}
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "read the bucket policy (is the bucket owned by account %s, expected_bucket_owner?)" % self.owner)
        if not self.params["omit_conditioned_denies"] and not gate.bucket_guards_claims(policy, self.partition, self.bucket):
            self.module.fail_json(msg="bucket %s has no policy statement that denies writing objects to all but the controller "
                                      "principals (%s, written by cloudefigo.core.volume_key): anyone allowed s3:PutObject could "
                                      "pre-create claims. Run volume_key on the bucket first" % (self.bucket, custody.SID_CONTROLLERS_ONLY))

    def versions(self):
        try:
            pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=self.key, ExpectedBucketOwner=self.owner)
            return custody.key_versions(pages, self.key)
        except is_boto3_error_code("NoSuchBucket"):
            self.module.fail_json(msg="bucket %s does not exist" % self.bucket)
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "list the claim's versions")
        return [], []

    def holder(self, versions):
        current = next((v for v in versions if v.get("IsLatest")), None)
        if current is None:
            return None
        try:
            answer = self.s3.get_object_tagging(Bucket=self.bucket, Key=self.key, VersionId=current["VersionId"],
                                                ExpectedBucketOwner=self.owner, aws_retry=True)
        except AWS_ERRORS as e:
            self.fail(e, "read the claim's tags")
        return gate.claim_holder(tag_dict(answer.get("TagSet")))

    def put(self):
        """True when this run wrote the claim, False when another run's appeared first."""
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        tags = gate.claim_tags(self.params["instance_id"], self.params["run_id"], self.params.get("group_name"), now)
        body = json.dumps({"instance_id": self.params["instance_id"], "run_id": self.params["run_id"], "claimed_at": now,
                           "group_name": self.params.get("group_name")}).encode()
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, IfNoneMatch="*", ContentType="application/json",
                               Tagging=urlencode(sorted(tags.items())), ExpectedBucketOwner=self.owner, aws_retry=True)
        except is_boto3_error_code(["PreconditionFailed", "ConditionalRequestConflict"]):
            return False
        except AWS_ERRORS as e:  # pylint: disable=duplicate-except
            self.fail(e, "write the claim")
        return True

    def present(self):
        self.check_bucket()
        versions, _markers = self.versions()
        before = self.holder(versions)
        if before is not None:
            if before["instance_id"] != self.params["instance_id"]:
                self.module.fail_json(msg="claim %s is marked for instance %s, not %s: refusing to use it"
                                      % (self.key, before["instance_id"], self.params["instance_id"]), holder=before)
            return before["run_id"] == self.params["run_id"], False, before, before
        if self.module.check_mode:
            wanted = gate.claim_holder(gate.claim_tags(self.params["instance_id"], self.params["run_id"], self.params.get("group_name"), None))
            return True, True, None, wanted
        won = self.put()
        after = self.holder(self.versions()[0])
        if won and (after is None or after["run_id"] != self.params["run_id"]):
            self.module.fail_json(msg="claim %s was written but reads back as %r" % (self.key, after), holder=after)
        return won, won, None, after

    def absent(self):
        versions, markers = self.versions()
        before = self.holder(versions)
        for version in versions:
            try:
                tags = tag_dict(self.s3.get_object_tagging(Bucket=self.bucket, Key=self.key, VersionId=version["VersionId"],
                                                           ExpectedBucketOwner=self.owner, aws_retry=True).get("TagSet"))
            except AWS_ERRORS as e:
                self.fail(e, "read the claim's tags")
            if tags.get(custody.TAG_INSTANCE_ID) != self.params["instance_id"]:
                self.module.fail_json(msg="version %s of claim %s is marked for instance %r, not %s: refusing to delete it"
                                      % (version["VersionId"], self.key, tags.get(custody.TAG_INSTANCE_ID), self.params["instance_id"]))
        everything = [{"Key": v["Key"], "VersionId": v["VersionId"]} for v in versions + markers]
        if everything and not self.module.check_mode:
            try:
                answer = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": everything[:1000], "Quiet": True},
                                                ExpectedBucketOwner=self.owner, aws_retry=True)
            except AWS_ERRORS as e:
                self.fail(e, "delete the claim")
            if answer.get("Errors"):
                self.module.fail_json(msg="Could not delete claim %s: %s" % (self.key, answer["Errors"][0].get("Message")))
        return len(everything), before


def main():
    argument_spec = dict(
        bucket=dict(type="str", required=True),
        prefix=dict(type="str", default="claims/asg-gate/"),
        instance_id=dict(type="str", required=True),
        run_id=dict(type="str"),
        group_name=dict(type="str"),
        state=dict(type="str", default="present", choices=["present", "absent"]),
        omit_conditioned_denies=dict(type="bool", default=False),
        expected_bucket_owner=dict(type="str"),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    problem = validate(module.params)
    if problem:
        module.fail_json(msg=problem)
    claim = Claim(module)
    claim.identify()
    if module.params["state"] == "present":
        claimed, changed, before, after = claim.present()
        result = {"claimed": claimed, "holder": after, "deleted_versions": 0}
    else:
        deleted, before = claim.absent()
        after = None
        changed = deleted > 0
        result = {"claimed": False, "holder": None, "deleted_versions": deleted}
    if module._diff:
        result["diff"] = {"before": {"holder": before}, "after": {"holder": after}}
    module.exit_json(changed=changed, object=claim.key, **result)


if __name__ == "__main__":
    main()
