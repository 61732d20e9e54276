# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Findings per account and region ("parts"), compared with the previous run, then merged.

Private to the collection: not a public API, may change without notice.

A part is the JSON kept per (account, region) in the report store (S3 and/or a local directory):
this run's findings with a stable ``key`` each, which of them are ``new`` since the previous run
of the same pair, the previous run's findings that are gone (``resolved``), and a short history of
counts for the trend chart. Each sliced job writes only its own pairs; the final step merges every
part in the store. Plain functions, no I/O.
"""

from __future__ import annotations

FORMAT = 1
SEVERITIES = ("critical", "high", "medium", "low", "info")
KINDS = ("unmanaged_instance", "stale_node", "security_group", "leftover")

# readable titles for the rule ids the audit modules return (security_group_audit's `rule`)
RULE_TITLES = {
    "open_all_ports": "Every port open to the internet",
    "open_admin_port": "Administration or database port open to the internet",
    "cidr_not_allowed": "Ingress from a network outside the allow-list",
    "open_egress": "Egress to the internet on every port",
    "egress_cidr_not_allowed": "Egress to a network outside the allow-list",
    "exposed_via_group": "Reachable from the internet through another security group",
    "cannot_evaluate": "Rule whose sources cannot be read",
    "default_group_rules": "Default security group has rules",
    "unused_group": "Security group attached to nothing",
    "unmanaged_instance": "EC2 instance not managed by Chef",
    "stale_node": "Chef node has not converged recently",
    "leftover": "Left behind by an instance that is gone",
    "leftover_not_ours": "Named by a gone instance's launch record but not marked for it (never removed)",
    "leftover_unknown": "Launch record whose instance could not be judged (nothing removed)",
}
# an instance that escaped the secure launch is a high finding; a node that stopped converging
# no longer gets its hardening (medium)
KIND_SEVERITY = {"unmanaged_instance": "high", "stale_node": "medium"}
# a key, role or volume outliving its instance is exposure without an owner (medium); one the record
# names but whose marks disagree needs a look (low); a record that could not be judged (info)
LEFTOVER_SEVERITY = {"leftover": "medium", "leftover_not_ours": "low", "leftover_unknown": "info"}


def readable_title(rule):
    """The title shown for a rule id; unknown ids (a newer module) are spelled out, not hidden."""
    if rule in RULE_TITLES:
        return RULE_TITLES[rule]
    text = str(rule or "finding").replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:]


def _text(value):
    return "" if value is None else str(value)


def _severity(value):
    value = _text(value).lower()
    return value if value in SEVERITIES else "info"


def _unmanaged_finding(account, region, item, quarantined):
    instance_id = _text(item.get("instance_id"))
    tags = item.get("tags") or {}
    if not isinstance(tags, dict):
        tags = {}
    return {
        "key": "%s/%s/unmanaged_instance/%s" % (account, region, instance_id),
        "kind": "unmanaged_instance",
        "rule": "unmanaged_instance",
        "severity": KIND_SEVERITY["unmanaged_instance"],
        "title": readable_title("unmanaged_instance"),
        "resource_id": instance_id,
        "resource_name": _text(tags.get("Name")),
        "detail": "state %s" % _text(item.get("state") or "unknown"),
        "state": _text(item.get("state")),
        "launch_time": _text(item.get("launch_time")),
        "private_dns_name": _text(item.get("private_dns_name")),
        "vpc_id": _text(item.get("vpc_id")),
        "tags": dict((_text(k), _text(v)) for k, v in sorted(tags.items())),
        "quarantined": instance_id in quarantined,
    }


def _stale_finding(account, region, item):
    instance_id = _text(item.get("instance_id"))
    age = item.get("ohai_age")
    detail = "never converged" if age is None else "last converge %d min ago" % (int(age) // 60)
    return {
        "key": "%s/%s/stale_node/%s" % (account, region, instance_id),
        "kind": "stale_node",
        "rule": "stale_node",
        "severity": KIND_SEVERITY["stale_node"],
        "title": readable_title("stale_node"),
        "resource_id": instance_id,
        "resource_name": _text(item.get("node_name")),
        "detail": detail,
        "ohai_age": age,
    }


def _sg_finding(account, region, item):
    rule = _text(item.get("rule") or item.get("type") or "security_group_finding")
    group_id = _text(item.get("group_id"))
    ports = _text(item.get("ports") if item.get("ports") is not None else item.get("port"))
    cidr = _text(item.get("cidr"))
    # an explicit title wins (a caller's own checks), else the rule's readable title
    title = _text(item.get("title")) or readable_title(rule)
    # ingress findings from a CIDR keep the key of 0.1.0 (so an upgrade shows no new finding);
    # egress, prefix lists and group chains are told apart by what they add
    key = "%s/%s/security_group/%s/%s/%s/%s" % (account, region, group_id, rule, ports, cidr)
    if item.get("direction") == "egress":
        key += "/egress"
    if item.get("prefix_list_id"):
        key += "/" + _text(item["prefix_list_id"])
    via = [_text(group) for group in item.get("via_groups") or () if group]
    if via:
        key += "/via/" + ",".join(via)
    instances = [_text(i) for i in item.get("instances") or () if i]
    return {
        "key": _text(item.get("key")) or key,
        "kind": "security_group",
        "rule": rule,
        "severity": _severity(item.get("severity")),
        "title": title,
        "resource_id": group_id,
        "resource_name": _text(item.get("group_name")),
        "detail": _text(item.get("reason") or item.get("detail") or item.get("description")),
        "vpc_id": _text(item.get("vpc_id")),
        "ports": ports,
        "cidr": cidr,
        "instances": instances,
        "instance_count": item.get("instance_count") if isinstance(item.get("instance_count"), int) else len(instances),
    }


def _leftover_findings(account, region, entry, reconciled):
    """Findings of one item of instance_leftovers' `leftovers` or `unknown`."""
    instance_id = _text(entry.get("instance_id"))
    base = {"kind": "leftover", "instance_id": instance_id, "launch_id": _text(entry.get("launch_id")),
            "gone_since": _text(entry.get("gone_since")), "record": _text(entry.get("record"))}
    if entry.get("status") != "gone":
        return [dict(base, key="%s/%s/leftover/%s/record" % (account, region, instance_id or _text(entry.get("record"))),
                     rule="leftover_unknown", severity=LEFTOVER_SEVERITY["leftover_unknown"],
                     title=readable_title("leftover_unknown"), resource_id=_text(entry.get("record")),
                     resource_name="launch record", detail=_text(entry.get("reason")), removed=False)]
    removed = reconciled.get(instance_id) or {}
    out = []
    for resource in entry.get("resources") or ():
        if not isinstance(resource, dict) or not resource.get("present"):
            continue
        rule = "leftover" if resource.get("ours") else "leftover_not_ours"
        kind, name = _text(resource.get("kind")), _text(resource.get("name"))
        was_removed = bool(removed) and (
            (kind == "key" and removed.get("key_object") == name)
            or (kind in ("role", "instance_profile") and bool(removed.get("role")))
            or (kind == "volume" and name in (removed.get("volumes") or ()))
            or (kind in ("chef_node", "chef_client") and bool(removed.get("chef_node"))))
        out.append(dict(base, key="%s/%s/leftover/%s/%s/%s" % (account, region, instance_id, kind, name), rule=rule,
                        severity=LEFTOVER_SEVERITY[rule], title=readable_title(rule), resource_id=name,
                        resource_name=kind.replace("_", " "),
                        detail="%s; gone since %s" % (_text(resource.get("reason")), _text(entry.get("gone_since")) or "?"),
                        removed=was_removed))
    return out


def _pair(item, default_account):
    return (_text(item.get("account_id") or default_account), _text(item.get("region")))


def build_parts(account_id, unmanaged=None, security_groups=None, quarantined=(), regions=(), leftovers=None, reconciled=()):
    """{(account, region): {"counts": ..., "findings": [...]}} of this run, no history yet.

    ``unmanaged`` is unmanaged_instances' result, ``security_groups`` security_group_audit's.
    Every audited region gets a part, even an empty one: an empty part is what tells the next
    comparison that the region's findings were resolved. Items may carry their own
    ``account_id`` (several accounts in one result); the others belong to ``account_id``.
    """
    unmanaged = unmanaged or {}
    security_groups = security_groups or {}
    quarantined = set(_text(i) for i in (quarantined or ()))
    parts = {}

    def part(pair):
        if pair not in parts:
            parts[pair] = {"counts": {}, "findings": []}
        return parts[pair]

    for region in list(regions or ()) + list(security_groups.get("regions") or ()):
        part((_text(account_id), _text(region)))
    for region, counts in sorted((unmanaged.get("counts") or {}).items()):
        part((_text(account_id), _text(region)))["counts"].update(
            dict((k, v) for k, v in (counts or {}).items() if isinstance(v, int)))
    for item in unmanaged.get("unmanaged") or ():
        pair = _pair(item, account_id)
        part(pair)["findings"].append(_unmanaged_finding(pair[0], pair[1], item, quarantined))
    for item in unmanaged.get("stale") or ():
        pair = _pair(item, account_id)
        part(pair)["findings"].append(_stale_finding(pair[0], pair[1], item))
    for item in security_groups.get("findings") or ():
        pair = _pair(item, account_id)
        part(pair)["findings"].append(_sg_finding(pair[0], pair[1], item))
    leftovers = leftovers or {}
    done = dict((_text(item.get("instance_id")), item.get("removed") or {})
                for item in reconciled or () if isinstance(item, dict) and not item.get("error"))
    for entry in list(leftovers.get("leftovers") or ()) + list(leftovers.get("unknown") or ()):
        if isinstance(entry, dict):
            # an unreadable record names no region of its own
            pair = (_text(entry.get("account") or account_id), _text(entry.get("region") or "global"))
            part(pair)["findings"] += _leftover_findings(pair[0], pair[1], entry, done)
    for data in parts.values():
        data["findings"] = _dedupe(sorted(data["findings"], key=_order))
    return parts


def _dedupe(findings):
    seen, out = set(), []
    for finding in findings:
        if finding["key"] not in seen:
            seen.add(finding["key"])
            out.append(finding)
    return out


def _order(finding):
    return (SEVERITIES.index(finding.get("severity", "info")) if finding.get("severity") in SEVERITIES else len(SEVERITIES),
            KINDS.index(finding["kind"]) if finding.get("kind") in KINDS else len(KINDS),
            finding.get("resource_id", ""), finding.get("key", ""))


def severity_counts(findings):
    counts = dict((sev, 0) for sev in SEVERITIES)
    for finding in findings:
        counts[_severity(finding.get("severity"))] += 1
    return counts


def kind_counts(findings):
    counts = dict((kind, 0) for kind in KINDS)
    for finding in findings:
        kind = finding.get("kind")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def is_part(document):
    """Whether a stored JSON document looks like a part this code wrote (else it is ignored)."""
    return (isinstance(document, dict) and document.get("format") == FORMAT
            and isinstance(document.get("account_id"), str) and isinstance(document.get("region"), str)
            and isinstance(document.get("findings"), list)
            and all(isinstance(f, dict) and isinstance(f.get("key"), str) for f in document["findings"])
            and isinstance(document.get("history", []), list))


def baseline(previous, run_id):
    """(run_id, generated_at, findings) of the run to compare with, or None on a first run.

    A re-run of the same ``run_id`` (a retried job) compares with what that run compared with,
    rebuilt from the stored part (its findings minus the new ones, plus the resolved ones), so
    retrying never turns "new" findings into old ones.
    """
    if not is_part(previous):
        return None
    if previous.get("run_id") != run_id:
        if previous.get("error"):
            # a failed run carried the findings of the last run that succeeded: compare with that run
            base = previous.get("baseline") if isinstance(previous.get("baseline"), dict) else {}
            return {"run_id": base.get("run_id"), "generated_at": base.get("generated_at"), "findings": previous["findings"]}
        return {"run_id": previous.get("run_id"), "generated_at": previous.get("generated_at"),
                "findings": previous["findings"]}
    base = previous.get("baseline")
    if not isinstance(base, dict):
        return None
    new = set(previous.get("new") or ())
    findings = [f for f in previous["findings"] if f["key"] not in new]
    findings += [f for f in previous.get("resolved") or () if isinstance(f, dict) and isinstance(f.get("key"), str)]
    return {"run_id": base.get("run_id"), "generated_at": base.get("generated_at"), "findings": findings}


def history_entry(run_id, generated_at, findings):
    return {"run_id": run_id, "generated_at": generated_at, "severity": severity_counts(findings),
            "kinds": kind_counts(findings), "total": len(findings)}


def failed_part(account_id, region, previous, run_id, generated_at, error):
    """The part of a pair this run could not audit (e.g. its role could not be assumed).

    Fail closed: the findings of the last run that succeeded are carried over (an audit that did
    not run must not turn them into "resolved"), nothing is new, the trend gets no entry, and the
    part says why and since when its findings date.
    """
    previous = previous if is_part(previous) else None
    findings = list(previous["findings"]) if previous else []
    if previous and previous.get("error"):
        base = previous.get("baseline")
        since = previous.get("findings_from")
    elif previous:
        base = {"run_id": previous.get("run_id"), "generated_at": previous.get("generated_at")}
        since = previous.get("generated_at")
    else:
        base, since = None, None
    return {
        "format": FORMAT,
        "account_id": account_id,
        "region": region,
        "run_id": run_id,
        "generated_at": generated_at,
        "counts": (previous or {}).get("counts", {}),
        "findings": findings,
        "new": [],
        "resolved": [],
        "baseline": base if isinstance(base, dict) else None,
        "history": list((previous or {}).get("history", [])),
        "error": _text(error)[:2000] or "failed",
        "findings_from": since,
    }


def finish_part(account_id, region, data, previous, run_id, generated_at, history_length=30):
    """The part to store for one pair: this run's findings compared with ``previous`` (or None)."""
    base = baseline(previous, run_id)
    findings = data["findings"]
    current = set(f["key"] for f in findings)
    if base is None:
        new = sorted(current)
        resolved = []
    else:
        before = set(f["key"] for f in base["findings"])
        new = sorted(current - before)
        resolved = sorted((f for f in base["findings"] if f["key"] not in current), key=_order)
    history = [h for h in (previous or {}).get("history", []) if isinstance(h, dict) and h.get("run_id") != run_id] \
        if is_part(previous) else []
    history.append(history_entry(run_id, generated_at, findings))
    history = history[-max(1, int(history_length)):]
    return {
        "format": FORMAT,
        "account_id": account_id,
        "region": region,
        "run_id": run_id,
        "generated_at": generated_at,
        "counts": data.get("counts", {}),
        "findings": findings,
        "new": new,
        "resolved": resolved,
        "baseline": None if base is None else {"run_id": base["run_id"], "generated_at": base["generated_at"]},
        "history": history,
    }


def part_key(account_id, region):
    """Relative path of a pair's part in the store (under the store's prefix or directory)."""
    return "state/%s/%s.json" % (safe_name(account_id), safe_name(region))


def safe_name(value):
    """An account id or region as one path segment: anything else than [A-Za-z0-9._-] becomes '_'."""
    text = "".join(c if (c.isascii() and (c.isalnum() or c in "._-")) else "_" for c in _text(value))
    return text.strip(".") or "_"


def merge(parts, generated_at, history_length=30, stale_before=None):
    """One view of every part: totals, per pair summaries, the trend across runs.

    ``stale_before``: an ISO time; parts generated before it are left out of the totals and
    listed under ``stale_parts`` (a pair no longer audited, e.g. removed from the inventory).
    """
    current, stale, failed = [], [], []
    for part in sorted((p for p in parts if is_part(p)), key=lambda p: (p["account_id"], p["region"])):
        if part.get("error"):
            failed.append({"account_id": part["account_id"], "region": part["region"], "error": _text(part["error"]),
                           "generated_at": part.get("generated_at"), "findings_from": part.get("findings_from")})
        if stale_before and _text(part.get("generated_at")) < stale_before:
            stale.append({"account_id": part["account_id"], "region": part["region"],
                          "generated_at": part.get("generated_at")})
        else:
            current.append(part)
    totals = {"accounts": len(set(p["account_id"] for p in current)), "regions": len(current),
              "findings": 0, "new": 0, "resolved": 0, "quarantined": 0, "reconciled": 0,
              "severity": dict((s, 0) for s in SEVERITIES), "kinds": dict((k, 0) for k in KINDS),
              "new_by_kind": dict((k, 0) for k in KINDS), "resolved_by_kind": dict((k, 0) for k in KINDS)}
    runs = {}
    for part in current:
        findings = part["findings"]
        new = set(part.get("new") or ())
        totals["findings"] += len(findings)
        totals["new"] += len(new)
        totals["resolved"] += len(part.get("resolved") or ())
        totals["quarantined"] += sum(1 for f in findings if f.get("quarantined"))
        totals["reconciled"] += sum(1 for f in findings if f.get("removed"))
        for sev, count in severity_counts(findings).items():
            totals["severity"][sev] += count
        for kind, count in kind_counts(findings).items():
            totals["kinds"][kind] = totals["kinds"].get(kind, 0) + count
        for finding in findings:
            if finding["key"] in new:
                totals["new_by_kind"][finding.get("kind")] = totals["new_by_kind"].get(finding.get("kind"), 0) + 1
        for finding in part.get("resolved") or ():
            kind = finding.get("kind")
            totals["resolved_by_kind"][kind] = totals["resolved_by_kind"].get(kind, 0) + 1
        for entry in part.get("history") or ():
            if not isinstance(entry, dict) or not entry.get("run_id"):
                continue
            run = runs.setdefault(entry["run_id"], {"run_id": entry["run_id"], "generated_at": _text(entry.get("generated_at")),
                                                    "severity": dict((s, 0) for s in SEVERITIES), "total": 0, "pairs": 0})
            run["generated_at"] = min(run["generated_at"], _text(entry.get("generated_at"))) or run["generated_at"]
            run["pairs"] += 1
            for sev in SEVERITIES:
                value = (entry.get("severity") or {}).get(sev, 0)
                run["severity"][sev] += value if isinstance(value, int) else 0
            run["total"] += entry.get("total", 0) if isinstance(entry.get("total"), int) else 0
    trend = sorted(runs.values(), key=lambda r: (r["generated_at"], r["run_id"]))[-max(1, int(history_length)):]
    baselines = sorted(set(_text((p.get("baseline") or {}).get("generated_at")) for p in current) - set([""]))
    return {"generated_at": generated_at, "parts": current, "stale_parts": stale, "failed_parts": failed, "totals": totals,
            "trend": trend, "previous_runs": baselines}


def summary(view):
    """The small summary for AWX's set_stats and the module's result (no resource names)."""
    totals = view["totals"]
    return {
        "generated_at": view["generated_at"],
        "accounts": totals["accounts"],
        "regions": totals["regions"],
        "findings": totals["findings"],
        "by_severity": dict(totals["severity"]),
        "unmanaged_instances": totals["kinds"].get("unmanaged_instance", 0),
        "stale_nodes": totals["kinds"].get("stale_node", 0),
        "security_group_findings": totals["kinds"].get("security_group", 0),
        "quarantined": totals["quarantined"],
        "leftovers": totals["kinds"].get("leftover", 0),
        "reconciled": totals.get("reconciled", 0),
        "new": totals["new"],
        "resolved": totals["resolved"],
        "stale_parts": len(view["stale_parts"]),
        "failed_parts": len(view.get("failed_parts") or ()),
        "failed": ["%s/%s" % (item["account_id"], item["region"]) for item in view.get("failed_parts") or ()],
    }
