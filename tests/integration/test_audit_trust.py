"""The audit does not trust what a node says about itself (issue 11), against goiardi and moto.

A rogue Chef node (any client can create one) reports the instance id of a launched instance and
converges more recently than the instance's own node. 0.1.0 matched by the reported id and let
the newest node win: the rogue node "managed" the instance and the real node looked orphaned.
The node name the controller issued at launch (instance tag cloudefigo:chef-node) decides now,
and the rogue claim is a finding. A copy of the tag on another instance is one too.
"""
import time
import uuid

import pytest

from _lab import run_module


@pytest.fixture
def chef(lab):
    from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefClient
    with open(lab["LAB_CHEF_KEY"], "rb") as handle:
        client = ChefClient(lab["LAB_CHEF_URL"], lab["LAB_CHEF_USER"], handle.read())
    created = []

    def node(name, instance_id, ohai_time, owner=None):
        client.post("/nodes", {
            "name": name, "json_class": "Chef::Node", "chef_type": "node", "chef_environment": "_default",
            "run_list": [], "default": {}, "override": {},
            "normal": {"cloudefigo": owner} if owner else {},
            "automatic": {"ohai_time": ohai_time, "ec2": {"instance_id": instance_id}}})
        created.append(name)

    yield node
    for name in created:
        client.delete("/nodes/%s" % name, missing_ok=True)


def test_rogue_node_cannot_claim_a_launched_instance(lab, aws, chef):
    prefix = "trust-%s" % uuid.uuid4().hex[:8]
    ec2 = aws.client("ec2")
    issued = "%s-web" % prefix

    def launch(tags):
        return ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1, InstanceType="t3.micro",
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                     {"Key": k, "Value": v} for k, v in tags.items()]}])["Instances"][0]["InstanceId"]
    web = launch({"Name": issued, "cloudefigo:chef-node": issued})
    # someone with ec2:CreateTags copied the tag onto another instance
    copy = launch({"Name": "copycat", "cloudefigo:chef-node": issued})
    now = time.time()
    chef(issued, web, now - 600, owner={"instance_id": web, "launch_id": "l-1"})
    chef("%s-rogue" % prefix, web, now)

    result = run_module("unmanaged_instances", {
        "chef_server_url": lab["LAB_CHEF_URL"], "client_name": lab["LAB_CHEF_USER"], "client_key": lab["LAB_CHEF_KEY"],
        "allow_insecure_http": True, "node_query": "name:%s*" % prefix, "regions": ["us-east-1"],
        "endpoint_url": lab["LAB_AWS_ENDPOINT"], "access_key": "testing", "secret_key": "testing",
        "region": "us-east-1"})
    assert not result.get("failed"), result
    managed = {m["instance_id"]: (m["node_name"], m["matched_by"]) for m in result["managed"]}
    assert managed == {web: (issued, "chef_node_tag")}, result["managed"]
    assert [u["instance_id"] for u in result["unmanaged"]] == [copy]
    assert [n["name"] for n in result["nodes_without_instance"]] == ["%s-rogue" % prefix]
    kinds = sorted((f["kind"], f["node_name"]) for f in result["findings"])
    assert kinds == [("node_claimed_by_several_instances", issued), ("node_claims_issued_instance", "%s-rogue" % prefix)]
    several = [f for f in result["findings"] if f["kind"] == "node_claimed_by_several_instances"][0]
    assert sorted(i["instance_id"] for i in several["instances"]) == sorted([web, copy])
    assert result["totals"]["findings"] == 2
