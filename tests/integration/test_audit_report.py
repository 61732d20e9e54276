"""The audit's HTML report, rendered by the playbook's own tasks and opened in headless Chromium.

The data comes through `slurp`, like a registered module result (untrusted in ansible-core 2.19:
never templated again), with hostile tag values: they must show as text, never become markup.
"""
import html.parser
import json
import os
import shutil
import subprocess

import pytest

from _lab import ROOT, ansible_env

TASKS = os.path.join(ROOT, "playbooks", "tasks", "audit_report.yml")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCRIPT_TAG = "<script>document.title='pwned'</script>"
ATTR_BREAK = "\"><img src=x onerror=alert(1)>"
JINJA = "{{ 7 * 7 }}"


def _unmanaged(extra_east=()):
    east = [
        {"instance_id": "i-0east000000000001", "region": "us-east-1", "state": "running",
         "launch_time": "2026-11-20T10:00:00+00:00", "private_dns_name": "ip-10-0-0-1.ec2.internal",
         "tags": {"Name": SCRIPT_TAG, "Owner": ATTR_BREAK, "Note": JINJA}},
    ] + list(extra_east)
    west = [{"instance_id": "i-0west000000000001", "region": "eu-west-1", "state": "stopped",
             "launch_time": "2026-11-21T10:00:00+00:00", "private_dns_name": "", "tags": {}}]
    return {
        "unmanaged": east + west,
        "managed": [],
        "stale": [{"instance_id": "i-0east0000000000aa", "region": "us-east-1", "node_name": "web-1",
                   "ohai_age": 7200}],
        "counts": {"us-east-1": {"instances": 2 + len(extra_east), "managed": 1, "unmanaged": 1 + len(extra_east),
                                 "stale": 1},
                   "eu-west-1": {"instances": 1, "managed": 0, "unmanaged": 1, "stale": 0}},
    }


def _sg(with_ssh=True):
    findings = [{"region": "eu-west-1", "group_id": "sg-0west1", "group_name": "default", "severity": "low",
                 "title": "default group with rules", "detail": "2 rules"}]
    if with_ssh:
        findings.append({"region": "us-east-1", "group_id": "sg-0east1", "group_name": SCRIPT_TAG,
                         "severity": "critical", "title": "admin port open to the world",
                         "detail": "tcp/22 from 0.0.0.0/0", "port": 22, "cidr": "0.0.0.0/0"})
    return {"findings": findings}


class _Dom(html.parser.HTMLParser):
    """Elements of the DOM Chromium dumped: tags seen, and the text of each region section."""

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
            self._section = attrs["data-region"]
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


def _render(tmp_path, unmanaged, sg, cloudtrail=None, report_dir=None):
    report_dir = report_dir or (tmp_path / "report")
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"unmanaged": unmanaged, "sg": sg, "cloudtrail": cloudtrail or {}}))
    play = tmp_path / "render.yml"
    play.write_text("""
- name: Render the audit report from fixed results
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    audit_report_dir: %(dir)s
    audit_templates_dir: %(templates)s
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
        audit_generated_at: "{{ now(utc=true).isoformat() }}"
    - name: Write the report
      ansible.builtin.include_tasks: %(tasks)s
""" % {"dir": report_dir, "data": data, "tasks": TASKS,
       "templates": os.path.join(ROOT, "playbooks", "templates")})
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", str(play)],
                          cwd=ROOT, env=ansible_env({}), capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-3000:]
    return report_dir / "audit-report.html"


def _chromium_dom(tmp_path, path):
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (make bootstrap installs it)")
    profile = tmp_path / "chromium-profile"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=%s" % profile,
         "--dump-dom", "file://%s" % path],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "<html" in proc.stdout
    dom = _Dom()
    dom.feed(proc.stdout)
    return dom, proc.stdout


def test_report_in_a_browser(tmp_path):
    report = _render(tmp_path, _unmanaged(), _sg(),
                     cloudtrail={"files_seen": 4, "files_loaded": 3, "events_loaded": 2900, "duplicates": 0,
                                 "files_skipped": [], "files_failed": [{"key": "AWSLogs/x.json.gz", "error": SCRIPT_TAG}]})
    dom, raw = _chromium_dom(tmp_path, report)

    # each unmanaged instance in its own region's table, not in the other's
    assert set(dom.sections) == {"us-east-1", "eu-west-1"}
    assert "i-0east000000000001" in dom.sections["us-east-1"]
    assert "i-0east000000000001" not in dom.sections["eu-west-1"]
    assert "i-0west000000000001" in dom.sections["eu-west-1"]
    assert "i-0east0000000000aa" in dom.sections["us-east-1"]  # stale node
    assert "sg-0east1" in dom.sections["us-east-1"] and "sg-0west1" in dom.sections["eu-west-1"]
    assert "quarantined" in dom.sections["us-east-1"]

    # hostile values are text: no script or img element, no event handler attribute, not templated
    assert "script" not in dom.tags and "img" not in dom.tags
    assert not [a for _tag, attrs in dom.attrs for a in attrs if a.startswith("on")]
    assert SCRIPT_TAG in dom.sections["us-east-1"]
    assert ATTR_BREAK in dom.sections["us-east-1"]
    assert JINJA in dom.sections["us-east-1"] and "49" not in dom.sections["us-east-1"].split("Note=")[1][:10]
    assert "pwned" not in dom.by_id.get("generated", "")
    assert "&lt;script&gt;" in raw

    assert dom.by_id["total-unmanaged"] == "2"
    assert dom.by_id["events-loaded"] == "2900"
    assert dom.by_id["files-failed"] == "1"
    assert "first run" in dom.by_id["previous-run"]
    assert dom.by_id["new-unmanaged"] == "2"


def test_report_shows_changes_since_the_previous_run(tmp_path):
    report_dir = tmp_path / "report"
    _render(tmp_path, _unmanaged(), _sg(with_ssh=True), report_dir=report_dir)
    state = json.loads((report_dir / "audit-state.json").read_text())
    assert [u["instance_id"] for u in state["regions"]["us-east-1"]["unmanaged"]] == ["i-0east000000000001"]

    newcomer = {"instance_id": "i-0east000000000002", "region": "us-east-1", "state": "pending",
                "launch_time": "", "private_dns_name": "", "tags": {"Name": "newcomer"}}
    report = _render(tmp_path, _unmanaged(extra_east=[newcomer]), _sg(with_ssh=False), report_dir=report_dir)
    dom = _chromium_dom(tmp_path, report)[0]
    assert dom.by_id["new-unmanaged"] == "1"
    assert dom.by_id["resolved-unmanaged"] == "0"
    assert dom.by_id["new-findings"] == "0"
    assert dom.by_id["resolved-findings"] == "1"
    assert "first run" not in dom.by_id["previous-run"]
    rows = {attrs.get("data-instance-id"): attrs.get("class", "") for tag, attrs in dom.attrs if tag == "tr"}
    assert "new" in rows["i-0east000000000002"].split()
    assert "new" not in rows["i-0east000000000001"].split()
    groups = {attrs.get("data-group-id"): attrs.get("class", "") for tag, attrs in dom.attrs if tag == "tr"}
    assert "resolved" in groups["sg-0east1"].split()


def test_every_expression_of_the_report_is_escaped():
    """ansible.builtin.template does not autoescape: each {{ }} must end in `| e`."""
    import re
    template = open(os.path.join(ROOT, "playbooks", "templates", "audit_report.html.j2")).read()
    unescaped = [expr for expr in re.findall(r"\{\{(.*?)\}\}", template, re.S) if not expr.strip().endswith("| e")]
    assert not unescaped
