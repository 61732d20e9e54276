# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What the audit report asks the SIEM (the CloudTrail store of cloudtrail_ingest). Reads only.

Private to the collection: not a public API, may change without notice.

Every statement is a constant template: the schema goes in through psycopg2.sql.Identifier, the
period and limits as bound parameters. The views used (``console_logins``, ``access_denied``)
are created by the store's migration 3 (``_cloudtrail/schema.py``).
"""

from __future__ import annotations

import datetime

REQUIRED_VERSION = 3

EVENTS_PER_DAY = """
    SELECT (event_time AT TIME ZONE 'UTC')::date AS day, count(*)
    FROM {schema}.events
    WHERE event_time >= %(since)s AND event_time < %(until)s
    GROUP BY 1 ORDER BY 1"""

TOP_ERROR_CODES = """
    SELECT error_code, count(*) AS events
    FROM {schema}.events
    WHERE error_code IS NOT NULL AND event_time >= %(since)s AND event_time < %(until)s
    GROUP BY error_code ORDER BY events DESC, error_code LIMIT %(limit)s"""

ACCESS_DENIED_BY_PRINCIPAL = """
    SELECT principal, count(*) AS events
    FROM {schema}.access_denied
    WHERE event_time >= %(since)s AND event_time < %(until)s
    GROUP BY principal ORDER BY events DESC, principal LIMIT %(limit)s"""

# CIS AWS Foundations 4.2/3.2: successful console sign-in of an IAM user (or root) without MFA
_NO_MFA = """
    FROM {schema}.console_logins
    WHERE outcome = 'Success' AND mfa_used IS DISTINCT FROM 'Yes' AND user_type IN ('IAMUser', 'Root')
      AND event_time >= %(since)s AND event_time < %(until)s"""

NO_MFA_BY_PRINCIPAL = """
    SELECT coalesce(user_arn, user_name, 'unknown') AS principal, count(*) AS logins""" + _NO_MFA + """
    GROUP BY 1 ORDER BY logins DESC, principal LIMIT %(limit)s"""

NO_MFA_LATEST = """
    SELECT event_time, coalesce(user_arn, user_name, 'unknown'), source_ip, recipient_account_id""" + _NO_MFA + """
    ORDER BY event_time DESC, event_id LIMIT %(limit)s"""


def period(until, days):
    """(since, until): ``days`` whole UTC days ending with the day of ``until`` (a tz-aware datetime)."""
    until = until.astimezone(datetime.timezone.utc)
    start = datetime.datetime(until.year, until.month, until.day, tzinfo=datetime.timezone.utc)
    return start - datetime.timedelta(days=days - 1), until


def all_days(since, until):
    """Every UTC date from since to until, ISO strings (the chart shows quiet days as 0)."""
    day, out = since.date(), []
    while day <= until.date():
        out.append(day.isoformat())
        day += datetime.timedelta(days=1)
    return out


def _sql(template, schema):
    from psycopg2 import sql  # pylint: disable=import-outside-toplevel
    return sql.SQL(template).format(schema=sql.Identifier(schema))


def schema_version(cursor, schema):
    """The store's migration version, 0 when there is no store."""
    cursor.execute("SELECT to_regclass(%s)", ('"%s".schema_version' % schema.replace('"', '""'),))
    if cursor.fetchone()[0] is None:
        return 0
    cursor.execute(_sql("SELECT coalesce(max(version), 0) FROM {schema}.schema_version", schema))
    return cursor.fetchone()[0]


def collect(cursor, schema, until, days=14, limit=10):
    """The SIEM section's numbers; ``available`` False (with ``reason``) when the store is not ready."""
    version = schema_version(cursor, schema)
    since, until = period(until, days)
    result = {"available": False, "reason": None, "since": since.isoformat(), "until": until.isoformat(),
              "days": days, "schema_version": version, "events_per_day": [], "top_error_codes": [],
              "access_denied": [], "no_mfa_logins": [], "no_mfa_latest": [], "events": 0}
    if version < REQUIRED_VERSION:
        result["reason"] = ("the CloudTrail store in schema %s is at version %d, the report needs %d: run "
                            "cloudefigo.core.cloudtrail_ingest once to migrate it" % (schema, version, REQUIRED_VERSION))
        return result
    args = {"since": since, "until": until, "limit": limit}
    cursor.execute(_sql(EVENTS_PER_DAY, schema), args)
    per_day = dict((day.isoformat(), count) for day, count in cursor.fetchall())
    result["events_per_day"] = [[day, per_day.get(day, 0)] for day in all_days(since, until)]
    result["events"] = sum(per_day.values())
    cursor.execute(_sql(TOP_ERROR_CODES, schema), args)
    result["top_error_codes"] = [[code, count] for code, count in cursor.fetchall()]
    cursor.execute(_sql(ACCESS_DENIED_BY_PRINCIPAL, schema), args)
    result["access_denied"] = [[principal, count] for principal, count in cursor.fetchall()]
    cursor.execute(_sql(NO_MFA_BY_PRINCIPAL, schema), args)
    result["no_mfa_logins"] = [[principal, count] for principal, count in cursor.fetchall()]
    cursor.execute(_sql(NO_MFA_LATEST, schema), dict(args, limit=max(limit, 20)))
    result["no_mfa_latest"] = [[when.astimezone(datetime.timezone.utc).isoformat(), principal, source_ip, account]
                               for when, principal, source_ip, account in cursor.fetchall()]
    result["available"] = True
    return result
