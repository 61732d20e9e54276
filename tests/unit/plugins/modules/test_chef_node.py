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
    result = run(capsys, name="web-1", run_list=["role[web]"])
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
