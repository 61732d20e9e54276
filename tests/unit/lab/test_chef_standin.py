# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/vm/chef_standin.py: its pure-Python signing against the controller's signer, its client.rb reader
against Ruby, and what it refuses.  Its runs against goiardi: tests/integration/test_chef_standin.py."""

from __future__ import annotations

import base64
import importlib.util
import os
import stat
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.cloudefigo.core.plugins.module_utils import _chef

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
SCRIPT = os.path.join(ROOT, "lab", "vm", "chef_standin.py")


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def standin():
    return _load("chef_standin", SCRIPT)


@pytest.fixture(scope="module", params=[2048, 4096])
def key(request):
    return rsa.generate_private_key(public_exponent=65537, key_size=request.param)


def _pem(key, fmt):
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.TraditionalOpenSSL, serialization.PrivateFormat.PKCS8])
@pytest.mark.parametrize("method, path, body", [
    ("GET", "/nodes/web-1", b""),
    ("PUT", "/organizations/acme/nodes/web-1", b'{"name":"web-1","automatic":{"ohai_time":1.5}}'),
    ("POST", "/clients", b'{"name":"n\\u00e9","admin":false}'),
])
def test_headers_identical_to_the_controller_signer(standin, key, fmt, method, path, body):
    """PKCS#1 v1.5 is deterministic: same key, request and timestamp give the very same headers."""
    timestamp = "2026-11-29T22:40:00Z"
    ours = standin.sign_headers(standin.RSAKey(_pem(key, fmt)), "web-1", method, path, body, timestamp=timestamp)
    controller = _chef.sign_request(key, "web-1", method, path, body, protocol="1.3", timestamp=timestamp)
    assert ours == controller
    signature = base64.b64decode("".join(ours["X-Ops-Authorization-%d" % i] for i in range(1, len(ours) - 4)))
    canonical = _chef.canonical_request(method, path, body, "web-1", timestamp).encode()
    key.public_key().verify(signature, canonical, padding.PKCS1v15(), hashes.SHA256())  # raises when wrong


def test_a_tampered_request_does_not_verify(standin, key):
    timestamp = "2026-11-29T22:40:00Z"
    headers = standin.sign_headers(standin.RSAKey(_pem(key, serialization.PrivateFormat.PKCS8)), "web-1", "PUT",
                                   "/nodes/web-1", b"{}", timestamp=timestamp)
    signature = base64.b64decode("".join(v for k, v in sorted(headers.items()) if k.startswith("X-Ops-Authorization")))
    other = _chef.canonical_request("PUT", "/nodes/web-2", b"{}", "web-1", timestamp).encode()
    with pytest.raises(Exception):
        key.public_key().verify(signature, other, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("pem", [
    b"not a key",
    b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
    b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
])
def test_bad_keys_are_refused(standin, pem):
    with pytest.raises(standin.RunError, match="not an unencrypted PEM RSA private key"):
        standin.RSAKey(pem)


def test_ec_key_is_refused(standin):
    from cryptography.hazmat.primitives.asymmetric import ec
    pem = _pem(ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.PKCS8)
    with pytest.raises(standin.RunError):
        standin.RSAKey(pem)


# --- client.rb ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def client_rb_test():
    return _load("test_chef_client_rb", os.path.join(ROOT, "tests", "unit", "roles", "test_chef_client_rb.py"))


def test_reads_the_roles_client_rb_as_ruby_does(standin, client_rb_test, tmp_path):
    """Hostile values rendered by roles/chef_client's template read back the same as Ruby loads them."""
    hostile = {
        "chef_client_server_url": "https://chef.example/organizations/o#{File.write('x', 'url')}",
        "chef_client_node_name": "web'; x = '\\",
        "chef_client_environment": 'prod"#{1}\\#{1}`touch y`',
        "chef_client_validator_name": "v\\'#{2}\n#{3}",
        "chef_client_validator_key_object": "validator.pem",
        "chef_client_validator_key_bucket": "b",
        "chef_client_extra_config": ["lab_imds_url 'http://10.0.2.2:8080'"],
    }
    path = client_rb_test.render(tmp_path, hostile)
    ruby = client_rb_test.load_with_ruby(path)
    config, ignored = standin.parse_client_rb(path.read_text())
    assert ignored == []
    assert set(ruby) == set(config)
    for key, value in ruby.items():
        if key == "log_location":  # the constant STDOUT: Ruby shows the IO object
            assert value == "#<IO:<STDOUT>>" and config[key] == "STDOUT"
            continue
        expected = ":" + config[key] if key in ("ssl_verify_mode", "log_level") else config[key]
        assert value == expected, key
    assert config["node_name"] == hostile["chef_client_node_name"]
    assert config["validation_client_name"] == hostile["chef_client_validator_name"]
    assert config["chef_server_url"] == hostile["chef_client_server_url"]
    assert config["lab_imds_url"] == "http://10.0.2.2:8080"
    assert config["ssl_verify_mode"] == "verify_peer"


@pytest.mark.parametrize("text, value", [
    ("'a\\\\b\\'c\\n'", "a\\b'c\\n"), ('"plain"', "plain"), (":verify_none", "verify_none"), ("42", 42),
    ("true", True), ("nil", None), ("STDOUT", "STDOUT"),
])
def test_values(standin, text, value):
    assert standin.parse_value(text) == value


@pytest.mark.parametrize("line", [
    "node_name 'a' + `id`", "node_name \"#{`id`}\"", "node_name 'a'; system('id')", "Ohai::Config[:x] = 1",
    "node_name ENV['X']",
])
def test_ruby_code_is_never_read_as_a_value(standin, line):
    config, ignored = standin.parse_client_rb("chef_server_url 'https://c'\n" + line + "\n")
    assert "node_name" not in config and len(ignored) == 1


# --- the rest -------------------------------------------------------------------------------------

def test_client_key_written_0600_atomically(standin, tmp_path):
    path = tmp_path / "client.pem"
    os.umask(0o022)
    standin.write_private(str(path), "-----BEGIN RSA PRIVATE KEY-----\nx\n-----END RSA PRIVATE KEY-----\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["client.pem"]


def test_run_list_items(standin):
    class NoServer:
        def request(self, *args, **kwargs):
            raise AssertionError("recipes only: no server call")
    assert standin.expand_run_list(NoServer(), ["recipe[base]", "web::default"])[0] == ["base", "web::default"]
    with pytest.raises(standin.RunError, match="neither recipe"):
        standin.expand_run_list(NoServer(), ["recipe[base]; rm -rf /"])


def test_exit_codes_without_a_server(tmp_path):
    """Bad usage exits 2, a run that cannot authenticate exits 1 (as chef-client)."""
    run = [sys.executable, SCRIPT]
    assert subprocess.run(run + ["--no-such-option"], capture_output=True, check=False).returncode == 2
    config = tmp_path / "client.rb"
    config.write_text("chef_server_url 'http://127.0.0.1:9'\nnode_name 'n'\nclient_key '%s/client.pem'\n"
                      "validation_key '%s/validation.pem'\nlab_imds_url ''\n" % (tmp_path, tmp_path))
    proc = subprocess.run(run + ["--once", "-c", str(config)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1
    assert "no client key at %s/client.pem and no validation key" % tmp_path in proc.stderr
    proc = subprocess.run(run + ["-c", str(tmp_path / "missing.rb")], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "cannot read the configuration" in proc.stderr
