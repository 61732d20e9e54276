"""_security_status: the decisions of instance_security_status."""
from ansible_collections.cloudefigo.core.plugins.module_utils import _security_status as status

INSTANCE = {
    "InstanceId": "i-0123456789abcdef0", "State": {"Name": "running"}, "VpcId": "vpc-1",
    "NetworkInterfaces": [
        {"NetworkInterfaceId": "eni-b", "Attachment": {"DeviceIndex": 1}, "Groups": [{"GroupId": "sg-old"}]},
        {"NetworkInterfaceId": "eni-a", "Attachment": {"DeviceIndex": 0},
         "Groups": [{"GroupId": "sg-new"}, {"GroupId": "sg-more"}]},
    ],
    "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {"VolumeId": "vol-root"}},
                            {"DeviceName": "/dev/sdf", "Ebs": {"VolumeId": "vol-data"}},
                            {"DeviceName": "/dev/sdg"}],
}


def test_every_interface_primary_first_and_the_ones_to_change():
    groups = status.interface_groups(INSTANCE)
    assert list(groups) == ["eni-a", "eni-b"]
    assert groups["eni-a"] == ["sg-more", "sg-new"]
    # a secondary interface with old groups is changed too; order does not matter, the set does
    assert status.interfaces_to_change(groups, ["sg-new"]) == ["eni-a", "eni-b"]
    assert status.interfaces_to_change(groups, ["sg-new", "sg-more"]) == ["eni-b"]
    assert status.interfaces_to_change({"eni-a": ["sg-x"], "eni-b": ["sg-x"]}, ["sg-x", "sg-x"]) == []


def test_groups_must_exist_in_the_instance_vpc():
    assert status.group_problems(["sg-a"], {"sg-a": "vpc-1"}, "vpc-1") == []
    problems = status.group_problems(["sg-a", "sg-b", "sg-c"], {"sg-a": "vpc-1", "sg-b": "vpc-2"}, "vpc-1")
    assert problems == ["sg-b is in vpc-2, not in the instance's VPC vpc-1", "sg-c does not exist"]
    assert status.group_problems(["sg-a"], {"sg-a": "vpc-1"}, None)[0] == "the instance is not in a VPC"


def test_a_gone_instance_is_refused():
    assert status.instance_problem("i-1", None, "us-east-1") == "instance_id i-1 not found in us-east-1"
    for gone in ("terminated", "shutting-down"):
        assert status.instance_problem("i-1", {"State": {"Name": gone}}, "r").startswith("instance_id i-1 is " + gone)
    for alive in ("pending", "running", "stopping", "stopped"):
        assert status.instance_problem("i-1", {"State": {"Name": alive}}, "r") is None


def test_volumes_and_wanted_tags():
    assert status.volume_ids(INSTANCE) == ["vol-root", "vol-data"]
    instance, volume = status.wanted_tags("production", None, {"team": 7})
    assert instance == {"team": "7", "SecurityStatus": "production"} and volume == {"SecurityStatus": "production"}
    instance, volume = status.wanted_tags("remediation", "scan failed", {})
    assert instance == volume == {"SecurityStatus": "remediation", "SecurityReason": "scan failed"}
    # extra volume tags on the volumes only, the status on both
    instance, volume = status.wanted_tags("remediation", None, {"cloudefigo:data-volume": "vol-data"},
                                          {"cloudefigo:instance-id": "i-1"})
    assert instance == {"cloudefigo:data-volume": "vol-data", "SecurityStatus": "remediation"}
    assert volume == {"cloudefigo:instance-id": "i-1", "SecurityStatus": "remediation"}


def test_tag_writes_group_resources_and_skip_what_matches():
    wanted = {"i-1": {"SecurityStatus": "production", "team": "a"},
              "vol-1": {"SecurityStatus": "production"}, "vol-2": {"SecurityStatus": "production"}}
    current = {"i-1": {"SecurityStatus": "production", "team": "a", "Name": "web"},
               "vol-1": {"SecurityStatus": "remediation"}, "vol-2": {}}
    assert status.tag_writes(current, wanted) == [({"SecurityStatus": "production"}, ["vol-1", "vol-2"])]
    # the instance and its volumes wanting the same tags: one call
    same = {"i-1": {"SecurityStatus": "x"}, "vol-1": {"SecurityStatus": "x"}}
    assert status.tag_writes({}, same) == [({"SecurityStatus": "x"}, ["i-1", "vol-1"])]
    assert status.tag_writes(same, same) == []


def test_option_problems():
    good = {"instance_id": "i-0123456789abcdef0", "status": "production", "reason": None, "security_groups": None,
            "tags": {}}
    assert status.option_problem(good) is None
    assert status.option_problem(dict(good, instance_id="i-01234567")) is None
    assert status.option_problem(dict(good, security_groups=["sg-01234567"])) is None
    assert status.option_problem(dict(good, tags={"SecurityStatus": "x"})).startswith("tags")
    assert status.option_problem(dict(good, volume_tags={"SecurityReason": "x"})).startswith("volume_tags")
    assert status.option_problem(dict(good, volume_tags={"k": "v"}, volumes=False)).startswith("volume_tags")
    assert status.option_problem(dict(good, volume_tags={"k": "v"}, volumes=True)) is None
