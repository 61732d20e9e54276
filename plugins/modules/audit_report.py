#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: audit_report
short_description: Write the fleet audit's HTML report, with charts and the changes since the last run
version_added: 0.2.0
description:
  - Takes the results of M(cloudefigo.core.unmanaged_instances) and
    M(cloudefigo.core.security_group_audit) (and optionally M(cloudefigo.core.cloudtrail_ingest)),
    splits them into one I(part) per account and region, compares each part with the part the
    previous run of that account and region left in the store (new and resolved findings, trend
    history), writes the parts, then merges every part of the store into one self-contained HTML
    report with inline SVG charts.
  - The store is an S3 bucket (O(bucket), O(prefix)) and/or a local directory (O(dest_dir)). With
    a bucket, the bucket is the memory between runs (a scheduled AWX job starts with an empty
    directory) and the local directory gets a copy. Sliced jobs write their own parts
    (O(mode=part)); a final step merges them (O(mode=merge)).
  - Every S3 call passes C(ExpectedBucketOwner) (O(expected_bucket_owner)) and every object is
    written with server-side encryption (SSE-KMS with O(kms_key_id), else SSE-S3). The bucket
    should let only the controller write (see C(docs/audit.md) for a bucket policy); parts read back
    are data, checked for shape and escaped like everything else.
  - With O(siem=true), charts of the CloudTrail store in PostgreSQL (events per day, top error codes,
    principals with the most AccessDenied, console logins without MFA) over the last O(siem_days)
    days, read through the store's views with bound SQL only.
  - The report's Content-Security-Policy allows no script and only its own style sheet (by hash);
    every value in it is escaped.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  mode:
    description:
      - V(full) writes this run's parts, then renders the report from every part in the store.
      - V(part) writes this run's parts only (one slice of a sliced job).
      - V(merge) writes no part; renders the report from every part in the store (the final step).
    type: str
    choices: [full, part, merge]
    default: full
  unmanaged:
    description:
      - The registered result of M(cloudefigo.core.unmanaged_instances) (keys C(unmanaged), C(stale),
        C(counts) are used). Items with an C(account_id) key belong to that account.
    type: dict
    default: {}
  security_groups:
    description:
      - The registered result of M(cloudefigo.core.security_group_audit) (keys C(findings), C(regions)).
    type: dict
    default: {}
  cloudtrail:
    description:
      - The registered result of M(cloudefigo.core.cloudtrail_ingest) for this run, shown as loading
        statistics. Empty when the load did not run.
    type: dict
    default: {}
  quarantined:
    description:
      - Instance ids quarantined by this run (shown beside their finding).
    type: list
    elements: str
    default: []
  leftovers:
    description:
      - The registered result of M(cloudefigo.core.instance_leftovers) (keys C(leftovers), C(unknown)); every
        present resource of a gone instance is a finding, and every record that could not be judged.
    type: dict
    default: {}
    version_added: 0.2.0
  reconciled:
    description:
      - What the audit removed this run (C(tasks/audit_reconcile.yml)'s C(audit_reconciled)), items with
        C(instance_id), C(removed) and C(error); shown beside the leftovers' findings.
    type: list
    elements: dict
    default: []
    version_added: 0.2.0
  regions:
    description:
      - Regions audited in addition to those named by the results. A region audited with no finding
        still gets a part, so its resolved findings show.
    type: list
    elements: str
    default: []
  error:
    description:
      - The audit of O(account_id) in O(regions) failed with this message (for example the account's
        role could not be assumed). With O(mode=part) or O(mode=full), each of those pairs gets a part that
        says so and keeps the findings of its last run that succeeded (never "resolved" by an audit that
        did not run); the report lists the pair as failed. O(unmanaged) and O(security_groups) must be
        empty.
    type: str
    version_added: 0.2.0
  account_id:
    description:
      - Account the findings belong to (unless an item names its own). Default is the caller's
        account (C(sts:GetCallerIdentity)).
    type: str
  run_id:
    description:
      - Identifies the run across slices (e.g. the AWX workflow job id); a re-run with the same id
        compares with the same previous run instead of with itself. Default is O(generated_at).
    type: str
  generated_at:
    description:
      - Time of this run, ISO 8601. Default is now (UTC).
    type: str
  title:
    description:
      - Title of the report.
    type: str
    default: Cloudefigo fleet audit
  dest_dir:
    description:
      - Local directory for C(audit-report.html), C(audit-summary.json) and C(state/ACCOUNT/REGION.json).
        Required without O(bucket).
    type: path
  bucket:
    description:
      - S3 bucket keeping the report and its parts between runs.
    type: str
  prefix:
    description:
      - Key prefix in O(bucket) (C(PREFIX/state/ACCOUNT/REGION.json), C(PREFIX/audit-report.html)).
    type: str
    default: cloudefigo-audit/
  expected_bucket_owner:
    description:
      - Account that must own O(bucket). Default is the caller's account.
    type: str
  kms_key_id:
    description:
      - KMS key for SSE-KMS of the objects written. Default is SSE-S3 (C(AES256)).
    type: str
  history:
    description:
      - Number of runs kept per account and region for the trend chart.
    type: int
    default: 30
  part_max_age:
    description:
      - Seconds after which a part that no run refreshed is left out of the totals and listed as
        not audited recently (an account or region removed from the inventory). V(0) keeps all.
    type: int
    default: 172800
  siem:
    description:
      - Whether to add the CloudTrail charts from the SIEM's PostgreSQL (connection options below).
    type: bool
    default: false
  siem_schema:
    description:
      - PostgreSQL schema of the CloudTrail store (O(cloudefigo.core.cloudtrail_ingest#module:schema)).
    type: str
    default: cloudtrail
  siem_days:
    description:
      - Number of whole UTC days (today included) the CloudTrail charts cover.
    type: int
    default: 14
  siem_limit:
    description:
      - Number of bars in the top-N CloudTrail charts.
    type: int
    default: 10
extends_documentation_fragment:
  - cloudefigo.core.postgres
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Reads the store and the SIEM, renders, and reports what would change without writing.
  diff_mode:
    support: full
    description: The summary of the previous report and of this one.
"""

EXAMPLES = r"""
- name: Write the report locally and keep it in S3 for the next run
  cloudefigo.core.audit_report:
    unmanaged: "{{ audit_unmanaged }}"
    security_groups: "{{ audit_sg }}"
    cloudtrail: "{{ audit_cloudtrail_result }}"
    dest_dir: /var/lib/cloudefigo/audit
    bucket: example-audit-reports
    siem: true
    login_host: siem.example.internal
    login_user: audit_reader
  register: audit_report_result

- name: Give AWX the summary
  ansible.builtin.set_stats:
    data:
      cloudefigo_audit: "{{ audit_report_result.summary }}"

- name: One slice of a sliced job writes its parts only
  cloudefigo.core.audit_report:
    mode: part
    run_id: "{{ awx_workflow_job_id | default(awx_job_id) }}"
    account_id: "{{ account_id }}"
    unmanaged: "{{ audit_unmanaged }}"
    security_groups: "{{ audit_sg }}"
    bucket: example-audit-reports

- name: The workflow's final node merges every part
  cloudefigo.core.audit_report:
    mode: merge
    bucket: example-audit-reports
    dest_dir: /tmp/audit
"""

RETURN = r"""
report_path:
  description: Local path of the HTML report (when O(dest_dir) is set and the mode renders).
  returned: success
  type: str
  sample: /var/lib/cloudefigo/audit/audit-report.html
report_s3_uri:
  description: S3 URI of the HTML report (when O(bucket) is set and the mode renders).
  returned: success
  type: str
  sample: s3://example-audit-reports/cloudefigo-audit/audit-report.html
summary:
  description:
    - Totals of the merged report (or of this run's parts with O(mode=part)); made for C(set_stats).
    - C(failed_parts) and C(failed) (C(ACCOUNT/REGION) list) count and name the pairs whose last audit failed.
    - C(leftovers) counts the findings of resources left behind by gone instances, C(reconciled) those removed this run.
  returned: always
  type: dict
  sample: {"accounts": 1, "regions": 2, "findings": 4, "new": 1, "resolved": 0, "unmanaged_instances": 2,
           "stale_nodes": 1, "security_group_findings": 1, "quarantined": 1, "stale_parts": 0, "failed_parts": 0,
           "failed": [],
           "by_severity": {"critical": 1, "high": 2, "medium": 1, "low": 0, "info": 0}}
parts_written:
  description: Parts of this run (store paths), written or unchanged.
  returned: always
  type: list
  elements: str
  sample: ["state/123456789012/us-east-1.json"]
siem:
  description: Whether the CloudTrail charts are in the report, and why not.
  returned: when O(siem=true)
  type: dict
  sample: {"available": true, "events": 2900, "reason": null}
"""

import datetime
import json
import traceback

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client, s3_bucket_name_problem
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.postgres import (
    connect_kwargs, postgres_argument_spec)
from ansible_collections.cloudefigo.core.plugins.module_utils._report import document, parts, siem as siem_queries
from ansible_collections.cloudefigo.core.plugins.module_utils._report.store import LocalStore, S3Store, StoreError

try:
    import psycopg2
except ImportError:
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()
else:
    PSYCOPG2_IMPORT_ERROR = None

REPORT = "audit-report.html"
SUMMARY = "audit-summary.json"


def parse_time(module, value):
    if not value:
        return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        module.fail_json(msg="generated_at: %r is not an ISO 8601 time; use e.g. 2026-11-29T06:00:00Z or leave it "
                             "out for now" % value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc).replace(microsecond=0)


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def caller_account(module):
    sts = retrying_client(module, "sts")
    try:
        return sts.get_caller_identity(aws_retry=True)["Account"]
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json_aws(exc, msg="Could not read the caller's account; set account_id (and expected_bucket_owner "
                                      "with bucket)")


def dumps(value):
    return (json.dumps(value, sort_keys=True, indent=1) + "\n").encode("utf-8")


def load_json(module, store, rel):
    try:
        data = store.read(rel)
    except StoreError as exc:
        module.warn(str(exc))
        return None
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json_aws(exc, msg="Could not read %s; check bucket, expected_bucket_owner and the "
                                      "controller's s3:GetObject permission" % store.describe(rel))
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except ValueError:
        module.warn("%s is not JSON: ignored" % store.describe(rel))
        return None


def write(module, stores, rel, data, content_type):
    changed = False
    for store in stores:
        try:
            changed = store.write(rel, data, content_type) or changed
        except (IOError, OSError) as exc:
            module.fail_json(msg="Could not write %s: %s; check dest_dir" % (store.describe(rel), exc))
        except Exception as exc:  # pylint: disable=broad-except
            module.fail_json_aws(exc, msg="Could not write %s; check bucket, expected_bucket_owner, kms_key_id and the "
                                          "controller's s3:PutObject permission" % store.describe(rel))
    return changed


def read_siem(module, until):
    params = module.params
    if PSYCOPG2_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("psycopg2"), exception=PSYCOPG2_IMPORT_ERROR)
    kwargs = connect_kwargs(params, application_name="cloudefigo.core.audit_report")
    try:
        connection = psycopg2.connect(**kwargs)
    except psycopg2.Error as exc:
        module.fail_json(msg="Could not connect to PostgreSQL %s:%s database %s as %s: %s; check login_host, "
                             "login_port, db, login_user and login_password (or set siem=false)"
                             % (kwargs.get("host", "(socket)"), kwargs.get("port"), kwargs.get("dbname"),
                                kwargs.get("user"), str(exc).strip()))
    try:
        connection.set_session(readonly=True)
        with connection.cursor() as cursor:
            return siem_queries.collect(cursor, params["siem_schema"], until, days=params["siem_days"],
                                        limit=params["siem_limit"])
    except psycopg2.Error as exc:
        module.fail_json(msg="PostgreSQL error reading the CloudTrail store in schema %s: %s"
                             % (params["siem_schema"], str(exc).strip()), exception=traceback.format_exc())
    finally:
        connection.close()


def validate(module):
    params = module.params
    if not params["bucket"] and not params["dest_dir"]:
        module.fail_json(msg="Set dest_dir (a local directory) and/or bucket (an S3 bucket) to keep the report")
    if params["bucket"]:
        problem = s3_bucket_name_problem(params["bucket"])
        if problem:
            module.fail_json(msg="bucket %r is not a valid S3 bucket name: %s" % (params["bucket"], problem))
    prefix = params["prefix"] or ""
    if prefix.startswith("/") or ".." in prefix.split("/"):
        module.fail_json(msg="prefix %r must be relative without '..' segments, e.g. cloudefigo-audit/" % prefix)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    for name, minimum in (("history", 1), ("siem_days", 1), ("siem_limit", 1), ("part_max_age", 0)):
        if params[name] < minimum:
            module.fail_json(msg="%s must be at least %d, got %d" % (name, minimum, params[name]))
    return prefix


def main():
    argument_spec = dict(
        mode=dict(type="str", default="full", choices=["full", "part", "merge"]),
        unmanaged=dict(type="dict", default={}),
        security_groups=dict(type="dict", default={}),
        cloudtrail=dict(type="dict", default={}),
        quarantined=dict(type="list", elements="str", default=[]),
        leftovers=dict(type="dict", default={}),
        reconciled=dict(type="list", elements="dict", default=[]),
        regions=dict(type="list", elements="str", default=[]),
        account_id=dict(type="str"),
        error=dict(type="str"),
        run_id=dict(type="str"),
        generated_at=dict(type="str"),
        title=dict(type="str", default="Cloudefigo fleet audit"),
        dest_dir=dict(type="path"),
        bucket=dict(type="str"),
        prefix=dict(type="str", default="cloudefigo-audit/"),
        expected_bucket_owner=dict(type="str"),
        kms_key_id=dict(type="str"),
        history=dict(type="int", default=30),
        part_max_age=dict(type="int", default=172800),
        siem=dict(type="bool", default=False),
        siem_schema=dict(type="str", default="cloudtrail"),
        siem_days=dict(type="int", default=14),
        siem_limit=dict(type="int", default=10),
    )
    argument_spec.update(postgres_argument_spec())
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    prefix = validate(module)
    now = parse_time(module, params["generated_at"])
    generated_at = iso(now)
    run_id = params["run_id"] or generated_at
    mode = params["mode"]

    account_id = params["account_id"]
    if not account_id and mode != "merge":
        account_id = caller_account(module)
    stores = []
    if params["bucket"]:
        owner = params["expected_bucket_owner"] or account_id or caller_account(module)
        stores.append(S3Store(retrying_client(module, "s3"), params["bucket"], prefix, owner,
                              kms_key_id=params["kms_key_id"], check_mode=module.check_mode))
    if params["dest_dir"]:
        stores.append(LocalStore(params["dest_dir"], check_mode=module.check_mode))
    primary = stores[0]  # the bucket when there is one: the memory between runs

    changed = False
    written = {}
    if params["error"] is not None and mode != "merge":
        if params["unmanaged"] or params["security_groups"] or not params["regions"]:
            module.fail_json(msg="error: give the regions that could not be audited in regions, and no unmanaged or "
                                 "security_groups results (a failed audit has none)")
    if mode in ("full", "part"):
        built = parts.build_parts(account_id, params["unmanaged"], params["security_groups"], params["quarantined"],
                                  params["regions"], params["leftovers"], params["reconciled"])
        for (account, region), data in sorted(built.items()):
            if not region:
                module.fail_json(msg="A finding of account %s has no region: pass the modules' results unchanged" % account)
            rel = parts.part_key(account, region)
            previous = load_json(module, primary, rel)
            if previous is not None and not parts.is_part(previous):
                module.warn("%s is not a report part written by this module: ignored (nothing to compare with)"
                            % primary.describe(rel))
                previous = None
            if params["error"] is not None:
                part = parts.failed_part(account, region, previous, run_id, generated_at, params["error"])
            else:
                part = parts.finish_part(account, region, data, previous, run_id, generated_at, params["history"])
            changed = write(module, stores, rel, dumps(part), "application/json") or changed
            written[rel] = part

    result = {"parts_written": sorted(written)}
    if mode == "part":
        view = parts.merge(list(written.values()), generated_at, params["history"])
        result["summary"] = parts.summary(view)
        module.exit_json(changed=changed, **result)

    found = {}
    for rel in _list(module, primary):
        if rel in written:
            continue
        stored = load_json(module, primary, rel)
        if not parts.is_part(stored):
            module.warn("%s is not a report part written by this module: left out" % primary.describe(rel))
        elif parts.part_key(stored["account_id"], stored["region"]) != rel:
            # a part names its own account and region: one stored under another pair's key is forged or misplaced
            module.warn("%s holds the part of another account or region: left out" % primary.describe(rel))
        else:
            found[rel] = stored
    found.update(written)
    stale_before = iso(now - datetime.timedelta(seconds=params["part_max_age"])) if params["part_max_age"] else None
    view = parts.merge(list(found.values()), generated_at, params["history"], stale_before=stale_before)

    siem = None
    if params["siem"]:
        siem = read_siem(module, now)
        if not siem["available"]:
            module.warn("CloudTrail charts left out: %s" % siem["reason"])
    html = document.render(view, title=params["title"], siem=siem, cloudtrail=params["cloudtrail"] or None)
    summary = parts.summary(view)
    if siem is not None:
        summary["cloudtrail_events"] = siem["events"]
        result["siem"] = {"available": siem["available"], "events": siem["events"], "reason": siem["reason"]}

    previous_summary = load_json(module, primary, SUMMARY)
    changed = write(module, stores, REPORT, html.encode("utf-8"), "text/html; charset=utf-8") or changed
    changed = write(module, stores, SUMMARY, dumps(summary), "application/json") or changed
    for store in stores:
        key = "report_s3_uri" if isinstance(store, S3Store) else "report_path"
        result[key] = store.describe(REPORT)
    result["summary"] = summary
    if module._diff:
        result["diff"] = {"before": previous_summary or {}, "after": summary}
    module.exit_json(changed=changed, **result)


def _list(module, store):
    try:
        return store.list_parts()
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json_aws(exc, msg="Could not list %s; check bucket, expected_bucket_owner and the controller's "
                                      "s3:ListBucket permission" % store.describe("state/"))


if __name__ == "__main__":
    main()
