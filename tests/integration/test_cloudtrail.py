"""cloudtrail_ingest against the lab's real PostgreSQL and moto, with the 55 real sample files.

Expected numbers are derived here from the JSON with plain Python, not from the module's code.
Each test gets a fresh database (CREATE DATABASE with a unique name, dropped afterwards). The
module runs as Ansible runs it: a process reading its arguments from a JSON file.
"""
import glob
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from _lab import ROOT, fresh_database

SAMPLES = os.path.join(ROOT, "tests", "data", "cloudtrail", "invictus-ir")
MODULE = os.path.join(ROOT, "plugins", "modules", "cloudtrail_ingest.py")
SAMPLE_FILES = sorted(glob.glob(os.path.join(SAMPLES, "*.json.gz")))


def sample_records(paths=None):
    found = []
    for path in paths or SAMPLE_FILES:
        with gzip.open(path) as handle:
            found.extend(json.load(handle)["Records"])
    return found


@pytest.fixture(scope="module", autouse=True)
def _samples_present():
    if len(SAMPLE_FILES) != 55:
        pytest.fail("expected the 55 sample files under %s" % SAMPLES)


@pytest.fixture
def db(lab):
    with fresh_database(lab, "ct_test") as params:
        yield params


def query(db, statement, args=None):
    with psycopg2.connect(**db) as connection, connection.cursor() as cursor:
        cursor.execute(statement, args)
        rows = cursor.fetchall()
    connection.close()
    return rows


def count(db, relation="cloudtrail.events"):
    return query(db, sql.SQL("SELECT count(*) FROM {}").format(sql.SQL(".").join(
        sql.Identifier(part) for part in relation.split("."))))[0][0]


def module_args(lab, db, **args):
    args.update({"login_host": db["host"], "login_port": db["port"], "login_user": db["user"], "login_db": db["dbname"],
                 "ssl_mode": "disable",
                 "endpoint_url": lab["LAB_AWS_ENDPOINT"], "access_key": "testing", "secret_key": "testing",
                 "region": "us-east-1"})
    return args


def start_module(lab, db, tmp_path, check=False, **args):
    path = tmp_path / ("args-%s.json" % uuid.uuid4().hex[:8])
    payload = module_args(lab, db, **args)
    if check:
        payload["_ansible_check_mode"] = True
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".cache", "collections"))
    return subprocess.Popen([sys.executable, MODULE, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def run_module(lab, db, tmp_path, check=False, **args):
    proc = start_module(lab, db, tmp_path, check=check, **args)
    out, err = proc.communicate(timeout=600)
    try:
        result = json.loads(out)
    except ValueError:
        pytest.fail("module output is not JSON: %s\n%s" % (out[-3000:], err[-3000:]))
    assert not result.get("failed"), result
    return result


def write_log(path, document):
    with open(path, "wb") as handle:
        handle.write(gzip.compress(json.dumps(document).encode()))


def test_samples_load_exactly_then_rerun_skips_everything(lab, db, tmp_path):
    expected = sample_records()
    assert len(expected) == 2900
    first = run_module(lab, db, tmp_path, path=SAMPLES)
    assert first["changed"] is True
    assert first["migrations_applied"] == [1, 2]
    assert first["files_seen"] == 55 and first["files_loaded"] == 55
    assert first["events_loaded"] == 2900 and first["duplicates"] == 0
    assert first["files_skipped"] == [] and first["files_failed"] == []
    assert count(db) == 2900
    assert query(db, "SELECT count(DISTINCT event_id) FROM cloudtrail.events")[0][0] == len(
        {record["eventID"] for record in expected})
    assert query(db, "SELECT count(*), sum(events), sum(inserted), count(error) FROM cloudtrail.files")[0] == (
        55, 2900, 2900, 0)

    # no truncation, service names as text, inet only for addresses
    longest = max(len(record["userAgent"]) for record in expected)
    assert longest == 331
    assert query(db, "SELECT max(length(user_agent)) FROM cloudtrail.events")[0][0] == longest
    addresses = sum(1 for record in expected if record["sourceIPAddress"][0].isdigit())
    assert query(db, "SELECT count(source_inet) FROM cloudtrail.events")[0][0] == addresses
    assert query(db, "SELECT count(*) FROM cloudtrail.events WHERE source_ip = 'ec2.amazonaws.com' "
                     "AND source_inet IS NULL")[0][0] == sum(
        1 for record in expected if record["sourceIPAddress"] == "ec2.amazonaws.com")
    no_user_name = sum(1 for record in expected if "userName" not in record["userIdentity"])
    assert no_user_name == 152
    assert query(db, "SELECT count(*) FROM cloudtrail.events WHERE record->'userIdentity'->>'userName' IS NULL")[0][
        0] == no_user_name
    # the whole record is kept
    one = expected[1234]
    assert query(db, "SELECT record FROM cloudtrail.events WHERE event_id = %s", (one["eventID"],))[0][0] == one

    second = run_module(lab, db, tmp_path, path=SAMPLES)
    assert second["changed"] is False
    assert second["files_loaded"] == 0 and second["events_loaded"] == 0
    assert len(second["files_skipped"]) == 55
    assert {item["reason"] for item in second["files_skipped"]} == {"already loaded"}
    assert count(db) == 2900


def test_views_return_the_expected_rows(lab, db, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in SAMPLE_FILES:
        shutil.copy(path, logs)
    # the samples hold no failed console login and no root activity: add some, CloudTrail-shaped
    root = {"type": "Root", "principalId": "123837392027", "arn": "arn:aws:iam::123837392027:root",
            "accountId": "123837392027"}
    extra = [
        {"eventVersion": "1.08", "userIdentity": {"type": "IAMUser", "principalId": "AIDAX",
                                                  "accountId": "123837392027", "accessKeyId": "",
                                                  "userName": "HIDDEN_DUE_TO_SECURITY_REASONS"},
         "eventTime": "2023-07-10T13:00:0%dZ" % number, "eventSource": "signin.amazonaws.com",
         "eventName": "ConsoleLogin", "awsRegion": "us-east-1", "sourceIPAddress": "203.0.113.%d" % number,
         "userAgent": "Mozilla/5.0", "errorMessage": "Failed authentication", "requestParameters": None,
         "responseElements": {"ConsoleLogin": "Failure"},
         "additionalEventData": {"MFAUsed": "No", "LoginTo": "https://console.aws.amazon.com/"},
         "eventID": "f0000000-0000-4000-8000-00000000000%d" % number, "readOnly": False,
         "eventType": "AwsConsoleSignIn", "recipientAccountId": "123837392027"}
        for number in range(3)
    ] + [
        {"eventVersion": "1.08", "userIdentity": root, "eventTime": "2023-07-10T13:05:00Z",
         "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "awsRegion": "us-east-1",
         "sourceIPAddress": "198.51.100.7", "userAgent": "Mozilla/5.0", "requestParameters": None,
         "responseElements": {"ConsoleLogin": "Success"}, "eventID": "r0000000-0000-4000-8000-000000000001",
         "readOnly": False, "eventType": "AwsConsoleSignIn", "recipientAccountId": "123837392027"},
        {"eventVersion": "1.08", "userIdentity": dict(root, accessKeyId="ASIAROOTSESSION0001"),
         "eventTime": "2023-07-10T13:06:00Z", "eventSource": "iam.amazonaws.com", "eventName": "CreateAccessKey",
         "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.7", "userAgent": "console.amazonaws.com",
         "requestParameters": {}, "responseElements": {"accessKey": {"accessKeyId": "AKIANEW"}},
         "eventID": "r0000000-0000-4000-8000-000000000002", "readOnly": False, "eventType": "AwsApiCall",
         "recipientAccountId": "123837392027"},
        # a service acting for root is not root activity (CIS 3.3 / 4.3)
        {"eventVersion": "1.08", "userIdentity": dict(root, invokedBy="support.amazonaws.com"),
         "eventTime": "2023-07-10T13:07:00Z", "eventSource": "iam.amazonaws.com", "eventName": "GetAccountSummary",
         "awsRegion": "us-east-1", "sourceIPAddress": "support.amazonaws.com", "userAgent": "support.amazonaws.com",
         "requestParameters": None, "responseElements": None, "eventID": "r0000000-0000-4000-8000-000000000003",
         "readOnly": True, "eventType": "AwsApiCall", "recipientAccountId": "123837392027"},
    ]
    write_log(logs / "123837392027_CloudTrail_us-east-1_20230710T1300Z_extraEvents00001.json.gz", {"Records": extra})
    everything = sample_records() + extra

    result = run_module(lab, db, tmp_path, path=str(logs))
    assert result["events_loaded"] == 2900 + len(extra)

    failed = [record for record in everything if record["eventName"] == "ConsoleLogin"
              and (record.get("errorMessage") or (record.get("responseElements") or {}).get("ConsoleLogin") == "Failure")]
    assert len(failed) == 3
    rows = query(db, "SELECT event_id, source_ip, user_name, error_message, mfa_used "
                     "FROM cloudtrail.failed_console_logins ORDER BY event_time")
    assert [row[0] for row in rows] == [record["eventID"] for record in failed]
    assert rows[0][1:] == ("203.0.113.0", "HIDDEN_DUE_TO_SECURITY_REASONS", "Failed authentication", "No")
    assert query(db, "SELECT count(*) FROM cloudtrail.failed_console_logins WHERE source_inet << '203.0.113.0/24'")[
        0][0] == 3

    root_activity = [record for record in everything if record["userIdentity"].get("type") == "Root"
                     and "invokedBy" not in record["userIdentity"] and record["eventType"] != "AwsServiceEvent"]
    assert len(root_activity) == 2
    assert [row[0] for row in query(db, "SELECT event_id FROM cloudtrail.root_activity ORDER BY event_time")] == [
        record["eventID"] for record in root_activity]

    iam_changes = [record for record in everything
                   if record["eventSource"] == "iam.amazonaws.com" and record["readOnly"] is False]
    assert sorted(row[0] for row in query(db, "SELECT event_id FROM cloudtrail.iam_changes")) == sorted(
        record["eventID"] for record in iam_changes)
    names = {}
    for record in iam_changes:
        names[record["eventName"]] = names.get(record["eventName"], 0) + 1
    assert dict(query(db, "SELECT event_name, count(*) FROM cloudtrail.iam_changes GROUP BY 1")) == names
    assert names["CreateRole"] == 13 and names["CreateAccessKey"] == 3

    per_key = {}
    for record in everything:
        key = record["userIdentity"].get("accessKeyId")
        if key is not None:
            entry = per_key.setdefault(key, {"events": 0, "errors": 0, "ips": set(), "times": []})
            entry["events"] += 1
            entry["errors"] += 1 if record.get("errorCode") else 0
            entry["ips"].add(record["sourceIPAddress"])
            entry["times"].append(record["eventTime"])
    rows = query(db, "SELECT access_key_id, events, errors, source_ips, "
                     "to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
                     "to_char(last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') "
                     "FROM cloudtrail.access_key_activity")
    assert len(rows) == len(per_key)
    for key, events, errors, ips, first, last in rows:
        entry = per_key[key]
        assert (events, errors, ips, first, last) == (entry["events"], entry["errors"], len(entry["ips"]),
                                                      min(entry["times"]), max(entry["times"])), key
    top = max(per_key.items(), key=lambda item: item[1]["events"])
    assert top[0] == "AKIATFQR7NSC8Q4X20BJ" and top[1]["events"] == 2104


def test_bad_files_are_recorded_and_skipped(lab, db, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    good = SAMPLE_FILES[:3]
    for path in good:
        shutil.copy(path, logs)
    with open(SAMPLE_FILES[3], "rb") as handle:
        raw = handle.read()
    (logs / "a_truncated.json.gz").write_bytes(raw[:len(raw) // 2])
    (logs / "b_invalid.json.gz").write_bytes(gzip.compress(b'{"Records": [{"eventID": "x", '))
    write_log(logs / "c_no_records.json.gz", {"digestStartTime": "2023-07-10T11:00:00Z", "logFiles": []})
    # an eventID-less record and NUL characters, in an otherwise good file
    nul = dict(sample_records([SAMPLE_FILES[4]])[0], userAgent="curl\u0000/8")
    del nul["eventID"]
    write_log(logs / "d_nul_no_id.json.gz", {"Records": [nul]})

    result = run_module(lab, db, tmp_path, path=str(logs))
    expected = len(sample_records(good)) + 1
    assert result["files_loaded"] == 4
    assert result["events_loaded"] == expected
    failed = {os.path.basename(item["key"]): item["error"] for item in result["files_failed"]}
    assert sorted(failed) == ["a_truncated.json.gz", "b_invalid.json.gz", "c_no_records.json.gz"]
    assert failed["a_truncated.json.gz"].startswith("truncated or corrupt gzip")
    assert failed["b_invalid.json.gz"].startswith("invalid JSON")
    assert failed["c_no_records.json.gz"].startswith("no Records")
    assert {os.path.basename(item["key"]) for item in result["files_skipped"]} == set(failed)
    assert count(db) == expected
    ledger = dict(query(db, "SELECT key, error FROM cloudtrail.files WHERE error IS NOT NULL"))
    assert {os.path.basename(key) for key in ledger} == set(failed)
    stored = query(db, "SELECT event_id, user_agent, record->>'userAgent' FROM cloudtrail.events "
                       "WHERE event_id LIKE 'sha256:%%'")
    assert len(stored) == 1 and stored[0][1:] == ("curl/8", "curl/8")

    again = run_module(lab, db, tmp_path, path=str(logs))
    assert again["changed"] is False and again["files_failed"] == [] and again["events_loaded"] == 0
    reasons = {os.path.basename(item["key"]): item["reason"] for item in again["files_skipped"]}
    assert len(reasons) == 7
    assert reasons["b_invalid.json.gz"].startswith("failed before: invalid JSON")
    assert reasons["d_nul_no_id.json.gz"] == "already loaded"

    # the same events under another name: loaded file, all duplicates (hash ids are stable)
    shutil.copy(logs / "d_nul_no_id.json.gz", logs / "e_copy.json.gz")
    shutil.copy(good[0], logs / "f_copy.json.gz")
    third = run_module(lab, db, tmp_path, path=str(logs))
    assert third["files_loaded"] == 2 and third["events_loaded"] == 0
    assert third["duplicates"] == 1 + len(sample_records(good[:1]))
    assert count(db) == expected


def test_killed_midway_then_rerun_is_exact(lab, db, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    for path in SAMPLE_FILES:
        shutil.copy(path, logs)
    # a FIFO sorting in the middle: the run blocks reading it, after the files before it are in
    names = sorted(os.path.basename(path) for path in SAMPLE_FILES)
    fifo = logs / (names[20][:-len(".json.gz")] + "0.json.gz")
    os.mkfifo(fifo)
    before = sum(1 for name in names if name < fifo.name)
    assert 0 < before < 55
    proc = start_module(lab, db, tmp_path, path=str(logs), workers=2)
    deadline = time.monotonic() + 120
    loaded = 0
    while time.monotonic() < deadline:
        try:
            loaded = query(db, "SELECT count(*) FROM cloudtrail.files")[0][0]
        except psycopg2.Error:
            loaded = 0  # schema not created yet
        if loaded >= before:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert loaded == before
    partial = count(db)
    assert 0 < partial < 2900
    assert partial == len(sample_records([os.path.join(SAMPLES, name) for name in names[:before]]))

    os.unlink(fifo)
    result = run_module(lab, db, tmp_path, path=str(logs))
    assert result["files_loaded"] == 55 - before
    assert len(result["files_skipped"]) == before
    assert result["events_loaded"] == 2900 - partial and result["duplicates"] == 0
    assert count(db) == 2900


def test_killed_at_random_points_never_leaves_partial_files(lab, db, tmp_path):
    """SIGKILL while files are in flight (COPY or INSERT running): only whole files remain."""
    logs = tmp_path / "logs"
    logs.mkdir()
    # more data, so kills land while files are being loaded: 5 copies of each sample, new ids
    per_file = {}
    for copy in range(5):
        for path in SAMPLE_FILES:
            found = sample_records([path])
            for record in found:
                record["eventID"] = "%d-%s" % (copy, record["eventID"])
            name = "%d_%s" % (copy, os.path.basename(path))
            write_log(logs / name, {"Records": found})
            per_file[str(logs / name)] = len(found)
    total = sum(per_file.values())
    for delay in (0.2, 0.5, 0.8):
        proc = start_module(lab, db, tmp_path, path=str(logs), workers=2)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if query(db, "SELECT count(*) FROM cloudtrail.files")[0][0] > 0:
                    break
            except psycopg2.Error:
                pass
            time.sleep(0.01)
        time.sleep(delay / 10)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        ledger = dict(query(db, "SELECT key, inserted FROM cloudtrail.files"))
        assert sum(per_file[key] for key in ledger) == count(db)
    partial = count(db)
    result = run_module(lab, db, tmp_path, path=str(logs))
    assert result["events_loaded"] == total - partial and result["duplicates"] == 0
    assert count(db) == total


def test_check_mode_writes_nothing(lab, db, tmp_path):
    check = run_module(lab, db, tmp_path, check=True, path=SAMPLES)
    assert check["changed"] is True
    assert check["files_loaded"] == 55 and check["events_loaded"] == 2900
    assert check["migrations_applied"] == [1, 2]
    assert query(db, "SELECT to_regclass('cloudtrail.events'), "
                     "(SELECT count(*) FROM pg_namespace WHERE nspname = 'cloudtrail')")[0] == (None, 0)

    half = tmp_path / "half"
    half.mkdir()
    for path in SAMPLE_FILES[:20]:
        shutil.copy(path, half)
    run_module(lab, db, tmp_path, path=str(half))
    loaded = count(db)
    # the other files, in check mode against a store holding the first 20 (under other keys)
    check = run_module(lab, db, tmp_path, check=True, path=SAMPLES)
    assert check["files_loaded"] == 55
    assert check["events_loaded"] == 2900 - loaded and check["duplicates"] == loaded
    assert count(db) == loaded
    assert query(db, "SELECT count(*) FROM cloudtrail.files")[0][0] == 20


def _listing(s3, bucket):
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return {item["Key"]: (item["ETag"], item["Size"], item["LastModified"]) for page in pages
            for item in page.get("Contents", [])}


def test_s3_source_accounts_regions_org_trail_read_only(lab, aws, db, tmp_path):
    s3 = aws.client("s3")
    bucket = "acme-cloudtrail-%s" % uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    for number, path in enumerate(SAMPLE_FILES):
        name = os.path.basename(path)
        if number < 30:
            key = "AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/" + name
        else:  # organization trail layout, another account and region
            key = "AWSLogs/o-abcd123456/218007301253/CloudTrail/us-west-2/2023/07/10/" + name
        with open(path, "rb") as handle:
            s3.put_object(Bucket=bucket, Key=key, Body=handle.read())
    s3.put_object(Bucket=bucket, Key="AWSLogs/123837392027/CloudTrail-Digest/us-east-1/2023/07/10/d.json.gz",
                  Body=gzip.compress(b'{"digestStartTime": "x"}'))
    s3.put_object(Bucket=bucket, Key="AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/truncated.json.gz",
                  Body=gzip.compress(b'{"Records": []}')[:10])
    s3.put_object(Bucket=bucket, Key="README.txt", Body=b"not a log")
    before = _listing(s3, bucket)

    result = run_module(lab, db, tmp_path, bucket=bucket)
    assert result["sources"] == ["s3://%s/" % bucket]
    assert result["files_seen"] == 56 and result["files_loaded"] == 55
    assert [item["key"] for item in result["files_failed"]] == [
        "s3://%s/AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/truncated.json.gz" % bucket]
    assert result["events_loaded"] == 2900
    assert count(db) == 2900
    keys = [row[0] for row in query(db, "SELECT key FROM cloudtrail.files WHERE error IS NULL")]
    assert sum(1 for key in keys if "/o-abcd123456/218007301253/CloudTrail/us-west-2/" in key) == 25
    etags = dict(query(db, "SELECT key, etag FROM cloudtrail.files"))
    assert etags["s3://%s/AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/%s" % (
        bucket, os.path.basename(SAMPLE_FILES[0]))] == before[
        "AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/" + os.path.basename(SAMPLE_FILES[0])][0].strip('"')

    again = run_module(lab, db, tmp_path, bucket=bucket, prefix="AWSLogs/")
    assert again["changed"] is False and again["events_loaded"] == 0 and len(again["files_skipped"]) == 56
    # read-only: same keys, same etags, same sizes, not rewritten
    assert _listing(s3, bucket) == before


def test_s3_trails_discovered_with_describe_trails(lab, aws, db, tmp_path):
    s3 = aws.client("s3")
    bucket = "trail-bucket-%s" % uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    for path in SAMPLE_FILES[:5]:
        with open(path, "rb") as handle:
            s3.put_object(Bucket=bucket, Key="audit/AWSLogs/123837392027/CloudTrail/us-east-1/2023/07/10/"
                          + os.path.basename(path), Body=handle.read())
    aws.client("cloudtrail").create_trail(Name="org-trail", S3BucketName=bucket, S3KeyPrefix="audit",
                                          IsMultiRegionTrail=True)
    before = _listing(s3, bucket)
    result = run_module(lab, db, tmp_path, regions=["us-east-1", "eu-west-1"])
    assert result["sources"] == ["s3://%s/audit/AWSLogs/" % bucket]
    assert result["files_loaded"] == 5
    assert result["events_loaded"] == len(sample_records(SAMPLE_FILES[:5]))
    assert _listing(s3, bucket) == before
