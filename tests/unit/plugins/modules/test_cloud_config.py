"""cloud_config module: main() through patch_module_args."""
import json

import pytest
import yaml

from ansible.module_utils.testing import patch_module_args

from ansible_collections.cloudefigo.core.plugins.modules import cloud_config


def run(capsys, **args):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            cloud_config.main()
    return json.loads(capsys.readouterr().out)


def test_renders(capsys):
    out = run(capsys, write_files=[{"path": "/usr/local/sbin/hello", "content": "#!/bin/sh\necho hi\n", "permissions": "0755"}],
              runcmd=[["/usr/local/sbin/hello"]])
    assert out["changed"] is False and out["compressed"] is False
    assert out["files"] == ["/usr/local/sbin/hello"] and out["size"] == len(out["user_data"].encode())
    doc = yaml.safe_load(out["user_data"])
    assert doc["write_files"][0]["content"] == "#!/bin/sh\necho hi\n" and doc["runcmd"] == [["/usr/local/sbin/hello"]]


def test_check_mode_gives_the_same(capsys):
    args = dict(write_files=[{"path": "/a", "content": "x\n"}])
    plain = run(capsys, **args)
    checked = run(capsys, _ansible_check_mode=True, **args)
    assert checked["user_data"] == plain["user_data"] and checked["changed"] is False


def test_secret_fails_without_traceback(capsys):
    out = run(capsys, write_files=[{"path": "/etc/chef/client.pem", "content": "-----BEGIN RSA PRIVATE KEY-----\nx\n"}])
    assert out["failed"] is True and "DescribeInstanceAttribute" in out["msg"] and "exception" not in out


def test_too_big_fails(capsys):
    out = run(capsys, write_files=[{"path": "/a", "content": "x" * 2000}], max_bytes=500, compress="never")
    assert out["failed"] is True and "over the limit of 500" in out["msg"]
