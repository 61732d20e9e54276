"""instance_security_status: one call sets groups on every interface and the status tags (issue 12 section 6).

Against the lab's moto, through the lab's recording proxy (to see which API calls a run made), on
one instance with two network interfaces and two volumes (module-scoped: the tests run in order and
each starts from the state the one before left).

Which view of the groups is trusted: moto keeps an instance's groups apart from its interfaces'
(LAB-FACTS), so both are read: DescribeNetworkInterfaces per interface, and the instance's own
SecurityGroups.
"""
import json
import urllib.request

import pytest

from _lab import AWS, moto_reset, run_aws_module, run_module

WRITES = {"CreateTags", "DeleteTags", "ModifyNetworkInterfaceAttribute", "ModifyInstanceAttribute"}


def proxy_requests(lab, reset=False):
    url = lab["LAB_AWS_PROXY_ENDPOINT"] + "/_lab/proxy/" + ("reset" if reset else "requests")
    req = urllib.request.Request(url, data=b"" if reset else None, method="POST" if reset else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return [] if reset else [r["action"] for r in json.loads(body)["requests"]]


def status(lab, **args):
    """Run the module through the recording proxy: (result, the API actions it called)."""
    proxy_requests(lab, reset=True)
    result = run_module("instance_security_status", dict({
        "endpoint_url": lab["LAB_AWS_PROXY_ENDPOINT"], "access_key": "testing", "secret_key": "testing",
        "region": "us-east-1"}, **args))
    return result, proxy_requests(lab)


@pytest.fixture(scope="module")
def box(lab):
    """An instance in group `old` with a second interface (also `old`), a data volume, groups
    `new` and `other` in its VPC and `foreign` in another VPC."""
    moto_reset(lab)
    ec2 = AWS(lab).client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]
    groups = dict((name, ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"])
                  for name in ("old", "new", "other"))
    other_vpc = ec2.create_vpc(CidrBlock="10.98.0.0/16")["Vpc"]["VpcId"]
    groups["foreign"] = ec2.create_security_group(GroupName="foreign", Description="x", VpcId=other_vpc)["GroupId"]
    instance_id = ec2.run_instances(
        ImageId="ami-1e749f67", MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet["SubnetId"],
        SecurityGroupIds=[groups["old"]], TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Name", "Value": "box"}, {"Key": "SecurityStatus", "Value": "remediation"}]}])["Instances"][0]["InstanceId"]
    second = ec2.create_network_interface(SubnetId=subnet["SubnetId"], Groups=[groups["old"]])["NetworkInterface"]
    ec2.attach_network_interface(NetworkInterfaceId=second["NetworkInterfaceId"], InstanceId=instance_id, DeviceIndex=1)
    data = ec2.create_volume(AvailabilityZone=subnet["AvailabilityZone"], Size=1)["VolumeId"]
    ec2.attach_volume(VolumeId=data, InstanceId=instance_id, Device="/dev/sdf")
    # someone who can write tags labels the data volume as in production
    ec2.create_tags(Resources=[data], Tags=[{"Key": "SecurityStatus", "Value": "production"}])
    yield {"ec2": ec2, "id": instance_id, "groups": groups, "data": data, "vpc": vpc}
    moto_reset(lab)


def describe(ec2, instance_id):
    return ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]


def state(box):
    """(the instance's groups, {interface: groups}, {resource: tags}) as moto has them."""
    ec2 = box["ec2"]
    instance = describe(ec2, box["id"])
    enis = ec2.describe_network_interfaces(Filters=[{"Name": "attachment.instance-id", "Values": [box["id"]]}])
    interfaces = dict((eni["NetworkInterfaceId"], sorted(g["GroupId"] for g in eni["Groups"]))
                      for eni in enis["NetworkInterfaces"])
    volumes = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
    tags = {box["id"]: dict((t["Key"], t["Value"]) for t in instance.get("Tags", []))}
    for volume in ec2.describe_volumes(VolumeIds=volumes)["Volumes"]:
        tags[volume["VolumeId"]] = dict((t["Key"], t["Value"]) for t in volume.get("Tags", []))
    return sorted(g["GroupId"] for g in instance["SecurityGroups"]), interfaces, tags


PROMOTE = {"status": "production", "reason": "passed: scan 7 at high", "tags": {"cloudefigo:launch-id": "L1"}}


def test_check_mode_changes_nothing(lab, box):
    before = state(box)
    assert len(before[1]) == 2 and len(before[2]) == 3, before
    result, calls = status(lab, instance_id=box["id"], security_groups=[box["groups"]["new"]], _ansible_check_mode=True,
                           _ansible_diff=True, **PROMOTE)
    assert result["changed"] and not result.get("failed"), result
    assert not WRITES & set(calls), calls
    assert state(box) == before
    diff = result["diff"]
    assert list(diff["before"]["interfaces"].values()) == [[box["groups"]["old"]]] * 2, diff
    assert list(diff["after"]["interfaces"].values()) == [[box["groups"]["new"]]] * 2, diff
    assert diff["before"]["tags"][box["data"]]["SecurityStatus"] == "production"
    assert diff["after"]["tags"][box["id"]]["SecurityStatus"] == "production"


def test_every_interface_and_every_volume_in_one_call(lab, box):
    new = box["groups"]["new"]
    result, calls = status(lab, instance_id=box["id"], security_groups=[new], **PROMOTE)
    assert result["changed"] and not result.get("failed"), result
    groups, interfaces, tags = state(box)
    # both interfaces, not only the primary one
    assert groups == [new] and list(interfaces.values()) == [[new], [new]], (groups, interfaces)
    assert result["interfaces"] == interfaces and result["security_groups"] == [new]
    assert sorted(result["volume_ids"]) == sorted(r for r in tags if r != box["id"]) and box["data"] in result["volume_ids"]
    for resource, have in tags.items():
        assert have["SecurityStatus"] == "production" and have["SecurityReason"] == PROMOTE["reason"], (resource, have)
    # the extra tags on the instance only; other tags kept
    assert tags[box["id"]]["cloudefigo:launch-id"] == "L1" and tags[box["id"]]["Name"] == "box"
    assert all("cloudefigo:launch-id" not in have for resource, have in tags.items() if resource != box["id"])
    assert result["tags"] == tags[box["id"]]
    assert calls.count("DescribeInstances") == 1
    assert calls.count("ModifyNetworkInterfaceAttribute") == 2
    # one CreateTags for the instance's extra tags, one for the status of the volumes
    assert calls.count("CreateTags") == 2, calls


def test_second_run_writes_nothing(lab, box):
    before = state(box)
    result, calls = status(lab, instance_id=box["id"], security_groups=[box["groups"]["new"]], **PROMOTE)
    assert not result["changed"] and not result.get("failed"), result
    assert not WRITES & set(calls), calls
    assert state(box) == before


def test_status_alone_is_one_tag_call(lab, box):
    result, calls = status(lab, instance_id=box["id"], status="remediation", reason="rescan")
    assert result["changed"], result
    assert [c for c in calls if c in WRITES] == ["CreateTags"], calls
    groups, interfaces, tags = state(box)
    assert groups == [box["groups"]["new"]]
    assert all(have["SecurityStatus"] == "remediation" and have["SecurityReason"] == "rescan" for have in tags.values())


def test_volume_tags_mark_the_volumes_and_tags_tell_the_instance(lab, box):
    """The secure launch's mark after RunInstances: its volumes named as the instance's, the instance
    told its data volume, in one call; a second run writes nothing."""
    mark = dict(instance_id=box["id"], status="remediation", tags={"cloudefigo:data-volume": box["data"]},
                volume_tags={"cloudefigo:instance-id": box["id"]})
    result, calls = status(lab, **mark)
    assert result["changed"] and not result.get("failed"), result
    groups, interfaces, tags = state(box)
    assert tags[box["id"]]["cloudefigo:data-volume"] == box["data"]
    assert "cloudefigo:instance-id" not in tags[box["id"]]
    volumes = [resource for resource in tags if resource != box["id"]]
    assert volumes and box["data"] in volumes
    for volume in volumes:
        assert tags[volume]["cloudefigo:instance-id"] == box["id"] and tags[volume]["SecurityStatus"] == "remediation"
        assert "cloudefigo:data-volume" not in tags[volume]
    # the groups untouched (no security_groups given)
    assert groups == [box["groups"]["new"]]
    # one CreateTags for the instance, one for the volumes
    assert [c for c in calls if c in WRITES] == ["CreateTags", "CreateTags"], calls
    again, calls = status(lab, **mark)
    assert not again["changed"] and not WRITES & set(calls), (again, calls)


@pytest.mark.parametrize("group", ["foreign", "missing"])
def test_a_group_elsewhere_is_refused_before_any_change(lab, box, group):
    before = state(box)
    wanted = [box["groups"]["other"], box["groups"][group] if group != "missing" else "sg-0123456789abcdef0"]
    result, calls = status(lab, instance_id=box["id"], security_groups=wanted, status="contained", reason="x")
    assert result.get("failed") and "security_groups" in result["msg"] and wanted[1] in result["msg"], result
    assert not WRITES & set(calls), calls
    assert state(box) == before


def test_a_terminated_instance_is_refused(lab, box):
    ec2 = box["ec2"]
    gone = ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    ec2.terminate_instances(InstanceIds=[gone])
    result, calls = status(lab, instance_id=gone, status="production", security_groups=[box["groups"]["new"]])
    assert result.get("failed") and "instance_id" in result["msg"] and gone in result["msg"], result
    assert not WRITES & set(calls), calls
    missing, calls = status(lab, instance_id="i-0123456789abcdef0", status="production")
    assert missing.get("failed") and "instance_id i-0123456789abcdef0 not found" in missing["msg"], missing


def test_isolation_group_made_once_by_runs_at_once(lab, box):
    """Four runs at the same moment, each isolating its own instance in a group that does not exist
    yet: every run ends (none waits on a rule another run revoked), there is one group, with no rule
    in or out, and every instance is in it (the old secure launch hung here: amazon.aws's
    ec2_security_group waits without a timeout for the default egress rule of a group it created)."""
    from concurrent.futures import ThreadPoolExecutor
    ec2 = box["ec2"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [box["vpc"]]}])["Subnets"][0]["SubnetId"]
    ids = [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-1e749f67", MinCount=4, MaxCount=4, InstanceType="t3.micro",
                                                      SubnetId=subnet, SecurityGroupIds=[box["groups"]["old"]])["Instances"]]

    def isolate(instance_id):
        return run_aws_module(lab, "instance_security_status", instance_id=instance_id, status="remediation",
                              reason="contained", isolation_group="it-isolation-race")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(isolate, ids))
    assert all(not r.get("failed") and r["changed"] is True for r in results), results
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["it-isolation-race"]}])["SecurityGroups"]
    assert len(groups) == 1, groups
    group = groups[0]
    assert group["IpPermissions"] == [] and group["IpPermissionsEgress"] == [], group
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["cloudefigo:purpose"] == "isolation"
    for instance_id in ids:
        assert [g["GroupId"] for g in describe(ec2, instance_id)["SecurityGroups"]] == [group["GroupId"]]
    # a rule added later is revoked by the next isolation; the second run of the same changes nothing
    ec2.authorize_security_group_egress(GroupId=group["GroupId"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    isolate(ids[0])
    assert ec2.describe_security_groups(GroupIds=[group["GroupId"]])["SecurityGroups"][0]["IpPermissionsEgress"] == []
    again = isolate(ids[0])
    assert again["changed"] is False and not again.get("failed"), again
    ec2.terminate_instances(InstanceIds=ids)


def test_isolation_group_of_someone_else_is_refused(lab, box):
    """A group of the isolation group's name that the collection did not make keeps its rules and
    the instance keeps its groups and tags."""
    before = state(box)
    result, actions = status(lab, instance_id=box["id"], status="remediation", isolation_group="other")
    assert result.get("failed") is True and "isolation_group" in result["msg"], result
    assert "was not created by cloudefigo.core" in result["msg"] and box["groups"]["other"] in result["msg"]
    assert not WRITES & set(actions) and "RevokeSecurityGroupEgress" not in actions, actions
    assert state(box) == before
    both, _actions = status(lab, instance_id=box["id"], status="remediation", isolation_group="x",
                            security_groups=[box["groups"]["new"]])
    assert both.get("failed") is True and "mutually exclusive" in both["msg"], both
