"""Reconciliation of leftovers (issue 14, section 2): the audit finds what outlived its instance and,
with audit_reconcile, removes only what a launch record AND the resource's own marks prove ours.

One secure launch (no VM, as test_terminate.py: a hook registers the Chef node with its marks) makes
two instances, "gone" and "live". "gone" is then terminated directly with boto3 (the console, a
scale-in without a hook): its key, role and profile, data volume, Chef node and client stay behind.
Look-alikes with forged marks (tags copied, no record) are planted beside them. The tests run in
file order on that shared state: report only -> within audit_reconcile_after -> a lookup error ->
check mode -> reconcile, and after it the look-alikes and the live instance are untouched.
"""
import json
import os
import uuid

import pytest

from _lab import AWS, ROOT, chef_client, moto_post, moto_reset, run_aws_module, run_playbook, s3_gateway_endpoint, secure_launch_lab_vars

SECURE_LAUNCH = os.path.join(ROOT, "playbooks", "secure_launch.yml")
AUDIT = os.path.join(ROOT, "playbooks", "audit.yml")
RECONCILE_TASKS = os.path.join(ROOT, "playbooks", "tasks", "audit_reconcile.yml")
CONVERGE_TASKS = os.path.join(ROOT, "playbooks", "tasks", "lab_chef_converge.yml")
KEY_BUCKET = "reconcile-keys"
PREFIX = "cloudefigo-records/"

HOOK = """---
- name: Register and converge the Chef node, marked for the instance
  ansible.builtin.include_tasks: %s
  vars:
    lab_chef_standin_instance_id: "{{ secure_launch_instance_id }}"
    lab_chef_standin_launch_id: "{{ secure_launch_launch_id }}"
    lab_chef_standin_run_list: ["recipe[base]"]
""" % CONVERGE_TASKS

# the reconciliation alone (the audit's other steps are tested elsewhere): roles/audit's defaults,
# then the same tasks file audit.yml includes
RECONCILE_PLAY = """---
- name: Reconcile the leftovers of gone instances
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  roles:
    - cloudefigo.core.audit
  tasks:
    - name: Find and reconcile
      ansible.builtin.include_tasks: %s
""" % RECONCILE_TASKS


def _output(result):
    return result.stdout[-12000:] + result.stderr[-4000:]


def _tags(items):
    return {t["Key"]: t["Value"] for t in items or []}


class Fleet:
    def __init__(self, lab, workdir):
        self.lab = lab
        self.aws = AWS(lab)
        self.workdir = workdir
        suffix = uuid.uuid4().hex[:6]
        self.launch_id = "reconcile-%s" % suffix
        self.names = {"gone": "gone-%s" % suffix, "live": "live-%s" % suffix}
        self.play = os.path.join(workdir, "reconcile.yml")
        with open(self.play, "w") as handle:
            handle.write(RECONCILE_PLAY)

    def launch(self):
        hook = os.path.join(self.workdir, "hook.yml")
        with open(hook, "w") as handle:
            handle.write(HOOK)
        s3_gateway_endpoint(self.aws.client("ec2"))
        result = run_playbook(self.lab, SECURE_LAUNCH, extra_vars=dict(secure_launch_lab_vars(self.lab), **{
            "secure_launch_id": self.launch_id,
            "secure_launch_image_id": "ami-1e749f67",
            "secure_launch_key_bucket": KEY_BUCKET,
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": self.workdir,
            "secure_launch_configure_instance": False,
            "secure_launch_hook_configured": hook,
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_instances": [{"name": n, "scan_targets": [n]} for n in self.names.values()],
        }))
        assert result.rc == 0, _output(result)
        ec2 = self.aws.client("ec2")
        self.ids = {}
        for which, name in self.names.items():
            found = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
            self.ids[which] = found[0]["Instances"][0]["InstanceId"]
        self.volumes = dict((which, [v["VolumeId"] for v in ec2.describe_volumes(Filters=[
            {"Name": "tag:cloudefigo:instance-id", "Values": [self.ids[which]]}])["Volumes"]]) for which in self.names)

    def record_key(self, which):
        return "%sus-east-1/%s" % (PREFIX, self.ids[which])

    def record(self, which):
        s3 = self.aws.client("s3")
        try:
            return _tags(s3.get_object_tagging(Bucket=KEY_BUCKET, Key=self.record_key(which))["TagSet"])
        except s3.exceptions.ClientError:
            return None

    def state(self, which):
        """Everything of one instance the reconciliation could remove (None = absent)."""
        ec2, iam, s3 = (self.aws.client(s) for s in ("ec2", "iam", "s3"))
        name = self.names[which]
        key = "volumes/%s.key" % name
        listing = s3.list_object_versions(Bucket=KEY_BUCKET, Prefix=key)
        role = profile = None
        try:
            role = iam.get_role(RoleName="cloudefigo-" + name)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            pass
        try:
            profile = iam.get_instance_profile(InstanceProfileName="cloudefigo-" + name)["InstanceProfile"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            pass
        volumes = []
        for volume_id in self.volumes[which]:
            try:
                volumes += [(v["VolumeId"], v["State"]) for v in ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]]
            except ec2.exceptions.ClientError:
                pass
        chef = chef_client(self.lab)
        node = chef.request("GET", "/nodes/%s" % name, missing_ok=True)
        return {
            "key_versions": sorted(v["VersionId"] for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])
                                   if v["Key"] == key),
            "role": role, "profile": profile, "volumes": volumes,
            "node": (node or {}).get("normal", {}).get("cloudefigo") if node else None,
            "client": chef.request("GET", "/clients/%s" % name, missing_ok=True) is not None,
            "record": self.record(which) is not None,
        }

    def settings(self, **extra):
        out = dict(secure_launch_lab_vars(self.lab), audit_regions=["us-east-1"], audit_record_bucket=KEY_BUCKET,
                   audit_report_dir=os.path.join(self.workdir, "audit"))
        out.update(extra)
        return out

    def reconcile(self, check=False, env=None, **settings):
        result = run_playbook(self.lab, self.play, extra_vars=self.settings(**settings), check=check, env=env)
        assert result.rc == 0, _output(result)
        found = result.task_results("Find what outlived its instance")
        return result, found[0]


@pytest.fixture(scope="module")
def fleet(lab, tmp_path_factory):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    moto_reset(lab)
    launched = Fleet(lab, str(tmp_path_factory.mktemp("reconcile")))
    launched.launch()
    launched.before = dict((which, launched.state(which)) for which in launched.names)
    yield launched
    moto_post(lab, "/moto-api/reset-auth", b"inf")
    chef = chef_client(lab)
    for name in list(launched.names.values()) + [getattr(launched, "lookalike", "none")]:
        for kind in ("nodes", "clients"):
            try:
                chef.request("DELETE", "/%s/%s" % (kind, name), missing_ok=True)
            except Exception:  # pylint: disable=broad-except
                pass
    moto_reset(lab)


def test_the_launch_writes_a_record_of_what_it_makes(fleet):
    for which, name in fleet.names.items():
        record = fleet.record(which)
        assert record == {
            "cloudefigo:instance-id": fleet.ids[which], "cloudefigo:launch-id": fleet.launch_id,
            "cloudefigo:region": "us-east-1", "cloudefigo:account": fleet.aws.client("sts").get_caller_identity()["Account"],
            "cloudefigo:role": "cloudefigo-" + name, "cloudefigo:instance-profile": "cloudefigo-" + name,
            "cloudefigo:key-object": "volumes/%s.key" % name, "cloudefigo:volumes": " ".join(fleet.volumes[which]),
            "cloudefigo:chef-node": name,
        }, record
        # every kind of leftover exists before the termination
        state = fleet.before[which]
        assert state["key_versions"] and state["role"] and state["profile"] and state["node"] and state["client"], state
        assert len(state["volumes"]) == 1 and state["volumes"][0][1] == "in-use", state


def test_a_record_is_never_rewritten_or_removed_for_another_launch(lab, fleet):
    record = dict(bucket=KEY_BUCKET, instance_id=fleet.ids["live"])
    before = fleet.record("live")
    again = run_aws_module(lab, "launch_record", launch_id=fleet.launch_id, **record)
    assert not again.get("failed") and not again["changed"], again  # idempotent: the launch's own values
    other = run_aws_module(lab, "launch_record", launch_id="another-launch", role_name="someone-else", **record)
    assert other.get("failed") and "names launch %s, not another-launch" % fleet.launch_id in other["msg"], other
    gone = run_aws_module(lab, "launch_record", launch_id="another-launch", state="absent", **record)
    assert gone.get("failed") and "refusing to delete it" in gone["msg"], gone
    assert fleet.record("live") == before


def test_terminated_instance_is_reported_and_nothing_removed(fleet):
    ec2 = fleet.aws.client("ec2")
    ec2.terminate_instances(InstanceIds=[fleet.ids["gone"]])
    instance = ec2.describe_instances(InstanceIds=[fleet.ids["gone"]])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] == "terminated"
    plant_lookalikes(fleet)
    fleet.gone_before = fleet.state("gone")
    assert fleet.gone_before["volumes"][0][1] == "available", fleet.gone_before  # detached by the termination

    # audit_reconcile off (the default), delay 0: reported, never removed
    result, found = fleet.reconcile(audit_reconcile_after=0)
    by_id = dict((entry["instance_id"], entry) for entry in found["leftovers"])
    assert sorted(by_id) == sorted([fleet.ids["gone"], fleet.unknown_id]), found
    # not known to EC2 in an audited region: gone (its record names nothing, so only the record goes)
    assert by_id[fleet.unknown_id]["reason"].startswith("EC2 does not know the instance"), by_id[fleet.unknown_id]
    assert by_id[fleet.unknown_id]["resources"] == [] and by_id[fleet.unknown_id]["remove"]["record"], by_id[fleet.unknown_id]
    entry = by_id[fleet.ids["gone"]]
    present = dict(((r["kind"], r["name"]), r) for r in entry["resources"] if r["present"])
    name = fleet.names["gone"]
    assert set(present) == {("key", "volumes/%s.key" % name), ("role", "cloudefigo-" + name),
                            ("instance_profile", "cloudefigo-" + name), ("volume", fleet.volumes["gone"][0]),
                            ("chef_node", name), ("chef_client", name)}, entry
    assert all(r["ours"] and r["remove"] for r in present.values()), entry
    assert entry["due"] and entry["remove"]["record"], entry
    assert [(u["region"], u["reason"]) for u in found["unknown"]] == [("eu-west-1", "region eu-west-1 is not audited")], found
    assert found["live"] == 1, found
    assert not result.task_results("Crypto-shred the volume key (every version)")
    assert fleet.state("gone") == fleet.gone_before
    assert fleet.state("live") == fleet.before["live"]
    # the audit (a controller) noted when it first saw the instance gone; the live one is not marked
    assert fleet.record("gone").get("cloudefigo:gone-since"), fleet.record("gone")
    assert "cloudefigo:gone-since" not in fleet.record("live")


def test_nothing_is_removed_within_audit_reconcile_after(fleet):
    _result, found = fleet.reconcile(audit_reconcile=True, audit_reconcile_after="1d")
    entry = next(e for e in found["leftovers"] if e["instance_id"] == fleet.ids["gone"])
    assert not entry["due"] and found["reconcile_after"] == 86400, entry
    assert entry["remove"] == {"key_object": None, "role": None, "volumes": [], "chef_node": None, "record": False}
    assert fleet.state("gone") == fleet.gone_before


def test_lookup_error_is_unknown_and_removes_nothing(lab, fleet):
    """DescribeInstances answers 403 (moto IAM enforcement): no instance is gone, nothing is removed."""
    iam = fleet.aws.client("iam")
    user = "auditor-%s" % uuid.uuid4().hex[:6]
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="all-but-describe-instances", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                      {"Effect": "Deny", "Action": "ec2:DescribeInstances", "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    moto_post(lab, "/moto-api/reset-auth", b"0")
    try:
        _result, found = fleet.reconcile(audit_reconcile=True, audit_reconcile_after=0, env={
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    finally:
        moto_post(lab, "/moto-api/reset-auth", b"inf")
    assert found["leftovers"] == [], found
    failed = dict((entry["instance_id"], entry["reason"]) for entry in found["unknown"] if entry["region"] == "us-east-1")
    assert sorted(failed) == sorted(list(fleet.ids.values()) + [fleet.unknown_id]), found
    assert all("DescribeInstances" in reason for reason in failed.values()), found
    assert fleet.state("gone") == fleet.gone_before
    assert fleet.state("live") == fleet.before["live"]


def test_check_mode_reports_what_would_be_removed(fleet):
    result, found = fleet.reconcile(check=True, audit_reconcile=True, audit_reconcile_after=0)
    assert next(e for e in found["leftovers"] if e["instance_id"] == fleet.ids["gone"])["remove"]["key_object"], found
    # (one include per due record: the record of the unknown instance names no key, its shred is skipped)
    shred = [r for r in result.task_results("Crypto-shred the volume key (every version)") if not r.get("skipped")]
    assert shred and not shred[0].get("failed"), shred[0].get("msg")
    assert shred[0]["changed"] and shred[0]["deleted_versions"] == len(fleet.gone_before["key_versions"]), shred
    assert [r for r in result.task_results("Deregister the Chef node and its client") if not r.get("skipped")][0]["changed"]
    assert fleet.state("gone") == fleet.gone_before
    assert fleet.aws.client("s3").list_objects_v2(Bucket=KEY_BUCKET, Prefix="%sus-east-1/%s" % (PREFIX, fleet.unknown_id))["KeyCount"] == 1


def test_reconcile_removes_the_proven_leftovers_only(lab, fleet):
    report_dir = os.path.join(fleet.workdir, "audit")
    result = run_playbook(lab, AUDIT, extra_vars=fleet.settings(audit_reconcile=True, audit_reconcile_after=0))
    assert result.rc == 0, _output(result)
    # every kind of leftover of the gone instance is gone: all key versions, role, profile, volume, node, client, record
    assert fleet.state("gone") == {"key_versions": [], "role": None, "profile": None, "volumes": [], "node": None,
                                   "client": False, "record": False}
    # the live instance keeps everything
    assert fleet.state("live") == fleet.before["live"]
    # the look-alikes with forged marks (no record) are untouched, and so is the record of a region not audited
    assert lookalike_state(fleet) == fleet.lookalike_before
    with open(os.path.join(report_dir, "audit-report.html")) as handle:
        html = handle.read()
    assert 'id="total-reconciled"' in html and "volumes/%s.key" % fleet.names["gone"] in html
    assert "region eu-west-1 is not audited" in html

    assert not fleet.aws.client("s3").list_objects_v2(Bucket=KEY_BUCKET, Prefix="%sus-east-1/%s" % (PREFIX, fleet.unknown_id)).get("Contents")
    # the next run finds nothing of it any more, and still leaves the others alone
    _result, found = fleet.reconcile(audit_reconcile=True, audit_reconcile_after=0)
    assert found["leftovers"] == [] and found["live"] == 1, found
    assert [entry["region"] for entry in found["unknown"]] == ["eu-west-1"], found
    assert lookalike_state(fleet) == fleet.lookalike_before


# --- look-alikes --------------------------------------------------------------------------------
def plant_lookalikes(fleet):
    """Resources carrying the gone instance's marks (copied by someone with tag rights) but named by no record,
    and a record of an instance in a region the audit does not cover."""
    ec2, iam, s3 = (fleet.aws.client(s) for s in ("ec2", "iam", "s3"))
    marks = [{"Key": "cloudefigo:instance-id", "Value": fleet.ids["gone"]},
             {"Key": "cloudefigo:launch-id", "Value": fleet.launch_id}]
    fleet.lookalike = "lookalike-%s" % uuid.uuid4().hex[:6]
    zone = ec2.describe_availability_zones()["AvailabilityZones"][0]["ZoneName"]
    fleet.lookalike_volume = ec2.create_volume(AvailabilityZone=zone, Size=1, TagSpecifications=[
        {"ResourceType": "volume", "Tags": marks}])["VolumeId"]
    iam.create_role(RoleName=fleet.lookalike, Path="/cloudefigo/", Tags=marks, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    s3.put_object(Bucket=KEY_BUCKET, Key="volumes/%s.key" % fleet.lookalike, Body=b"x" * 64,
                  Tagging="&".join("%s=%s" % (m["Key"], m["Value"]) for m in marks))
    chef_client(fleet.lab).request("POST", "/nodes", data={
        "name": fleet.lookalike, "chef_type": "node", "json_class": "Chef::Node", "run_list": [],
        "normal": {"cloudefigo": {"instance_id": fleet.ids["gone"], "launch_id": fleet.launch_id}}})
    # a genuine record of an instance in eu-west-1 that EC2 there does not know: not audited, never gone
    fleet.far_record = "%seu-west-1/i-0abcdef0123456789" % PREFIX
    tags = {"cloudefigo:instance-id": "i-0abcdef0123456789", "cloudefigo:launch-id": fleet.launch_id,
            "cloudefigo:region": "eu-west-1", "cloudefigo:account": fleet.aws.client("sts").get_caller_identity()["Account"],
            "cloudefigo:role": fleet.lookalike, "cloudefigo:key-object": "volumes/%s.key" % fleet.lookalike,
            "cloudefigo:chef-node": fleet.lookalike}
    s3.put_object(Bucket=KEY_BUCKET, Key=fleet.far_record, Body=b"", Tagging="&".join("%s=%s" % kv for kv in tags.items()))
    # a record of an instance EC2 does not know at all, in the audited region: gone, with nothing left but the record
    fleet.unknown_id = "i-0aaaaaaaaaaaaaaaa"
    tags = dict((k, v) for k, v in tags.items() if k in ("cloudefigo:launch-id", "cloudefigo:account"))
    tags.update({"cloudefigo:instance-id": fleet.unknown_id, "cloudefigo:region": "us-east-1"})
    s3.put_object(Bucket=KEY_BUCKET, Key="%sus-east-1/%s" % (PREFIX, fleet.unknown_id), Body=b"",
                  Tagging="&".join("%s=%s" % kv for kv in tags.items()))
    fleet.lookalike_before = lookalike_state(fleet)
    assert all(fleet.lookalike_before.values()), fleet.lookalike_before


def lookalike_state(fleet):
    ec2, iam, s3 = (fleet.aws.client(s) for s in ("ec2", "iam", "s3"))
    listing = s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="volumes/%s.key" % fleet.lookalike)
    try:
        role = iam.get_role(RoleName=fleet.lookalike)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        role = None
    return {
        "volume": [v["State"] for v in ec2.describe_volumes(Filters=[{"Name": "volume-id", "Values": [fleet.lookalike_volume]}])["Volumes"]],
        "role": role,
        "key": [v["VersionId"] for v in listing.get("Versions", [])],
        "node": chef_client(fleet.lab).request("GET", "/nodes/%s" % fleet.lookalike, missing_ok=True) is not None,
        "far_record": bool(s3.list_objects_v2(Bucket=KEY_BUCKET, Prefix=fleet.far_record).get("Contents")),
    }


# --- volume_key launch_record: the key and its record in one module call (no launch, no fleet) --------
def test_volume_key_writes_the_record_of_the_key_it_makes(lab):
    aws = AWS(lab)
    s3 = aws.client("s3")
    suffix = uuid.uuid4().hex[:6]
    bucket, iid, other = "vk-record-%s" % suffix, "i-0%s1234567890a" % suffix[:5], "i-0%s1234567890b" % suffix[:5]
    record_key = "%sus-east-1/%s" % (PREFIX, iid)

    def key(**args):
        base = dict(bucket=bucket, object="volumes/%s.key" % iid, instance_id=iid, launch_id="vk-%s" % suffix,
                    omit_conditioned_denies=True, launch_record={"role_name": "cloudefigo-web", "chef_node": "web",
                                                                 "volume_ids": ["vol-0123456789abcdef0"]})
        base.update(args)
        return run_aws_module(lab, "volume_key", **base)

    def objects():
        return sorted(v["Key"] for v in s3.list_object_versions(Bucket=bucket).get("Versions", []))

    ready = run_aws_module(lab, "volume_key", bucket=bucket, state="bucket", omit_conditioned_denies=True)
    assert not ready.get("failed"), ready
    check = key(_ansible_check_mode=True, _ansible_diff=True)
    assert check["changed"] and check["launch_record"]["key_object"] == "volumes/%s.key" % iid, check
    assert check["diff"]["before"]["launch_record"] == {} and check["diff"]["after"]["launch_record"] == check["launch_record"]
    assert objects() == []  # check mode: neither key nor record

    made = key()
    assert made["changed"] and made["created"], made
    assert _tags(s3.get_object_tagging(Bucket=bucket, Key=record_key)["TagSet"]) == {
        "cloudefigo:instance-id": iid, "cloudefigo:launch-id": "vk-%s" % suffix, "cloudefigo:region": "us-east-1",
        "cloudefigo:account": aws.client("sts").get_caller_identity()["Account"], "cloudefigo:role": "cloudefigo-web",
        "cloudefigo:instance-profile": "cloudefigo-web", "cloudefigo:key-object": "volumes/%s.key" % iid,
        "cloudefigo:volumes": "vol-0123456789abcdef0", "cloudefigo:chef-node": "web"}
    assert made["launch_record"] == check["launch_record"]
    assert objects() == sorted([record_key, "volumes/%s.key" % iid])
    again = key()
    assert not again.get("failed") and not again["changed"], again
    assert objects() == sorted([record_key, "volumes/%s.key" % iid])  # no new version of either

    # the key belongs to another instance: refused, and no record of that instance
    stolen = key(instance_id=other)
    assert stolen.get("failed") and "owned by instance %s" % iid in stolen["msg"], stolen
    # the instance's record names another launch: refused before its new key is made
    relaunch = key(object="volumes/%s-2.key" % iid, launch_id="vk-other")
    assert relaunch.get("failed") and relaunch["msg"].startswith("launch_record: ") and "names launch vk-%s" % suffix in relaunch["msg"]
    assert objects() == sorted([record_key, "volumes/%s.key" % iid])
    assert _tags(s3.get_object_tagging(Bucket=bucket, Key=record_key)["TagSet"])["cloudefigo:launch-id"] == "vk-%s" % suffix
