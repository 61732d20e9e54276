"""AWS proxy: a small HTTP proxy in front of moto that records every request.

Why: moto ignores some of what the collection must send (``x-amz-expected-bucket-owner`` above all)
and lacks some of what the instance needs (the IMDS identity document).  The proxy forwards every
request to moto unchanged (the ``Host`` header too, so SigV4 signatures still match) and records
method, path, query, headers, the AWS service (from the SigV4 scope), body size and status --
never the body: key material passes through here.

Contract (pinned by tests/integration/test_aws_proxy.py):
- env from ``lab/lab up``: ``LAB_AWS_PROXY_ENDPOINT`` (use it as ``endpoint_url``),
  ``LAB_AWS_PROXY_ENDPOINT_FROM_VM``, ``LAB_AWS_PROXY_LOG`` (JSON lines, one per request);
  ``LAB_AWS_ENDPOINT`` stays moto's own URL.
- control endpoints (never forwarded, never recorded), under ``/_lab/proxy/``:
  ``GET health`` -> ``{"ok": true, "upstream": ...}``; ``GET requests`` -> ``{"requests": [...]}``
  (recorded since the last reset, oldest first); ``POST reset`` -> forgets them (the log file too).
- a record: ``{"seq", "time", "method", "path", "query", "params", "headers", "service", "action",
  "body_bytes", "status", "answered_by"}``; ``action`` is the API operation when the request names
  one (the Query API's ``Action`` from the query or a form body, else the JSON protocol's
  ``x-amz-target``), else null (REST calls such as S3's: method + path say it); ``headers`` has lower-case names; ``answered_by`` is
  ``"moto"`` or the name of the behaviour that answered.
- behaviours: ``BEHAVIOURS`` is a list of ``(name, function)``; each function takes the
  ``Request`` and returns a ``Response`` to answer without moto, or None to pass.  They run in
  order before forwarding.  Later lab needs (IMDS user data, lifecycle actions, injected latency
  or failures) are added here as behaviours, with a line in the contract test.
- ``ec2_console_output`` (behaviour): answers ec2 ``GetConsoleOutput`` (Query API, the XML shape of
  AWS's answer: ``instanceId``, ``timestamp``, base64 ``output`` of the last 64 KiB) for an
  instance bound to a console file, from that file; every other instance goes to moto (whose
  console output is canned).  Binding, a control endpoint: ``POST console`` with JSON
  ``{"instance_id": "i-...", "console_file": optional}`` binds the instance to that file, by
  default the lab VM's serial console (``<state>/vm-console.log``, the ``--vm-console`` argument):
  the VM then stands in for that instance.  ``GET console`` -> ``{"consoles": {id: file}}``;
  ``POST reset`` forgets the bindings too.  Pinned by tests/integration/test_aws_proxy.py.
- ``asg_lifecycle`` (behaviour, lab/services/asg_lifecycle.py): a stand-in for Auto Scaling lifecycle
  hooks and actions on top of moto (``Pending:Wait`` / ``Terminating:Wait``, notifications to SQS/SNS,
  ``CompleteLifecycleAction``, ``RecordLifecycleActionHeartbeat``, timeouts, the ``LifecycleState`` of
  the Describe calls); control endpoints ``GET asg``, ``POST asg/settings``, ``POST asg/expire``;
  ``POST reset`` forgets its state too.  See docs/lab-asg-lifecycle.md; pinned by
  tests/integration/test_asg_lifecycle_lab.py.
- ``imds_vm_instance`` (behaviour): the instance last bound to the VM's console (the lab VM stands
  in for it, pull mode) gets, from the IMDS paths the VM asks through this proxy, with an IMDSv2
  token header (401 without one, as with ``HttpTokens=required``):
  ``meta-data/instance-id``; ``user-data`` (the UserData moto stored at RunInstances, read with
  DescribeInstanceAttribute; 404 when none); ``meta-data/iam/security-credentials/[role]`` only once
  the instance has an instance-profile association (DescribeIamInstanceProfileAssociations; 404
  before, as on EC2), then moto's; ``meta-data/tags/instance/[key]`` (DescribeTags; instance
  metadata tags); the identity document with its instance id.  Nothing bound: moto answers.
  ``GET vm-instance`` (control) -> ``{"instance_id": ... or null}``: the VM's cloud-init stand-in
  polls it (unrecorded) until the lab binds an instance to it.

Run by the lab as ``python -m services.aws_proxy --upstream URL --port N --log FILE`` (cwd lab/).
"""
import argparse
import base64
import datetime
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import asg_lifecycle

NAME = "aws_proxy"
CONTROL = "/_lab/proxy/"
LAB_ACCOUNT = "123456789012"  # moto's default account
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "expect"}
SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


class Request:
    """What a behaviour sees: method, path, query (raw), params (parsed), headers (lower-case), body."""

    def __init__(self, method, target, headers, body):
        parts = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = parts.path
        self.query = parts.query
        self.params = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
        self.headers = dict((k.lower(), v) for k, v in headers.items())
        self.body = body

    @property
    def action(self):
        """The operation name only -- the rest of a form body (secrets, policies) is never kept."""
        if self.params.get("Action"):
            return self.params["Action"][0]
        if self.body and self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            try:
                form = urllib.parse.parse_qs(self.body.decode("utf-8", "replace"))
            except ValueError:
                form = {}
            if form.get("Action"):
                return form["Action"][0][:128]
        target = self.headers.get("x-amz-target", "")
        if target:
            return target.rsplit(".", 1)[-1][:128]
        return None

    @property
    def service(self):
        match = SCOPE.search(self.headers.get("authorization", ""))
        if match:
            return match.group(2)
        if self.path.startswith("/latest/"):
            return "imds"
        return None


class Response:
    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode()
        self.headers = dict(headers or {})


# --- behaviours --------------------------------------------------------------------------------
def imds_identity_document(request):
    """IMDS /latest/dynamic/instance-identity/document (moto does not serve it)."""
    if request.method != "GET" or request.path != "/latest/dynamic/instance-identity/document":
        return None
    document = {"accountId": LAB_ACCOUNT, "region": "us-east-1", "availabilityZone": "us-east-1a",
                "instanceId": "i-fake", "imageId": "ami-moto-virtual", "instanceType": "moto.virtual",
                "architecture": "x86_64", "privateIp": "127.0.0.1", "version": "2017-09-30"}
    return Response(200, json.dumps(document), {"Content-Type": "application/json"})


BEHAVIOURS = [("imds_identity_document", imds_identity_document)]


class VmInstance:
    """IMDS for the moto instance the lab VM stands in for (the last one bound to the VM console)."""

    def __init__(self, upstream, consoles):
        self.upstream = upstream
        self.consoles = consoles
        self._ec2 = None

    def ec2(self):
        if self._ec2 is None:
            import boto3  # the lab's venv has it; only this behaviour needs it
            self._ec2 = boto3.client("ec2", endpoint_url=self.upstream, region_name="us-east-1",
                                     aws_access_key_id="testing", aws_secret_access_key="testing")
        return self._ec2

    @staticmethod
    def _text(status, body=""):
        return Response(status, body, {"Content-Type": "text/plain"})

    def behaviour(self, request):
        paths = ("/latest/meta-data/", "/latest/user-data", "/latest/dynamic/instance-identity/document")
        if request.method != "GET" or not request.path.startswith(paths):
            return None
        instance_id = self.consoles.vm_instance()
        if instance_id is None:
            return None
        if not request.headers.get("x-aws-ec2-metadata-token"):
            return self._text(401)  # HttpTokens=required: IMDSv1 gets nothing
        path = request.path[len("/latest/"):]
        if path == "meta-data/instance-id":
            return self._text(200, instance_id)
        if path == "user-data":
            value = self.ec2().describe_instance_attribute(InstanceId=instance_id, Attribute="userData").get(
                "UserData", {}).get("Value")
            if not value:
                return self._text(404)
            return Response(200, base64.b64decode(value), {"Content-Type": "application/octet-stream"})
        if path.startswith("meta-data/iam/"):
            associations = self.ec2().describe_iam_instance_profile_associations(
                Filters=[{"Name": "instance-id", "Values": [instance_id]}]).get("IamInstanceProfileAssociations", [])
            if not [a for a in associations if a.get("State") in ("associating", "associated")]:
                return self._text(404)  # no profile yet: no credentials at all
            return None  # moto's credentials
        if path.startswith("meta-data/tags/instance"):
            tags = dict((t["Key"], t["Value"]) for t in self.ec2().describe_tags(
                Filters=[{"Name": "resource-id", "Values": [instance_id]}])["Tags"])
            key = path[len("meta-data/tags/instance"):].strip("/")
            if not key:
                return self._text(200, "\n".join(sorted(tags)))
            return self._text(200, tags[key]) if key in tags else self._text(404)
        if path == "dynamic/instance-identity/document":
            answer = imds_identity_document(request)
            document = json.loads(answer.body)
            document["instanceId"] = instance_id
            return Response(200, json.dumps(document), {"Content-Type": "application/json"})
        return None


CONSOLE_BYTES = 64 * 1024  # GetConsoleOutput returns the last 64 KB
EC2_XMLNS = "http://ec2.amazonaws.com/doc/2016-11-15/"


class Consoles:
    """Which instance ids stand for a console file (the lab VM's serial console by default)."""

    def __init__(self, vm_console=None):
        self.vm_console = vm_console
        self.lock = threading.Lock()
        self.bound = {}

    def bind(self, instance_id, console_file=None):
        path = console_file or self.vm_console
        if not re.match(r"^i-[0-9a-f]{8,17}$", instance_id or ""):
            raise ValueError("instance_id must look like i-0123456789abcdef0")
        if not path:
            raise ValueError("no console_file given and the proxy knows no VM console (--vm-console)")
        with self.lock:
            self.bound.pop(instance_id, None)  # re-binding makes it the last one
            self.bound[instance_id] = path
        return path

    def vm_instance(self):
        """The instance last bound to the VM's console (the one the VM stands in for), or None."""
        with self.lock:
            bound = [i for i, path in self.bound.items() if self.vm_console and path == self.vm_console]
        return bound[-1] if bound else None

    def snapshot(self):
        with self.lock:
            return dict(self.bound)

    def reset(self):
        with self.lock:
            self.bound = {}

    def behaviour(self, request):
        """ec2 GetConsoleOutput for a bound instance, answered from its console file."""
        if request.service not in ("ec2", None) or request.method not in ("GET", "POST"):
            return None
        params = dict(request.params)
        if request.method == "POST" and "x-www-form-urlencoded" in request.headers.get("content-type", ""):
            params.update(urllib.parse.parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True))
        if params.get("Action") != ["GetConsoleOutput"]:
            return None
        instance_id = (params.get("InstanceId") or [""])[0]
        path = self.snapshot().get(instance_id)
        if path is None:
            return None
        try:
            with open(path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - CONSOLE_BYTES))
                output = handle.read()
        except FileNotFoundError:
            output = b""  # not booted yet: AWS answers without output too
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<GetConsoleOutputResponse xmlns="%s">'
                "<requestId>%s</requestId><instanceId>%s</instanceId><timestamp>%s</timestamp>"
                "<output>%s</output></GetConsoleOutputResponse>"
                % (EC2_XMLNS, "lab-%d" % int(time.time() * 1000), instance_id, now, base64.b64encode(output).decode()))
        return Response(200, body, {"Content-Type": "text/xml;charset=UTF-8"})


# --- the server --------------------------------------------------------------------------------
class Recorder:
    def __init__(self, log_path):
        self.log_path = log_path
        self.lock = threading.Lock()
        self.records = []
        self.seq = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.records = []
            if self.log_path:
                open(self.log_path, "w").close()

    def add(self, record):
        with self.lock:
            self.seq += 1
            record["seq"] = self.seq
            self.records.append(record)
            if self.log_path:
                with open(self.log_path, "a") as handle:
                    handle.write(json.dumps(record, sort_keys=True) + "\n")

    def snapshot(self):
        with self.lock:
            return list(self.records)


def make_handler(upstream, recorder, behaviours, consoles=None, lifecycle=None):
    up = urllib.parse.urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "cloudefigo-lab-aws-proxy"

        def log_message(self, fmt, *args):  # the recorder is the log
            pass

        def _body(self):
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, response, head=False):
            self.send_response(response.status)
            sent_length = False
            for key, value in response.headers.items():
                if key.lower() in HOP_BY_HOP:
                    continue
                if key.lower() == "content-length":
                    if not head:
                        continue
                    sent_length = True
                self.send_header(key, value)
            if not head or not sent_length:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if not head and response.body:
                self.wfile.write(response.body)

        def _control(self, request):
            name = request.path[len(CONTROL):]
            if request.method == "GET" and name == "health":
                return Response(200, json.dumps({"ok": True, "upstream": upstream}), {"Content-Type": "application/json"})
            if request.method == "GET" and name == "requests":
                return Response(200, json.dumps({"requests": recorder.snapshot()}), {"Content-Type": "application/json"})
            if request.method == "POST" and name == "reset":
                recorder.reset()
                if consoles is not None:
                    consoles.reset()
                if lifecycle is not None:
                    lifecycle.reset()
                return Response(200, json.dumps({"ok": True}), {"Content-Type": "application/json"})
            if consoles is not None and name == "vm-instance" and request.method == "GET":
                return Response(200, json.dumps({"instance_id": consoles.vm_instance()}), {"Content-Type": "application/json"})
            if consoles is not None and name == "console":
                if request.method == "GET":
                    return Response(200, json.dumps({"consoles": consoles.snapshot()}), {"Content-Type": "application/json"})
                if request.method == "POST":
                    try:
                        wanted = json.loads(request.body or b"{}")
                        path = consoles.bind(wanted.get("instance_id"), wanted.get("console_file"))
                    except (ValueError, AttributeError) as exc:
                        return Response(400, json.dumps({"error": str(exc)}), {"Content-Type": "application/json"})
                    return Response(200, json.dumps({"ok": True, "instance_id": wanted["instance_id"], "console_file": path}),
                                    {"Content-Type": "application/json"})
            if lifecycle is not None and name.startswith("asg"):
                answer = lifecycle.control(request.method, name, request.body)
                if answer is not None:
                    return Response(answer[0], json.dumps(answer[1]), {"Content-Type": "application/json"})
            return Response(404, json.dumps({"error": "no such control endpoint: %s" % request.path}))

        def _forward(self, request):
            conn = http.client.HTTPConnection(up.hostname, up.port, timeout=300)
            try:
                headers = dict((k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP)
                if request.body or request.method in ("PUT", "POST"):
                    headers = dict((k, v) for k, v in headers.items() if k.lower() != "content-length")
                    headers["Content-Length"] = str(len(request.body))
                conn.request(request.method, request.target, body=request.body or None, headers=headers)
                answer = conn.getresponse()
                body = answer.read()
                return Response(answer.status, body, answer.getheaders())
            finally:
                conn.close()

        def _handle(self):
            request = Request(self.command, self.path, self.headers, self._body())
            head = self.command == "HEAD"
            if request.path.startswith(CONTROL):
                self._send(self._control(request), head)
                return
            answered_by, response = "moto", None
            for name, behaviour in behaviours:
                response = behaviour(request)
                if response is not None:
                    answered_by = name
                    break
            if response is None:
                try:
                    response = self._forward(request)
                except OSError as exc:
                    response = Response(502, "aws_proxy: upstream %s: %s" % (upstream, exc))
                    answered_by = "proxy-error"
            recorder.add({
                "time": time.time(),
                "method": request.method,
                "path": request.path,
                "query": request.query,
                "params": request.params,
                "headers": request.headers,
                "service": request.service,
                "action": request.action,
                "body_bytes": len(request.body),
                "status": response.status,
                "answered_by": answered_by,
            })
            self._send(response, head)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle  # noqa: N815

    return Handler


def serve(upstream, port, log_path, behaviours=None, host="127.0.0.1", vm_console=None):
    """A started server (serve_forever in a daemon thread); server.server_address has the port."""
    recorder = Recorder(log_path)
    consoles = Consoles(vm_console)
    lifecycle = None
    if behaviours is None:
        lifecycle = asg_lifecycle.Lifecycle(upstream, Response)
        behaviours = ([("imds_vm_instance", VmInstance(upstream.rstrip("/"), consoles).behaviour)] + BEHAVIOURS
                      + [("ec2_console_output", consoles.behaviour), ("asg_lifecycle", lifecycle.behaviour)])
    server = ThreadingHTTPServer((host, port), make_handler(upstream.rstrip("/"), recorder, behaviours, consoles,
                                                            lifecycle))
    server.daemon_threads = True
    server.recorder = recorder
    server.consoles = consoles
    server.lifecycle = lifecycle
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


# --- the lab service ---------------------------------------------------------------------------
def start(ctx):
    from ._util import free_port, http_ok, spawn, wait_for  # the lab's helpers (not when run as a script)

    upstream = ctx.env.get("LAB_AWS_ENDPOINT")
    if not upstream:
        raise RuntimeError("aws_proxy needs moto: start it first (lab/lab up, or --only moto,aws_proxy)")
    port = free_port()
    log = os.path.join(ctx.state_dir, "aws_proxy.log")
    requests_log = os.path.join(ctx.state_dir, "aws_proxy.requests.jsonl")
    # the VM's serial console (lab/services/vm.py writes it there; it may start later or never)
    vm_console = os.path.join(ctx.state_dir, "vm-console.log")
    proc = spawn([ctx.venv_bin("python"), "-m", "services.aws_proxy", "--upstream", upstream, "--port", str(port),
                  "--log", requests_log, "--vm-console", vm_console], log, cwd=os.path.join(ctx.root, "lab"))
    url = "http://127.0.0.1:%d" % port
    wait_for(lambda: http_ok(url + CONTROL + "health"), 30, "aws_proxy", proc, log)
    return {
        "pids": [proc.pid],
        "env": {
            "LAB_AWS_PROXY_ENDPOINT": url,
            "LAB_AWS_PROXY_ENDPOINT_FROM_VM": "http://10.0.2.2:%d" % port,
            "LAB_AWS_PROXY_LOG": requests_log,
        },
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--upstream", required=True, help="moto's URL")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", default="", help="JSON-lines file of the recorded requests")
    parser.add_argument("--vm-console", default="", help="the lab VM's serial console file (GetConsoleOutput)")
    args = parser.parse_args(argv)
    server = serve(args.upstream, args.port, args.log or None, vm_console=args.vm_console or None)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
