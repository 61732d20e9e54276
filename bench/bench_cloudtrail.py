# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""cloudtrail_ingest end to end against `psql \\copy` of the same rows and a row-by-row INSERT.

Synthetic events are made from the real samples' shapes (tests/data/cloudtrail): each is
a real record with a new eventID, requestID, time and (when it was an address) source address,
~1.2 KB of JSON. They are written as CloudTrail writes them (gzip, {"Records": [...]}).

Measured in one run against the lab's PostgreSQL (env LAB_PG_*), each in a fresh schema with the
module's own tables and indexes:
  limit      psql \\copy of the rows the module would COPY (prepared beforehand)
  module     the module as Ansible runs it (a process), files to committed rows, peak RSS
  re-run     the module again over the same files (the ledger skips them)
  row-by-row one INSERT per event (psycopg2), on the first CT_BENCH_ROW_EVENTS events

Env: CT_BENCH_EVENTS (500000), CT_BENCH_FILES (100), CT_BENCH_ROW_EVENTS (50000),
CT_BENCH_WORKERS (2). Goals: module >= 0.9x limit, peak RSS <= 100 MB, re-run ~0 s.
"""

import glob
import gzip
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

import psycopg2  # noqa: E402  pylint: disable=wrong-import-position
from psycopg2 import sql  # noqa: E402  pylint: disable=wrong-import-position

from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import records, schema  # noqa: E402

SAMPLES = os.path.join(ROOT, "tests", "data", "cloudtrail", "invictus-ir")
EVENTS = int(os.environ.get("CT_BENCH_EVENTS", "500000"))
FILES = int(os.environ.get("CT_BENCH_FILES", "100"))
ROW_EVENTS = min(EVENTS, int(os.environ.get("CT_BENCH_ROW_EVENTS", "50000")))
WORKERS = int(os.environ.get("CT_BENCH_WORKERS", "2"))


def pg_kwargs(db):
    return {"host": os.environ["LAB_PG_HOST"], "port": int(os.environ["LAB_PG_PORT"]),
            "user": os.environ.get("LAB_PG_USER", "postgres"), "dbname": db}


def templates():
    found = []
    for path in sorted(glob.glob(os.path.join(SAMPLES, "*.json.gz"))):
        with gzip.open(path) as handle:
            found.extend(json.load(handle)["Records"])
    if not found:
        sys.exit("no samples under %s" % SAMPLES)
    return found


def generate(directory):
    """FILES gzip files holding EVENTS synthetic events; returns (total JSON bytes, events)."""
    rng = random.Random(42)
    shapes = [json.dumps(record) for record in templates()]
    per_file = -(-EVENTS // FILES)
    made = 0
    size = 0
    start = 1688990000
    for number in range(FILES):
        batch = []
        for _index in range(min(per_file, EVENTS - made)):
            record = json.loads(shapes[rng.randrange(len(shapes))])
            record["eventID"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            record["requestID"] = uuid.UUID(int=rng.getrandbits(128), version=4).hex.upper()
            record["eventTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + made))
            if record.get("sourceIPAddress", "")[:1].isdigit():
                record["sourceIPAddress"] = "%d.%d.%d.%d" % (rng.randrange(1, 224), rng.randrange(256),
                                                             rng.randrange(256), rng.randrange(1, 255))
            batch.append(record)
            made += 1
        body = json.dumps({"Records": batch}, separators=(",", ":")).encode()
        size += len(body)
        name = "123456789012_CloudTrail_us-east-1_20240101T%04dZ_%s.json.gz" % (number, uuid.uuid4().hex[:16])
        with open(os.path.join(directory, name), "wb") as handle:
            handle.write(gzip.compress(body, 6))
    return size, made


def prepare_rows(directory, out_path):
    with open(out_path, "wb") as out:
        for path in sorted(glob.glob(os.path.join(directory, "*.json.gz"))):
            with open(path, "rb") as handle:
                chunks, _ids = records.copy_chunks(records.parse_log(handle.read()))
            out.writelines(chunks)


def fresh_schema(connection, name):
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
    connection.commit()
    schema.migrate(connection, name)


def run_module(directory, db, schema_name):
    args = {"ANSIBLE_MODULE_ARGS": {"path": directory, "login_host": os.environ["LAB_PG_HOST"],
                                    "login_port": int(os.environ["LAB_PG_PORT"]),
                                    "login_user": os.environ.get("LAB_PG_USER", "postgres"),
                                    "login_db": db, "ssl_mode": "disable",
                                    "schema": schema_name, "workers": WORKERS}}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(args, handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".cache", "collections"))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "plugins", "modules", "cloudtrail_ingest.py"),
                           handle.name], capture_output=True, env=env, check=False)
    elapsed = time.monotonic() - started
    out, err = proc.stdout, proc.stderr
    # the largest child so far: psql and earlier runs are far smaller than a loading module
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(handle.name)
    result = json.loads(out)
    if result.get("failed"):
        sys.exit("module failed: %s\n%s" % (result.get("msg"), err.decode()))
    return result, elapsed, usage


def main():
    admin = psycopg2.connect(**pg_kwargs(os.environ.get("LAB_PG_DB", "postgres")))
    admin.autocommit = True
    db = "bench_cloudtrail_%d" % os.getpid()
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    work = tempfile.mkdtemp(prefix="bench-ct-")
    try:
        logs = os.path.join(work, "logs")
        os.makedirs(logs)
        t0 = time.monotonic()
        size, events = generate(logs)
        print("generated %d events in %d files, %.0f bytes/event, %.1f s"
              % (events, FILES, size / events, time.monotonic() - t0))
        prepared = os.path.join(work, "rows.tsv")
        prepare_rows(logs, prepared)
        connection = psycopg2.connect(**pg_kwargs(db))

        fresh_schema(connection, "bench_limit")
        columns = ", ".join(records.COLUMNS)
        t0 = time.monotonic()
        subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", os.environ["LAB_PG_HOST"], "-p",
                        os.environ["LAB_PG_PORT"], "-U", os.environ.get("LAB_PG_USER", "postgres"), "-d", db,
                        "-c", "\\copy bench_limit.events (%s) FROM '%s'" % (columns, prepared)], check=True)
        limit_s = time.monotonic() - t0
        limit_rate = events / limit_s

        result, module_s, usage = run_module(logs, db, "bench_module")
        if result["events_loaded"] != events:
            sys.exit("module loaded %s events, expected %d" % (result["events_loaded"], events))
        module_rate = events / module_s
        rss_mb = usage.ru_maxrss / 1024.0

        rerun, rerun_s, _usage = run_module(logs, db, "bench_module")
        assert rerun["events_loaded"] == 0 and len(rerun["files_skipped"]) == FILES

        fresh_schema(connection, "bench_rows")
        statement = sql.SQL("INSERT INTO bench_rows.events ({}) VALUES ({})").format(
            sql.SQL(", ").join(sql.Identifier(name) for name in records.COLUMNS),
            sql.SQL(", ").join(sql.Placeholder() * len(records.COLUMNS)))
        t0 = time.monotonic()
        done = 0
        with connection.cursor() as cursor:
            for path in sorted(glob.glob(os.path.join(logs, "*.json.gz"))):
                with open(path, "rb") as handle:
                    found = records.parse_log(handle.read())
                for record in found:
                    if done >= ROW_EVENTS:
                        break
                    values = records.row_values(record)
                    resources = record.get("resources")
                    values.append(None if resources is None else json.dumps(resources))
                    values.append(json.dumps(records.strip_nul(record)))
                    cursor.execute(statement, values)
                    done += 1
                connection.commit()
                if done >= ROW_EVENTS:
                    break
        rows_rate = done / (time.monotonic() - t0)
        connection.close()

        print("limit      psql \\copy        %8.0f events/s  (%.1f s)" % (limit_rate, limit_s))
        print("module     cloudtrail_ingest %8.0f events/s  (%.1f s, %d workers)  %.2fx limit  goal >= 0.90x  %s"
              % (module_rate, module_s, WORKERS, module_rate / limit_rate,
                 "OK" if module_rate >= 0.9 * limit_rate else "MISSED"))
        print("peak RSS   module process    %8.1f MB   goal <= 100 MB  %s"
              % (rss_mb, "OK" if rss_mb <= 100 else "MISSED"))
        print("re-run     %d files skipped  %8.2f s     (process start included)" % (FILES, rerun_s))
        print("row-by-row INSERT            %8.0f events/s  (%d events)  module is %.1fx faster"
              % (rows_rate, done, module_rate / rows_rate))
    finally:
        shutil.rmtree(work, ignore_errors=True)
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(db)))
        admin.close()


if __name__ == "__main__":
    main()
