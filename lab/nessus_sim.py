"""A Nessus REST API simulator for the lab: TLS, Manager-like, with switches for every failure.

    python lab/nessus_sim.py --config CONFIG.json

CONFIG (written by lab/services/nessus.py) holds the listen address, the TLS cert/key, the API
keys, users, the admin token and the samples dir.  See lab/README-nessus.md for the API, the
switches and how tests flip them (``POST /_sim/config`` with ``X-Sim-Token``).

Behaviour is chosen per scan target: the first target of a scan that has an entry under
``targets`` in the switch config decides, else ``default``.  Tests use unique target names, so
they can run in parallel against one simulator without stepping on each other.
"""
import argparse
import copy
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TEMPLATES = [
    {"uuid": "731a8e52-3ea6-a291-ec0a-d2ff0619c19d7bd788d6be818b65", "name": "basic", "title": "Basic Network Scan"},
    {"uuid": "ad629e16-03b6-8c1d-cef6-ef8c9dd3c658d24bd260ef5f9e66", "name": "advanced", "title": "Advanced Scan"},
    {"uuid": "ab4bacd2-05f6-425c-9d79-3ba3940ad1c24e51e1f403febe40", "name": "custom", "title": "Custom Scan"},
]
FINAL = ("completed", "aborted", "canceled", "paused")

# What a target does unless told otherwise (any key can be overridden in "default" or per target).
DEFAULT_BEHAVIOUR = {
    "report": "dojo_nessus_many_vuln.xml",  # .nessus served for the run: a name in the samples dir or a path
    "outcome": "completed",                 # completed | aborted | canceled | paused | never
    "scan_seconds": 1.5,                    # pending for a third of it, then running, then the outcome
    "scan_api": True,                       # false: POST /scans and /launch answer 412 API is not available
    "unauthorized_after_polls": 0,          # N: the Nth GET /scans/{id} drops the caller's session -> 401
    "deny_relogin": False,                  # with the above: that user's next logins are refused (401)
    "rate_limit": 0,                        # N: the first N GET /scans/{id} answer 429 with Retry-After
    "retry_after": 1,                       # seconds in that Retry-After
    "export_conflict": 0,                   # N: the first N export requests answer 409 (-1: always)
    "export_seconds": 0.3,                  # export status 'loading' for that long, then 'ready'
}


class Sim:
    def __init__(self, conf):
        self.conf = conf
        # re-entrant: a 401/409/412/429 answered while the lock is held counts itself under it
        self.lock = threading.RLock()
        self.samples = conf["samples_dir"]
        self.users = dict(conf["users"])
        self.api_keys = (conf["access_key"], conf["secret_key"])
        self.tokens = {}
        self.denied_users = set()
        self.folders = [{"id": 2, "name": "My Scans", "type": "main", "default_tag": 1},
                        {"id": 3, "name": "Trash", "type": "trash", "default_tag": 0}]
        self.policies = [{"id": 10, "name": "Hardened Linux", "template_uuid": TEMPLATES[1]["uuid"],
                          "description": "lab policy"}]
        self.scans = {}
        self.exports = {}
        self.next_id = 100
        self.counters = {"logins": 0, "relogin_denied": 0, "responses_401": 0, "responses_409": 0,
                         "responses_412": 0, "responses_429": 0}
        self.initial_switches = {"default": dict(DEFAULT_BEHAVIOUR, scan_seconds=conf.get("scan_seconds", 1.5)),
                                 "targets": {}, "server": {"nessus_type": "Nessus Manager", "scan_api": True}}
        self.switches = copy.deepcopy(self.initial_switches)

    def new_id(self):
        self.next_id += 1
        return self.next_id

    def behaviour(self, targets):
        out = dict(DEFAULT_BEHAVIOUR)
        out.update(self.switches["default"])
        for target in targets:
            if target in self.switches["targets"]:
                out.update(self.switches["targets"][target])
                break
        return out

    def report_path(self, name):
        return name if os.path.isabs(name) else os.path.join(self.samples, name)

    def run_status(self, run, now=None):
        now = time.monotonic() if now is None else now
        if run.get("status_fixed"):
            return run["status_fixed"]
        elapsed = now - run["started"]
        duration = run["behaviour"]["scan_seconds"]
        if elapsed < duration / 3.0:
            return "pending"
        if run["behaviour"]["outcome"] == "never" or elapsed < duration:
            return "running"
        return run["behaviour"]["outcome"]

    def run_hosts(self, scan, run, now=None):
        """``hosts`` of GET /scans/{id} for a run, as Nessus lists them: none while the run is pending,
        then one per target with ``scanprogresscurrent`` / ``scanprogresstotal`` (checks done / planned)."""
        now = time.monotonic() if now is None else now
        status = self.run_status(run, now)
        if status == "pending":
            return []
        duration = float(run["behaviour"]["scan_seconds"]) or 1.0
        if status == "completed":
            done = 100
        elif status == "running":
            # the running part is the last two thirds of scan_seconds; "never" stays below 100
            done = min(99, int(100 * (now - run["started"] - duration / 3.0) / (duration * 2 / 3.0)))
        else:
            done = 60  # aborted, canceled, paused: stopped part way
        return [{"host_id": index + 1, "host_index": index, "hostname": target,
                 "scanprogresscurrent": max(0, done), "scanprogresstotal": 100, "numchecksconsidered": max(0, done),
                 "totalchecksconsidered": 100, "critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0, "score": 0}
                for index, target in enumerate(scan["targets"])]


class Handler(BaseHTTPRequestHandler):
    server_version = "NessusSim/1.0"
    timeout = 60
    sim = None  # set on the class by main()

    # -- plumbing
    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))

    def send_json(self, status, body, headers=None):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)
        if status in (401, 409, 412, 429):
            with self.sim.lock:
                self.sim.counters["responses_%d" % status] += 1

    def error(self, status, msg, headers=None):
        self.send_json(status, {"error": msg}, headers)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        if not length:
            return {}
        try:
            return json.loads(self.rfile.read(length))
        except ValueError:
            return None

    def caller(self):
        """('keys', None) / ('session', (token, user)) / None."""
        keys = self.headers.get("X-ApiKeys")
        if keys:
            parts = dict(p.strip().split("=", 1) for p in keys.split(";") if "=" in p)
            if (parts.get("accessKey"), parts.get("secretKey")) == self.sim.api_keys:
                return ("keys", None)
            return None
        cookie = self.headers.get("X-Cookie") or ""
        match = re.search(r"token=([A-Za-z0-9]+)", cookie)
        if match:
            with self.sim.lock:
                user = self.sim.tokens.get(match.group(1))
            if user:
                return ("session", (match.group(1), user))
        return None

    def route(self, method):
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        query = dict(p.split("=", 1) for p in self.path.split("?", 1)[1].split("&") if "=" in p) if "?" in self.path else {}
        if path.startswith("/_sim/"):
            return self.admin(method, path)
        if method == "POST" and path == "/session":
            return self.login()
        if method == "GET" and path == "/server/status":
            return self.send_json(200, {"status": "ready", "code": 200})
        who = self.caller()
        if who is None:
            return self.error(401, "Invalid Credentials")
        table = [
            ("DELETE", r"/session", self.logout),
            ("GET", r"/server/properties", self.properties),
            ("GET", r"/editor/scan/templates", lambda w: self.send_json(200, {"templates": TEMPLATES})),
            ("GET", r"/policies", lambda w: self.send_json(200, {"policies": self.sim.policies})),
            ("GET", r"/folders", lambda w: self.send_json(200, {"folders": self.sim.folders})),
            ("POST", r"/folders", self.create_folder),
            ("GET", r"/scans", self.list_scans),
            ("POST", r"/scans", self.create_scan),
            ("POST", r"/scans/(\d+)/launch", self.launch),
            ("GET", r"/scans/(\d+)", self.scan_details),
            ("DELETE", r"/scans/(\d+)", self.delete_scan),
            ("POST", r"/scans/(\d+)/export", self.export),
            ("GET", r"/scans/(\d+)/export/(\d+)/status", self.export_status),
            ("GET", r"/scans/(\d+)/export/(\d+)/download", self.download),
        ]
        for verb, pattern, func in table:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                self.query = query
                return func(who, *match.groups())
        return self.error(404, "The requested file was not found")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")

    def do_PUT(self):
        self.route("PUT")

    # -- admin (test switches)
    def admin(self, method, path):
        if not secrets.compare_digest(self.headers.get("X-Sim-Token") or "", self.sim.conf["admin_token"]):
            return self.error(403, "X-Sim-Token required")
        sim = self.sim
        if method == "POST" and path == "/_sim/config":
            body = self.body()
            if not isinstance(body, dict):
                return self.error(400, "JSON object expected")
            with sim.lock:
                if body.get("reset"):
                    sim.switches = copy.deepcopy(sim.initial_switches)
                    sim.denied_users.clear()
                for section in ("default", "server"):
                    sim.switches[section].update(body.get(section) or {})
                for target, behaviour in (body.get("targets") or {}).items():
                    if behaviour is None:
                        sim.switches["targets"].pop(target, None)
                    else:
                        sim.switches["targets"][target] = dict(behaviour)
                sim.users.update(body.get("users") or {})
                switches = copy.deepcopy(sim.switches)
            return self.send_json(200, switches)
        if method == "POST" and path == "/_sim/reset":
            with sim.lock:
                sim.switches = copy.deepcopy(sim.initial_switches)
                sim.denied_users.clear()
            return self.send_json(200, {})
        if method == "GET" and path == "/_sim/state":
            with sim.lock:
                scans = {}
                for scan in sim.scans.values():
                    scans[scan["id"]] = {"name": scan["name"], "targets": scan["targets"],
                                         "runs": [{"uuid": r["uuid"], "status": sim.run_status(r)} for r in scan["history"]]}
                return self.send_json(200, {"switches": sim.switches, "counters": sim.counters, "scans": scans,
                                            "sessions": len(sim.tokens)})
        return self.error(404, "no such admin call")

    # -- session
    def login(self):
        body = self.body() or {}
        user, password = body.get("username"), body.get("password")
        with self.sim.lock:
            if user in self.sim.denied_users:
                self.sim.counters["relogin_denied"] += 1
                ok = False
            else:
                ok = user in self.sim.users and secrets.compare_digest(str(self.sim.users[user]), str(password))
            if ok:
                token = secrets.token_hex(24)
                self.sim.tokens[token] = user
                self.sim.counters["logins"] += 1
        if not ok:
            return self.error(401, "Invalid Credentials")
        return self.send_json(200, {"token": token})

    def logout(self, who):
        if who[0] == "session":
            with self.sim.lock:
                self.sim.tokens.pop(who[1][0], None)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def properties(self, who):
        server = self.sim.switches["server"]
        self.send_json(200, {
            "nessus_type": server["nessus_type"],
            "server_version": "10.7.1",
            "nessus_ui_version": "10.7.1",
            "license": {"type": "manager" if "Manager" in server["nessus_type"] else "home",
                        "features": {"scan_api": bool(server["scan_api"]), "api": True}},
        })

    # -- folders
    def create_folder(self, who):
        body = self.body() or {}
        if not body.get("name"):
            return self.error(400, "Invalid 'name' field")
        with self.sim.lock:
            folder = {"id": self.sim.new_id(), "name": body["name"], "type": "custom", "default_tag": 0}
            self.sim.folders.append(folder)
        self.send_json(200, {"id": folder["id"]})

    # -- scans
    def _scan(self, scan_id):
        return self.sim.scans.get(int(scan_id))

    def _api_refused(self, targets):
        return not self.sim.switches["server"]["scan_api"] or not self.sim.behaviour(targets)["scan_api"]

    def list_scans(self, who):
        with self.sim.lock:
            scans = [{"id": s["id"], "name": s["name"], "folder_id": s["folder_id"], "uuid": s["uuid"],
                      "status": self.sim.run_status(s["history"][-1]) if s["history"] else "empty"}
                     for s in self.sim.scans.values()]
        self.send_json(200, {"folders": self.sim.folders, "scans": scans})

    def create_scan(self, who):
        body = self.body()
        if not isinstance(body, dict) or not isinstance(body.get("settings"), dict):
            return self.error(400, "Invalid 'settings' field")
        settings = body["settings"]
        targets = [t.strip() for t in re.split(r"[,\s]+", settings.get("text_targets") or "") if t.strip()]
        if self._api_refused(targets):
            return self.error(412, "API is not available")
        if body.get("uuid") not in [t["uuid"] for t in TEMPLATES]:
            return self.error(400, "Invalid 'uuid' field: template not found")
        if not settings.get("name") or not targets:
            return self.error(400, "Invalid 'name' or 'text_targets' field")
        with self.sim.lock:
            scan_id = self.sim.new_id()
            scan = {"id": scan_id, "uuid": str(uuid.uuid4()), "name": settings["name"], "targets": targets,
                    "folder_id": settings.get("folder_id", 2), "policy_id": settings.get("policy_id"),
                    "template_uuid": body["uuid"], "history": [], "polls": 0, "expired": False,
                    "created": int(time.time())}
            self.sim.scans[scan_id] = scan
        self.send_json(200, {"scan": {"id": scan_id, "uuid": scan["uuid"], "name": scan["name"],
                                      "folder_id": scan["folder_id"], "enabled": False}})

    def launch(self, who, scan_id):
        with self.sim.lock:
            scan = self._scan(scan_id)
            if scan is None:
                return self.error(404, "The requested file was not found")
            if self._api_refused(scan["targets"]):
                refused = True
            else:
                refused = False
                if scan["history"] and self.sim.run_status(scan["history"][-1]) not in FINAL:
                    return self.error(409, "Scan is already running")
                run = {"history_id": self.sim.new_id(), "uuid": str(uuid.uuid4()), "started": time.monotonic(),
                       "creation_date": int(time.time()), "behaviour": self.sim.behaviour(scan["targets"]),
                       "exports": 0}
                scan["history"].append(run)
        if refused:
            return self.error(412, "API is not available")
        self.send_json(200, {"scan_uuid": run["uuid"]})

    def scan_details(self, who, scan_id):
        sim = self.sim
        with sim.lock:
            scan = self._scan(scan_id)
            if scan is None:
                return self.error(404, "The requested file was not found")
            scan["polls"] += 1
            behaviour = sim.behaviour(scan["targets"])
            limit = int(behaviour["rate_limit"])
            if limit and scan["polls"] <= limit:
                throttled = str(behaviour["retry_after"])
            else:
                throttled = None
            expire = int(behaviour["unauthorized_after_polls"])
            drop = False
            if throttled is None and expire and not scan["expired"] and scan["polls"] >= expire + (limit or 0):
                scan["expired"] = True
                drop = True
                if who[0] == "session":
                    token, user = who[1]
                    sim.tokens.pop(token, None)
                    if behaviour["deny_relogin"]:
                        sim.denied_users.add(user)
            now = time.monotonic()
            history = [{"history_id": r["history_id"], "uuid": r["uuid"], "status": sim.run_status(r, now),
                        "creation_date": r["creation_date"], "last_modification_date": int(time.time())}
                       for r in scan["history"]]
            # the details (status, hosts and their progress) of one run: ?history_id=, else the latest
            wanted = self.query.get("history_id")
            runs = [r for r in scan["history"] if wanted is None or str(r["history_id"]) == wanted]
            if wanted is not None and not runs:
                missing = True
            else:
                missing = False
                run = runs[-1] if runs else None
                hosts = sim.run_hosts(scan, run, now) if run else []
                info = {"name": scan["name"], "object_id": scan["id"], "uuid": scan["uuid"],
                        "status": sim.run_status(run, now) if run else "empty", "targets": ",".join(scan["targets"]),
                        "folder_id": scan["folder_id"], "policy": scan["template_uuid"], "hostcount": len(hosts)}
        if throttled is not None:
            return self.error(429, "Too Many Requests", {"Retry-After": throttled})
        if drop:
            return self.error(401, "Invalid Credentials")
        if missing:
            return self.error(404, "The requested file was not found")
        self.send_json(200, {"info": info, "history": history, "hosts": hosts, "vulnerabilities": []})

    def delete_scan(self, who, scan_id):
        with self.sim.lock:
            scan = self._scan(scan_id)
            if scan is None:
                return self.error(404, "The requested file was not found")
            if scan["history"] and self.sim.run_status(scan["history"][-1]) in ("pending", "running"):
                return self.error(409, "Scan is running; stop it first")
            del self.sim.scans[scan["id"]]
        self.send_json(200, {})

    def export(self, who, scan_id):
        body = self.body() or {}
        with self.sim.lock:
            scan = self._scan(scan_id)
            if scan is None:
                return self.error(404, "The requested file was not found")
            if body.get("format") != "nessus":
                return self.error(400, "the simulator exports the 'nessus' format only")
            history_id = self.query.get("history_id")
            runs = [r for r in scan["history"] if history_id is None or str(r["history_id"]) == history_id]
            if not runs:
                return self.error(404, "no such history_id")
            run = runs[-1]
            run["exports"] += 1
            conflict = int(run["behaviour"]["export_conflict"])
            if conflict == -1 or run["exports"] <= conflict or self.sim.run_status(run) in ("pending", "running"):
                busy = True
            else:
                busy = False
                file_id = self.sim.new_id()
                self.sim.exports[file_id] = {"scan_id": scan["id"], "run": run, "started": time.monotonic(),
                                             "token": secrets.token_hex(16)}
        if busy:
            return self.error(409, "Scan is still running")
        self.send_json(200, {"file": file_id, "token": self.sim.exports[file_id]["token"]})

    def _export(self, scan_id, file_id):
        export = self.sim.exports.get(int(file_id))
        if export is None or export["scan_id"] != int(scan_id):
            return None
        return export

    def export_status(self, who, scan_id, file_id):
        export = self._export(scan_id, file_id)
        if export is None:
            return self.error(404, "The requested file was not found")
        ready = time.monotonic() - export["started"] >= float(export["run"]["behaviour"]["export_seconds"])
        self.send_json(200, {"status": "ready" if ready else "loading"})

    def download(self, who, scan_id, file_id):
        export = self._export(scan_id, file_id)
        if export is None:
            return self.error(404, "The requested file was not found")
        if time.monotonic() - export["started"] < float(export["run"]["behaviour"]["export_seconds"]):
            return self.error(409, "Report is still being generated")
        path = self.sim.report_path(export["run"]["behaviour"]["report"])
        try:
            size = os.path.getsize(path)
            handle = open(path, "rb")
        except OSError as exc:
            return self.error(500, "simulator: cannot read report %s: %s" % (path, exc))
        with handle:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Disposition", 'attachment; filename="scan-%s.nessus"' % scan_id)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            while True:
                chunk = handle.read(1 << 20)
                if not chunk:
                    break
                self.wfile.write(chunk)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    with open(args.config) as handle:
        conf = json.load(handle)
    Handler.sim = Sim(conf)
    server = ThreadingHTTPServer((conf.get("host", "127.0.0.1"), int(conf["port"])), Handler)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(conf["cert"], conf["key"])
    # handshake in the handler thread, not in the accept loop (a silent client must not block it)
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    sys.stderr.write("nessus simulator on https://%s:%s\n" % server.server_address[:2])
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
