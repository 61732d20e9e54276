"""roles/chef_client's chef-client.service and chef-client.timer, rendered by Ansible from the role's
settings, checked by `systemd-analyze verify` (systemd 252, Debian 12) in a throwaway root.

The lab VM runs busybox init: there the tests run the service's ExecStart instead
(tests/integration/test_vm_roles.py::test_chef_client_schedule_command_reconverges)."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(ROOT, "roles", "chef_client")
UNITS = ("chef-client.service", "chef-client.timer")
SYSTEM_UNITS = "/usr/lib/systemd/system"


def render(tmp_path, variables):
    """The two unit files as the role writes them (defaults and vars of the role, plus ``variables``)."""
    out = tmp_path / "rendered"
    out.mkdir()
    play = tmp_path / "render.yml"
    play.write_text(json.dumps([{
        "name": "Render the units", "hosts": "localhost", "gather_facts": False,
        "vars_files": [os.path.join(ROLE, "defaults", "main.yml"), os.path.join(ROLE, "vars", "main.yml")],
        "tasks": [{"name": "Render", "loop": list(UNITS), "ansible.builtin.template": {
            "src": os.path.join(ROLE, "templates", "{{ item }}.j2"), "dest": str(out / "{{ item }}"), "mode": "0644"}}],
    }]))
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(dict({"chef_client_server_url": "https://chef.example/organizations/acme"},
                                     ansible_python_interpreter=sys.executable, **variables)))
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play), "-e", "@%s" % extra], cwd=ROOT, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {name: (out / name).read_text() for name in UNITS}


def verify(tmp_path, units, binary="/usr/bin/chef-client"):
    """rc and output of systemd-analyze verify on the units installed in a root of their own.

    The root holds the host's system units (timers.target, network-online.target ...) and an
    executable at ``binary`` (verify checks that ExecStart exists).  Warnings (an unknown key, a
    value that does not parse) leave rc 0: the caller asserts the output is empty too."""
    if shutil.which("systemd-analyze") is None or not os.path.isdir(SYSTEM_UNITS):
        pytest.fail("systemd-analyze and %s are needed (tools/bootstrap.sh installs systemd)" % SYSTEM_UNITS)
    root = tmp_path / "root"
    shutil.copytree(SYSTEM_UNITS, root / SYSTEM_UNITS.lstrip("/"), symlinks=True)
    (root / "etc" / "systemd" / "system").mkdir(parents=True)
    exe = root / binary.lstrip("/")
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    for name, text in units.items():
        (root / "etc" / "systemd" / "system" / name).write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", "--root=%s" % root]
                          + ["/etc/systemd/system/%s" % name for name in units],
                          capture_output=True, text=True, check=False, timeout=60)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def settings(unit):
    return dict(re.findall(r"^([A-Za-z]+)=(.*)$", unit, re.M))


def test_default_units_verify_clean(tmp_path):
    units = render(tmp_path, {})
    assert verify(tmp_path, units) == (0, "")
    service, timer = settings(units["chef-client.service"]), settings(units["chef-client.timer"])
    assert service["Type"] == "oneshot"
    assert service["ExecStart"] == "/usr/bin/chef-client --once --no-fork -c /etc/chef/client.rb"
    assert service["ConditionPathExists"] == "/etc/chef/client.rb"
    assert timer["OnUnitInactiveSec"] == "1800s" and timer["RandomizedDelaySec"] == "300s"
    assert timer["Unit"] == "chef-client.service" and timer["WantedBy"] == "timers.target"


def test_settings_reach_the_units(tmp_path):
    units = render(tmp_path, {"chef_client_interval": 600, "chef_client_splay": 0,
                              "chef_client_config_dir": "/etc/chef-lab", "chef_client_binary": "/opt/chef/bin/chef-client"})
    assert verify(tmp_path, units, binary="/opt/chef/bin/chef-client") == (0, "")
    service, timer = settings(units["chef-client.service"]), settings(units["chef-client.timer"])
    assert service["ExecStart"] == "/opt/chef/bin/chef-client --once --no-fork -c /etc/chef-lab/client.rb"
    assert service["TimeoutStartSec"] == "600"
    assert timer["OnUnitInactiveSec"] == "600s" and timer["RandomizedDelaySec"] == "0s"


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a timer value that does not parse, and a missing executable."""
    units = render(tmp_path, {})
    broken = dict(units, **{"chef-client.timer": units["chef-client.timer"].replace("1800s", "half an hour")})
    rc, output = verify(tmp_path, broken)
    assert "Failed to parse" in output
    missing = tmp_path / "missing"
    missing.mkdir()
    rc, output = verify(missing, units, binary="/usr/sbin/elsewhere")
    assert rc != 0 and "/usr/bin/chef-client is not executable" in output
