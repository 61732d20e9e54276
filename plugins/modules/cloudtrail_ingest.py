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
    no C(Records)), is larger than O(max_file_size) once decompressed (a decompression bomb),
    or whose rows PostgreSQL rejects is recorded in the ledger with its error, reported in
    RV(files_skipped) and RV(files_failed), and skipped; the run goes on and does not fail.
    Such a file is tried again on the next run (not skipped forever); when it fails the same way
    again, the ledger is left as it is. A file that cannot be read (access denied, network) is
    reported but not recorded, so the next run tries it again.
  - One record that cannot be stored (a number JSON cannot hold such as C(1e999), a lone UTF-16
    surrogate, bytes that are not UTF-8, a record that is not an object) is left out on its own and
    counted in RV(records_rejected); the other records of its file are loaded.
  - Progress on long runs, without warnings. Every O(progress_interval) seconds the module
    writes a line to the system log of the host it runs on (C(journalctl -t ansible-cloudtrail_ingest))
    and, with O(progress_path), rewrites that JSON file, with files done / total, events and events
    per second. See the examples to show it from the playbook while the load runs with C(async).
  - Streams files through a reader thread that parses them while O(workers) database sessions
    COPY earlier files into per-session TEMP staging tables and insert from there; up to
    O(fetch_concurrency) S3 reads are in flight meanwhile.
  - Events are partitioned by month of C(event_time) (UTC); partitions are created when a file
    needs them. Migration 5 turns the unpartitioned C(events) of 0.1.0 into the partitioned
    table in one transaction (all rows copied; the views are recreated). Events without a valid
    C(eventTime) are stored with C(-infinity) in the C(events_undated) partition.
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
  max_file_size:
    description:
      - Largest log file accepted, in MiB, once decompressed (and as stored). gzip is decompressed
        with this cap, so a decompression bomb costs at most this much memory and is reported as a
        bad file in RV(files_failed).
      - CloudTrail delivers files every few minutes; they are far smaller than the default.
    type: int
    default: 256
    version_added: 0.2.0
  progress_path:
    description:
      - A file on the host running the module, rewritten (atomically, mode 0644) every
        O(progress_interval) seconds and at the end with a JSON object C(files_done),
        C(files_total) (files listed so far; final once C(listing_complete) is true),
        C(files_loaded), C(files_failed), C(events_loaded), C(events_per_second),
        C(elapsed_seconds), C(finished), and C(line), the same as one human-readable line. When the
        run fails, the last one also has C(failed=true) and C(error).
      - Written in check mode too (it reports the run, it is not managed state).
    type: path
    version_added: 0.2.0
  progress_interval:
    description:
      - Seconds between two progress reports (system log line and O(progress_path)).
    type: float
    default: 10
    version_added: 0.2.0
  fetch_concurrency:
    description:
      - Number of S3 C(GetObject) requests in flight at the same time. S3's latency, not CPU, bounds
        a load from a real bucket; one thread parses the files in the order they were listed.
      - Memory grows with it, since up to this many fetched (compressed) files wait to be parsed.
    type: int
    version_added: 0.2.0
    default: 16
  expected_bucket_owner:
    description:
      - Account id that must own the bucket(s); sent as C(ExpectedBucketOwner) with every S3 call,
        so a bucket of the same name in another account (recreated by someone else after a
        deletion, or a typo) is refused by S3 instead of read.
      - Default is the account of the credentials (C(sts:GetCallerIdentity)). Set it to the log
        archive account when the trail's bucket lives there (organization trails).
    type: str
    version_added: 0.2.0
  relist_days:
    description:
      - Incremental listing. Each account and region of a bucket is listed from this many days
        before the newest day already in the ledger (C(StartAfter)), not from the beginning, so the
        cost of a run follows what is new, not the size of the bucket. Files CloudTrail delivers
        late (into a day already loaded) are found as long as they are at most this many days late.
      - Files of older days recorded with an error are still retried on every run (read again
        from their key, without listing).
    type: int
    version_added: 0.2.0
    default: 2
  full_listing:
    description:
      - List every key under O(prefix) instead of the incremental listing, for example after old
        files were copied into the bucket by hand. Files already loaded are still skipped.
    type: bool
    version_added: 0.2.0
    default: false
  retention_months:
    description:
      - Keep this many months of events, the current month (UTC) included; the monthly partitions
        of older months are dropped (C(DROP TABLE), instant), and events older than that in the
        files loaded are left out (counted in RV(events_expired)). The ledger keeps its rows, so
        those files are not loaded again.
      - Default is to keep everything.
    type: int
    version_added: 0.2.0
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
  - The module does not fail on bad log files; check RV(files_failed) and RV(records_rejected).
  - RV(files_skipped) counts the files not loaded by this run per reason; only failed files are
    listed (RV(files_failed)), never the files already loaded.
  - Ansible shows a module's output only when it ends, so progress goes to the system log and to
    O(progress_path), not to warnings (which would only appear at the end, all at once).
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

- name: Backfill a large bucket in the background, with progress
  cloudefigo.core.cloudtrail_ingest:
    bucket: acme-org-cloudtrail
    login_host: siem.internal
    login_db: siem
    progress_path: /var/tmp/cloudtrail-progress.json
    progress_interval: 30
  async: 86400
  poll: 0
  register: backfill

- name: Show the progress every 30 seconds until the load ends (one line per poll, with -v)
  ansible.builtin.command: cat /var/tmp/cloudtrail-progress.json
  register: backfill_progress
  changed_when: false
  until: (backfill_progress.stdout | from_json).finished
  failed_when: (backfill_progress.stdout | from_json).failed | default(false)
  retries: 2880
  delay: 30

- name: Collect the result
  ansible.builtin.async_status:
    jid: "{{ backfill.ansible_job_id }}"
  register: ingest
  until: ingest.finished
  retries: 10
  delay: 5

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
    - Number of files not loaded by this run, per reason. C(already loaded) (same key, etag and
      size in the ledger), C(failed) (this run could not read or load them; see RV(files_failed)).
    - Changed in 0.2.0, it was a list of every file with its reason.
  returned: always
  type: dict
  sample: {"already loaded": 55, "failed": 1}
files_failed:
  description:
    - Files that could not be read or loaded in this run, recorded in the ledger with the error and
      tried again on the next run. At most the first 1000 (by key); RV(files_skipped) counts them all.
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: C(s3://BUCKET/KEY) or the local path.
      type: str
    error:
      description:
        - "C(could not read: ...), C(truncated or corrupt gzip: ...), C(decompresses to more than N MiB (max_file_size) ...),
          C(larger than N MiB ...), C(invalid JSON: ...), C(no Records: ...) or C(rejected by PostgreSQL: ...)."
      type: str
  sample: [{"key": "/srv/logs/bad.json.gz", "error": "invalid JSON: unexpected character: line 1 column 2 (char 1)"}]
records_rejected:
  description: Records left out of the files loaded (or that would be, in check mode) because they cannot be stored.
  returned: always
  type: int
  sample: 1
rejected_records:
  description: The first 100 of those records, by file and position in its C(Records) list, with why.
  returned: always
  type: list
  elements: dict
  contains:
    key:
      description: C(s3://BUCKET/KEY) or the local path.
      type: str
    index:
      description: Position of the record in the file's C(Records) list, from 0.
      type: int
    reason:
      description: Why it was left out.
      type: str
  sample: [{"key": "/srv/logs/x.json.gz", "index": 7, "reason": "number or constant JSON cannot store (1e999) at requestParameters.size"}]
elapsed_seconds:
  description: How long the load took.
  returned: always
  type: float
  sample: 12.4
events_per_second:
  description: Events of the files read (loaded or duplicates) per second of the run.
  returned: always
  type: float
  sample: 30512.7
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
events_expired:
  description: Events of loaded files older than O(retention_months) allows, left out.
  version_added: 0.2.0
  returned: always
  type: int
  sample: 0
partitions_created:
  description: Monthly partitions of C(events) created by this run (not in check mode).
  version_added: 0.2.0
  returned: always
  type: list
  elements: str
  sample: ["events_y2024m05"]
partitions_dropped:
  description: Monthly partitions dropped for O(retention_months) (in check mode, that would be).
  version_added: 0.2.0
  returned: always
  type: list
  elements: str
  sample: ["events_y2023m01"]
s3_list_requests:
  description: C(ListObjectsV2) requests made (the cost of the listing; see O(relist_days)).
  version_added: 0.2.0
  returned: always
  type: int
  sample: 4
"""

import json
import os
import re
import tempfile
import traceback
from concurrent.futures import ThreadPoolExecutor

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

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
    """(bucket, prefix) of every trail in every region (in parallel); multi-region trails appear once."""
    regions = enabled_regions(module, module.params["regions"])
    clients = regional_clients(module, "cloudtrail", regions)

    def trails_in(region):
        try:
            return clients[region].describe_trails(includeShadowTrails=True, aws_retry=True).get("trailList", []), None
        except Exception as exc:  # pylint: disable=broad-except
            return [], exc

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(regions)))) as pool:
        answers = list(pool.map(trails_in, regions))
    trails = []
    for region, (found, exc) in zip(regions, answers):
        if exc is not None:
            module.fail_json_aws(exc, msg="Could not list the trails in %s; pass `bucket` or `regions`" % region)
        trails.extend(found)
    return trail_locations(trails)


def bucket_owner(module):
    """expected_bucket_owner, or the account of the credentials."""
    owner = module.params["expected_bucket_owner"]
    if owner:
        return owner
    try:
        return retrying_client(module, "sts").get_caller_identity(aws_retry=True)["Account"]
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json_aws(exc, msg="Could not find the account of the credentials (sts:GetCallerIdentity) "
                                      "to check who owns the bucket; pass expected_bucket_owner")


def build_sources(module):
    params = module.params
    if params["path"]:
        return [LocalSource(params["path"])]
    import botocore.config  # pylint: disable=import-outside-toplevel
    s3 = module.client("s3", retry_decorator=AWSRetry.jittered_backoff(retries=10),
                       config=botocore.config.Config(max_pool_connections=params["fetch_concurrency"] + 4))
    owner = bucket_owner(module)
    options = {"owner": owner, "relist_days": params["relist_days"], "full_listing": params["full_listing"]}
    if params["bucket"]:
        return [S3Source(s3, params["bucket"], params["prefix"], **options)]
    found = discover(module)
    if not found:
        module.warn("No trail found in the regions searched: nothing to load. Pass `bucket` or `path`.")
    return [S3Source(s3, bucket, prefix, **options) for bucket, prefix in found]


def progress_line(report):
    total = "%d" % report["files_total"] if report["listing_complete"] else "%d+ (listing)" % report["files_total"]
    return "cloudtrail_ingest: files %d/%s, %d loaded, %d failed, %d events loaded, %.0f events/s, %.0f s%s" % (
        report["files_done"], total, report["files_loaded"], report["files_failed"], report["events_loaded"],
        report["events_per_second"], report["elapsed_seconds"], ", done" if report["finished"] else "")


def progress_reporter(module):
    """The loader's progress callback: a system log line, and the progress_path file when set."""
    path = module.params["progress_path"]

    def report(progress):
        line = progress_line(progress)
        module.log(line)
        if path:
            directory = os.path.dirname(os.path.abspath(path))
            handle, temp = tempfile.mkstemp(prefix=".cloudtrail-progress-", dir=directory)
            try:
                with os.fdopen(handle, "w") as stream:
                    json.dump(dict(progress, line=line), stream)
                    stream.write("\n")
                os.chmod(temp, 0o644)
                os.replace(temp, path)
            except OSError:
                if os.path.exists(temp):
                    os.unlink(temp)
                raise
    return report


def main():
    argument_spec = dict(
        bucket=dict(type="str"),
        prefix=dict(type="str", default=""),
        path=dict(type="path"),
        regions=dict(type="list", elements="str"),
        schema=dict(type="str", default="cloudtrail"),
        workers=dict(type="int", default=2),
        max_file_size=dict(type="int", default=256),
        progress_path=dict(type="path"),
        progress_interval=dict(type="float", default=10),
        fetch_concurrency=dict(type="int", default=16),
        expected_bucket_owner=dict(type="str"),
        relist_days=dict(type="int", default=2),
        full_listing=dict(type="bool", default=False),
        retention_months=dict(type="int"),
    )
    argument_spec.update(postgres_argument_spec())
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True,
                              mutually_exclusive=[["bucket", "path"]])
    if PSYCOPG2_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    if module.params["workers"] < 1:
        module.fail_json(msg="workers must be at least 1, got %d" % module.params["workers"])
    if module.params["max_file_size"] < 1:
        module.fail_json(msg="max_file_size must be at least 1 (MiB), got %d" % module.params["max_file_size"])
    if module.params["progress_interval"] <= 0:
        module.fail_json(msg="progress_interval must be more than 0 seconds, got %s" % module.params["progress_interval"])
    if module.params["progress_path"] and not os.path.isdir(os.path.dirname(os.path.abspath(module.params["progress_path"]))):
        module.fail_json(msg="progress_path %s: its directory does not exist; create it or pick another path"
                             % module.params["progress_path"])
    if not 1 <= module.params["fetch_concurrency"] <= 256:
        module.fail_json(msg="fetch_concurrency must be 1 to 256, got %d" % module.params["fetch_concurrency"])
    if module.params["relist_days"] < 0:
        module.fail_json(msg="relist_days must be 0 or more, got %d" % module.params["relist_days"])
    if module.params["retention_months"] is not None and module.params["retention_months"] < 1:
        module.fail_json(msg="retention_months must be at least 1 (the current month), got %d; omit it to keep "
                             "everything" % module.params["retention_months"])
    owner = module.params["expected_bucket_owner"]
    if owner is not None and not re.fullmatch(r"\d{12}", owner):
        module.fail_json(msg="expected_bucket_owner must be a 12-digit AWS account id, got %r" % owner)
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
    reporter = progress_reporter(module)
    loader = Loader(connect, schema=module.params["schema"], workers=module.params["workers"],
                    check_mode=module.check_mode, max_file_size=module.params["max_file_size"] << 20,
                    progress=reporter, progress_interval=module.params["progress_interval"],
                    fetch_concurrency=module.params["fetch_concurrency"] if not module.params["path"] else 4,
                    retention_months=module.params["retention_months"])
    try:
        result = loader.run(sources)
    except Exception as exc:  # pylint: disable=broad-except
        if module.params["progress_path"]:
            # whoever polls the progress file must learn that the run is over
            try:
                report = dict(loader.progress_report(finished=True), failed=True, error=str(exc).strip()[:500])
                reporter(report)
            except Exception:  # pylint: disable=broad-except
                pass
        if isinstance(exc, psycopg2.Error):
            module.fail_json(msg="PostgreSQL error while loading into schema %s: %s"
                                 % (module.params["schema"], str(exc).strip()), exception=traceback.format_exc())
        module.fail_json_aws(exc, msg="Could not list the log files")
    result["sources"] = [source.describe() for source in sources]
    final = loader.progress_report(finished=True)
    result["elapsed_seconds"] = final["elapsed_seconds"]
    result["events_per_second"] = final["events_per_second"]
    # a file that fails again the same way is reported, but changes nothing
    result["changed"] = loader.changed
    module.exit_json(**result)


if __name__ == "__main__":
    main()
