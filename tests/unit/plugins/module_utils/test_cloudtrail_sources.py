"""_cloudtrail.sources.S3Source: ExpectedBucketOwner on every request when an owner is given."""

from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.sources import S3Source

KEY = "AWSLogs/123456789012/CloudTrail/us-east-1/2024/05/01/123456789012_CloudTrail_us-east-1_20240501T0000Z_abc.json.gz"


class StubS3:
    def __init__(self):
        self.calls = []

    def get_paginator(self, name):
        stub = self

        class Pages:
            def paginate(self, **kwargs):
                stub.calls.append((name, kwargs))
                return [{"Contents": [{"Key": KEY, "ETag": '"e"', "Size": 3}, {"Key": "not-a-log.txt"}]}]
        return Pages()

    def get_object(self, **kwargs):
        self.calls.append(("get_object", kwargs))

        class Body:
            @staticmethod
            def read():
                return b"log"
        return {"Body": Body()}


def read_all(source):
    return [log.read() for page in source.pages() for log in page]


def test_every_request_names_the_expected_owner():
    s3 = StubS3()
    assert read_all(S3Source(s3, "trail-bucket", "AWSLogs/", expected_bucket_owner="210987654321")) == [b"log"]
    assert [name for name, _kwargs in s3.calls] == ["list_objects_v2", "get_object"]
    assert all(kwargs["ExpectedBucketOwner"] == "210987654321" for _name, kwargs in s3.calls)


def test_without_an_owner_nothing_is_added():
    s3 = StubS3()
    assert read_all(S3Source(s3, "trail-bucket")) == [b"log"]
    assert all("ExpectedBucketOwner" not in kwargs for _name, kwargs in s3.calls)
