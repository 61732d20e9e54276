#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: nessus_report
short_description: Decide pass or fail on a local Nessus (.nessus) report
version_added: 0.1.0
description:
  - Reads a C(.nessus) (v2) file on the managed node and decides whether it passes, with the very same
    code that M(cloudefigo.core.nessus_scan) uses on a report it downloads.
  - The file is streamed (memory stays flat in its size). A DOCTYPE or entity declaration is refused
    (XXE, billion laughs). A file that is empty, not well-formed, not a Nessus v2 report, or lists no
    host fails the task; it never passes.
  - "Run it on the controller with C(delegate_to: localhost) when the report is there."
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  path:
    description: The C(.nessus) file (a scan exported in the C(nessus) format).
    type: path
    required: true
extends_documentation_fragment:
  - cloudefigo.core.nessus.EVALUATION
attributes:
  check_mode:
    support: full
    description: The module only reads; it runs the same way in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
notes:
  - Gate on RV(passed) (or set O(fail_when_blocked=true)).
seealso:
  - module: cloudefigo.core.nessus_scan
"""

EXAMPLES = r"""
- name: Evaluate a report exported from the Nessus UI
  cloudefigo.core.nessus_report:
    path: /srv/reports/web01.nessus
    fail_on: high
  register: web01_scan
  delegate_to: localhost

- name: Stop the rollout when the scan did not pass
  ansible.builtin.assert:
    that: web01_scan.passed
    fail_msg: "{{ web01_scan.blocking_count }} blocking findings: {{ web01_scan.blocking_findings | map(attribute='plugin_name') | list }}"

- name: Accept known findings, everywhere and on one host
  cloudefigo.core.nessus_report:
    path: /srv/reports/fleet.nessus
    fail_on: medium
    accepted_plugins:
      "*": [51192, 57582]       # self-signed certificates, accepted on every host
      10.0.0.5: ["142960"]      # accepted on that host only
    fail_when_blocked: true
  delegate_to: localhost
"""

RETURN = r"""
msg:
  description: One line saying whether the report passed and why.
  returned: always
  type: str
  sample: "not passed: 25 finding(s) at or above medium on 1 host(s)"
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
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.common import (
    check_evaluation_options,
    evaluation_argument_spec,
    finish_evaluation,
)
from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.evaluation import NessusReportError, evaluate_file


def main():
    argument_spec = dict(path=dict(type="path", required=True))
    argument_spec.update(evaluation_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    check_evaluation_options(module)
    params = module.params
    result = dict(changed=False, passed=False)
    try:
        verdict = evaluate_file(params["path"], params["fail_on"], params["accepted_plugins"], params["max_findings"])
    except NessusReportError as exc:
        module.fail_json(msg="%s: %s" % (params["path"], exc), **result)
    finish_evaluation(module, result, verdict)


if __name__ == "__main__":
    main()
