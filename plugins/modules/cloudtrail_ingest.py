#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cloudtrail_ingest
short_description: Load CloudTrail log files into PostgreSQL for SIEM queries
version_added: 0.1.0
description:
  - Reads CloudTrail log files from an S3 bucket (every account and region under C(AWSLogs/),
    organization trails included), from a local directory, or from the buckets of every trail
    found with C(describe_trails) in every enabled region, and loads their events into
    PostgreSQL.
  - Read-only on the source. Log objects are listed and read, never copied, renamed or deleted,
    so CloudTrail log-file validation keeps working.
  - Creates and migrates its own versioned schema in O(schema) (tables C(events), C(files),
    C(schema_version), views C(failed_console_logins), C(root_activity), C(iam_changes),
    C(access_key_activity), C(console_logins), C(access_denied)); see C(docs/cloudtrail.md) for columns and example queries.
  - Idempotent and incremental. A ledger (C(files)) holds each file's key, etag, size, event
    count, load time and error, and a re-run skips files already there with the same etag and
    size. Events are unique by C(event_id) (a record without C(eventID) gets C(sha256:) and a
    hash of its content) and inserted with C(ON CONFLICT DO NOTHING).
  - Each file is loaded in one transaction with its ledger row, so a run killed midway leaves
    whole files or nothing. A file that is not a CloudTrail log (truncated gzip, invalid JSON,
    no C(Records)) or whose rows PostgreSQL rejects is recorded in the ledger with its error,
    reported in RV(files_skipped) and RV(files_failed), and skipped; the run goes on and does
    not fail. A file that cannot be read (access denied, network) is reported but not recorded,
    so the next run tries it again.
  - Streams files through a reader thread that parses them while O(workers) database sessions
    COPY earlier files into per-session TEMP staging tables and insert from there.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  bucket:
    description:
      - S3 bucket holding CloudTrail logs. Every C(AWSLogs/[o-ORG/]ACCOUNT/CloudTrail/REGION/...)
        object under O(prefix) is loaded; digest and Insights files are left out.
      - Mutually exclusive with O(path). Without O(bucket) and O(path) the module finds the
        trails' buckets and prefixes with C(describe_trails) in every region of O(regions).
    type: str
  prefix:
    description:
      - Key prefix to list in O(bucket), for example C(AWSLogs/123456789012/CloudTrail/eu-west-1/2024/).
    type: str
    default: ''
  path:
    description:
      - Local directory of log files (C(*.json.gz) or C(*.json)), read recursively. Files named
        C(*CloudTrail-Digest*) are left out.
      - In the ledger, a local file's key is its absolute path and its etag C(SIZE-MTIME_NS).
    type: path
  regions:
    description:
      - Regions in which to look for trails when neither O(bucket) nor O(path) is given.
      - Default is every region enabled for the account.
    type: list
    elements: str
  schema:
    description:
      - PostgreSQL schema holding the store. Created when missing.
    type: str
    default: cloudtrail
  workers:
    description:
      - Number of database sessions loading files at the same time. Two keep a two-core server
        busy; more rarely help, since one reader thread parses for all of them.
    type: int
    default: 2
extends_documentation_fragment:
  - cloudefigo.core.postgres
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
requirements:
  - orjson (optional, about twice as fast as the standard json module)
attributes:
  check_mode:
    support: full
    description:
      - Lists the source, reads and parses the new files and reports what would be loaded
        (RV(events_loaded) and RV(duplicates) computed against the events already stored);
        creates, migrates and writes nothing.
  diff_mode:
    support: none
    description: Nothing to show a diff of.
notes:
  - The module does not fail on bad log files; check RV(files_failed).
  - RV(files_skipped) lists every file not loaded by this run, already loaded ones included.
"""

EXAMPLES = r"""
- name: Load an organization trail's bucket into the SIEM database
  cloudefigo.core.cloudtrail_ingest:
    bucket: acme-org-cloudtrail
    login_host: siem.internal
    login_user: cloudtrail_loader
    login_password: "{{ vault_siem_loader_password }}"
    login_db: siem
    ca_cert: /etc/ssl/certs/siem-ca.pem
  register: ingest

- name: Fail when a log file could not be loaded
  ansible.builtin.assert:
    that: ingest.files_failed | length == 0
    fail_msg: "{{ ingest.files_failed }}"

- name: Load one account and region for one month only
  cloudefigo.core.cloudtrail_ingest:
    bucket: acme-audit-logs
    prefix: AWSLogs/123456789012/CloudTrail/eu-west-1/2024/05/
    login_host: siem.internal
    login_db: siem
    ca_cert: /etc/ssl/certs/siem-ca.pem

- name: Find every trail's bucket in every enabled region and load them
  cloudefigo.core.cloudtrail_ingest:
    login_host: siem.internal
    login_db: siem
    ca_cert: /etc/ssl/certs/siem-ca.pem

- name: Load files copied from an incident responder's laptop
  cloudefigo.core.cloudtrail_ingest:
    path: /srv/evidence/case-42/cloudtrail
    schema: case_42
    login_unix_socket: /var/run/postgresql
    login_db: forensics
"""

RETURN = r"""
sources:
  description: What was listed, C(s3://BUCKET/PREFIX) or the local directory.
  returned: always
  type: list
  elements: str
  sample: ["s3://acme-org-cloudtrail/AWSLogs/"]
schema_version:
  description: Version of the store's schema after the run (the latest this module knows).
  returned: always
  type: int
  sample: 2
migrations_applied:
  description: Schema versions applied by this run (in check mode, the ones that would be).
  returned: always
  type: list
  elements: int
  sample: [1, 2]
files_seen:
  description: Log files found in the sources.
  returned: always
  type: int
  sample: 55
files_loaded:
  description: Files loaded by this run (in check mode, that would be loaded).
  returned: always
  type: int
  sample: 55
files_skipped:
  description:
    - Files not loaded by this run, with why.
    - "RV(files_skipped[].reason) is C(already loaded), C(failed before: ERROR) (same etag and size
      as a file recorded as bad), C(could not read: ERROR) (not recorded, tried again next run) or
      the error of a file that failed in this run."
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: C(s3://BUCKET/KEY) or the local path.
      type: str
    reason:
      description: Why it was skipped.
      type: str
  sample: [{"key": "s3://b/AWSLogs/1/CloudTrail/us-east-1/2023/07/10/x.json.gz", "reason": "already loaded"}]
files_failed:
  description: Files found bad in this run (also in RV(files_skipped)), recorded in the ledger with the error.
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: C(s3://BUCKET/KEY) or the local path.
      type: str
    error:
      description: "C(truncated or corrupt gzip: ...), C(invalid JSON: ...), C(no Records: ...) or C(rejected by PostgreSQL: ...)."
      type: str
  sample: [{"key": "/srv/logs/bad.json.gz", "error": "invalid JSON: unexpected character: line 1 column 2 (char 1)"}]
events_loaded:
  description: Events inserted by this run (in check mode, that would be).
  returned: always
  type: int
  sample: 2900
duplicates:
  description: Events of loaded files that were already stored (same C(event_id)) and left alone.
  returned: always
  type: int
  sample: 0
"""

import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import enabled_regions, regional_clients, retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.loader import Loader
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.postgres import (
    connect_kwargs, connection_problem, postgres_argument_spec)
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.sources import (
    LocalSource, S3Source, trail_locations)

try:
    import psycopg2
except ImportError:
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG2_IMPORT_ERROR = None


def discover(module):
    """(bucket, prefix) of every trail in every region; multi-region trails appear once."""
    trails = []
    regions = enabled_regions(module, module.params["regions"])
    clients = regional_clients(module, "cloudtrail", regions)
    for region in regions:
        try:
            trails.extend(clients[region].describe_trails(includeShadowTrails=True, aws_retry=True).get("trailList", []))
        except Exception as exc:  # pylint: disable=broad-except
            module.fail_json_aws(exc, msg="Could not list the trails in %s; pass `bucket` or `regions`" % region)
    return trail_locations(trails)


def build_sources(module):
    params = module.params
    if params["path"]:
        return [LocalSource(params["path"])]
    s3 = retrying_client(module, "s3")
    if params["bucket"]:
        return [S3Source(s3, params["bucket"], params["prefix"])]
    found = discover(module)
    if not found:
        module.warn("No trail found in the regions searched: nothing to load. Pass `bucket` or `path`.")
    return [S3Source(s3, bucket, prefix) for bucket, prefix in found]


def main():
    argument_spec = dict(
        bucket=dict(type="str"),
        prefix=dict(type="str", default=""),
        path=dict(type="path"),
        regions=dict(type="list", elements="str"),
        schema=dict(type="str", default="cloudtrail"),
        workers=dict(type="int", default=2),
    )
    argument_spec.update(postgres_argument_spec())
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True,
                              mutually_exclusive=[["bucket", "path"]])
    if PSYCOPG2_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    if module.params["workers"] < 1:
        module.fail_json(msg="workers must be at least 1, got %d" % module.params["workers"])
    problem = connection_problem(module.params)
    if problem:
        module.fail_json(msg=problem)

    kwargs = connect_kwargs(module.params, application_name="cloudefigo.core.cloudtrail_ingest")

    def connect():
        return psycopg2.connect(**kwargs)

    try:
        connect().close()
    except psycopg2.Error as exc:
        module.fail_json(msg="Could not connect to PostgreSQL %s:%s database %s as %s: %s; check login_host "
                             "(or login_unix_socket), login_port, login_db, login_user, login_password, "
                             "and for TLS ssl_mode and ca_cert"
                             % (kwargs.get("host", "(socket)"), kwargs.get("port"), kwargs.get("dbname"),
                                kwargs.get("user"), str(exc).strip()))

    sources = build_sources(module)
    loader = Loader(connect, schema=module.params["schema"], workers=module.params["workers"],
                    check_mode=module.check_mode)
    try:
        result = loader.run(sources)
    except psycopg2.Error as exc:
        module.fail_json(msg="PostgreSQL error while loading into schema %s: %s"
                             % (module.params["schema"], str(exc).strip()), exception=traceback.format_exc())
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json_aws(exc, msg="Could not list the log files")
    result["sources"] = [source.describe() for source in sources]
    result["changed"] = bool(result["files_loaded"] or result["files_failed"] or result["migrations_applied"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
