"""Chef modules against the lab's goiardi (and moto for the audit).

goiardi is shared by every test of a run and never reset: each test uses its own node-name
prefix, restricts searches to it, and deletes its nodes afterwards.
"""
import socket
import time
import uuid

import pytest
import yaml

from ansible_collections.cloudefigo.core.plugins.module_utils import _chef

AMI = "ami-03cf127a"


@pytest.fixture
def chef(lab):
    with open(lab["LAB_CHEF_KEY"]) as handle:
        return _chef.ChefClient(lab["LAB_CHEF_URL"], lab["LAB_CHEF_USER"], handle.read())


@pytest.fixture
def prefix(chef):
    name = "it-%s" % uuid.uuid4().hex[:10]
    yield name
    for row in chef.search("node", "name:%s*" % name, fields={"name": ["name"]}):
        chef.delete("/nodes/%s" % row["name"])


def seed_node(chef, name, instance_id=None, ohai_time=None, fqdn=None, hostname=None):
    automatic = {}
    if instance_id:
        automatic["ec2"] = {"instance_id": instance_id, "local_hostname": fqdn}
    if ohai_time is not None:
        automatic["ohai_time"] = ohai_time
    if fqdn:
        automatic["fqdn"] = fqdn
    if hostname:
        automatic["hostname"] = hostname
    chef.post("/nodes", {"name": name, "chef_type": "node", "json_class": "Chef::Node", "chef_environment": "_default",
                         "run_list": ["role[base]"], "automatic": automatic, "normal": {}, "default": {}, "override": {}})


def write_play(tmp_path, tasks):
    play = [{"name": "Chef test", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "module_defaults": {
                 "group/cloudefigo.core.chef": {
                     "chef_server_url": "{{ lab_chef_url }}", "client_name": "{{ lab_chef_user }}",
                     "client_key": "{{ lab_chef_key }}", "allow_insecure_http": True},
                 "cloudefigo.core.unmanaged_instances": {
                     "endpoint_url": "{{ lab_aws_endpoint }}", "access_key": "testing", "secret_key": "testing",
                     "region": "us-east-1"}},
             "tasks": tasks}]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    return str(path)


def launch(ec2, count, **kwargs):
    """One reservation of ``count`` instances."""
    answer = ec2.run_instances(ImageId=AMI, MinCount=count, MaxCount=count, InstanceType="t3.micro", **kwargs)
    return answer["Instances"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unmanaged_instances_two_regions(lab, aws, chef, prefix, playbook, tmp_path):
    east, west = aws.client("ec2", "us-east-1"), aws.client("ec2", "eu-west-1")
    east_a = launch(east, 3)       # reservation of three
    east_b = launch(east, 2, TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Team", "Value": "red"}]}])
    west_a = launch(west, 2)
    gone = launch(east, 1)[0]
    east.terminate_instances(InstanceIds=[gone["InstanceId"]])
    now = time.time()

    seed_node(chef, prefix + "-fresh", east_a[0]["InstanceId"], now - 60)
    seed_node(chef, prefix + "-stale", east_a[1]["InstanceId"], now - 7200)
    seed_node(chef, prefix + "-second-res", east_b[1]["InstanceId"], now - 10)
    seed_node(chef, prefix + "-west-last", west_a[1]["InstanceId"], now - 10)
    # no ec2 attributes: matched by its hostname (first label of the private DNS name)
    seed_node(chef, prefix + "-by-host", None, now - 5, hostname=west_a[0]["PrivateDnsName"].split(".")[0])
    # an instance that no longer exists
    seed_node(chef, prefix + "-orphan", "i-0000000000deadbee", now - 30)
    # reports another instance: must not claim east_a[2] through its reused private name
    seed_node(chef, prefix + "-recycled", "i-0000000000feedbee", now - 30, fqdn=east_a[2]["PrivateDnsName"])

    audit = {"stale_after": 3600, "node_query": "name:%s-*" % prefix}
    path = write_play(tmp_path, [
        {"name": "Audit", "cloudefigo.core.unmanaged_instances": dict(audit, regions=["us-east-1", "eu-west-1"]),
         "register": "audit"},
        {"name": "Audit red team",
         "cloudefigo.core.unmanaged_instances": dict(audit, regions=["us-east-1"], tags={"Team": "red"}),
         "register": "red"},
        {"name": "Audit every enabled region", "cloudefigo.core.unmanaged_instances": audit, "register": "everywhere"},
    ])
    result = playbook(path)
    assert result.rc == 0, result.stdout[-5000:]
    for check in (False, True):
        if check:
            result = playbook(path, check=True)
            assert result.rc == 0, result.stdout[-5000:]
        out = result.task_results("Audit")[0]
        assert out["changed"] is False
        by_id = dict((item["instance_id"], item) for item in out["managed"])
        assert set(by_id) == {east_a[0]["InstanceId"], east_a[1]["InstanceId"], east_b[1]["InstanceId"],
                              west_a[1]["InstanceId"], west_a[0]["InstanceId"]}
        assert by_id[west_a[0]["InstanceId"]]["matched_by"] == "hostname"
        assert by_id[west_a[0]["InstanceId"]]["node_name"] == prefix + "-by-host"
        assert by_id[east_a[0]["InstanceId"]]["matched_by"] == "instance_id"
        assert sorted(item["instance_id"] for item in out["unmanaged"]) == sorted(
            [east_a[2]["InstanceId"], east_b[0]["InstanceId"]])
        assert [item["node_name"] for item in out["stale"]] == [prefix + "-stale"]
        assert out["stale"][0]["ohai_age"] >= 7200
        assert sorted(node["name"] for node in out["nodes_without_instance"]) == [prefix + "-orphan", prefix + "-recycled"]
        assert out["counts"] == {"us-east-1": {"instances": 5, "managed": 3, "unmanaged": 2, "stale": 1},
                                 "eu-west-1": {"instances": 2, "managed": 2, "unmanaged": 0, "stale": 0}}
        assert out["totals"] == {"instances": 7, "managed": 5, "unmanaged": 2, "stale": 1, "nodes": 7, "findings": 0}
        assert out["findings"] == []
        red = result.task_results("Audit red team")[0]
        assert red["totals"]["instances"] == 2 and [i["instance_id"] for i in red["unmanaged"]] == [east_b[0]["InstanceId"]]
        everywhere = result.task_results("Audit every enabled region")[0]
        assert everywhere["totals"]["instances"] == 7
        assert len(everywhere["counts"]) > 10 and everywhere["counts"]["eu-west-1"]["managed"] == 2


def test_failures_are_clear(lab, chef, prefix, playbook, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    seed_node(chef, prefix + "-one", "i-0123", time.time())
    wrong = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
    tasks = [
        {"name": "Protocol 1.0", "cloudefigo.core.chef_node_info": {"name": prefix + "-one", "auth_protocol": "1.0"},
         "register": "v10"},
        {"name": "Key from content", "cloudefigo.core.chef_node_info": {
            "query": "name:%s-*" % prefix, "client_key": "{{ omit }}",
            "client_key_content": "{{ lookup('ansible.builtin.file', lab_chef_key) }}"}},
        {"name": "Wrong key", "cloudefigo.core.chef_node_info": {"client_key": "{{ omit }}", "client_key_content": wrong},
         "ignore_errors": True, "no_log": False},
        {"name": "Unreachable", "cloudefigo.core.chef_node_info": {
            "chef_server_url": "http://127.0.0.1:%d" % free_port(), "timeout": 2}, "ignore_errors": True},
        {"name": "Bad query", "cloudefigo.core.chef_node_info": {"query": "name:((("}, "ignore_errors": True},
        {"name": "Bad query in the audit", "cloudefigo.core.unmanaged_instances": {
            "regions": ["us-east-1"], "node_query": "name:((("}, "ignore_errors": True},
        {"name": "Missing key file", "cloudefigo.core.chef_node_info": {"client_key": "/nonexistent/key.pem"},
         "ignore_errors": True},
    ]
    result = playbook(write_play(tmp_path, tasks))
    assert result.data is not None, result.stdout[-3000:]
    v10 = result.task_results("Protocol 1.0")[0]
    assert "nodes" in v10, v10.get("msg")
    assert v10["nodes"][0]["name"] == prefix + "-one" and v10["nodes"][0]["ec2_instance_id"] == "i-0123"
    assert [n["name"] for n in result.task_results("Key from content")[0]["nodes"]] == [prefix + "-one"]
    wrong_key = result.task_results("Wrong key")[0]
    assert wrong_key["failed"] and "answered 401" in wrong_key["msg"] and "client key" in wrong_key["msg"]
    assert wrong not in result.stdout
    unreachable = result.task_results("Unreachable")[0]
    assert unreachable["failed"] and "connection refused" in unreachable["msg"]
    assert "check chef_server_url" in unreachable["msg"]
    bad = result.task_results("Bad query")[0]
    assert bad["failed"] and "answered 400" in bad["msg"] and "parse error" in bad["msg"]
    bad_audit = result.task_results("Bad query in the audit")[0]
    assert bad_audit["failed"] and "node_query" in bad_audit["msg"] and "parse error" in bad_audit["msg"]
    missing = result.task_results("Missing key file")[0]
    assert missing["failed"] and "client_key /nonexistent/key.pem" in missing["msg"]


def test_search_pages_with_small_pages(chef, prefix):
    """Paged partial search on the real goiardi returns every row exactly once."""
    for index in range(23):
        seed_node(chef, "%s-%02d" % (prefix, index), "i-%017d" % index, time.time())
    chef.request_count = 0
    rows = chef.search("node", "name:%s-*" % prefix, fields={"name": ["name"], "id": ["ec2", "instance_id"]}, page_size=5)
    assert sorted(row["name"] for row in rows) == ["%s-%02d" % (prefix, index) for index in range(23)]
    assert chef.request_count == 5
    full = chef.search("node", "name:%s-0*" % prefix, page_size=4)
    assert sorted(node["name"] for node in full) == ["%s-%02d" % (prefix, index) for index in range(10)]
