"""Every S3 request the collection makes carries ExpectedBucketOwner (x-amz-expected-bucket-owner).

moto ignores the header, so the requests are recorded at the lab's AWS proxy
(lab/services/aws_proxy.py) and checked one by one: volume_key (create, re-run, adopt, shred) and
the instance script cloudefigo-s3-get run from the host against the proxy (as IMDS and as S3).
"""
import json
import os
import subprocess
import sys
import urllib.request

import pytest

from _lab import ROOT

ACCOUNT = "123456789012"
BUCKET = "ebo-volume-keys"
IID = "i-0123456789abcdef0"
SCRIPT = os.path.join(ROOT, "roles", "s3_get", "files", "cloudefigo-s3-get")


def proxy_call(url, path, method="GET"):
    req = urllib.request.Request(url + path, data=b"" if method == "POST" else None, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.fixture
def proxy(lab):
    url = lab.get("LAB_AWS_PROXY_ENDPOINT")
    if not url:
        pytest.fail("the lab runs no aws_proxy (lab/lab up starts it after moto)")
    proxy_call(url, "/_lab/proxy/reset", "POST")
    return url


def s3_requests(url):
    return [r for r in proxy_call(url, "/_lab/proxy/requests")["requests"] if r["service"] == "s3"]


def is_create_bucket(record):
    # CreateBucket is the one S3 operation without an ExpectedBucketOwner parameter
    return record["method"] == "PUT" and record["path"].count("/") == 1 and not record["query"]


def assert_every_request_names_the_owner(records):
    missing = [(r["method"], r["path"], r["query"]) for r in records
               if not is_create_bucket(r) and r["headers"].get("x-amz-expected-bucket-owner") != ACCOUNT]
    assert not missing, "S3 requests without x-amz-expected-bucket-owner=%s: %s" % (ACCOUNT, missing)
    for record in records:
        if not is_create_bucket(record):
            signed = record["headers"]["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
            assert "x-amz-expected-bucket-owner" in signed, record["path"]


def key_task(name, **args):
    base = {"bucket": BUCKET, "object": "volumes/web-01.key", "instance_id": IID, "launch_id": "ebo-1",
            "omit_conditioned_denies": True}
    base.update(args)
    return {"name": name, "cloudefigo.core.volume_key": base, "register": "out"}


def test_volume_key_sends_expected_bucket_owner_on_every_s3_request(aws, lab, proxy, playbook, tmp_path):
    connection = {"endpoint_url": proxy, "access_key": "testing", "secret_key": "testing", "region": "us-east-1"}
    aws.client("s3").create_bucket(Bucket=BUCKET)  # a bucket to adopt a key from, made directly at moto
    aws.client("s3").put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    aws.client("s3").put_object(Bucket=BUCKET, Key="volumes/legacy.key", Body=b"x" * 64)
    play = [{
        "name": "ExpectedBucketOwner test",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "module_defaults": {"group/cloudefigo.core.all": connection},
        "tasks": [
            key_task("Create in check mode", bucket=BUCKET + "-new"),
            key_task("Create in a new bucket", bucket=BUCKET + "-new"),
            key_task("Create"),
            key_task("Again"),
            key_task("Adopt", object="volumes/legacy.key", adopt_instance_id=IID),
            key_task("Shred", state="absent"),
            key_task("Shred the new bucket's", bucket=BUCKET + "-new", state="absent"),
        ],
    }]
    (tmp_path / "play.yml").write_text(json.dumps(play))
    result = playbook(str(tmp_path / "play.yml"))
    assert result.rc == 0, result.stdout[-8000:]
    records = s3_requests(proxy)
    operations = set((r["method"], r["query"].split("&")[0].split("=")[0]) for r in records)
    # the run did what it is meant to (so the check below cannot pass on an empty list)
    for expected in [("PUT", ""), ("GET", "versions"), ("GET", "tagging"), ("PUT", "tagging"), ("PUT", "versioning"),
                     ("PUT", "encryption"), ("PUT", "publicAccessBlock"), ("POST", "delete"), ("GET", "replication"),
                     ("GET", "object-lock"), ("GET", "ownershipControls"), ("HEAD", "")]:
        assert expected in operations, (expected, sorted(operations))
    assert sum(1 for r in records if is_create_bucket(r)) == 1
    assert_every_request_names_the_owner(records)


def test_instance_script_sends_expected_bucket_owner(aws, lab, proxy, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="volumes/web-01.key", Body=b"k" * 64)
    out = tmp_path / "key"
    # the proxy plays IMDS (moto's credentials, the identity document) and S3
    proc = subprocess.run([sys.executable, SCRIPT, "--bucket", BUCKET, "--object", "volumes/web-01.key", "--out", str(out),
                           "--imds-url", proxy, "--endpoint", proxy, "--timeout", "20"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == b"k" * 64
    records = proxy_call(proxy, "/_lab/proxy/requests")["requests"]
    imds = [r for r in records if r["service"] == "imds"]
    assert "/latest/dynamic/instance-identity/document" in [r["path"] for r in imds]
    assert all(r["headers"].get("x-aws-ec2-metadata-token") for r in imds if r["method"] == "GET"), "IMDSv1 request"
    gets = [r for r in records if r["service"] == "s3"]
    assert [(r["method"], r["path"]) for r in gets] == [("GET", "/%s/volumes/web-01.key" % BUCKET)]
    assert_every_request_names_the_owner(gets)

    # an explicit owner wins over the identity document
    proxy_call(proxy, "/_lab/proxy/reset", "POST")
    proc = subprocess.run([sys.executable, SCRIPT, "--bucket", BUCKET, "--object", "volumes/web-01.key", "--out", str(out),
                           "--imds-url", proxy, "--endpoint", proxy, "--timeout", "20", "--expected-bucket-owner", "210987654321"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr  # moto ignores the header; AWS would answer 403 here
    records = proxy_call(proxy, "/_lab/proxy/requests")["requests"]
    assert [r["headers"]["x-amz-expected-bucket-owner"] for r in records if r["service"] == "s3"] == ["210987654321"]
    assert "/latest/dynamic/instance-identity/document" not in [r["path"] for r in records]
