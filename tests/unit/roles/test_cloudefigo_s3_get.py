"""roles/s3_get/files/cloudefigo-s3-get: SigV4 against botocore's signer, URLs, tmpfs check."""
import datetime
import hashlib
import os
import types
from importlib.machinery import SourceFileLoader
from unittest import mock

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
SCRIPT = os.path.join(ROOT, "roles", "s3_get", "files", "cloudefigo-s3-get")


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
        s3get.signed_get(url, "eu-west-1", creds, 5, "123456789012")
    request = AWSRequest(method="GET", url=url, headers={"x-amz-content-sha256": hashlib.sha256(b"").hexdigest(),
                                                         "x-amz-expected-bucket-owner": "123456789012"})
    with mock.patch.object(botocore.auth.datetime, "datetime", _FixedDateTime):
        S3SigV4Auth(Credentials("AKID", "SECRET", "TOKEN"), "s3", "eu-west-1").add_auth(request)
    assert sent["headers"]["Authorization"] == request.headers["Authorization"]
    assert sent["headers"]["x-amz-security-token"] == "TOKEN"
    assert sent["headers"]["x-amz-expected-bucket-owner"] == "123456789012"
    assert "x-amz-expected-bucket-owner" in sent["headers"]["Authorization"].split("SignedHeaders=")[1].split(",")[0]


@pytest.mark.parametrize("owner", ["", None, "12345", "*"])
def test_never_asks_without_an_expected_bucket_owner(s3get, owner):
    sent = []
    with mock.patch.object(s3get, "_request", lambda *a, **k: sent.append(a) or b"x"):
        with pytest.raises(s3get.Failure) as err:
            s3get.signed_get("http://h:1/b/k", "us-east-1", {"AccessKeyId": "A", "SecretAccessKey": "S"}, 5, owner)
    assert err.value.code == 2 and "expected bucket owner" in str(err.value)
    assert sent == []


class FakeImds:
    """IMDSv2 in memory: token, role credentials, region, identity document (or none)."""

    def __init__(self, document):
        self.document = document
        self.requests = []

    def __call__(self, url, method="GET", headers=None, timeout=10):
        import json
        import urllib.error
        self.requests.append((method, url, dict(headers or {})))
        path = url.split("169.254.169.254", 1)[1]
        if path == "/latest/api/token":
            return b"tok"
        assert (headers or {}).get("X-aws-ec2-metadata-token") == "tok", "IMDSv1 request to %s" % path
        answers = {
            "/latest/meta-data/iam/security-credentials/": b"role",
            "/latest/meta-data/iam/security-credentials/role": json.dumps(
                {"AccessKeyId": "A", "SecretAccessKey": "S", "Token": "T"}).encode(),
            "/latest/meta-data/placement/region": b"eu-west-1",
        }
        if path == "/latest/dynamic/instance-identity/document":
            if self.document is None:
                raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
            return json.dumps(self.document).encode()
        return answers[path]


def run_with(s3get, tmp_path, imds, argv=()):
    def request(url, method="GET", headers=None, timeout=10):
        if "169.254.169.254" in url:
            return imds(url, method, headers, timeout)
        imds.requests.append((method, url, dict(headers or {})))
        return b"key-bytes"
    with mock.patch.object(s3get, "_request", request):
        return s3get.main(["--bucket", "b", "--object", "k", "--out", str(tmp_path / "out"), "--timeout", "1"] + list(argv))


def test_owner_comes_from_the_identity_document(s3get, tmp_path):
    imds = FakeImds({"accountId": "210987654321", "region": "eu-west-1"})
    assert run_with(s3get, tmp_path, imds) == 0
    s3_requests = [r for r in imds.requests if "amazonaws.com" in r[1]]
    assert len(s3_requests) == 1 and s3_requests[0][2]["x-amz-expected-bucket-owner"] == "210987654321"
    assert (tmp_path / "out").read_bytes() == b"key-bytes"


def test_owner_option_wins_and_no_document_is_needed(s3get, tmp_path):
    imds = FakeImds(None)
    assert run_with(s3get, tmp_path, imds, ["--expected-bucket-owner", "123456789012"]) == 0
    assert [r[2]["x-amz-expected-bucket-owner"] for r in imds.requests if "amazonaws.com" in r[1]] == ["123456789012"]


def test_no_owner_no_request(s3get, tmp_path, capsys):
    imds = FakeImds(None)
    assert run_with(s3get, tmp_path, imds) == 3
    assert "--expected-bucket-owner" in capsys.readouterr().err
    assert not [r for r in imds.requests if "amazonaws.com" in r[1]]
    assert not (tmp_path / "out").exists()


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
