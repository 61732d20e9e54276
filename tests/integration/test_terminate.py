"""playbooks/terminate.yml is not steerable by tags, and refuses before destroying anything (issue 11).

One instance ("the victim") goes through the secure launch (without the VM, as in
test_secure_launch.py: a hook registers its Chef node with its marks and reports the converge).
Each test then asks terminate.yml for something it must refuse, and asserts that nothing of the
victim changed in moto, S3 and goiardi: its key (version, bytes), role, policies, profile, Chef node
and client, data volume, and the instance itself. The victim is launched once for the module:
refusals change nothing, so the tests can share it; the last test terminates it for real.
"""
import json
import os
import uuid

import pytest

from _lab import AWS, ROOT, chef_client, moto_post, moto_reset, run_playbook, s3_gateway_endpoint, secure_launch_lab_vars

SECURE_LAUNCH = os.path.join(ROOT, "playbooks", "secure_launch.yml")
TERMINATE = os.path.join(ROOT, "playbooks", "terminate.yml")
CONVERGE_TASKS = os.path.join(ROOT, "playbooks", "tasks", "lab_chef_converge.yml")
KEY_BUCKET = "terminate-keys"

# the node and its client registered as the flow does, then a real chef-client (stand-in) run on the
# controller: playbooks/tasks/lab_chef_converge.yml
HOOK = """---
- name: Register and converge the Chef node, marked for the instance
  ansible.builtin.include_tasks: %s
  vars:
    lab_chef_standin_instance_id: "{{ secure_launch_instance_id }}"
    lab_chef_standin_launch_id: "{{ secure_launch_launch_id }}"
    lab_chef_standin_run_list: ["recipe[base]"]
""" % CONVERGE_TASKS


def _tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _output(result):
    return result.stdout[-8000:] + result.stderr[-4000:]


class Victim:
    def __init__(self, lab, workdir):
        self.lab = lab
        self.aws = AWS(lab)
        self.workdir = workdir
        self.name = "victim-%s" % uuid.uuid4().hex[:6]
        self.launch_id = "victim-launch-%s" % uuid.uuid4().hex[:6]
        self.key = "volumes/%s.key" % self.name
        self.role = "cloudefigo-" + self.name

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
            "secure_launch_instances": [{"name": self.name, "scan_targets": [self.name]}],
        }))
        assert result.rc == 0, _output(result)
        found = self.aws.client("ec2").describe_instances(
            Filters=[{"Name": "tag:cloudefigo:launch-id", "Values": [self.launch_id]}])["Reservations"]
        self.instance = found[0]["Instances"][0]
        self.instance_id = self.instance["InstanceId"]

    def terminate(self, instance_ids, env=None):
        return run_playbook(self.lab, TERMINATE, env=env, extra_vars=dict(
            secure_launch_lab_vars(self.lab), secure_launch_key_bucket=KEY_BUCKET, terminate_instance_ids=instance_ids))

    def state(self):
        """Everything of the victim terminate.yml could destroy."""
        ec2, iam, s3 = (self.aws.client(s) for s in ("ec2", "iam", "s3"))
        instance = ec2.describe_instances(InstanceIds=[self.instance_id])["Reservations"][0]["Instances"][0]
        volumes = [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", [])]
        listing = s3.list_object_versions(Bucket=KEY_BUCKET, Prefix=self.key)
        return {
            "instance": (instance["State"]["Name"], sorted(g["GroupId"] for g in instance["SecurityGroups"])),
            "volumes": sorted((v["VolumeId"], v["State"]) for v in ec2.describe_volumes(VolumeIds=volumes)["Volumes"]),
            "key_versions": sorted(v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == self.key),
            "key_markers": sorted(m["VersionId"] for m in listing.get("DeleteMarkers", []) if m["Key"] == self.key),
            "key_bytes": s3.get_object(Bucket=KEY_BUCKET, Key=self.key)["Body"].read(),
            "role": iam.get_role(RoleName=self.role)["Role"]["Arn"],
            "policies": {p: iam.get_role_policy(RoleName=self.role, PolicyName=p)["PolicyDocument"]
                         for p in iam.list_role_policies(RoleName=self.role)["PolicyNames"]},
            "profile": [r["RoleName"] for r in iam.get_instance_profile(
                InstanceProfileName=self.role)["InstanceProfile"]["Roles"]],
            "node": chef_client(self.lab).request("GET", "/nodes/%s" % self.name, missing_ok=True),
            "client": chef_client(self.lab).request("GET", "/clients/%s" % self.name, missing_ok=True) is not None,
        }


@pytest.fixture(scope="module")
def victim(lab, tmp_path_factory):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    moto_reset(lab)
    launched = Victim(lab, str(tmp_path_factory.mktemp("terminate")))
    launched.launch()
    launched.before = launched.state()
    assert launched.before["node"] is not None and launched.before["client"]
    assert launched.before["node"]["normal"]["cloudefigo"]["instance_id"] == launched.instance_id
    yield launched
    moto_post(lab, "/moto-api/reset-auth", b"inf")
    for kind in ("nodes", "clients"):
        try:
            chef_client(lab).request("DELETE", "/%s/%s" % (kind, launched.name), missing_ok=True)
        except Exception:  # pylint: disable=broad-except
            pass
    moto_reset(lab)


def test_decoy_with_copied_tags_touches_nothing_of_the_victim(victim):
    ec2 = victim.aws.client("ec2")
    # someone allowed ec2:RunInstances and ec2:CreateTags copies every tag of the victim onto a decoy
    copied = [t for t in victim.instance["Tags"] if not t["Key"].startswith("aws:")]
    decoy = ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1, InstanceType="t3.small",
                              TagSpecifications=[{"ResourceType": "instance", "Tags": copied}])["Instances"][0]
    result = victim.terminate([decoy["InstanceId"]])
    assert result.rc != 0, _output(result)
    assert "refusing to destroy anything" in result.stdout, _output(result)
    assert "belongs to instance %s" % victim.instance_id in result.stdout, _output(result)
    assert victim.state() == victim.before
    # the decoy itself is not terminated either: the run stopped before destroying anything
    found = ec2.describe_instances(InstanceIds=[decoy["InstanceId"]])["Reservations"][0]["Instances"][0]
    assert found["State"]["Name"] == "running"


def test_key_lookup_error_stops_before_anything_is_destroyed(lab, victim):
    iam = victim.aws.client("iam")
    user = "terminator-%s" % uuid.uuid4().hex[:6]
    iam.create_user(UserName=user)
    iam.put_user_policy(UserName=user, PolicyName="all-but-reading-keys", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                      # moto matches S3 requests against Resource "*" only. The key's marks are read with
                      # GetObjectTagging of a version: s3:GetObjectVersionTagging on AWS, which moto
                      # authorises as s3:GetObjectVersion (the versionId query parameter)
                      {"Effect": "Deny", "Action": ["s3:GetObject", "s3:GetObjectTagging", "s3:GetObjectVersion",
                                                    "s3:GetObjectVersionTagging"], "Resource": "*"}]}))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    moto_post(lab, "/moto-api/reset-auth", b"0")
    try:
        result = victim.terminate([victim.instance_id], env={
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]})
    finally:
        moto_post(lab, "/moto-api/reset-auth", b"inf")
    assert result.rc != 0, _output(result)
    assert "Could not read s3://%s/%s" % (KEY_BUCKET, victim.key) in result.stdout, _output(result)
    assert "403" in result.stdout or "Forbidden" in result.stdout or "AccessDenied" in result.stdout, _output(result)
    assert victim.state() == victim.before


def test_termination_protected_instance_is_refused(victim):
    ec2 = victim.aws.client("ec2")
    ec2.modify_instance_attribute(InstanceId=victim.instance_id, DisableApiTermination={"Value": True})
    try:
        result = victim.terminate([victim.instance_id])
    finally:
        ec2.modify_instance_attribute(InstanceId=victim.instance_id, DisableApiTermination={"Value": False})
    assert result.rc != 0, _output(result)
    assert "protected against termination" in result.stdout, _output(result)
    assert victim.state() == victim.before


def test_quarantined_instance_is_refused(victim):
    ec2, iam = victim.aws.client("ec2"), victim.aws.client("iam")
    # quarantine as instance_quarantine does it: the tag, and the revocation policy on the role
    ec2.create_tags(Resources=[victim.instance_id], Tags=[
        {"Key": "SecurityStatus", "Value": "quarantined"}, {"Key": "QuarantineCaseId", "Value": "case-7"}])
    result = victim.terminate([victim.instance_id])
    assert result.rc != 0, _output(result)
    assert "is quarantined (SecurityStatus=quarantined, case case-7)" in result.stdout, _output(result)

    # the instance (whose credentials could tag it) removes the tag: the role's policy still says it
    ec2.create_tags(Resources=[victim.instance_id], Tags=[{"Key": "SecurityStatus", "Value": "production"}])
    ec2.delete_tags(Resources=[victim.instance_id], Tags=[{"Key": "QuarantineCaseId"}])
    revoke = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
    iam.put_role_policy(RoleName=victim.role, PolicyName="cloudefigo-quarantine", PolicyDocument=json.dumps(revoke))
    try:
        result = victim.terminate([victim.instance_id])
        assert result.rc != 0, _output(result)
        assert "carries the cloudefigo-quarantine policy" in result.stdout, _output(result)
        after = victim.state()
    finally:
        iam.delete_role_policy(RoleName=victim.role, PolicyName="cloudefigo-quarantine")
    assert after["policies"].pop("cloudefigo-quarantine") == revoke
    assert after == victim.before


def test_terminate_removes_what_is_marked_for_the_instance_only(victim):
    ec2 = victim.aws.client("ec2")
    # a volume of someone else, attached to the victim but not tagged for it, is left alone
    az = victim.instance["Placement"]["AvailabilityZone"]
    foreign = ec2.create_volume(AvailabilityZone=az, Size=1)["VolumeId"]
    ec2.attach_volume(VolumeId=foreign, InstanceId=victim.instance_id, Device="/dev/sdk")
    tagged = ec2.describe_volumes(Filters=[{"Name": "tag:cloudefigo:instance-id", "Values": [victim.instance_id]}])
    data = [v["VolumeId"] for v in tagged["Volumes"]]
    assert len(data) == 1, tagged

    result = victim.terminate([victim.instance_id])
    assert result.rc == 0, _output(result)
    iam, s3 = victim.aws.client("iam"), victim.aws.client("s3")
    instance = ec2.describe_instances(InstanceIds=[victim.instance_id])["Reservations"][0]["Instances"][0]
    assert instance["State"]["Name"] == "terminated"
    listing = s3.list_object_versions(Bucket=KEY_BUCKET, Prefix=victim.key)
    assert not [v for v in listing.get("Versions", []) + listing.get("DeleteMarkers", []) if v["Key"] == victim.key]
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName=victim.role)
    assert chef_client(victim.lab).request("GET", "/nodes/%s" % victim.name, missing_ok=True) is None
    remaining = {v["VolumeId"] for v in ec2.describe_volumes()["Volumes"]}
    assert data[0] not in remaining
    assert foreign in remaining
