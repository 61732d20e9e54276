"""Nessus client with a stubbed HTTP layer: retries, re-login, 412, waits, exports."""
import email.message
import io
import json
import socket
import urllib.error

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.client import (
    NessusApiUnavailable,
    NessusClient,
    NessusError,
    NessusTimeout,
    retry_after_seconds,
)

URL = "https://nessus.test:8834"


class Response(io.BytesIO):
    pass


def http_error(url, status, body=None, headers=None):
    msg = email.message.Message()
    for key, value in (headers or {}).items():
        msg[key] = value
    data = json.dumps(body).encode() if body is not None else b""
    return urllib.error.HTTPError(url, status, "status %d" % status, msg, io.BytesIO(data))


class Stub:
    """A scripted open_url: each route answers the next item of its list (the last one repeats)."""

    def __init__(self, routes):
        self.routes = {key: list(value) for key, value in routes.items()}
        self.calls = []

    def __call__(self, url, data=None, headers=None, method=None, **kwargs):
        path = url[len(URL):].split("?", 1)[0]
        self.calls.append({"method": method, "path": path, "url": url, "headers": dict(headers or {}),
                           "body": json.loads(data) if data else None, "kwargs": kwargs})
        answers = self.routes.get((method, path))
        if not answers:
            raise AssertionError("unexpected %s %s" % (method, path))
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, int):
            answer = (answer, {"error": "status %d" % answer}, {})
        if isinstance(answer, tuple):
            status, body, hdrs = answer
            if status >= 400:
                raise http_error(url, status, body, hdrs)
            return Response(json.dumps(body).encode())
        return Response(json.dumps(answer).encode())

    def paths(self):
        return [(c["method"], c["path"]) for c in self.calls]


class Clock:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


def keys_client(stub, clock=None, **kwargs):
    clock = clock or Clock()
    return NessusClient(URL, access_key="AK", secret_key="SK", opener=stub, sleep=clock.sleep, clock=clock, **kwargs)


def session_client(stub, clock=None, **kwargs):
    clock = clock or Clock()
    return NessusClient(URL, username="u", password="p", opener=stub, sleep=clock.sleep, clock=clock, **kwargs)


def test_needs_credentials():
    with pytest.raises(NessusError, match="access_key"):
        NessusClient(URL)


def test_api_keys_header_and_tls_options():
    stub = Stub({("GET", "/server/properties"): [{"nessus_type": "Nessus Manager"}]})
    client = keys_client(stub, ca_path="/ca.pem", validate_certs=True, timeout=12)
    assert client.server_properties()["nessus_type"] == "Nessus Manager"
    call = stub.calls[0]
    assert call["headers"]["X-ApiKeys"] == "accessKey=AK; secretKey=SK"
    assert "X-Cookie" not in call["headers"]
    assert call["kwargs"]["ca_path"] == "/ca.pem" and call["kwargs"]["validate_certs"] is True
    assert call["kwargs"]["timeout"] == 12


def test_429_honours_retry_after_seconds():
    clock = Clock()
    stub = Stub({("GET", "/scans/5"): [(429, {"error": "slow down"}, {"Retry-After": "7"}), {"info": {}}]})
    client = keys_client(stub, clock)
    assert client.scan(5) == {"info": {}}
    assert clock.sleeps == [7.0]
    assert len(stub.calls) == 2 and client.retries == 1


def test_429_retry_after_http_date():
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert retry_after_seconds("garbage") is None
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("3") == 3.0


def test_retry_after_is_capped():
    clock = Clock()
    stub = Stub({("GET", "/scans/5"): [(429, {}, {"Retry-After": "100000"}), {"ok": 1}]})
    keys_client(stub, clock, max_retry_wait=60).scan(5)
    assert clock.sleeps == [60]


def test_429_gives_up_after_max_retries():
    clock = Clock()
    stub = Stub({("GET", "/scans/5"): [(429, {}, {"Retry-After": "1"})]})
    with pytest.raises(NessusError, match="429") as err:
        keys_client(stub, clock, max_retries=3).scan(5)
    assert err.value.status == 429
    assert len(stub.calls) == 4 and clock.sleeps == [1.0, 1.0, 1.0]


def test_5xx_is_retried_with_backoff():
    clock = Clock()
    stub = Stub({("GET", "/scans/5"): [503, 502, {"ok": 1}]})
    assert keys_client(stub, clock).scan(5) == {"ok": 1}
    assert len(clock.sleeps) == 2 and all(0 < s <= 31 for s in clock.sleeps)


def test_400_is_not_retried():
    stub = Stub({("POST", "/scans"): [(400, {"error": "Invalid 'uuid' field"}, {})]})
    with pytest.raises(NessusError, match="Invalid 'uuid' field"):
        keys_client(stub).create_scan("t", "n", ["h"])
    assert len(stub.calls) == 1


def test_session_login_then_relogin_on_401():
    stub = Stub({
        ("POST", "/session"): [{"token": "aaa"}, {"token": "bbb"}],
        ("GET", "/scans/5"): [{"n": 1}, (401, {"error": "Invalid Credentials"}, {}), {"n": 2}],
    })
    client = session_client(stub)
    assert client.scan(5) == {"n": 1}
    assert client.scan(5) == {"n": 2}
    assert stub.paths() == [("POST", "/session"), ("GET", "/scans/5"), ("GET", "/scans/5"),
                            ("POST", "/session"), ("GET", "/scans/5")]
    assert stub.calls[1]["headers"]["X-Cookie"] == "token=aaa"
    assert stub.calls[4]["headers"]["X-Cookie"] == "token=bbb"
    assert stub.calls[0]["body"] == {"username": "u", "password": "p"}
    assert "X-Cookie" not in stub.calls[0]["headers"]
    assert client.relogins == 1


def test_session_relogin_refused_is_a_clear_error():
    stub = Stub({
        ("POST", "/session"): [{"token": "aaa"}, (401, {"error": "Invalid Credentials"}, {})],
        ("GET", "/scans/5"): [(401, {"error": "Invalid Credentials"}, {})],
    })
    with pytest.raises(NessusError, match="Invalid Credentials") as err:
        session_client(stub).scan(5)
    assert err.value.status == 401


def test_401_twice_after_relogin_is_a_clear_error():
    stub = Stub({
        ("POST", "/session"): [{"token": "aaa"}],
        ("GET", "/scans/5"): [(401, {"error": "Invalid Credentials"}, {})],
    })
    with pytest.raises(NessusError, match="username / password"):
        session_client(stub).scan(5)
    assert stub.paths().count(("POST", "/session")) == 2


def test_401_with_api_keys_is_not_retried():
    stub = Stub({("GET", "/scans/5"): [(401, {"error": "Invalid Credentials"}, {})]})
    with pytest.raises(NessusError, match="access_key / secret_key"):
        keys_client(stub).scan(5)
    assert len(stub.calls) == 1


def test_412_says_api_unavailable_and_points_to_scan_id():
    stub = Stub({("POST", "/scans"): [(412, {"error": "API is not available"}, {})]})
    with pytest.raises(NessusApiUnavailable) as err:
        keys_client(stub).create_scan("t", "n", ["h"])
    text = str(err.value)
    assert "API is not available" in text and "scan_id" in text and "Nessus Manager" in text
    assert len(stub.calls) == 1


@pytest.mark.parametrize("props", [
    {"nessus_type": "Nessus Professional", "license": {"features": {"scan_api": False}}},
    {"nessus_type": "Nessus Essentials"},
    {"nessus_type": "Nessus Expert"},
    {"nessus_type": "Something", "license": {"features": {"scan_api": False}}},
])
def test_check_scan_api_refuses_professional(props):
    stub = Stub({("GET", "/server/properties"): [props]})
    with pytest.raises(NessusApiUnavailable, match="scan_id"):
        keys_client(stub).check_scan_api()


def test_check_scan_api_accepts_manager():
    props = {"nessus_type": "Nessus Manager", "license": {"features": {"scan_api": True}}}
    stub = Stub({("GET", "/server/properties"): [props]})
    assert keys_client(stub).check_scan_api() == props


def test_template_and_policy_lookup():
    stub = Stub({
        ("GET", "/editor/scan/templates"): [{"templates": [{"name": "basic", "title": "Basic Network Scan", "uuid": "U1"},
                                                           {"name": "advanced", "title": "Advanced Scan", "uuid": "U2"}]}],
        ("GET", "/policies"): [{"policies": [{"id": 10, "name": "Hardened", "template_uuid": "U2"}]}],
    })
    client = keys_client(stub)
    assert client.template_uuid("basic") == "U1"
    assert client.template_uuid("Advanced Scan") == "U2"
    with pytest.raises(NessusError, match="available: advanced, basic"):
        client.template_uuid("nope")
    assert client.policy("Hardened")["id"] == 10
    with pytest.raises(NessusError, match="no policy named"):
        client.policy("Other")


def test_create_and_launch_payloads():
    stub = Stub({("POST", "/scans"): [{"scan": {"id": 42}}], ("POST", "/scans/42/launch"): [{"scan_uuid": "run-1"}]})
    client = keys_client(stub)
    assert client.create_scan("U1", "name", ["10.0.0.1", "10.0.0.2"], folder_id=3, policy_id=10) == 42
    settings = {"name": "name", "text_targets": "10.0.0.1,10.0.0.2", "enabled": False, "folder_id": 3, "policy_id": 10}
    assert stub.calls[0]["body"] == {"uuid": "U1", "settings": settings}
    assert client.launch(42) == "run-1"


def test_wait_for_run_matches_the_launch_uuid():
    old = {"history_id": 1, "uuid": "old", "status": "completed", "creation_date": 1}
    stub = Stub({("GET", "/scans/7"): [
        {"info": {"status": "completed"}, "history": [old]},
        {"history": [old, {"history_id": 2, "uuid": "new", "status": "pending", "creation_date": 2}]},
        {"history": [old, {"history_id": 2, "uuid": "new", "status": "running", "creation_date": 2}]},
        {"history": [old, {"history_id": 2, "uuid": "new", "status": "completed", "creation_date": 2}]},
    ]})
    clock = Clock()
    run = keys_client(stub, clock).wait_for_run(7, "new", timeout=100, poll=5)
    assert run["history_id"] == 2 and run["status"] == "completed"
    assert clock.sleeps == [5, 5, 5]


@pytest.mark.parametrize("status", ["aborted", "canceled", "paused"])
def test_wait_for_run_returns_on_other_ends(status):
    stub = Stub({("GET", "/scans/7"): [{"history": [{"history_id": 2, "uuid": "r", "status": status}]}]})
    assert keys_client(stub).wait_for_run(7, "r", timeout=10, poll=1)["status"] == status


def test_wait_for_run_times_out():
    stub = Stub({("GET", "/scans/7"): [{"history": [{"history_id": 2, "uuid": "r", "status": "running"}]}]})
    clock = Clock()
    with pytest.raises(NessusTimeout, match="still running after wait_timeout=30") as err:
        keys_client(stub, clock).wait_for_run(7, "r", timeout=30, poll=10)
    assert err.value.last_status == "running"
    assert clock.now == 30


def test_latest_run_without_uuid():
    details = {"history": [{"history_id": 1, "uuid": "a", "creation_date": 5},
                           {"history_id": 3, "uuid": "c", "creation_date": 9},
                           {"history_id": 2, "uuid": "b", "creation_date": 7}]}
    assert NessusClient.find_run(details)["uuid"] == "c"
    assert NessusClient.find_run({"history": []}) is None
    assert NessusClient.find_run(details, "zzz") is None


def test_export_retries_409_then_waits_for_ready(tmp_path):
    stub = Stub({
        ("POST", "/scans/7/export"): [(409, {"error": "Scan is still running"}, {}), {"file": 99, "token": "t"}],
        ("GET", "/scans/7/export/99/status"): [{"status": "loading"}, {"status": "ready"}],
    })
    clock = Clock()
    client = keys_client(stub, clock)
    assert client.export(7, history_id=2, timeout=60, poll=2) == 99
    assert stub.calls[0]["url"].endswith("/scans/7/export?history_id=2")
    assert stub.calls[0]["body"] == {"format": "nessus"}
    assert clock.sleeps == [2, 2]


def test_export_409_until_timeout_is_a_clear_error():
    stub = Stub({("POST", "/scans/7/export"): [(409, {"error": "Scan is still running"}, {})]})
    clock = Clock()
    with pytest.raises(NessusTimeout, match="409.*still running"):
        keys_client(stub, clock).export(7, timeout=10, poll=2)
    assert clock.now == 10


def test_download_streams_to_file(tmp_path):
    body = b"<NessusClientData_v2/>" * 1000

    def opener(url, **kwargs):
        return Response(body)

    client = NessusClient(URL, access_key="a", secret_key="b", opener=opener)
    dest = tmp_path / "r.nessus"
    assert client.download_export(7, 99, str(dest), ) == len(body)
    assert dest.read_bytes() == body


def test_delete_scan_missing_is_false():
    stub = Stub({("DELETE", "/scans/7"): [404], ("DELETE", "/scans/8"): [{}]})
    client = keys_client(stub)
    assert client.delete_scan(7) is False
    assert client.delete_scan(8) is True


@pytest.mark.parametrize("reason, problem", [
    (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
    (socket.gaierror(-2, "Name or service not known"), "the host name does not resolve"),
])
def test_refused_or_unknown_host_fails_at_once_naming_url(reason, problem):
    calls = []

    def opener(url, **kwargs):
        calls.append(url)
        raise urllib.error.URLError(reason)

    clock = Clock()
    client = NessusClient(URL, access_key="a", secret_key="b", opener=opener, sleep=clock.sleep, clock=clock)
    with pytest.raises(NessusError, match=r"cannot connect to Nessus at https://nessus.test:8834 \(%s\).*check url"
                       % problem):
        client.scan(1)
    assert len(calls) == 1 and clock.sleeps == []


def test_timeouts_are_retried():
    calls = []

    def opener(url, **kwargs):
        calls.append(url)
        raise urllib.error.URLError(socket.timeout("timed out"))

    clock = Clock()
    client = NessusClient(URL, access_key="a", secret_key="b", opener=opener, sleep=clock.sleep, clock=clock,
                          max_retries=2)
    with pytest.raises(NessusError, match="cannot connect to Nessus"):
        client.scan(1)
    assert len(calls) == 3 and len(clock.sleeps) == 2


def test_certificate_error_mentions_ca_path():
    import ssl

    def opener(url, **kwargs):
        raise urllib.error.URLError(ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"))

    client = NessusClient(URL, access_key="a", secret_key="b", opener=opener)
    with pytest.raises(NessusError, match="ca_path"):
        client.scan(1)


def test_progress_from_hosts_and_top_level():
    hosts = {"hosts": [{"scanprogresscurrent": 30, "scanprogresstotal": 100},
                       {"scanprogresscurrent": 60, "scanprogresstotal": 100}]}
    assert NessusClient.progress_of(hosts) == 45
    # a top-level progress (Tenable's API has one) wins; clamped to 0-100
    assert NessusClient.progress_of(dict(hosts, progress=80)) == 80
    assert NessusClient.progress_of({"progress": 140}) == 100
    # a pending run lists no host: Nessus says nothing, and nothing is made up
    assert NessusClient.progress_of({"hosts": []}) is None
    assert NessusClient.progress_of({"hosts": [{"scanprogresscurrent": 0, "scanprogresstotal": 0}]}) is None
    assert NessusClient.progress_of({"hosts": [{"scanprogresscurrent": "x", "scanprogresstotal": 100}]}) is None


def test_run_state_reads_once_without_waiting():
    latest = {"history_id": 2, "uuid": "new", "status": "running", "creation_date": 2}
    stub = Stub({("GET", "/scans/7"): [{"history": [latest], "hosts": [{"scanprogresscurrent": 25,
                                                                        "scanprogresstotal": 100}]}]})
    clock = Clock()
    run, progress = keys_client(stub, clock).run_state(7, "new")
    assert run["status"] == "running" and progress == 25
    assert stub.paths() == [("GET", "/scans/7")] and clock.sleeps == []


def test_run_state_of_an_older_run_reads_its_history():
    old = {"history_id": 1, "uuid": "old", "status": "completed", "creation_date": 1}
    new = {"history_id": 2, "uuid": "new", "status": "running", "creation_date": 2}
    stub = Stub({("GET", "/scans/7"): [
        {"history": [old, new], "hosts": [{"scanprogresscurrent": 10, "scanprogresstotal": 100}]},
        {"history": [old, new], "hosts": [{"scanprogresscurrent": 100, "scanprogresstotal": 100}]},
    ]})
    run, progress = keys_client(stub).run_state(7, "old")
    assert run["uuid"] == "old" and progress == 100
    assert stub.calls[1]["url"].endswith("/scans/7?history_id=1")


def test_run_state_not_listed_yet():
    stub = Stub({("GET", "/scans/7"): [{"history": []}]})
    assert keys_client(stub).run_state(7, "new") == (None, None)


def test_watch_run_returns_when_the_run_ends():
    running = {"history": [{"history_id": 2, "uuid": "r", "status": "running"}],
               "hosts": [{"scanprogresscurrent": 50, "scanprogresstotal": 100}]}
    done = {"history": [{"history_id": 2, "uuid": "r", "status": "completed"}],
            "hosts": [{"scanprogresscurrent": 100, "scanprogresstotal": 100}]}
    stub = Stub({("GET", "/scans/7"): [running, running, done]})
    clock = Clock()
    run, progress = keys_client(stub, clock).watch_run(7, "r", timeout=30, poll=2)
    assert run["status"] == "completed" and progress == 100 and clock.sleeps == [2, 2]


def test_watch_run_time_up_is_not_an_error():
    running = {"history": [{"history_id": 2, "uuid": "r", "status": "running"}],
               "hosts": [{"scanprogresscurrent": 50, "scanprogresstotal": 100}]}
    stub = Stub({("GET", "/scans/7"): [running]})
    clock = Clock()
    run, progress = keys_client(stub, clock).watch_run(7, "r", timeout=5, poll=2)
    assert run["status"] == "running" and progress == 50 and clock.now == 5
    # 0 reads once
    clock = Clock()
    assert keys_client(stub, clock).watch_run(7, "r")[0]["status"] == "running" and clock.sleeps == []
