"""SSH host keys pinned from the console output, for real, with the lab's qemu VM (lab up --vm).

The VM prints its host keys on its serial console in cloud-init's format (lab/vm/guest-rcS); the
lab's aws_proxy answers ec2:GetConsoleOutput for the moto instance the VM stands for from that
console.  playbooks/tasks/secure_launch_host_keys.yml (the secure launch's step) pins them, and
Ansible then connects with StrictHostKeyChecking=yes: it works with the VM's key and fails when
known_hosts holds another key, or when the console shows another host's keys.
"""
import json
import os
import re
import stat
import subprocess
import urllib.request

import pytest

from _lab import ROOT, run_playbook

pytestmark = pytest.mark.vm

FIXTURES = os.path.join(ROOT, "tests", "unit", "plugins", "module_utils", "fixtures")
TASKS = os.path.join(ROOT, "playbooks", "tasks", "secure_launch_host_keys.yml")
RECAP = re.compile(r"^lab_vm\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _playbook(tmp_path):
    path = tmp_path / "pin.yml"
    path.write_text("""---
- name: Pin the VM's host keys from its console, then talk to it
  hosts: lab_vm
  gather_facts: false
  tasks:
    - name: Pin
      ansible.builtin.include_tasks: %s
    - name: Talk to the instance over SSH
      ansible.builtin.command: cat /etc/hostname
      changed_when: false
""" % TASKS)
    return str(path)


def _bind(proxy, instance_id, console_file):
    body = json.dumps({"instance_id": instance_id, "console_file": console_file}).encode()
    req = urllib.request.Request(proxy + "/_lab/proxy/console", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status == 200


@pytest.fixture
def pinned(lab, aws, tmp_path):
    """A moto instance the VM stands for, and a runner of the pinning playbook against the VM."""
    if "LAB_VM_SSH_PORT" not in lab:
        pytest.fail("needs the lab VM: lab/lab up --vm")
    instance_id = aws.client("ec2").run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    runs = []

    def _run(**overrides):
        runs.append(1)
        extra = {
            "cloudefigo_aws_region": "us-east-1",
            "secure_launch_instance_id": instance_id,
            "secure_launch_report_dir": str(tmp_path),
            "secure_launch_host_keys_lab_proxy": lab["LAB_AWS_PROXY_ENDPOINT"],
            "secure_launch_host_keys_timeout": 60,
        }
        extra.update(overrides)
        # a fresh ControlPath dir each run: a master connection left by the previous run would
        # carry the next one without any host key check
        env = {"ANSIBLE_SSH_CONTROL_PATH_DIR": str(tmp_path / ("cp%d" % len(runs)))}
        return run_playbook(lab, _playbook(tmp_path), extra_vars=extra, inventory=lab["LAB_VM_INVENTORY"], env=env,
                            json_output=False)

    _run.instance_id = instance_id
    _run.known_hosts = tmp_path / "known_hosts" / instance_id
    return _run


def _recap(result):
    match = RECAP.search(result.stdout)
    assert match, result.stdout[-3000:] + result.stderr[-2000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def _scanned_keys(lab):
    """What the VM's sshd presents over the network (for comparison only; never trusted by the code)."""
    out = subprocess.run(["ssh-keyscan", "-T", "30", "-p", lab["LAB_VM_SSH_PORT"], "127.0.0.1"], capture_output=True, text=True,
                         timeout=120, check=False).stdout
    return {tuple(line.split()[1:3]) for line in out.splitlines() if line and not line.startswith("#")}


def test_pins_the_vm_key_from_its_console_and_connects_strictly(lab, pinned):
    result = pinned()
    counts = _recap(result)
    assert counts["failed"] == 0 and counts["unreachable"] == 0, result.stdout[-4000:]

    path = pinned.known_hosts
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    host = "[127.0.0.1]:%s" % lab["LAB_VM_SSH_PORT"]
    pinned_keys = {tuple(line.split()[1:3]) for line in path.read_text().splitlines() if line and not line.startswith("#")}
    assert all(line.split()[0] == host for line in path.read_text().splitlines() if line and not line.startswith("#"))
    # the keys the VM's sshd presents (keyscan may miss a type on the slow emulated VM), from its serial console
    scanned = _scanned_keys(lab)
    assert scanned and scanned <= pinned_keys, (scanned, pinned_keys)
    assert {key_type for key_type, _key in pinned_keys} == {"ssh-ed25519", "ecdsa-sha2-nistp256", "ssh-rsa"}
    console = open(os.path.join(lab["LAB_STATE_DIR"], "vm-console.log"), encoding="utf-8", errors="replace").read()
    assert all(key in console for key_type, key in pinned_keys if key_type)

    # with the pinned file and StrictHostKeyChecking=yes, plain ssh agrees
    ssh = ["ssh", "-p", lab["LAB_VM_SSH_PORT"], "-i", lab["LAB_VM_SSH_KEY"], "-o", "BatchMode=yes",
           "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null", "-o", "UserKnownHostsFile=%s" % path,
           "%s@127.0.0.1" % lab["LAB_VM_USER"], "true"]
    assert subprocess.run(ssh, capture_output=True, timeout=120, check=False).returncode == 0

    # known_hosts tampered: another key for the VM's address -> ssh refuses, Ansible cannot connect
    other = open(os.path.join(FIXTURES, "other_host_key.pub")).read().split()
    path.write_text("%s %s %s\n" % (host, other[0], other[1]))
    proc = subprocess.run(ssh, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 255 and "Host key verification failed" in proc.stderr, proc.stderr
    tampered = pinned(secure_launch_host_key_source="accept-new",
                      ansible_ssh_common_args="-o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null "
                                              "-o UserKnownHostsFile=%s" % path,
                      ansible_host_key_checking=True)
    assert _recap(tampered)["unreachable"] == 1, tampered.stdout[-3000:]


def test_console_showing_another_hosts_keys_makes_the_connection_fail(lab, pinned, tmp_path):
    # the console of the instance shows another host's (consistent) key block: the keys are pinned,
    # and the VM, which holds other keys, is then refused
    forged = tmp_path / "forged-console.log"
    forged.write_bytes(open(os.path.join(FIXTURES, "console_cloud_init.txt"), "rb").read())
    proxy = lab["LAB_AWS_PROXY_ENDPOINT"]
    _bind(proxy, pinned.instance_id, str(forged))
    # the playbook's lab hook re-binds to the VM's console: skip it (no lab proxy) and talk to the proxy directly
    result = pinned(secure_launch_host_keys_lab_proxy="", cloudefigo_aws_endpoint_url=proxy)
    counts = _recap(result)
    assert counts["unreachable"] == 1, result.stdout[-4000:]
    assert "Host key verification failed" in result.stdout + result.stderr
    assert "AAAAC3NzaC1lZDI1NTE5AAAAIHcRk4h0cxJ6pasa4fhDIasmyXTkAYGfCRWqtBoapSPn" in pinned.known_hosts.read_text()
