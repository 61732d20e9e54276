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
)

LATEST = MIGRATIONS[-1][0]
VIEWS = ("failed_console_logins", "root_activity", "iam_changes", "access_key_activity", "console_logins",
         "access_denied")


def _sql(template, schema):
    from psycopg2 import sql
    return sql.SQL(template).format(schema=sql.Identifier(schema))


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
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", ("cloudefigo.cloudtrail:" + schema,))
        cursor.execute(_sql("CREATE SCHEMA IF NOT EXISTS {schema}", schema))
        cursor.execute(_sql("CREATE TABLE IF NOT EXISTS {schema}.schema_version ("
                            "version integer PRIMARY KEY, description text NOT NULL, "
                            "applied_at timestamptz NOT NULL DEFAULT now())", schema))
        version = current_version(cursor, schema)
        for number, description, statements in MIGRATIONS:
            if number <= version:
                continue
            for statement in statements:
                cursor.execute(_sql(statement, schema))
            cursor.execute(_sql("INSERT INTO {schema}.schema_version (version, description) VALUES (%s, %s)", schema),
                           (number, description))
            applied.append(number)
    connection.commit()
    return applied
