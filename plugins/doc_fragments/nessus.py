# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # Connection options; keep in sync with module_utils/_nessus/common.py::nessus_argument_spec
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Base URL of the Nessus REST API, for example V(https://nessus.example.com:8834).
      - If not set, the E(NESSUS_URL) environment variable is used. Required one way or the other.
    type: str
  access_key:
    description:
      - API access key (Nessus UI, My Account, API Keys). Used with O(secret_key).
      - API keys do not expire and are preferred over O(username)/O(password).
      - If not set, the E(NESSUS_ACCESS_KEY) environment variable is used.
    type: str
  secret_key:
    description:
      - API secret key, used with O(access_key).
      - If not set, the E(NESSUS_SECRET_KEY) environment variable is used.
    type: str
  username:
    description:
      - User for a session login (C(POST /session)), used when no API keys are given.
      - Sessions expire after 30 idle minutes; the module logs in again when Nessus answers 401.
      - If not set, the E(NESSUS_USERNAME) environment variable is used.
    type: str
  password:
    description:
      - Password of O(username).
      - If not set, the E(NESSUS_PASSWORD) environment variable is used.
    type: str
  validate_certs:
    description:
      - Verify the scanner's TLS certificate. Nessus ships a self-signed certificate; give its CA
        with O(ca_path) rather than turning this off.
    type: bool
    default: true
  ca_path:
    description:
      - PEM file with the CA certificate(s) that signed the scanner's certificate.
    type: path
  allow_insecure_http:
    description:
      - Allow a plain C(http://) O(url). Without it such a URL is refused, because the API keys
        or the password would cross the network unencrypted. For a lab only.
    type: bool
    default: false
    version_added: 0.2.0
  timeout:
    description:
      - Timeout in seconds of each HTTP request (not of the whole scan, see O(cloudefigo.core.nessus_scan#module:wait_timeout)).
      - Requests answered 429 or 5xx, and requests that time out, are retried up to 5 times, honouring
        C(Retry-After). A refused connection or a host name that does not resolve fails at once, naming O(url).
    type: int
    default: 30
"""

    # Verdict options; keep in sync with module_utils/_nessus/common.py::evaluation_argument_spec
    EVALUATION = r"""
options:
  fail_on:
    description:
      - Lowest severity that blocks, on the C(severity) attribute of each C(ReportItem)
        (0 info, 1 low, 2 medium, 3 high, 4 critical).
      - Which CVSS version Nessus based that severity on is a scanner setting; the report's choice is
        returned as RV(severity_basis) when it says.
    type: str
    choices: [info, low, medium, high, critical]
    default: medium
  accepted_plugins:
    description:
      - Findings accepted as known risk, by Nessus plugin ID. They are listed in RV(accepted_findings)
        and do not block.
      - A list (of numbers or numeric strings) accepts the plugins on every host.
      - A dictionary maps a host to a list of plugin IDs accepted on that host only. A host is matched
        by the C(ReportHost) name or its C(host-ip), C(host-fqdn), C(hostname) or C(netbios-name)
        property (case-insensitive). The key V(*) means every host.
    type: raw
  max_findings:
    description:
      - At most this many entries are returned in each of RV(blocking_findings) and RV(accepted_findings);
        the counts stay exact and RV(findings_truncated) tells when entries were left out.
      - V(0) returns them all (a very large report can then produce a very large result).
    type: int
    default: 1000
  fail_when_blocked:
    description:
      - When V(false), a report that does not pass returns RV(passed=false) with the findings and the
        task succeeds, so the playbook decides (O(fail_when_blocked=true) or an C(assert)/C(failed_when)).
      - When V(true), the task fails when the report does not pass.
      - Errors (unreachable scanner, timeout, aborted or canceled run, malformed report) always fail
        the task, and never return RV(passed=true).
    type: bool
    default: false
"""
