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

import datetime
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

    def pages(self, ledger=None):  # pylint: disable=unused-argument
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


def _read_object(client, bucket, key, owner):
    def read():
        kwargs = {"Bucket": bucket, "Key": key}
        if owner:
            kwargs["ExpectedBucketOwner"] = owner
        return client.get_object(aws_retry=True, **kwargs)["Body"].read()
    return read


# a prefix that names one account's trail in one region: where dated keys start
REGION_PREFIX = re.compile(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/CloudTrail/[a-z0-9-]+/")
ACCOUNT_PREFIX = re.compile(r"(?:^|/)AWSLogs/(?:o-[a-z0-9]{10,32}/)?\d{12}/\Z")
# what may come after AWSLogs/ on the way to a region prefix, one segment at a time
_ON_THE_WAY = (re.compile(r"\Ao-[a-z0-9]{10,32}\Z|\A\d{12}\Z"), re.compile(r"\A\d{12}\Z|\ACloudTrail\Z"),
               re.compile(r"\ACloudTrail\Z|\A[a-z0-9-]+\Z"), re.compile(r"\A[a-z0-9-]+\Z"))
# how deep a trail's own S3KeyPrefix (before AWSLogs/) is looked into
MAX_TRAIL_PREFIX_DEPTH = 4
_DATED = re.compile(r"\A(\d{4})/(\d\d)/(\d\d)/")


def _leads_to_logs(prefix):
    """Whether a common prefix (ends in /) can hold CloudTrail log keys further down."""
    segments = prefix.rstrip("/").split("/")
    if "AWSLogs" not in segments:
        return len(segments) <= MAX_TRAIL_PREFIX_DEPTH
    after = segments[len(segments) - 1 - segments[::-1].index("AWSLogs") + 1:]
    if len(after) > len(_ON_THE_WAY):
        return False
    return all(_ON_THE_WAY[index].search(segment) for index, segment in enumerate(after))


class S3Source:
    """CloudTrail log objects of one bucket under a prefix, every account and region, org trails too.

    The prefix is split into streams, one per account and region (``.../CloudTrail/REGION/``),
    found with delimiter listings that never go below the region level. With a ``ledger``
    (see ``Loader``), each stream is listed from ``relist_days`` days before the newest date
    already in the ledger (``StartAfter``): CloudTrail's dated keys sort by delivery date, so
    older days are never listed again, and the trailing window catches files delivered late.
    Files of older days recorded in the ledger with an error are read again (retried) without a
    listing. ``full_listing`` lists everything. Listed one page (1,000 keys) at a time.
    ``ExpectedBucketOwner`` goes with every call when ``owner`` is set.
    """

    def __init__(self, client, bucket, prefix="", owner=None, relist_days=2, full_listing=False):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix or ""
        self.owner = owner
        self.relist_days = int(relist_days)
        self.full_listing = full_listing
        # S3 requests made (listing and retries' reads are counted by the caller's reads)
        self.list_requests = 0

    def describe(self):
        return "s3://%s/%s" % (self.bucket, self.prefix)

    def _list(self, **kwargs):
        kwargs["Bucket"] = self.bucket
        if self.owner:
            kwargs["ExpectedBucketOwner"] = self.owner
        token = None
        while True:
            if token:
                kwargs["ContinuationToken"] = token
            self.list_requests += 1
            response = self.client.list_objects_v2(aws_retry=True, **kwargs)
            yield response
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                return

    def streams(self):
        """[(region prefix, prefix to list)] under self.prefix, sorted."""
        match = REGION_PREFIX.search(self.prefix)
        if match:
            return [(self.prefix[:match.end()], self.prefix)]
        found = []
        todo = [self.prefix]
        while todo:
            current = todo.pop()
            for response in self._list(Prefix=current, Delimiter="/"):
                for common in response.get("CommonPrefixes", []):
                    name = common["Prefix"]
                    here = REGION_PREFIX.search(name)
                    if here and here.end() == len(name):
                        found.append((name, name))
                    elif ACCOUNT_PREFIX.search(name):
                        # only CloudTrail/ matters below an account (not -Digest/, -Insight/): one request less
                        todo.append(name + "CloudTrail/")
                    elif _leads_to_logs(name):
                        todo.append(name)
        return sorted(found)

    def _log(self, key, etag, size):
        return LogFile("s3://%s/%s" % (self.bucket, key), etag, size,
                       _read_object(self.client, self.bucket, key, self.owner))

    def start_after(self, region_prefix, ledger):
        """Where the listing of one stream starts (a key), or None to list it all."""
        if ledger is None or self.full_listing:
            return None
        newest = ledger.newest_key("s3://%s/%s" % (self.bucket, region_prefix))
        if newest is None:
            return None
        dated = _DATED.match(newest[len("s3://%s/%s" % (self.bucket, region_prefix)):])
        if dated is None:
            return None
        try:
            day = datetime.date(int(dated.group(1)), int(dated.group(2)), int(dated.group(3)))
        except ValueError:
            return None
        first = day - datetime.timedelta(days=self.relist_days)
        # "REGION/YYYY/MM/DD/" sorts before every key of that day: the whole day is listed
        return region_prefix + first.strftime("%Y/%m/%d/")

    def pages(self, ledger=None):
        for region_prefix, list_prefix in self.streams():
            start = self.start_after(region_prefix, ledger)
            if start is not None and start > list_prefix:
                # failed files of the days not listed again: retried without a listing
                retry = [self._log(key[len("s3://%s/" % self.bucket):], etag, size) for key, etag, size in
                         ledger.failed("s3://%s/%s" % (self.bucket, list_prefix), "s3://%s/%s" % (self.bucket, start))]
                if retry:
                    yield retry
                kwargs = {"Prefix": list_prefix, "StartAfter": start}
            else:
                kwargs = {"Prefix": list_prefix}
            for response in self._list(**kwargs):
                page = []
                for item in response.get("Contents", []):
                    key = item["Key"]
                    if not S3_LOG_KEY.search(key):
                        continue
                    page.append(self._log(key, item.get("ETag", "").strip('"'), item.get("Size")))
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
