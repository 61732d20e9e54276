# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The console host-key parser: cloud-init's real output is read, anything doubtful is refused."""

from __future__ import annotations

import os

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils import _host_keys as hk

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIHcRk4h0cxJ6pasa4fhDIasmyXTkAYGfCRWqtBoapSPn"


def fixture(name):
    with open(os.path.join(FIXTURES, name), newline="") as handle:
        return handle.read()


# the serial console ends its lines with CR LF (the fixture is stored with LF)
CONSOLE = fixture("console_cloud_init.txt").replace("\n", "\r\n")
CONSOLE_OLD = fixture("console_cloud_init_old.txt")
OTHER = fixture("other_host_key.pub").split()[1]


def test_real_cloud_init_output_with_logger_prefix_and_crlf():
    found = hk.parse_console(CONSOLE)
    assert [k["type"] for k in found["keys"]] == ["ecdsa-sha2-nistp256", "ssh-ed25519", "ssh-rsa"]
    ed = found["keys"][1]
    assert ed["key"] == ED25519
    assert ed["known_hosts_key"] == "ssh-ed25519 " + ED25519
    # the value `ssh-keygen -l` printed when the fixture was made
    assert ed["fingerprint_sha256"] == "SHA256:mxRXQMbJoa7CGsNm6Eip2wz9fRp+cSW5QmqToaH0PqU"
    assert found["fingerprints_checked"] == 3
    assert found["skipped"] == []


def test_older_format_unprefixed_keys_and_md5_fingerprint():
    found = hk.parse_console(CONSOLE_OLD)
    assert [k["type"] for k in found["keys"]] == ["ssh-ed25519", "ssh-rsa"]
    assert found["fingerprints_checked"] == 2


def test_keys_block_alone_is_enough():
    text = "\n".join(line for line in CONSOLE_OLD.splitlines() if not line.startswith("ec2:"))
    found = hk.parse_console(text)
    assert len(found["keys"]) == 2 and found["fingerprints_checked"] == 0


@pytest.mark.parametrize("text", ["", "[    0.000000] Linux version 6.1.0\nlogin: ", None])
def test_no_block_yet_is_none(text):
    assert hk.parse_console(text) is None


def test_unfinished_block_is_none_so_the_caller_polls_again():
    cut = CONSOLE[:CONSOLE.index(hk.END_KEYS)]
    assert hk.parse_console(cut) is None


def test_two_key_blocks_are_refused_even_when_one_is_genuine():
    forged = CONSOLE.replace(ED25519, OTHER)
    with pytest.raises(hk.HostKeyError, match="ambiguous"):
        hk.parse_console(CONSOLE + forged)


def test_two_identical_blocks_are_refused_too():
    with pytest.raises(hk.HostKeyError, match="2 SSH host key"):
        hk.parse_console(CONSOLE + CONSOLE)


def test_key_swapped_in_the_keys_block_disagrees_with_its_fingerprint():
    with pytest.raises(hk.HostKeyError, match="does not match its fingerprint"):
        hk.parse_console(CONSOLE.replace(ED25519, OTHER))


def test_tampered_fingerprint_is_refused():
    tampered = CONSOLE.replace("SHA256:mxRXQ", "SHA256:AxRXQ")
    with pytest.raises(hk.HostKeyError, match="does not match"):
        hk.parse_console(tampered)


def test_type_listed_twice_is_refused():
    lines = CONSOLE.splitlines(True)
    index = next(i for i, line in enumerate(lines) if "ssh-ed25519 " in line)
    doubled = "".join(lines[:index + 1] + [lines[index].replace(ED25519, OTHER)] + lines[index + 1:])
    with pytest.raises(hk.HostKeyError, match="twice"):
        hk.parse_console(doubled)


@pytest.mark.parametrize("bad", [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcRk4h0cxJ6pasa4fhDIasmyXTkAYGfCRWqtBoapSP",  # bad base64
    "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAABAQDFZ62qoVYJzRGjL0KZohT4DxJUhQ6DJYJi root@x",  # rsa blob under ed25519
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5",  # only the type name
    "ssh-ed25519",
    "sk-ssh-ed25519@openssh.com " + ED25519,
    "this is not a key",
])
def test_malformed_key_lines_are_refused(bad):
    text = "%s\n%s\n%s\n" % (hk.BEGIN_KEYS, bad, hk.END_KEYS)
    with pytest.raises(hk.HostKeyError):
        hk.parse_console(text)


def test_end_without_begin_is_refused():
    with pytest.raises(hk.HostKeyError, match="without its BEGIN"):
        hk.parse_console(CONSOLE[CONSOLE.index(hk.BEGIN_KEYS) + len(hk.BEGIN_KEYS):])


def test_marker_inside_a_line_is_refused():
    with pytest.raises(hk.HostKeyError, match="not on a line of its own"):
        hk.parse_console("x %s\nssh-ed25519 %s\n%s\n" % (hk.BEGIN_KEYS, ED25519, hk.END_KEYS))


def test_block_started_twice_is_refused():
    text = "%s\n%s\nssh-ed25519 %s\n%s\n" % (hk.BEGIN_KEYS, hk.BEGIN_KEYS, ED25519, hk.END_KEYS)
    with pytest.raises(hk.HostKeyError, match="unfinished"):
        hk.parse_console(text)


def test_interleaved_kernel_message_is_ignored_other_text_is_not():
    ok = "%s\n[   22.1] random: crng init done\nssh-ed25519 %s\n%s\n" % (hk.BEGIN_KEYS, ED25519, hk.END_KEYS)
    assert [k["key"] for k in hk.parse_console(ok)["keys"]] == [ED25519]
    bad = "%s\nhello\nssh-ed25519 %s\n%s\n" % (hk.BEGIN_KEYS, ED25519, hk.END_KEYS)
    with pytest.raises(hk.HostKeyError, match="not a host key line|unknown host key type"):
        hk.parse_console(bad)


def test_dsa_is_skipped_and_a_block_of_only_dsa_is_refused():
    dsa = "ssh-dss AAAAB3NzaC1kc3MAAAABAQAAAAEB"
    found = hk.parse_console("%s\n%s\nssh-ed25519 %s\n%s\n" % (hk.BEGIN_KEYS, dsa, ED25519, hk.END_KEYS))
    assert found["skipped"] == ["ssh-dss"] and len(found["keys"]) == 1
    with pytest.raises(hk.HostKeyError, match="no usable key"):
        hk.parse_console("%s\n%s\n%s\n" % (hk.BEGIN_KEYS, dsa, hk.END_KEYS))


def test_known_hosts_text_and_host_field():
    keys = hk.parse_console(CONSOLE)["keys"]
    assert hk.known_hosts_host("10.0.1.23") == "10.0.1.23"
    assert hk.known_hosts_host("127.0.0.1", 2222) == "[127.0.0.1]:2222"
    text = hk.known_hosts_text(["[127.0.0.1]:2222"], keys, "i-0abc")
    lines = text.splitlines()
    assert lines[0].startswith("# SSH host keys of i-0abc")
    assert lines[2] == "[127.0.0.1]:2222 ssh-ed25519 " + ED25519
    for bad in ("", "a b", "*.example.com", "10.0.0.1,evil"):
        with pytest.raises(hk.HostKeyError):
            hk.known_hosts_host(bad)
