# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where CloudTrail log files come from: a local directory or S3. Read-only, always.

Private to the collection: not a public API, may change without notice.

The sources only list and read (ListObjectsV2, GetObject): CloudTrail log-file validation
(digest files) breaks as soon as a log object is rewritten, renamed or deleted.
"""

from __future__ import annotations

import os
import re

# AWSLogs/[o-org/]ACCOUNT/CloudTrail/REGION/YYYY/MM/DD/file.json.gz, under an optional trail prefix.
# CloudTrail-Digest/ and CloudTrail-Insight/ live beside CloudTrail/ and are left out.
S3_LOG_KEY = re.compile(
    r"(?:^|/)AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/CloudTrail/[a-z0-9-]+/\d{4}/\d\d/\d\d/[^/]+\.json(?:\.gz)?\Z")


class LogFile:
    """One log file: its ledger key, etag and size, and how to read it."""

    __slots__ = ("key", "etag", "size", "_read")

    def __init__(self, key, etag, size, read):
        self.key = key
        self.etag = etag
        self.size = size
        self._read = read

    def read(self):
        return self._read()


def _read_path(path):
    def read():
        with open(path, "rb") as handle:
            return handle.read()
    return read


class LocalSource:
    """*.json.gz and *.json files under a directory (recursive, sorted); digest files left out.

    The etag of a local file is ``SIZE-MTIME_NS``: cheap, and a rewritten file is seen as new.
    """

    def __init__(self, path):
        self.path = os.path.abspath(path)

    def describe(self):
        return self.path

    def pages(self):
        page = []
        for root, dirs, files in os.walk(self.path):
            dirs.sort()
            for name in sorted(files):
                if not (name.endswith(".json.gz") or name.endswith(".json")) or "CloudTrail-Digest" in name:
                    continue
                full = os.path.join(root, name)
                try:
                    stat = os.stat(full)
                except OSError:
                    continue
                page.append(LogFile(full, "%d-%d" % (stat.st_size, stat.st_mtime_ns), stat.st_size, _read_path(full)))
                if len(page) >= 1000:
                    yield page
                    page = []
        if page:
            yield page


def _owner_kwargs(expected_bucket_owner):
    return {"ExpectedBucketOwner": expected_bucket_owner} if expected_bucket_owner else {}


def _read_object(client, bucket, key, expected_bucket_owner=None):
    def read():
        return client.get_object(Bucket=bucket, Key=key, aws_retry=True, **_owner_kwargs(expected_bucket_owner))["Body"].read()
    return read


class S3Source:
    """CloudTrail log objects of one bucket under a prefix, every account and region, org trails too.

    Listed one page (1,000 keys) at a time so memory does not grow with the bucket.  With
    ``expected_bucket_owner`` (an account id) every request carries ``ExpectedBucketOwner``: S3
    answers 403 instead of serving a same-named bucket of another account.
    """

    def __init__(self, client, bucket, prefix="", expected_bucket_owner=None):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix or ""
        self.expected_bucket_owner = expected_bucket_owner

    def describe(self):
        return "s3://%s/%s" % (self.bucket, self.prefix)

    def pages(self):
        paginator = self.client.get_paginator("list_objects_v2")
        owner = _owner_kwargs(self.expected_bucket_owner)
        for response in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix, **owner):
            page = []
            for item in response.get("Contents", []):
                key = item["Key"]
                if not S3_LOG_KEY.search(key):
                    continue
                page.append(LogFile("s3://%s/%s" % (self.bucket, key), item.get("ETag", "").strip('"'),
                                    item.get("Size"), _read_object(self.client, self.bucket, key, self.expected_bucket_owner)))
            if page:
                yield page


def trail_locations(trails):
    """Sorted unique (bucket, prefix) pairs of describe_trails answers; prefix ends in AWSLogs/."""
    found = set()
    for trail in trails:
        bucket = trail.get("S3BucketName")
        if not bucket:
            continue
        prefix = (trail.get("S3KeyPrefix") or "").strip("/")
        found.add((bucket, (prefix + "/" if prefix else "") + "AWSLogs/"))
    return sorted(found)
