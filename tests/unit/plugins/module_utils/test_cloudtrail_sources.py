# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""S3 streams and StartAfter, retention months: the parts of the incremental listing without AWS."""

from __future__ import annotations

import datetime

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import schema
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.sources import S3Source, _leads_to_logs


class FakeS3:
    """list_objects_v2 over a set of keys, with Prefix, Delimiter, StartAfter; records the calls."""

    def __init__(self, keys):
        self.keys = sorted(keys)
        self.calls = []

    def list_objects_v2(self, aws_retry=False, **kwargs):  # pylint: disable=unused-argument
        self.calls.append(kwargs)
        prefix, start = kwargs.get("Prefix", ""), kwargs.get("StartAfter", "")
        found = [key for key in self.keys if key.startswith(prefix) and key > start]
        if kwargs.get("Delimiter"):
            common = sorted({prefix + key[len(prefix):].split("/", 1)[0] + "/" for key in found
                             if "/" in key[len(prefix):]})
            return {"CommonPrefixes": [{"Prefix": name} for name in common], "IsTruncated": False}
        return {"Contents": [{"Key": key, "ETag": '"e"', "Size": 1} for key in found], "IsTruncated": False}


class FakeLedger:
    def __init__(self, newest, failed=()):
        self._newest = newest
        self._failed = list(failed)

    def newest_key(self, prefix):
        return max((key for key in self._newest if key.startswith(prefix)), default=None)

    def failed(self, low, high):
        return [(key, "e", 1) for key in self._failed if low <= key < high]


A = "AWSLogs/111122223333/CloudTrail/eu-west-1/"
ORG = "audit/AWSLogs/o-abcd123456/444455556666/CloudTrail/us-east-1/"


@pytest.mark.parametrize("prefix, expected", [
    ("AWSLogs/", True), ("AWSLogs/111122223333/", True), ("AWSLogs/o-abcd123456/", True),
    ("AWSLogs/111122223333/CloudTrail-Digest/", False), ("AWSLogs/111122223333/CloudTrail/", True),
    ("audit/", True), ("a/b/c/d/e/", False), ("AWSLogs/readme/", False),
])
def test_which_folders_the_walk_enters(prefix, expected):
    assert _leads_to_logs(prefix) is expected


def test_streams_walk_stops_at_the_region_and_skips_digests():
    s3 = FakeS3([A + "2024/01/01/x.json.gz", ORG + "2024/01/01/y.json.gz",
                 "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2024/01/01/d.json.gz", "README"])
    assert S3Source(s3, "b").streams() == [(A, A), (ORG, ORG)]
    assert all(call.get("Delimiter") == "/" for call in s3.calls)
    assert not any("Digest" in call["Prefix"] for call in s3.calls)
    # a prefix inside a stream is that stream, no walk
    assert S3Source(FakeS3([]), "b", A + "2024/").streams() == [(A, A + "2024/")]


def test_start_after_is_the_window_before_the_newest_day_and_failed_old_files_are_retried():
    keys = [A + "2024/01/%02d/f.json.gz" % day for day in range(1, 11)]
    s3 = FakeS3(keys)
    ledger = FakeLedger(["s3://b/" + key for key in keys[:9]], failed=["s3://b/" + keys[2]])
    source = S3Source(s3, "b", "AWSLogs/111122223333/CloudTrail/eu-west-1/", relist_days=2)
    pages = list(source.pages(ledger))
    assert [log.key for log in pages[0]] == ["s3://b/" + keys[2]]  # the retry, not listed
    assert [log.key for log in pages[1]] == ["s3://b/" + key for key in keys[6:]]
    assert s3.calls[-1]["StartAfter"] == A + "2024/01/07/"
    # no ledger entry yet, or full_listing: everything
    assert S3Source(s3, "b", A, full_listing=True).start_after(A, ledger) is None
    assert S3Source(s3, "b", A).start_after(A, FakeLedger([])) is None


def test_expected_bucket_owner_on_every_call():
    s3 = FakeS3([A + "2024/01/01/x.json.gz"])
    list(S3Source(s3, "b", owner="111122223333").pages())
    assert s3.calls and all(call["ExpectedBucketOwner"] == "111122223333" for call in s3.calls)


@pytest.mark.parametrize("months, today, cutoff", [
    (1, datetime.date(2026, 11, 29), datetime.date(2026, 11, 1)),
    (3, datetime.date(2026, 2, 1), datetime.date(2025, 12, 1)),
    (12, datetime.date(2026, 1, 31), datetime.date(2025, 2, 1)),
])
def test_retention_keeps_n_months_the_current_one_included(months, today, cutoff):
    assert schema.retention_cutoff(months, today) == cutoff


def test_partition_names_and_months():
    assert schema.partition_name(datetime.date(2024, 5, 17)) == "events_y2024m05"
    assert schema.next_month(datetime.date(2024, 12, 1)) == datetime.date(2025, 1, 1)
    assert schema.PARTITION_NAME.match("events_y2024m05") and not schema.PARTITION_NAME.match("events_undated")
