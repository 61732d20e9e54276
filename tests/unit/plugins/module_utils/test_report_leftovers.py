"""Unit tests for the leftovers in the audit report (module_utils/_report parts and document)."""
from ansible_collections.cloudefigo.core.plugins.module_utils._report import document, parts

IID = "i-0123456789abcdef0"


def leftovers():
    resource = {"kind": "key", "name": "volumes/web-01.key", "present": True, "ours": True, "remove": True, "reason": "marked"}
    lookalike = {"kind": "role", "name": "cloudefigo-web-01", "present": True, "ours": False, "remove": False,
                 "reason": "role cloudefigo-web-01 is marked for instance i-0fedcba9876543210"}
    absent = {"kind": "volume", "name": "vol-0123456789abcdef0", "present": False, "ours": False, "remove": False, "reason": "absent"}
    return {
        "leftovers": [{"instance_id": IID, "launch_id": "l1", "region": "us-east-1", "account": "123456789012", "status": "gone",
                       "gone_since": "2026-11-29T00:00:00Z", "record": "cloudefigo-records/us-east-1/" + IID,
                       "resources": [resource, lookalike, absent]}],
        "unknown": [{"instance_id": "i-0fedcba9876543210", "region": "eu-west-1", "account": "123456789012", "status": "unknown",
                     "record": "cloudefigo-records/eu-west-1/i-0fedcba9876543210", "reason": "region eu-west-1 is not audited"},
                    {"instance_id": None, "region": None, "status": "unknown", "record": "cloudefigo-records/junk",
                     "reason": "not a launch record"}],
    }


def test_leftovers_become_findings_per_region():
    built = parts.build_parts("123456789012", leftovers=leftovers(),
                              reconciled=[{"instance_id": IID, "removed": {"key_object": "volumes/web-01.key"}, "error": ""}])
    east = built[("123456789012", "us-east-1")]["findings"]
    assert sorted((f["rule"], f["resource_id"], f["removed"]) for f in east) == [
        ("leftover", "volumes/web-01.key", True), ("leftover_not_ours", "cloudefigo-web-01", False)]
    assert [f["rule"] for f in built[("123456789012", "eu-west-1")]["findings"]] == ["leftover_unknown"]
    # an unreadable record names no region: still reported
    assert [f["resource_id"] for f in built[("123456789012", "global")]["findings"]] == ["cloudefigo-records/junk"]


def test_report_shows_leftovers_and_what_was_removed():
    built = parts.build_parts("123456789012", leftovers=leftovers(),
                              reconciled=[{"instance_id": IID, "removed": {"key_object": "volumes/web-01.key"}, "error": ""}])
    finished = [parts.finish_part(a, r, data, None, "run-1", "2026-11-30T00:00:00Z") for (a, r), data in built.items()]
    view = parts.merge(finished, "2026-11-30T00:00:00Z")
    assert view["totals"]["kinds"]["leftover"] == 4 and view["totals"]["reconciled"] == 1
    assert parts.summary(view)["leftovers"] == 4 and parts.summary(view)["reconciled"] == 1
    html = document.render(view)
    assert '<table class="leftovers">' in html and "volumes/web-01.key" in html and "region eu-west-1 is not audited" in html
    assert "removed" in html
