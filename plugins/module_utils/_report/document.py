# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The audit report as one self-contained HTML document.

Private to the collection: not a public API, may change without notice.

Everything shown comes from AWS, Chef, CloudTrail or a stored part (a tag value, a role session
name, an error message is whatever someone wrote): every value goes through ``e()``. The
Content-Security-Policy allows no script at all and only the one style sheet below, by its hash;
markup that slipped through would stay inert. Sections can be opened alone by their link
(``#trend``): CSS ``:target``, no script.
"""

from __future__ import annotations

import base64
import hashlib

from ansible_collections.cloudefigo.core.plugins.module_utils._report import charts
from ansible_collections.cloudefigo.core.plugins.module_utils._report.charts import e
from ansible_collections.cloudefigo.core.plugins.module_utils._report.parts import SEVERITIES

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #1b1f24; max-width: 1100px; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.2rem; margin-top: 1.5rem; border-bottom: 2px solid #ccd; }
h3 { font-size: 1rem; margin-bottom: .3rem; }
nav a { margin-right: .8rem; }
body:has(section:target) > section:not(:target) { display: none; }
table { border-collapse: collapse; margin: .3rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ccd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #eef; } td.num { text-align: right; }
figure { margin: .5rem 0 1.2rem; } figcaption { font-weight: 600; margin-bottom: .3rem; }
.chart-svg { font-size: 12px; max-width: 100%; height: auto; }
.chart-svg .tick, .chart-svg .empty { fill: #555; }
.new { background: #fff3cd; } .resolved { color: #555; text-decoration: line-through; }
.sev-critical { background: #f8d7da; font-weight: bold; } .sev-high { background: #fde2e1; }
.sev-medium { background: #fff3cd; } .none { color: #555; font-style: italic; }
.warn { background: #fff3cd; padding: .4rem .6rem; }
.tag { font-family: monospace; white-space: pre-wrap; word-break: break-all; }
"""


def style_hash(style=STYLE):
    return "sha256-" + base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest()).decode("ascii")


def content_security_policy(style=STYLE):
    """The policy: nothing but the report's own style sheet (by hash) and data: images."""
    return "default-src 'none'; style-src '%s'; img-src data:; base-uri 'none'; form-action 'none'" % style_hash(style)


def _num(ident, value):
    return '<td class="num" id="%s">%s</td>' % (e(ident), e(value))


def _pair_label(part):
    return "%s / %s" % (part["account_id"], part["region"])


def _pair_id(part):
    return "pair-%s-%s" % (part["account_id"], part["region"])


def _change(new_text, new_id, new_count, gone_text, gone_id, gone_count):
    return '<li>%s: <strong id="%s">%s</strong>; %s: <strong id="%s">%s</strong></li>' % (
        e(new_text), e(new_id), e(new_count), e(gone_text), e(gone_id), e(gone_count))


def _summary(view):
    totals = view["totals"]
    kinds, new_by, resolved_by = totals["kinds"], totals["new_by_kind"], totals["resolved_by_kind"]
    out = ['<section id="summary"><h2>Summary</h2><table id="summary-table">',
           "<tr><th>Accounts</th>%s</tr>" % _num("total-accounts", totals["accounts"]),
           "<tr><th>Account and region pairs audited</th>%s</tr>" % _num("total-regions", totals["regions"]),
           "<tr><th>Findings</th>%s</tr>" % _num("total-all-findings", totals["findings"])]
    for sev in SEVERITIES:
        out.append('<tr class="sev-%s"><th>&nbsp;&nbsp;%s</th>%s</tr>' % (e(sev), e(sev.capitalize()),
                                                                          _num("total-" + sev, totals["severity"][sev])))
    out += ["<tr><th>Unmanaged instances</th>%s</tr>" % _num("total-unmanaged", kinds.get("unmanaged_instance", 0)),
            "<tr><th>Quarantined this run</th>%s</tr>" % _num("total-quarantined", totals["quarantined"]),
            "<tr><th>Stale Chef nodes</th>%s</tr>" % _num("total-stale", kinds.get("stale_node", 0)),
            "<tr><th>Security group findings</th>%s</tr>" % _num("total-findings", kinds.get("security_group", 0)),
            "<tr><th>Leftovers of gone instances</th>%s</tr>" % _num("total-leftovers", kinds.get("leftover", 0)),
            "<tr><th>Removed this run (reconciled)</th>%s</tr>" % _num("total-reconciled", totals.get("reconciled", 0)),
            "</table>",
            "<h3>Changes since the previous run</h3>",
            '<ul id="changes">',
            _change("New unmanaged instances", "new-unmanaged", new_by.get("unmanaged_instance", 0),
                    "no longer unmanaged", "resolved-unmanaged", resolved_by.get("unmanaged_instance", 0)),
            _change("New stale Chef nodes", "new-stale", new_by.get("stale_node", 0),
                    "converging again", "resolved-stale", resolved_by.get("stale_node", 0)),
            _change("New security group findings", "new-findings", new_by.get("security_group", 0),
                    "resolved", "resolved-findings", resolved_by.get("security_group", 0)),
            "</ul>"]
    rows = [(_pair_label(p), _severities(p["findings"]), {"pair-account": p["account_id"], "pair-region": p["region"]})
            for p in view["parts"]]
    out.append('<figure id="figure-severity"><figcaption>Findings by severity per account and region</figcaption>%s</figure>'
               % charts.stacked_hbar_chart("chart-severity", "Findings by severity per account and region", rows, SEVERITIES))
    if view.get("failed_parts"):
        out.append('<h3>Audit failed (findings shown are those of the last run that succeeded)</h3>'
                   '<table id="failed-parts"><tr><th>Account</th><th>Region</th><th>Error</th><th>Findings from</th></tr>')
        for item in view["failed_parts"]:
            out.append('<tr data-pair-account="%s" data-pair-region="%s"><td>%s</td><td>%s</td><td class="tag">%s</td>'
                       "<td>%s</td></tr>" % (e(item["account_id"]), e(item["region"]), e(item["account_id"]),
                                             e(item["region"]), e(item["error"]), e(item.get("findings_from") or "never")))
        out.append("</table>")
    if view["stale_parts"]:
        out.append('<h3>Not audited recently (left out above)</h3><table id="stale-parts"><tr><th>Account</th><th>Region</th>'
                   "<th>Last audited</th></tr>")
        for item in view["stale_parts"]:
            out.append("<tr><td>%s</td><td>%s</td><td>%s</td></tr>" % (e(item["account_id"]), e(item["region"]),
                                                                       e(item["generated_at"])))
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def _severities(findings):
    counts = dict((sev, 0) for sev in SEVERITIES)
    for finding in findings:
        counts[finding.get("severity") if finding.get("severity") in counts else "info"] += 1
    return counts


def _trend(view):
    runs = view["trend"]
    columns = [(r["generated_at"] or r["run_id"], r["severity"]) for r in runs]
    return ('<section id="trend"><h2>Trend over the last runs</h2>'
            '<figure id="figure-trend"><figcaption>Findings per severity, last %d runs</figcaption>%s</figure></section>'
            % (len(runs), charts.stacked_column_chart("chart-trend", "Findings per severity over the last runs", columns,
                                                      SEVERITIES)))


def _ingest(cloudtrail):
    if not cloudtrail:
        return ""
    failed = cloudtrail.get("files_failed") or []
    out = ['<h3>Loaded this run</h3><table id="cloudtrail-table">',
           "<tr><th>Log files found</th>%s</tr>" % _num("files-seen", "?" if cloudtrail.get("files_seen") is None
                                                        else cloudtrail.get("files_seen")),
           "<tr><th>Files loaded this run</th>%s</tr>" % _num("files-loaded", cloudtrail.get("files_loaded", 0)),
           "<tr><th>Events loaded</th>%s</tr>" % _num("events-loaded", cloudtrail.get("events_loaded", 0)),
           "<tr><th>Duplicate events left alone</th>%s</tr>" % _num("duplicates", cloudtrail.get("duplicates", 0)),
           "<tr><th>Bad files</th>%s</tr>" % _num("files-failed", len(failed)), "</table>"]
    if failed:
        out.append('<table id="cloudtrail-failed"><tr><th>File</th><th>Error</th></tr>')
        for item in failed:
            key, error = (item.get("key"), item.get("error", "")) if isinstance(item, dict) else (item, "")
            out.append('<tr><td class="tag">%s</td><td class="tag">%s</td></tr>' % (e(key), e(error)))
        out.append("</table>")
    return "".join(out)


def _siem(siem, cloudtrail):
    if not siem and not cloudtrail:
        return ""
    out = ['<section id="siem"><h2>CloudTrail in the SIEM</h2>']
    if siem and siem.get("available"):
        out.append('<p>%s to %s (UTC), <strong id="siem-events">%s</strong> events.</p>'
                   % (e(siem["since"][:10]), e(siem["until"][:16]), e(siem["events"])))
        figures = (
            ("events-per-day", "CloudTrail events per day", charts.column_chart, siem["events_per_day"]),
            ("error-codes", "Top error codes", charts.hbar_chart, siem["top_error_codes"]),
            ("access-denied", "Principals with the most AccessDenied", charts.hbar_chart, siem["access_denied"]),
            ("no-mfa", "Console logins without MFA (IAM users and root), per principal", charts.hbar_chart,
             siem["no_mfa_logins"]),
        )
        for ident, title, chart, rows in figures:
            colour = "#dc2626" if ident in ("access-denied", "no-mfa") else charts.BAR_COLOUR
            out.append('<figure id="figure-%s"><figcaption>%s</figcaption>%s</figure>'
                       % (e(ident), e(title), chart("chart-" + ident, title, rows, colour=colour)))
        if siem["no_mfa_latest"]:
            out.append('<table id="no-mfa-latest"><tr><th>Time (UTC)</th><th>Principal</th><th>Source IP</th>'
                       "<th>Account</th></tr>")
            for when, principal, source_ip, account in siem["no_mfa_latest"]:
                out.append('<tr><td>%s</td><td class="tag">%s</td><td>%s</td><td>%s</td></tr>'
                           % (e(when[:19]), e(principal), e(source_ip), e(account)))
            out.append("</table>")
    elif siem:
        out.append('<p class="warn" id="siem-unavailable">%s</p>' % e(siem.get("reason")))
    out.append(_ingest(cloudtrail))
    out.append("</section>")
    return "".join(out)


def _findings_table(css, head, rows_new, rows_resolved, columns):
    if not rows_new and not rows_resolved:
        return '<p class="none">None.</p>'
    out = ['<table class="%s"><tr>%s<th>Status</th></tr>' % (e(css), "".join("<th>%s</th>" % e(h) for h in head))]
    for finding, is_new in rows_new:
        classes = "sev-%s%s" % (finding.get("severity", "info"), " new" if is_new else "")
        status = "; ".join(word for word, flag in (("quarantined", finding.get("quarantined")), ("removed", finding.get("removed")),
                                                   ("new", is_new)) if flag)
        out.append('<tr class="%s" data-key="%s" data-resource-id="%s">%s<td>%s</td></tr>'
                   % (e(classes), e(finding["key"]), e(finding.get("resource_id")), columns(finding), e(status)))
    for finding in rows_resolved:
        out.append('<tr class="resolved" data-key="%s" data-resource-id="%s">%s<td>resolved</td></tr>'
                   % (e(finding["key"]), e(finding.get("resource_id")), columns(finding)))
    out.append("</table>")
    return "".join(out)


def _tags(tags):
    return "\n".join("%s=%s" % (k, v) for k, v in sorted((tags or {}).items()))


def _pair(part):
    new = set(part.get("new") or ())
    out = ['<section class="pair" id="%s" data-account="%s" data-region="%s"><h2>%s</h2>'
           % (e(_pair_id(part)), e(part["account_id"]), e(part["region"]), e(_pair_label(part)))]
    counts = part.get("counts") or {}
    by_kind = {}
    for finding in part["findings"]:
        by_kind.setdefault(finding.get("kind"), []).append(finding)
    resolved = {}
    for finding in part.get("resolved") or ():
        resolved.setdefault(finding.get("kind"), []).append(finding)
    if part.get("error"):
        out.append('<p class="failed">This run could not audit this account and region: <span class="tag">%s</span>. '
                   "The findings below are those of the last run that succeeded (%s).</p>"
                   % (e(part["error"]), e(part.get("findings_from") or "none")))
    out.append('<p class="counts">Audited %s. Instances %s, managed %s, unmanaged %d, stale %d, security group findings %d.%s</p>'
               % (e(part.get("generated_at")), e(counts.get("instances", "?")), e(counts.get("managed", "?")),
                  len(by_kind.get("unmanaged_instance", [])), len(by_kind.get("stale_node", [])),
                  len(by_kind.get("security_group", [])),
                  "" if part.get("baseline") else " First run for this account and region: nothing to compare with."))
    out.append("<h3>Unmanaged instances</h3>")
    out.append(_findings_table(
        "unmanaged", ["Instance", "Name", "State", "Launched", "Private DNS", "Tags"],
        [(f, f["key"] in new) for f in by_kind.get("unmanaged_instance", [])], resolved.get("unmanaged_instance", []),
        lambda f: '<td>%s</td><td class="tag">%s</td><td>%s</td><td>%s</td><td>%s</td><td class="tag">%s</td>'
        % (e(f.get("resource_id")), e(f.get("resource_name")), e(f.get("state")), e(f.get("launch_time")),
           e(f.get("private_dns_name")), e(_tags(f.get("tags"))))))
    out.append("<h3>Stale Chef nodes</h3>")
    out.append(_findings_table(
        "stale", ["Instance", "Node", "Last converge"],
        [(f, f["key"] in new) for f in by_kind.get("stale_node", [])], resolved.get("stale_node", []),
        lambda f: '<td>%s</td><td class="tag">%s</td><td>%s</td>' % (e(f.get("resource_id")), e(f.get("resource_name")),
                                                                     e(f.get("detail")))))
    out.append("<h3>Security group findings</h3>")
    out.append(_findings_table(
        "findings", ["Severity", "Finding", "Group", "Name", "Detail", "Exposes"],
        [(f, f["key"] in new) for f in by_kind.get("security_group", [])], resolved.get("security_group", []),
        lambda f: '<td>%s</td><td>%s</td><td>%s</td><td class="tag">%s</td><td class="tag">%s</td><td>%s</td>'
        % (e(f.get("severity")), e(f.get("title")), e(f.get("resource_id")), e(f.get("resource_name")), e(f.get("detail")),
           e(_exposes(f)))))
    out.append("<h3>Leftovers of gone instances</h3>")
    out.append(_findings_table(
        "leftovers", ["Severity", "Finding", "Instance", "Resource", "Kind", "Detail"],
        [(f, f["key"] in new) for f in by_kind.get("leftover", [])], resolved.get("leftover", []),
        lambda f: '<td>%s</td><td>%s</td><td>%s</td><td class="tag">%s</td><td>%s</td><td class="tag">%s</td>'
        % (e(f.get("severity")), e(f.get("title")), e(f.get("instance_id")), e(f.get("resource_id")), e(f.get("resource_name")),
           e(f.get("detail")))))
    out.append("</section>")
    return "".join(out)


def _exposes(finding):
    """The instances a security group finding exposes, as text (a count when the list is cut)."""
    instances = [str(i) for i in finding.get("instances") or ()]
    count = finding.get("instance_count")
    text = ", ".join(instances)
    if isinstance(count, int) and count > len(instances):
        text += " (+%d more)" % (count - len(instances)) if instances else "%d instances" % count
    return text


def render(view, title="Cloudefigo fleet audit", siem=None, cloudtrail=None):
    """The whole document (a str)."""
    previous = view.get("previous_runs") or []
    if previous:
        compared = '; compared with the run of <time id="previous-run">%s</time>' % e(previous[-1])
        if len(previous) > 1:
            compared += " (each account and region with its own previous run, the oldest from %s)" % e(previous[0])
    else:
        compared = '; <span id="previous-run" class="none">first run: nothing to compare with</span>'
    nav = [("summary", "Summary"), ("trend", "Trend")]
    if siem or cloudtrail:
        nav.append(("siem", "CloudTrail"))
    nav += [(_pair_id(p), _pair_label(p)) for p in view["parts"]]
    return "".join([
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        '<meta http-equiv="Content-Security-Policy" content="%s">\n' % e(content_security_policy()),
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        "<title>%s %s</title>\n" % (e(title), e(view["generated_at"])),
        "<style>%s</style>\n</head>\n<body>\n" % STYLE,
        "<h1>%s</h1>\n" % e(title),
        '<p id="generated">Generated <time>%s</time>%s.</p>\n' % (e(view["generated_at"]), compared),
        '<nav id="sections">%s</nav>\n' % "".join('<a href="#%s">%s</a>' % (e(ident), e(text)) for ident, text in nav),
        _summary(view), "\n", _trend(view), "\n", _siem(siem, cloudtrail), "\n",
        "\n".join(_pair(p) for p in view["parts"]),
        "\n</body>\n</html>\n",
    ])
