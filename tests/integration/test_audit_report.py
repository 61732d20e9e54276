"""The audit's HTML report, written by playbooks/tasks/audit_report.yml (cloudefigo.core.audit_report)
against the lab's moto and PostgreSQL, then opened in headless Chromium (Debian's).

- The module's input comes through `slurp`, like a registered module result (untrusted in
  ansible-core 2.19: never templated again), with hostile tag values that must stay text.
- Numbers are read from the rendered charts (Chromium's DOM after rendering: each SVG mark's
  data-value and its drawn length) and compared with SQL written here, over events seeded here,
  and with counts derived here from the inputs.
- Content-Security-Policy: the report is served by a local HTTP server that adds the report's own
  policy as a header with a report-uri; Chromium's console log and the report-uri must show
  nothing (a control page with a script shows that both would).
- S3 goes through a recording proxy in front of moto, which also answers like AWS does when the
  bucket's owner is not the ExpectedBucketOwner (moto ignores the header).
- Screenshots, one per section, are kept under tests/output/audit_report/ (paths printed).
"""
import datetime
import html
import html.parser
import http.client
import http.server
import json
import os
import random
import re
import shutil
import subprocess
import threading
import urllib.parse
import uuid

import psycopg2
import pytest

from _lab import ROOT, fresh_database, run_playbook

TASKS = os.path.join(ROOT, "playbooks", "tasks", "audit_report.yml")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(ROOT, "tests", "output", "audit_report")
OWNER = "123456789012"  # moto's account: owns the report bucket
OTHER = "210987654321"
SCRIPT_TAG = "<script>document.title='pwned'</script>"
ATTR_BREAK = "\"><img src=x onerror=alert(1)>"
JINJA = "{{ 7 * 7 }}"
SEVERITIES = ["critical", "high", "medium", "low", "info"]
DENIED_CODES = ["AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Client.UnauthorizedOperation",
                "UnauthorizedAccess"]


# ---------------------------------------------------------------------------------------------
# inputs, as the audit modules return them

def _instance(instance_id, region, tags=None, state="running"):
    return {"instance_id": instance_id, "region": region, "state": state, "launch_time": "2026-11-20T10:00:00+00:00",
            "private_dns_name": "ip-10-0-0-1.ec2.internal", "tags": tags or {}}


def _unmanaged(extra_east=()):
    east = [_instance("i-0east000000000001", "us-east-1", {"Name": SCRIPT_TAG, "Owner": ATTR_BREAK, "Note": JINJA})]
    east += list(extra_east)
    west = [_instance("i-0west000000000001", "eu-west-1", state="stopped")]
    return {
        "unmanaged": east + west,
        "managed": [],
        "stale": [{"instance_id": "i-0east0000000000aa", "region": "us-east-1", "node_name": "web-1", "ohai_age": 7200}],
        "counts": {"us-east-1": {"instances": 2 + len(extra_east), "managed": 1, "unmanaged": 1 + len(extra_east),
                                 "stale": 1},
                   "eu-west-1": {"instances": 1, "managed": 0, "unmanaged": 1, "stale": 0}},
    }


def _sg_finding(region, group_id, severity, rule, group_name="web", ports="tcp/22"):
    return {"region": region, "group_id": group_id, "group_name": group_name, "vpc_id": "vpc-1", "severity": severity,
            "rule": rule, "cidr": "0.0.0.0/0", "ports": ports, "reason": "%s open to the internet" % ports}


def _sg(with_ssh=True):
    findings = [_sg_finding("eu-west-1", "sg-0west1", "medium", "default_group_rules", group_name="default", ports=None)]
    if with_ssh:
        findings.append(_sg_finding("us-east-1", "sg-0east1", "high", "open_admin_port", group_name=SCRIPT_TAG))
    return {"findings": findings, "regions": ["eu-west-1", "us-east-1"]}


def _expected_severities(unmanaged, sg):
    """Per region, findings per severity by the documented rule: unmanaged high, stale medium,
    security group findings their own severity."""
    out = {}
    for item in unmanaged.get("unmanaged", []):
        out.setdefault(item["region"], dict.fromkeys(SEVERITIES, 0))["high"] += 1
    for item in unmanaged.get("stale", []):
        out.setdefault(item["region"], dict.fromkeys(SEVERITIES, 0))["medium"] += 1
    for item in sg.get("findings", []):
        out.setdefault(item["region"], dict.fromkeys(SEVERITIES, 0))[item["severity"]] += 1
    for region in list(unmanaged.get("counts", {})) + list(sg.get("regions", [])):
        out.setdefault(region, dict.fromkeys(SEVERITIES, 0))
    return out


# ---------------------------------------------------------------------------------------------
# S3 through a recording proxy that enforces ExpectedBucketOwner like AWS

class _Proxy(object):
    def __init__(self, upstream, bucket_owner):
        target = urllib.parse.urlparse(upstream)
        self.requests = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = dict((k.lower(), v) for k, v in self.headers.items())
                proxy.requests.append((self.command, self.path, headers))
                expected = headers.get("x-amz-expected-bucket-owner")
                if expected is not None and expected != bucket_owner:
                    payload = (b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>"
                               b"<Message>Access Denied</Message></Error>")
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload if self.command != "HEAD" else b"")
                    return
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                connection.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def s3_requests(self, bucket):
        return [r for r in self.requests if r[1].startswith("/" + bucket)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(lab, aws):
    running = _Proxy(lab["LAB_AWS_ENDPOINT"], OWNER)
    yield running
    running.close()


@pytest.fixture
def bucket(aws):
    name = "audit-reports-%s" % uuid.uuid4().hex[:8]
    aws.client("s3").create_bucket(Bucket=name)
    return name


# ---------------------------------------------------------------------------------------------
# running the tasks file

def _render(lab, tmp_path, unmanaged, sg, report_dir, cloudtrail=None, extra=None, check=False, expect_rc=0):
    """Run playbooks/tasks/audit_report.yml with these results; returns the PlaybookResult."""
    name = uuid.uuid4().hex[:8]
    data = tmp_path / ("data-%s.json" % name)
    data.write_text(json.dumps({"unmanaged": unmanaged, "sg": sg, "cloudtrail": cloudtrail or {}}))
    play = tmp_path / ("render-%s.yml" % name)
    play.write_text("""
- name: Render the audit report from fixed results
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    audit_quarantined: [i-0east000000000001]
  tasks:
    - name: Read the results as a module would return them
      ansible.builtin.slurp:
        src: %(data)s
      register: fixture
    - name: Set the results
      ansible.builtin.set_fact:
        audit_unmanaged: "{{ (fixture.content | b64decode | from_json).unmanaged }}"
        audit_sg: "{{ (fixture.content | b64decode | from_json).sg }}"
        audit_cloudtrail: "{{ (fixture.content | b64decode | from_json).cloudtrail }}"
    - name: Write the report
      ansible.builtin.include_tasks: %(tasks)s
""" % {"data": data, "tasks": TASKS})
    variables = {"audit_report_dir": str(report_dir), "audit_account_id": OWNER, "audit_report_siem": False,
                 "cloudefigo_aws_region": "us-east-1"}
    variables.update(extra or {})
    result = run_playbook(lab, str(play), extra_vars=variables, check=check, env={"ANSIBLE_SHOW_CUSTOM_STATS": "1"})
    assert result.rc == expect_rc, result.stdout[-6000:] + result.stderr[-3000:]
    return result


def _module_result(result):
    found = result.task_results("Write the report and keep its parts for the next run")
    assert found, result.stdout[-3000:]
    return found[-1]


# ---------------------------------------------------------------------------------------------
# Chromium

class _Dom(html.parser.HTMLParser):
    """Elements of the DOM Chromium dumped: every element's attributes, text per section and per id."""

    def __init__(self):
        super().__init__()
        self.tags = []
        self.attrs = []
        self.sections = {}
        self.by_id = {}
        self._section = None
        self._ids = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.attrs.append((tag, attrs))
        if tag == "section" and "data-region" in attrs:
            self._section = (attrs["data-account"], attrs["data-region"])
            self.sections[self._section] = ""
        if "id" in attrs:
            self._ids.append([attrs["id"], tag, ""])

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None
        if self._ids and self._ids[-1][1] == tag:
            ident, _tag, text = self._ids.pop()
            self.by_id[ident] = text
            if self._ids:
                self._ids[-1][2] += text

    def handle_data(self, data):
        if self._section:
            self.sections[self._section] += data
        if self._ids:
            self._ids[-1][2] += data

    def region_text(self, region, account=OWNER):
        return self.sections[(account, region)]

    def chart(self, chart_id):
        """The elements inside one <svg id=chart_id>, in order (tag, attrs)."""
        inside, out = False, []
        for tag, attrs in self.attrs:
            if tag == "svg" and attrs.get("id") == chart_id:
                inside = True
                continue
            if inside and tag == "svg":
                break
            if inside:
                out.append((tag, attrs))
        assert inside, "chart %s not in the page" % chart_id
        return out


def _chromium(tmp_path, url, *args):
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is not installed (make bootstrap installs it)")
    profile = tmp_path / ("chromium-%s" % uuid.uuid4().hex[:8])
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--user-data-dir=%s" % profile, "--enable-logging=stderr", "--v=0"] + list(args) + [url],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _csp_messages(stderr):
    return [line for line in stderr.splitlines() if "Content Security Policy" in line or "Content-Security-Policy" in line]


class _Site(object):
    """Serves a directory with the page's own CSP as a header plus a report-uri; records reports."""

    def __init__(self, directory):
        self.reports = []
        site = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(directory), **kwargs)

            def end_headers(self):
                path = os.path.join(str(directory), self.path.lstrip("/").split("#")[0])
                if path.endswith(".html") and os.path.exists(path):
                    with open(path) as handle:
                        found = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', handle.read())
                    if found:
                        self.send_header("Content-Security-Policy",
                                         html.unescape(found.group(1)) + "; report-uri /csp-report")
                super().end_headers()

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                site.reports.append(self.rfile.read(length))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _open_report(tmp_path, report_dir, screenshots=None):
    """DOM after rendering; asserts zero CSP violations; screenshots of each section if asked."""
    site = _Site(report_dir)
    try:
        proc = _chromium(tmp_path, site.url + "audit-report.html", "--virtual-time-budget=3000", "--dump-dom")
        assert "<html" in proc.stdout
        dom = _Dom()
        dom.feed(proc.stdout)
        logs = [proc.stderr]
        if screenshots:
            os.makedirs(screenshots, exist_ok=True)
            sections = ["summary", "trend"] + (["siem"] if "siem" in dom.by_id else [])
            sections += [attrs["id"] for tag, attrs in dom.attrs if tag == "section" and attrs.get("class") == "pair"]
            for section in sections:
                path = os.path.join(screenshots, "%s.png" % section)
                shot = _chromium(tmp_path, site.url + "audit-report.html#" + section, "--window-size=1100,1000",
                                 "--screenshot=%s" % path)
                logs.append(shot.stderr)
                assert os.path.getsize(path) > 5000, path
                print("screenshot: %s" % path)
        assert not [m for log in logs for m in _csp_messages(log)]
        assert site.reports == []
    finally:
        site.close()
    return dom, proc.stdout


def test_csp_check_sees_a_violation(tmp_path):
    """Control: the same check on a page with a script and an external image does report them."""
    page = tmp_path / "site"
    page.mkdir()
    (page / "audit-report.html").write_text(
        '<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;">'
        '</head><body><script>document.title="x"</script><img src="http://127.0.0.1:9/x.png"></body></html>')
    site = _Site(page)
    try:
        proc = _chromium(tmp_path, site.url + "audit-report.html", "--virtual-time-budget=3000", "--dump-dom")
    finally:
        site.close()
    assert len(_csp_messages(proc.stderr)) >= 2


# ---------------------------------------------------------------------------------------------
# tests

def test_report_in_a_browser(lab, tmp_path):
    report_dir = tmp_path / "report"
    cloudtrail = {"files_seen": 4, "files_loaded": 3, "events_loaded": 2900, "duplicates": 0, "files_skipped": [],
                  "files_failed": [{"key": "AWSLogs/x.json.gz", "error": SCRIPT_TAG}]}
    _render(lab, tmp_path, _unmanaged(), _sg(), report_dir, cloudtrail=cloudtrail)
    dom, raw = _open_report(tmp_path, report_dir)

    # each unmanaged instance in its own region's section, not in the other's
    assert set(dom.sections) == {(OWNER, "us-east-1"), (OWNER, "eu-west-1")}
    east, west = dom.region_text("us-east-1"), dom.region_text("eu-west-1")
    assert "i-0east000000000001" in east and "i-0east000000000001" not in west
    assert "i-0west000000000001" in west
    assert "i-0east0000000000aa" in east  # stale node
    assert "sg-0east1" in east and "sg-0west1" in west
    assert "quarantined" in east
    # readable titles, not rule ids
    assert "Administration or database port open to the internet" in east and "open_admin_port" not in east
    assert "Default security group has rules" in west

    # hostile values are text: no script or img element, no event handler attribute, not templated
    assert "script" not in dom.tags and "img" not in dom.tags
    assert not [a for _tag, attrs in dom.attrs for a in attrs if a.startswith("on")]
    assert SCRIPT_TAG in east and ATTR_BREAK in east
    assert JINJA in east and "49" not in east.split("Note=")[1][:10]
    assert "pwned" not in dom.by_id.get("generated", "")
    assert "&lt;script&gt;" in raw

    assert dom.by_id["total-unmanaged"] == "2"
    assert dom.by_id["total-quarantined"] == "1"
    assert dom.by_id["events-loaded"] == "2900"
    assert dom.by_id["files-failed"] == "1"
    assert "first run" in dom.by_id["previous-run"]
    assert dom.by_id["new-unmanaged"] == "2"


def test_changes_since_the_last_run_come_from_the_bucket(lab, aws, proxy, bucket, tmp_path):
    """A scheduled job starts with an empty directory: the previous run is read from S3."""
    s3 = aws.client("s3")
    extra = {"audit_report_bucket": bucket, "cloudefigo_aws_endpoint_url": proxy.url}

    dry = _render(lab, tmp_path, _unmanaged(), _sg(with_ssh=True), tmp_path / "dry", extra=extra, check=True)
    assert _module_result(dry)["changed"]
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert not (tmp_path / "dry").exists()

    first = _render(lab, tmp_path, _unmanaged(), _sg(with_ssh=True), tmp_path / "run1",
                    extra=dict(extra, audit_generated_at="2026-11-28T06:00:00Z"))
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["cloudefigo-audit/audit-report.html", "cloudefigo-audit/audit-summary.json",
                    "cloudefigo-audit/state/%s/eu-west-1.json" % OWNER, "cloudefigo-audit/state/%s/us-east-1.json" % OWNER]
    for key in keys:
        assert s3.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
    stats = first.data["global_custom_stats"]["cloudefigo_audit"]
    assert stats["unmanaged_instances"] == 2 and stats["security_group_findings"] == 2 and stats["new"] == 5
    assert stats["report_s3_uri"] == "s3://%s/cloudefigo-audit/audit-report.html" % bucket

    newcomer = _instance("i-0east000000000002", "us-east-1", {"Name": "newcomer"}, state="pending")
    second = _render(lab, tmp_path, _unmanaged(extra_east=[newcomer]), _sg(with_ssh=False), tmp_path / "run2",
                     extra=dict(extra, audit_generated_at="2026-11-29T06:00:00Z"))
    assert _module_result(second)["changed"]
    dom = _open_report(tmp_path, tmp_path / "run2")[0]
    assert dom.by_id["new-unmanaged"] == "1"
    assert dom.by_id["resolved-unmanaged"] == "0"
    assert dom.by_id["new-findings"] == "0"
    assert dom.by_id["resolved-findings"] == "1"
    assert dom.by_id["previous-run"] == "2026-11-28T06:00:00Z"
    rows = dict((attrs.get("data-resource-id"), attrs.get("class", "").split()) for tag, attrs in dom.attrs if tag == "tr")
    assert "new" in rows["i-0east000000000002"] and "new" not in rows["i-0east000000000001"]
    assert "resolved" in rows["sg-0east1"]
    # the bucket's copy is the same report
    body = s3.get_object(Bucket=bucket, Key="cloudefigo-audit/audit-report.html")["Body"].read()
    assert body == (tmp_path / "run2" / "audit-report.html").read_bytes()

    # the same run again (same time, same input): nothing changes
    again = _render(lab, tmp_path, _unmanaged(extra_east=[newcomer]), _sg(with_ssh=False), tmp_path / "run2",
                    extra=dict(extra, audit_generated_at="2026-11-29T06:00:00Z"))
    assert not _module_result(again)["changed"]

    # every S3 request named the bucket owner, every object written was encrypted
    requests = proxy.s3_requests(bucket)
    assert requests and all(h.get("x-amz-expected-bucket-owner") == OWNER for _m, _p, h in requests)
    puts = [h for method, _p, h in requests if method == "PUT"]
    assert puts and all(h.get("x-amz-server-side-encryption") == "AES256" for h in puts)


def test_a_bucket_of_another_owner_is_refused(lab, aws, proxy, bucket, tmp_path):
    """A bucket of that name owned by someone else (a squatted name) is neither read nor written."""
    extra = {"audit_report_bucket": bucket, "cloudefigo_aws_endpoint_url": proxy.url,
             "audit_report_expected_bucket_owner": OTHER}
    result = _render(lab, tmp_path, _unmanaged(), _sg(), tmp_path / "r", extra=extra, expect_rc=2)
    failed = _module_result(result)
    assert failed["failed"] and "expected_bucket_owner" in failed["msg"]
    assert aws.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert [m for m, _p, _h in proxy.s3_requests(bucket)] and all(
        m in ("GET", "HEAD") for m, _p, _h in proxy.s3_requests(bucket))


def test_a_forged_part_in_the_bucket_is_left_out(lab, aws, proxy, bucket, tmp_path):
    """Whoever could write into the bucket cannot inject markup, nor pass a document off as a part."""
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key="cloudefigo-audit/state/%s/us-east-1.json" % OWNER, Body=b'{"findings": "none"}')
    forged = {"format": 1, "account_id": OWNER, "region": "ap-south-1", "generated_at": "2099-01-01T00:00:00Z",
              "history": [], "findings": [{"key": "k", "kind": "security_group", "severity": "critical",
                                           "title": SCRIPT_TAG, "resource_id": ATTR_BREAK, "detail": SCRIPT_TAG}]}
    s3.put_object(Bucket=bucket, Key="cloudefigo-audit/state/%s/ap-south-1.json" % OWNER, Body=json.dumps(forged).encode())
    # a part stored under another pair's key (to pass one account's findings off as another's)
    s3.put_object(Bucket=bucket, Key="cloudefigo-audit/state/%s/sa-east-1.json" % OWNER,
                  Body=json.dumps(dict(forged, account_id=OTHER, region="sa-east-1")).encode())
    extra = {"audit_report_bucket": bucket, "cloudefigo_aws_endpoint_url": proxy.url}
    result = _render(lab, tmp_path, _unmanaged(), _sg(), tmp_path / "r", extra=extra)
    warnings = _module_result(result).get("warnings", [])
    assert any("us-east-1.json is not a report part" in w for w in warnings)
    assert any("sa-east-1.json holds the part of another account or region" in w for w in warnings)
    dom, raw = _open_report(tmp_path, tmp_path / "r")
    assert "first run" in dom.by_id["previous-run"]  # the forged us-east-1 document was no baseline
    assert set(dom.sections) == {(OWNER, "us-east-1"), (OWNER, "eu-west-1"), (OWNER, "ap-south-1")}
    # the consistent forgery shows (the bucket policy is what keeps others out), as text only
    assert "script" not in dom.tags and "img" not in dom.tags
    assert SCRIPT_TAG in dom.region_text("ap-south-1") and ATTR_BREAK in dom.region_text("ap-south-1")


# ---------------------------------------------------------------------------------------------
# the charts against SQL over seeded CloudTrail events

USERS = [
    ("IAMUser", "arn:aws:iam::111111111111:user/alice", "alice"),
    ("IAMUser", "arn:aws:iam::111111111111:user/bob", "bob"),
    ("Root", "arn:aws:iam::111111111111:root", None),
    ("AssumedRole", "arn:aws:sts::111111111111:assumed-role/deploy/i-0abc", "deploy"),
    ("AssumedRole", "arn:aws:sts::222222222222:assumed-role/ci/" + SCRIPT_TAG, "ci"),
    ("IAMUser", None, "carol"),  # no arn: the principal id / user name stands in
]
ERRORS = [None] * 8 + ["AccessDenied"] * 3 + [
    "Client.UnauthorizedOperation", "ThrottlingException", "NoSuchEntity", "AccessDeniedException"]


def _seed_events(db, now, count=900):
    """Synthetic CloudTrail records over the last 20 days (some outside the report's 14)."""
    from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import schema
    rng = random.Random(1729)
    rows = []
    for n in range(count):
        when = now - datetime.timedelta(seconds=rng.randint(1, 20 * 86400))
        user_type, arn, name = rng.choice(USERS)
        identity = {"type": user_type, "principalId": "AID%06d" % USERS.index((user_type, arn, name))}
        if arn:
            identity["arn"] = arn
        if name:
            identity["userName"] = name
        record = {"eventID": str(uuid.UUID(int=rng.getrandbits(128))), "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "eventSource": "ec2.amazonaws.com", "eventName": rng.choice(["DescribeInstances", "RunInstances",
                                                                               "GetObject"]),
                  "awsRegion": "us-east-1", "sourceIPAddress": "198.51.100.%d" % rng.randint(1, 9),
                  "userIdentity": identity, "recipientAccountId": arn.split(":")[4] if arn else "111111111111"}
        if n % 7 == 0:
            record["eventName"] = "ConsoleLogin"
            record["eventSource"] = "signin.amazonaws.com"
            record["responseElements"] = {"ConsoleLogin": rng.choice(["Success", "Success", "Failure"])}
            record["additionalEventData"] = {"MFAUsed": rng.choice(["Yes", "No", "No"])}
        else:
            error = rng.choice(ERRORS)
            if error:
                record["errorCode"] = error
                record["errorMessage"] = "denied <b>%d</b>" % n
        rows.append(record)
    connection = psycopg2.connect(**db)
    schema.migrate(connection, "cloudtrail")
    with connection.cursor() as cursor:
        for record in rows:
            identity = record["userIdentity"]
            cursor.execute(
                "INSERT INTO cloudtrail.events (event_id, event_time, event_source, event_name, aws_region, source_ip,"
                " user_type, principal_id, user_arn, user_name, recipient_account_id, error_code, error_message, record)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (record["eventID"], record["eventTime"], record["eventSource"], record["eventName"], record["awsRegion"],
                 record["sourceIPAddress"], identity["type"], identity["principalId"], identity.get("arn"),
                 identity.get("userName"), record["recipientAccountId"], record.get("errorCode"),
                 record.get("errorMessage"), json.dumps(record)))
    connection.commit()
    connection.close()


def _sql(db, statement, args):
    connection = psycopg2.connect(**db)
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, args)
            return [tuple(row) for row in cursor.fetchall()]
    finally:
        connection.close()


def _expected_siem(db, now, days=14, limit=10):
    """The four charts' numbers, asked of the records themselves (not the module's views)."""
    since = datetime.datetime(now.year, now.month, now.day, tzinfo=datetime.timezone.utc) - datetime.timedelta(days=days - 1)
    window = (since, now)
    per_day = dict(_sql(db, "SELECT to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD'), count(*)"
                            " FROM cloudtrail.events WHERE event_time >= %s AND event_time < %s GROUP BY 1", window))
    day_list = [(since + datetime.timedelta(days=n)).strftime("%Y-%m-%d") for n in range(days)]
    errors = _sql(db, "SELECT record->>'errorCode', count(*) FROM cloudtrail.events"
                      " WHERE record ? 'errorCode' AND event_time >= %s AND event_time < %s"
                      " GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s", window + (limit,))
    denied = _sql(db, "SELECT coalesce(record#>>'{userIdentity,arn}', record#>>'{userIdentity,principalId}',"
                      " record#>>'{userIdentity,userName}', 'unknown') AS who, count(*) FROM cloudtrail.events"
                      " WHERE record->>'errorCode' = ANY(%s) AND event_time >= %s AND event_time < %s"
                      " GROUP BY who ORDER BY 2 DESC, who LIMIT %s", (DENIED_CODES,) + window + (limit,))
    no_mfa = _sql(db, "SELECT coalesce(record#>>'{userIdentity,arn}', record#>>'{userIdentity,userName}', 'unknown') AS who,"
                      " count(*) FROM cloudtrail.events WHERE record->>'eventName' = 'ConsoleLogin'"
                      " AND record#>>'{responseElements,ConsoleLogin}' = 'Success'"
                      " AND coalesce(record#>>'{additionalEventData,MFAUsed}', '') <> 'Yes'"
                      " AND record#>>'{userIdentity,type}' IN ('IAMUser', 'Root')"
                      " AND event_time >= %s AND event_time < %s GROUP BY who ORDER BY 2 DESC, who LIMIT %s",
                  window + (limit,))
    return {"events-per-day": [(day, per_day.get(day, 0)) for day in day_list], "error-codes": errors,
            "access-denied": denied, "no-mfa": no_mfa, "total": sum(per_day.values())}


def _bars(dom, chart_id):
    """(label, value) of each bar as rendered, checking that the drawn length matches the number."""
    elements = dom.chart(chart_id)
    axis = [a for tag, a in elements if tag == "g" and a.get("class") == "axis"]
    maximum = int(axis[0]["data-max"])
    # the plot's extent on the value axis: the axis line's length (bars), the axis line's height
    # above the top of the tallest possible column (columns: 10 px margin above the plot)
    line = [a for tag, a in elements if tag == "line"][0]
    span = (float(line["x2"]) - float(line["x1"]) if chart_id != "chart-events-per-day" else float(line["y1"]) - 10)
    bars, current = [], None
    for tag, attrs in elements:
        if tag == "g" and attrs.get("class") == "bar":
            current = (attrs["data-label"], int(attrs["data-value"]))
            bars.append(current)
        elif tag == "rect" and current is not None:
            drawn = float(attrs["width"]) if chart_id != "chart-events-per-day" else float(attrs["height"])
            assert abs(drawn - current[1] * span / float(maximum)) < 0.02, (chart_id, current, drawn)
            current = None
    assert maximum >= max([v for _l, v in bars] or [0])
    return bars


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_report_charts_match_sql_over_seeded_data(lab, aws, proxy, bucket, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    extra = {"audit_report_bucket": bucket, "cloudefigo_aws_endpoint_url": proxy.url}
    runs = []

    # two earlier full runs of account OWNER
    run1 = (_unmanaged(), _sg(with_ssh=True))
    run2 = ({"unmanaged": [_instance("i-0east000000000001", "us-east-1")], "stale": [],
             "counts": {"us-east-1": {"instances": 1}, "eu-west-1": {"instances": 0}}},
            {"findings": [_sg_finding("us-east-1", "sg-0east1", "critical", "open_all_ports", ports="all")],
             "regions": ["us-east-1", "eu-west-1"]})
    for number, (unmanaged, sg) in enumerate([run1, run2], 1):
        when = stamp(now - datetime.timedelta(days=3 - number))
        _render(lab, tmp_path, unmanaged, sg, tmp_path / ("run%d" % number),
                extra=dict(extra, audit_generated_at=when, audit_run_id="wf-%d" % number))
        runs.append((when, [(unmanaged, sg)]))

    # the third run as AWX slices: one slice per account writes its parts, a final step merges
    slice_a = (_unmanaged(extra_east=[_instance("i-0east000000000003", "us-east-1", {"Name": SCRIPT_TAG})]),
               {"findings": [_sg_finding("us-east-1", "sg-0east1", "critical", "open_all_ports", ports="all"),
                             _sg_finding("us-east-1", "sg-0east2", "high", "open_admin_port", ports="tcp/3389")],
                "regions": ["us-east-1", "eu-west-1"]})
    slice_b = ({"unmanaged": [], "stale": [], "counts": {"ap-southeast-2": {"instances": 4}}},
               {"findings": [_sg_finding("ap-southeast-2", "sg-0b", "low", "unused_group", ports=None),
                             _sg_finding("ap-southeast-2", "sg-0c", "medium", "cidr_not_allowed")],
                "regions": ["ap-southeast-2"]})
    when = stamp(now)
    for account, (unmanaged, sg) in ((OWNER, slice_a), (OTHER, slice_b)):
        part = _render(lab, tmp_path, unmanaged, sg, tmp_path / ("slice-%s" % account),
                       extra=dict(extra, audit_generated_at=when, audit_run_id="wf-3", audit_report_mode="part",
                                  audit_account_id=account, audit_report_expected_bucket_owner=OWNER))
        assert not (tmp_path / ("slice-%s" % account) / "audit-report.html").exists()
        assert _module_result(part)["parts_written"]
    runs.append((when, [slice_a, slice_b]))

    with fresh_database(lab, "report_test") as db:
        _seed_events(db, now)
        final_dir = tmp_path / "final"
        merged = _render(lab, tmp_path, {}, {}, final_dir, extra=dict(
            extra, audit_generated_at=when, audit_run_id="wf-3", audit_report_mode="merge", audit_report_siem=True,
            audit_report_expected_bucket_owner=OWNER, audit_pg_host=db["host"], audit_pg_port=db["port"],
            audit_pg_user=db["user"], audit_pg_db=db["dbname"]))
        expected = _expected_siem(db, now)

    artifacts = os.path.join(ARTIFACTS, "charts")
    dom, raw = _open_report(tmp_path, final_dir, screenshots=artifacts)

    # findings by severity per account and region
    rendered = {}
    for tag, attrs in dom.chart("chart-severity"):
        if tag == "g" and attrs.get("class") == "stack":
            pair = (attrs["data-pair-account"], attrs["data-pair-region"])
            rendered[pair] = {}
        elif tag == "rect" and attrs.get("class") == "segment":
            rendered[pair][attrs["data-series"]] = int(attrs["data-value"])
    wanted = {}
    for account, (unmanaged, sg) in ((OWNER, slice_a), (OTHER, slice_b)):
        for region, counts in _expected_severities(unmanaged, sg).items():
            wanted[(account, region)] = counts
    assert rendered == wanted

    # the trend: one column per run, the slices of run 3 summed
    trend = {}
    for tag, attrs in dom.chart("chart-trend"):
        if tag == "rect" and attrs.get("class") == "segment":
            trend.setdefault(attrs["data-run"], {})[attrs["data-series"]] = int(attrs["data-value"])
    wanted_trend = {}
    for when_run, results in runs:
        total = dict.fromkeys(SEVERITIES, 0)
        for unmanaged, sg in results:
            for counts in _expected_severities(unmanaged, sg).values():
                for sev in SEVERITIES:
                    total[sev] += counts[sev]
        wanted_trend[when_run] = total
    assert trend == wanted_trend

    # CloudTrail charts against the SQL above
    assert _bars(dom, "chart-events-per-day") == expected["events-per-day"]
    assert _bars(dom, "chart-error-codes") == expected["error-codes"]
    assert _bars(dom, "chart-access-denied") == expected["access-denied"]
    assert _bars(dom, "chart-no-mfa") == expected["no-mfa"]
    assert dom.by_id["siem-events"] == str(expected["total"])
    assert expected["access-denied"] and expected["no-mfa"] and len(expected["error-codes"]) >= 4
    # the hostile role session name is a label, not markup
    assert "script" not in dom.tags
    assert any(SCRIPT_TAG in label for label, _v in expected["access-denied"])

    # changes since wf-2 for OWNER/us-east-1, first run for the other account
    stats = merged.data["global_custom_stats"]["cloudefigo_audit"]
    assert stats["accounts"] == 2 and stats["regions"] == 3
    assert stats["cloudtrail_events"] == expected["total"]
    assert stats["by_severity"] == dict((sev, sum(wanted[p][sev] for p in wanted)) for sev in SEVERITIES)
    assert dom.by_id["new-unmanaged"] == "2"  # i-0east000000000003 and eu-west-1's i-0west000000000001
    assert dom.by_id["resolved-findings"] == "0"
    print("report: %s" % (final_dir / "audit-report.html"))
