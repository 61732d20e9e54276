"""Fault matrix of playbooks/secure_launch.yml (R1): one test per injected fault.

Whatever fails, the instance must end out of the production group, in the remediation group, with
its role shrunk to its own key (or deleted) and a SecurityReason tag, and the job must fail.
The faults sit before or after the on-instance roles, so the launch runs without the VM
(secure_launch_configure_instance: false) except for the unreachable host, which is one by design.
Faults come from the Nessus simulator's per-target switches, moto's IAM enforcement with an
explicit Deny, and Chef (no node).
"""
import json
import os
import re
import uuid

import pytest

from _lab import ROOT, chef_client, moto_post, nessus_switch, s3_gateway_endpoint, secure_launch_lab_vars

PLAYBOOK = os.path.join(ROOT, "playbooks", "secure_launch.yml")
KEY_BUCKET = "fault-matrix-keys"


@pytest.fixture
def launch(lab, aws, playbook, tmp_path):
    """Run a one-instance secure launch with a given fault; yields a callable returning the result."""
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    name = "fault-%s" % uuid.uuid4().hex[:8]
    created_nodes = []

    # before a test turns IAM enforcement on: the lab's own credentials are refused then
    s3_gateway_endpoint(aws.client("ec2"))

    def _run(chef_node=True, spec=None, env=None, **overrides):
        if chef_node:
            chef_client(lab).request("POST", "/nodes", data={
                "name": name, "json_class": "Chef::Node", "chef_type": "node", "chef_environment": "_default",
                "run_list": [], "normal": {}, "default": {}, "override": {}, "automatic": {}})
            created_nodes.append(name)
        extra = dict(secure_launch_lab_vars(lab), **{
            "secure_launch_image_id": "ami-1e749f67",
            "secure_launch_key_bucket": KEY_BUCKET,
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": str(tmp_path),
            "secure_launch_configure_instance": False,
            "secure_launch_chef_require_converged": False,
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_bootstrap_objects": ["%s-boot/package.deb" % KEY_BUCKET],
            "secure_launch_instances": [dict({"name": name, "scan_targets": [name]}, **(spec or {}))],
        })
        extra.update(overrides)
        result = playbook(PLAYBOOK, extra_vars=extra, env=env, json_output=False)
        # enforcement (if a test turned it on) off again before looking with the lab's credentials
        moto_post(lab, "/moto-api/reset-auth", b"inf")
        summaries = [p for p in os.listdir(str(tmp_path)) if p.startswith("secure-launch-") and p.endswith(".json")]
        summary = json.loads((tmp_path / summaries[0]).read_text()) if summaries else None
        return result, summary

    _run.name = name
    yield _run
    moto_post(lab, "/moto-api/reset-auth", b"inf")
    for node in created_nodes + [name]:
        try:
            chef_client(lab).request("DELETE", "/nodes/%s" % node, missing_ok=True)
        except Exception:  # pylint: disable=broad-except
            pass


def _assert_contained(aws, name, result, summary, reason_start):
    output = result.stdout[-6000:] + result.stderr[-3000:]
    assert result.rc != 0, "the launch must fail:\n" + output
    assert "NOT promoted" in result.stdout, output
    assert summary and [f["name"] for f in summary["failed"]] == [name], summary

    ec2 = aws.client("ec2")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 1, instances
    instance = instances[0]
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    assert tags["SecurityStatus"] == "remediation"
    assert tags["SecurityReason"].startswith(reason_start), tags["SecurityReason"]

    groups = {g["GroupName"] for g in instance["SecurityGroups"]}
    # contained: the isolation group (no rule in or out), no longer the remediation group
    assert groups == {"cloudefigo-isolation"}, groups
    production = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["cloudefigo-production"]}])
    production_ids = {g["GroupId"] for g in production["SecurityGroups"]}
    assert not production_ids & {g["GroupId"] for g in instance["SecurityGroups"]}

    # the role is gone, or reads its own key and nothing else (no bootstrap objects, no other action)
    iam = aws.client("iam")
    role = "cloudefigo-" + name
    try:
        names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    except iam.exceptions.NoSuchEntityException:
        return
    allowed = set()
    for policy in names:
        document = iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            allowed.update((a, r) for a in actions for r in resources)
    # its own key and, when the key is SSE-KMS, kms:Decrypt of that KMS key (through S3 only)
    own_key = ("s3:GetObject", "arn:aws:s3:::%s/volumes/%s.key" % (KEY_BUCKET, name))
    assert own_key in allowed, allowed
    assert all(pair == own_key or pair[0] == "kms:Decrypt" and pair[1].startswith("arn:aws:kms:")
               for pair in allowed), allowed


def test_nessus_scan_api_unavailable_412(lab, aws, launch):
    nessus_switch(lab, launch.name, {"scan_api": False})
    result, summary = launch()
    _assert_contained(aws, launch.name, result, summary, "Scan the instance with Nessus")


def test_nessus_scan_aborted(lab, aws, launch):
    nessus_switch(lab, launch.name, {"outcome": "aborted"})
    result, summary = launch()
    _assert_contained(aws, launch.name, result, summary, "Scan the instance with Nessus")


def test_nessus_scan_timeout(lab, aws, launch):
    nessus_switch(lab, launch.name, {"outcome": "never"})
    result, summary = launch(secure_launch_nessus_wait_timeout=5, secure_launch_nessus_progress_interval=2)
    _assert_contained(aws, launch.name, result, summary, "Scan the instance with Nessus")
    # the wait showed the run's progress and ended at the timeout, not passed
    assert re.search(r"poll 1/\d+: running \d+%", result.stdout), result.stdout[-4000:]
    reason = summary["failed"][0]["short"]
    assert "still running" in reason and "wait_timeout=5s" in reason, reason


def test_critical_finding(lab, aws, launch):
    nessus_switch(lab, launch.name, {"report": "dojo_nessus_with_cvssv3.nessus"})
    result, summary = launch(secure_launch_nessus_fail_on="critical")
    _assert_contained(aws, launch.name, result, summary, "Scan the instance with Nessus - promote only when the run ended and passed")
    assert "not passed" in summary["instances"][0]["scan_verdict"]


def test_chef_node_missing(aws, launch):
    result, summary = launch(chef_node=False)
    _assert_contained(aws, launch.name, result, summary, "Check that Chef registered")


def _enforce_with_deny(lab, aws, action):
    """An IAM user allowed everything but `action`, and moto's IAM enforcement on; returns its env."""
    iam = aws.client("iam")
    iam.create_user(UserName="launcher")
    iam.put_user_policy(UserName="launcher", PolicyName="all-but", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"},
                      {"Effect": "Deny", "Action": action, "Resource": "*"}]}))
    key = iam.create_access_key(UserName="launcher")["AccessKey"]
    moto_post(lab, "/moto-api/reset-auth", b"0")
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def test_s3_put_denied(lab, aws, launch):
    env = _enforce_with_deny(lab, aws, "s3:PutObject")
    result, summary = launch(env=env)
    _assert_contained(aws, launch.name, result, summary, "Create the volume key")


def test_data_volume_cannot_be_read(lab, aws, launch):
    # the launch cannot mark its data volume (ec2:DescribeVolumes denied): contained all the same, the
    # isolation without the volumes' tags (the role is shrunk whatever the isolation call did)
    env = _enforce_with_deny(lab, aws, "ec2:DescribeVolumes")
    result, summary = launch(env=env)
    _assert_contained(aws, launch.name, result, summary, "Mark the data volume")


def test_host_unreachable(aws, launch):
    # the moto instance's private address leads nowhere: SSH never answers
    # (accept-new: the console host-key pinning is the next test's fault)
    result, summary = launch(secure_launch_configure_instance=True, secure_launch_connect_timeout=10,
                             secure_launch_host_key_source="accept-new",
                             secure_launch_ssh_common_args="-o ConnectTimeout=3 -o StrictHostKeyChecking=no")
    _assert_contained(aws, launch.name, result, summary, "Wait for the instance to answer")


def test_role_not_bound_instance_never_gets_credentials(lab, aws, launch):
    # the bound role cannot be written: the instance must never be given its profile (no credentials)
    env = _enforce_with_deny(lab, aws, "iam:PutRolePolicy")
    result, summary = launch(env=env)
    # (the SecurityReason tag keeps a portable character set: no comma)
    _assert_contained(aws, launch.name, result, summary, "Create the instance role bound to the instance")
    ec2 = aws.client("ec2")
    instance = [i for r in ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [launch.name]}])["Reservations"]
                for i in r["Instances"]][0]
    assert "IamInstanceProfile" not in instance, instance["IamInstanceProfile"]
    assert ec2.describe_iam_instance_profile_associations(
        Filters=[{"Name": "instance-id", "Values": [instance["InstanceId"]]}])["IamInstanceProfileAssociations"] == []


def test_console_shows_no_host_keys(aws, launch, tmp_path):
    # moto's canned console output has no SSH host key block: the launch stops before any SSH
    # connection (never falls back to trusting the first key), and no known_hosts file is written
    result, summary = launch(secure_launch_configure_instance=True, secure_launch_host_keys_timeout=2)
    _assert_contained(aws, launch.name, result, summary, "Read the host keys from the console output")
    assert "No SSH host key block on the console" in result.stdout
    assert os.listdir(str(tmp_path / "known_hosts")) == []
