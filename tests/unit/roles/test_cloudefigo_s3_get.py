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


# --- pull mode ------------------------------------------------------------------------------------

def test_ec2_query_signature_matches_botocore(s3get):
    """progress: CreateTags as a SigV4-signed form POST, as botocore signs it."""
    botocore = pytest.importorskip("botocore")
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b"Action=CreateTags&ResourceId.1=i-0abc&Tag.1.Key=cloudefigo%3Aprogress&Tag.1.Value=volume&Version=2016-11-15"
    creds = {"AccessKeyId": "AKID", "SecretAccessKey": "SECRET", "Token": "TOKEN"}
    ctype = "application/x-www-form-urlencoded; charset=utf-8"
    with mock.patch.object(s3get.datetime, "datetime", _FixedDateTime):
        ours = s3get.sigv4("POST", "https://ec2.eu-west-1.amazonaws.com/", "eu-west-1", "ec2", creds, {"content-type": ctype}, body)
    request = AWSRequest(method="POST", url="https://ec2.eu-west-1.amazonaws.com/", data=body, headers={"content-type": ctype})
    with mock.patch.object(botocore.auth.datetime, "datetime", _FixedDateTime):
        SigV4Auth(Credentials("AKID", "SECRET", "TOKEN"), "ec2", "eu-west-1").add_auth(request)
    assert ours["Authorization"] == request.headers["Authorization"]


class FakeInstance:
    """Instance with no IMDS: records the progress values it would tag."""

    def __init__(self, fail_credentials=False):
        self.tags, self.fail_credentials = [], fail_credentials

    def factory(self, s3get):
        fake = self

        class _Instance(s3get.Instance):
            def wait_credentials(self, timeout):
                if fake.fail_credentials:
                    raise s3get.Failure(3, "IMDS: this instance has no instance profile/role (waited 1 s)")
                return self

            def meta(self, path, deadline, missing_ok=False):
                return {"instance-id": "i-0123456789abcdef0"}[path]

            def progress(self, value):
                fake.tags.append(value)
        return _Instance


def test_pull_tags_each_step_then_done(s3get):
    fake, ran = FakeInstance(), []
    with mock.patch.object(s3get, "Instance", fake.factory(s3get)), \
            mock.patch.object(s3get, "step_upgrade", lambda cfg: ran.append("upgrade")), \
            mock.patch.object(s3get, "step_volume", lambda inst, cfg: ran.append("volume")), \
            mock.patch.object(s3get, "step_chef", lambda inst, cfg: ran.append("chef")):
        assert s3get.pull({"upgrade": {"autoremove": True}, "volume": {"name": "data"}, "chef": {"binary": "x"}}) == 0
    assert ran == ["upgrade", "volume", "chef"]
    assert fake.tags == ["credentials", "upgrade", "volume", "chef", "done"]


def test_pull_stops_at_the_failed_step_and_says_why(s3get):
    fake, ran = FakeInstance(), []

    def volume(inst, cfg):
        raise s3get.Failure(5, "/dev/vdb does not open with the key from S3 (wrong key?), not re-formatted: No key available")
    with mock.patch.object(s3get, "Instance", fake.factory(s3get)), \
            mock.patch.object(s3get, "step_volume", volume), \
            mock.patch.object(s3get, "step_chef", lambda inst, cfg: ran.append("chef")):
        assert s3get.pull({"upgrade": False, "volume": {"name": "data"}, "chef": {"binary": "x"}}) == 5
    assert ran == []  # nothing after the failure
    assert fake.tags[:2] == ["credentials", "volume"]
    assert fake.tags[-1].startswith("failed:volume:/dev/vdb does not open") and "wrong key" in fake.tags[-1]


def test_pull_without_credentials_cannot_tag(s3get):
    fake = FakeInstance(fail_credentials=True)
    with mock.patch.object(s3get, "Instance", fake.factory(s3get)):
        assert s3get.pull({"volume": {"name": "data"}}) == 3
    assert fake.tags == []  # the controller's wait times out and contains it


def test_progress_value_is_bounded_and_printable(s3get):
    inst = s3get.Instance({"ec2_endpoint": "http://ec2.test"})
    inst.instance_id, inst.region, sent = "i-0abc0abc0abc0abc0", "us-east-1", []
    with mock.patch.object(inst, "ec2", sent.append):
        inst.progress("failed:volume:" + "x\n\x00" * 200)
    value = sent[0]["Tag.1.Value"]
    assert len(value) == 255 and value.isprintable() and sent[0]["Tag.1.Key"] == "cloudefigo:progress"
    assert sent[0]["ResourceId.1"] == "i-0abc0abc0abc0abc0"


def test_credentials_wait_is_bounded(s3get):
    import urllib.error

    def request(url, method="GET", headers=None, timeout=10):
        if url.endswith("/latest/api/token"):
            return b"tok"
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)
    clock = iter(range(0, 10000, 3))
    with mock.patch.object(s3get, "_request", request), mock.patch.object(s3get.time, "sleep", lambda s: None), \
            mock.patch.object(s3get.time, "monotonic", lambda: float(next(clock))):
        with pytest.raises(s3get.Failure) as err:
            s3get.Instance({}).wait_credentials(30)
    assert err.value.code == 3 and "no instance profile" in str(err.value)


def test_find_device_by_serial(s3get, tmp_path):
    sys_block = tmp_path / "block"
    for name, serial in (("vda", "rootfs"), ("vdb", "vol0123456789abcdef0")):
        (sys_block / name).mkdir(parents=True)
        (sys_block / name / "serial").write_text(serial + "\n")
    real_listdir, real_open = os.listdir, open

    def listdir(path):
        return real_listdir(str(sys_block)) if path == "/sys/block" else real_listdir(path)

    def fake_open(path, *a, **k):
        if str(path).startswith("/sys/block/"):
            path = str(sys_block) + str(path)[len("/sys/block"):]
        return real_open(path, *a, **k)
    with mock.patch.object(s3get.os, "listdir", listdir), mock.patch("builtins.open", fake_open), \
            mock.patch.object(s3get.os.path, "exists", lambda p: False):
        assert s3get.find_device("vol-0123456789abcdef0") == "/dev/vdb"
        assert s3get.find_device("vol-0fffffffffffffff0") is None
