# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet audit (playbooks/audit_fleet.yml + audit_merge.yml) over accounts and regions in moto.

moto keeps one backend per account: credentials from AssumeRole into account N act in account N.
Two accounts are audited in two regions and one region; a third account's role cannot be assumed
(moto accepts any role, so a proxy in front of it answers AccessDenied for that role, as STS would
for a trust policy that does not name the controller); a fourth host's role ARN points at the first
account (an inventory mistake), which must not file that account's findings under the fourth.
Everything is read back from the report bucket (the parts) and the rendered report.
"""
import http.client
import http.server
import json
import os
import threading
import urllib.parse

import pytest

A, B, DENIED, MISMATCHED = "111111111111", "222222222222", "333333333333", "444444444444"
OWNER = "123456789012"  # moto's default account: the controller's, which holds the report bucket
EXTERNAL_ID = "fleet-ext-7f3a"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class _StsProxy(object):
    """Forwards to moto; answers AccessDenied to AssumeRole of the denied roles; keeps the
    credentials AssumeRole handed out (to check they never reach the job output)."""

    def __init__(self, upstream, denied_roles):
        target = urllib.parse.urlparse(upstream)
        self.assume_calls = []
        self.secrets = []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, status, data, headers=()):
                self.send_response(status)
                for key, value in headers:
                    if key.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                form = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if self.command == "POST" else {}
                if form.get("Action") == ["AssumeRole"]:
                    role = form.get("RoleArn", [""])[0]
                    proxy.assume_calls.append({"role": role, "external_id": form.get("ExternalId", [None])[0]})
                    if role in denied_roles:
                        message = ("User: arn:aws:iam::%s:user/controller is not authorized to perform: "
                                   "sts:AssumeRole on resource: %s" % (OWNER, role))
                        payload = ('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error>'
                                   "<Type>Sender</Type><Code>AccessDenied</Code><Message>%s</Message></Error>"
                                   "<RequestId>denied</RequestId></ErrorResponse>" % message).encode()
                        self._answer(403, payload, [("Content-Type", "text/xml")])
                        return
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=120)
                connection.request(self.command, self.path, body=body or None, headers=dict(self.headers.items()))
                response = connection.getresponse()
                data = response.read()
                if form.get("Action") == ["AssumeRole"] and response.status == 200:
                    text = data.decode("utf-8", "replace")
                    for tag in ("SecretAccessKey", "SessionToken"):
                        start = text.find("<%s>" % tag)
                        if start >= 0:
                            proxy.secrets.append(text[start + len(tag) + 2:text.find("</%s>" % tag)])
                self._answer(response.status, data, response.getheaders())
                connection.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def role(account):
    return "arn:aws:iam::%s:role/cloudefigo-audit" % account


@pytest.fixture
def proxy(lab, aws):
    running = _StsProxy(lab["LAB_AWS_ENDPOINT"], {role(DENIED)})
    yield running
    running.close()


def account_client(aws, account, service, region):
    creds = aws.client("sts").assume_role(RoleArn=role(account), RoleSessionName="seed", ExternalId=EXTERNAL_ID)["Credentials"]
    return aws.client(service, region=region, aws_access_key_id=creds["AccessKeyId"],
                      aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])


def open_group(ec2, name, port=None):
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    group = ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
    permission = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]} if port is None else \
        {"IpProtocol": "tcp", "FromPort": port, "ToPort": port, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[permission])
    return group


INVENTORY = """\
cloudefigo_fleet:
  vars:
    audit_fleet_external_id: %(external_id)s
  hosts:
    a-east: {audit_fleet_account_id: "%(a)s", audit_fleet_region: us-east-1}
    a-west: {audit_fleet_account_id: "%(a)s", audit_fleet_region: us-west-2}
    b-east: {audit_fleet_account_id: "%(b)s", audit_fleet_region: us-east-1}
    denied-east: {audit_fleet_account_id: "%(denied)s", audit_fleet_region: us-east-1}
    mismatched-east:
      audit_fleet_account_id: "%(mismatched)s"
      audit_fleet_region: us-east-1
      audit_fleet_role_arn: "%(a_role)s"
"""


def role_task(result, name, host):
    """The result of a task of the role (the json callback names it "ROLE : NAME")."""
    for play in result.data["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"].split(" : ")[-1] == name and host in task["hosts"]:
                return task["hosts"][host]
    raise AssertionError("no task %r ran on %s" % (name, host))


def part(s3, bucket, account, region):
    body = s3.get_object(Bucket=bucket, Key="cloudefigo-audit/state/%s/%s.json" % (account, region),
                         ExpectedBucketOwner=OWNER)["Body"].read()
    return json.loads(body)


def test_fleet_audit_over_accounts_and_regions(lab, aws, proxy, playbook, tmp_path):
    seeded = {
        (A, "us-east-1"): open_group(account_client(aws, A, "ec2", "us-east-1"), "a-ssh", 22),
        (B, "us-east-1"): open_group(account_client(aws, B, "ec2", "us-east-1"), "b-all"),
    }
    west = account_client(aws, A, "ec2", "us-west-2")
    instance = west.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    bucket = "fleet-audit-reports"
    aws.client("s3").create_bucket(Bucket=bucket)
    inventory = tmp_path / "fleet.yml"
    inventory.write_text(INVENTORY % {"external_id": EXTERNAL_ID, "a": A, "b": B, "denied": DENIED,
                                      "mismatched": MISMATCHED, "a_role": role(A)})
    common = {"cloudefigo_aws_endpoint_url": proxy.url, "cloudefigo_aws_region": "us-east-1",
              "cloudefigo_chef_server_url": lab["LAB_CHEF_URL"], "cloudefigo_chef_client_name": lab["LAB_CHEF_USER"],
              "cloudefigo_chef_client_key": lab["LAB_CHEF_KEY"], "cloudefigo_chef_allow_insecure_http": True}
    settings = dict(common, audit_fleet_report_bucket=bucket, audit_fleet_run_id="run-1")
    # check mode audits (the role is assumed: that changes nothing) and writes no part
    checked = playbook(os.path.join(ROOT, "playbooks", "audit_fleet.yml"), inventory=str(inventory), args=["-f", "5"],
                       extra_vars=settings, check=True)
    assert checked.rc != 0 and checked.data["stats"]["a-east"]["failures"] == 0, checked.stdout[-3000:]
    written = role_task(checked, "Keep the findings of the account and region as a report part", "a-east")
    assert written["changed"] and written["parts_written"] == ["state/%s/us-east-1.json" % A]
    assert aws.client("s3").list_objects_v2(Bucket=bucket).get("KeyCount") == 0
    assert proxy.secrets and not [secret for secret in proxy.secrets if secret in checked.stdout]
    del proxy.assume_calls[:], proxy.secrets[:]
    fleet = playbook(os.path.join(ROOT, "playbooks", "audit_fleet.yml"), inventory=str(inventory), args=["-f", "5"],
                     extra_vars=settings)
    # the two broken pairs fail, the others finish
    stats = fleet.data["stats"]
    assert fleet.rc != 0
    for host in ("a-east", "a-west", "b-east"):
        assert stats[host]["failures"] == 0 and stats[host].get("rescued", 0) == 0, host
    for host in ("denied-east", "mismatched-east"):
        assert stats[host]["failures"] == 1 and stats[host]["rescued"] == 1, host
    # every role was asked for with the external id; the assumed credentials never reach the output
    assert sorted(call["role"] for call in proxy.assume_calls if call["external_id"] == EXTERNAL_ID) == sorted(
        [role(A)] * 3 + [role(B), role(DENIED)])
    assert len(proxy.secrets) == 8 and not [s for s in proxy.secrets if s in fleet.stdout]

    s3 = aws.client("s3")
    a_east, a_west, b_east = part(s3, bucket, A, "us-east-1"), part(s3, bucket, A, "us-west-2"), part(s3, bucket, B, "us-east-1")
    # each finding under its own account and region
    assert [(f["resource_id"], f["rule"]) for f in a_east["findings"] if f["kind"] == "security_group"
            and f["rule"] in ("open_admin_port", "open_all_ports")] == [(seeded[(A, "us-east-1")], "open_admin_port")]
    assert [(f["resource_id"], f["rule"]) for f in b_east["findings"] if f["kind"] == "security_group"
            and f["rule"] in ("open_admin_port", "open_all_ports")] == [(seeded[(B, "us-east-1")], "open_all_ports")]
    assert [f["resource_id"] for f in a_west["findings"] if f["kind"] == "unmanaged_instance"] == [instance]
    assert not [f for f in a_east["findings"] + b_east["findings"] if f["kind"] == "unmanaged_instance"]
    assert not [f for f in a_west["findings"] if f["rule"] in ("open_admin_port", "open_all_ports")]
    for doc, account, region in ((a_east, A, "us-east-1"), (a_west, A, "us-west-2"), (b_east, B, "us-east-1")):
        assert (doc["account_id"], doc["region"], doc["run_id"]) == (account, region, "run-1")
        assert "error" not in doc and all(f["key"].startswith("%s/%s/" % (account, region)) for f in doc["findings"])
    # the account whose role cannot be assumed is reported as such
    denied = part(s3, bucket, DENIED, "us-east-1")
    assert "AccessDenied" in denied["error"] and denied["findings"] == []
    # the host whose role is in another account files nothing: its credentials were refused
    mismatched = part(s3, bucket, MISMATCHED, "us-east-1")
    assert "gave credentials of account %s" % A in mismatched["error"] and mismatched["findings"] == []
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="cloudefigo-audit/state/")["Contents"]]
    assert sorted(keys) == sorted("cloudefigo-audit/state/%s/%s.json" % pair for pair in [
        (A, "us-east-1"), (A, "us-west-2"), (B, "us-east-1"), (DENIED, "us-east-1"), (MISMATCHED, "us-east-1")])

    # the final step merges every part (it sees only the bucket, not the slices' results)
    report_dir = tmp_path / "report"
    merged = playbook(os.path.join(ROOT, "playbooks", "audit_merge.yml"),
                      extra_vars=dict(common, audit_report_bucket=bucket, audit_report_dir=str(report_dir)))
    assert merged.rc != 0  # it fails after writing the report: two pairs were not audited
    result = merged.task_results("Write the report and keep its parts for the next run")[0]
    summary = result["summary"]
    assert summary["failed"] == ["%s/us-east-1" % DENIED, "%s/us-east-1" % MISMATCHED]
    assert summary["accounts"] == 4 and summary["regions"] == 5
    assert summary["findings"] == sum(len(d["findings"]) for d in (a_east, a_west, b_east))
    assert summary["unmanaged_instances"] == 1
    html = (report_dir / "audit-report.html").read_text()
    assert 'id="failed-parts"' in html and "AccessDenied" in html and role(DENIED) in html
    assert s3.head_object(Bucket=bucket, Key="cloudefigo-audit/audit-report.html", ExpectedBucketOwner=OWNER)
    assert "Not audited (see the report)" in merged.stdout
