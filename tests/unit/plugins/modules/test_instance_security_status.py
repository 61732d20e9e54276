"""instance_security_status: options checked before any AWS call."""
import pytest

from ansible_collections.cloudefigo.core.plugins.modules import instance_security_status

GOOD = {"instance_id": "i-0123456789abcdef0", "status": "production"}


@pytest.mark.parametrize("args, option", [
    ({"instance_id": "web-1"}, "instance_id"),
    ({"status": ""}, "status"),
    ({"status": "x" * 257}, "status"),
    ({"reason": "r" * 257}, "reason"),
    ({"security_groups": []}, "security_groups"),
    ({"security_groups": ["production"]}, "security_groups"),
    ({"security_groups": ["sg-0123456789abcdef0", "sg-nothex"]}, "security_groups"),
    ({"tags": {"SecurityStatus": "production"}}, "tags"),
    ({"tags": {"SecurityReason": "forged"}}, "tags"),
    ({"tags": {"aws:cloudformation:stack-name": "x"}}, "tags"),
    ({"tags": {"k" * 129: "x"}}, "tags"),
    ({"tags": {"long": "v" * 257}}, "tags"),
    ({"volume_tags": {"SecurityStatus": "production"}}, "volume_tags"),
    ({"volume_tags": {"aws:x": "y"}}, "volume_tags"),
    ({"volume_tags": {"long": "v" * 257}}, "volume_tags"),
    ({"volume_tags": {"cloudefigo:instance-id": "i-0123456789abcdef0"}, "volumes": False}, "volume_tags"),
])
def test_bad_options_fail_naming_the_option(run_aws_main, args, option):
    result = run_aws_main(instance_security_status.main, **dict(GOOD, **args))
    assert result["failed"] and result["msg"].startswith(option), result["msg"]


def test_status_is_required(run_aws_main):
    result = run_aws_main(instance_security_status.main, instance_id="i-0123456789abcdef0")
    assert result["failed"] and "status" in result["msg"]


def test_good_options_reach_aws(run_aws_main):
    # nothing listens on the endpoint: the module got past its checks and failed on the first call
    result = run_aws_main(instance_security_status.main, security_groups=["sg-0123456789abcdef0"],
                          tags={"cloudefigo:launch-id": "L1"}, reason="passed", **GOOD)
    assert result["failed"] and "Could not describe instance_id i-0123456789abcdef0" in result["msg"], result["msg"]
