"""nessus_scan against the lab's Nessus simulator over TLS (ca_path = the lab CA).

Every behaviour is switched per scan target (POST /_sim/config with X-Sim-Token), and every test
scans targets of its own, so tests may run in parallel against one simulator.  A pass, a fail,
and every failure switch; each failure must end not passed, with a message that says why.
"""
import json
import os
import ssl
import time
import urllib.error
import urllib.request
import uuid

import pytest

SCAN = "Scan"


def sim_call(lab, path, body=None):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("the lab runs no Nessus simulator (lab/services/nessus.py)")
    req = urllib.request.Request(lab["LAB_NESSUS_URL"] + path, method="POST" if body is not None else "GET",
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-Sim-Token": lab["LAB_NESSUS_ADMIN_TOKEN"],
                                          "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=lab["LAB_NESSUS_CA"])
    with urllib.request.urlopen(req, timeout=30, context=context) as resp:
        return json.loads(resp.read())


@pytest.fixture
def sim(lab):
    class Sim:
        def target(self, **behaviour):
            """A fresh target name with this behaviour (see lab/README-nessus.md for the switches)."""
            name = "t-%s.lab" % uuid.uuid4().hex[:10]
            sim_call(lab, "/_sim/config", {"targets": {name: behaviour}})
            self.names.append(name)
            return name

        def config(self, body):
            return sim_call(lab, "/_sim/config", body)

        def state(self):
            return sim_call(lab, "/_sim/state")

        def scans_of(self, target):
            return [s for s in self.state()["scans"].values() if target in s["targets"]]

    helper = Sim()
    helper.names = []
    sim_call(lab, "/_sim/state")
    yield helper
    sim_call(lab, "/_sim/config", {"targets": {name: None for name in helper.names}})


CONNECTION = {
    "url": "{{ lab_nessus_url }}",
    "ca_path": "{{ lab_nessus_ca }}",
    "access_key": "{{ lab_nessus_access_key }}",
    "secret_key": "{{ lab_nessus_secret_key }}",
}
SESSION = {
    "url": "{{ lab_nessus_url }}",
    "ca_path": "{{ lab_nessus_ca }}",
    "username": "{{ lab_nessus_username }}",
    "password": "{{ lab_nessus_password }}",
}


def scan(playbook, tmp_path, args, auth=None, check=False):
    """Run nessus_scan once (ignore_errors) and return its result dict."""
    module_args = dict(auth if auth is not None else CONNECTION)
    module_args.setdefault("poll_interval", 0.3)
    module_args.setdefault("wait_timeout", 60)
    module_args.update(args)
    play = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
    play.write_text(
        "- name: Nessus scan\n"
        "  hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: false\n"
        "  tasks:\n"
        "    - name: %s\n"
        "      cloudefigo.core.nessus_scan: %s\n"
        "      register: scan\n"
        "      ignore_errors: true\n" % (SCAN, json.dumps(module_args))
    )
    result = playbook(str(play), check=check)
    assert result.data is not None, result.stdout[-3000:] + result.stderr[-3000:]
    results = result.task_results(SCAN)
    assert len(results) == 1, result.stdout[-3000:]
    return results[0]


def assert_not_passed(res, *words):
    assert res.get("failed") is True, res
    assert res["passed"] is False, res
    for word in words:
        assert word.lower() in res["msg"].lower(), res["msg"]


def test_clean_target_passes(lab, sim, playbook, tmp_path):
    target = sim.target()
    report = tmp_path / "kept" / "report.nessus"
    res = scan(playbook, tmp_path, {"targets": [target], "report_path": str(report), "fail_on": "low"})
    assert res["passed"] is True and not res.get("failed"), res
    assert res["changed"] is True
    assert res["scan_status"] == "completed" and res["scan_id"] and res["scan_uuid"] and res["history_id"]
    assert res["counts"]["info"] == 7 and res["counts"]["total"] == 7
    assert res["hosts"] == {"preprod.boardvantage.net": {"info": 7, "low": 0, "medium": 0, "high": 0, "critical": 0,
                                                         "total": 7}}
    assert res["nessus_type"] == "Nessus Manager"
    assert report.exists()
    assert report.stat().st_size == os.path.getsize(os.path.join(lab["LAB_NESSUS_SAMPLES"], "dojo_nessus_many_vuln.xml"))
    runs = sim.scans_of(target)
    assert len(runs) == 1 and runs[0]["runs"][0]["uuid"] == res["scan_uuid"]


def test_vulnerable_target_does_not_pass(sim, playbook, tmp_path):
    target = sim.target(report="pytenable_example.nessus")
    res = scan(playbook, tmp_path, {"targets": [target], "fail_on": "medium", "delete_after": True})
    assert res["passed"] is False and not res.get("failed"), res
    assert res["blocking_count"] == 93 and res["counts"]["high"] == 77
    assert res["blocking_findings"][0]["host"] == "adam"
    assert res["scan_deleted"] is True and sim.scans_of(target) == []
    failing = scan(playbook, tmp_path, {"targets": [target], "fail_on": "critical", "fail_when_blocked": True,
                                        "policy": "Hardened Linux", "folder": "ansible-tests"})
    assert_not_passed(failing, "critical")
    assert failing["blocking_count"] == 7


def test_accepted_plugins_make_it_pass(sim, playbook, tmp_path):
    target = sim.target(report="dojo_nessus_with_cvssv3.nessus")
    first = scan(playbook, tmp_path, {"targets": [target], "fail_on": "critical"})
    ids = [f["plugin_id"] for f in first["blocking_findings"]]
    res = scan(playbook, tmp_path, {"targets": [target], "fail_on": "critical",
                                    "accepted_plugins": {target: ids}})
    assert res["passed"] is True and res["accepted_count"] == 2
    assert res["severity_basis"] == "cvss_v2"


def test_accepted_plugins_match_the_target_not_the_name_the_host_reports(sim, playbook, tmp_path):
    """The replayed report's host calls itself testphp.vulnweb.com (ReportHost name, host-fqdn):
    an acceptance for that name must not apply to the instance scanned at another target."""
    target = sim.target(report="dojo_nessus_with_cvssv3.nessus")
    first = scan(playbook, tmp_path, {"targets": [target], "fail_on": "critical"})
    ids = [f["plugin_id"] for f in first["blocking_findings"]]
    claimed = scan(playbook, tmp_path, {"targets": [target], "fail_on": "critical",
                                        "accepted_plugins": {"testphp.vulnweb.com": ids}})
    assert claimed["passed"] is False and claimed["accepted_count"] == 0 and claimed["blocking_count"] == 2
    # scan_id mode reads the scan's targets from the server: the same rule
    by_id = scan(playbook, tmp_path, {"scan_id": first["scan_id"], "fail_on": "critical",
                                      "accepted_plugins": {target: ids}})
    assert by_id["passed"] is True and by_id["accepted_count"] == 2
    by_id_claimed = scan(playbook, tmp_path, {"scan_id": first["scan_id"], "fail_on": "critical",
                                              "accepted_plugins": {"testphp.vulnweb.com": ids}})
    assert by_id_claimed["passed"] is False and by_id_claimed["accepted_count"] == 0


def test_412_scan_api_unavailable(sim, playbook, tmp_path):
    target = sim.target(scan_api=False)
    res = scan(playbook, tmp_path, {"targets": [target]})
    assert_not_passed(res, "412", "API is not available", "scan_id")
    assert sim.scans_of(target) == []


def test_401_mid_scan_relogin_then_success(sim, playbook, tmp_path):
    target = sim.target(unauthorized_after_polls=2)
    before = sim.state()["counters"]
    res = scan(playbook, tmp_path, {"targets": [target]}, auth=SESSION)
    assert res["passed"] is True and not res.get("failed"), res
    after = sim.state()["counters"]
    assert after["responses_401"] > before["responses_401"]
    assert after["logins"] - before["logins"] >= 2  # the first login and the one after the expiry


def test_401_mid_scan_relogin_refused(sim, playbook, tmp_path):
    user = "u%s" % uuid.uuid4().hex[:8]
    password = uuid.uuid4().hex
    sim.config({"users": {user: password}})
    target = sim.target(unauthorized_after_polls=2, deny_relogin=True)
    auth = dict(SESSION, username=user, password=password)
    res = scan(playbook, tmp_path, {"targets": [target]}, auth=auth)
    assert_not_passed(res, "401", "Invalid Credentials")
    assert res["scan_id"]  # the scan it created is named, to clean it up


def test_401_with_api_keys_is_a_clear_failure(sim, playbook, tmp_path):
    target = sim.target(unauthorized_after_polls=1)
    res = scan(playbook, tmp_path, {"targets": [target]})
    assert_not_passed(res, "401", "access_key")


def test_409_export_while_running_then_ready(sim, playbook, tmp_path):
    target = sim.target(export_conflict=2)
    res = scan(playbook, tmp_path, {"targets": [target]})
    assert res["passed"] is True, res


def test_409_export_never_allowed(sim, playbook, tmp_path):
    target = sim.target(export_conflict=-1)
    res = scan(playbook, tmp_path, {"targets": [target], "export_timeout": 3})
    assert_not_passed(res, "409", "still running")
    assert res["timed_out"] is True


@pytest.mark.parametrize("outcome", ["aborted", "canceled", "paused"])
def test_run_that_did_not_complete(sim, playbook, tmp_path, outcome):
    target = sim.target(outcome=outcome)
    res = scan(playbook, tmp_path, {"targets": [target]})
    assert_not_passed(res, "ended '%s'" % outcome, "only a completed run can pass")
    assert res["scan_status"] == outcome
    assert "blocking_findings" not in res


def test_scan_that_never_ends_times_out(sim, playbook, tmp_path):
    target = sim.target(outcome="never")
    res = scan(playbook, tmp_path, {"targets": [target], "wait_timeout": 3})
    assert_not_passed(res, "wait_timeout=3", "still running")
    assert res["timed_out"] is True and res["scan_status"] == "running"


def test_429_retry_after_then_success(sim, playbook, tmp_path):
    target = sim.target(rate_limit=2, retry_after=1)
    before = sim.state()["counters"]["responses_429"]
    res = scan(playbook, tmp_path, {"targets": [target]})
    assert res["passed"] is True, res
    assert sim.state()["counters"]["responses_429"] - before == 2


def test_429_that_never_stops(sim, playbook, tmp_path):
    target = sim.target(rate_limit=1000, retry_after=1)
    res = scan(playbook, tmp_path, {"targets": [target]})
    assert_not_passed(res, "429", "rate limited")


def test_malformed_report_from_the_scanner(sim, playbook, tmp_path):
    target = sim.target(report="rubynessus_malformed_example_v2.nessus")
    res = scan(playbook, tmp_path, {"targets": [target], "fail_on": "critical"})
    assert_not_passed(res, "not well-formed", "line 1488")


def test_xxe_report_from_the_scanner(sim, playbook, tmp_path):
    evil = tmp_path / "evil.nessus"
    evil.write_text('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/hostname">]>'
                    '<NessusClientData_v2><Report name="&e;"/></NessusClientData_v2>')
    target = sim.target(report=str(evil))
    res = scan(playbook, tmp_path, {"targets": [target]})
    assert_not_passed(res, "DOCTYPE")


def test_validate_certs_without_ca_path_fails(sim, playbook, tmp_path):
    target = sim.target()
    auth = {k: v for k, v in CONNECTION.items() if k != "ca_path"}
    res = scan(playbook, tmp_path, {"targets": [target]}, auth=auth)
    assert_not_passed(res, "certificate", "ca_path")
    assert sim.scans_of(target) == []


def test_check_mode_creates_nothing(sim, playbook, tmp_path):
    target = sim.target()
    res = scan(playbook, tmp_path, {"targets": [target]}, check=True)
    assert res["changed"] is True and res["passed"] is False and not res.get("failed"), res
    assert sim.scans_of(target) == []


def test_launched_then_scan_id_then_absent(sim, playbook, tmp_path):
    target = sim.target(report="rubynessus_example_v3.nessus")
    launched = scan(playbook, tmp_path, {"state": "launched", "targets": [target]})
    assert launched["changed"] is True and launched["scan_uuid"] and not launched.get("failed"), launched
    scan_id = launched["scan_id"]
    res = scan(playbook, tmp_path, {"scan_id": scan_id, "scan_uuid": launched["scan_uuid"], "fail_on": "critical"})
    assert res["changed"] is False and res["passed"] is False and res["blocking_count"] == 8, res
    latest = scan(playbook, tmp_path, {"scan_id": scan_id, "fail_on": "critical", "accepted_plugins": {
        "*": [f["plugin_id"] for f in res["blocking_findings"]]}})
    assert latest["passed"] is True and latest["scan_uuid"] == launched["scan_uuid"]
    check = scan(playbook, tmp_path, {"state": "absent", "scan_id": scan_id}, check=True)
    assert check["changed"] is True and len(sim.scans_of(target)) == 1
    gone = scan(playbook, tmp_path, {"state": "absent", "scan_id": scan_id})
    assert gone["changed"] is True and sim.scans_of(target) == []
    again = scan(playbook, tmp_path, {"state": "absent", "scan_id": scan_id})
    assert again["changed"] is False and not again.get("failed")


def api_call(lab, method, path, body=None):
    """The simulator's Nessus API with the lab's API keys (as a client sees it)."""
    req = urllib.request.Request(lab["LAB_NESSUS_URL"] + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"X-ApiKeys": "accessKey=%s; secretKey=%s" % (
                                     lab["LAB_NESSUS_ACCESS_KEY"], lab["LAB_NESSUS_SECRET_KEY"]),
                                     "Content-Type": "application/json"})
    context = ssl.create_default_context(cafile=lab["LAB_NESSUS_CA"])
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def test_sim_contract_progress_as_nessus_gives_it(lab, sim):
    """GET /scans/{id}[?history_id=] as the Nessus API documents it: the run's hosts, none while it is
    pending, then per host scanprogresscurrent / scanprogresstotal rising to 100 at completed; an
    older run's hosts by its history_id."""
    target = sim.target(scan_seconds=1.5)
    status, templates = api_call(lab, "GET", "/editor/scan/templates")
    uuid_basic = [t["uuid"] for t in templates["templates"] if t["name"] == "basic"][0]
    status, created = api_call(lab, "POST", "/scans", {"uuid": uuid_basic, "settings": {
        "name": "contract " + target, "text_targets": target, "enabled": False}})
    scan_id = created["scan"]["id"]
    runs = []
    for attempt in range(2):
        status, launched = api_call(lab, "POST", "/scans/%s/launch" % scan_id)
        assert status == 200 and launched["scan_uuid"]
        seen = []
        while True:
            status, details = api_call(lab, "GET", "/scans/%s" % scan_id)
            assert status == 200
            run = [r for r in details["history"] if r["uuid"] == launched["scan_uuid"]][0]
            hosts = details["hosts"]
            if run["status"] == "pending":
                assert hosts == [], details
            else:
                assert [h["hostname"] for h in hosts] == [target]
                assert 0 <= hosts[0]["scanprogresscurrent"] <= hosts[0]["scanprogresstotal"] == 100
            seen.append((run["status"], hosts[0]["scanprogresscurrent"] if hosts else None))
            if run["status"] == "completed":
                break
            time.sleep(0.1)
        statuses = [entry[0] for entry in seen]
        assert statuses[0] == "pending" and "running" in statuses and statuses[-1] == "completed", seen
        progress = [p for s, p in seen if s == "running"]
        assert progress == sorted(progress) and progress[-1] < 100 and seen[-1][1] == 100, seen
        runs.append(run)
    # the first run, read by its history_id, is completed at 100; an unknown history_id is a 404
    status, first = api_call(lab, "GET", "/scans/%s?history_id=%s" % (scan_id, runs[0]["history_id"]))
    assert status == 200 and first["info"]["status"] == "completed" and first["hosts"][0]["scanprogresscurrent"] == 100
    status = api_call(lab, "GET", "/scans/%s?history_id=999999" % scan_id)[0]
    assert status == 404
    api_call(lab, "DELETE", "/scans/%s" % scan_id)


def test_launched_then_polls_show_status_and_progress(sim, playbook, tmp_path):
    """state=launched returns the run's status and progress; with scan_id it reads them again,
    launching and waiting for nothing (one scan, one run, however many polls)."""
    # long enough for a poll or two before the end even on a busy machine (a playbook run takes seconds)
    target = sim.target(scan_seconds=12)
    launched = scan(playbook, tmp_path, {"state": "launched", "targets": [target]})
    assert launched["changed"] is True and launched["scan_status"] in ("pending", "running"), launched
    assert "progress" in launched
    polls = []
    started = time.monotonic()
    for poll in range(40):
        # each poll watches the run for up to 1 s (status requests every 0.3 s), then reports
        res = scan(playbook, tmp_path, {"state": "launched", "scan_id": launched["scan_id"],
                                        "scan_uuid": launched["scan_uuid"], "watch_timeout": 1})
        assert res["changed"] is False and not res.get("failed") and res["passed"] is False, res
        assert res["scan_uuid"] == launched["scan_uuid"]
        polls.append((res["scan_status"], res["progress"]))
        if res["scan_status"] == "completed":
            break
    assert polls[-1] == ("completed", 100), polls
    assert len(polls) >= 2 and time.monotonic() - started < 90, polls
    assert all(p is None for s, p in polls if s == "pending"), polls
    done = [entry[1] for entry in polls if entry[1] is not None]
    assert done == sorted(done), polls
    runs = sim.scans_of(target)
    assert len(runs) == 1 and len(runs[0]["runs"]) == 1
    # check mode reads too; a run that ended ends the watch at once
    before = time.monotonic()
    checked = scan(playbook, tmp_path, {"state": "launched", "scan_id": launched["scan_id"], "watch_timeout": 60},
                   check=True)
    assert time.monotonic() - before < 30
    assert checked["changed"] is False and checked["scan_status"] == "completed" and checked["progress"] == 100
    scan(playbook, tmp_path, {"state": "absent", "scan_id": launched["scan_id"]})


@pytest.mark.parametrize("outcome", ["completed", "aborted"])
def test_poll_that_evaluates_the_run_it_sees_end(sim, playbook, tmp_path, outcome):
    """evaluate=true: polls report progress without a verdict (ended=false, passed=false, not failed)
    until the poll that sees the run end, which exports and evaluates it (the findings of the
    report), or fails closed when it ended otherwise than completed. One scan, one run, one export."""
    behaviour = {"scan_seconds": 6, "report": "pytenable_example.nessus"}
    if outcome != "completed":
        behaviour["outcome"] = outcome
    target = sim.target(**behaviour)
    launched = scan(playbook, tmp_path, {"state": "launched", "targets": [target]})
    polls = []
    for _poll in range(40):
        res = scan(playbook, tmp_path, {"state": "launched", "scan_id": launched["scan_id"], "evaluate": True,
                                        "scan_uuid": launched["scan_uuid"], "watch_timeout": 1, "fail_on": "critical"})
        polls.append(res)
        if res.get("failed") or res["ended"]:
            break
    running, last = polls[:-1], polls[-1]
    assert running, "the first poll should see the run still going: %s" % polls
    assert all(p["ended"] is False and p["passed"] is False and not p.get("failed") and "blocking_count" not in p
               for p in running), running
    assert last.get("ended") is True and last["scan_status"] == outcome, last
    if outcome == "completed":
        # 7 critical findings in the report: not passed, not failed (fail_when_blocked is false)
        assert last["passed"] is False and not last.get("failed") and last["blocking_count"] == 7, last
    else:
        assert_not_passed(last, "ended '%s'" % outcome, "only a completed run can pass")
    runs = sim.scans_of(target)
    assert len(runs) == 1 and len(runs[0]["runs"]) == 1
    scan(playbook, tmp_path, {"state": "absent", "scan_id": launched["scan_id"]})


def test_launch_that_watches_and_evaluates_a_short_run(sim, playbook, tmp_path):
    """state=launched with targets, watch_timeout and evaluate=true: a run that ends within the watch
    is evaluated by the launch itself (one call: launch, progress, verdict)."""
    target = sim.target(scan_seconds=2, report="pytenable_example.nessus")
    res = scan(playbook, tmp_path, {"state": "launched", "targets": [target], "watch_timeout": 30,
                                    "evaluate": True, "fail_on": "critical"})
    assert res["changed"] is True and res["ended"] is True and res["scan_status"] == "completed", res
    assert res["passed"] is False and not res.get("failed") and res["blocking_count"] == 7, res
    runs = sim.scans_of(target)
    assert len(runs) == 1 and len(runs[0]["runs"]) == 1
    # a run that outlasts the watch: the launch reports progress, no verdict
    slow = sim.target(scan_seconds=30)
    res = scan(playbook, tmp_path, {"state": "launched", "targets": [slow], "watch_timeout": 1, "evaluate": True})
    assert res["changed"] is True and res["ended"] is False and res["passed"] is False and "counts" not in res, res
    # Nessus refuses to delete a running scan (409), and the simulator keeps answering after that
    deleted = scan(playbook, tmp_path, {"state": "absent", "scan_id": res["scan_id"]})
    assert deleted.get("failed") is True and "409" in deleted["msg"], deleted
    assert sim.state()["counters"]["responses_409"] >= 1
