# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cloudtrail_ingest's listing of a bucket whose files are all loaded: full vs incremental.

A moto server of its own (in this process: 100k objects are put straight into its backend, which
takes seconds where 100k PutObject calls take minutes) holds CT_BENCH_LIST_FILES (100000) tiny
log files: CT_BENCH_LIST_STREAMS (2) account/region streams, 250 files a day (one every ~6 min,
as CloudTrail delivers). The ledger of a fresh store in the lab's PostgreSQL (env LAB_PG_*) holds
every one of them (key, etag, size): they are "already loaded". Then the module runs twice as
Ansible runs it (a process):
  first      full_listing: true, every key listed and looked up in the ledger (0.1.0's behaviour)
  second     the default incremental listing (StartAfter per stream, relist_days 2)
Goal: the second run costs < 5% of the first (wall clock; S3 requests and keys listed shown too).
A run over an empty directory (process start, connection, migration check) is shown for scale.
"""

import datetime
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

import boto3  # noqa: E402  pylint: disable=wrong-import-position
import psycopg2  # noqa: E402  pylint: disable=wrong-import-position
import psycopg2.extras  # noqa: E402  pylint: disable=wrong-import-position
from psycopg2 import sql  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import schema  # noqa: E402

FILES = int(os.environ.get("CT_BENCH_LIST_FILES", "100000"))
STREAMS = int(os.environ.get("CT_BENCH_LIST_STREAMS", "2"))
PER_DAY = 250
ACCOUNT = "123456789012"
REGIONS = ["us-east-1", "eu-west-1", "eu-central-1", "ap-southeast-2", "us-west-2", "sa-east-1"]


def pg_kwargs(db):
    return {"host": os.environ["LAB_PG_HOST"], "port": int(os.environ["LAB_PG_PORT"]),
            "user": os.environ.get("LAB_PG_USER", "postgres"), "dbname": db}


def free_port():
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def keys():
    per_stream = FILES // STREAMS
    start = datetime.date(2024, 1, 1)
    for stream in range(STREAMS):
        region = REGIONS[stream % len(REGIONS)]
        for number in range(per_stream):
            day = start + datetime.timedelta(days=number // PER_DAY)
            minute = (number % PER_DAY) * 1440 // PER_DAY
            yield "AWSLogs/%s/CloudTrail/%s/%s/%s_CloudTrail_%s_%sT%02d%02dZ_%06d.json.gz" % (
                ACCOUNT, region, day.strftime("%Y/%m/%d"), ACCOUNT, region, day.strftime("%Y%m%d"),
                minute // 60, minute % 60, number)


def run_module(endpoint, db, **extra):
    args = {"endpoint_url": endpoint, "access_key": "testing", "secret_key": "testing", "region": "us-east-1",
            "login_host": os.environ["LAB_PG_HOST"], "login_port": int(os.environ["LAB_PG_PORT"]),
            "login_user": os.environ.get("LAB_PG_USER", "postgres"), "login_db": db, "ssl_mode": "disable"}
    args.update(extra)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".cache", "collections"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "plugins", "modules", "cloudtrail_ingest.py"),
                           handle.name], capture_output=True, env=env, check=False)
    elapsed = time.monotonic() - started
    os.unlink(handle.name)
    result = json.loads(proc.stdout)
    if result.get("failed") or result["files_loaded"]:
        sys.exit("unexpected run: %s\n%s" % (json.dumps(result)[:2000], proc.stderr.decode()[-2000:]))
    return result, elapsed


def main():
    from moto.s3.models import s3_backends  # pylint: disable=import-outside-toplevel
    from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = "http://127.0.0.1:%d" % port
    admin = psycopg2.connect(**pg_kwargs(os.environ.get("LAB_PG_DB", "postgres")))
    admin.autocommit = True
    db = "bench_ct_list_%d" % os.getpid()
    bucket = "bench-ct-list-%s" % uuid.uuid4().hex[:8]
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket=bucket)
        backend = s3_backends[ACCOUNT]["aws"]
        body = b"\x1f\x8b"  # never read: every file is in the ledger
        etag = hashlib.md5(body).hexdigest()  # noqa: S324  pylint: disable=no-member
        t0 = time.monotonic()
        all_keys = list(keys())
        for key in all_keys:
            backend.put_object(bucket, key, body, disable_notification=True)
        print("put %d objects (%d streams) into moto's backend in %.1f s"
              % (len(all_keys), STREAMS, time.monotonic() - t0))
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        connection = psycopg2.connect(**pg_kwargs(db))
        schema.migrate(connection, "cloudtrail")
        with connection.cursor() as cursor:
            psycopg2.extras.execute_values(
                cursor, "INSERT INTO cloudtrail.files (key, etag, size, events, inserted) VALUES %s",
                [("s3://%s/%s" % (bucket, key), etag, len(body), 1, 1) for key in all_keys], page_size=5000)
            cursor.execute("ANALYZE cloudtrail.files")
        connection.commit()
        connection.close()

        empty = tempfile.mkdtemp(prefix="bench-ct-empty-")
        _idle, idle_s = run_module(endpoint, db, path=empty)
        os.rmdir(empty)
        first, first_s = run_module(endpoint, db, bucket=bucket, full_listing=True)
        second, second_s = run_module(endpoint, db, bucket=bucket)
        assert first["files_skipped"]["already loaded"] == len(all_keys), first["files_skipped"]
        ratio = second_s / first_s
        print("no-op      empty directory        %6.2f s  (process start, connection, schema check)" % idle_s)
        print("first      full listing           %6.2f s  %4d LIST requests  %6d keys listed"
              % (first_s, first["s3_list_requests"], first["files_seen"]))
        print("second     incremental            %6.2f s  %4d LIST requests  %6d keys listed"
              % (second_s, second["s3_list_requests"], second["files_seen"]))
        print("ratio      second / first         %6.3fx goal < 0.05x  %s;  requests %.3fx, keys %.4fx"
              % (ratio, "OK" if ratio < 0.05 else "MISSED", second["s3_list_requests"] / first["s3_list_requests"],
                 second["files_seen"] / first["files_seen"]))
        print("           without the no-op's fixed cost: %.3fx"
              % (max(second_s - idle_s, 0) / max(first_s - idle_s, 1e-6)))
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        admin.close()
        server.stop()


if __name__ == "__main__":
    main()
