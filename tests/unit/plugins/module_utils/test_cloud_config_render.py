"""_cloud_config: YAML that reads back to the very same files, 16 KB, gzip, secrets refused."""
import base64
import gzip
import os

import pytest
import yaml

from ansible_collections.cloudefigo.core.plugins.module_utils import _cloud_config as cc

TRICKY = [
    "#!/bin/sh\necho 'a' \"b\" $x\n",
    "no newline at the end",
    "two newlines\n\n",
    "three\n\n\n",
    "  leading spaces on the first line\n\tand a tab\n",
    "line with trailing space \nand ': - # [' yaml characters {x: 1}\n",
    "\n\nstarts with blank lines\n",
    "",
    "carriage\r\nreturn\n",
    "control \x01 character\n",
    "unicode é ✓\n",
    "- looks: like\n  yaml: [list]\n",
]


def _read(entry):
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(entry["content"])).decode()
    return entry["content"]


@pytest.mark.parametrize("compress", ["never", "always"])
def test_contents_read_back_exactly(compress):
    files = [{"path": "/f%d" % i, "content": c, "permissions": "600"} for i, c in enumerate(TRICKY)]
    text, compressed = cc.render(files, [["python3", "/x", "it's", "{\"a\": \"b c\"}"], "echo 'hi' | cat"],
                                 ["mkdir -p /run/x"], compress=compress)
    assert compressed is (compress == "always")
    doc = yaml.safe_load(text)
    assert text.startswith("#cloud-config\n")
    assert [_read(f) for f in doc["write_files"]] == TRICKY
    # cloud-init's default owner (root:root) is left out
    assert all(f["permissions"] == "0600" and "owner" not in f for f in doc["write_files"])
    other = yaml.safe_load(cc.render([{"path": "/o", "content": "x", "owner": "chef:chef"}])[0])["write_files"][0]
    assert other["owner"] == "chef:chef" and "permissions" not in other  # 0644: cloud-init's default
    assert doc["runcmd"] == [["python3", "/x", "it's", "{\"a\": \"b c\"}"], "echo 'hi' | cat"]
    assert doc["bootcmd"] == ["mkdir -p /run/x"]


def test_compresses_only_when_over_the_limit():
    small = [{"path": "/a", "content": "x\n" * 100}]
    assert cc.render(small)[1] is False
    big = [{"path": "/b", "content": "".join("line %d of a long script\n" % i for i in range(2000))}]
    text, compressed = cc.render(big)
    assert compressed is True and len(text.encode()) <= cc.MAX_BYTES
    assert _read(yaml.safe_load(text)["write_files"][0]) == big[0]["content"]


def test_fails_clearly_when_it_cannot_fit():
    noise = base64.b64encode(os.urandom(20000)).decode()  # does not compress
    with pytest.raises(cc.UserDataError) as err:
        cc.render([{"path": "/noise", "content": noise}, {"path": "/small", "content": "x"}])
    msg = str(err.value)
    assert "over the limit of 16384" in msg and "/noise" in msg and "compressed" in msg
    with pytest.raises(cc.UserDataError, match="compress=never"):
        cc.render([{"path": "/b", "content": "y" * 20000}], compress="never")


@pytest.mark.parametrize("content, what", [
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n", "PEM private key"),
    ("-----BEGIN PRIVATE KEY-----\n", "PEM private key"),
    ("key_id = AKIAABCDEFGHIJKLMNOP\n", "access key id"),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "secret access key"),
])
def test_refuses_secrets(content, what):
    with pytest.raises(cc.UserDataError, match=what):
        cc.render([{"path": "/etc/x", "content": content}])
    with pytest.raises(cc.UserDataError, match=what):
        cc.render([], [["echo", content]])


@pytest.mark.parametrize("files, runcmd, message", [
    ([{"path": "relative", "content": "x"}], [], "absolute path"),
    ([{"path": "/a", "content": "x"}, {"path": "/a", "content": "y"}], [], "given twice"),
    ([{"path": "/a", "content": "x", "permissions": "rwx"}], [], "octal mode"),
    ([{"path": "/a", "content": "x", "owner": "root;rm"}], [], "user:group"),
    ([{"path": "/a", "content": 5}], [], "content must be a string"),
    ([], [[]], "non-empty list"),
    ([], [["a", 1]], "runcmd\\[0\\]"),
])
def test_bad_input_names_the_option(files, runcmd, message):
    with pytest.raises(cc.UserDataError, match=message):
        cc.render(files, runcmd)


def test_limits():
    with pytest.raises(cc.UserDataError, match="max_bytes"):
        cc.render([], max_bytes=20000)
    with pytest.raises(cc.UserDataError, match="compress"):
        cc.render([], compress="zip")
