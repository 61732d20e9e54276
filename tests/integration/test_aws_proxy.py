"""Contract of the lab's AWS proxy (lab/services/aws_proxy.py), which later behaviours build on.

It forwards to moto unchanged, records every request (never its body), answers its control
endpoints itself, and runs behaviours in order before forwarding.
"""
import json
import os
import sys
import urllib.error
import urllib.request

import pytest

from _lab import ROOT

sys.path.insert(0, os.path.join(ROOT, "lab"))
from services import aws_proxy  # noqa: E402


def get(url):
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.status, resp.read()


def post(url):
    req = urllib.request.Request(url, data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, resp.read()


@pytest.fixture
def proxy(lab):
    url = lab.get("LAB_AWS_PROXY_ENDPOINT")
    if not url:
        pytest.fail("the lab runs no aws_proxy (lab/lab up starts it after moto)")
    post(url + "/_lab/proxy/reset")
    return url


def recorded(url):
    return json.loads(get(url + "/_lab/proxy/requests")[1])["requests"]


def test_env_keeps_moto_and_adds_the_proxy(lab, proxy):
    assert lab["LAB_AWS_ENDPOINT"] != proxy
    assert lab["LAB_AWS_PROXY_ENDPOINT_FROM_VM"].startswith("http://10.0.2.2:")
    assert lab["LAB_AWS_PROXY_ENDPOINT_FROM_VM"].rsplit(":", 1)[1] == proxy.rsplit(":", 1)[1]
    status, body = get(proxy + "/_lab/proxy/health")
    assert status == 200 and json.loads(body) == {"ok": True, "upstream": lab["LAB_AWS_ENDPOINT"]}


def test_forwards_and_records_every_request_without_bodies(aws, lab, proxy):
    import boto3
    secret = b"do-not-record-me-" * 8
    s3 = boto3.client("s3", endpoint_url=proxy, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    sts = boto3.client("sts", endpoint_url=proxy, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="proxy-contract")
    s3.put_object(Bucket="proxy-contract", Key="dir/a b.key", Body=secret, ExpectedBucketOwner="123456789012")
    assert s3.get_object(Bucket="proxy-contract", Key="dir/a b.key")["Body"].read() == secret
    assert s3.head_object(Bucket="proxy-contract", Key="dir/a b.key")["ContentLength"] == len(secret)
    assert [o["Key"] for o in s3.list_object_versions(Bucket="proxy-contract")["Versions"]] == ["dir/a b.key"]
    with pytest.raises(Exception):
        s3.get_object(Bucket="proxy-contract", Key="missing")
    assert sts.get_caller_identity()["Account"] == "123456789012"
    # what went through the proxy reached moto
    assert aws.client("s3").get_object(Bucket="proxy-contract", Key="dir/a b.key")["Body"].read() == secret

    records = recorded(proxy)
    summary = [(r["method"], r["path"], r["service"], r["status"]) for r in records]
    assert summary == [
        ("PUT", "/proxy-contract", "s3", 200),
        ("PUT", "/proxy-contract/dir/a%20b.key", "s3", 200),
        ("GET", "/proxy-contract/dir/a%20b.key", "s3", 200),
        ("HEAD", "/proxy-contract/dir/a%20b.key", "s3", 200),
        ("GET", "/proxy-contract", "s3", 200),
        ("GET", "/proxy-contract/missing", "s3", 404),
        ("POST", "/", "sts", 200),
    ]
    assert [r["seq"] for r in records] == sorted(r["seq"] for r in records)
    # the operation of a Query API call (form body) is recorded, the rest of the body is not
    assert [r["action"] for r in records] == [None] * 6 + ["GetCallerIdentity"]
    put = records[1]
    assert put["headers"]["x-amz-expected-bucket-owner"] == "123456789012"
    assert put["body_bytes"] == len(secret) and put["answered_by"] == "moto"
    assert records[4]["query"].startswith("versions") and "versions" in records[4]["params"]
    assert all(name == name.lower() for r in records for name in r["headers"])
    # the log file says the same, and neither holds a body
    with open(lab["LAB_AWS_PROXY_LOG"]) as handle:
        lines = [json.loads(line) for line in handle]
    assert lines == records
    assert b"do-not-record-me" not in get(proxy + "/_lab/proxy/requests")[1]
    assert "do-not-record-me" not in open(lab["LAB_AWS_PROXY_LOG"]).read()

    post(proxy + "/_lab/proxy/reset")
    assert recorded(proxy) == []
    assert open(lab["LAB_AWS_PROXY_LOG"]).read() == ""


def test_control_endpoints_are_neither_forwarded_nor_recorded(proxy):
    with pytest.raises(urllib.error.HTTPError) as err:
        get(proxy + "/_lab/proxy/nothing-here")
    assert err.value.code == 404
    assert recorded(proxy) == []


def test_imds_identity_document_behaviour_and_imds_passthrough(proxy):
    status, body = get(proxy + "/latest/dynamic/instance-identity/document")
    assert status == 200 and json.loads(body)["accountId"] == "123456789012"
    status, body = get(proxy + "/latest/meta-data/placement/region")  # moto's IMDS, through the proxy
    assert (status, body) == (200, b"us-east-1")
    records = recorded(proxy)
    assert [(r["path"], r["service"], r["answered_by"]) for r in records] == [
        ("/latest/dynamic/instance-identity/document", "imds", "imds_identity_document"),
        ("/latest/meta-data/placement/region", "imds", "moto"),
    ]


def test_behaviours_run_in_order_before_forwarding(lab, tmp_path):
    """The extension point later behaviours use: (name, function(Request) -> Response | None)."""
    seen = []

    def fail_puts(request):
        seen.append(request.method)
        if request.method == "PUT" and request.path.startswith("/flaky"):
            return aws_proxy.Response(503, "<Error><Code>SlowDown</Code></Error>", {"Content-Type": "application/xml"})
        return None

    server = aws_proxy.serve(lab["LAB_AWS_ENDPOINT"], 0, str(tmp_path / "log.jsonl"),
                             behaviours=[("fail_puts", fail_puts)] + aws_proxy.BEHAVIOURS)
    try:
        url = "http://127.0.0.1:%d" % server.server_address[1]
        req = urllib.request.Request(url + "/flaky", data=b"", method="PUT")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=30)
        assert err.value.code == 503
        assert get(url + "/latest/dynamic/instance-identity/document")[0] == 200
        records = server.recorder.snapshot()
        assert [(r["method"], r["status"], r["answered_by"]) for r in records] == [
            ("PUT", 503, "fail_puts"), ("GET", 200, "imds_identity_document")]
        assert seen == ["PUT", "GET"]
    finally:
        server.shutdown()
        server.server_close()


def post_json(url, payload):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def test_ec2_console_output_behaviour_answers_bound_instances_from_their_console(aws, lab, proxy, tmp_path):
    """GetConsoleOutput of a bound instance comes from its console file (the lab VM's serial
    console by default), in the shape botocore's ec2 model parses; other instances get moto's."""
    import boto3
    ec2 = boto3.client("ec2", endpoint_url=proxy, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    bound, other = [i["InstanceId"] for i in ec2.run_instances(ImageId="ami-1e749f67", MinCount=2, MaxCount=2)["Instances"]]
    console = tmp_path / "console.log"
    head = b"x" * (70 * 1024)  # more than the 64 KB GetConsoleOutput returns
    tail = b"-----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAA root@lab-vm\r\n-----END SSH HOST KEY KEYS-----\r\n"
    console.write_bytes(head + tail)

    status, answer = post_json(proxy + "/_lab/proxy/console", {"instance_id": bound, "console_file": str(console)})
    assert status == 200 and answer["console_file"] == str(console)
    assert json.loads(get(proxy + "/_lab/proxy/console")[1]) == {"consoles": {bound: str(console)}}
    status, answer = post_json(proxy + "/_lab/proxy/console", {"instance_id": other})  # default: the VM's console
    assert answer["console_file"] == os.path.join(os.path.dirname(lab["LAB_AWS_PROXY_LOG"]), "vm-console.log")

    got = ec2.get_console_output(InstanceId=bound)
    assert got["InstanceId"] == bound and got["Timestamp"].year >= 2024
    assert got["Output"] == (head + tail)[-64 * 1024:].decode() and got["Output"].endswith(tail.decode())
    assert [r["answered_by"] for r in recorded(proxy) if r["service"] == "ec2"][-1] == "ec2_console_output"
    with pytest.raises(urllib.error.HTTPError) as err:
        post_json(proxy + "/_lab/proxy/console", {"instance_id": "not-an-instance"})
    assert err.value.code == 400

    post(proxy + "/_lab/proxy/reset")  # forgets the bindings: moto answers again
    assert json.loads(get(proxy + "/_lab/proxy/console")[1]) == {"consoles": {}}
    assert "SSH HOST KEY" not in (ec2.get_console_output(InstanceId=bound).get("Output") or "")
    assert [r["answered_by"] for r in recorded(proxy) if r["service"] == "ec2"] == ["moto"]


def imds(url, path, token=True):
    headers = {"X-aws-ec2-metadata-token": "lab-token"} if token else {}
    req = urllib.request.Request(url + "/latest/" + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_imds_vm_instance_behaviour_serves_the_instance_the_vm_stands_in_for(aws, lab, proxy, tmp_path):
    """Pull mode in the lab: for the instance bound to the VM's console, IMDS answers its id, the
    user data moto stored, its tags, and role credentials only once a profile is associated."""
    import boto3
    kwargs = dict(endpoint_url=proxy, region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2, iam = boto3.client("ec2", **kwargs), boto3.client("iam", **kwargs)
    user_data = b"#cloud-config\nruncmd:\n- [true]\n"
    vm_id = ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1, UserData=user_data.decode())["Instances"][0]["InstanceId"]
    other = ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    assert imds(proxy, "meta-data/instance-id")[1] != vm_id.encode()  # nothing bound: moto's IMDS

    assert json.loads(get(proxy + "/_lab/proxy/vm-instance")[1]) == {"instance_id": None}
    post_json(proxy + "/_lab/proxy/console", {"instance_id": vm_id})  # the VM's console: the VM stands in for it
    post_json(proxy + "/_lab/proxy/console", {"instance_id": other, "console_file": str(tmp_path / "c.log")})
    assert json.loads(get(proxy + "/_lab/proxy/vm-instance")[1]) == {"instance_id": vm_id}  # unrecorded control
    assert imds(proxy, "meta-data/instance-id", token=False)[0] == 401  # IMDSv2 only
    assert imds(proxy, "meta-data/instance-id") == (200, vm_id.encode())
    assert imds(proxy, "user-data") == (200, user_data)
    doc = json.loads(imds(proxy, "dynamic/instance-identity/document")[1])
    assert doc["instanceId"] == vm_id and doc["accountId"] == "123456789012"

    # no credentials before the profile association (the secure launch associates it after launch)
    assert imds(proxy, "meta-data/iam/security-credentials/")[0] == 404
    iam.create_role(RoleName="vm-role", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}))
    profile = iam.create_instance_profile(InstanceProfileName="vm-profile")["InstanceProfile"]
    ec2.associate_iam_instance_profile(InstanceId=other, IamInstanceProfile={"Arn": profile["Arn"]})
    assert imds(proxy, "meta-data/iam/security-credentials/")[0] == 404  # another instance's profile
    ec2.associate_iam_instance_profile(InstanceId=vm_id, IamInstanceProfile={"Arn": profile["Arn"]})
    status, roles = imds(proxy, "meta-data/iam/security-credentials/")
    assert status == 200 and roles.strip()
    assert "AccessKeyId" in json.loads(imds(proxy, "meta-data/iam/security-credentials/" + roles.decode().split()[0])[1])

    assert imds(proxy, "meta-data/tags/instance/cloudefigo:data-volume")[0] == 404
    ec2.create_tags(Resources=[vm_id], Tags=[{"Key": "cloudefigo:data-volume", "Value": "vol-0123456789abcdef0"}])
    ec2.create_tags(Resources=[other], Tags=[{"Key": "cloudefigo:data-volume", "Value": "vol-0fffffffffffffff0"}])
    assert imds(proxy, "meta-data/tags/instance/cloudefigo:data-volume") == (200, b"vol-0123456789abcdef0")
    assert b"cloudefigo:data-volume" in imds(proxy, "meta-data/tags/instance")[1]
    answered = {r["path"]: r["answered_by"] for r in recorded(proxy) if r["service"] == "imds"}
    assert answered["/latest/user-data"] == answered["/latest/meta-data/instance-id"] == "imds_vm_instance"

    post(proxy + "/_lab/proxy/reset")  # no binding: moto's IMDS again
    assert imds(proxy, "meta-data/instance-id")[1] != vm_id.encode()
