"""Unit tests for module_utils/_launch_record: the S3 I/O of a launch record (stub S3, no AWS)."""
from urllib.parse import parse_qsl

import pytest
from botocore.exceptions import ClientError

from ansible_collections.cloudefigo.core.plugins.module_utils import _launch_record as lr
from ansible_collections.cloudefigo.core.plugins.module_utils import _reconcile as rc

IID = "i-0123456789abcdef0"
KEY = "cloudefigo-records/us-east-1/" + IID
OWNER = "123456789012"


class Stop(Exception):
    pass


class StubModule:
    check_mode = False

    def fail_json(self, **kwargs):
        raise Stop(kwargs["msg"])

    def fail_json_aws(self, error, msg):
        raise Stop("%s: %s" % (msg, error))


def error(code, operation="GetObjectTagging"):
    return ClientError({"Error": {"Code": code, "Message": code}}, operation)


class StubS3:
    def __init__(self, tags=None, read_error=None, versions=()):
        self.tags = tags
        self.read_error = read_error
        self.versions = list(versions)
        self.calls = []

    def get_object_tagging(self, **kwargs):
        self.calls.append(("get_object_tagging", kwargs))
        if self.read_error:
            raise self.read_error
        if self.tags is None:
            raise error("NoSuchKey")
        return {"TagSet": [{"Key": k, "Value": v} for k, v in self.tags.items()]}

    def put_object(self, **kwargs):
        self.calls.append(("put_object", kwargs))
        self.tags = dict(parse_qsl(kwargs["Tagging"]))

    def put_object_tagging(self, **kwargs):
        self.calls.append(("put_object_tagging", kwargs))
        self.tags = dict((t["Key"], t["Value"]) for t in kwargs["Tagging"]["TagSet"])

    def get_paginator(self, name):
        stub = self

        class Pages:
            def paginate(self, **kwargs):
                stub.calls.append((name, kwargs))
                return [{"Versions": stub.versions}]
        return Pages()

    def delete_objects(self, **kwargs):
        self.calls.append(("delete_objects", kwargs))
        return {}

    def writes(self):
        return [name for name, _kwargs in self.calls if name in ("put_object", "put_object_tagging", "delete_objects")]


def wanted(**extra):
    fields = dict(role_name="cloudefigo-web-01", key_object="volumes/web-01.key", volume_ids=["vol-0123456789abcdef0"], chef_node="web-01")
    fields.update(extra)
    launch_id = fields.pop("launch_id", "l1")
    return lr.wanted_record(IID, launch_id, "us-east-1", OWNER, **fields)


def test_wanted_record_profile_defaults_to_the_role():
    assert wanted()["instance_profile_name"] == "cloudefigo-web-01"
    assert wanted(instance_profile_name="p")["instance_profile_name"] == "p"


def test_a_failed_lookup_is_never_no_record():
    s3 = StubS3(read_error=error("AccessDenied"))
    with pytest.raises(Stop) as err:
        lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(), False)
    assert "never taken for 'no record'" in str(err.value)
    assert s3.writes() == []


@pytest.mark.parametrize("code", ["NoSuchKey", "NoSuchBucket", "404"])
def test_missing_record_or_bucket_is_no_record(code):
    assert lr.read_record(StubModule(), StubS3(read_error=error(code)), "keys", KEY, OWNER) is None


def test_first_write_puts_an_empty_object_with_every_tag_quoted():
    s3 = StubS3()
    changed, before, after = lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(chef_node="web-01@prod"), False)
    assert changed and before is None
    name, kwargs = s3.calls[-1]
    assert name == "put_object" and kwargs["Body"] == b"" and kwargs["ExpectedBucketOwner"] == OWNER
    assert "web-01%40prod" in kwargs["Tagging"]
    assert s3.tags == rc.record_tags(after) and rc.record_from_tags(s3.tags, KEY) == after


def test_same_record_again_writes_nothing():
    s3 = StubS3()
    lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(), False)
    changed, before, after = lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(volume_ids=[]), False)
    assert not changed and before == after
    assert s3.writes() == ["put_object"]


def test_check_mode_writes_nothing_but_says_it_would():
    s3 = StubS3()
    changed, before, after = lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(), True)
    assert changed and before is None and after["instance_id"] == IID
    assert s3.writes() == []


def test_another_launch_is_refused_naming_the_option():
    s3 = StubS3()
    lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(launch_id="l0"), False)
    with pytest.raises(Stop) as err:
        lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(), False, option="launch_record")
    assert str(err.value).startswith("launch_record: ") and "names launch l0, not l1" in str(err.value)
    assert s3.writes() == ["put_object"]


def test_update_retags_and_volumes_only_grow():
    s3 = StubS3()
    lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(), False)
    changed, before, after = lr.ensure_record(StubModule(), s3, "keys", KEY, OWNER, wanted(volume_ids=["vol-0fedcba9876543210"]), False)
    assert changed and s3.writes() == ["put_object", "put_object_tagging"]
    assert after["volume_ids"] == ["vol-0123456789abcdef0", "vol-0fedcba9876543210"]


def test_delete_all_versions_of_exactly_the_key_not_in_check_mode():
    versions = [{"Key": KEY, "VersionId": "a"}, {"Key": KEY + "-other", "VersionId": "b"}]
    module = StubModule()
    module.check_mode = True
    s3 = StubS3(versions=versions)
    assert lr.delete_all_versions(module, s3, "keys", KEY, OWNER) == 1 and s3.writes() == []
    module.check_mode = False
    assert lr.delete_all_versions(module, s3, "keys", KEY, OWNER) == 1
    assert s3.calls[-1][1]["Delete"]["Objects"] == [{"Key": KEY, "VersionId": "a"}]
