"""nessus_report and nessus_scan main() driven through patch_module_args."""
import json
import os

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.cloudefigo.core.plugins.module_utils._nessus import client as client_mod
from ansible_collections.cloudefigo.core.plugins.modules import nessus_report, nessus_scan

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SAMPLES = os.environ.get("LAB_NESSUS_SAMPLES") or os.path.join(ROOT, "tests", "data", "nessus")


def run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    return json.loads(capsys.readouterr().out)


def sample(name):
    path = os.path.join(SAMPLES, name)
    if not os.path.exists(path):
        pytest.fail("samples not found at %s (tests/data/nessus is part of the repository)" % SAMPLES)
    return path


def test_report_passes(capsys):
    out = run(nessus_report, {"path": sample("dojo_nessus_many_vuln.xml")}, capsys)
    assert out["passed"] is True and not out.get("failed") and out["changed"] is False


def test_report_not_passed_is_not_failed_by_default(capsys):
    out = run(nessus_report, {"path": sample("dojo_nessus_with_cvssv3.nessus"), "fail_on": "high"}, capsys)
    assert out["passed"] is False and not out.get("failed")
    assert out["blocking_count"] == 12 and out["severity_basis"] == "cvss_v2"


def test_report_fail_when_blocked(capsys):
    out = run(nessus_report, {"path": sample("dojo_nessus_with_cvssv3.nessus"), "fail_on": "high",
                              "fail_when_blocked": True}, capsys)
    assert out["failed"] is True and out["passed"] is False and "not passed" in out["msg"]


def test_report_accepted_per_host(capsys):
    first = run(nessus_report, {"path": sample("dojo_nessus_with_cvssv3.nessus"), "fail_on": "critical"}, capsys)
    ids = [f["plugin_id"] for f in first["blocking_findings"]]
    out = run(nessus_report, {"path": sample("dojo_nessus_with_cvssv3.nessus"), "fail_on": "critical",
                              "accepted_plugins": {"44.228.249.3": ids}}, capsys)
    assert out["passed"] is True and out["accepted_count"] == 2
    # the host's DNS name (ReportHost name and host-fqdn) is not the scanned address
    named = run(nessus_report, {"path": sample("dojo_nessus_with_cvssv3.nessus"), "fail_on": "critical",
                                "accepted_plugins": {"testphp.vulnweb.com": ids}}, capsys)
    assert named["passed"] is False and named["accepted_count"] == 0 and named["blocking_count"] == 2


def test_report_malformed_fails(capsys):
    out = run(nessus_report, {"path": sample("rubynessus_malformed_example_v2.nessus"), "fail_on": "critical"}, capsys)
    assert out["failed"] is True and out["passed"] is False and "line 1488" in out["msg"]


def test_report_bad_accepted_plugins(capsys):
    out = run(nessus_report, {"path": sample("dojo_nessus_many_vuln.xml"), "accepted_plugins": ["CVE-2020-1"]}, capsys)
    assert out["failed"] is True and "accepted_plugins" in out["msg"]


def test_scan_needs_targets_or_scan_id(capsys):
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key"}, capsys)
    assert out["failed"] is True and "targets" in out["msg"] and out["passed"] is False


def test_scan_check_mode_creates_nothing(capsys, monkeypatch):
    calls = []

    def opener(url, method=None, **kwargs):
        calls.append((method, url))
        if method != "GET":
            raise AssertionError("check mode sent %s %s" % (method, url))
        body = {"nessus_type": "Nessus Manager", "license": {"features": {"scan_api": True}}}
        if url.endswith("/editor/scan/templates"):
            body = {"templates": [{"name": "basic", "uuid": "U1"}]}
        import io
        return io.BytesIO(json.dumps(body).encode())

    monkeypatch.setattr(client_mod, "open_url", opener)
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key", "targets": ["10.0.0.9"],
                            "_ansible_check_mode": True, "_ansible_diff": True}, capsys)
    assert out["changed"] is True and out["passed"] is False and not out.get("failed")
    assert "scan_id" not in out
    assert out["diff"]["after"]["targets"] == ["10.0.0.9"]
    assert [call[0] for call in calls] == ["GET", "GET"]


def test_scan_on_professional_fails_before_creating(capsys, monkeypatch):
    def opener(url, method=None, **kwargs):
        if method != "GET":
            raise AssertionError("sent %s %s" % (method, url))
        import io
        return io.BytesIO(json.dumps({"nessus_type": "Nessus Professional",
                                      "license": {"features": {"scan_api": False}}}).encode())

    monkeypatch.setattr(client_mod, "open_url", opener)
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key", "targets": ["h"],
                            "fail_on": "critical"}, capsys)
    assert out["failed"] is True and out["passed"] is False
    assert "scan_id" in out["msg"] and "Professional" in out["msg"]


def test_username_is_not_masked_in_messages(capsys, monkeypatch):
    """username is not a secret: with no_log it masked every occurrence of its value, here the
    scanner's host name in the URL of the error. The password stays masked."""
    import socket
    import urllib.error

    def opener(url, method=None, **kwargs):
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(client_mod, "open_url", opener)
    out = run(nessus_scan, {"url": "https://scanner.example:8834", "username": "scanner",
                            "password": "scanner-password-1", "targets": ["10.0.0.9"]}, capsys)
    assert out["failed"] is True and out["passed"] is False
    assert "https://scanner.example:8834" in out["msg"], out["msg"]
    assert "scanner-password-1" not in json.dumps(out)
    from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.common import nessus_argument_spec
    spec = nessus_argument_spec()
    assert not spec["username"].get("no_log") and spec["password"]["no_log"] is True


def _scan_opener(calls, details):
    import io

    def opener(url, method=None, **kwargs):
        calls.append((method, url))
        if method != "GET" or "/scans/42" not in url:
            raise AssertionError("a poll sent %s %s" % (method, url))
        return io.BytesIO(json.dumps(details).encode())
    return opener


@pytest.mark.parametrize("check_mode", [False, True])
def test_scan_poll_reads_status_and_progress_only(capsys, monkeypatch, check_mode):
    calls = []
    details = {"history": [{"history_id": 5, "uuid": "run-1", "status": "running", "creation_date": 1}],
               "hosts": [{"host_id": 1, "scanprogresscurrent": 45, "scanprogresstotal": 100}]}
    monkeypatch.setattr(client_mod, "open_url", _scan_opener(calls, details))
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key",
                            "state": "launched", "scan_id": 42, "scan_uuid": "run-1",
                            "_ansible_check_mode": check_mode}, capsys)
    assert not out.get("failed") and out["changed"] is False and out["passed"] is False
    assert out["scan_status"] == "running" and out["progress"] == 45 and out["history_id"] == 5
    assert out["scan_id"] == 42 and out["scan_uuid"] == "run-1"
    assert "running, 45% done" in out["msg"]
    assert [c[0] for c in calls] == ["GET"]


def test_scan_poll_before_the_run_is_listed(capsys, monkeypatch):
    calls = []
    monkeypatch.setattr(client_mod, "open_url", _scan_opener(calls, {"history": []}))
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key",
                            "state": "launched", "scan_id": 42, "scan_uuid": "run-1"}, capsys)
    assert not out.get("failed") and out["scan_status"] is None and out["progress"] is None
    assert out["scan_uuid"] == "run-1" and "not listed yet" in out["msg"]


def test_scan_launched_needs_targets_or_scan_id(capsys):
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key",
                            "state": "launched"}, capsys)
    assert out["failed"] is True and "targets" in out["msg"] and "scan_id" in out["msg"]


def test_scan_launch_returns_status_and_progress(capsys, monkeypatch):
    import io
    sent = []

    def opener(url, method=None, **kwargs):
        sent.append((method, url.split("n.test", 1)[1]))
        path = url.split("n.test", 1)[1]
        body = {}
        if path == "/server/properties":
            body = {"nessus_type": "Nessus Manager", "license": {"features": {"scan_api": True}}}
        elif path == "/editor/scan/templates":
            body = {"templates": [{"name": "basic", "uuid": "U1"}]}
        elif path == "/scans" and method == "POST":
            body = {"scan": {"id": 42}}
        elif path == "/scans/42/launch":
            body = {"scan_uuid": "run-1"}
        elif path == "/scans/42":
            body = {"history": [{"history_id": 5, "uuid": "run-1", "status": "pending"}], "hosts": []}
        return io.BytesIO(json.dumps(body).encode())

    monkeypatch.setattr(client_mod, "open_url", opener)
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key",
                            "state": "launched", "targets": ["10.0.0.9"]}, capsys)
    assert out["changed"] is True and out["scan_id"] == 42 and out["scan_uuid"] == "run-1"
    assert out["scan_status"] == "pending" and out["progress"] is None
    assert sent[-1] == ("GET", "/scans/42")


def test_scan_watch_timeout_must_not_be_negative(capsys):
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key",
                            "state": "launched", "scan_id": 42, "watch_timeout": -1}, capsys)
    assert out["failed"] is True and "watch_timeout" in out["msg"]


@pytest.mark.parametrize("args", [{"targets": ["10.0.0.9"]}, {"scan_id": 42}, {"state": "absent", "scan_id": 42}])
def test_scan_evaluate_only_on_a_poll(capsys, args):
    out = run(nessus_scan, dict({"url": "https://n.test", "access_key": "test-access-key",
                                 "secret_key": "test-secret-key", "evaluate": True}, **args), capsys)
    assert out["failed"] is True and out["passed"] is False and "evaluate=true" in out["msg"]


def test_scan_poll_with_evaluate_while_running_is_no_verdict(capsys, monkeypatch):
    calls = []
    details = {"history": [{"history_id": 5, "uuid": "run-1", "status": "running", "creation_date": 1}],
               "hosts": [{"host_id": 1, "scanprogresscurrent": 45, "scanprogresstotal": 100}]}
    monkeypatch.setattr(client_mod, "open_url", _scan_opener(calls, details))
    out = run(nessus_scan, {"url": "https://n.test", "access_key": "test-access-key", "secret_key": "test-secret-key",
                            "state": "launched", "scan_id": 42, "scan_uuid": "run-1", "evaluate": True}, capsys)
    assert not out.get("failed") and out["ended"] is False and out["passed"] is False
    assert "blocking_count" not in out and [c[0] for c in calls] == ["GET"]
