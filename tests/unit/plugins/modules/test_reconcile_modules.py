"""Unit tests for cloudefigo.core.launch_record and instance_leftovers: bad input fails naming the option (no AWS)."""

import pytest

from ansible_collections.cloudefigo.core.plugins.modules import instance_leftovers, launch_record

IID = "i-0123456789abcdef0"
CHEF = {"chef_server_url": "https://chef.example.com", "client_name": "auditor", "client_key_content": "not a key"}


@pytest.mark.parametrize("extra, text", [
    ({"bucket": "Bad_Bucket"}, "bucket: "),
    ({"instance_id": "web-01"}, "instance_id: must be an EC2 instance id"),
    ({"launch_id": None}, "launch_id is required with state=present"),
    ({"launch_id": "has spaces"}, "launch_id: must be 1-128 characters"),
])
def test_launch_record_fails_naming_option(run_aws_main, extra, text):
    args = {"bucket": "keys", "instance_id": IID, "launch_id": "l1"}
    args.update(extra)
    result = run_aws_main(launch_record.main, **args)
    assert result["failed"] and text in result["msg"], result


@pytest.mark.parametrize("value", ["1w", "-5", "soon", "1.5h"])
def test_instance_leftovers_refuses_a_bad_duration(run_aws_main, value):
    result = run_aws_main(instance_leftovers.main, bucket="keys", reconcile_after=value, **CHEF)
    assert result["failed"] and result["msg"].startswith("reconcile_after: "), result
    assert "1d, 12h" in result["msg"], result


def test_instance_leftovers_refuses_a_bad_bucket(run_aws_main):
    result = run_aws_main(instance_leftovers.main, bucket="Bad_Bucket", **CHEF)
    assert result["failed"] and result["msg"].startswith("bucket: "), result
