# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Connection and evaluation options shared by the Nessus modules, and their plumbing.

Private to the collection: not a public API, may change without notice.

Keep ``nessus_argument_spec`` in sync with ``plugins/doc_fragments/nessus.py`` (DOCUMENTATION) and
``evaluation_argument_spec`` with its EVALUATION fragment.
"""

from __future__ import annotations

import urllib.parse

from ansible.module_utils.basic import env_fallback

from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.client import NessusClient, NessusError
from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.evaluation import (
    DEFAULT_MAX_FINDINGS,
    SEVERITY_NAMES,
    NessusReportError,
    normalise_accepted,
)


def nessus_argument_spec():
    """Connection options (doc fragment cloudefigo.core.nessus)."""
    return dict(
        url=dict(type="str", fallback=(env_fallback, ["NESSUS_URL"])),
        access_key=dict(type="str", no_log=True, fallback=(env_fallback, ["NESSUS_ACCESS_KEY"])),
        secret_key=dict(type="str", no_log=True, fallback=(env_fallback, ["NESSUS_SECRET_KEY"])),
        username=dict(type="str", no_log=True, fallback=(env_fallback, ["NESSUS_USERNAME"])),
        password=dict(type="str", no_log=True, fallback=(env_fallback, ["NESSUS_PASSWORD"])),
        validate_certs=dict(type="bool", default=True),
        ca_path=dict(type="path"),
        allow_insecure_http=dict(type="bool", default=False),
        timeout=dict(type="int", default=30),
    )


def evaluation_argument_spec():
    """Verdict options (doc fragment cloudefigo.core.nessus.EVALUATION)."""
    return dict(
        fail_on=dict(type="str", default="medium", choices=list(SEVERITY_NAMES)),
        accepted_plugins=dict(type="raw"),
        max_findings=dict(type="int", default=DEFAULT_MAX_FINDINGS),
        fail_when_blocked=dict(type="bool", default=False),
    )


def check_evaluation_options(module):
    """Validate accepted_plugins early (before any scan is created)."""
    try:
        normalise_accepted(module.params["accepted_plugins"])
    except NessusReportError as exc:
        module.fail_json(msg=str(exc), passed=False)
    if module.params["max_findings"] < 0:
        module.fail_json(msg="max_findings must be 0 (list all) or more", passed=False)


def nessus_client(module):
    """A NessusClient from the module's connection options; fails the module on bad options."""
    params = module.params
    if not params["url"]:
        module.fail_json(msg="url is required (or set NESSUS_URL), e.g. https://nessus.example.com:8834", passed=False)
    parts = urllib.parse.urlsplit(params["url"])
    if parts.scheme not in ("http", "https") or not parts.netloc:
        module.fail_json(msg="url must be an https URL, e.g. https://nessus.example.com:8834, not %r" % params["url"],
                         passed=False)
    if parts.scheme == "http" and not params["allow_insecure_http"]:
        module.fail_json(msg="url %s is plain http: the API keys or password would cross the network unencrypted."
                             " Use https, or set allow_insecure_http=true (a lab only)" % params["url"], passed=False)
    if bool(params["access_key"]) != bool(params["secret_key"]):
        module.fail_json(msg="access_key and secret_key go together", passed=False)
    if bool(params["username"]) != bool(params["password"]):
        module.fail_json(msg="username and password go together", passed=False)
    try:
        return NessusClient(
            params["url"],
            access_key=params["access_key"],
            secret_key=params["secret_key"],
            username=params["username"],
            password=params["password"],
            validate_certs=params["validate_certs"],
            ca_path=params["ca_path"],
            timeout=params["timeout"],
        )
    except NessusError as exc:
        module.fail_json(msg=str(exc), passed=False)


def finish_evaluation(module, result, verdict):
    """Merge a verdict into ``result`` and exit; fail when asked to and it did not pass."""
    result.update(verdict)
    if not verdict["passed"] and module.params["fail_when_blocked"]:
        module.fail_json(**result)
    module.exit_json(**result)
