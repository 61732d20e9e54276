"""Pull mode's refusals before anything is created (no VM needed): a spec's own user data, and
Chef without the validator settings."""
import os

import pytest

from _lab import AWS, ROOT, moto_reset, run_playbook, secure_launch_lab_vars

SECURE_LAUNCH = os.path.join(ROOT, "playbooks", "secure_launch.yml")


@pytest.mark.parametrize("spec, settings, expected", [
    ({"user_data": "#!/bin/sh\necho mine\n"},
     {"chef_client_validator_name": "v", "chef_client_validator_key_bucket": "b", "chef_client_validator_key_object": "v.pem"},
     "a spec's own user_data is refused"),
    ({}, {}, "registers with the validator"),
])
def test_pull_mode_refuses_before_creating_anything(lab, tmp_path, spec, settings, expected):
    moto_reset(lab)
    aws = AWS(lab)
    variables = dict(secure_launch_lab_vars(lab), secure_launch_mode="pull", secure_launch_key_bucket="pull-refusals",
                     secure_launch_image_id="ami-1e749f67", secure_launch_report_dir=str(tmp_path),
                     secure_launch_instances=[dict({"name": "pull-refused"}, **spec)], **settings)
    result = run_playbook(lab, SECURE_LAUNCH, extra_vars=variables, json_output=False)
    assert result.rc != 0
    assert expected in " ".join((result.stdout + result.stderr).split()), result.stdout[-3000:]
    ec2, iam = aws.client("ec2"), aws.client("iam")
    assert [i for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]] == []
    assert [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("cloudefigo-")] == []
    moto_reset(lab)
