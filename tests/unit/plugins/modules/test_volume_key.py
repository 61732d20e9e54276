"""Unit tests for cloudefigo.core.volume_key: validation, the lab switch, ownership and lookups (no AWS)."""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as kc
from ansible_collections.cloudefigo.core.plugins.modules import volume_key as vk

IID = "i-0123456789abcdef0"
BASE = {"bucket": "keys", "object": "k", "instance_id": IID, "launch_id": "l1"}


def args(**extra):
    out = dict(BASE)
    out.update(extra)
    return out


@pytest.mark.parametrize("extra, option, text", [
    ({"bucket": "Bad_Bucket"}, "bucket", "not a valid S3 bucket name"),
    ({"bucket": "xn--keys"}, "bucket", "reserves"),
    ({"bucket": "keys..x"}, "bucket", "adjacent"),
    ({"object": ""}, "object", "it is empty"),
    ({"key_bytes": 16}, "key_bytes", "at least 256 bits"),
    ({"key_bytes": 100000}, "key_bytes", "between 32 and 8192"),
    ({"state": "shredded"}, "state", "must be one of"),
    ({"kms_key_id": " "}, "kms_key_id", "empty"),
    ({"instance_id": "web-01"}, "instance_id", "EC2 instance id"),
    ({"launch_id": None}, "launch_id", "required with state=present"),
    ({"launch_id": "has spaces"}, "launch_id", "1-128 characters"),
    ({"adopt_instance_id": "i-0fedcba9876543210"}, "adopt_instance_id", "must equal instance_id"),
    ({"expected_bucket_owner": "12"}, "expected_bucket_owner", "12-digit"),
    ({"controller_principals": ["arn:aws:sts::123456789012:assumed-role/c/s"]}, "controller_principals", "not an IAM role"),
    ({"controller_principals": []}, "controller_principals", "empty"),
    ({"omit_conditioned_denies": True, "endpoint_url": None}, "omit_conditioned_denies", "endpoint_url"),
    ({"deny_insecure_transport": False, "endpoint_url": None}, "omit_conditioned_denies", "endpoint_url"),
    ({"deny_insecure_transport": True, "omit_conditioned_denies": True}, "deny_insecure_transport", "contradicts"),
])
def test_main_fails_naming_option(run_aws_main, extra, option, text):
    result = run_aws_main(vk.main, **args(**extra))
    assert result["failed"] is True
    assert option in result["msg"] and text in result["msg"], result["msg"]
    assert "exception" not in result


def test_absent_does_not_need_a_launch_id():
    params = dict(args(state="absent", launch_id=None), key_bytes=64, kms_key_id=None, endpoint_url=None)
    vk.validate(params)  # no exception


def test_deprecated_alias_is_the_lab_switch():
    assert vk.omit_conditioned_denies({"deny_insecure_transport": False})
    assert not vk.omit_conditioned_denies({"deny_insecure_transport": True})
    assert not vk.omit_conditioned_denies({"deny_insecure_transport": None, "omit_conditioned_denies": False})
    assert vk.omit_conditioned_denies({"deny_insecure_transport": None, "omit_conditioned_denies": True})


def test_new_key_is_random_and_sized():
    first, second = vk.new_key(64), vk.new_key(64)
    assert len(first) == 64 and len(second) == 64
    assert first != second


# --- the module's decisions, with a stub module and stub S3 ---------------------------------------
class Stop(Exception):
    pass


class StubModule:
    check_mode = False
    region = "us-east-1"

    def __init__(self, **params):
        self.params = dict(args(**params), adopt_instance_id=params.get("adopt_instance_id"), tags=None, purge_tags=True,
                           key_bytes=64, expected_bucket_owner=None)
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise Stop(kwargs["msg"])

    def fail_json_aws(self, error, msg):
        self.fail_json(msg="%s: %s" % (msg, error))

    def warn(self, msg):
        pass


def denied(operation):
    return ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, operation)


class StubS3:
    def __init__(self, versions=(), tags=None, list_error=None):
        self._versions = list(versions)
        self._tags = tags or {}
        self.list_error = list_error
        self.calls = []

    def get_paginator(self, name):
        stub = self

        class Pages:
            def paginate(self, **kwargs):
                stub.calls.append(("list_object_versions", kwargs))
                if stub.list_error:
                    raise stub.list_error
                return [{"Versions": stub._versions}]
        return Pages()

    def get_object_tagging(self, **kwargs):
        self.calls.append(("get_object_tagging", kwargs))
        return {"TagSet": [{"Key": k, "Value": v} for k, v in self._tags.get(kwargs["VersionId"], {}).items()]}

    def delete_objects(self, **kwargs):
        self.calls.append(("delete_objects", kwargs))
        self._versions = []
        return {}


def manager(module, s3):
    key = vk.VolumeKey.__new__(vk.VolumeKey)
    key.module, key.params, key.s3 = module, module.params, s3
    key.bucket, key.key, key.partition, key.changed = "keys", "k", "aws", False
    key.account = key.owner = "123456789012"
    key.caller = None
    key.identify = lambda: None
    return key


def version(vid):
    return {"Key": "k", "VersionId": vid, "IsLatest": vid == "v2", "Size": 64}


def test_absent_treats_a_lookup_error_as_a_stop_never_as_no_key():
    module = StubModule(state="absent")
    s3 = StubS3(list_error=denied("ListObjectVersions"))
    with pytest.raises(Stop) as err:
        manager(module, s3).absent()
    assert "never taken for 'no key'" in str(err.value)
    assert not any(call[0] == "delete_objects" for call in s3.calls)


def test_absent_refuses_when_any_version_is_another_instances():
    module = StubModule(state="absent", launch_id=None)
    tags = {"v1": kc.marks("i-0fedcba9876543210", "l0", "arn"), "v2": kc.marks(IID, "l1", "arn")}
    s3 = StubS3([version("v2"), version("v1")], tags)
    with pytest.raises(Stop) as err:
        manager(module, s3).absent()
    assert "version v1" in str(err.value) and "owned by instance i-0fedcba9876543210" in str(err.value)
    assert not any(call[0] == "delete_objects" for call in s3.calls)


def test_absent_shreds_every_own_version_with_expected_bucket_owner():
    module = StubModule(state="absent")
    tags = {"v1": kc.marks(IID, "l1", "arn"), "v2": kc.marks(IID, "l1", "arn")}
    s3 = StubS3([version("v2"), version("v1")], tags)
    result, before, after = manager(module, s3).absent()
    assert result["deleted_versions"] == 2
    deletes = [kwargs for name, kwargs in s3.calls if name == "delete_objects"]
    assert [o["VersionId"] for o in deletes[0]["Delete"]["Objects"]] == ["v2", "v1"]
    for name, kwargs in s3.calls:
        assert kwargs.get("ExpectedBucketOwner") == "123456789012", name


def test_absent_refuses_unmarked_versions_unless_adopted():
    s3 = StubS3([version("v2")], {"v2": {"Name": "legacy"}})
    with pytest.raises(Stop) as err:
        manager(StubModule(state="absent"), s3).absent()
    assert "adopt_instance_id" in str(err.value)
    result, before, after = manager(StubModule(state="absent", adopt_instance_id=IID), s3).absent()
    assert result["adopted"] and result["deleted_versions"] == 1


# --- state=bucket: the bucket's custody once for a batch, no key object ----------------------------
@pytest.mark.parametrize("extra, text", [
    ({"state": "bucket"}, "object, instance_id, launch_id: not used with state=bucket"),
    ({"state": "bucket", "object": None, "instance_id": None, "launch_id": None, "tags": {"a": "b"}}, "tags: not used with state=bucket"),
    ({"state": "bucket", "object": None, "instance_id": None, "launch_id": None, "kms_key_id": " "}, "kms_key_id is empty"),
    ({"object": None}, "object is required"),
    ({"state": "absent", "instance_id": None}, "instance_id is required"),
])
def test_bucket_state_options(run_aws_main, extra, text):
    result = run_aws_main(vk.main, **args(**extra))
    assert result["failed"] is True
    assert text in result["msg"], result["msg"]


def test_bucket_state_touches_no_key_object():
    module = StubModule(state="bucket", object=None, instance_id=None, launch_id=None)
    module.params["controller_principals"] = None
    s3 = StubS3(list_error=denied("ListObjectVersions"))
    key = manager(module, s3)
    key.key = None
    key.caller = "arn:aws:iam::123456789012:role/controller"
    steps = []
    key.bucket_exists = lambda: steps.append("exists") or True
    key.bucket_state = lambda exists: {"exists": exists}
    key.ensure_kms_key = lambda controllers: steps.append(("kms", tuple(controllers))) or {
        "arn": "arn:aws:kms:us-east-1:123456789012:key/k1", "id": "k1", "alias": "alias/cloudefigo/volume-keys/keys", "changes": ["kms_key"]}
    key.ensure_bucket = lambda before, kms: (steps.append(("bucket", kms["arn"])) or ({"exists": True}, ["created"]))
    key.ensure_policy = lambda before, after, changes, controllers: steps.append("policy")
    result, before, after = key.custody_only()
    # KMS key, then bucket settings, then the policy; the key object is never looked at
    assert steps == ["exists", ("kms", ("arn:aws:iam::123456789012:role/controller",)),
                     ("bucket", "arn:aws:kms:us-east-1:123456789012:key/k1"), "policy"]
    assert s3.calls == []
    assert result["kms_key_arn"] == "arn:aws:kms:us-east-1:123456789012:key/k1"
    assert result["kms_key_alias"] == "alias/cloudefigo/volume-keys/keys"
    assert result["bucket_changes"] == ["kms_key", "created"] and result["created"] is False
    assert key.arn is None


# --- launch_record: the launch record written in the same run, after the key --------------------
RECORD_KEY = "cloudefigo-records/us-east-1/" + IID
OTHER_IID = "i-0fedcba9876543210"


def record_options(**extra):
    out = {"prefix": "cloudefigo-records/", "role_name": "cloudefigo-web-01", "instance_profile_name": None,
           "volume_ids": ["vol-0123456789abcdef0"], "chef_node": "web-01", "instance_region": None}
    out.update(extra)
    return out


@pytest.mark.parametrize("extra, text", [
    ({"state": "absent"}, "launch_record: only with state=present"),
    ({"state": "bucket", "object": None, "instance_id": None, "launch_id": None}, "launch_record: only with state=present"),
    ({"launch_id": None}, "launch_record needs launch_id"),
    ({"launch_record": {"volume_ids": "vol-1", "colour": "red"}}, "colour"),
])
def test_launch_record_option_is_refused_where_it_cannot_name_this_calls_key(run_aws_main, extra, text):
    result = run_aws_main(vk.main, **args(**dict({"launch_record": {"role_name": "r"}}, **extra)))
    assert result["failed"] is True
    assert text in result["msg"], result["msg"]
    assert "exception" not in result


class FakeS3:
    """An in-memory bucket: object versions with tags, the calls in order."""

    def __init__(self):
        self.objects = {}  # key -> [{"VersionId", "Size", "tags"}], oldest first
        self.calls = []

    def _missing(self, operation):
        return ClientError({"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."}}, operation)

    def get_paginator(self, name):
        stub = self

        class Pages:
            def paginate(self, **kwargs):
                stub.calls.append((name, kwargs))
                found = stub.objects.get(kwargs["Prefix"], [])
                return [{"Versions": [{"Key": kwargs["Prefix"], "VersionId": v["VersionId"], "Size": v["Size"],
                                       "IsLatest": i == len(found) - 1} for i, v in enumerate(found)][::-1]}]
        return Pages()

    def _version(self, kwargs, operation):
        found = self.objects.get(kwargs["Key"])
        if not found:
            raise self._missing(operation)
        if kwargs.get("VersionId"):
            return next(v for v in found if v["VersionId"] == kwargs["VersionId"])
        return found[-1]

    def get_object_tagging(self, **kwargs):
        self.calls.append(("get_object_tagging", kwargs))
        return {"TagSet": [{"Key": k, "Value": v} for k, v in self._version(kwargs, "GetObjectTagging")["tags"].items()]}

    def put_object(self, **kwargs):
        from urllib.parse import parse_qsl
        self.calls.append(("put_object", kwargs))
        versions = self.objects.setdefault(kwargs["Key"], [])
        versions.append({"VersionId": "v%d" % (len(self.calls)), "Size": len(kwargs["Body"]), "tags": dict(parse_qsl(kwargs["Tagging"]))})
        return {"ServerSideEncryption": kwargs.get("ServerSideEncryption")}

    def put_object_tagging(self, **kwargs):
        self.calls.append(("put_object_tagging", kwargs))
        self._version(kwargs, "PutObjectTagging")["tags"] = dict((t["Key"], t["Value"]) for t in kwargs["Tagging"]["TagSet"])
        return {}

    def writes(self):
        return [(name, kwargs["Key"]) for name, kwargs in self.calls if name.startswith("put_")]


def recording_manager(s3, check_mode=False, **params):
    """A VolumeKey on `s3` whose bucket, KMS key and policy are stubbed (they are not what is tested here)."""
    module = StubModule(**dict({"launch_record": record_options()}, **params))
    module.params.update(controller_principals=None, kms_key_id=None)
    module.check_mode = check_mode
    key = manager(module, s3)
    key.caller = "arn:aws:iam::123456789012:role/controller"
    steps = []
    key.bucket_exists = lambda: True
    key.bucket_state = lambda exists: {"exists": exists}
    key.ensure_kms_key = lambda controllers: steps.append("kms") or {"arn": "arn:aws:kms:us-east-1:123456789012:key/k1", "id": "k1",
                                                                     "alias": None, "changes": []}
    key.ensure_bucket = lambda before, kms: ({"exists": True}, [])
    key.ensure_policy = lambda before, after, changes, controllers: None
    key.steps = steps
    return key


def record_in(s3, key=RECORD_KEY):
    return s3.objects[key][-1]["tags"] if key in s3.objects else None


def test_the_record_is_written_after_the_key_and_names_it():
    s3 = FakeS3()
    key = recording_manager(s3)
    result, before, after = key.present()
    assert s3.writes() == [("put_object", "k"), ("put_object", RECORD_KEY)]  # key first, then the record
    assert key.changed and result["created"]
    assert record_in(s3) == {
        "cloudefigo:instance-id": IID, "cloudefigo:launch-id": "l1", "cloudefigo:region": "us-east-1",
        "cloudefigo:account": "123456789012", "cloudefigo:role": "cloudefigo-web-01",
        "cloudefigo:instance-profile": "cloudefigo-web-01", "cloudefigo:key-object": "k",
        "cloudefigo:volumes": "vol-0123456789abcdef0", "cloudefigo:chef-node": "web-01"}
    assert result["launch_record"]["key_object"] == "k" and result["launch_record"]["instance_profile_name"] == "cloudefigo-web-01"
    assert before["launch_record"] == {} and after["launch_record"] == result["launch_record"]
    # every record request too carries ExpectedBucketOwner
    for name, kwargs in s3.calls:
        assert kwargs.get("ExpectedBucketOwner") == "123456789012", name


def test_a_second_identical_run_changes_nothing():
    s3 = FakeS3()
    recording_manager(s3).present()
    writes = len(s3.writes())
    again = recording_manager(s3)
    result, before, after = again.present()
    assert not again.changed and not result["created"]
    assert len(s3.writes()) == writes
    assert before["launch_record"] == after["launch_record"] == result["launch_record"]


def test_check_mode_writes_neither_key_nor_record_and_says_what_would_be():
    s3 = FakeS3()
    key = recording_manager(s3, check_mode=True)
    result, before, after = key.present()
    assert s3.writes() == [] and s3.objects == {}
    assert key.changed
    assert result["launch_record"]["instance_id"] == IID and result["launch_record"]["key_object"] == "k"


def test_only_the_record_changed_is_a_change():
    s3 = FakeS3()
    recording_manager(s3).present()
    key = recording_manager(s3, launch_record=record_options(volume_ids=["vol-0fedcba9876543210"]))
    result, before, after = key.present()
    assert key.changed and not result["created"]
    assert s3.writes()[-1] == ("put_object_tagging", RECORD_KEY)
    # volumes only grow
    assert record_in(s3)["cloudefigo:volumes"] == "vol-0123456789abcdef0 vol-0fedcba9876543210"
    assert result["launch_record"]["volume_ids"] == ["vol-0123456789abcdef0", "vol-0fedcba9876543210"]


def test_a_key_of_another_instance_gets_no_record():
    s3 = FakeS3()
    s3.objects["k"] = [{"VersionId": "v0", "Size": 64, "tags": kc.marks(OTHER_IID, "l1", "arn")}]
    key = recording_manager(s3)
    with pytest.raises(Stop) as err:
        key.present()
    assert "owned by instance %s" % OTHER_IID in str(err.value)
    assert s3.writes() == [] and RECORD_KEY not in s3.objects and key.steps == []


def test_a_key_of_another_launch_gets_no_record():
    s3 = FakeS3()
    s3.objects["k"] = [{"VersionId": "v0", "Size": 64, "tags": kc.marks(IID, "l0", "arn")}]
    with pytest.raises(Stop):
        recording_manager(s3).present()
    assert s3.writes() == [] and RECORD_KEY not in s3.objects


def test_a_record_of_another_launch_stops_the_run_before_the_key_is_made():
    s3 = FakeS3()
    recording_manager(s3, launch_id="l0").present()
    s3.objects.pop("k")  # (another key object name, same instance)
    before = dict(record_in(s3))
    s3.calls = []
    key = recording_manager(s3)
    with pytest.raises(Stop) as err:
        key.present()
    assert str(err.value).startswith("launch_record: ") and "names launch l0, not l1" in str(err.value)
    assert s3.writes() == [] and "k" not in s3.objects and key.steps == []  # nothing written, not even the KMS key
    assert record_in(s3) == before


def test_an_object_that_is_no_record_is_not_touched():
    s3 = FakeS3()
    s3.objects[RECORD_KEY] = [{"VersionId": "v0", "Size": 3, "tags": {"Name": "something else"}}]
    with pytest.raises(Stop) as err:
        recording_manager(s3).present()
    assert "is not a launch record" in str(err.value)
    assert s3.writes() == []


@pytest.mark.parametrize("options, text", [
    ({"volume_ids": ["disk-1"]}, "volume_ids: 'disk-1' is not an EBS volume id"),
    ({"chef_node": "web 01 & co"}, "chef_node: "),
    ({"instance_region": "Mars"}, "region: 'Mars' is not valid"),
    ({"prefix": "x/", "instance_region": None}, None),
])
def test_bad_record_fields_stop_before_anything_is_written(options, text):
    s3 = FakeS3()
    key = recording_manager(s3, launch_record=record_options(**options))
    if text is None:  # a good one, for contrast
        key.present()
        assert ("put_object", "x/us-east-1/" + IID) in s3.writes()
        return
    with pytest.raises(Stop) as err:
        key.present()
    assert str(err.value).startswith("launch_record: ") and text in str(err.value), str(err.value)
    assert s3.writes() == [] and key.steps == []


def test_the_record_cannot_be_the_key_object():
    s3 = FakeS3()
    key = recording_manager(s3, object=RECORD_KEY)
    key.key = RECORD_KEY
    with pytest.raises(Stop) as err:
        key.present()
    assert "launch_record.prefix" in str(err.value)
    assert s3.writes() == []


def test_without_the_option_no_record_is_read_or_written():
    s3 = FakeS3()
    key = recording_manager(s3, launch_record=None)
    result, before, after = key.present()
    assert "launch_record" not in result and "launch_record" not in before
    assert [k for _name, k in s3.writes()] == ["k"]
    assert not any(kwargs.get("Key") == RECORD_KEY for _name, kwargs in s3.calls)
