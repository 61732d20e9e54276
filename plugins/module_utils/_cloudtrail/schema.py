# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Versioned schema of the CloudTrail store: migrations applied in order, once.

Private to the collection: not a public API, may change without notice.

Every statement is a constant template; the only variable part, the schema name, goes in through
psycopg2.sql.Identifier. A released migration is never edited: add the next version instead.
"""

from __future__ import annotations

import datetime
import re


def _sql(template, schema):
    from psycopg2 import sql
    return sql.SQL(template).format(schema=sql.Identifier(schema))


def _view_statements():
    return [statement for _number, _text, statements in MIGRATIONS for statement in statements
            if isinstance(statement, str) and statement.lstrip().startswith("CREATE VIEW")]


def _drop_views(cursor, schema):
    for name in VIEWS:
        cursor.execute(_sql("DROP VIEW IF EXISTS {schema}.%s" % name, schema))


def _create_views(cursor, schema):
    for statement in _view_statements():
        cursor.execute(_sql(statement, schema))


PARTITION_NAME = re.compile(r"\Aevents_y(\d{4})m(\d\d)\Z")


def partition_name(month):
    """events_yYYYYmMM for a datetime.date (or datetime) in the month."""
    return "events_y%04dm%02d" % (month.year, month.month)


def next_month(month):
    return datetime.date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def _create_partition(cursor, schema, month):
    from psycopg2 import sql
    month = datetime.date(month.year, month.month, 1)
    cursor.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {schema}.{name} PARTITION OF {schema}.events "
                           "FOR VALUES FROM (%s) TO (%s)").format(
        schema=sql.Identifier(schema), name=sql.Identifier(partition_name(month))),
        (month.isoformat() + " 00:00:00+00", next_month(month).isoformat() + " 00:00:00+00"))


def _partitions_for_old_rows(cursor, schema):
    cursor.execute(_sql("SELECT DISTINCT date_trunc('month', event_time AT TIME ZONE 'UTC')::date "
                        "FROM {schema}.events_unpartitioned WHERE event_time >= '1970-01-01 00:00:00+00' "
                        "AND event_time < '9999-12-01 00:00:00+00'", schema))
    for (month,) in cursor.fetchall():
        _create_partition(cursor, schema, month)


MIGRATIONS = (
    (1, "tables, ledger and indexes", (
        """CREATE TABLE {schema}.files (
            id bigserial PRIMARY KEY,
            key text NOT NULL UNIQUE,
            etag text,
            size bigint,
            events integer,
            inserted integer,
            loaded_at timestamptz NOT NULL DEFAULT now(),
            error text)""",
        """CREATE TABLE {schema}.events (
            event_id text PRIMARY KEY,
            event_time timestamptz,
            event_version text,
            event_source text,
            event_name text,
            aws_region text,
            source_ip text,
            source_inet inet,
            user_agent text,
            user_type text,
            principal_id text,
            user_arn text,
            user_name text,
            access_key_id text,
            account_id text,
            recipient_account_id text,
            invoked_by text,
            error_code text,
            error_message text,
            read_only boolean,
            event_type text,
            event_category text,
            request_id text,
            resources jsonb,
            record jsonb NOT NULL,
            file_id bigint)""",
        "CREATE INDEX events_event_time ON {schema}.events (event_time)",
        "CREATE INDEX events_event_name_time ON {schema}.events (event_name, event_time)",
        "CREATE INDEX events_user_arn ON {schema}.events (user_arn)",
        "CREATE INDEX events_source_ip ON {schema}.events (source_ip)",
        "CREATE INDEX events_access_key_id ON {schema}.events (access_key_id)",
        "CREATE INDEX events_errors ON {schema}.events (error_code, event_time) WHERE error_code IS NOT NULL",
    )),
    (2, "SIEM views", (
        """CREATE VIEW {schema}.failed_console_logins AS
            SELECT event_time, account_id, recipient_account_id, user_type, user_name, user_arn,
                   source_ip, source_inet, user_agent, error_message,
                   record->'additionalEventData'->>'MFAUsed' AS mfa_used, event_id
            FROM {schema}.events
            WHERE event_name = 'ConsoleLogin'
              AND (error_message IS NOT NULL OR record->'responseElements'->>'ConsoleLogin' = 'Failure')""",
        """CREATE VIEW {schema}.root_activity AS
            SELECT event_time, recipient_account_id, event_source, event_name, aws_region, source_ip,
                   source_inet, user_agent, error_code, error_message, event_type, event_id
            FROM {schema}.events
            WHERE user_type = 'Root' AND invoked_by IS NULL
              AND event_type IS DISTINCT FROM 'AwsServiceEvent'""",
        """CREATE VIEW {schema}.iam_changes AS
            SELECT event_time, recipient_account_id, event_name, user_type, user_name, user_arn,
                   access_key_id, source_ip, user_agent, error_code, error_message,
                   record->'requestParameters' AS request_parameters, event_id
            FROM {schema}.events
            WHERE event_source = 'iam.amazonaws.com' AND read_only IS FALSE""",
        """CREATE VIEW {schema}.access_key_activity AS
            SELECT access_key_id,
                   array_agg(DISTINCT user_arn) FILTER (WHERE user_arn IS NOT NULL) AS user_arns,
                   count(*) AS events,
                   count(*) FILTER (WHERE error_code IS NOT NULL) AS errors,
                   count(DISTINCT source_ip) AS source_ips,
                   count(DISTINCT event_name) AS event_names,
                   min(event_time) AS first_seen,
                   max(event_time) AS last_seen
            FROM {schema}.events
            WHERE access_key_id IS NOT NULL
            GROUP BY access_key_id""",
    )),
    (3, "SIEM views for the audit report: console logins, access denied", (
        """CREATE VIEW {schema}.console_logins AS
            SELECT event_time, account_id, recipient_account_id, user_type, user_name, user_arn,
                   source_ip, source_inet, user_agent,
                   record->'responseElements'->>'ConsoleLogin' AS outcome,
                   record->'additionalEventData'->>'MFAUsed' AS mfa_used, event_id
            FROM {schema}.events
            WHERE event_name = 'ConsoleLogin'""",
        """CREATE VIEW {schema}.access_denied AS
            SELECT event_time, recipient_account_id, aws_region, event_source, event_name,
                   error_code, error_message, user_type,
                   coalesce(user_arn, principal_id, user_name, 'unknown') AS principal,
                   source_ip, access_key_id, event_id
            FROM {schema}.events
            WHERE error_code IN ('AccessDenied', 'AccessDeniedException', 'UnauthorizedOperation',
                                 'Client.UnauthorizedOperation', 'UnauthorizedAccess')""",
    )),
    (4, "records rejected one by one", (
        # records of a file left out because they cannot be stored (1e999, lone surrogates ...)
        "ALTER TABLE {schema}.files ADD COLUMN rejected integer NOT NULL DEFAULT 0",
    )),
    (5, "events partitioned by month, BRIN on event time, ledger keys indexed for prefix scans", (
        # the unpartitioned table of 0.1.0 is renamed, its rows copied into the partitions
        "ALTER TABLE {schema}.events RENAME TO events_unpartitioned",
        "ALTER INDEX {schema}.events_pkey RENAME TO events_unpartitioned_pkey",
        "DROP INDEX {schema}.events_event_time, {schema}.events_event_name_time, {schema}.events_user_arn, "
        "{schema}.events_source_ip, {schema}.events_access_key_id, {schema}.events_errors",
        # views follow the renamed table (they bind to its OID): dropped here, created again below
        _drop_views,
        """CREATE TABLE {schema}.events (
            event_id text NOT NULL,
            event_time timestamptz NOT NULL,
            event_version text,
            event_source text,
            event_name text,
            aws_region text,
            source_ip text,
            source_inet inet,
            user_agent text,
            user_type text,
            principal_id text,
            user_arn text,
            user_name text,
            access_key_id text,
            account_id text,
            recipient_account_id text,
            invoked_by text,
            error_code text,
            error_message text,
            read_only boolean,
            event_type text,
            event_category text,
            request_id text,
            resources jsonb,
            record jsonb NOT NULL,
            file_id bigint,
            PRIMARY KEY (event_id, event_time)) PARTITION BY RANGE (event_time)""",
        # see docs/cloudtrail.md, "Partitions and indexes", for why these and not more
        "CREATE INDEX events_event_time_brin ON {schema}.events USING brin (event_time) WITH (pages_per_range = 32)",
        "CREATE INDEX events_access_key_id ON {schema}.events (access_key_id) WHERE access_key_id IS NOT NULL",
        "CREATE INDEX events_user_arn ON {schema}.events (user_arn) WHERE user_arn IS NOT NULL",
        # records without a valid eventTime: stored with -infinity (was NULL), kept apart
        "CREATE TABLE {schema}.events_undated PARTITION OF {schema}.events "
        "FOR VALUES FROM (MINVALUE) TO ('1970-01-01 00:00:00+00')",
        _partitions_for_old_rows,
        "INSERT INTO {schema}.events SELECT event_id, coalesce(event_time, '-infinity'), event_version, "
        "event_source, event_name, aws_region, source_ip, source_inet, user_agent, user_type, principal_id, "
        "user_arn, user_name, access_key_id, account_id, recipient_account_id, invoked_by, error_code, "
        "error_message, read_only, event_type, event_category, request_id, resources, record, file_id "
        "FROM {schema}.events_unpartitioned",
        "DROP TABLE {schema}.events_unpartitioned",
        _create_views,
        # incremental listing: the newest key under a prefix, and the failed files under it
        'CREATE INDEX files_key_c ON {schema}.files (key COLLATE "C")',
        'CREATE INDEX files_failed_key_c ON {schema}.files (key COLLATE "C") WHERE error IS NOT NULL',
    )),
)

LATEST = MIGRATIONS[-1][0]
VIEWS = ("failed_console_logins", "root_activity", "iam_changes", "access_key_activity", "console_logins",
         "access_denied")


def lock_key(schema):
    """The advisory lock serialising migrations and partition changes of one store."""
    return "cloudefigo.cloudtrail:" + schema


def month_partitions(cursor, schema):
    """{first day of the month (date): partition name} of the monthly partitions that exist."""
    cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                   "WHERE i.inhparent = to_regclass(%s)", (_quoted(schema) + ".events",))
    found = {}
    for (name,) in cursor.fetchall():
        match = PARTITION_NAME.match(name)
        if match:
            found[datetime.date(int(match.group(1)), int(match.group(2)), 1)] = name
    return found


def ensure_partitions(connection, schema, months):
    """Create the missing monthly partitions of ``months`` (dates) in one short transaction.

    Under the store's advisory lock, so two loaders (or two workers) never race on the same
    CREATE; call it outside any transaction that has written to ``events`` (CREATE TABLE ...
    PARTITION OF waits for those to end). Returns the names created.
    """
    created = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key(schema),))
        existing = month_partitions(cursor, schema)
        for month in sorted(set(datetime.date(m.year, m.month, 1) for m in months)):
            if month not in existing:
                _create_partition(cursor, schema, month)
                created.append(partition_name(month))
    connection.commit()
    return created


def retention_cutoff(months, today=None):
    """First day of the oldest month kept when keeping ``months`` months, the current one included."""
    today = today or datetime.datetime.now(datetime.timezone.utc).date()
    index = today.year * 12 + (today.month - 1) - (int(months) - 1)
    return datetime.date(index // 12, index % 12 + 1, 1)


def expired_partitions(cursor, schema, cutoff):
    """Names of the monthly partitions wholly before ``cutoff`` (a date), oldest first."""
    return [name for month, name in sorted(month_partitions(cursor, schema).items()) if month < cutoff]


def drop_partitions(connection, schema, cutoff):
    """Drop the monthly partitions wholly before ``cutoff``, under the advisory lock; their names."""
    from psycopg2 import sql
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key(schema),))
        names = expired_partitions(cursor, schema, cutoff)
        for name in names:
            cursor.execute(sql.SQL("DROP TABLE {schema}.{name}").format(schema=sql.Identifier(schema),
                                                                        name=sql.Identifier(name)))
    connection.commit()
    return names


def current_version(cursor, schema):
    """The applied version, 0 when the store does not exist yet (reads only)."""
    cursor.execute("SELECT to_regclass(%s)", (_quoted(schema) + ".schema_version",))
    if cursor.fetchone()[0] is None:
        return 0
    cursor.execute(_sql("SELECT coalesce(max(version), 0) FROM {schema}.schema_version", schema))
    return cursor.fetchone()[0]


def _quoted(schema):
    return '"%s"' % schema.replace('"', '""')


def pending(cursor, schema):
    """The (version, description) of migrations not applied yet."""
    version = current_version(cursor, schema)
    return [(number, text) for number, text, _statements in MIGRATIONS if number > version]


def migrate(connection, schema):
    """Apply pending migrations in one transaction (all or nothing); returns the versions applied.

    A transaction-level advisory lock serialises concurrent runs (two playbooks at once).
    """
    applied = []
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (lock_key(schema),))
        cursor.execute(_sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema))
        cursor.execute(_sql("CREATE TABLE IF NOT EXISTS {schema}.schema_version ("
                            "version integer PRIMARY KEY, description text NOT NULL, "
                            "applied_at timestamptz NOT NULL DEFAULT now())", schema))
        version = current_version(cursor, schema)
        for number, description, statements in MIGRATIONS:
            if number <= version:
                continue
            for statement in statements:
                if callable(statement):
                    statement(cursor, schema)
                else:
                    cursor.execute(_sql(statement, schema))
            cursor.execute(_sql("INSERT INTO {schema}.schema_version (version, description) VALUES (%s, %s)", schema),
                           (number, description))
            applied.append(number)
    connection.commit()
    return applied
