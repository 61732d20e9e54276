"""Parts per account and region: normalisation, comparison with the previous run, merge."""
from ansible_collections.cloudefigo.core.plugins.module_utils._report import parts

ACCOUNT = "123456789012"


def _unmanaged(*ids, region="us-east-1"):
    return {"unmanaged": [{"instance_id": i, "region": region, "state": "running", "tags": {"Name": i}} for i in ids],
            "stale": [], "counts": {region: {"instances": len(ids), "managed": 0}}}


def _sg(*rules, region="us-east-1"):
    return {"regions": [region],
            "findings": [{"region": region, "group_id": "sg-%d" % n, "group_name": "g", "severity": sev, "rule": rule,
                          "ports": "tcp/22", "cidr": "0.0.0.0/0", "reason": "why"} for n, (rule, sev) in enumerate(rules)]}


def _run(previous, run_id, unmanaged, sg, account=ACCOUNT, quarantined=()):
    built = parts.build_parts(account, unmanaged, sg, quarantined)
    return dict((pair, parts.finish_part(pair[0], pair[1], data, (previous or {}).get(pair), run_id, run_id))
                for pair, data in built.items())


def test_readable_titles_not_rule_ids():
    built = parts.build_parts(ACCOUNT, {}, _sg(("open_admin_port", "high"), ("egress_wide_open", "medium")))
    titles = [f["title"] for f in built[(ACCOUNT, "us-east-1")]["findings"]]
    assert titles == ["Administration or database port open to the internet", "Egress wide open"]
    assert parts.readable_title("unmanaged_instance") == "EC2 instance not managed by Chef"


def test_every_audited_region_gets_a_part_and_items_keep_their_own_account():
    sg = _sg(("open_all_ports", "critical"))
    sg["findings"].append({"region": "eu-west-1", "account_id": "210987654321", "group_id": "sg-x", "rule": "unused_group",
                           "severity": "low"})
    built = parts.build_parts(ACCOUNT, {"counts": {"ap-south-1": {"instances": 0}}}, sg)
    assert set(built) == {(ACCOUNT, "us-east-1"), (ACCOUNT, "ap-south-1"), ("210987654321", "eu-west-1")}
    assert built[(ACCOUNT, "ap-south-1")]["findings"] == []
    assert built[("210987654321", "eu-west-1")]["findings"][0]["key"].startswith("210987654321/eu-west-1/")


def test_severity_of_kinds_and_unknown_severity():
    unmanaged = _unmanaged("i-1")
    unmanaged["stale"] = [{"instance_id": "i-2", "region": "us-east-1", "node_name": "n", "ohai_age": None}]
    sg = _sg(("x", "weird"))
    found = parts.build_parts(ACCOUNT, unmanaged, sg, ["i-1"])[(ACCOUNT, "us-east-1")]["findings"]
    by_kind = dict((f["kind"], f) for f in found)
    assert by_kind["unmanaged_instance"]["severity"] == "high" and by_kind["unmanaged_instance"]["quarantined"]
    assert by_kind["stale_node"]["severity"] == "medium" and by_kind["stale_node"]["detail"] == "never converged"
    assert by_kind["security_group"]["severity"] == "info"
    # most severe first
    assert [f["severity"] for f in found] == ["high", "medium", "info"]


def test_new_and_resolved_against_the_previous_run():
    first = _run(None, "r1", _unmanaged("i-1", "i-2"), _sg(("open_admin_port", "high")))
    part = first[(ACCOUNT, "us-east-1")]
    assert part["baseline"] is None and len(part["new"]) == 3 and part["resolved"] == []
    second = _run(first, "r2", _unmanaged("i-2", "i-3"), _sg())
    part = second[(ACCOUNT, "us-east-1")]
    assert part["baseline"] == {"run_id": "r1", "generated_at": "r1"}
    assert part["new"] == ["%s/us-east-1/unmanaged_instance/i-3" % ACCOUNT]
    assert sorted(f["resource_id"] for f in part["resolved"]) == ["i-1", "sg-0"]
    assert [h["run_id"] for h in part["history"]] == ["r1", "r2"]
    assert [h["total"] for h in part["history"]] == [3, 2]


def test_a_retried_run_compares_with_the_same_previous_run():
    first = _run(None, "r1", _unmanaged("i-1"), _sg())
    second = _run(first, "r2", _unmanaged("i-2"), _sg())
    retried = _run(second, "r2", _unmanaged("i-2"), _sg())
    for key in ("new", "resolved", "baseline"):
        assert retried[(ACCOUNT, "us-east-1")][key] == second[(ACCOUNT, "us-east-1")][key]
    assert [h["run_id"] for h in retried[(ACCOUNT, "us-east-1")]["history"]] == ["r1", "r2"]


def test_history_is_bounded():
    previous = None
    for n in range(5):
        built = parts.build_parts(ACCOUNT, _unmanaged("i-%d" % n), {})
        previous = {pair: parts.finish_part(pair[0], pair[1], data, (previous or {}).get(pair), "r%d" % n, "t%d" % n, 3)
                    for pair, data in built.items()}
    assert [h["run_id"] for h in previous[(ACCOUNT, "us-east-1")]["history"]] == ["r2", "r3", "r4"]


def test_a_forged_or_foreign_previous_document_is_not_a_baseline():
    for forged in ({"format": 1, "account_id": ACCOUNT, "region": "us-east-1", "findings": "all fixed"},
                   {"format": 2, "account_id": ACCOUNT, "region": "us-east-1", "findings": []},
                   ["not", "a", "dict"], None):
        assert not parts.is_part(forged)
        assert parts.baseline(forged, "r1") is None


def test_merge_sums_pairs_and_trend_groups_runs_across_slices():
    # two slices of the same two runs, each writing its own account
    slice_a = _run(None, "r1", _unmanaged("i-1"), _sg(("open_all_ports", "critical")))
    slice_b = _run(None, "r1", _unmanaged("i-9", region="eu-west-1"), {}, account="210987654321")
    slice_a = _run(slice_a, "r2", _unmanaged(), _sg(("open_all_ports", "critical")))
    slice_b = _run(slice_b, "r2", _unmanaged("i-9", "i-8", region="eu-west-1"), {}, account="210987654321")
    view = parts.merge(list(slice_a.values()) + list(slice_b.values()), "now")
    totals = view["totals"]
    assert totals["accounts"] == 2 and totals["regions"] == 2
    assert totals["findings"] == 3 and totals["severity"]["critical"] == 1 and totals["severity"]["high"] == 2
    assert totals["new_by_kind"]["unmanaged_instance"] == 1 and totals["resolved_by_kind"]["unmanaged_instance"] == 1
    assert [(r["run_id"], r["total"], r["pairs"]) for r in view["trend"]] == [("r1", 3, 2), ("r2", 3, 2)]
    summary = parts.summary(view)
    assert summary["unmanaged_instances"] == 2 and summary["security_group_findings"] == 1


def test_merge_leaves_out_parts_nobody_refreshed():
    old = _run(None, "2026-01-01T00:00:00Z", _unmanaged("i-1"), {})
    new = _run(None, "2026-11-29T00:00:00Z", _unmanaged("i-2", region="eu-west-1"), {})
    view = parts.merge(list(old.values()) + list(new.values()), "2026-11-29T00:00:00Z", stale_before="2026-11-27T00:00:00Z")
    assert [p["region"] for p in view["parts"]] == ["eu-west-1"]
    assert view["stale_parts"] == [{"account_id": ACCOUNT, "region": "us-east-1", "generated_at": "2026-01-01T00:00:00Z"}]
    assert view["totals"]["findings"] == 1


def test_part_key_cannot_leave_the_state_directory():
    assert parts.part_key("../../etc", "us-east-1/../x") == "state/_.._etc/us-east-1_.._x.json"
    assert parts.part_key("..", "..") == "state/_/_.json"


def test_egress_prefix_list_and_chain_findings_get_their_own_keys():
    base = {"region": "r", "group_id": "sg-1", "rule": "open_all_ports", "ports": "all", "cidr": "0.0.0.0/0",
            "severity": "critical"}
    items = [dict(base, direction="ingress"),
             dict(base, direction="egress", rule="open_egress", severity="low"),
             dict(base, direction="ingress", prefix_list_id="pl-1"),
             dict(base, direction="ingress", rule="exposed_via_group", cidr=None, via_groups=["sg-a", "sg-b"],
                  instances=["i-1"], instance_count=3)]
    built = parts.build_parts("1", security_groups={"findings": items})
    keys = [f["key"] for f in built[("1", "r")]["findings"]]
    assert len(set(keys)) == 4
    # an ingress CIDR finding keeps the key 0.1.0 gave it: no false "new" after an upgrade
    assert "1/r/security_group/sg-1/open_all_ports/all/0.0.0.0/0" in keys
    chain = [f for f in built[("1", "r")]["findings"] if f["rule"] == "exposed_via_group"][0]
    assert chain["key"].endswith("/via/sg-a,sg-b") and chain["instances"] == ["i-1"] and chain["instance_count"] == 3
    assert chain["title"] == "Reachable from the internet through another security group"


def test_a_failed_audit_keeps_the_last_findings_and_is_listed():
    first = _run(None, "r1", _unmanaged("i-1"), _sg(("open_admin_port", "high")))
    ok = first[(ACCOUNT, "us-east-1")]
    failed = parts.failed_part(ACCOUNT, "us-east-1", ok, "r2", "r2", "AccessDenied: not authorized to assume role")
    # an audit that did not run resolves nothing and finds nothing new
    assert failed["findings"] == ok["findings"] and failed["new"] == [] and failed["resolved"] == []
    assert failed["findings_from"] == "r1" and failed["baseline"] == {"run_id": "r1", "generated_at": "r1"}
    assert [h["run_id"] for h in failed["history"]] == ["r1"]
    assert parts.is_part(failed)
    # failing again keeps dating the findings from the last success
    again = parts.failed_part(ACCOUNT, "us-east-1", failed, "r3", "r3", "AccessDenied")
    assert again["findings_from"] == "r1" and again["baseline"]["run_id"] == "r1"
    # the next run that succeeds compares with the last success, not with the failed run
    third = _run({(ACCOUNT, "us-east-1"): again}, "r4", _unmanaged("i-2"), _sg(("open_admin_port", "high")))[(ACCOUNT, "us-east-1")]
    assert third["baseline"]["run_id"] == "r1" and "error" not in third
    assert third["new"] == ["%s/us-east-1/unmanaged_instance/i-2" % ACCOUNT]
    assert [f["resource_id"] for f in third["resolved"]] == ["i-1"]
    # the merged view and the summary name the failed pair; a first run that fails has no findings
    never = parts.failed_part("222222222222", "eu-west-1", None, "r2", "r2", "AccessDenied")
    view = parts.merge([failed, never, ok], "r2")
    summary = parts.summary(view)
    assert summary["failed_parts"] == 2 and summary["failed"] == ["%s/us-east-1" % ACCOUNT, "222222222222/eu-west-1"]
    assert view["failed_parts"][0]["error"] == "AccessDenied: not authorized to assume role"
    # the failed pair's carried findings still count (fail closed), the never-audited pair adds none
    assert summary["findings"] == 2 * len(ok["findings"])
    assert never["findings"] == [] and never["findings_from"] is None
