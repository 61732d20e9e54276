# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The pipelined load: one reader thread, ``workers`` database sessions, one transaction per file.

Private to the collection: not a public API, may change without notice.

The reader lists the source a page at a time, asks the ledger which files are new, reads,
gunzips and parses each new file and turns it into COPY text; it hands whole files to the
workers through a queue of ``workers`` slots, so memory stays at a few files whatever the size
of the bucket. Each worker owns a session and its TEMP staging table (per session: a shared
staging table deadlocks on TRUNCATE) and, per file, in one transaction: upserts the ledger row,
COPYs the rows into staging, ``INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING`` into
events, and commits. A killed run leaves whole files or nothing; the ledger makes re-runs skip
what is done. While one session waits for PostgreSQL (COPY costs the server ~25 us of CPU per
event, mostly parsing jsonb) the reader parses the next file: that overlap is the speed.

A file that failed (bad gzip, a decompression bomb, rejected by PostgreSQL ...) is recorded in the
ledger with its error and tried again on the next run; the ledger row is rewritten only when the
outcome changed, so a file that keeps failing the same way changes nothing. One record that
cannot be stored is left out of its file and counted (``records_rejected``), never the file.

Progress: ``progress(report)`` is called at most every ``progress_interval`` seconds, and once at
the end, with files done / seen so far (the listing is paged, so the total grows until
``listing_complete``), events and events per second.
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from . import records as ct_records
from . import schema as ct_schema

_STOP = object()


class _BuildError(Exception):
    """Building the rows of a file failed half-way (the reader said so through the queue)."""


class _Job:
    """One file in flight: its ledger data, event count, and the queue of its COPY chunks.

    The reader fills ``chunks`` (bounded: a few hundred KB each) while a worker COPYs from it,
    so a file is never held as a whole COPY payload.
    """

    __slots__ = ("log", "error", "events", "chunks", "ids", "rejected", "previous", "_stop")

    def __init__(self, log, stop, error=None, events=0, depth=8, previous=None):
        self.log = log
        self.error = error
        self.events = events
        self.chunks = queue.Queue(maxsize=depth)
        self.ids = []
        # (index, reason) of records left out; complete once next_chunk() returned None
        self.rejected = []
        # the ledger's (etag, size, error) of this key before the run, or None
        self.previous = previous
        self._stop = stop

    def next_chunk(self):
        """The next (payload, ids), or None at the end of the file."""
        while True:
            try:
                item = self.chunks.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    raise _BuildError("the run was stopped")
                continue
            if isinstance(item, Exception):
                raise _BuildError(str(item))
            return item

    def read(self, size=-1):  # pylint: disable=unused-argument
        """File-like read() for copy_expert: the next chunk, b'' at the end."""
        item = self.next_chunk()
        if item is None:
            return b""
        return item[0]

    readline = read


def _prefix_end(prefix):
    """The smallest string after every string starting with ``prefix`` (byte order, COLLATE "C")."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class Ledger:
    """What the sources may ask the ledger (``files``) while listing: read-only, COLLATE "C"."""

    def __init__(self, connection, query):
        self._connection = connection
        self._q = query

    def newest_key(self, prefix):
        with self._connection.cursor() as cursor:
            cursor.execute(self._q('SELECT max(key COLLATE "C") FROM {schema}.files '
                                   'WHERE key COLLATE "C" >= %s AND key COLLATE "C" < %s'),
                           (prefix, _prefix_end(prefix)))
            return cursor.fetchone()[0]

    def failed(self, low, high):
        """(key, etag, size) of files recorded with an error, low <= key < high."""
        with self._connection.cursor() as cursor:
            cursor.execute(self._q('SELECT key, etag, size FROM {schema}.files WHERE error IS NOT NULL '
                                   'AND key COLLATE "C" >= %s AND key COLLATE "C" < %s ORDER BY key COLLATE "C"'),
                           (low, high))
            return cursor.fetchall()


def _first_line(exc):
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


class Loader:
    """Load log files from sources into the store in ``schema``; ``connect()`` opens a session."""

    # at most this many rejected records are listed in the result (all are counted)
    MAX_REJECTED_LISTED = 100
    # at most this many failed files are listed in the result (all are counted in files_skipped)
    MAX_FAILED_LISTED = 1000

    def __init__(self, connect, schema="cloudtrail", workers=2, check_mode=False,
                 max_file_size=ct_records.DEFAULT_MAX_FILE_SIZE, progress=None, progress_interval=10.0,
                 fetch_concurrency=16, retention_months=None):
        import psycopg2
        from psycopg2 import sql
        self._psycopg2 = psycopg2
        self._sql = sql
        self.connect = connect
        self.schema = schema
        self.workers = max(1, int(workers))
        self.check_mode = check_mode
        self.max_file_size = int(max_file_size)
        self._progress = progress
        self.fetch_concurrency = max(1, int(fetch_concurrency))
        self.retention_months = retention_months
        # rows older than this (first day of a month) are not loaded: their partition was dropped
        self.cutoff = None if not retention_months else ct_schema.retention_cutoff(retention_months)
        self._progress_interval = float(progress_interval)
        self._started = time.monotonic()
        self._last_progress = self._started
        self._files_done = 0
        self._events_done = 0
        self._listing_complete = False
        self._ledger_writes = 0
        self._lock = threading.Lock()
        # partitions are created in their own short transactions, on a session of their own
        self._ddl_lock = threading.Lock()
        self._ddl = None
        self._known_months = set()
        self._stop = threading.Event()
        self._errors = []
        self.result = {
            "files_seen": 0, "files_loaded": 0, "events_loaded": 0, "duplicates": 0,
            "files_skipped": {"already loaded": 0, "failed": 0}, "files_failed": [],
            "migrations_applied": [], "schema_version": 0, "records_rejected": 0, "rejected_records": [],
            "partitions_created": [], "partitions_dropped": [], "events_expired": 0, "s3_list_requests": 0,
        }

    @property
    def changed(self):
        """True when the run wrote (or, in check mode, would write) the store."""
        return bool(self.result["files_loaded"] or self._ledger_writes or self.result["migrations_applied"]
                    or self.result["partitions_dropped"])

    # --- progress -----------------------------------------------------------------------------

    def progress_report(self, finished=False):
        elapsed = max(time.monotonic() - self._started, 1e-6)
        with self._lock:
            return {
                "files_done": self._files_done,
                "files_total": self.result["files_seen"],
                "listing_complete": self._listing_complete or finished,
                "files_loaded": self.result["files_loaded"],
                "files_failed": len(self.result["files_failed"]),
                "events_loaded": self.result["events_loaded"],
                "events_processed": self._events_done,
                "events_per_second": round(self._events_done / elapsed, 1),
                "elapsed_seconds": round(elapsed, 1),
                "finished": finished,
            }

    def _file_done(self, events=0):
        """Count one finished file (loaded, failed or skipped); report when the interval passed."""
        now = time.monotonic()
        with self._lock:
            self._files_done += 1
            self._events_done += events
            due = self._progress is not None and now - self._last_progress >= self._progress_interval
            if due:
                self._last_progress = now
        if due:
            try:
                self._progress(self.progress_report())
            except Exception:  # pylint: disable=broad-except
                pass  # progress is best effort: never the reason a load fails

    def _q(self, template):
        return self._sql.SQL(template).format(schema=self._sql.Identifier(self.schema))

    # --- schema -------------------------------------------------------------------------------

    def prepare(self):
        """Migrate the schema (or, in check mode, say which migrations would run)."""
        connection = self.connect()
        try:
            if self.check_mode:
                with connection.cursor() as cursor:
                    pending = ct_schema.pending(cursor, self.schema)
                    version = ct_schema.current_version(cursor, self.schema)
                connection.rollback()
                self.result["migrations_applied"] = [number for number, _text in pending]
                self.result["schema_version"] = ct_schema.LATEST
                if self.cutoff is not None and version >= 5:
                    with connection.cursor() as cursor:
                        self.result["partitions_dropped"] = ct_schema.expired_partitions(cursor, self.schema, self.cutoff)
                    connection.rollback()
                return version
            self.result["migrations_applied"] = ct_schema.migrate(connection, self.schema)
            self.result["schema_version"] = ct_schema.LATEST
            if self.cutoff is not None:
                self.result["partitions_dropped"] = ct_schema.drop_partitions(connection, self.schema, self.cutoff)
            return ct_schema.LATEST
        finally:
            connection.close()

    # --- the run ------------------------------------------------------------------------------

    def run(self, sources):
        version = self.prepare()
        jobs = queue.Queue(maxsize=self.workers)
        threads = [threading.Thread(target=self._guard, args=(self._read, sources, jobs, version >= 1),
                                    name="cloudtrail-reader", daemon=True)]
        for number in range(self.workers):
            threads.append(threading.Thread(target=self._guard, args=(self._work, jobs, version >= 1),
                                            name="cloudtrail-worker-%d" % number, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._ddl is not None:
            self._ddl.close()
            self._ddl = None
        if self._errors:
            raise self._errors[0]
        self.result["files_failed"].sort(key=lambda item: item["key"])
        self.result["partitions_created"].sort()
        self.result["s3_list_requests"] = sum(getattr(source, "list_requests", 0) for source in sources)
        self.result["rejected_records"].sort(key=lambda item: (item["key"], item["index"]))
        if self._progress is not None:
            try:
                self._progress(self.progress_report(finished=True))
            except Exception:  # pylint: disable=broad-except
                pass
        return self.result

    def _guard(self, target, *args):
        try:
            target(*args)
        except Exception as exc:  # pylint: disable=broad-except
            with self._lock:
                self._errors.append(exc)
            self._stop.set()

    def _put(self, jobs, item):
        while not self._stop.is_set():
            try:
                jobs.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _skip(self, key, reason, failed=False):
        with self._lock:
            if failed:
                self.result["files_skipped"]["failed"] += 1
                if len(self.result["files_failed"]) < self.MAX_FAILED_LISTED:
                    self.result["files_failed"].append({"key": key, "error": reason})
            else:
                self.result["files_skipped"][reason] = self.result["files_skipped"].get(reason, 0) + 1
        self._file_done()

    def _count_rejected(self, key, rejected):
        if not rejected:
            return
        with self._lock:
            self.result["records_rejected"] += len(rejected)
            room = self.MAX_REJECTED_LISTED - len(self.result["rejected_records"])
            for index, reason in rejected[:max(room, 0)]:
                self.result["rejected_records"].append({"key": key, "index": index, "reason": reason})

    def _ledger(self, cursor, keys):
        cursor.execute(self._q("SELECT key, etag, size, error FROM {schema}.files WHERE key = ANY(%s)"), (keys,))
        return {row[0]: row[1:] for row in cursor.fetchall()}

    def _read(self, sources, jobs, has_store):
        connection = self.connect() if has_store else None
        ledger = None
        if connection is not None:
            connection.autocommit = True
            ledger = Ledger(connection, self._q)
        inet_cache = {}
        # reads in flight, oldest first: (log, previous, future); S3 latency, not CPU, bounds a
        # load from a real bucket, so up to fetch_concurrency GETs wait at the same time while
        # this thread parses the oldest
        inflight = collections.deque()
        pool = ThreadPoolExecutor(max_workers=self.fetch_concurrency, thread_name_prefix="cloudtrail-get")
        try:
            for source in sources:
                for page in source.pages(ledger):
                    with self._lock:
                        self.result["files_seen"] += len(page)
                    known = {}
                    if connection is not None:
                        with connection.cursor() as cursor:
                            known = self._ledger(cursor, [log.key for log in page])
                    for log in page:
                        if self._stop.is_set():
                            return
                        done = known.get(log.key)
                        same = done is not None and done[0] == log.etag and done[1] == log.size
                        if same and done[2] is None:
                            self._skip(log.key, "already loaded")
                            continue
                        # a file that failed before is tried again: the cause may be gone
                        previous = done if same else None
                        if log.size is not None and log.size > self.max_file_size:
                            if not self._put(jobs, _Job(log, self._stop, previous=previous, error=(
                                    "larger than %d MiB (max_file_size): refused" % (self.max_file_size >> 20)))):
                                return
                            continue
                        inflight.append((log, previous, pool.submit(log.read)))
                        while len(inflight) >= self.fetch_concurrency:
                            if not self._parse(inflight.popleft(), jobs, inet_cache):
                                return
            while inflight:
                if not self._parse(inflight.popleft(), jobs, inet_cache):
                    return
            with self._lock:
                self._listing_complete = True
        finally:
            for _log, _previous, future in inflight:
                future.cancel()
            pool.shutdown(wait=True)
            for _number in range(self.workers):
                self._put(jobs, _STOP)
            if connection is not None:
                connection.close()

    def _parse(self, item, jobs, inet_cache):
        """Parse one fetched file and hand it to the workers; False when the run stops."""
        log, previous, future = item
        try:
            data = future.result()
        except Exception as exc:  # pylint: disable=broad-except
            # recorded (the listing may not come back to it) and tried again on the next run
            return self._put(jobs, _Job(log, self._stop, previous=previous, error="could not read: " + _first_line(exc)))
        try:
            found = ct_records.parse_log(data, self.max_file_size)
        except ct_records.BadLogFile as exc:
            del data
            return self._put(jobs, _Job(log, self._stop, error=str(exc), previous=previous))
        del data
        job = _Job(log, self._stop, events=len(found), previous=previous)
        if not self._put(jobs, job):
            return False
        try:
            for chunk in ct_records.iter_chunks(found, inet_cache, rejected=job.rejected):
                if not self._put(job.chunks, chunk if self.check_mode else (chunk[0], None)):
                    return False
        except Exception as exc:  # pylint: disable=broad-except
            # not a record's fault (those are rejected one by one): this file fails
            self._put(job.chunks, exc)
            return True
        finally:
            del found
        job.events -= len(job.rejected)
        return self._put(job.chunks, None)

    def _session(self, has_store):
        connection = self.connect()
        if self.check_mode:
            connection.set_session(readonly=True)
            return connection
        with connection.cursor() as cursor:
            # Per-file commits are the unit of idempotence; losing the last ones in a server crash
            # only means the ledger does not have them and the next run loads them again.
            cursor.execute("SET synchronous_commit TO off")
            cursor.execute("SET temp_buffers TO '32MB'")
            if has_store:
                columns = self._sql.SQL(", ").join(self._sql.Identifier(name) for name in ct_records.COLUMNS)
                staging = self._sql.SQL("CREATE TEMP TABLE cloudtrail_staging ON COMMIT DELETE ROWS AS "
                                        "SELECT {columns} FROM {schema}.events WITH NO DATA")
                cursor.execute(staging.format(columns=columns, schema=self._sql.Identifier(self.schema)))
        connection.commit()
        return connection

    def _partitions(self, months):
        """Make sure the partitions of ``months`` exist: one session for all workers, in turn.

        Called before the file's transaction writes to ``events`` (CREATE TABLE ... PARTITION OF
        waits for the transactions that did), so it cannot wait on its own worker.
        """
        with self._ddl_lock:
            missing = [month for month in months if month not in self._known_months]
            if not missing:
                return
            if self._ddl is None:
                self._ddl = self.connect()
            created = ct_schema.ensure_partitions(self._ddl, self.schema, missing)
            self._known_months.update(missing)
        with self._lock:
            self.result["partitions_created"].extend(created)

    def _work(self, jobs, has_store):
        connection = self._session(has_store)
        columns = self._sql.SQL(", ").join(self._sql.Identifier(name) for name in ct_records.COLUMNS)
        statements = {
            "ledger": self._q(
                "INSERT INTO {schema}.files AS f (key, etag, size, events, inserted, loaded_at, error) "
                "VALUES (%s, %s, %s, %s, NULL, now(), %s) ON CONFLICT (key) DO UPDATE SET etag = EXCLUDED.etag, "
                "size = EXCLUDED.size, events = EXCLUDED.events, inserted = NULL, loaded_at = now(), "
                "error = EXCLUDED.error RETURNING f.id"),
            "copy": self._sql.SQL("COPY cloudtrail_staging ({columns}) FROM STDIN").format(columns=columns),
            "insert": self._sql.SQL(
                "INSERT INTO {schema}.events ({columns}, file_id) SELECT {values}, %s FROM cloudtrail_staging "
                "WHERE event_time IS NULL OR event_time >= %s "
                "ON CONFLICT (event_id, event_time) DO NOTHING").format(
                    schema=self._sql.Identifier(self.schema), columns=columns, values=self._sql.SQL(", ").join(
                        self._sql.SQL("coalesce(event_time, '-infinity')") if name == "event_time"
                        else self._sql.Identifier(name) for name in ct_records.COLUMNS)),
            # the months a file's rows go to, and how many rows are older than the retention
            "months": self._sql.SQL(
                "SELECT date_trunc('month', event_time AT TIME ZONE 'UTC')::date, count(*) FROM cloudtrail_staging "
                "WHERE event_time IS NOT NULL GROUP BY 1"),
            "inserted": self._q("UPDATE {schema}.files SET inserted = %s, events = %s, rejected = %s WHERE id = %s"),
            "existing": self._q("SELECT count(DISTINCT event_id) FROM {schema}.events WHERE event_id = ANY(%s)"),
        }
        try:
            while True:
                try:
                    job = jobs.get(timeout=0.2)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                if job is _STOP or self._stop.is_set():
                    return
                if job.error is not None:
                    self._record_failure(connection, statements, job, job.error)
                elif self.check_mode:
                    self._check(connection, statements, job, has_store)
                else:
                    self._load(connection, statements, job)
        finally:
            connection.close()

    def _record_failure(self, connection, statements, job, error):
        log = job.log
        # the same file failing the same way again: the ledger already says so, nothing to write
        unchanged = job.previous is not None and job.previous[2] == error
        if not unchanged:
            with self._lock:
                self._ledger_writes += 1
            if not self.check_mode:
                with connection.cursor() as cursor:
                    cursor.execute(statements["ledger"], (log.key, log.etag, log.size, None, error))
                connection.commit()
        self._skip(log.key, error, failed=True)

    def _check(self, connection, statements, job, has_store):
        ids = []
        try:
            while True:
                item = job.next_chunk()
                if item is None:
                    break
                ids.extend(item[1])
        except _BuildError as exc:
            self._record_failure(connection, statements, job, "could not build rows: %s" % exc)
            return
        job.ids = ids
        self._count_rejected(job.log.key, job.rejected)
        unique = len(set(job.ids))
        existing = 0
        if has_store:
            with connection.cursor() as cursor:
                cursor.execute(statements["existing"], (job.ids,))
                existing = cursor.fetchone()[0]
            connection.rollback()
        with self._lock:
            self.result["files_loaded"] += 1
            self.result["events_loaded"] += unique - existing
            self.result["duplicates"] += len(ids) - (unique - existing)
        self._file_done(len(ids))

    def _drain(self, job):
        """Take what the reader still has for a file COPY gave up on, so the reader moves on."""
        while not self._stop.is_set():
            try:
                item = job.next_chunk()
            except _BuildError:
                return
            if item is None:
                return

    def _load(self, connection, statements, job):
        psycopg2 = self._psycopg2
        log = job.log
        try:
            with connection.cursor() as cursor:
                cursor.execute(statements["ledger"], (log.key, log.etag, log.size, job.events, None))
                file_id = cursor.fetchone()[0]
                cursor.copy_expert(statements["copy"], job, size=1 << 20)
                cursor.execute(statements["months"])
                months = cursor.fetchall()
                expired = sum(rows for month, rows in months if self.cutoff is not None and month < self.cutoff)
                # nothing written to events yet in this transaction: safe to wait for the DDL lock
                self._partitions([month for month, _rows in months
                                  if (self.cutoff is None or month >= self.cutoff) and 1970 <= month.year < 9999])
                cursor.execute(statements["insert"], (file_id, "-infinity" if self.cutoff is None
                                                      else self.cutoff.isoformat() + " 00:00:00+00"))
                inserted = cursor.rowcount
                # the reader has finished the file (COPY read its end): the rejected count is final
                events = job.events
                cursor.execute(statements["inserted"], (inserted, events, len(job.rejected), file_id))
            connection.commit()
        except (psycopg2.DataError, psycopg2.IntegrityError) as exc:
            # the data of this file, not the session: record it, keep going with the next file
            connection.rollback()
            self._drain(job)
            self._record_failure(connection, statements, job, "rejected by PostgreSQL: " + _first_line(exc))
            return
        except _BuildError as exc:
            connection.rollback()
            if self._stop.is_set():
                return
            self._record_failure(connection, statements, job, "could not build rows: %s" % exc)
            return
        self._count_rejected(log.key, job.rejected)
        with self._lock:
            self.result["files_loaded"] += 1
            self.result["events_loaded"] += inserted
            self.result["events_expired"] += expired
            self.result["duplicates"] += events - inserted - expired
        self._file_done(events)
