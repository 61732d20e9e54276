# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Pass/fail verdict on a ``.nessus`` (v2) report, streamed, fail closed.

Private to the collection: not a public API, may change without notice.

The report is fed to expat in fixed-size chunks and nothing is kept per ReportItem except the
findings that are returned, so memory does not grow with the size of the report.  A DOCTYPE or
any entity declaration is refused before expat expands anything (XXE, billion laughs): a scanner
never writes one.  Anything that is not a complete, well-formed NessusClientData_v2 document with
at least one scanned host is an error, never a pass.
"""

from __future__ import annotations

import ipaddress
import xml.parsers.expat

SEVERITY_NAMES = ("info", "low", "medium", "high", "critical")
_SEVERITY_BY_ATTR = {str(level): level for level in range(5)}
_CHUNK = 1 << 20
# The one HostProperties tag per-host accepted_plugins may match: the address the scanner scanned.
# host-fqdn, hostname and netbios-name are what the host (or its DNS) says about itself: a rogue
# host could claim the name of a host whose findings are accepted, so they are never matched.
_SCANNED_ADDRESS_TAG = "host-ip"
DEFAULT_MAX_FINDINGS = 1000


class NessusReportError(Exception):
    """The report cannot be evaluated (unreadable, malformed, not Nessus, unsafe, empty)."""


def severity_level(name):
    """``fail_on`` name (info..critical) to the ReportItem severity number (0..4)."""
    try:
        return SEVERITY_NAMES.index(str(name).lower())
    except ValueError:
        raise NessusReportError("fail_on must be one of %s, got %r" % (", ".join(SEVERITY_NAMES), name))


def _plugin_key(value, where):
    if isinstance(value, bool):
        raise NessusReportError("accepted_plugins: %s: %r is not a plugin ID" % (where, value))
    try:
        return int(str(value).strip())
    except ValueError:
        raise NessusReportError("accepted_plugins: %s: %r is not a plugin ID (a number such as 51192)" % (where, value))


def normalise_accepted(accepted):
    """``accepted_plugins`` to (IDs accepted on every host, {host: IDs accepted there}).

    A list is accepted everywhere; a dict maps a scanned target (see ``host_keys``) to a list,
    with ``"*"`` meaning every host.
    """
    everywhere = set()
    per_host = {}
    if accepted is None or accepted == "":
        return frozenset(), {}
    if isinstance(accepted, (list, tuple)):
        everywhere.update(_plugin_key(item, "list entry") for item in accepted)
    elif isinstance(accepted, dict):
        for host, ids in accepted.items():
            if ids is None:
                ids = []
            if not isinstance(ids, (list, tuple)):
                ids = [ids]
            keys = set(_plugin_key(item, "host %s" % host) for item in ids)
            if str(host) == "*":
                everywhere.update(keys)
            else:
                per_host.setdefault(str(host).lower(), set()).update(keys)
    else:
        everywhere.add(_plugin_key(accepted, "value"))
    return frozenset(everywhere), dict((host, frozenset(ids)) for host, ids in per_host.items())


def _is_address(text):
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def host_keys(report_name, host_ip, targets):
    """The names per-host accepted_plugins are matched on for one ReportHost (lower case).

    Only what the scanner itself decided: the address it scanned (``host-ip``, or a ReportHost
    name that is an address) and the scan's target (the ReportHost name or address when it is
    one of ``targets``, or the only target of a one-target scan). Never a name the host reports
    about itself (host-fqdn, hostname, netbios-name; a ReportHost name that is neither an address
    nor a target).
    """
    keys = set()
    wanted = set(str(target).strip().lower() for target in targets or () if str(target).strip())
    for value in (report_name, host_ip):
        if not value:
            continue
        value = value.strip().lower()
        if _is_address(value) or value in wanted:
            keys.add(value)
    if len(wanted) == 1:
        keys.update(wanted)
    return keys


def _int_or_none(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Evaluation(object):
    """expat callbacks; one instance per report."""

    def __init__(self, parser, threshold, everywhere, per_host, max_findings, targets=None):
        self.parser = parser
        self.targets = list(targets or ())
        self.threshold = threshold
        self.everywhere = everywhere
        self.per_host = per_host
        self.max_findings = max_findings
        self.root = None
        self.in_report = False
        self.report_seen = False
        self.host = None
        self.host_counts = None
        self.host_accepts = frozenset()
        self.hosts = {}
        self.items = 0
        self.blocking = []
        self.accepted = []
        self.blocking_count = 0
        self.accepted_count = 0
        self.severity_basis = None
        self.pending_pref = None
        self.text = []
        self.text_target = None
        self.starts = {
            "Report": self._report,
            "ReportHost": self._report_host,
            "ReportItem": self._report_item,
            "tag": self._tag,
            "name": self._pref_name,
            "value": self._pref_value,
        }
        parser.StartElementHandler = self._first

    # -- element starts
    def _first(self, name, attrs):
        if name != "NessusClientData_v2":
            raise NessusReportError("not a Nessus v2 report: the root element is <%s>, expected <NessusClientData_v2>"
                                    " (export the scan in the 'nessus' format)" % name)
        self.root = name
        self.parser.StartElementHandler = self._start

    def _start(self, name, attrs):
        handler = self.starts.get(name)
        if handler is not None:
            handler(attrs)

    def _start_in_report(self, name, attrs):
        # the hot path: most elements of a report are ReportItem children that need nothing
        if name == "ReportItem":
            self._report_item(attrs)
        elif name == "ReportHost":
            self._report_host(attrs)
        elif name == "tag":
            self._tag(attrs)

    def _report(self, attrs):
        self.in_report = True
        self.report_seen = True
        self.parser.StartElementHandler = self._start_in_report

    def _report_host(self, attrs):
        if not self.in_report:
            raise NessusReportError("<ReportHost> outside <Report>")
        host = attrs.get("name")
        if not host:
            raise NessusReportError("<ReportHost> without a name at line %d" % self.parser.CurrentLineNumber)
        self.host = host
        counts = self.hosts.get(host)
        if counts is None:
            counts = self.hosts[host] = [0, 0, 0, 0, 0]
        self.host_counts = counts
        self.host_accepts = self._accepts(host, None)

    def _accepts(self, report_name, host_ip):
        if not self.per_host:
            return frozenset()
        found = frozenset()
        for key in host_keys(report_name, host_ip, self.targets):
            found = found | self.per_host.get(key, frozenset())
        return found

    def _tag(self, attrs):
        if self.host is not None and attrs.get("name") == _SCANNED_ADDRESS_TAG and self.per_host:
            self._collect("host_ip")

    def _pref_name(self, attrs):
        if not self.in_report:
            self._collect("pref_name")

    def _pref_value(self, attrs):
        if not self.in_report and self.pending_pref == "severity_basis":
            self._collect("pref_value")

    def _report_item(self, attrs):
        counts = self.host_counts
        if counts is None:
            raise NessusReportError("<ReportItem> outside <ReportHost> at line %d" % self.parser.CurrentLineNumber)
        severity = _SEVERITY_BY_ATTR.get(attrs.get("severity"))
        if severity is None:
            raise NessusReportError("<ReportItem pluginID=%r> on host %s has severity %r, expected 0-4: refusing to guess"
                                    % (attrs.get("pluginID"), self.host, attrs.get("severity")))
        counts[severity] += 1
        self.items += 1
        if severity < self.threshold:
            return
        plugin_id = _int_or_none(attrs.get("pluginID"))
        if plugin_id in self.everywhere or plugin_id in self.host_accepts:
            self.accepted_count += 1
            target = self.accepted
        else:
            self.blocking_count += 1
            target = self.blocking
        if self.max_findings and len(target) >= self.max_findings:
            return
        target.append({
            "host": self.host,
            "plugin_id": plugin_id,
            "plugin_name": attrs.get("pluginName"),
            "plugin_family": attrs.get("pluginFamily"),
            "severity": severity,
            "severity_name": SEVERITY_NAMES[severity],
            "port": _int_or_none(attrs.get("port")),
            "protocol": attrs.get("protocol"),
            "svc_name": attrs.get("svc_name"),
        })

    # -- text, collected only for the few elements that need it
    def _collect(self, target):
        self.text = []
        self.text_target = target
        self.parser.CharacterDataHandler = self.text.append
        self.parser.EndElementHandler = self._end_collect

    def _end_collect(self, name):
        self.parser.CharacterDataHandler = None
        self.parser.EndElementHandler = None
        value = "".join(self.text).strip()
        target, self.text_target = self.text_target, None
        if target == "pref_name":
            self.pending_pref = value
        elif target == "pref_value":
            self.severity_basis = value or None
            self.pending_pref = None
        elif target == "host_ip" and value:
            self.host_accepts = self.host_accepts | self._accepts(self.host, value)

    # -- result
    def result(self, fail_on):
        if self.root is None:
            raise NessusReportError("the report is empty")
        if not self.report_seen:
            raise NessusReportError("the report has no <Report> element: it holds no scan results")
        if not self.hosts:
            raise NessusReportError("the report lists no scanned host (no <ReportHost>): nothing was verified")
        hosts = {}
        totals = [0, 0, 0, 0, 0]
        for host, counts in self.hosts.items():
            hosts[host] = dict(zip(SEVERITY_NAMES, counts))
            hosts[host]["total"] = sum(counts)
            for level in range(5):
                totals[level] += counts[level]
        counts = dict(zip(SEVERITY_NAMES, totals))
        counts["total"] = sum(totals)
        passed = self.blocking_count == 0
        if passed:
            msg = "passed: no finding at or above %s on %d host(s)" % (fail_on, len(hosts))
            if self.accepted_count:
                msg += " (%d accepted by accepted_plugins)" % self.accepted_count
        else:
            msg = "not passed: %d finding(s) at or above %s on %d host(s)" % (
                self.blocking_count, fail_on, len(set(f["host"] for f in self.blocking)) or 1)
        return {
            "passed": passed,
            "msg": msg,
            "fail_on": fail_on,
            "severity_basis": self.severity_basis,
            "hosts": hosts,
            "counts": counts,
            "host_count": len(hosts),
            "blocking_count": self.blocking_count,
            "accepted_count": self.accepted_count,
            "blocking_findings": self.blocking,
            "accepted_findings": self.accepted,
            "findings_truncated": (len(self.blocking) < self.blocking_count
                                   or len(self.accepted) < self.accepted_count),
        }


def _refuse_doctype(*args):
    raise NessusReportError("the report declares a DOCTYPE or entities: refused (XXE / entity expansion);"
                            " a Nessus export never contains one")


def _new_parser():
    parser = xml.parsers.expat.ParserCreate()
    parser.buffer_text = True
    parser.buffer_size = 1 << 16
    parser.SetParamEntityParsing(xml.parsers.expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_doctype
    parser.UnparsedEntityDeclHandler = _refuse_doctype
    parser.ExternalEntityRefHandler = _refuse_doctype
    return parser


def evaluate_stream(stream, fail_on="medium", accepted_plugins=None, max_findings=DEFAULT_MAX_FINDINGS, targets=None):
    """Evaluate a binary file object holding a .nessus report; see evaluate_file."""
    threshold = severity_level(fail_on)
    everywhere, per_host = normalise_accepted(accepted_plugins)
    parser = _new_parser()
    evaluation = _Evaluation(parser, threshold, everywhere, per_host, max_findings, targets)
    read = stream.read
    feed = parser.Parse
    try:
        chunk = read(_CHUNK)
        if not chunk:
            raise NessusReportError("the report is empty (0 bytes)")
        while chunk:
            feed(chunk, False)
            chunk = read(_CHUNK)
        feed(b"", True)
    except xml.parsers.expat.ExpatError as exc:
        raise NessusReportError("the report is not well-formed XML (%s at line %s, column %s): refusing to pass it"
                                % (xml.parsers.expat.ErrorString(exc.code), exc.lineno, exc.offset))
    return evaluation.result(str(fail_on).lower())


def evaluate_file(path, fail_on="medium", accepted_plugins=None, max_findings=DEFAULT_MAX_FINDINGS, targets=None):
    """Verdict on the .nessus report at ``path``.

    ``fail_on``: lowest severity (info, low, medium, high, critical) that blocks.
    ``accepted_plugins``: plugin IDs that never block (list), or per scanned target (dict,
    ``"*"`` = all; matched as ``host_keys`` says).
    ``targets``: the targets the scan was created with, when known (nessus_scan).
    ``max_findings``: at most that many findings listed per list (0 = all); counts stay exact.
    Raises NessusReportError when the report cannot be trusted.
    """
    try:
        with open(path, "rb") as stream:
            return evaluate_stream(stream, fail_on, accepted_plugins, max_findings, targets)
    except (IOError, OSError) as exc:
        raise NessusReportError("cannot read the report %s: %s" % (path, exc))
