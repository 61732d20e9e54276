"""The lab's chef-client stand-in (lab/vm/chef_standin.py) against the lab's goiardi, on the controller.

What the VM runs (tests/integration/test_vm_roles.py), without the VM: registration with the
validator key, a run with the client key, the node it saves (read back through the Chef API as
admin), re-converging, and what a rogue node's client cannot do.  The lab proxy's IMDS stands in
for the instance's (moto's fixed metadata, or the instance bound to the VM)."""
import json
import os
import stat
import subprocess
import sys
import time
import uuid

import pytest

from _lab import ROOT, chef_client

STANDIN = os.path.join(ROOT, "lab", "vm", "chef_standin.py")


class Node:
    """One node's directory: client.rb, first-boot.json, and the client key once registered."""

    def __init__(self, lab, base, name, validator=True, imds=True):
        self.lab, self.name = lab, name
        self.dir = base / name
        self.dir.mkdir()
        lines = ["chef_server_url        '%s'" % lab["LAB_CHEF_URL"], "node_name              '%s'" % name,
                 "client_key             '%s/client.pem'" % self.dir, "ssl_verify_mode        :verify_peer",
                 "log_location           STDOUT",
                 "lab_imds_url           '%s'" % (lab["LAB_AWS_PROXY_ENDPOINT"] if imds else "")]
        if validator:
            lines += ["validation_client_name '%s'" % lab["LAB_CHEF_VALIDATOR_NAME"],
                      "validation_key         '%s'" % lab["LAB_CHEF_VALIDATOR_KEY"]]
        (self.dir / "client.rb").write_text("\n".join(lines) + "\n")

    def run(self, run_list=None, attributes=None, *extra):
        args = [sys.executable, STANDIN, "--once", "-c", str(self.dir / "client.rb")]
        if run_list is not None:
            (self.dir / "first-boot.json").write_text(json.dumps(dict(attributes or {}, run_list=run_list)))
            args += ["-j", str(self.dir / "first-boot.json")]
        return subprocess.run(args + list(extra), capture_output=True, text=True, timeout=120, check=False)

    @property
    def pem(self):
        return (self.dir / "client.pem").read_bytes()


@pytest.fixture
def nodes(lab, tmp_path):
    made = []

    def make(validator=True, imds=True):
        node = Node(lab, tmp_path, "standin-%s" % uuid.uuid4().hex[:8], validator, imds)
        made.append(node.name)
        return node

    yield make
    chef = chef_client(lab)
    for name in made:
        chef.delete("/nodes/%s" % name, missing_ok=True)
        chef.delete("/clients/%s" % name, missing_ok=True)


def test_registers_with_the_validator_and_converges(lab, nodes):
    node = nodes()
    before = time.time()
    proc = node.run(["recipe[base]", "recipe[web::default]"], {"app": {"tier": "web"}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert stat.S_IMODE(os.stat(node.dir / "client.pem").st_mode) == 0o600
    chef = chef_client(lab)
    client = chef.get("/clients/%s" % node.name)
    assert client["name"] == node.name and not client.get("admin") and not client.get("validator")
    saved = chef.get("/nodes/%s" % node.name)
    auto = saved["automatic"]
    assert before <= auto["ohai_time"] <= time.time()
    assert saved["run_list"] == ["recipe[base]", "recipe[web::default]"]
    assert auto["recipes"] == ["base", "web::default"] and auto["roles"] == []
    assert saved["normal"] == {"app": {"tier": "web"}}
    assert auto["platform"] == "debian" and auto["platform_family"] == "debian"
    assert auto["platform_version"] == open("/etc/debian_version").read().strip()
    assert auto["kernel"]["name"] == "Linux" and auto["kernel"]["release"] == os.uname().release
    assert auto["hostname"] and auto["fqdn"] and auto["ipaddress"] == "127.0.0.1"
    # ec2 from IMDSv2 through the lab proxy (moto's metadata); never credentials nor user data
    assert auto["ec2"]["instance_id"].startswith("i-") and auto["ec2"]["placement_region"] == "us-east-1"
    assert not any("credential" in key or "userdata" in key or "user_data" in key for key in auto["ec2"])
    assert "test-secret-key" not in json.dumps(saved)
    # the validator key was not written anywhere near the node, and the run said what it did
    assert sorted(p.name for p in node.dir.iterdir()) == ["client.pem", "client.rb", "first-boot.json"]
    assert "registering with the validator" in proc.stdout and "Chef Infra Client finished" in proc.stdout


def test_scheduled_run_reconverges_with_the_client_key(lab, nodes):
    """The timer's command (no -j): the client key only, run list kept, ohai_time advances."""
    node = nodes()
    assert node.run(["recipe[base]"]).returncode == 0
    chef = chef_client(lab)
    first = chef.get("/nodes/%s" % node.name)
    # from now on no validator at all, as after the first run
    node.dir.joinpath("client.rb").write_text("\n".join(
        line for line in node.dir.joinpath("client.rb").read_text().splitlines() if "validation" not in line) + "\n")
    time.sleep(1.1)  # ohai_time has sub-second resolution; one second makes "advanced" unambiguous
    proc = node.run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    second = chef.get("/nodes/%s" % node.name)
    assert second["automatic"]["ohai_time"] > first["automatic"]["ohai_time"]
    assert second["run_list"] == ["recipe[base]"]


def test_validatorless_with_a_key_from_chef_node(lab, nodes):
    """The secure launch's way: chef_node makes the client and its node (marks), the stand-in keeps them."""
    node = nodes(validator=False)
    chef = chef_client(lab)
    answer = chef.post("/clients", {"name": node.name, "admin": False, "create_key": True})
    pem = (answer.get("chef_key") or {}).get("private_key") or answer["private_key"]
    (node.dir / "client.pem").write_text(pem)
    os.chmod(node.dir / "client.pem", 0o600)
    marks = {"cloudefigo": {"instance_id": "i-0123456789abcdef0", "launch_id": "L1"}}
    chef.post("/nodes", {"name": node.name, "json_class": "Chef::Node", "chef_type": "node",
                         "chef_environment": "_default", "run_list": ["recipe[base]"], "normal": marks})
    proc = node.run(["recipe[base]"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    saved = chef.get("/nodes/%s" % node.name)
    assert saved["normal"] == marks and saved["automatic"]["ohai_time"]
    assert (node.dir / "client.pem").read_text() == pem


def test_missing_role_fails_and_roles_expand(lab, nodes):
    node = nodes()
    proc = node.run(["role[no-such-role-%s]" % uuid.uuid4().hex[:6]])
    assert proc.returncode == 1 and "not on the Chef server" in proc.stderr
    chef = chef_client(lab)
    role = "standin-role-%s" % uuid.uuid4().hex[:6]
    chef.post("/roles", {"name": role, "json_class": "Chef::Role", "chef_type": "role", "run_list": ["recipe[ntp]"],
                         "default_attributes": {"ntp": {"servers": ["a"]}}, "override_attributes": {},
                         "env_run_lists": {}, "description": ""})
    try:
        proc = node.run(["role[%s]" % role, "recipe[base]"])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        saved = chef.get("/nodes/%s" % node.name)
        assert saved["automatic"]["roles"] == [role] and saved["automatic"]["recipes"] == ["ntp", "base"]
        assert saved["default"] == {"ntp": {"servers": ["a"]}}
    finally:
        chef.delete("/roles/%s" % role, missing_ok=True)


def test_rogue_node_cannot_write_another_node(lab, nodes):
    """Client A (a node's key, stolen or rogue) can neither rewrite nor delete node B, nor take over B's client."""
    from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefClient, ChefError
    a, b = nodes(), nodes()
    assert a.run(["recipe[base]"]).returncode == 0 and b.run(["recipe[base]"]).returncode == 0
    chef = chef_client(lab)
    victim = chef.get("/nodes/%s" % b.name)
    rogue = ChefClient(lab["LAB_CHEF_URL"], a.name, a.pem)
    forged = dict(victim, run_list=["recipe[evil]"], automatic=dict(victim["automatic"], ohai_time=time.time() + 3600))
    for call in (lambda: rogue.put("/nodes/%s" % b.name, forged),
                 lambda: rogue.delete("/nodes/%s" % b.name, missing_ok=False),
                 lambda: rogue.put("/clients/%s" % b.name, {"name": b.name, "private_key": True}),
                 lambda: rogue.post("/clients", {"name": "rogue-%s" % uuid.uuid4().hex[:6], "admin": True})):
        with pytest.raises(ChefError) as failure:
            call()
        assert failure.value.status == 403
    assert chef.get("/nodes/%s" % b.name) == victim
    # the stand-in itself, pointed at B's name with A's key: refused, B unchanged
    config = a.dir / "client.rb"
    config.write_text(config.read_text().replace("'%s'" % a.name, "'%s'" % b.name))
    proc = a.run(["recipe[evil]"])
    assert proc.returncode == 1 and ("401" in proc.stderr or "403" in proc.stderr), proc.stderr
    assert chef.get("/nodes/%s" % b.name) == victim


def test_validator_cannot_take_over_a_registered_client(lab, nodes):
    """A second registration of a name already registered fails, writes no key, and leaves B's key valid."""
    b = nodes()
    assert b.run(["recipe[base]"]).returncode == 0
    impostor_dir = b.dir.parent / "impostor"
    impostor_dir.mkdir()
    (impostor_dir / "client.rb").write_text(b.dir.joinpath("client.rb").read_text().replace(str(b.dir), str(impostor_dir)))
    proc = subprocess.run([sys.executable, STANDIN, "-c", str(impostor_dir / "client.rb")], capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 1 and "already registered" in proc.stderr, proc.stdout + proc.stderr
    assert not (impostor_dir / "client.pem").exists()
    # nor with the API directly: the validator can neither regenerate B's key nor touch B's node
    from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefClient, ChefError
    with open(lab["LAB_CHEF_VALIDATOR_KEY"], "rb") as handle:
        validator = ChefClient(lab["LAB_CHEF_URL"], lab["LAB_CHEF_VALIDATOR_NAME"], handle.read())
    victim = chef_client(lab).get("/nodes/%s" % b.name)
    for call in (lambda: validator.put("/clients/%s" % b.name, {"name": b.name, "private_key": True}),
                 lambda: validator.put("/nodes/%s" % b.name, dict(victim, run_list=["recipe[evil]"])),
                 lambda: validator.delete("/clients/%s" % b.name, missing_ok=False)):
        with pytest.raises(ChefError) as failure:
            call()
        assert failure.value.status == 403
    assert chef_client(lab).get("/nodes/%s" % b.name) == victim
    # B's own key still works
    assert b.run().returncode == 0
