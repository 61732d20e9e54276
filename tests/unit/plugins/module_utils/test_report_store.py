"""The report's stores: S3 calls always name the bucket owner and encrypt; check mode writes nothing."""
import io
import os

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._report.store import LocalStore, S3Store, sha256


class _ClientError(Exception):
    def __init__(self, code):
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class _Paginator(object):
    def __init__(self, client):
        self.client = client

    def paginate(self, **kwargs):
        self.client.calls.append(("list_objects_v2", kwargs))
        prefix = kwargs["Prefix"]
        yield {"Contents": [{"Key": k} for k in sorted(self.client.objects) if k.startswith(prefix)]}


class _S3(object):
    """Records every call; objects in a dict."""

    def __init__(self):
        self.calls = []
        self.objects = {}

    def get_object(self, **kwargs):
        self.calls.append(("get_object", kwargs))
        if kwargs["Key"] not in self.objects:
            raise _ClientError("NoSuchKey")
        body = self.objects[kwargs["Key"]]["Body"]
        return {"Body": io.BytesIO(body), "ContentLength": len(body)}

    def head_object(self, **kwargs):
        self.calls.append(("head_object", kwargs))
        if kwargs["Key"] not in self.objects:
            raise _ClientError("404")
        return {"Metadata": self.objects[kwargs["Key"]]["Metadata"]}

    def put_object(self, **kwargs):
        self.calls.append(("put_object", kwargs))
        self.objects[kwargs["Key"]] = kwargs

    def get_paginator(self, name):
        assert name == "list_objects_v2"
        return _Paginator(self)


def test_every_s3_call_names_the_owner_and_every_put_is_encrypted():
    client = _S3()
    store = S3Store(client, "reports", "audit/", "123456789012", retry=False)
    assert store.read("state/a/b.json") is None
    assert store.write("state/a/b.json", b"{}") is True
    assert store.write("state/a/b.json", b"{}") is False  # same digest: not written again
    assert store.read("state/a/b.json") == b"{}"
    assert store.list_parts() == ["state/a/b.json"]
    assert client.calls and all(kwargs.get("ExpectedBucketOwner") == "123456789012" for _name, kwargs in client.calls)
    puts = [kwargs for name, kwargs in client.calls if name == "put_object"]
    assert len(puts) == 1
    assert puts[0]["ServerSideEncryption"] == "AES256" and puts[0]["Key"] == "audit/state/a/b.json"
    assert puts[0]["Metadata"] == {"sha256": sha256(b"{}")}


def test_kms_key_and_check_mode():
    client = _S3()
    store = S3Store(client, "reports", "", "123456789012", kms_key_id="arn:aws:kms:us-east-1:123456789012:key/k",
                    retry=False)
    store.write("x.json", b"1")
    put = [kwargs for name, kwargs in client.calls if name == "put_object"][0]
    assert put["ServerSideEncryption"] == "aws:kms" and put["SSEKMSKeyId"].endswith("key/k")
    dry = S3Store(client, "reports", "", "123456789012", check_mode=True, retry=False)
    assert dry.write("x.json", b"2") is True
    assert client.objects["x.json"]["Body"] == b"1"


def test_other_s3_errors_are_not_taken_for_absence():
    client = _S3()

    def denied(**kwargs):
        raise _ClientError("AccessDenied")
    client.get_object = denied
    with pytest.raises(_ClientError):
        S3Store(client, "reports", "", "123456789012", retry=False).read("state/x.json")


def test_local_store(tmp_path):
    store = LocalStore(str(tmp_path / "r"))
    assert store.read("state/a/b.json") is None
    assert store.write("state/a/b.json", b"x") is True
    assert store.write("state/a/b.json", b"x") is False
    assert oct(os.stat(str(tmp_path / "r" / "state" / "a" / "b.json")).st_mode & 0o777) == "0o640"
    assert store.list_parts() == ["state/a/b.json"]
    dry = LocalStore(str(tmp_path / "r"), check_mode=True)
    assert dry.write("state/a/b.json", b"y") is True and store.read("state/a/b.json") == b"x"
    assert dry.write("audit-report.html", b"y") is True and not (tmp_path / "r" / "audit-report.html").exists()
