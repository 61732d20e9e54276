"""The secure launch shows the Nessus scan's status and percentage done while it waits (issue 12 §4).

One launch without the VM (secure_launch_configure_instance: false) whose scan the simulator runs
for a few seconds: the job's output has one line per poll with the run's status and percentage,
rising to `completed 100%`, and the instance is promoted (state read back from moto).  The wait
timeout still bounds the wait and contains the instance: tests/integration/test_fault_matrix.py
(test_nessus_scan_timeout).
"""
import os
import re
import uuid

import pytest

from _lab import ROOT, chef_client, nessus_switch, s3_gateway_endpoint, secure_launch_lab_vars

PLAYBOOK = os.path.join(ROOT, "playbooks", "secure_launch.yml")


def test_launch_shows_scan_status_and_progress_then_promotes(lab, aws, playbook, tmp_path):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    name = "progress-%s" % uuid.uuid4().hex[:8]
    s3_gateway_endpoint(aws.client("ec2"))
    # a few seconds of scan: several polls even on a busy machine
    nessus_switch(lab, name, {"scan_seconds": 10})
    chef = chef_client(lab)
    chef.request("POST", "/nodes", data={
        "name": name, "json_class": "Chef::Node", "chef_type": "node", "chef_environment": "_default",
        "run_list": [], "normal": {}, "default": {}, "override": {}, "automatic": {}})
    try:
        extra = dict(secure_launch_lab_vars(lab), **{
            "secure_launch_image_id": "ami-1e749f67",
            "secure_launch_key_bucket": "progress-keys",
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": str(tmp_path),
            "secure_launch_configure_instance": False,
            "secure_launch_chef_require_converged": False,
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_nessus_progress_interval": 1,
            "secure_launch_instances": [{"name": name, "scan_targets": [name]}],
        })
        result = playbook(PLAYBOOK, extra_vars=extra, json_output=False)
    finally:
        nessus_switch(lab, name, None)
        chef.request("DELETE", "/nodes/%s" % name, missing_ok=True)
        chef.request("DELETE", "/clients/%s" % name, missing_ok=True)
    output = result.stdout[-8000:] + result.stderr[-3000:]
    assert result.rc == 0, output

    # one line per poll: "(item=<name> scan <id> poll <n>/<max>: <status> <percent>%)"
    lines = re.findall(r"\(item=%s scan (\d+) poll (\d+)/(\d+): (\w+) (\d+|-)%%\)" % re.escape(name), result.stdout)
    assert len(lines) >= 3, output
    assert len({line[0] for line in lines}) == 1
    assert [int(line[1]) for line in lines] == list(range(1, len(lines) + 1))
    statuses = [line[3] for line in lines]
    assert statuses[-1] == "completed" and lines[-1][4] == "100", lines
    assert "running" in statuses, lines
    percents = [int(line[4]) for line in lines if line[4] != "-"]
    assert percents == sorted(percents) and any(0 < p < 100 for p in percents), lines

    # promoted: the production group and the production tag, as moto has them
    ec2 = aws.client("ec2")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 1
    tags = {t["Key"]: t["Value"] for t in instances[0].get("Tags", [])}
    assert tags["SecurityStatus"] == "production", tags
    assert tags["SecurityReason"] == "passed: scan %s at medium" % lines[0][0], tags
    assert {g["GroupName"] for g in instances[0]["SecurityGroups"]} == {"cloudefigo-production"}
