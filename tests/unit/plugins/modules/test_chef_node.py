"""chef_node main() against an in-memory Chef API (ChefClient.request stubbed)."""
import json

import pytest
from ansible.module_utils.testing import patch_module_args
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ansible_collections.cloudefigo.core.plugins.module_utils import _chef
from ansible_collections.cloudefigo.core.plugins.modules import chef_node

PEM = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()).decode()
NEW_CLIENT_PEM = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()


@pytest.fixture
def server(monkeypatch):
    state = {"nodes": {}, "clients": {}, "calls": []}

    def request(self, method, path, params=None, data=None, missing_ok=False):
        state["calls"].append((self.client_name, method, path))
        kind, dummy, name = path.strip("/").partition("/")
        store = state[kind]
        if method == "GET":
            if name not in store and missing_ok:
                return None
            return store[name]
        if method == "POST":
            store[data["name"]] = data
            return {"uri": "x", "chef_key": {"private_key": NEW_CLIENT_PEM}} if kind == "clients" else {}
        if method == "PUT":
            store[name] = data
            return data
        if method == "DELETE":
            return store.pop(name, None)
        raise AssertionError(method)
    monkeypatch.setattr(_chef.ChefClient, "request", request)
    return state


def run(capsys, **args):
    base = {"chef_server_url": "https://chef", "client_name": "admin", "client_key_content": PEM,
            "_ansible_diff": True}
    base.update(args)
    with patch_module_args(base):
        with pytest.raises(SystemExit):
            chef_node.main()
    return json.loads(capsys.readouterr().out)


def test_register_check_then_real_then_idempotent(server, capsys):
    result = run(capsys, name="web-1", run_list=["role[web]"], _ansible_check_mode=True)
    assert result["changed"] and "private_key" not in result and server["nodes"] == {}
    assert result["diff"]["before"]["node"] is None and result["diff"]["after"]["node"]["run_list"] == ["role[web]"]
    result = run(capsys, name="web-1", run_list=["role[web]"], _ansible_no_log=True)
    assert result["changed"] and result["client_created"] and result["private_key"] == NEW_CLIENT_PEM
    assert NEW_CLIENT_PEM not in json.dumps(result.get("diff"))
    # the new client created its own node
    assert ("web-1", "POST", "/nodes") in server["calls"]
    result = run(capsys, name="web-1", run_list=["role[web]"])
    assert not result["changed"] and "private_key" not in result


def test_update_and_deregister(server, capsys):
    run(capsys, name="db-1", run_list=["role[db]"], environment="prod", manage_client=False)
    assert server["nodes"]["db-1"]["chef_environment"] == "prod" and server["clients"] == {}
    result = run(capsys, name="db-1", run_list=["role[db]", "role[backup]"])
    assert result["changed"] and server["nodes"]["db-1"]["run_list"] == ["role[db]", "role[backup]"]
    assert server["nodes"]["db-1"]["chef_environment"] == "prod" and result["client_created"]
    result = run(capsys, name="db-1", state="absent")
    assert result["changed"] and server["nodes"] == {} and server["clients"] == {}
    assert not run(capsys, name="db-1", state="absent")["changed"]


def test_bad_name(server, capsys):
    result = run(capsys, name="web 1")
    assert result["failed"] and "node name" in result["msg"]


def test_key_is_returned_only_under_no_log(server, capsys, tmp_path):
    result = run(capsys, name="web-2")
    assert result["client_created"] and "web-2" in server["clients"]
    assert "private_key" not in result and NEW_CLIENT_PEM not in json.dumps(result)
    warnings = json.dumps(result["warnings"])
    assert "does not set no_log" in warnings and "private_key_path" in warnings
    path = tmp_path / "client.pem"
    result = run(capsys, name="web-3", private_key_path=str(path))
    assert "private_key" not in result and path.read_text() == NEW_CLIENT_PEM
    assert path.stat().st_mode & 0o777 == 0o600


MARKS = {"instance_id": "i-0aaa", "launch_id": "launch-1"}


def test_marks_written_at_creation_and_returned(server, capsys):
    result = run(capsys, name="web-4", run_list=["role[web]"], _ansible_no_log=True, **MARKS)
    assert result["changed"] and result["owner"] == MARKS
    assert server["nodes"]["web-4"]["normal"]["cloudefigo"] == MARKS
    # same owner again: nothing to do
    result = run(capsys, name="web-4", run_list=["role[web]"], **MARKS)
    assert not result["changed"] and result["owner"] == MARKS


@pytest.mark.parametrize("args, owner_word", [
    ({"instance_id": "i-0bbb"}, "i-0aaa"),
    ({"instance_id": "i-0aaa", "launch_id": "launch-2"}, "launch-1"),
    ({}, "i-0aaa"),
])
@pytest.mark.parametrize("state", ["present", "absent"])
def test_node_of_another_owner_is_refused(server, capsys, args, owner_word, state):
    run(capsys, name="web-5", run_list=["role[web]"], _ansible_no_log=True, **MARKS)
    before = json.dumps(server, sort_keys=True, default=str)
    calls = len(server["calls"])
    result = run(capsys, name="web-5", run_list=["role[evil]"], state=state, **args)
    assert result["failed"] and owner_word in result["msg"] and "web-5" in result["msg"]
    assert result["owner"] == MARKS
    # nothing was written: only reads after the refusal
    assert all(method == "GET" for dummy, method, dummy2 in server["calls"][calls:])
    server["calls"] = server["calls"][:calls]
    assert json.dumps(server, sort_keys=True, default=str) == before


def test_unmarked_node_needs_adoption(server, capsys):
    run(capsys, name="old-1", run_list=["role[web]"], manage_client=False)
    assert "cloudefigo" not in server["nodes"]["old-1"]["normal"]
    result = run(capsys, name="old-1", state="absent", instance_id="i-0aaa")
    assert result["failed"] and "adopt_instance_id" in result["msg"] and "old-1" in server["nodes"]
    result = run(capsys, name="old-1", instance_id="i-0aaa", adopt_instance_id="i-0bbb")
    assert result["failed"] and "must equal" in result["msg"]
    result = run(capsys, name="old-1", instance_id="i-0aaa", launch_id="launch-1", adopt_instance_id="i-0aaa",
                 manage_client=False)
    assert result["changed"] and server["nodes"]["old-1"]["normal"]["cloudefigo"] == MARKS
    assert server["nodes"]["old-1"]["run_list"] == ["role[web]"]


def test_client_only_deregistration_keeps_the_node(server, capsys):
    run(capsys, name="web-6", run_list=["role[web]"], _ansible_no_log=True, **MARKS)
    result = run(capsys, name="web-6", state="absent", manage_node=False, _ansible_check_mode=True, **MARKS)
    assert result["changed"] and "web-6" in server["clients"]
    result = run(capsys, name="web-6", state="absent", manage_node=False, **MARKS)
    assert result["changed"] and "web-6" not in server["clients"] and "web-6" in server["nodes"]
    assert result["owner"] == MARKS and result["node"]["name"] == "web-6"
    assert not run(capsys, name="web-6", state="absent", manage_node=False, **MARKS)["changed"]
    assert run(capsys, name="web-6", manage_node=False)["failed"]


def test_nothing_to_delete_needs_no_ownership(server, capsys):
    # a node without marks and without a client: deleting "its client" changes nothing, refuses nothing
    run(capsys, name="bare-1", manage_client=False)
    result = run(capsys, name="bare-1", state="absent", manage_node=False, instance_id="i-0aaa")
    assert not result.get("failed") and not result["changed"] and "bare-1" in server["nodes"]
    # with a client to delete, the unmarked node must be adopted first
    server["clients"]["bare-1"] = {"name": "bare-1"}
    result = run(capsys, name="bare-1", state="absent", manage_node=False, instance_id="i-0aaa")
    assert result["failed"] and "adopt_instance_id" in result["msg"] and "bare-1" in server["clients"]
