"""Matching EC2 instances with Chef nodes."""
from ansible_collections.cloudefigo.core.plugins.modules import unmanaged_instances as audit

NOW = 1000000.0


def instance(instance_id, dns=None, region="us-east-1", chef_node=None):
    tags = {"cloudefigo:chef-node": chef_node} if chef_node else {}
    return {"instance_id": instance_id, "region": region, "private_dns_name": dns, "tags": tags}


def node(name, instance_id=None, ohai_time=NOW - 10, fqdn=None, hostname=None, owner=None):
    return {"name": name, "ec2_instance_id": instance_id, "ohai_time": ohai_time, "fqdn": fqdn, "hostname": hostname,
            "owner": {"instance_id": owner, "launch_id": "l-1"} if owner else None}


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
    managed, unmanaged, stale, without, findings = audit.match_instances(instances, nodes, 3600, NOW)
    assert [(m["instance_id"], m["node_name"], m["matched_by"]) for m in managed] == [
        ("i-1", "a", "instance_id"), ("i-2", "b", "fqdn"), ("i-3", "c", "hostname")]
    assert [u["instance_id"] for u in unmanaged] == ["i-4", "i-5"]
    assert stale == []
    assert without == [{"name": "d", "ec2_instance_id": "i-gone", "ohai_time": NOW - 10}]


def test_stale_and_never_converged_and_duplicates():
    instances = [instance("i-1"), instance("i-2"), instance("i-3")]
    nodes = [node("old", "i-1", NOW - 7200), node("never", "i-2", None),
             node("dup-old", "i-3", NOW - 9000), node("dup-new", "i-3", NOW - 5)]
    managed, unmanaged, stale, without, findings = audit.match_instances(instances, nodes, 3600, NOW)
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


def kinds(findings):
    return sorted((f["kind"], f["node_name"], f["instance_id"]) for f in findings)


def test_issued_node_name_wins_over_what_a_rogue_node_reports():
    instances = [instance("i-1", chef_node="web-1"), instance("i-2", chef_node="web-2")]
    nodes = [node("web-1", "i-1", NOW - 500, owner="i-1"), node("web-2", "i-2", owner="i-2"),
             # a rogue node claims i-1 and converged more recently than web-1
             node("rogue", "i-1", NOW - 1)]
    managed, unmanaged, stale, without, findings = audit.match_instances(instances, nodes, 3600, NOW)
    assert [(m["instance_id"], m["node_name"], m["matched_by"]) for m in managed] == [
        ("i-1", "web-1", "chef_node_tag"), ("i-2", "web-2", "chef_node_tag")]
    assert unmanaged == [] and [w["name"] for w in without] == ["rogue"]
    assert kinds(findings) == [("node_claims_issued_instance", "rogue", "i-1")]


def test_issued_node_missing_is_not_replaced_by_a_claiming_node():
    instances = [instance("i-1", chef_node="web-1")]
    managed, unmanaged, stale, without, findings = audit.match_instances(
        instances, [node("rogue", "i-1")], 3600, NOW)
    assert managed == [] and [u["instance_id"] for u in unmanaged] == ["i-1"]
    assert kinds(findings) == [("node_claims_issued_instance", "rogue", "i-1")]


def test_issued_node_that_reports_or_marks_another_instance_is_a_finding():
    instances = [instance("i-1", chef_node="web-1"), instance("i-2", chef_node="web-2")]
    nodes = [node("web-1", "i-9"), node("web-2", "i-2", owner="i-8")]
    managed, unmanaged, stale, without, findings = audit.match_instances(instances, nodes, 3600, NOW)
    assert [(m["instance_id"], m["node_name"]) for m in managed] == [("i-1", "web-1"), ("i-2", "web-2")]
    assert kinds(findings) == [("node_marks_other_instance", "web-2", "i-2"),
                               ("node_reports_other_instance", "web-1", "i-1")]


def test_two_instances_claiming_one_node():
    # someone copied web-1's tag onto a second instance
    instances = [instance("i-1", chef_node="web-1"), instance("i-copy", chef_node="web-1")]
    managed, unmanaged, stale, without, findings = audit.match_instances(
        instances, [node("web-1", "i-1", owner="i-1")], 3600, NOW)
    assert [(m["instance_id"], m["node_name"]) for m in managed] == [("i-1", "web-1")]
    assert [u["instance_id"] for u in unmanaged] == ["i-copy"]
    assert len(findings) == 1 and findings[0]["kind"] == "node_claimed_by_several_instances"
    assert [i["instance_id"] for i in findings[0]["instances"]] == ["i-1", "i-copy"]
    # no marks and no report to decide: neither instance is matched
    managed, unmanaged, stale, without, findings = audit.match_instances(
        instances, [node("web-1")], 3600, NOW)
    assert managed == [] and len(unmanaged) == 2 and "none of them" in findings[0]["detail"]


def test_untagged_instance_claimed_by_two_nodes_is_a_finding():
    managed, unmanaged, stale, without, findings = audit.match_instances(
        [instance("i-3")], [node("a", "i-3", NOW - 50), node("b", "i-3", NOW - 5)], 3600, NOW)
    assert [m["node_name"] for m in managed] == ["b"]
    assert kinds(findings) == [("instance_claimed_by_several_nodes", None, "i-3")]
