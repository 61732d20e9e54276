"""A failed secure launch is contained, not just left behind (issue 11).

The instance that failed its scan ends in the isolation group (no rule in, no rule out: the group
instance_quarantine uses), no longer in the remediation group with its outbound HTTP(S); its Chef
API client is deleted while its node stays for forensics; its role is shrunk to its own key.
A Chef node that belongs to another instance is never touched by the containment.

No VM: the on-instance part is skipped, and a hook registers the node and its client the way the
flow does (chef_node with the instance's ownership marks), then reports the converge. The scan
then finds a critical vulnerability (the Nessus simulator's per-target switch).
"""
import os
import uuid

import pytest

from _lab import ROOT, chef_client, moto_post, nessus_switch, s3_gateway_endpoint, secure_launch_lab_vars

PLAYBOOK = os.path.join(ROOT, "playbooks", "secure_launch.yml")
CONVERGE_TASKS = os.path.join(ROOT, "playbooks", "tasks", "lab_chef_converge.yml")
KEY_BUCKET = "containment-keys"

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


@pytest.fixture
def failed_launch(lab, aws, playbook, tmp_path):
    """Launch one instance whose scan finds a critical vulnerability; returns (name, result)."""
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator")
    name = "contain-%s" % uuid.uuid4().hex[:8]
    hook = tmp_path / "hook.yml"
    hook.write_text(HOOK)
    nessus_switch(lab, name, {"report": "dojo_nessus_with_cvssv3.nessus"})
    # the launch checks that the VPC reaches S3 through a gateway endpoint
    s3_gateway_endpoint(aws.client("ec2"))

    def _run(hook_path=str(hook)):
        extra = dict(secure_launch_lab_vars(lab), **{
            "secure_launch_id": "launch-%s" % name,
            "secure_launch_image_id": "ami-1e749f67",
            "secure_launch_key_bucket": KEY_BUCKET,
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": str(tmp_path),
            "secure_launch_configure_instance": False,
            "secure_launch_hook_configured": hook_path,
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_nessus_fail_on": "critical",
            "secure_launch_bootstrap_objects": ["%s-boot/package.deb" % KEY_BUCKET],
            "secure_launch_instances": [{"name": name, "scan_targets": [name]}],
        })
        result = playbook(PLAYBOOK, extra_vars=extra, json_output=False)
        (tmp_path / "playbook.out").write_text(result.stdout + result.stderr)
        return result

    _run.name = name
    yield _run
    nessus_switch(lab, name, None)
    moto_post(lab, "/moto-api/reset-auth", b"inf")
    chef = chef_client(lab)
    chef.delete("/nodes/%s" % name, missing_ok=True)
    chef.delete("/clients/%s" % name, missing_ok=True)


def _instance(aws, name):
    ec2 = aws.client("ec2")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 1, instances
    return instances[0]


def test_failed_launch_is_isolated_and_cut_off_chef(lab, aws, failed_launch):
    name = failed_launch.name
    result = failed_launch()
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.rc != 0 and "NOT promoted" in result.stdout, output

    ec2 = aws.client("ec2")
    instance = _instance(aws, name)
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    assert tags["SecurityStatus"] == "remediation", tags
    assert tags["SecurityReason"].startswith("Scan the instance with Nessus - promote only when the run ended and passed"), tags

    # network: the isolation group only, without any rule, in the instance's VPC
    groups = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in instance["SecurityGroups"]])["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["cloudefigo-isolation"], groups
    assert groups[0]["IpPermissions"] == [] and groups[0]["IpPermissionsEgress"] == []
    assert groups[0]["VpcId"] == instance["VpcId"]

    # Chef: the client is gone, the node (with its marks and converge) stays for forensics
    chef = chef_client(lab)
    assert chef.get("/clients/%s" % name, missing_ok=True) is None
    node = chef.get("/nodes/%s" % name, missing_ok=True)
    assert node is not None
    assert node["normal"]["cloudefigo"] == {"instance_id": instance["InstanceId"], "launch_id": "launch-%s" % name}
    assert node["automatic"].get("ohai_time")

    # AWS: the role reads its own key and nothing else
    iam = aws.client("iam")
    role = "cloudefigo-" + name
    allowed = set()
    for policy in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        for statement in iam.get_role_policy(RoleName=role, PolicyName=policy)["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Allow":
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                allowed.update((a, r) for a in actions for r in resources)
    # its own key and, the key being SSE-KMS, kms:Decrypt of that KMS key (through S3 only)
    own_key = ("s3:GetObject", "arn:aws:s3:::%s/volumes/%s.key" % (KEY_BUCKET, name))
    assert own_key in allowed, allowed
    assert all(pair == own_key or pair[0] == "kms:Decrypt" and pair[1].startswith("arn:aws:kms:")
               for pair in allowed), allowed


def test_containment_leaves_a_node_of_another_instance_alone(lab, aws, failed_launch, tmp_path):
    """The node of the failed launch's name is another instance's: its client survives, the failure says why."""
    name = failed_launch.name
    chef = chef_client(lab)
    # while the launch runs, another instance's registration takes the name (a preflight before
    # the launch would refuse a name already taken; this one is taken after it)
    hook = tmp_path / "foreign_node.yml"
    hook.write_text(HOOK.replace('"{{ secure_launch_instance_id }}"', "i-0ther0000000000")
                    .replace('"{{ secure_launch_launch_id }}"', "other"))
    result = failed_launch(str(hook))
    assert result.rc != 0, result.stdout[-4000:]
    assert chef.get("/clients/%s" % name, missing_ok=True) is not None
    assert chef.get("/nodes/%s" % name)["normal"]["cloudefigo"]["instance_id"] == "i-0ther0000000000"
    assert "belongs to instance i-0ther0000000000" in result.stdout, result.stdout[-4000:]
    # the network part of the containment still happened
    instance = _instance(aws, name)
    assert [g["GroupName"] for g in instance["SecurityGroups"]] == ["cloudefigo-isolation"]
