"""cloudtrail_ingest at S3 scale: incremental listing, retries, monthly partitions, retention, migration 5.

Against the lab's moto and PostgreSQL. S3 requests are counted by a recording proxy in front of
moto (bench/s3_proxy.py), which also enforces ExpectedBucketOwner as S3 does (moto ignores it)
and injects read failures. Expected numbers come from the files written here, not from the
module's code.
"""
import datetime
import gzip
import json
import os
import subprocess
import sys
import uuid

import psycopg2
import pytest
from psycopg2 import sql

from _lab import ROOT, fresh_database

sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

from s3_proxy import S3Proxy  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import schema as ct_schema  # noqa: E402

MODULE = os.path.join(ROOT, "plugins", "modules", "cloudtrail_ingest.py")
ACCOUNT = "123456789012"  # moto's
REGION_PREFIX = "AWSLogs/%s/CloudTrail/eu-west-1/" % ACCOUNT


@pytest.fixture
def db(lab):
    with fresh_database(lab, "ct_scale") as params:
        yield params


@pytest.fixture
def proxy(lab):
    found = S3Proxy(lab["LAB_AWS_ENDPOINT"], owner=ACCOUNT).start()
    yield found
    found.stop()


def query(db, statement, args=None):
    connection = psycopg2.connect(**db)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, args)
            return cursor.fetchall()
    finally:
        connection.close()


def start_module(lab, db, tmp_path, endpoint=None, check=False, **args):
    args.update({"login_host": db["host"], "login_port": db["port"], "login_user": db["user"],
                 "login_db": db["dbname"], "ssl_mode": "disable",
                 "endpoint_url": endpoint or lab["LAB_AWS_ENDPOINT"], "access_key": "testing",
                 "secret_key": "testing", "region": "us-east-1"})
    if check:
        args["_ansible_check_mode"] = True
    path = tmp_path / ("args-%s.json" % uuid.uuid4().hex[:8])
    path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".cache", "collections"))
    return subprocess.Popen([sys.executable, MODULE, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env)


def finish(proc, may_fail=False):
    out, err = proc.communicate(timeout=600)
    try:
        result = json.loads(out)
    except ValueError:
        pytest.fail("module output is not JSON: %s\n%s" % (out[-3000:], err[-3000:]))
    if not may_fail:
        assert not result.get("failed"), result
    return result


def run_module(lab, db, tmp_path, **args):
    return finish(start_module(lab, db, tmp_path, **args))


def event(event_id, when):
    return {"eventVersion": "1.08", "eventID": event_id, "eventTime": when, "eventSource": "s3.amazonaws.com",
            "eventName": "GetObject", "awsRegion": "eu-west-1", "sourceIPAddress": "198.51.100.7",
            "userAgent": "test", "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::%s:user/u" % ACCOUNT,
                                                  "accountId": ACCOUNT, "accessKeyId": "AKIATEST"},
            "recipientAccountId": ACCOUNT, "readOnly": True, "eventType": "AwsApiCall"}


def log_body(*events):
    return gzip.compress(json.dumps({"Records": list(events)}).encode())


def day_key(day, name):
    return REGION_PREFIX + day.strftime("%Y/%m/%d/") + "%s_CloudTrail_eu-west-1_%s_%s.json.gz" % (
        ACCOUNT, day.strftime("%Y%m%dT0000Z"), name)


def put_day(s3, bucket, day, name, body=None):
    key = day_key(day, name)
    if body is None:
        body = log_body(event("%s-%s" % (day.isoformat(), name), day.strftime("%Y-%m-%dT12:00:00Z")))
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def listed_keys(proxy):
    """start-after of every ListObjectsV2 request that names one."""
    return [request["query"].get("start-after", [None])[0] for request in proxy.requests
            if request["method"] == "GET" and request["query"].get("list-type") == ["2"]]


def get_paths(proxy):
    return [request["path"] for request in proxy.requests
            if request["method"] == "GET" and "list-type" not in request["query"] and request["path"].count("/") > 1]


def test_incremental_listing_window_late_file_and_old_days_not_listed(lab, aws, db, tmp_path, proxy):
    s3 = aws.client("s3")
    bucket = "ct-incr-%s" % uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    days = [datetime.date(2023, 7, 1) + datetime.timedelta(days=n) for n in range(10)]
    for day in days:
        put_day(s3, bucket, day, "a")
    # noise the listing must not descend into
    s3.put_object(Bucket=bucket, Key="AWSLogs/%s/CloudTrail-Digest/eu-west-1/2023/07/01/d.json.gz" % ACCOUNT,
                  Body=b"x")

    first = run_module(lab, db, tmp_path, endpoint=proxy.url, bucket=bucket)
    assert first["files_loaded"] == 10 and first["events_loaded"] == 10
    assert listed_keys(proxy).count(None) >= 1  # the first run lists the stream from the start
    # every S3 call carried the expected owner (the caller's account by default)
    s3_calls = [r for r in proxy.requests if "x-amz-content-sha256" in r["headers"]]
    assert s3_calls and all(r["headers"].get("x-amz-expected-bucket-owner") == ACCOUNT for r in s3_calls)

    # a file delivered late into a day inside the window (2 days before the newest), one into an old day
    late = put_day(s3, bucket, days[-2], "late")
    old = put_day(s3, bucket, days[1], "old")
    proxy.reset()
    second = run_module(lab, db, tmp_path, endpoint=proxy.url, bucket=bucket, relist_days=2)
    assert second["files_loaded"] == 1 and second["events_loaded"] == 1
    # listed: the window only (07/08, 07/09 + late, 07/10), from StartAfter=.../2023/07/08/
    assert second["files_seen"] == 4
    assert second["files_skipped"] == {"already loaded": 3, "failed": 0}
    starts = [key for key in listed_keys(proxy) if key]
    assert starts == [REGION_PREFIX + "2023/07/08/"]
    assert get_paths(proxy) == ["/%s/%s" % (bucket, late)]
    assert second["s3_list_requests"] == proxy.count(action="list")
    loaded = {row[0] for row in query(db, "SELECT key FROM cloudtrail.files WHERE error IS NULL")}
    assert "s3://%s/%s" % (bucket, late) in loaded and "s3://%s/%s" % (bucket, old) not in loaded

    # nothing new: a third run lists the window again and reads nothing
    proxy.reset()
    third = run_module(lab, db, tmp_path, endpoint=proxy.url, bucket=bucket)
    assert third["changed"] is False and third["files_loaded"] == 0 and get_paths(proxy) == []

    # full_listing finds the file put into an old day by hand
    fourth = run_module(lab, db, tmp_path, endpoint=proxy.url, bucket=bucket, full_listing=True)
    assert fourth["files_loaded"] == 1 and fourth["files_skipped"]["already loaded"] == 11
    assert query(db, "SELECT count(*) FROM cloudtrail.events")[0][0] == 12


def test_bucket_of_another_owner_is_refused(lab, aws, db, tmp_path, proxy):
    """A bucket of that name owned by someone else (recreated after a deletion, a typo) is not read."""
    s3 = aws.client("s3")
    bucket = "ct-owner-%s" % uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    put_day(s3, bucket, datetime.date(2023, 7, 1), "a")
    result = finish(start_module(lab, db, tmp_path, endpoint=proxy.url, bucket=bucket,
                                 expected_bucket_owner="210987654321"), may_fail=True)
    assert result.get("failed") and "AccessDenied" in result["msg"] + json.dumps(result.get("error", ""))
    assert get_paths(proxy) == []
    assert all(r["headers"].get("x-amz-expected-bucket-owner") == "210987654321" for r in proxy.requests
               if "x-amz-content-sha256" in r["headers"])


def test_failed_files_stay_in_the_ledger_and_are_retried_then_loaded(lab, aws, db, tmp_path, proxy):
    s3 = aws.client("s3")
    bucket = "ct-retry-%s" % uuid.uuid4().hex[:8]
    s3.create_bucket(Bucket=bucket)
    days = [datetime.date(2023, 7, 1) + datetime.timedelta(days=n) for n in range(8)]
    for day in days:
        put_day(s3, bucket, day, "a")
    good = log_body(event("truncated-then-fixed", "2023-07-01T13:00:00Z"))
    broken = put_day(s3, bucket, days[0], "b", body=good[:12])
    unreadable = put_day(s3, bucket, days[1], "c")
    proxy.fail = {unreadable: 403}
    proxy.fail_times = {unreadable: 100}

    first = run_module(lab, db, tmp_path, endpoint=proxy.url, bucket=bucket, relist_days=1)
    failed = {item["key"]: item["error"] for item in first["files_failed"]}
    assert sorted(failed) == sorted("s3://%s/%s" % (bucket, key) for key in (broken, unreadable))
    assert failed["s3://%s/%s" % (bucket, broken)].startswith("truncated or corrupt gzip")
    assert failed["s3://%s/%s" % (bucket, unreadable)].startswith("could not read: ")
    assert first["files_skipped"] == {"already loaded": 0, "failed": 2} and first["files_loaded"] == 8
    ledger = dict(query(db, "SELECT key, error IS NOT NULL FROM cloudtrail.files"))
    assert len(ledger) == 10 and sum(ledger.values()) == 2

    # both are days older than the window: not listed again, but retried from the ledger
    proxy.reset()
    proxy.fail_times = {unreadable: 0}
    s3.put_object(Bucket=bucket, Key=broken, Body=good)  # the delivery fixed (new etag)
    second = run_module(lab, db, tmp_path, endpoint=proxy.url, bucket=bucket, relist_days=1)
    assert [key for key in listed_keys(proxy) if key] == [REGION_PREFIX + "2023/07/07/"]
    assert sorted(get_paths(proxy)) == sorted("/%s/%s" % (bucket, key) for key in (broken, unreadable))
    assert second["files_failed"] == [] and second["files_loaded"] == 2 and second["events_loaded"] == 2
    assert query(db, "SELECT count(*) FROM cloudtrail.files WHERE error IS NOT NULL")[0][0] == 0
    assert query(db, "SELECT count(*) FROM cloudtrail.events WHERE event_id = 'truncated-then-fixed'")[0][0] == 1
    assert query(db, "SELECT count(*) FROM cloudtrail.events")[0][0] == 10


def write_local(directory, name, *events):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as handle:
        handle.write(log_body(*events))


def partitions(db):
    return sorted(row[0] for row in query(
        db, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'cloudtrail.events'::regclass"))


def test_partitions_created_once_by_two_loaders_at_once(lab, db, tmp_path):
    months = ["2023-%02d" % month for month in range(1, 13)]
    for side in ("a", "b"):
        for number in range(24):
            month = months[number % 12]
            # both loaders need every month, at the same time; each event in one file only
            write_local(str(tmp_path / side), "%s%03d.json.gz" % (side, number),
                        *[event("%s-%d-%d" % (side, number, n), "%s-1%dT10:00:00Z" % (month, n)) for n in range(5)])
    # the store exists (migrated) before: the race is on the partitions, not the migration
    (tmp_path / "empty").mkdir()
    run_module(lab, db, tmp_path, path=str(tmp_path / "empty"))
    procs = [start_module(lab, db, tmp_path, path=str(tmp_path / side), workers=2) for side in ("a", "b")]
    results = [finish(proc) for proc in procs]
    assert [r["events_loaded"] for r in results] == [120, 120]
    assert all(r["files_failed"] == [] for r in results)
    created = sorted(results[0]["partitions_created"] + results[1]["partitions_created"])
    expected = ["events_y2023m%02d" % month for month in range(1, 13)]
    assert created == expected  # each created once, by one of them
    assert partitions(db) == sorted(expected + ["events_undated"])
    assert query(db, "SELECT count(*), count(DISTINCT event_id) FROM cloudtrail.events")[0] == (240, 240)
    # rows are in the partition of their month
    assert query(db, "SELECT count(*) FROM cloudtrail.events_y2023m05 "
                     "WHERE event_time < '2023-05-01Z' OR event_time >= '2023-06-01Z'")[0][0] == 0
    assert query(db, "SELECT count(*) FROM cloudtrail.events_y2023m05")[0][0] == 20


def month_shift(today, back):
    index = today.year * 12 + today.month - 1 - back
    return datetime.date(index // 12, index % 12 + 1, 1)


def test_retention_drops_exactly_the_old_partitions(lab, db, tmp_path):
    today = datetime.datetime.now(datetime.timezone.utc).date()
    backs = [0, 1, 2, 3, 13]
    logs = tmp_path / "logs"
    for back in backs:
        first = month_shift(today, back)
        write_local(str(logs), "m%02d.json.gz" % back,
                    *[event("m%d-%d" % (back, n), first.strftime("%Y-%m-0") + "%dT08:00:00Z" % (n + 1))
                      for n in range(3)])
    write_local(str(logs), "undated.json.gz", dict(event("undated", "x"), eventTime="not a time"))
    loaded = run_module(lab, db, tmp_path, path=str(logs))
    assert loaded["events_loaded"] == 16
    names = {back: ct_schema.partition_name(month_shift(today, back)) for back in backs}
    assert partitions(db) == sorted(list(names.values()) + ["events_undated"])
    assert query(db, "SELECT event_time = '-infinity' FROM cloudtrail.events WHERE event_id = 'undated'")[0][0]

    # keep 3 months (the current one included): the partitions 3 and 13 months back go
    check = run_module(lab, db, tmp_path, path=str(logs), retention_months=3, check=True)
    assert check["partitions_dropped"] == [names[13], names[3]] and check["changed"] is True
    assert len(partitions(db)) == 6
    dropped = run_module(lab, db, tmp_path, path=str(logs), retention_months=3)
    assert dropped["partitions_dropped"] == [names[13], names[3]] and dropped["changed"] is True
    assert partitions(db) == sorted([names[0], names[1], names[2], "events_undated"])
    assert query(db, "SELECT count(*) FROM cloudtrail.events")[0][0] == 10  # 3 months x 3 + undated
    again = run_module(lab, db, tmp_path, path=str(logs), retention_months=3)
    assert again["changed"] is False and again["partitions_dropped"] == []

    # a file with events older than the retention: those are left out, no partition comes back
    write_local(str(logs), "z_mixed.json.gz", event("old-one", month_shift(today, 5).strftime("%Y-%m-02T00:00:00Z")),
                event("new-one", today.strftime("%Y-%m-%dT00:00:00Z")))
    mixed = run_module(lab, db, tmp_path, path=str(logs), retention_months=3)
    assert mixed["files_loaded"] == 1 and mixed["events_loaded"] == 1 and mixed["events_expired"] == 1
    assert mixed["duplicates"] == 0 and mixed["partitions_created"] == []
    assert len(partitions(db)) == 4


def test_migration_5_converts_an_unpartitioned_table_keeping_every_row(lab, db, tmp_path):
    connection = psycopg2.connect(**db)
    with connection.cursor() as cursor:
        # the store as 0.1.0 (plus migrations 3 and 4) left it: migrations 1 to 4
        cursor.execute("CREATE SCHEMA cloudtrail")
        cursor.execute("CREATE TABLE cloudtrail.schema_version (version integer PRIMARY KEY, description text "
                       "NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for number, description, statements in ct_schema.MIGRATIONS[:4]:
            for statement in statements:
                cursor.execute(sql.SQL(statement).format(schema=sql.Identifier("cloudtrail")))
            cursor.execute("INSERT INTO cloudtrail.schema_version VALUES (%s, %s)", (number, description))
        cursor.execute("INSERT INTO cloudtrail.files (key, etag, size, events, inserted) "
                       "VALUES ('/old/a.json.gz', 'e', 1, 7, 7) RETURNING id")
        file_id = cursor.fetchone()[0]
        rows = [("e%d" % n, "2023-0%d-15T10:00:00Z" % (n % 3 + 4), "ConsoleLogin" if n == 0 else "GetObject",
                 "Root" if n == 1 else "IAMUser") for n in range(6)] + [("no-time", None, "GetObject", "IAMUser")]
        for event_id, when, name, user_type in rows:
            record = {"eventID": event_id, "eventTime": when, "eventName": name, "userIdentity": {"type": user_type},
                      "responseElements": {"ConsoleLogin": "Failure"} if name == "ConsoleLogin" else None}
            cursor.execute("INSERT INTO cloudtrail.events (event_id, event_time, event_name, user_type, "
                           "error_message, record, file_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                           (event_id, when, name, user_type, "Failed authentication" if name == "ConsoleLogin"
                            else None, json.dumps(record), file_id))
    connection.commit()
    before = query(db, "SELECT event_id, event_time, event_name, record::text, file_id FROM cloudtrail.events "
                       "ORDER BY event_id")
    views_before = {view: query(db, "SELECT count(*) FROM cloudtrail.%s" % view)[0][0] for view in ct_schema.VIEWS}
    connection.close()
    assert views_before["failed_console_logins"] == 1 and views_before["root_activity"] == 1

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_module(lab, db, tmp_path, path=str(empty))
    assert result["migrations_applied"] == [5] and result["schema_version"] == 5
    after = query(db, "SELECT event_id, CASE WHEN event_time = '-infinity' THEN NULL ELSE event_time END, "
                      "event_name, record::text, file_id FROM cloudtrail.events ORDER BY event_id")
    assert after == before
    assert query(db, "SELECT relkind FROM pg_class WHERE oid = 'cloudtrail.events'::regclass")[0][0] == "p"
    assert partitions(db) == ["events_undated", "events_y2023m04", "events_y2023m05", "events_y2023m06"]
    assert query(db, "SELECT to_regclass('cloudtrail.events_unpartitioned')")[0][0] is None
    views_after = {view: query(db, "SELECT count(*) FROM cloudtrail.%s" % view)[0][0] for view in ct_schema.VIEWS}
    assert views_after == views_before
    # the ledger still says the old file is loaded, and new events load beside the old ones
    write_local(str(tmp_path / "new"), "n.json.gz", event("e0", "2023-04-15T10:00:00Z"),
                event("fresh", "2023-04-16T10:00:00Z"))
    new = run_module(lab, db, tmp_path, path=str(tmp_path / "new"))
    assert new["events_loaded"] == 1 and new["duplicates"] == 1
