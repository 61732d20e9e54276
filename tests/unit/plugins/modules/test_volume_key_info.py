"""Unit tests for cloudefigo.core.volume_key_info: input, lookups that fail closed, owner of the newest version."""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as kc
from ansible_collections.cloudefigo.core.plugins.modules import volume_key_info as vki

IID = "i-0123456789abcdef0"
ARN = "arn:aws:ec2:us-east-1:123456789012:instance/" + IID
OWNER = "123456789012"


@pytest.mark.parametrize("extra, option, text", [
    ({"bucket": "Bad_Bucket"}, "bucket", "not a valid S3 bucket name"),
    ({"object": ""}, "object", "it is empty"),
    ({"expected_bucket_owner": "12"}, "expected_bucket_owner", "12-digit"),
])
def test_main_fails_naming_option(run_aws_main, extra, option, text):
    args = dict({"bucket": "keys", "object": "volumes/web-01.key"}, **extra)
    result = run_aws_main(vki.main, **args)
    assert result["failed"] is True
    assert option in result["msg"] and text in result["msg"], result["msg"]
    assert "exception" not in result


def test_main_fails_closed_when_s3_cannot_be_reached(run_aws_main):
    # nothing listens on the endpoint: the lookup fails, and that is a failure, never "no key"
    result = run_aws_main(vki.main, bucket="keys", object="volumes/web-01.key", expected_bucket_owner=OWNER)
    assert result["failed"] is True
    assert "never taken for 'no key'" in result["msg"], result["msg"]
    assert "exists" not in result and "owner" not in result


class Stop(Exception):
    pass


class StubModule:
    def __init__(self):
        self.failed = None

    def fail_json_aws(self, error, msg):
        self.failed = msg
        raise Stop(msg)


def error(code, operation):
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class StubS3:
    def __init__(self, versions=(), markers=(), tags=None, list_error=None, tag_error=None):
        self._versions, self._markers = list(versions), list(markers)
        self._tags = tags or {}
        self.list_error, self.tag_error = list_error, tag_error
        self.calls = []

    def get_paginator(self, name):
        stub = self

        class Pages:
            def paginate(self, **kwargs):
                stub.calls.append((name, kwargs))
                if stub.list_error:
                    raise stub.list_error
                return [{"Versions": stub._versions, "DeleteMarkers": stub._markers}]
        return Pages()

    def get_object_tagging(self, **kwargs):
        self.calls.append(("get_object_tagging", kwargs))
        if self.tag_error:
            raise self.tag_error
        return {"TagSet": [{"Key": k, "Value": v} for k, v in self._tags.get(kwargs["VersionId"], {}).items()]}

    def __getattr__(self, name):  # any other S3 call (GetObject, HeadObject, writes) is a test failure
        raise AssertionError("volume_key_info must not call %s" % name)


def version(vid, latest, when, key="volumes/web-01.key"):
    return {"Key": key, "VersionId": vid, "IsLatest": latest, "Size": 64, "LastModified": when}


def look(s3):
    return vki.look_up(StubModule(), s3, "keys", "volumes/web-01.key", OWNER)


def test_absent_object_and_prefix_neighbours():
    s3 = StubS3([version("n1", True, 1, key="volumes/web-01.key.old")], tags={"n1": kc.marks("i-0fedcba9876543210", "l0", "x")})
    result = look(s3)
    assert result == {"exists": False, "versions": 0, "delete_marker_current": False, "owner": None}
    assert [c[0] for c in s3.calls] == ["list_object_versions"]  # no tag read without a version
    assert s3.calls[0][1] == {"Bucket": "keys", "Prefix": "volumes/web-01.key", "ExpectedBucketOwner": OWNER}


def test_missing_bucket_is_no_key():
    assert look(StubS3(list_error=error("NoSuchBucket", "ListObjectVersions")))["exists"] is False


@pytest.mark.parametrize("code", ["AccessDenied", "403", "InternalError"])
def test_a_failed_listing_stops_the_module(code):
    with pytest.raises(Stop) as err:
        look(StubS3(list_error=error(code, "ListObjectVersions")))
    assert "never taken for 'no key'" in str(err.value)
    assert "expected_bucket_owner" in str(err.value)


def test_a_failed_tag_read_stops_the_module():
    s3 = StubS3([version("v1", True, 1)], tag_error=error("AccessDenied", "GetObjectTagging"))
    with pytest.raises(Stop) as err:
        look(s3)
    assert "never taken for 'no owner'" in str(err.value) and "v1" in str(err.value)


def test_owner_of_the_current_version_with_expected_bucket_owner_on_every_call():
    tags = {"v2": dict(kc.marks(IID, "l2", ARN), Name="web-01"), "v1": kc.marks("i-0fedcba9876543210", "l0", "x")}
    s3 = StubS3([version("v2", True, 2), version("v1", False, 1)], tags=tags)
    result = look(s3)
    assert result == {"exists": True, "versions": 2, "delete_marker_current": False,
                      "owner": {"instance_id": IID, "launch_id": "l2", "instance_arn": ARN}}
    assert [(c[0], c[1].get("VersionId")) for c in s3.calls] == [("list_object_versions", None), ("get_object_tagging", "v2")]
    for name, kwargs in s3.calls:
        assert kwargs["ExpectedBucketOwner"] == OWNER, name


def test_delete_marker_on_top_names_the_newest_older_version():
    tags = {"v2": kc.marks("i-0fedcba9876543210", "other", "x"), "v1": kc.marks(IID, "l1", ARN)}
    s3 = StubS3([version("v1", False, 1), version("v2", False, 2)], [{"Key": "volumes/web-01.key", "VersionId": "m", "IsLatest": True}], tags)
    result = look(s3)
    assert result["exists"] is False and result["delete_marker_current"] is True and result["versions"] == 2
    assert result["owner"]["launch_id"] == "other"  # the one volume_key would judge by


def test_unmarked_key_has_no_owner():
    result = look(StubS3([version("v1", True, 1)], tags={"v1": {"Name": "legacy"}}))
    assert result["exists"] is True and result["owner"] is None


def test_tag_writer_cannot_fake_a_missing_launch():
    # someone who can only write tags and removes the launch mark: the owner is reported without a launch,
    # which the playbooks treat as another launch's (launch_id '' never equals a launch id)
    result = look(StubS3([version("v1", True, 1)], tags={"v1": {kc.TAG_INSTANCE_ID: IID}}))
    assert result["owner"] == {"instance_id": IID, "launch_id": None, "instance_arn": None}


def test_volume_key_and_info_pick_the_same_version():
    versions = [version("a", False, 3), version("b", False, 5), version("c", False, 4)]
    assert kc.newest_version(versions)["VersionId"] == "b"
    assert kc.newest_version([version("a", False, 9), version("b", True, 1)])["VersionId"] == "b"
    assert kc.newest_version([]) is None


@pytest.mark.parametrize("extra, text", [
    ({"objects": ["volumes/a.key", ""]}, "objects[1]"),
    ({"object": "volumes/a.key", "objects": ["volumes/b.key"]}, "mutually exclusive"),
    ({}, "one of the following is required"),
])
def test_objects_input_fails_naming_option(run_aws_main, extra, text):
    result = run_aws_main(vki.main, bucket="keys", **extra)
    assert result["failed"] is True and text in result["msg"], result["msg"]


def test_objects_are_looked_up_one_by_one_in_order(run_aws_main, monkeypatch):
    s3 = StubS3([version("v1", True, 1, key="volumes/a.key")], tags={"v1": kc.marks(IID, "launch-1", ARN)})
    monkeypatch.setattr(vki, "retrying_client", lambda module, name: s3)
    result = run_aws_main(vki.main, bucket="keys", objects=["volumes/a.key", "volumes/b.key"], expected_bucket_owner=OWNER)
    assert not result.get("failed"), result
    assert [o["object"] for o in result["objects"]] == ["volumes/a.key", "volumes/b.key"]
    first, second = result["objects"]
    assert first["exists"] is True and first["owner"]["launch_id"] == "launch-1"
    assert second["exists"] is False and second["owner"] is None and second["versions"] == 0
    # every request names the expected owner; only listings and the tag read of the one version
    assert all(call[1]["ExpectedBucketOwner"] == OWNER for call in s3.calls)
    assert [call[0] for call in s3.calls] == ["list_object_versions", "get_object_tagging", "list_object_versions"]
