# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""instance_host_keys: polls the console, pins what cloud-init printed, writes known_hosts 0600, fails closed."""

from __future__ import annotations

import datetime
import os
import stat

import pytest

from ansible_collections.cloudefigo.core.plugins.modules import instance_host_keys as mod

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "module_utils", "fixtures")
with open(os.path.join(FIXTURES, "console_cloud_init.txt"), newline="") as _handle:
    CONSOLE = _handle.read()
with open(os.path.join(FIXTURES, "other_host_key.pub")) as _handle:
    OTHER = _handle.read().split()[1]
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIHcRk4h0cxJ6pasa4fhDIasmyXTkAYGfCRWqtBoapSPn"
INSTANCE = "i-0123456789abcdef0"


class FakeEC2:
    def __init__(self, outputs):
        self.outputs = list(outputs)
        self.calls = []

    def get_console_output(self, aws_retry=False, **kwargs):
        self.calls.append(kwargs)
        output = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        return {"InstanceId": kwargs["InstanceId"], "Output": output,
                "Timestamp": datetime.datetime(2026, 11, 29, 20, 30, 5, tzinfo=datetime.timezone.utc)}


@pytest.fixture
def console(monkeypatch):
    def _install(*outputs):
        fake = FakeEC2(outputs)
        monkeypatch.setattr(mod, "retrying_client", lambda module, service: fake)
        monkeypatch.setattr(mod.time, "sleep", lambda seconds: None)
        return fake
    return _install


def test_polls_until_the_block_appears_and_writes_known_hosts_0600(run_aws_main, console, tmp_path):
    fake = console("[    0.0] booting\n", CONSOLE[:CONSOLE.index("-----END SSH HOST KEY KEYS")], CONSOLE)
    path = tmp_path / "known_hosts"
    result = run_aws_main(mod.main, instance_id=INSTANCE, address="127.0.0.1", port=2222,
                          known_hosts_path=str(path), poll_interval=1, wait_timeout=60)
    assert result["changed"] is True, result
    assert len(fake.calls) == 3 and fake.calls[0] == {"InstanceId": INSTANCE}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert "[127.0.0.1]:2222 ssh-ed25519 " + ED25519 in lines
    assert len([line for line in lines if not line.startswith("#")]) == 3
    assert result["fingerprints_checked"] == 3
    assert result["console_timestamp"].startswith("2026-11-29T20:30:05")


def test_second_run_is_unchanged_and_a_wrong_mode_is_repaired(run_aws_main, console, tmp_path):
    console(CONSOLE)
    path = tmp_path / "known_hosts"
    args = dict(instance_id=INSTANCE, address="10.0.1.23", known_hosts_path=str(path))
    assert run_aws_main(mod.main, **args)["changed"] is True
    assert run_aws_main(mod.main, **args)["changed"] is False
    os.chmod(path, 0o644)
    assert run_aws_main(mod.main, **args)["changed"] is True
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_check_mode_writes_nothing_and_diff_shows_the_file(run_aws_main, console, tmp_path):
    console(CONSOLE)
    path = tmp_path / "known_hosts"
    result = run_aws_main(mod.main, instance_id=INSTANCE, address="10.0.1.23", known_hosts_path=str(path),
                          _ansible_check_mode=True, _ansible_diff=True)
    assert result["changed"] is True and not path.exists()
    assert "10.0.1.23 ssh-ed25519 " + ED25519 in result["diff"]["after"]


def test_tampered_console_fails_and_leaves_the_pinned_file_alone(run_aws_main, console, tmp_path):
    path = tmp_path / "known_hosts"
    path.write_text("10.0.1.23 ssh-ed25519 %s\n" % ED25519)
    console(CONSOLE.replace(ED25519, OTHER))
    result = run_aws_main(mod.main, instance_id=INSTANCE, address="10.0.1.23", known_hosts_path=str(path))
    assert result["failed"] is True and "does not match its fingerprint" in result["msg"]
    assert path.read_text() == "10.0.1.23 ssh-ed25519 %s\n" % ED25519


def test_two_blocks_fail(run_aws_main, console):
    console(CONSOLE + CONSOLE)
    result = run_aws_main(mod.main, instance_id=INSTANCE)
    assert result["failed"] is True and "ambiguous" in result["msg"]


def test_no_block_times_out_naming_the_fallback(run_aws_main, console):
    fake = console("Ubuntu 24.04 LTS ip-10-0-1-23 ttyS0\nlogin: ")
    result = run_aws_main(mod.main, instance_id=INSTANCE, wait_timeout=0)
    assert result["failed"] is True and "docs/host-keys.md" in result["msg"]
    assert len(fake.calls) == 1


def test_latest_is_passed_on(run_aws_main, console):
    fake = console(CONSOLE)
    result = run_aws_main(mod.main, instance_id=INSTANCE, latest=True)
    assert fake.calls == [{"InstanceId": INSTANCE, "Latest": True}]
    assert [k["type"] for k in result["host_keys"]] == ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
    assert result["known_hosts_lines"] == [] and result["changed"] is False


@pytest.mark.parametrize("args, text", [
    ({"instance_id": "web-1"}, "instance_id must look like"),
    ({"instance_id": INSTANCE, "known_hosts_path": "/tmp/kh"}, "known_hosts_path needs address"),
    ({"instance_id": INSTANCE, "address": "10.0.0.1 evil"}, "address:"),
    ({"instance_id": INSTANCE, "port": 0}, "port must be"),
    ({"instance_id": INSTANCE, "poll_interval": 0}, "poll_interval"),
])
def test_bad_input_names_the_option(run_aws_main, args, text):
    result = run_aws_main(mod.main, **args)
    assert result["failed"] is True and text in result["msg"]


def test_missing_directory_is_a_clear_failure(run_aws_main, console, tmp_path):
    console(CONSOLE)
    result = run_aws_main(mod.main, instance_id=INSTANCE, address="10.0.1.23", known_hosts_path=str(tmp_path / "no" / "kh"))
    assert result["failed"] is True and "does not exist" in result["msg"]
