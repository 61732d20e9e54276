# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Row building for CloudTrail records: COPY text, typed columns, ids, bad files."""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import records
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.sources import S3_LOG_KEY, trail_locations

UA_331 = ("[aws-cli/2.11.0 Python/3.11.2 Linux/5.15.0-76-generic exe/x86_64.ubuntu.22 prompt/off "
          "command/ssm.describe-parameters] stratus-red-team_3ba2e6e3-4b38-4f17-a8a2-95c8f4f9b3d2 "
          "Boto3/1.26.0 Python/3.10.6 Linux/5.15.0 Botocore/1.29.0 Resource aws-sdk-go/1.44.294 "
          "(go1.20.5; linux; amd64) exec-env/AWS_Lambda_go1.x aws-sdk-go-v2/1.18.1 os/linux lang/go#1.20.5")
UA_331 = (UA_331 + "x" * 331)[:331]


def record(**extra):
    base = {
        "eventVersion": "1.08",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "arn": "arn:aws:iam::123456789012:user/alice",
                         "accountId": "123456789012", "accessKeyId": "AKIAEXAMPLE", "userName": "alice"},
        "eventTime": "2023-07-10T11:42:36Z",
        "eventSource": "iam.amazonaws.com",
        "eventName": "CreateUser",
        "awsRegion": "us-east-1",
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-cli/2.11.0",
        "requestParameters": {"userName": "bob"},
        "responseElements": None,
        "requestID": "req-1",
        "eventID": "0b5c9c3e-1f1e-4a9e-9c53-1b1f0f0a0001",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "eventCategory": "Management",
        "recipientAccountId": "123456789012",
    }
    base.update(extra)
    return base


def columns(line):
    """COPY text line -> {column: raw text} (escapes kept)."""
    assert line.endswith(b"\n")
    values = line[:-1].split(b"\t")
    assert len(values) == len(records.COLUMNS)
    return dict(zip(records.COLUMNS, values))


def test_long_user_agent_is_not_truncated():
    row = columns(records.copy_line(record(userAgent=UA_331)))
    assert len(UA_331) == 331
    assert row["user_agent"].decode() == UA_331


def test_service_name_source_ip_kept_as_text_without_inet():
    for name in ("ec2.amazonaws.com", "AWS Internal", "secretsmanager.amazonaws.com"):
        row = columns(records.copy_line(record(sourceIPAddress=name)))
        assert row["source_ip"].decode() == name
        assert row["source_inet"] == b"\\N"


@pytest.mark.parametrize("address, expected", [
    ("192.0.2.10", "192.0.2.10"),
    ("2001:db8::1", "2001:db8::1"),
    ("999.1.1.1", None),
    ("10.0.0.256", None),
    ("1.2.3", None),
    ("::zz", None),
    ("", None),
    (None, None),
    (42, None),
])
def test_inet_validated_in_python(address, expected):
    assert records.inet_or_none(address) == expected
    cache = {}
    assert records.inet_or_none(address, cache) == expected
    assert records.inet_or_none(address, cache) == expected


def test_invalid_inet_keeps_the_text():
    row = columns(records.copy_line(record(sourceIPAddress="999.1.1.1")))
    assert row["source_ip"] == b"999.1.1.1"
    assert row["source_inet"] == b"\\N"


def test_missing_event_id_gets_a_stable_content_hash():
    first = record()
    del first["eventID"]
    same = json.loads(json.dumps(first))
    same = dict(reversed(list(same.items())))  # key order must not matter
    other = dict(first, eventName="DeleteUser")
    ident = records.event_id(first)
    assert ident.startswith("sha256:") and len(ident) == len("sha256:") + 64
    assert records.event_id(same) == ident
    assert records.event_id(other) != ident
    assert columns(records.copy_line(first))["event_id"].decode() == ident
    assert records.event_id(dict(first, eventID="")).startswith("sha256:")


def test_nul_is_stripped_from_json_and_text():
    bad = record(userAgent="curl\x00/8", requestParameters={"name\x00": "a\x00b", "list": ["\x00"]})
    row = columns(records.copy_line(bad))
    assert row["user_agent"] == b"curl/8"
    assert b"\\u0000" not in row["record"] and b"\x00" not in row["record"]
    document = json.loads(row["record"].replace(b"\\\\", b"\\"))
    assert document["requestParameters"] == {"name": "ab", "list": [""]}


def test_escaped_backslash_u0000_text_is_not_mangled():
    # a literal backslash followed by u0000 is text, not a NUL character: it must survive
    literal = record(userAgent="a\\u0000b")
    row = columns(records.copy_line(literal))
    assert json.loads(row["record"].replace(b"\\\\", b"\\"))["userAgent"] == "a\\u0000b"


def test_copy_specials_escaped():
    row = columns(records.copy_line(record(errorMessage="line1\nline2\twith\\slash\r")))
    assert row["error_message"] == b"line1\\nline2\\twith\\\\slash\\r"


def test_typed_columns():
    row = columns(records.copy_line(record(errorCode="AccessDenied", resources=[{"ARN": "arn:aws:s3:::b"}])))
    assert row["event_time"] == b"2023-07-10T11:42:36Z"
    assert row["read_only"] == b"f"
    assert row["user_name"] == b"alice"
    assert row["access_key_id"] == b"AKIAEXAMPLE"
    assert row["error_code"] == b"AccessDenied"
    assert json.loads(row["resources"]) == [{"ARN": "arn:aws:s3:::b"}]
    assert row["source_inet"] == b"192.0.2.10"
    assert columns(records.copy_line(record(readOnly="true")))["read_only"] == b"t"
    assert columns(records.copy_line(record(readOnly=None)))["read_only"] == b"\\N"
    assert columns(records.copy_line(record(eventTime="yesterday")))["event_time"] == b"\\N"


def test_assumed_role_user_name_from_session_issuer():
    identity = {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/r/s",
                "sessionContext": {"sessionIssuer": {"type": "Role", "userName": "r"}}}
    row = columns(records.copy_line(record(userIdentity=identity)))
    assert row["user_name"] == b"r"
    assert row["user_type"] == b"AssumedRole"


def test_record_without_identity():
    row = columns(records.copy_line(record(userIdentity="weird")))
    assert row["user_type"] == b"\\N"


def test_parse_log_gzip_and_plain():
    body = json.dumps({"Records": [record(), record(eventID="2")]}).encode()
    assert len(records.parse_log(gzip.compress(body))) == 2
    assert len(records.parse_log(body)) == 2


@pytest.mark.parametrize("data, message", [
    (gzip.compress(json.dumps({"Records": [record()]}).encode())[:-20], "truncated or corrupt gzip"),
    (gzip.compress(b'{"Records": [{"eventID": '), "invalid JSON"),
    (b"\x1f\x8bnot gzip at all", "truncated or corrupt gzip"),
    (gzip.compress(b'{"digestStartTime": "2023-07-10T11:00:00Z"}'), "no Records"),
    (gzip.compress(b'[1, 2]'), "no Records"),
    (gzip.compress(json.dumps({"Records": [{"eventID": "1"}]}).encode()) + b"trailing garbage", "corrupt gzip"),
])
def test_parse_log_bad_files(data, message):
    with pytest.raises(records.BadLogFile, match=message):
        records.parse_log(data)


def test_copy_chunks_ids_and_chunking():
    found = [record(eventID="id-%d" % number) for number in range(7)]
    chunks, ids = records.copy_chunks(found, rows_per_chunk=3)
    assert len(chunks) == 3
    assert ids == ["id-%d" % number for number in range(7)]
    assert b"".join(chunks).count(b"\n") == 7


def test_s3_key_pattern():
    assert S3_LOG_KEY.search("AWSLogs/123456789012/CloudTrail/us-east-1/2023/07/10/x.json.gz")
    assert S3_LOG_KEY.search("trail/AWSLogs/o-abcdef1234/123456789012/CloudTrail/eu-west-1/2023/07/10/x.json.gz")
    assert not S3_LOG_KEY.search("AWSLogs/123456789012/CloudTrail-Digest/us-east-1/2023/07/10/x.json.gz")
    assert not S3_LOG_KEY.search("AWSLogs/123456789012/CloudTrail-Insight/us-east-1/2023/07/10/x.json.gz")
    assert not S3_LOG_KEY.search("AWSLogs/123456789012/elasticloadbalancing/us-east-1/2023/07/10/x.log.gz")


def test_trail_locations():
    trails = [{"S3BucketName": "b"}, {"S3BucketName": "b"}, {"S3BucketName": "c", "S3KeyPrefix": "org/"},
              {"Name": "no-bucket"}]
    assert trail_locations(trails) == [("b", "AWSLogs/"), ("c", "org/AWSLogs/")]


def test_without_orjson_same_rows(monkeypatch):
    line = records.copy_line(record(userAgent=UA_331, requestParameters={"k\x00": "\u00e9"}))
    monkeypatch.setattr(records, "orjson", None)
    plain = records.copy_line(record(userAgent=UA_331, requestParameters={"k\x00": "\u00e9"}))
    assert json.loads(columns(line)["record"]) == json.loads(columns(plain)["record"])
    assert columns(line)["user_agent"] == columns(plain)["user_agent"]


# --- decompression with a cap -------------------------------------------------------------------

def _bomb(mebibytes):
    """gzip of `mebibytes` MiB of spaces (about 1 KB compressed per MiB), built without holding it."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    parts = [packer.compress(block) for _mib in range(mebibytes)]
    parts.append(packer.flush())
    return b"".join(parts)


def test_decompression_bomb_is_a_bad_file_at_the_default_cap():
    bomb = _bomb(300)  # 300 MiB of spaces: more than the default 256 MiB
    assert len(bomb) < 1 << 20
    with pytest.raises(records.BadLogFile, match=r"decompresses to more than 256 MiB \(max_file_size\)"):
        records.parse_log(bomb)


def test_decompression_stops_at_the_cap():
    """Memory stays near the cap: the bomb is never decompressed whole."""
    import tracemalloc
    bomb = _bomb(200)
    tracemalloc.start()
    try:
        with pytest.raises(records.BadLogFile, match="decompresses to more than 4 MiB"):
            records.parse_log(bomb, max_size=4 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, "decompression allocated %d MiB for a 4 MiB cap" % (peak >> 20)


def test_plain_file_over_the_cap():
    with pytest.raises(records.BadLogFile, match="larger than 1 MiB"):
        records.parse_log(b" " * ((1 << 20) + 1), max_size=1 << 20)


def test_gzip_members_are_all_read_and_count_against_the_cap():
    body = json.dumps({"Records": [record(eventID="%d" % number) for number in range(3)]}).encode()
    half = len(body) // 2
    two = gzip.compress(body[:half]) + gzip.compress(body[half:]) + b"\x00" * 8
    assert [item["eventID"] for item in records.parse_log(two)] == ["0", "1", "2"]
    with pytest.raises(records.BadLogFile, match="decompresses to more than"):
        records.gunzip(two, len(body) - 1)
    assert records.gunzip(two, len(body)) == body


# --- one bad record is that record's problem ----------------------------------------------------

def _bad_records_file():
    good = [json.dumps(record(eventID="good-%d" % number)) for number in range(3)]
    bad = [
        '{"eventID": "inf", "requestParameters": {"size": 1e999}}',     # no double holds it
        '{"eventID": "surrogate", "userAgent": "\\ud800 lone"}',        # lone UTF-16 surrogate
        '{"eventID": "nan", "requestParameters": {"x": NaN}}',           # not JSON, Python takes it
        '5',                                                              # not an object
    ]
    text = '{"Records": [%s, %s, %s, %s, %s, %s, %s]}' % (good[0], bad[0], bad[1], good[1], bad[2], bad[3], good[2])
    raw = text.encode("utf-8")
    # and one with bytes that are not UTF-8 at all
    raw = raw[:-2] + b', {"eventID": "bytes", "userAgent": "\xff\xfe"}]}'
    return gzip.compress(raw)


@pytest.mark.parametrize("with_orjson", [True, False])
def test_bad_records_are_rejected_one_by_one(monkeypatch, with_orjson):
    if not with_orjson:
        monkeypatch.setattr(records, "orjson", None)
    elif records.orjson is None:
        pytest.skip("orjson not installed")
    found = records.parse_log(_bad_records_file())
    assert len(found) == 8
    rejected = []
    chunks, ids = records.copy_chunks(found, rows_per_chunk=2, rejected=rejected)
    assert ids == ["good-0", "good-1", "good-2"]
    assert b"".join(chunks).count(b"\n") == 3
    reasons = dict(rejected)
    assert sorted(reasons) == [1, 2, 4, 5, 7]
    assert "1e999" in reasons[1] and "requestParameters.size" in reasons[1]
    assert "surrogate" in reasons[2] and "userAgent" in reasons[2]
    assert "NaN" in reasons[4]
    assert reasons[5] == "not an object"
    assert "not UTF-8" in reasons[7]
    # the rows that are built are valid jsonb text: no Infinity/NaN, valid UTF-8
    for line in b"".join(chunks).splitlines():
        stored = columns(line + b"\n")["record"].replace(b"\\\\", b"\\").decode("utf-8")
        json.loads(stored, parse_constant=lambda name: pytest.fail("%s in a stored record" % name))


def test_impossible_event_time_is_null():
    for value in ("2023-13-45T10:00:00Z", "2023-02-30T10:00:00Z", "2023-07-10T25:00:00Z", "0000-01-01T00:00:00Z",
                  "2024-02-29T23:59:60.5+02:00", "2023-07-10T11:42:36+16:00"):
        assert columns(records.copy_line(record(eventTime=value)))["event_time"] == b"\\N", value
    for value in ("2024-02-29T23:59:60+02:00", "2023-07-10T11:42:36.123456-0530", "2023-01-31T00:00:00Z"):
        assert columns(records.copy_line(record(eventTime=value)))["event_time"] == value.encode(), value
