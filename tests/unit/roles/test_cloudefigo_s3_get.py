"""roles/luks_volume/files/cloudefigo-s3-get: SigV4 against botocore's signer, URLs, tmpfs check."""
import datetime
import hashlib
import os
import types
from importlib.machinery import SourceFileLoader
from unittest import mock

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(ROOT, "roles", "luks_volume", "files", "cloudefigo-s3-get")


@pytest.fixture
def s3get():
    loader = SourceFileLoader("cloudefigo_s3_get", SCRIPT)
    module = types.ModuleType(loader.name)
    loader.exec_module(module)
    return module


FIXED = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)


class _FixedDateTime(datetime.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED


@pytest.mark.parametrize("endpoint,bucket,key", [
    ("", "my-bucket", "i-0abc/luks.key"),
    ("", "dotted.bucket", "a b/c+d.key"),
    ("http://10.0.2.2:5000", "keys", "i-1/luks key"),
])
def test_signature_matches_botocore(s3get, endpoint, bucket, key):
    botocore = pytest.importorskip("botocore")
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    sent = {}
    creds = {"AccessKeyId": "AKID", "SecretAccessKey": "SECRET", "Token": "TOKEN"}
    url = s3get.object_url(endpoint, "eu-west-1", bucket, key)
    with mock.patch.object(s3get.datetime, "datetime", _FixedDateTime), \
            mock.patch.object(s3get, "_request", lambda url, method="GET", headers=None, timeout=10: sent.update(headers=headers) or b"x"):
        s3get.signed_get(url, "eu-west-1", creds, 5)
    request = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": hashlib.sha256(b"").hexdigest()})
    with mock.patch.object(botocore.auth.datetime, "datetime", _FixedDateTime):
        S3SigV4Auth(Credentials("AKID", "SECRET", "TOKEN"), "s3", "eu-west-1").add_auth(request)
    assert sent["headers"]["Authorization"] == request.headers["Authorization"]
    assert sent["headers"]["x-amz-security-token"] == "TOKEN"


def test_object_urls(s3get):
    assert s3get.object_url("", "us-east-1", "b", "k/x") == "https://b.s3.us-east-1.amazonaws.com/k/x"
    assert s3get.object_url("", "cn-north-1", "b", "k") == "https://b.s3.cn-north-1.amazonaws.com.cn/k"
    assert s3get.object_url("", "us-east-1", "a.b", "k") == "https://s3.us-east-1.amazonaws.com/a.b/k"
    assert s3get.object_url("http://h:1/", "us-east-1", "b", "a b") == "http://h:1/b/a%20b"


def test_refuses_non_tmpfs(s3get, tmp_path, capsys):
    with mock.patch.object(s3get, "fs_type", return_value="ext4"):
        code = s3get.main(["--bucket", "b", "--object", "k", "--out", str(tmp_path / "key"), "--tmpfs-only"])
    assert code == 2
    assert "not tmpfs" in capsys.readouterr().err
    assert not (tmp_path / "key").exists()


def test_write_private_is_0600(s3get, tmp_path):
    path = tmp_path / "key"
    s3get.write_private(str(path), b"secret")
    assert path.read_bytes() == b"secret"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
