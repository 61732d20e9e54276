#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nessus_scan
short_description: Scan hosts with Nessus and decide pass or fail, fail closed
version_added: 0.1.0
description:
  - With O(state=completed) (the default) and O(targets), creates a scan from a template (O(template),
    default V(basic)) or a policy (O(policy)), launches it, waits for that run to end within
    O(wait_timeout), exports it as C(.nessus), downloads it and evaluates it (see O(fail_on),
    O(accepted_plugins)).
  - With O(scan_id), exports and evaluates a run of an existing scan instead. This works on every
    Nessus edition, including Professional, where scans can only be launched from the UI.
  - With O(state=launched), creates and launches the scan and returns its ids, its status and its
    progress without waiting.
  - With O(state=launched) and O(scan_id), reads the status and progress of a run (O(scan_uuid), else
    the latest) without launching anything, at once or after watching the run for up to
    O(watch_timeout) seconds. One call per line of a loop that shows how far a long scan got (see
    the examples). With O(evaluate=true), the call that sees the run end also exports and evaluates
    it, so the loop's last line is the verdict and no further call is needed.
  - With O(state=absent), deletes the scan O(scan_id).
  - Fail closed. Only a run that ended C(completed) can pass. An aborted, canceled or paused run, a timeout,
    a 412 "API is not available", an authentication failure or a malformed report fails the task with
    RV(passed=false).
  - Before creating anything, the module reads C(GET /server/properties). Nessus Professional, Expert
    and Essentials refuse to create or launch scans over the API. On them the module says so and points
    to O(scan_id) mode.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  state:
    description:
      - V(completed) runs a scan (or takes the run of O(scan_id)) to its end and evaluates the report.
      - V(launched) creates and launches a scan and returns RV(scan_id), RV(scan_uuid), RV(scan_status)
        and RV(progress) at once. With O(scan_id) (since 0.2.0), it launches nothing. It reads the
        status and progress of the run O(scan_uuid) (else the latest run), at once or within
        O(watch_timeout), and returns C(changed=false) and RV(passed=false) (nothing is evaluated).
      - V(absent) deletes the scan O(scan_id).
    type: str
    choices: [completed, launched, absent]
    default: completed
  targets:
    description:
      - Hosts to scan (addresses, names or ranges, as Nessus takes them). Needed to create a scan.
    type: list
    elements: str
  name:
    description:
      - Name of the scan to create. Defaults to C(cloudefigo.core.nessus_scan) and the targets.
    type: str
  template:
    description:
      - Name (or title) of the scan template from C(GET /editor/scan/templates), looked up at run time.
    type: str
    default: basic
  policy:
    description:
      - Name (or id) of a user-defined policy to scan with, instead of O(template).
    type: str
  folder:
    description:
      - Folder (by name) to put the new scan in. It is created when missing. By default, Nessus's default folder.
    type: str
  scan_id:
    description:
      - An existing scan. With O(state=completed), its run is exported and evaluated instead of creating a
        scan. With O(state=launched), the scan whose run status and progress to read. With O(state=absent),
        the scan to delete.
    type: int
  scan_uuid:
    description:
      - With O(scan_id), the run to evaluate (or, with O(state=launched), to report on), as returned by
        O(state=launched) (RV(scan_uuid)). By default, the scan's latest run.
    type: str
  wait_timeout:
    description:
      - Seconds to wait for the run to end. When the run is still going after that, the task fails with
        RV(timed_out=true) (not passed); see the examples for long scans.
    type: int
    default: 3600
  watch_timeout:
    description:
      - With O(state=launched) and O(scan_id), watch the run for up to this many seconds (a status
        request every O(poll_interval)) and return as soon as it ended, or when the time is up, with
        its status and progress. Running out of time is not a failure here.
      - With O(state=launched) and O(targets), the same watch of the run just launched, before the
        module returns.
      - V(0) reads the status and progress once.
    type: float
    default: 0
    version_added: 0.2.0
  evaluate:
    description:
      - With O(state=launched) only (a launch, or a poll with O(scan_id)). When the run has ended
        (at once or within O(watch_timeout)), export and evaluate it in the same call, exactly as
        O(state=completed) with O(scan_id) does (O(fail_on), O(accepted_plugins),
        O(fail_when_blocked), O(report_path)). The result then carries the verdict (RV(passed), the findings) and RV(ended=true). A run that
        ended otherwise than C(completed) fails the task, not passed.
      - While the run goes on, the call returns its status and progress with RV(ended=false) and
        RV(passed=false), without failing; a loop goes on until RV(ended) (see the examples). Never
        read RV(passed) without RV(ended).
    type: bool
    default: false
    version_added: 0.2.0
  poll_interval:
    description: Seconds between two status requests while waiting.
    type: float
    default: 10
  export_timeout:
    description: Seconds to wait for the export to be ready (Nessus answers 409 while the run still winds down).
    type: int
    default: 600
  report_path:
    description:
      - Keep the downloaded C(.nessus) report at this path on the node running the module (usually
        the controller). By default, it goes to a temporary file that is deleted.
      - Not written in check mode.
    type: path
  delete_after:
    description:
      - Delete the scan this task created once it ended (passed or not). Scans given by O(scan_id) are never deleted
        by this option.
    type: bool
    default: false
extends_documentation_fragment:
  - cloudefigo.core.nessus
  - cloudefigo.core.nessus.EVALUATION
attributes:
  check_mode:
    support: full
    description:
      - Creates and launches nothing. It reads the server properties and looks the template or policy up,
        then reports C(changed) and RV(passed=false) (nothing was verified).
      - With O(scan_id), the export and evaluation only read, and run in check mode too; so does
        reading a run's status and progress (O(state=launched) with O(scan_id)).
  diff_mode:
    support: full
    description: Shows the scan to be created (before empty) or deleted (after empty).
notes:
  - Long scans. A task blocks until the run ends. Run it with C(async) and C(poll) so Ansible shows it is alive
    and does not time the connection out. You can also use O(state=launched), then this module with O(scan_id),
    O(scan_uuid) and a short O(wait_timeout) in an C(until) loop on RV(timed_out) (see the examples).
  - C(changed) is V(true) when a scan was created, launched or deleted.
    Exporting and downloading a report change nothing.
seealso:
  - module: cloudefigo.core.nessus_report
"""

EXAMPLES = r"""
- name: Scan a new instance; block at high severity
  cloudefigo.core.nessus_scan:
    url: https://nessus.example.com:8834
    access_key: "{{ vault_nessus_access_key }}"
    secret_key: "{{ vault_nessus_secret_key }}"
    ca_path: /etc/pki/nessus-ca.pem
    targets: ["{{ instance_ip }}"]
    fail_on: high
    report_path: "reports/{{ instance_id }}.nessus"
    wait_timeout: 7200
    poll_interval: 30
  register: scan
  async: 7500   # the task runs in the background; Ansible polls it every 30 s
  poll: 30
  delegate_to: localhost

- name: Stop when the scan did not pass
  ansible.builtin.assert:
    that: scan.passed
    fail_msg: "{{ scan.blocking_count }} blocking findings on {{ instance_ip }}"

- name: Evaluate the latest run of a scan launched from the UI (Nessus Professional)
  cloudefigo.core.nessus_scan:
    scan_id: 42
    fail_on: critical
    accepted_plugins: [51192]
    fail_when_blocked: true
  delegate_to: localhost

- name: Launch without waiting
  cloudefigo.core.nessus_scan:
    state: launched
    targets: [10.0.0.5, 10.0.0.6]
    policy: Hardened Linux
    folder: ansible
  register: launched
  delegate_to: localhost

- name: Wait for that run, one line per 30 s with its status and percentage done
  cloudefigo.core.nessus_scan:
    state: launched
    scan_id: "{{ launched.scan_id }}"
    scan_uuid: "{{ launched.scan_uuid }}"
    watch_timeout: 30   # returns as soon as the run ended (status requests every poll_interval)
    poll_interval: 5
  register: poll
  loop: "{{ range(1, 121) | list }}"   # at most 120 times 30 s: one hour
  loop_control:
    # the label is rendered after each poll, with its result: "(item=poll 7: running 45%)"
    label: "poll {{ item }}: {{ poll.scan_status | default('?') }} {{ '-' if poll.progress is none else poll.progress }}%"
    break_when: poll.scan_status | default('') in ['completed', 'aborted', 'canceled', 'paused', 'imported']
  delegate_to: localhost

- name: Evaluate the run that ended (fails, not passed, if it is still running)
  cloudefigo.core.nessus_scan:
    scan_id: "{{ launched.scan_id }}"
    scan_uuid: "{{ launched.scan_uuid }}"
    wait_timeout: 0
  register: result
  delegate_to: localhost

- name: The same wait, where the poll that sees the run end also evaluates it (one call fewer)
  cloudefigo.core.nessus_scan:
    state: launched
    scan_id: "{{ launched.scan_id }}"
    scan_uuid: "{{ launched.scan_uuid }}"
    watch_timeout: 30
    evaluate: true
    fail_on: high
  register: poll
  loop: "{{ range(1, 121) | list }}"
  loop_control:
    label: "poll {{ item }}: {{ poll.scan_status | default('?') }} {{ '-' if poll.progress is none else poll.progress }}%"
    # a failed poll (an aborted run, an unreachable server) ends the loop too
    break_when: poll is failed or poll.ended | default(false)
  delegate_to: localhost

- name: Stop unless the run ended and passed
  ansible.builtin.assert:
    that:
      - (poll.results | last).ended | default(false)
      - (poll.results | last).passed is sameas true

- name: Delete the scan
  cloudefigo.core.nessus_scan:
    state: absent
    scan_id: "{{ launched.scan_id }}"
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: One line saying what happened and, for a verdict, why it passed or not.
  returned: always
  type: str
  sample: "not passed: 25 finding(s) at or above medium on 1 host(s)"
scan_id:
  description: Id of the scan created, launched, evaluated or deleted.
  returned: when known
  type: int
  sample: 17
scan_uuid:
  description: Uuid of the run (the launch's C(scan_uuid), or the evaluated history run's uuid).
  returned: when known
  type: str
  sample: 6a3c2e53-6c8b-4bd3-a2d6-5a2e1bbd10d4
history_id:
  description: History id of the evaluated run (or of the run read with O(state=launched)).
  returned: when a run was evaluated or read
  type: int
  sample: 1
scan_status:
  description:
    - Last status of the run (V(completed), V(aborted), V(canceled), V(paused), V(running), V(pending) ...).
    - With O(state=launched) and O(scan_id), V(null) when the run is not listed yet (right after a launch).
  returned: when known
  type: str
  sample: completed
progress:
  description:
    - Percentage done of the run (0 to 100), as Nessus gives it (a top-level C(progress), else the
      hosts' C(scanprogresscurrent) over C(scanprogresstotal)); V(null) when Nessus says nothing yet
      (a pending run lists no host).
  returned: with O(state=launched), when a scan was launched or its run read
  type: int
  sample: 45
  version_added: 0.2.0
scan_name:
  description: Name of the scan.
  returned: when a scan was created
  type: str
  sample: "cloudefigo.core.nessus_scan: 10.0.0.5"
ended:
  description:
    - With O(state=launched) and O(evaluate=true), whether the run has ended. When V(true),
      the result carries the verdict; when V(false), RV(passed) is V(false) and means only "not yet".
  returned: with O(evaluate=true)
  type: bool
  sample: true
  version_added: 0.2.0
timed_out:
  description: V(true) when O(wait_timeout) or O(export_timeout) elapsed first.
  returned: on failure
  type: bool
  sample: true
report_path:
  description: Where the report was kept (O(report_path)).
  returned: when O(report_path) is set and a report was downloaded
  type: str
  sample: reports/i-0abc.nessus
nessus_type:
  description: Edition from C(GET /server/properties).
  returned: when a scan was created or launched
  type: str
  sample: Nessus Manager
passed:
  description:
    - V(true) only when the report was read completely, lists at least one host, and has no finding at
      or above O(fail_on) other than accepted ones.
  returned: always
  type: bool
  sample: false
fail_on:
  description: The threshold used.
  returned: when a report was evaluated
  type: str
  sample: medium
severity_basis:
  description:
    - The CVSS basis the scanner computed C(severity) from (server preference C(severity_basis),
      for example V(cvss_v2) or V(cvss_v3)); V(null) when the report does not say.
  returned: when a report was evaluated
  type: str
  sample: cvss_v3
hosts:
  description: Per host (C(ReportHost) name), the number of findings at each severity.
  returned: when a report was evaluated
  type: dict
  sample: {"10.0.0.5": {"info": 23, "low": 1, "medium": 13, "high": 10, "critical": 2, "total": 49}}
counts:
  description: The same counts over all hosts.
  returned: when a report was evaluated
  type: dict
  sample: {"info": 23, "low": 1, "medium": 13, "high": 10, "critical": 2, "total": 49}
host_count:
  description: Number of hosts in the report.
  returned: when a report was evaluated
  type: int
  sample: 1
blocking_count:
  description: Number of findings that block (exact, even when RV(blocking_findings) is truncated).
  returned: when a report was evaluated
  type: int
  sample: 25
accepted_count:
  description: Number of findings at or above O(fail_on) accepted by O(accepted_plugins).
  returned: when a report was evaluated
  type: int
  sample: 1
blocking_findings:
  description: Findings at or above O(fail_on) that are not accepted (at most O(max_findings)).
  returned: when a report was evaluated
  type: list
  elements: dict
  contains:
    host:
      description: C(ReportHost) name.
      type: str
      sample: 10.0.0.5
    plugin_id:
      description: Nessus plugin ID.
      type: int
      sample: 51192
    plugin_name:
      description: Plugin name.
      type: str
      sample: SSL Certificate Cannot Be Trusted
    plugin_family:
      description: Plugin family.
      type: str
      sample: General
    severity:
      description: Severity number, 0 (info) to 4 (critical).
      type: int
      sample: 2
    severity_name:
      description: Severity name.
      type: str
      sample: medium
    port:
      description: Port of the finding (0 for host-level findings).
      type: int
      sample: 443
    protocol:
      description: Protocol of the finding.
      type: str
      sample: tcp
    svc_name:
      description: Service name Nessus gave the port.
      type: str
      sample: www
accepted_findings:
  description: Findings at or above O(fail_on) accepted by O(accepted_plugins), same keys as RV(blocking_findings).
  returned: when a report was evaluated
  type: list
  elements: dict
findings_truncated:
  description: V(true) when O(max_findings) left entries out of RV(blocking_findings) or RV(accepted_findings).
  returned: when a report was evaluated
  type: bool
  sample: false
scan_deleted:
  description:
    - V(true) when O(delete_after) removed the scan from Nessus after its report was evaluated.
    - Absent when the scan was kept, or when deleting it failed (a warning says why).
  returned: when O(delete_after=true) and the scan was deleted
  type: bool
  sample: true
"""

import os
import re
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.client import FINAL_STATUSES, NessusError, NessusTimeout
from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.common import (
    check_evaluation_options,
    evaluation_argument_spec,
    finish_evaluation,
    nessus_argument_spec,
    nessus_client,
)
from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.evaluation import NessusReportError, evaluate_file


class ScanFailed(Exception):
    """Ends the module as failed and not passed, with what is known so far."""


def _evaluate_run(module, client, result, scan_id, run, targets):
    """Export, download and evaluate a run that ended; fail closed on any other end.

    ``targets``: what the scan was created with; per-host accepted_plugins match on them.
    """
    params = module.params
    result["scan_status"] = run.get("status")
    result["history_id"] = run.get("history_id")
    result["scan_uuid"] = run.get("uuid") or result.get("scan_uuid")
    if run.get("status") != "completed":
        raise ScanFailed("scan %s run %s ended %r: not passed (only a completed run can pass)"
                         % (scan_id, result["scan_uuid"], run.get("status")))
    file_id = client.export(scan_id, run.get("history_id"), timeout=params["export_timeout"],
                            poll=min(params["poll_interval"], 2))
    workdir = tempfile.mkdtemp(prefix="nessus-", dir=module.tmpdir)
    try:
        download = os.path.join(workdir, "scan-%s.nessus" % scan_id)
        client.download_export(scan_id, file_id, download)
        try:
            verdict = evaluate_file(download, params["fail_on"], params["accepted_plugins"], params["max_findings"],
                                    targets=targets)
        except NessusReportError as exc:
            raise ScanFailed("report of scan %s: %s" % (scan_id, exc))
        finally:
            if params["report_path"] and not module.check_mode:
                dest = params["report_path"]
                parent = os.path.dirname(os.path.abspath(dest))
                if not os.path.isdir(parent):
                    os.makedirs(parent)
                shutil.move(download, dest)
                result["report_path"] = dest
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return verdict


def _existing_run(module, client, result):
    params = module.params
    scan_id = params["scan_id"]
    result["scan_id"] = scan_id
    run = client.wait_for_run(scan_id, params["scan_uuid"], params["wait_timeout"], params["poll_interval"])
    return _evaluate_run(module, client, result, scan_id, run, _scan_targets(module, client, scan_id))


def _scan_targets(module, client, scan_id):
    """The targets of an existing scan, when per-host acceptances need them (else None)."""
    if not isinstance(module.params["accepted_plugins"], dict):
        return None
    # per-host acceptances match on the scan's own targets (as the scan was configured)
    info = client.scan(scan_id).get("info") or {}
    return [item for item in re.split(r"[,\s]+", info.get("targets") or "") if item]


def _create_and_launch(module, client, result):
    """Create and launch a scan (not in check mode); returns (scan_id, scan_uuid)."""
    params = module.params
    props = client.check_scan_api()
    result["nessus_type"] = props.get("nessus_type")
    policy_id = None
    if params["policy"]:
        policy = client.policy(params["policy"])
        template_uuid = policy.get("template_uuid")
        policy_id = policy.get("id")
        if not template_uuid:
            raise ScanFailed("policy %r has no template_uuid in GET /policies" % params["policy"])
    else:
        template_uuid = client.template_uuid(params["template"])
    name = params["name"] or "cloudefigo.core.nessus_scan: %s" % ", ".join(params["targets"])
    result["scan_name"] = name
    result["changed"] = True
    if module._diff:
        result["diff"] = {"before": {}, "after": {"name": name, "targets": params["targets"],
                                                  "template": None if policy_id else params["template"],
                                                  "policy": params["policy"], "folder": params["folder"]}}
    if module.check_mode:
        return None, None
    folder_id = None
    if params["folder"]:
        folder_id = client.folder_id(params["folder"])[0]
    scan_id = client.create_scan(template_uuid, name, params["targets"], folder_id=folder_id, policy_id=policy_id)
    result["scan_id"] = scan_id
    scan_uuid = client.launch(scan_id)
    result["scan_uuid"] = scan_uuid
    result["scan_status"] = "pending"
    return scan_id, scan_uuid


def _report_run(client, result, scan_id, scan_uuid, watch=0, poll=5):
    """Put the run's status and progress (as Nessus gives them now, or once it ended within ``watch``
    seconds) into the result."""
    run, progress = client.watch_run(scan_id, scan_uuid, watch, poll)
    if run is not None:
        result["scan_status"] = run.get("status")
        result["history_id"] = run.get("history_id")
        result["scan_uuid"] = run.get("uuid") or scan_uuid
    else:
        # not listed yet (right after a launch); a given uuid stays the one asked for
        result.setdefault("scan_status", None)
        if scan_uuid:
            result["scan_uuid"] = scan_uuid
    result["progress"] = progress
    return run


def _evaluate_if_ended(module, client, result, scan_id, run, targets):
    """With evaluate=true: note whether the run ended and, when it did, give the verdict and exit
    (fails closed on any end but completed). ``targets``: the scan's, None to read them."""
    if not module.params["evaluate"]:
        return
    result["ended"] = run is not None and run.get("status") in FINAL_STATUSES
    if result["ended"]:
        del result["msg"]
        if targets is None:
            targets = _scan_targets(module, client, scan_id)
        finish_evaluation(module, result, _evaluate_run(module, client, result, scan_id, run, targets))


def _progress_text(result):
    return "%s, %s%% done" % (result.get("scan_status") or "not listed yet",
                              "?" if result.get("progress") is None else result["progress"])


def _absent(module, client, result):
    scan_id = module.params["scan_id"]
    result["scan_id"] = scan_id
    try:
        details = client.scan(scan_id)
    except NessusError as exc:
        if exc.status == 404:
            result["msg"] = "scan %s does not exist" % scan_id
            return
        raise
    info = details.get("info") or {}
    result["changed"] = True
    result["scan_name"] = info.get("name")
    if module._diff:
        result["diff"] = {"before": {"scan_id": scan_id, "name": info.get("name"), "status": info.get("status")},
                          "after": {}}
    if not module.check_mode:
        client.delete_scan(scan_id)
    result["msg"] = "scan %s deleted" % scan_id


def run_module(module, client, result):
    params = module.params
    state = params["state"]
    if state == "absent":
        _absent(module, client, result)
        module.exit_json(**result)
    if state == "completed" and params["scan_id"] is not None:
        finish_evaluation(module, result, _existing_run(module, client, result))
    if state == "launched" and params["scan_id"] is not None:
        # a poll: read the run's status and progress (after watching it up to watch_timeout), launch nothing
        result["scan_id"] = params["scan_id"]
        run = _report_run(client, result, params["scan_id"], params["scan_uuid"], params["watch_timeout"],
                          params["poll_interval"])
        result["msg"] = "scan %s run %s: %s" % (params["scan_id"], result.get("scan_uuid") or "(latest)",
                                                _progress_text(result))
        _evaluate_if_ended(module, client, result, params["scan_id"], run, None)
        module.exit_json(**result)
    scan_id, scan_uuid = _create_and_launch(module, client, result)
    if module.check_mode:
        result["msg"] = "check mode: would create and launch a scan of %s; nothing verified" % ", ".join(params["targets"])
        module.exit_json(**result)
    if state == "launched":
        run = _report_run(client, result, scan_id, scan_uuid, params["watch_timeout"], params["poll_interval"])
        result["msg"] = "scan %s launched (run %s): %s" % (scan_id, scan_uuid, _progress_text(result))
        _evaluate_if_ended(module, client, result, scan_id, run, params["targets"])
        module.exit_json(**result)
    try:
        run = client.wait_for_run(scan_id, scan_uuid, params["wait_timeout"], params["poll_interval"])
        verdict = _evaluate_run(module, client, result, scan_id, run, params["targets"])
    finally:
        if params["delete_after"]:
            try:
                client.delete_scan(scan_id)
                result["scan_deleted"] = True
            except NessusError as exc:
                module.warn("could not delete scan %s: %s" % (scan_id, exc))
    finish_evaluation(module, result, verdict)


def main():
    argument_spec = nessus_argument_spec()
    argument_spec.update(evaluation_argument_spec())
    argument_spec.update(
        state=dict(type="str", default="completed", choices=["completed", "launched", "absent"]),
        targets=dict(type="list", elements="str"),
        name=dict(type="str"),
        template=dict(type="str", default="basic"),
        policy=dict(type="str"),
        folder=dict(type="str"),
        scan_id=dict(type="int"),
        scan_uuid=dict(type="str"),
        wait_timeout=dict(type="int", default=3600),
        poll_interval=dict(type="float", default=10),
        watch_timeout=dict(type="float", default=0),
        evaluate=dict(type="bool", default=False),
        export_timeout=dict(type="int", default=600),
        report_path=dict(type="path"),
        delete_after=dict(type="bool", default=False),
    )
    module = AnsibleModule(
        argument_spec=argument_spec,
        supports_check_mode=True,
        required_if=[("state", "absent", ["scan_id"]), ("state", "launched", ["targets", "scan_id"], True)],
        mutually_exclusive=[("scan_id", "targets")],
    )
    params = module.params
    if params["state"] == "completed" and params["scan_id"] is None and not params["targets"]:
        module.fail_json(msg="state=completed needs targets (to create a scan) or scan_id (to evaluate one)", passed=False)
    if params["targets"] is not None and not [t for t in params["targets"] if t.strip()]:
        module.fail_json(msg="targets is empty", passed=False)
    if params["wait_timeout"] < 0 or params["poll_interval"] <= 0:
        module.fail_json(msg="wait_timeout must be >= 0 and poll_interval > 0", passed=False)
    if params["watch_timeout"] < 0:
        module.fail_json(msg="watch_timeout must be >= 0 (seconds; 0 reads the run's status once)", passed=False)
    if params["evaluate"] and params["state"] != "launched":
        module.fail_json(msg="evaluate=true goes with state=launched (a launch or a poll that evaluates the run"
                             " once it ended); state=completed always evaluates", passed=False)
    check_evaluation_options(module)
    client = nessus_client(module)
    result = dict(changed=False, passed=False)
    try:
        run_module(module, client, result)
    except NessusTimeout as exc:
        result["timed_out"] = True
        if exc.last_status:
            result["scan_status"] = exc.last_status
        module.fail_json(msg="not passed: %s" % exc, **result)
    except (NessusError, ScanFailed) as exc:
        module.fail_json(msg="not passed: %s" % exc, **result)
    finally:
        client.logout()


if __name__ == "__main__":
    main()
