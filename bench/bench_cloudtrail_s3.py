# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cloudtrail_ingest from S3 with latency: concurrent GETs hide it.

CT_BENCH_S3_FILES (2000) small log files (CT_BENCH_S3_EVENTS_PER_FILE, 5 events each, the real
samples' shapes) are put into the lab's moto (env LAB_AWS_ENDPOINT). Measured in one run, each
into a fresh database, the module run as Ansible runs it (a process):
  baseline   the files straight from moto (moto costs a few ms per GET, however many are in flight)
  latency    the same files through bench/s3_proxy.py, which waits 30 ms (CT_BENCH_S3_DELAY_MS)
             before forwarding every request (list and get), as a real S3 round trip does
Goal: latency wall <= 1.3x baseline wall, with the default fetch_concurrency (16).
"""

import glob
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import boto3  # noqa: E402  pylint: disable=wrong-import-position
import botocore.config  # noqa: E402  pylint: disable=wrong-import-position
import psycopg2  # noqa: E402  pylint: disable=wrong-import-position
from psycopg2 import sql  # noqa: E402  pylint: disable=wrong-import-position

from s3_proxy import S3Proxy  # noqa: E402  pylint: disable=wrong-import-position

SAMPLES = os.path.join(ROOT, "tests", "data", "cloudtrail", "invictus-ir")
FILES = int(os.environ.get("CT_BENCH_S3_FILES", "2000"))
PER_FILE = int(os.environ.get("CT_BENCH_S3_EVENTS_PER_FILE", "5"))
DELAY = float(os.environ.get("CT_BENCH_S3_DELAY_MS", "30")) / 1000.0
CONCURRENCY = int(os.environ.get("CT_BENCH_S3_CONCURRENCY", "16"))
ACCOUNT = "123456789012"


def pg_kwargs(db):
    return {"host": os.environ["LAB_PG_HOST"], "port": int(os.environ["LAB_PG_PORT"]),
            "user": os.environ.get("LAB_PG_USER", "postgres"), "dbname": db}


def s3_client():
    return boto3.client("s3", endpoint_url=os.environ["LAB_AWS_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=botocore.config.Config(max_pool_connections=16))


def fill(bucket):
    shapes = []
    for path in sorted(glob.glob(os.path.join(SAMPLES, "*.json.gz"))):
        with gzip.open(path) as handle:
            shapes.extend(json.dumps(record) for record in json.load(handle)["Records"])
    rng = random.Random(7)
    s3 = s3_client()
    s3.create_bucket(Bucket=bucket)

    def put(number):
        day = 1 + number * 28 // FILES
        batch = []
        for index in range(PER_FILE):
            record = json.loads(shapes[(number * PER_FILE + index) % len(shapes)])
            record["eventID"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            record["eventTime"] = "2024-02-%02dT%02d:%02d:00Z" % (day, number % 24, index)
            batch.append(record)
        key = "AWSLogs/%s/CloudTrail/%s/2024/02/%02d/%s_CloudTrail_x_%06d.json.gz" % (
            ACCOUNT, ("us-east-1", "eu-west-1")[number % 2], day, ACCOUNT, number)
        s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps({"Records": batch}).encode()))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(FILES)))


def run_module(endpoint, bucket, db):
    args = {"ANSIBLE_MODULE_ARGS": {
        "bucket": bucket, "endpoint_url": endpoint, "access_key": "testing", "secret_key": "testing",
        "region": "us-east-1", "login_host": os.environ["LAB_PG_HOST"], "login_port": int(os.environ["LAB_PG_PORT"]),
        "login_user": os.environ.get("LAB_PG_USER", "postgres"), "login_db": db, "ssl_mode": "disable",
        "fetch_concurrency": CONCURRENCY}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(args, handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".cache", "collections"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "plugins", "modules", "cloudtrail_ingest.py"),
                           handle.name], capture_output=True, env=env, check=False)
    elapsed = time.monotonic() - started
    os.unlink(handle.name)
    result = json.loads(proc.stdout)
    if result.get("failed") or result["files_loaded"] != FILES:
        sys.exit("module run failed or incomplete: %s\n%s" % (json.dumps(result)[:2000], proc.stderr.decode()[-2000:]))
    return result, elapsed


def main():
    admin = psycopg2.connect(**pg_kwargs(os.environ.get("LAB_PG_DB", "postgres")))
    admin.autocommit = True
    bucket = "bench-ct-s3-%s" % uuid.uuid4().hex[:8]
    dbs = ["bench_ct_s3_%s_%d" % (name, os.getpid()) for name in ("base", "latency")]
    proxy = S3Proxy(os.environ["LAB_AWS_ENDPOINT"], delay=DELAY).start()
    try:
        t0 = time.monotonic()
        fill(bucket)
        print("put %d files (%d events each) into moto in %.1f s" % (FILES, PER_FILE, time.monotonic() - t0))
        with admin.cursor() as cursor:
            for db in dbs:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
        base, base_s = run_module(os.environ["LAB_AWS_ENDPOINT"], bucket, dbs[0])
        latency, latency_s = run_module(proxy.url, bucket, dbs[1])
        gets = proxy.count(action="get")
        lists = proxy.count(action="list")
        ratio = latency_s / base_s
        print("baseline   moto directly        %6.1f s  %d files, %d events"
              % (base_s, base["files_loaded"], base["events_loaded"]))
        print("latency    +%d ms per request   %6.1f s  %d GETs, %d LISTs through the proxy, fetch_concurrency %d"
              % (DELAY * 1000, latency_s, gets, lists, CONCURRENCY))
        print("ratio      latency / baseline  %6.2fx  goal <= 1.30x  %s  (serial GETs would add >= %.0f s)"
              % (ratio, "OK" if ratio <= 1.3 else "MISSED", gets * DELAY))
    finally:
        proxy.stop()
        with admin.cursor() as cursor:
            for db in dbs:
                cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        admin.close()


if __name__ == "__main__":
    main()
