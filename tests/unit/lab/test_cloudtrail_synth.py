# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""lab/cloudtrail_synth.py: the lab proxy's recorded requests as labelled CloudTrail records."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import records
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.sources import S3_LOG_KEY

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "..", "lab", "cloudtrail_synth.py")


@pytest.fixture(scope="module")
def synth():
    spec = importlib.util.spec_from_file_location("cloudtrail_synth", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _auth(key="testing", region="us-east-1", service="ec2"):
    return ("AWS4-HMAC-SHA256 Credential=%s/20261129/%s/%s/aws4_request, SignedHeaders=host, Signature=ab"
            % (key, region, service))


def _record(seq, method, path, service, action=None, status=200, params=None, key="testing", region="us-east-1",
            headers=None):
    scope_service = service if service != "imds" else "ec2"
    heads = {"authorization": _auth(key, region, scope_service), "user-agent": "Boto3/1.35 md/Botocore"}
    if service == "imds":
        heads = {}
    heads.update(headers or {})
    return {"seq": seq, "time": 1796000000.0 + seq, "method": method, "path": path, "query": "",
            "params": params or {}, "headers": heads, "service": service, "action": action,
            "body_bytes": 0, "status": status, "answered_by": "moto"}


def test_query_api_call_becomes_a_labelled_record(synth):
    event = synth.to_event(_record(3, "POST", "/", "ec2", action="RunInstances"), account="123456789012")
    assert event["eventName"] == "RunInstances"
    assert event["eventSource"] == "ec2.amazonaws.com"
    assert event["awsRegion"] == "us-east-1"
    assert event["eventTime"] == "2026-11-30T00:53:23Z"
    assert event["userIdentity"]["accessKeyId"] == "testing"
    assert event["userIdentity"]["arn"] == "arn:aws:iam::123456789012:user/lab-controller"
    assert event["recipientAccountId"] == "123456789012"
    assert event["additionalEventData"]["cloudefigo:synthetic"] is True
    assert event["userAgent"].startswith("cloudefigo-synthetic")
    assert event["readOnly"] is False and "errorCode" not in event
    assert event["requestID"] and event["eventID"]


@pytest.mark.parametrize("method, path, params, headers, name", [
    ("GET", "/", {}, {}, "ListBuckets"),
    ("PUT", "/keys", {}, {}, "CreateBucket"),
    ("PUT", "/keys", {"policy": [""]}, {}, "PutBucketPolicy"),
    ("GET", "/keys", {"versioning": [""]}, {}, "GetBucketVersioning"),
    ("DELETE", "/keys", {"encryption": [""]}, {}, "DeleteBucketEncryption"),
    ("GET", "/keys", {"list-type": ["2"]}, {}, "ListObjectsV2"),
    ("GET", "/keys", {"versions": [""]}, {}, "ListObjectVersions"),
    ("HEAD", "/keys", {}, {}, "HeadBucket"),
    ("POST", "/keys", {"delete": [""]}, {}, "DeleteObjects"),
    ("PUT", "/keys/volumes/a.key", {}, {}, "PutObject"),
    ("PUT", "/keys/b", {}, {"x-amz-copy-source": "/keys/a"}, "CopyObject"),
    ("GET", "/keys/volumes/a.key", {}, {}, "GetObject"),
    ("GET", "/keys/a", {"tagging": [""]}, {}, "GetObjectTagging"),
    ("DELETE", "/keys/a", {}, {}, "DeleteObject"),
    ("POST", "/keys/a", {"uploads": [""]}, {}, "CreateMultipartUpload"),
])
def test_s3_rest_operations(synth, method, path, params, headers, name):
    assert synth.s3_operation(method, path, params, headers) == name


def test_s3_object_call_is_a_data_event_with_its_bucket_and_key(synth):
    event = synth.to_event(_record(1, "GET", "/keys/volumes/a.key", "s3", status=403))
    assert event["eventName"] == "GetObject"
    assert event["eventSource"] == "s3.amazonaws.com"
    assert event["requestParameters"] == {"bucketName": "keys", "key": "volumes/a.key"}
    assert event["eventCategory"] == "Data" and event["readOnly"] is True
    assert event["errorCode"] == "AccessDenied"


def test_instance_credentials_are_an_assumed_role(synth):
    event = synth.to_event(_record(1, "GET", "/keys/k", "s3", key="ASIAEXAMPLE123"))
    assert event["userIdentity"]["type"] == "AssumedRole"
    assert event["userIdentity"]["accessKeyId"] == "ASIAEXAMPLE123"


def test_imds_and_unsigned_requests_are_left_out(synth):
    unsigned = _record(2, "GET", "/x", "s3")
    unsigned["headers"] = {}
    assert synth.to_event(_record(1, "GET", "/latest/meta-data/", "imds")) is None
    assert synth.to_event(unsigned) is None
    assert synth.convert([_record(1, "GET", "/latest/meta-data/", "imds"), unsigned]) == []


def test_same_log_gives_the_same_ids(synth):
    log = [_record(i, "POST", "/", "iam", action="CreateRole") for i in range(3)]
    first, second = synth.convert(log), synth.convert(log)
    assert [e["eventID"] for e in first] == [e["eventID"] for e in second]
    assert len({e["eventID"] for e in first}) == 3


def test_log_file_is_a_cloudtrail_file_the_loader_reads(synth, tmp_path):
    log = tmp_path / "proxy.jsonl"
    log.write_text("\n".join(json.dumps(r) for r in [
        _record(1, "POST", "/", "sts", action="GetCallerIdentity"),
        _record(2, "PUT", "/trail", "s3"),
        _record(3, "POST", "/", "ec2", action="DescribeInstances", region="eu-west-1"),
        _record(4, "GET", "/latest/api/token", "imds"),
    ]) + "\n")
    events = synth.convert(synth.read_log(str(log)))
    key, body = synth.log_file(events)
    assert S3_LOG_KEY.match(key), key
    assert key.startswith("AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/30/")
    loaded = records.parse_log(body)
    assert [r["eventName"] for r in loaded] == ["GetCallerIdentity", "CreateBucket", "DescribeInstances"]
    rows = [records.row_values(r) for r in loaded]
    assert rows[2][5] == "eu-west-1"  # aws_region
    assert all(row[1] for row in rows)  # event_time parsed
    assert json.loads(gzip.decompress(body))["Records"][0]["additionalEventData"]["cloudefigo:synthetic"] is True
