"""Matching EC2 instances with Chef nodes."""
from ansible_collections.cloudefigo.core.plugins.modules import unmanaged_instances as audit

NOW = 1000000.0


def instance(instance_id, dns=None, region="us-east-1"):
    return {"instance_id": instance_id, "region": region, "private_dns_name": dns}


def node(name, instance_id=None, ohai_time=NOW - 10, fqdn=None, hostname=None):
    return {"name": name, "ec2_instance_id": instance_id, "ohai_time": ohai_time, "fqdn": fqdn, "hostname": hostname}


def test_every_instance_of_every_reservation():
    pages = [{"Reservations": [{"Instances": [{"InstanceId": "i-1"}, {"InstanceId": "i-2"}]},
                               {"Instances": [{"InstanceId": "i-3", "Tags": [{"Key": "Name", "Value": "x"}]}]}]},
             {"Reservations": [{"Instances": [{"InstanceId": "i-4", "State": {"Name": "running"}}]}]}]
    found = audit.instances_from_pages(pages, "eu-west-1")
    assert [item["instance_id"] for item in found] == ["i-1", "i-2", "i-3", "i-4"]
    assert found[2]["tags"] == {"Name": "x"} and found[3]["state"] == "running" and found[0]["region"] == "eu-west-1"


def test_match_by_instance_id_then_host_names():
    instances = [instance("i-1", "ip-10-0-0-1.ec2.internal"), instance("i-2", "ip-10-0-0-2.ec2.internal"),
                 instance("i-3", "ip-10-0-0-3.ec2.internal"), instance("i-4", "ip-10-0-0-4.ec2.internal"),
                 instance("i-5", None)]
    nodes = [node("a", "i-1"),
             node("b", fqdn="IP-10-0-0-2.ec2.internal"),
             node("c", hostname="ip-10-0-0-3"),
             # reports another (terminated) instance: its old private name must not claim i-4
             node("d", "i-gone", fqdn="ip-10-0-0-4.ec2.internal")]
    managed, unmanaged, stale, without = audit.match_instances(instances, nodes, 3600, NOW)
    assert [(m["instance_id"], m["node_name"], m["matched_by"]) for m in managed] == [
        ("i-1", "a", "instance_id"), ("i-2", "b", "fqdn"), ("i-3", "c", "hostname")]
    assert [u["instance_id"] for u in unmanaged] == ["i-4", "i-5"]
    assert stale == []
    assert without == [{"name": "d", "ec2_instance_id": "i-gone", "ohai_time": NOW - 10}]


def test_stale_and_never_converged_and_duplicates():
    instances = [instance("i-1"), instance("i-2"), instance("i-3")]
    nodes = [node("old", "i-1", NOW - 7200), node("never", "i-2", None),
             node("dup-old", "i-3", NOW - 9000), node("dup-new", "i-3", NOW - 5)]
    managed, unmanaged, stale, without = audit.match_instances(instances, nodes, 3600, NOW)
    assert [s["node_name"] for s in stale] == ["old", "never"]
    assert stale[0]["ohai_age"] == 7200 and stale[1]["ohai_age"] is None
    assert [m["node_name"] for m in managed if m["instance_id"] == "i-3"] == ["dup-new"]
    assert [w["name"] for w in without] == ["dup-old"]
    assert unmanaged == []


def test_filters_and_counts():
    assert audit.ec2_filters(["running"], {"Env": "prod"}, {"vpc-id": ["vpc-1", "vpc-2"], "image-id": "ami-1"}) == [
        {"Name": "instance-state-name", "Values": ["running"]},
        {"Name": "tag:Env", "Values": ["prod"]},
        {"Name": "image-id", "Values": ["ami-1"]},
        {"Name": "vpc-id", "Values": ["vpc-1", "vpc-2"]},
    ]
    instances = [instance("i-1"), instance("i-2", region="eu-west-1")]
    counts = audit.region_counts(["us-east-1", "eu-west-1", "ap-south-1"], instances, [instances[0]], [instances[1]], [])
    assert counts == {"us-east-1": {"instances": 1, "managed": 1, "unmanaged": 0, "stale": 0},
                      "eu-west-1": {"instances": 1, "managed": 0, "unmanaged": 1, "stale": 0},
                      "ap-south-1": {"instances": 0, "managed": 0, "unmanaged": 0, "stale": 0}}
