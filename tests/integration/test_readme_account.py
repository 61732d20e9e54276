"""README.md "Use it on your own AWS account", followed to the letter against the lab (issue 12 §5).

The section's shell blocks run in order, in one bash (set -euo pipefail), in an empty directory,
as a user's shell would: AWS credentials and endpoint in the environment (moto's), the collection
on ANSIBLE_COLLECTIONS_PATH, the venv's ansible first on PATH.  The test changes nothing in them
but the values of the first block's `export NAME=value` lines (the placeholders the section tells
the user to fill in), which it sets to lab values; a name added to, renamed in or dropped from
that block fails the test.  From step 3 on, the shell holds the controller role's credentials, as the
section says.  The account starts as the section assumes a user's does: a role for
the controller, a VPC with a subnet and a route table, an EC2 key pair.

The lab needs a few settings a real account does not; they are appended to the settings file the
section writes (step 6 says any setting may be added there): moto cannot evaluate policy
conditions (secure_launch_omit_conditioned_denies, a lab switch accepted only with an explicit
endpoint, cloudefigo_aws_endpoint_url), there is no instance to SSH into
(secure_launch_configure_instance: false; the Chef node is made here as chef-client would), and
the lab's Chef server speaks plain http.
"""
import json
import os
import re
import subprocess
import sys
import uuid

import pytest

from _lab import ROOT, chef_client

SECTION = "## Use it on your own AWS account"
LAB_SETTINGS = """
# --- the lab (appended by tests/integration/test_readme_account.py) ---
secure_launch_omit_conditioned_denies: true
cloudefigo_aws_endpoint_url: %(endpoint)s
secure_launch_configure_instance: false
secure_launch_chef_require_converged: false
cloudefigo_chef_allow_insecure_http: true
secure_launch_nessus_poll_interval: 1
secure_launch_nessus_progress_interval: 2
"""


def section_blocks():
    """The ```sh blocks of the section, in order, without the list item's indent."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end > 0 else len(text)]
    blocks = []
    for indent, body in re.findall(r"^( *)```sh\n(.*?)^\1```$", section, re.M | re.S):
        lines = body.splitlines()
        assert all(not line.strip() or line.startswith(indent) for line in lines), body
        blocks.append("\n".join(line[len(indent):] for line in lines) + "\n")
    return blocks


def fill_in(block, values):
    """The first block with the lab's values in its `export NAME=value` lines; nothing else changes."""
    names = re.findall(r"^export ([A-Z0-9_]+)=", block, re.M)
    assert sorted(names) == sorted(values), "README placeholders changed: %s vs %s" % (sorted(names), sorted(values))

    def value(match):
        return "export %s=%s" % (match.group(1), json.dumps(str(values[match.group(1)])))
    return re.sub(r"^export ([A-Z0-9_]+)=.*$", value, block, flags=re.M)


def test_readme_blocks_are_shell():
    blocks = section_blocks()
    assert len(blocks) >= 6, blocks
    assert "cloudefigo.env" in blocks[0] and "> my-launch.yml" in "".join(blocks)
    for block in blocks:
        proc = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True, check=False)
        assert proc.returncode == 0, (block, proc.stderr)


def test_readme_account_section_against_the_lab(lab, aws, tmp_path):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    ec2, iam = aws.client("ec2"), aws.client("iam")
    # the account as the section expects it: a role for the controller, a VPC, a key pair
    controller = "readme-controller-%s" % uuid.uuid4().hex[:6]
    iam.create_role(RoleName=controller, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "ec2.amazonaws.com"}}]}))
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    table = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"][0]["RouteTableId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    ec2.create_key_pair(KeyName="readme-ops")
    ssh_key = tmp_path / "ops.pem"
    ssh_key.write_text("not used: the lab configures no instance\n")
    bucket = "readme-keys-%s" % uuid.uuid4().hex[:8]
    values = {
        "AWS_REGION": "us-east-1",
        "CLOUDEFIGO_ACCOUNT_ID": aws.client("sts").get_caller_identity()["Account"],
        "CLOUDEFIGO_CONTROLLER_ROLE": controller,
        "CLOUDEFIGO_KEY_BUCKET": bucket,
        "CLOUDEFIGO_VPC_ID": vpc,
        "CLOUDEFIGO_ROUTE_TABLE_ID": table,
        "CLOUDEFIGO_SUBNET_ID": subnet,
        "CLOUDEFIGO_IMAGE_ID": "ami-1e749f67",
        "CLOUDEFIGO_KEY_PAIR": "readme-ops",
        "CLOUDEFIGO_SSH_KEY_FILE": str(ssh_key),
        "CLOUDEFIGO_SSH_USER": "admin",
        "CLOUDEFIGO_ADMIN_CIDR": "10.0.2.2/32",
        "CLOUDEFIGO_SCANNER_CIDR": "10.0.2.2/32",
        "CHEF_SERVER_URL": lab["LAB_CHEF_URL"],
        "CHEF_CLIENT_NAME": lab["LAB_CHEF_USER"],
        "CHEF_CLIENT_KEY_PATH": lab["LAB_CHEF_KEY"],
        "NESSUS_URL": lab["LAB_NESSUS_URL"],
        "NESSUS_CA_PATH": lab["LAB_NESSUS_CA"],
        "NESSUS_ACCESS_KEY": lab["LAB_NESSUS_ACCESS_KEY"],
        "NESSUS_SECRET_KEY": lab["LAB_NESSUS_SECRET_KEY"],
    }
    # "AWS credentials in the environment: an administrator's for step 2, the controller's from
    # step 3 on": the controller role's session, as an AWX credential or its instance profile gives it
    session = aws.client("sts").assume_role(RoleArn="arn:aws:iam::%s:role/%s" % (values["CLOUDEFIGO_ACCOUNT_ID"], controller),
                                            RoleSessionName="readme")["Credentials"]
    as_controller = "export AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_SESSION_TOKEN=%s\n" % (
        session["AccessKeyId"], session["SecretAccessKey"], session["SessionToken"])
    blocks = section_blocks()
    script = ["set -euo pipefail", fill_in(blocks[0], values)]
    for block in blocks[1:]:
        script.append(block)
        if "cloudefigo.core.controller_policy" in block:
            script.append(as_controller)
        if "> my-launch.yml" in block:
            script.append("cat >> my-launch.yml <<'LAB'\n%sLAB\n" % (LAB_SETTINGS % {"endpoint": lab["LAB_AWS_ENDPOINT"]}))
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("AWS_", "ANSIBLE_", "LAB_", "NESSUS_", "CHEF_", "CLOUDEFIGO_"))}
    env.update({
        "HOME": str(tmp_path),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": lab["LAB_AWS_ENDPOINT"],
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".cache", "collections"),
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
        "ANSIBLE_NOCOLOR": "1",
    })

    chef = chef_client(lab)
    # chef-client's first run on the instance, which the lab does not configure
    chef.request("POST", "/nodes", data={
        "name": "web-1", "json_class": "Chef::Node", "chef_type": "node", "chef_environment": "_default",
        "run_list": [], "normal": {}, "default": {}, "override": {}, "automatic": {}})
    try:
        proc = subprocess.run(["bash", "-c", "\n".join(script)], cwd=str(tmp_path), env=env, capture_output=True,
                              text=True, check=False, timeout=1500)
    finally:
        chef.request("DELETE", "/nodes/web-1", missing_ok=True)
        chef.request("DELETE", "/clients/web-1", missing_ok=True)
    output = proc.stdout[-10000:] + proc.stderr[-4000:]
    assert proc.returncode == 0, output
    assert "All 1 instance(s) promoted to production." in proc.stdout, output
    # the secrets of step 1 stay out of what the commands print
    assert lab["LAB_NESSUS_SECRET_KEY"] not in proc.stdout + proc.stderr

    # what the section says the account now holds
    assert iam.list_role_policies(RoleName=controller)["PolicyNames"] == ["cloudefigo-controller"]
    document = iam.get_role_policy(RoleName=controller, PolicyName="cloudefigo-controller")["PolicyDocument"]
    with open(tmp_path / "controller-policy.json") as handle:
        assert document == json.load(handle)
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
    assert [e["ServiceName"] for e in endpoints] == ["com.amazonaws.us-east-1.s3"]
    assert table in endpoints[0]["RouteTableIds"]
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": ["web-1"]}])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 1
    tags = {t["Key"]: t["Value"] for t in instances[0]["Tags"]}
    assert tags["SecurityStatus"] == "production" and instances[0]["KeyName"] == "readme-ops", tags
    assert instances[0]["SubnetId"] == subnet
    assert {g["GroupName"] for g in instances[0]["SecurityGroups"]} == {"cloudefigo-production"}
    summaries = list((tmp_path / "reports").glob("secure-launch-*.json"))
    assert len(summaries) == 1 and json.loads(summaries[0].read_text())["failed"] == []
    # step 8 showed the summary, the instance and the role's policy
    assert '"status": "production"' in proc.stdout and "cloudefigo-web-1" in proc.stdout
