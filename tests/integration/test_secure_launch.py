"""The successful path of playbooks/secure_launch.yml, then terminate.yml, and audit.yml, in the lab.

A batch of three instances goes through the secure launch without the VM, as in the fault matrix
(secure_launch_configure_instance: false): the on-instance roles are skipped, and a per-instance
hook stands in for them on the controller (playbooks/tasks/lab_chef_converge.yml): it registers the
Chef node and its client with cloudefigo.core.chef_node, as the flow does, and runs the lab's
chef-client stand-in with that client's key and the moto instance id as its ec2 data, so the Chef
check runs in full (registered, converged, same instance). Every assertion is on the state left in moto, goiardi, S3 and
PostgreSQL, never on time.

The launch, its re-run and the termination share one batch (module-scoped fixture, moto emptied
before and after); the audit test has an empty moto of its own.
"""
import base64
import glob
import gzip
import json
import os
import time
import uuid

import psycopg2
import pytest

from _lab import AWS, ROOT, chef_client, fresh_database, moto_post, moto_reset, run_playbook, s3_gateway_endpoint, secure_launch_lab_vars

SECURE_LAUNCH = os.path.join(ROOT, "playbooks", "secure_launch.yml")
TERMINATE = os.path.join(ROOT, "playbooks", "terminate.yml")
AUDIT = os.path.join(ROOT, "playbooks", "audit.yml")
CONVERGE_TASKS = os.path.join(ROOT, "playbooks", "tasks", "lab_chef_converge.yml")
SAMPLES = os.path.join(ROOT, "tests", "data", "cloudtrail", "invictus-ir")
KEY_BUCKET = "happy-path-keys"
PRODUCTION_GROUP = "cloudefigo-production"
REMEDIATION_GROUP = "cloudefigo-remediation"

# Stand-in for the on-instance Chef run (no VM): lab_chef_converge.yml registers the node and its
# client as the flow's chef_node task does, then runs the chef-client stand-in (lab/vm/chef_standin.py)
# on the controller with that client's key; idempotent, so a re-run changes nothing here.
HOOK = """---
- name: Stand in for the instance's Chef registration and chef-client run
  ansible.builtin.include_tasks: %s
""" % CONVERGE_TASKS


def _chef_get(lab, path):
    """The Chef object at path, or None when the server answers 404."""
    return chef_client(lab).request("GET", path, missing_ok=True)


def _tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _instances(ec2, **filters):
    found = ec2.describe_instances(Filters=[{"Name": k, "Values": v} for k, v in filters.items()])
    return [i for r in found["Reservations"] for i in r["Instances"]]


def _key_versions(s3, key):
    """(version ids, delete marker ids) of exactly this key."""
    listing = s3.list_object_versions(Bucket=KEY_BUCKET, Prefix=key)
    versions = sorted(v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key)
    markers = sorted(m["VersionId"] for m in listing.get("DeleteMarkers", []) if m["Key"] == key)
    return versions, markers


def _data_volume_ids(instance):
    """The volumes attached to the instance, but its root one."""
    return [m["Ebs"]["VolumeId"] for m in instance.get("BlockDeviceMappings", [])
            if m["DeviceName"] != instance.get("RootDeviceName")]


def _changed_tasks(result, host):
    """Names of the tasks that reported a change on host."""
    names = []
    for play in (result.data or {}).get("plays", []):
        for task in play["tasks"]:
            outcome = task["hosts"].get(host)
            if outcome and (outcome.get("changed") or any(r.get("changed") for r in outcome.get("results", []))):
                names.append(task["task"]["name"])
    return names


def _output(result):
    return result.stdout[-8000:] + result.stderr[-4000:]


def _host_stats(result, host):
    return (result.data or {}).get("stats", {}).get(host, {})


class Batch:
    """A launched batch of three (a first batch on a fresh key bucket): names, launch id, the lab and how to run the playbooks on it."""

    def __init__(self, lab, workdir):
        self.lab = lab
        self.aws = AWS(lab)
        self.workdir = workdir
        self.launch_id = "happy-%s" % uuid.uuid4().hex[:8]
        suffix = uuid.uuid4().hex[:6]
        self.names = ["happy-%s-%s" % (suffix, letter) for letter in "abc"]
        self.hook = os.path.join(workdir, "hook_configured.yml")
        with open(self.hook, "w") as handle:
            handle.write(HOOK)
        self.launches = []

    def key_object(self, name):
        return "volumes/%s.key" % name

    def launch_vars(self):
        return dict(secure_launch_lab_vars(self.lab), **{
            "secure_launch_id": self.launch_id,
            "secure_launch_image_id": "ami-1e749f67",
            "secure_launch_key_bucket": KEY_BUCKET,
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": self.workdir,
            "secure_launch_configure_instance": False,
            "secure_launch_hook_configured": self.hook,
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_bootstrap_objects": ["%s-boot/package.deb" % KEY_BUCKET],
            "secure_launch_instances": [
                {"name": name, "scan_targets": [name], "chef_run_list": ["recipe[base]"], "tags": {"Owner": "happy"}}
                for name in self.names],
        })

    def launch(self):
        s3_gateway_endpoint(self.aws.client("ec2"))
        result = run_playbook(self.lab, SECURE_LAUNCH, extra_vars=self.launch_vars(), args=["-f", "4"])
        path = os.path.join(self.workdir, "secure-launch-%s.json" % self.launch_id)
        assert os.path.exists(path), "no batch summary written:\n" + _output(result)
        with open(path) as handle:
            summary = json.load(handle)
        self.launches.append((result, summary))
        return result, summary

    def terminate(self, instance_ids=None):
        extra_vars = dict(secure_launch_lab_vars(self.lab), secure_launch_key_bucket=KEY_BUCKET)
        if instance_ids is not None:
            extra_vars["terminate_instance_ids"] = instance_ids
        return run_playbook(self.lab, TERMINATE, extra_vars=extra_vars)

    def instances(self):
        ec2 = self.aws.client("ec2")
        found = {}
        for instance in _instances(ec2, **{"tag:cloudefigo:launch-id": [self.launch_id]}):
            found.setdefault(_tags(instance)["Name"], []).append(instance)
        return found


@pytest.fixture(scope="module")
def batch(lab, tmp_path_factory):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    moto_reset(lab)
    launched = Batch(lab, str(tmp_path_factory.mktemp("secure-launch")))
    launched.launch()
    yield launched
    for name in launched.names:
        try:
            chef_client(lab).request("DELETE", "/nodes/%s" % name, missing_ok=True)
            chef_client(lab).request("DELETE", "/clients/%s" % name, missing_ok=True)
        except Exception:  # pylint: disable=broad-except
            pass
    moto_reset(lab)


def _instance_arn(instance):
    return "arn:aws:ec2:us-east-1:123456789012:instance/%s" % instance["InstanceId"]


def _allowed(iam, role, instance):
    """(action, resource) pairs the role's inline policies allow; each Allow must be bound to the instance."""
    allowed = set()
    for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        for statement in iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            assert statement["Condition"]["ArnEquals"]["ec2:SourceInstanceARN"] == _instance_arn(instance), statement
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            allowed.update((a, r) for a in actions for r in resources)
    return allowed


def _key_kms_arn(s3, key):
    """The KMS key the volume key object is encrypted with (SSE-KMS, the bucket's dedicated key)."""
    head = s3.head_object(Bucket=KEY_BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms", head
    return head["SSEKMSKeyId"]


def _assert_in_production(lab, batch, result, summary):
    """Both instances launched, IMDSv2 only, in production, least-privilege role, key in S3, Chef node."""
    ec2 = batch.aws.client("ec2")
    iam = batch.aws.client("iam")
    s3 = batch.aws.client("s3")
    groups = {g["GroupName"]: g["GroupId"] for g in ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [PRODUCTION_GROUP, REMEDIATION_GROUP]}])["SecurityGroups"]}
    assert set(groups) == {PRODUCTION_GROUP, REMEDIATION_GROUP}

    instances = batch.instances()
    assert sorted(instances) == sorted(batch.names)
    for name in batch.names:
        assert len(instances[name]) == 1, instances[name]
        instance = instances[name][0]
        entry = [e for e in summary["instances"] if e["name"] == name][0]
        assert entry["instance_id"] == instance["InstanceId"]
        assert instance["State"]["Name"] == "running"

        # IMDSv2 only
        assert instance["MetadataOptions"]["HttpTokens"] == "required", instance["MetadataOptions"]
        assert instance["MetadataOptions"]["HttpEndpoint"] == "enabled"

        # in production, out of remediation
        member_of = {g["GroupId"] for g in instance["SecurityGroups"]}
        assert member_of == {groups[PRODUCTION_GROUP]}, instance["SecurityGroups"]

        tags = _tags(instance)
        assert tags["SecurityStatus"] == "production", tags
        assert tags["SecurityReason"].startswith("passed"), tags
        assert tags["cloudefigo:launch-id"] == batch.launch_id
        assert tags["cloudefigo:role"] == "cloudefigo-" + name
        assert tags["cloudefigo:key-bucket"] == KEY_BUCKET
        assert tags["cloudefigo:key-object"] == batch.key_object(name)
        assert tags["cloudefigo:chef-node"] == name
        assert tags["Owner"] == "happy"

        # the instance profile's role: exactly the production policy, its own key and nothing else
        profile_arn = instance["IamInstanceProfile"]["Arn"]
        profile = iam.get_instance_profile(InstanceProfileName=profile_arn.rsplit("/", 1)[1])["InstanceProfile"]
        assert [r["RoleName"] for r in profile["Roles"]] == ["cloudefigo-" + name]
        role = profile["Roles"][0]["RoleName"]
        assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
        assert _allowed(iam, role, instance) == {
            ("s3:GetObject", "arn:aws:s3:::%s/%s" % (KEY_BUCKET, batch.key_object(name))),
            ("kms:Decrypt", _key_kms_arn(s3, batch.key_object(name)))}

        # the volume key: one version in S3, never in the playbook's output
        head = s3.head_object(Bucket=KEY_BUCKET, Key=batch.key_object(name))
        assert head.get("VersionId") not in (None, "", "null"), head
        versions, markers = _key_versions(s3, batch.key_object(name))
        assert versions == [head["VersionId"]] and markers == []
        key = s3.get_object(Bucket=KEY_BUCKET, Key=batch.key_object(name))["Body"].read()
        assert len(key) >= 32
        output = result.stdout + result.stderr
        assert key.hex() not in output.lower()
        assert base64.b64encode(key).decode() not in output
        assert key.decode("latin-1") not in output

        # the data volume: attached, tagged with the launch
        data = _data_volume_ids(instance)
        assert len(data) == 1, instance["BlockDeviceMappings"]
        volume = ec2.describe_volumes(VolumeIds=data)["Volumes"][0]
        assert volume["Attachments"][0]["InstanceId"] == instance["InstanceId"]
        assert _tags(volume)["cloudefigo:launch-id"] == batch.launch_id
        assert _tags(volume)["cloudefigo:instance-id"] == instance["InstanceId"]
        assert volume["Encrypted"] and volume["Size"] == 10, volume  # secure_launch_data_volume_size
        # every attached volume, the root one included, says what the instance says
        attached = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
        for item in ec2.describe_volumes(VolumeIds=attached)["Volumes"]:
            assert _tags(item).get("SecurityStatus") == "production", item

        # the Chef node: registered, converged, for this instance
        node = _chef_get(lab, "/nodes/%s" % name)
        assert node is not None
        assert node["run_list"] == ["recipe[base]"]
        assert node["automatic"]["ec2"]["instance_id"] == instance["InstanceId"]
        assert node["automatic"]["ohai_time"]


def test_batch_is_promoted_to_production(lab, batch):
    result, summary = batch.launches[0]
    assert result.rc == 0, _output(result)
    assert "All %d instance(s) promoted to production." % len(batch.names) in result.stdout, _output(result)
    assert summary["launch_id"] == batch.launch_id
    assert summary["failed"] == []
    assert sorted(i["name"] for i in summary["instances"]) == sorted(batch.names)
    for entry in summary["instances"]:
        assert entry["status"] == "production", entry
        assert entry["scan_verdict"] == "passed", entry
        assert entry["role_stage"] == "production", entry
        # the scan's report is kept beside the summary
        assert os.path.getsize(os.path.join(batch.workdir, "%s-%s.nessus" % (entry["name"], batch.launch_id))) > 0

    _assert_in_production(lab, batch, result, summary)


def test_first_batch_makes_one_kms_key_for_the_bucket(lab, batch):
    """The first batch on a fresh bucket: the bucket's KMS key is made once (the plan play, volume_key
    state=bucket), never raced by the instances (0.1.0's losers left KMS keys without alias behind)."""
    kms = batch.aws.client("kms")
    s3 = batch.aws.client("s3")
    keys = [k["KeyId"] for k in kms.list_keys()["Keys"]]
    aliases = kms.list_aliases()["Aliases"]
    aliased = {a["TargetKeyId"] for a in aliases if a.get("TargetKeyId")}
    tagged = [k for k in keys
              if {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=k).get("Tags", [])}.get("cloudefigo:key-bucket") == KEY_BUCKET]
    assert len(tagged) == 1, (tagged, aliases)
    bucket_alias = [a for a in aliases if a["AliasName"] == "alias/cloudefigo/volume-keys/" + KEY_BUCKET]
    assert [a["TargetKeyId"] for a in bucket_alias] == tagged
    assert [k for k in keys if k not in aliased] == [], "KMS keys without an alias (orphans of a race)"
    metadata = kms.describe_key(KeyId=tagged[0])["KeyMetadata"]
    arn = metadata["Arn"]
    assert len(batch.names) == 3
    # made before any instance of the batch was launched (the plan play), so no instance could race
    # to make it (0.1.0 made it from the first instance's volume_key, after that instance's launch)
    launched = min(found[0]["LaunchTime"] for found in batch.instances().values())
    assert metadata["CreationDate"] <= launched, (metadata["CreationDate"], launched)
    for name in batch.names:
        assert _key_kms_arn(s3, batch.key_object(name)) in (arn, tagged[0])
    rule = s3.get_bucket_encryption(Bucket=KEY_BUCKET)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] in (arn, tagged[0])


def test_rerun_changes_nothing_and_keeps_the_keys(lab, batch):
    s3 = batch.aws.client("s3")
    before = {name: _key_versions(s3, batch.key_object(name)) for name in batch.names}
    instances_before = {name: [i["InstanceId"] for i in found] for name, found in batch.instances().items()}

    result, summary = batch.launch()
    assert result.rc == 0, _output(result)
    assert summary["failed"] == []

    # the same instances, no new one; no new key version
    assert {name: [i["InstanceId"] for i in found] for name, found in batch.instances().items()} == instances_before
    assert {name: _key_versions(s3, batch.key_object(name)) for name in batch.names} == before
    for name in batch.names:
        assert _host_stats(result, name).get("changed") == 0, (name, _changed_tasks(result, name))
        assert _host_stats(result, name).get("failures") == 0
    assert "Make sure the key bucket and its KMS key are ready" not in _changed_tasks(result, "localhost")
    for entry in summary["instances"]:
        assert entry["status"] == "production" and entry["scan_verdict"] == "passed (earlier run)", entry
        assert entry["role_stage"] == "production", entry
    _assert_in_production(lab, batch, result, summary)


def _launched_state(lab, batch):
    """What the batch owns: instance ids, key versions, roles, profiles, Chef nodes and clients, data volumes."""
    iam = batch.aws.client("iam")
    s3 = batch.aws.client("s3")
    state = {}
    for name, found in batch.instances().items():
        role = "cloudefigo-" + name
        try:
            role_arn = iam.get_role(RoleName=role)["Role"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            role_arn = None
        try:
            profile = iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"]["Arn"]
        except iam.exceptions.NoSuchEntityException:
            profile = None
        state[name] = {
            "instances": sorted((i["InstanceId"], i["State"]["Name"]) for i in found),
            "key": _key_versions(s3, batch.key_object(name)),
            "role": role_arn,
            "profile": profile,
            "node": _chef_get(lab, "/nodes/%s" % name) is not None,
            "client": _chef_get(lab, "/clients/%s" % name) is not None,
        }
    return state


def _volumes_left(ec2, volume_ids):
    try:
        return [v["VolumeId"] for v in ec2.describe_volumes(VolumeIds=volume_ids)["Volumes"]]
    except ec2.exceptions.ClientError as error:
        assert error.response["Error"]["Code"] == "InvalidVolume.NotFound", error
        return []


def test_terminate_refuses_without_ids_then_removes_everything(lab, batch):
    ec2 = batch.aws.client("ec2")
    before = _launched_state(lab, batch)
    assert sorted(before) == sorted(batch.names)
    assert all(s["role"] and s["profile"] and s["node"] and s["client"] and s["key"][0] for s in before.values()), before
    instances = {name: found[0] for name, found in batch.instances().items()}
    ids = sorted(i["InstanceId"] for i in instances.values())
    volumes = sorted(v for i in instances.values() for v in _data_volume_ids(i))
    assert len(volumes) == len(batch.names)

    # no list, an empty one, or something that is not an instance id: refused, nothing touched
    for refused in (None, [], "all", ["i-*"]):
        result = batch.terminate(refused)
        assert result.rc != 0, (refused, _output(result))
        assert "terminates only the instances it is given" in result.stdout, (refused, _output(result))
        assert _launched_state(lab, batch) == before, refused
    assert sorted(_volumes_left(ec2, volumes)) == volumes

    result = batch.terminate(ids)
    assert result.rc == 0, _output(result)
    after = _launched_state(lab, batch)
    for name in batch.names:
        assert [state for _id, state in after[name]["instances"]] == ["terminated"], after[name]
        # crypto-shredded: no version and no delete marker of the key left
        assert after[name]["key"] == ([], []), after[name]
        assert after[name]["role"] is None and after[name]["profile"] is None, after[name]
        assert not after[name]["node"] and not after[name]["client"], after[name]
    assert _volumes_left(ec2, volumes) == []

    # a second run: nothing left to do, and it says so without failing
    again = batch.terminate(ids)
    assert again.rc == 0, _output(again)
    for host in ids:
        assert _host_stats(again, host).get("changed") == 0, (host, _changed_tasks(again, host))
    assert _launched_state(lab, batch) == after

    # an id AWS does not know is reported absent, not an error
    unknown = batch.terminate(["i-0123456789abcdef0"])
    assert unknown.rc == 0, _output(unknown)
    assert "is not known" in unknown.stdout


def _upload_cloudtrail(s3, bucket):
    """The invictus-ir sample log files under the AWSLogs layout CloudTrail writes; returns their event count."""
    paths = sorted(glob.glob(os.path.join(SAMPLES, "*.json.gz")))
    assert len(paths) == 55, "expected the 55 sample files under %s" % SAMPLES
    s3.create_bucket(Bucket=bucket)
    events = 0
    for path in paths:
        with gzip.open(path) as handle:
            events += len(json.load(handle)["Records"])
        account, _service, region, stamp = os.path.basename(path).split("_")[:4]
        day = "/".join((stamp[:4], stamp[4:6], stamp[6:8]))
        key = "AWSLogs/%s/CloudTrail/%s/%s/%s" % (account, region, day, os.path.basename(path))
        s3.upload_file(path, bucket, key)
    return events


@pytest.fixture
def siem_db(lab):
    """A fresh PostgreSQL database of the lab for the audit's CloudTrail rows."""
    with fresh_database(lab, "audit_test") as params:
        yield params


@pytest.fixture
def chef_node(lab):
    """Create Chef nodes reporting an EC2 instance id; deleted afterwards."""
    created = []

    def _create(name, instance_id):
        chef_client(lab).request("POST", "/nodes", data={
            "name": name, "json_class": "Chef::Node", "chef_type": "node", "chef_environment": "_default",
            "run_list": [], "normal": {}, "default": {}, "override": {},
            "automatic": {"ohai_time": time.time(), "ec2": {"instance_id": instance_id}}})
        created.append(name)

    yield _create
    for name in created:
        chef_client(lab).request("DELETE", "/nodes/%s" % name, missing_ok=True)


def test_audit_reports_quarantines_and_loads_cloudtrail(lab, aws, playbook, siem_db, chef_node, tmp_path):
    east, west = aws.client("ec2"), aws.client("ec2", region="eu-west-1")
    # managed: us-east-1, with a Chef node reporting its id; unmanaged: eu-west-1, no node
    managed = east.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1, InstanceType="t3.small")
    managed_id = managed["Instances"][0]["InstanceId"]
    chef_node("audit-managed-%s" % uuid.uuid4().hex[:8], managed_id)
    west_image = west.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    unmanaged = west.run_instances(ImageId=west_image, MinCount=1, MaxCount=1, InstanceType="t3.small",
                                   TagSpecifications=[{"ResourceType": "instance",
                                                       "Tags": [{"Key": "Name", "Value": "shadow-it"}]}])
    unmanaged_id = unmanaged["Instances"][0]["InstanceId"]
    # a group with SSH open to the internet, in use by nobody
    vpc = east.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    open_ssh = east.create_security_group(GroupName="open-ssh", Description="ssh from anywhere", VpcId=vpc)["GroupId"]
    east.authorize_security_group_ingress(GroupId=open_ssh, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    events = _upload_cloudtrail(aws.client("s3"), "audit-cloudtrail")
    aws.client("s3").create_bucket(Bucket="audit-evidence")

    report_dir = tmp_path / "audit"
    result = playbook(AUDIT, extra_vars={
        "cloudefigo_aws_region": "us-east-1",
        "cloudefigo_aws_endpoint_url": lab["LAB_AWS_ENDPOINT"],
        "cloudefigo_chef_server_url": lab["LAB_CHEF_URL"],
        "cloudefigo_chef_client_name": lab["LAB_CHEF_USER"],
        "cloudefigo_chef_client_key": lab["LAB_CHEF_KEY"],
        "cloudefigo_chef_allow_insecure_http": True,
        "audit_regions": ["us-east-1", "eu-west-1"],
        "audit_quarantine": True,
        # the unmanaged instance was just started: no grace period, or it would be spared
        "audit_quarantine_grace_seconds": 0,
        "audit_quarantine_case_id": "case-happy",
        "audit_evidence_bucket": "audit-evidence",
        "audit_pg_host": siem_db["host"],
        "audit_pg_port": siem_db["port"],
        "audit_pg_user": siem_db["user"],
        "audit_pg_db": siem_db["dbname"],
        "audit_pg_ssl_mode": "disable",
        "audit_cloudtrail_bucket": "audit-cloudtrail",
        "audit_report_dir": str(report_dir),
    })
    assert result.rc == 0, _output(result)

    # the unmanaged instance is reported, the managed one is not
    found = result.task_results("Find the instances Chef does not manage")[0]
    reported = {(u["region"], u["instance_id"]) for u in found["unmanaged"]}
    assert ("eu-west-1", unmanaged_id) in reported, found["unmanaged"]
    assert managed_id not in {instance_id for _region, instance_id in reported}

    # quarantined: only the isolation group, tagged, termination protection on; the managed one untouched
    instance = _instances(west, **{"instance-id": [unmanaged_id]})[0]
    isolation = west.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": ["cloudefigo-isolation"]}])["SecurityGroups"]
    assert len(isolation) == 1
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [isolation[0]["GroupId"]]
    assert _tags(instance)["SecurityStatus"] == "quarantined"
    assert west.describe_instance_attribute(InstanceId=unmanaged_id, Attribute="disableApiTermination")[
        "DisableApiTermination"]["Value"] is True
    kept = _instances(east, **{"instance-id": [managed_id]})[0]
    assert "SecurityStatus" not in _tags(kept)
    assert "cloudefigo-isolation" not in {g["GroupName"] for g in kept["SecurityGroups"]}

    # the open SSH group is a finding
    findings = result.task_results("Audit the security groups")[0]["findings"]
    ssh = [(f["region"], f["rule"], f["cidr"], f["ports"]) for f in findings if f["group_id"] == open_ssh]
    assert ("us-east-1", "open_admin_port", "0.0.0.0/0", "tcp/22") in ssh, findings

    # every CloudTrail event of the samples is in PostgreSQL
    with psycopg2.connect(**siem_db) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*), count(DISTINCT event_id) FROM cloudtrail.events")
        total, distinct = cursor.fetchone()
    connection.close()
    assert events == 2900
    assert total == distinct == events

    # the HTML report names the unmanaged instance and the open group
    loaded = result.task_results("Load CloudTrail into the SIEM database")[0]
    assert loaded["events_loaded"] == events and loaded["files_failed"] == [], loaded

    # the HTML report names the unmanaged instance in its region's table, and the open group
    report = (report_dir / "audit-report.html").read_text()
    assert "<html" in report
    west_table = report.split('data-region="eu-west-1"', 1)[1].split("</section>", 1)[0]
    assert unmanaged_id in west_table
    assert open_ssh in report


# --- settings: role defaults rank lowest (issue 12 §2) ----------------------------------------------

def _launch_one(lab, workdir, names, launch_id=None, inventory=None, env=None, **overrides):
    """One secure launch of `names` (a name or a list) as the batch does it; returns the playbook result."""
    hook = os.path.join(str(workdir), "hook_configured.yml")
    with open(hook, "w") as handle:
        handle.write(HOOK)
    names = [names] if isinstance(names, str) else names
    extra = dict(secure_launch_lab_vars(lab), **{
        "secure_launch_image_id": "ami-1e749f67",
        "secure_launch_key_bucket": KEY_BUCKET,
        "secure_launch_omit_conditioned_denies": True,
        "secure_launch_report_dir": str(workdir),
        "secure_launch_configure_instance": False,
        "secure_launch_hook_configured": hook,
        "secure_launch_nessus_poll_interval": 1,
        "secure_launch_instances": [{"name": name, "scan_targets": [name], "chef_run_list": ["recipe[base]"]}
                                    for name in names],
    })
    if launch_id:
        extra["secure_launch_id"] = launch_id
    extra.update(overrides)
    s3_gateway_endpoint(AWS(lab).client("ec2"))
    return run_playbook(lab, SECURE_LAUNCH, extra_vars=extra, inventory=inventory, env=env)


@pytest.fixture
def chef_cleanup(lab):
    """Names whose Chef node and client are deleted after the test."""
    names = []
    yield names
    for name in names:
        for kind in ("nodes", "clients"):
            try:
                chef_client(lab).request("DELETE", "/%s/%s" % (kind, name), missing_ok=True)
            except Exception:  # pylint: disable=broad-except
                pass


def test_inventory_and_group_vars_override_the_defaults(lab, aws, tmp_path, chef_cleanup):
    """Values from the inventory reach both the controller's plays and the hosts made by add_host."""
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator")
    name = "settings-%s" % uuid.uuid4().hex[:6]
    chef_cleanup.append(name)
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    # a host var of the controller, a var of the controller's group, and one for every host
    (inventory / "hosts.ini").write_text(
        "[controllers]\nlocalhost ansible_connection=local secure_launch_production_group=team-production\n")
    (inventory / "group_vars" / "controllers.yml").write_text("secure_launch_role_prefix: team-\n")
    (inventory / "group_vars" / "all.yml").write_text("secure_launch_key_prefix: team-keys/\n")

    result = _launch_one(lab, tmp_path, name, inventory=str(inventory))
    assert result.rc == 0, _output(result)

    ec2, iam, s3 = aws.client("ec2"), aws.client("iam"), aws.client("s3")
    instance = _instances(ec2, **{"tag:Name": [name], "instance-state-name": ["running"]})
    assert len(instance) == 1, instance
    instance = instance[0]
    # the host var: the production group the instance ended in (default cloudefigo-production)
    assert [g["GroupName"] for g in instance["SecurityGroups"]] == ["team-production"]
    assert ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [PRODUCTION_GROUP]}])["SecurityGroups"] == []
    # the controllers' group var, used on the batch host: the role and profile names (default cloudefigo-)
    assert instance["IamInstanceProfile"]["Arn"].rsplit("/", 1)[1] == "team-" + name
    iam.get_role(RoleName="team-" + name)
    with pytest.raises(iam.exceptions.NoSuchEntityException):
        iam.get_role(RoleName="cloudefigo-" + name)
    # group_vars/all: the key object's prefix (default volumes/)
    assert s3.head_object(Bucket=KEY_BUCKET, Key="team-keys/%s.key" % name)["ContentLength"] >= 32
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=KEY_BUCKET).get("Contents", [])]
    assert "volumes/%s.key" % name not in listed, listed


def _foreign_group(ec2, name):
    """A security group of someone else (no cloudefigo tag), with one ingress and one egress rule."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName=name, Description="the web team's own group", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "IpRanges": [{"CidrIp": "192.0.2.0/24"}]}])
    return group


def _rules(ec2, group):
    found = ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]
    return found["IpPermissions"], found["IpPermissionsEgress"]


@pytest.mark.parametrize("setting", ["secure_launch_production_group", "secure_launch_isolation_group"])
def test_launch_refuses_to_purge_a_group_it_did_not_create(lab, aws, tmp_path, setting):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator")
    ec2 = aws.client("ec2")
    group = _foreign_group(ec2, "web-team")
    before = _rules(ec2, group)
    name = "foreign-%s" % uuid.uuid4().hex[:6]

    result = _launch_one(lab, tmp_path, name, **{setting: "web-team"})
    assert result.rc != 0, _output(result)
    assert "web-team (%s)" % group in result.stdout and "was not created by cloudefigo.core" in result.stdout, \
        _output(result)
    assert "Set %s to a group name of its own" % setting in result.stdout, _output(result)
    assert _rules(ec2, group) == before
    # stopped before anything was created
    assert _instances(ec2, **{"tag:Name": [name]}) == []
    assert aws.client("iam").list_roles()["Roles"] == []


def test_quarantine_refuses_to_empty_an_isolation_group_it_did_not_create(lab, aws, playbook, tmp_path):
    ec2 = aws.client("ec2")
    group = _foreign_group(ec2, "web-team")
    before = _rules(ec2, group)
    unmanaged = ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1,
                                  InstanceType="t3.small")["Instances"][0]["InstanceId"]
    groups_before = _instances(ec2, **{"instance-id": [unmanaged]})[0]["SecurityGroups"]

    result = playbook(AUDIT, extra_vars=dict(secure_launch_lab_vars(lab), **{
        "audit_regions": ["us-east-1"],
        "audit_quarantine": True,
        "audit_quarantine_grace_seconds": 0,
        "audit_quarantine_case_id": "case-foreign",
        "audit_isolation_group_name": "web-team",
        "audit_evidence_bucket": "foreign-evidence",
        "audit_report_dir": str(tmp_path / "audit"),
    }))
    assert result.rc != 0, _output(result)
    assert "was not created by cloudefigo.core" in result.stdout, _output(result)
    assert _rules(ec2, group) == before
    instance = _instances(ec2, **{"instance-id": [unmanaged]})[0]
    assert instance["SecurityGroups"] == groups_before
    assert "SecurityStatus" not in _tags(instance)


# --- one launch owns its role, profile, key and Chef node (issue 10 §1) -----------------------------

def _owned_state(aws, lab, name):
    """Everything of `name` a second launch must not touch: key (versions, bytes, tags), role, profile, node."""
    iam, s3 = aws.client("iam"), aws.client("s3")
    role = "cloudefigo-" + name
    key = "volumes/%s.key" % name
    head = s3.head_object(Bucket=KEY_BUCKET, Key=key)
    return {
        "key_versions": _key_versions(s3, key),
        "key_version": head["VersionId"],
        "key_bytes": s3.get_object(Bucket=KEY_BUCKET, Key=key)["Body"].read(),
        "key_tags": s3.get_object_tagging(Bucket=KEY_BUCKET, Key=key)["TagSet"],
        "role": iam.get_role(RoleName=role)["Role"],
        "role_policies": {p: iam.get_role_policy(RoleName=role, PolicyName=p)["PolicyDocument"]
                          for p in iam.list_role_policies(RoleName=role)["PolicyNames"]},
        "role_attached": iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"],
        "profile": iam.get_instance_profile(InstanceProfileName=role)["InstanceProfile"],
        "node": _chef_get(lab, "/nodes/%s" % name),
        "client": _chef_get(lab, "/clients/%s" % name),
    }


def test_second_launch_of_a_name_fails_closed(lab, aws, tmp_path, chef_cleanup):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator")
    name = "owned-%s" % uuid.uuid4().hex[:6]
    chef_cleanup.append(name)
    first_id, second_id = "first-%s" % uuid.uuid4().hex[:6], "second-%s" % uuid.uuid4().hex[:6]
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = _launch_one(lab, tmp_path / "first", name, launch_id=first_id)
    assert first.rc == 0, _output(first)
    ec2 = aws.client("ec2")
    owner = _instances(ec2, **{"tag:Name": [name]})
    assert len(owner) == 1
    owner_id = owner[0]["InstanceId"]
    before = _owned_state(aws, lab, name)

    second = _launch_one(lab, tmp_path / "second", name, launch_id=second_id)
    assert second.rc != 0, _output(second)
    assert "stopped before creating anything" in second.stdout, _output(second)
    assert "belongs to launch %s, instance %s (running: still exists)" % (first_id, owner_id) in second.stdout, \
        _output(second)

    # nothing of the first launch changed, and nothing of the second was made
    assert _owned_state(aws, lab, name) == before
    assert [i["InstanceId"] for i in _instances(ec2, **{"tag:Name": [name]})] == [owner_id]
    assert _instances(ec2, **{"tag:cloudefigo:launch-id": [second_id]}) == []

    # the first instance's role still reads its key, with moto's IAM enforcement on
    iam = aws.client("iam")
    iam.create_user(UserName="lab-admin")
    iam.put_user_policy(UserName="lab-admin", PolicyName="admin", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    admin = iam.create_access_key(UserName="lab-admin")["AccessKey"]
    sts = aws.client("sts", aws_access_key_id=admin["AccessKeyId"], aws_secret_access_key=admin["SecretAccessKey"])
    creds = sts.assume_role(RoleArn=before["role"]["Arn"], RoleSessionName=owner_id)["Credentials"]
    instance_s3 = aws.client("s3", aws_access_key_id=creds["AccessKeyId"],
                             aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    moto_post(lab, "/moto-api/reset-auth", b"0")
    try:
        body = instance_s3.get_object(Bucket=KEY_BUCKET, Key="volumes/%s.key" % name)["Body"].read()
    finally:
        moto_post(lab, "/moto-api/reset-auth", b"inf")
    assert body == before["key_bytes"]


# --- no unbound window (issue 10 §2) -------------------------------------------------------------------

def _host_task_results(result, host):
    """(task name, result) of `host` in the order the tasks ran."""
    out = []
    for play in (result.data or {}).get("plays", []):
        for task in play["tasks"]:
            if host in task["hosts"]:
                out.append((task["task"]["name"], task["hosts"][host]))
    return out


def test_instance_gets_credentials_only_once_its_role_is_bound(lab, aws, tmp_path, chef_cleanup):
    """The policy in force when the instance first has credentials (the profile association) is bound."""
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator")
    name = "bound-%s" % uuid.uuid4().hex[:6]
    chef_cleanup.append(name)
    result = _launch_one(lab, tmp_path, name)
    assert result.rc == 0, _output(result)
    ec2, iam, s3 = aws.client("ec2"), aws.client("iam"), aws.client("s3")
    instance = _instances(ec2, **{"tag:Name": [name]})[0]
    arn = _instance_arn(instance)

    steps = _host_task_results(result, name)
    names = [step for step, _outcome in steps]
    launched = names.index("Launch the instance in the remediation group, without an instance profile")
    # one task writes the bound role and then, as its last step, associates the profile
    role_task = "Create the instance role, bound to the instance, and give the instance its profile"
    associated = names.index(role_task)
    assert names.count(role_task) == 1 and "Give the instance its profile (its first credentials)" not in names
    # the instance was started without a profile: no credentials at all
    launch = steps[launched][1]
    assert launch["invocation"]["module_args"]["iam_instance_profile"] is None, launch["invocation"]
    assert "iam_instance_profile" not in launch["instances"][0], launch["instances"][0]
    # the data volume is made by the launch itself (block device mapping, encrypted, kept on termination)
    data = [m for m in launch["instances"][0]["block_device_mappings"] if m["device_name"] == "/dev/sdf"]
    assert len(data) == 1 and data[0]["ebs"]["delete_on_termination"] is False, launch["instances"][0]
    volume_id = data[0]["ebs"]["volume_id"]
    volume = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Encrypted"] and volume["Attachments"][0]["InstanceId"] == instance["InstanceId"], volume
    # before the association: the volume marked as the instance's, the key, ONE launch record naming both, then the role
    between = [step.split(" : ", 1)[-1] for step in names[launched:associated]]  # (role tasks: "<role> : <name>")
    key_task = "Create the volume key of the instance and record the launch"
    assert between.index("Mark the data volume as the instance's") < between.index(key_task), between
    # one call makes the key and writes the record naming it (and nothing else writes a record)
    assert names.count(key_task) == 1 and steps[names.index(key_task)][1]["launch_record"]["volume_ids"] == [volume_id], steps
    assert not [step for step in names if "launch_record" in step or step.startswith("Record the launch")], names
    assert {t["Key"]: t["Value"] for t in volume["Tags"]}["cloudefigo:instance-id"] == instance["InstanceId"], volume
    record = {t["Key"]: t["Value"] for t in s3.get_object_tagging(
        Bucket=KEY_BUCKET, Key="cloudefigo-records/us-east-1/%s" % instance["InstanceId"])["TagSet"]}
    assert record["cloudefigo:volumes"] == volume_id and record["cloudefigo:key-object"] == "volumes/%s.key" % name, record
    assert record["cloudefigo:instance-profile"] == "cloudefigo-" + name, record
    role_step = steps[associated][1]
    in_force = role_step["policy"]
    allows = [st for st in in_force["Statement"] if st["Effect"] == "Allow"]
    assert allows, in_force
    for statement in allows:
        assert statement["Condition"]["ArnEquals"]["ec2:SourceInstanceARN"] == arn, statement
    resources = {r for st in allows for r in (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])}
    assert "arn:aws:s3:::%s/volumes/%s.key" % (KEY_BUCKET, name) in resources
    assert _key_kms_arn(s3, "volumes/%s.key" % name) in resources
    # the same task gave the instance the profile of that role, and it is the one in moto
    assert role_step["changed"] is True
    associations = ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance["InstanceId"]]}])["IamInstanceProfileAssociations"]
    assert len(associations) == 1, associations
    profile = iam.get_instance_profile(InstanceProfileName="cloudefigo-" + name)["InstanceProfile"]
    assert associations[0]["IamInstanceProfile"]["Arn"] == profile["Arn"]
    # configuration over, the role shrinks to its own key while the scan runs: before the verdict and the
    # promotion (which then only moves the instance), and that is the policy left in force
    shrink = names.index("Shrink the instance role to its own key while the scan runs")
    assert names.index("Scan the instance with Nessus - launch the scan") < shrink \
        < names.index("Scan the instance with Nessus - promote only when the run ended and passed") \
        < names.index("Move the instance to the production group and tag it and its volumes"), names
    in_force_now = iam.get_role_policy(RoleName="cloudefigo-" + name, PolicyName=steps[shrink][1]["policy_name"])["PolicyDocument"]
    assert steps[shrink][1]["stage"] == "production" and steps[shrink][1]["policy"] == in_force_now, steps[shrink][1]
    assert role_step["association_id"] == associations[0]["AssociationId"]
    assert role_step["associated_instance_profile_arn"] == profile["Arn"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["cloudefigo-" + name]
    # and nothing after the association ever widened the role: its policy now is bound too
    assert _allowed(iam, "cloudefigo-" + name, instance) <= _statement_pairs(allows)


def _statement_pairs(statements):
    pairs = set()
    for statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        pairs.update((a, r) for a in actions for r in resources)
    return pairs
