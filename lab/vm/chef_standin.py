# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""chef-client stand-in for the cloudefigo lab (Debian has no Chef client package).

Installed as /usr/bin/chef-client by the lab's chef package (lab/vm/chef-deb.sh adds the
#!/usr/bin/python3 line; playbooks/tasks/lab_prepare.yml uploads it), run by roles/chef_client
(first run) and its chef-client.service (the schedule).  Python 3 standard library
only: the lab VM has nothing else.  What it does, as chef-client does it:

1. reads client.rb (the lines roles/chef_client writes: ``key 'ruby string'``, ``key :symbol``);
2. with no client key yet, registers with the validator key (POST /clients as the validator, the
   server generates the key) and writes the client key, mode 0600; otherwise signs as the node with
   the client key it has (validatorless, e.g. the key cloudefigo.core.chef_node made);
3. collects ohai-like automatic attributes: ohai_time, hostname, fqdn, ipaddress, macaddress,
   platform, platform_version, kernel, uptime, and ec2 from IMDSv2 (never credentials or user data);
4. creates its node when there is none, applies ``-j`` (run_list and normal attributes), expands
   roles from the server, and saves the node (signed requests, Chef authentication protocol 1.3).

It runs no recipe: the lab has no cookbooks.  Exit codes as chef-client (RFC 062): 0 success,
1 failed run, 2 bad usage or SIGINT, 3 SIGTERM.  Lab-only client.rb keys: ``lab_imds_url`` (IMDS
base URL, '' = no IMDS; default http://169.254.169.254) and ``lab_ohai_json`` (a JSON file merged
over the collected automatic attributes: the controller runs the stand-in for instances without a
VM and gives their ec2 data this way).  See docs/chef.md.
"""
import argparse
import base64
import datetime
import hashlib
import json
import os
import platform
import random
import re
import signal
import socket
import ssl
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

VERSION = "18.0.0-cloudefigo-standin"
SERVER_API_VERSION = "1"
RETRY_STATUSES = (429, 500, 502, 503, 504)
# ohai's ec2 plugin reads the meta-data tree; these leaves, never iam/security-credentials or user-data
EC2_KEYS = ("ami-id", "instance-id", "instance-type", "local-hostname", "local-ipv4", "mac", "public-hostname",
            "public-ipv4", "placement/availability-zone", "placement/region", "security-groups", "reservation-id")


class RunError(Exception):
    """A failed run: the message is what chef-client would print before exiting 1."""


# --- client.rb ----------------------------------------------------------------------------------

_KEY = re.compile(r"([a-z_][a-z0-9_]*)[ \t]+")


def _ruby_single(text):
    """A Ruby single-quoted string literal (only \\\\ and \\' are escapes); None when it is not one."""
    value, end = _scan_single(text, 0)
    return value if value is not None and end == len(text) else None


def _scan_single(text, start):
    """(value, index after the closing quote) of the single-quoted literal at start, or (None, start)."""
    if start >= len(text) or text[start] != "'":
        return None, start
    out, index = [], start + 1
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in "\\'":
            out.append(text[index + 1])
            index += 2
        elif char == "'":
            return "".join(out), index + 1
        else:
            out.append(char)
            index += 1
    return None, start


def parse_value(text):
    """The value of a client.rb setting: a Ruby string, symbol, integer, true/false/nil."""
    single = _ruby_single(text)
    if single is not None:
        return single
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"' and "#{" not in text:
        return json.loads(text)
    if re.match(r"^:[a-z_]+$", text):
        return text[1:]
    if re.match(r"^-?\d+$", text):
        return int(text)
    if text in ("true", "false", "nil"):
        return {"true": True, "false": False, "nil": None}[text]
    if text in ("STDOUT", "STDERR"):
        return text
    raise ValueError(text)


def parse_client_rb(text):
    """{setting: value} and the statements the stand-in cannot read (Ruby code it does not run).

    A statement is ``key value`` with a Ruby single-quoted string (which may span lines, as the
    role writes any value), a double-quoted string without interpolation, a symbol, an integer,
    true/false/nil or STDOUT/STDERR.  Anything else is reported, never evaluated.
    """
    config, ignored, index = {}, [], 0
    while index < len(text):
        eol = text.find("\n", index)
        eol = len(text) if eol < 0 else eol
        line = text[index:eol].strip()
        if not line or line.startswith("#"):
            index = eol + 1
            continue
        start = index + len(text[index:eol]) - len(text[index:eol].lstrip())
        number = text.count("\n", 0, start) + 1
        match = _KEY.match(text, start)
        if match:
            value, after = _scan_single(text, match.end())
            if value is not None:
                rest_end = text.find("\n", after)
                rest_end = len(text) if rest_end < 0 else rest_end
                rest = text[after:rest_end].strip()
                if not rest or rest.startswith("#"):
                    config[match.group(1)] = value
                    index = rest_end + 1
                    continue
            else:
                try:
                    config[match.group(1)] = parse_value(text[match.end():eol].split(" #")[0].strip())
                    index = eol + 1
                    continue
                except ValueError:
                    pass
        ignored.append("%d: %s" % (number, line))
        index = eol + 1
    return config, ignored


# --- RSA PKCS#1 v1.5 signing, pure Python ---------------------------------------------------------

def _der(data, offset):
    """(tag, value, next offset) of the DER element at offset."""
    tag = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        length = int.from_bytes(data[offset:offset + count], "big")
        offset += count
    return tag, data[offset:offset + length], offset + length


def _der_sequence(data):
    tag, body = _der(data, 0)[:2]
    if tag != 0x30:
        raise ValueError("not a DER sequence")
    items, offset = [], 0
    while offset < len(body):
        tag, value, offset = _der(body, offset)
        items.append((tag, value))
    return items


class RSAKey(object):
    """An RSA private key from PEM (PKCS#1 ``RSA PRIVATE KEY`` or PKCS#8 ``PRIVATE KEY``, unencrypted)."""

    def __init__(self, pem):
        if isinstance(pem, bytes):
            pem = pem.decode("ascii", "replace")
        match = re.search(r"-----BEGIN (RSA PRIVATE KEY|PRIVATE KEY)-----(.+?)-----END \1-----", pem, re.S)
        if not match:
            raise RunError("the key is not an unencrypted PEM RSA private key")
        try:
            der = base64.b64decode("".join(match.group(2).split()))
            items = _der_sequence(der)
            if match.group(1) == "PRIVATE KEY":  # PKCS#8: version, algorithm, OCTET STRING (PKCS#1)
                if not (b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01" in items[1][1] and items[2][0] == 0x04):
                    raise ValueError("not an RSA key")
                items = _der_sequence(items[2][1])
            numbers = [int.from_bytes(value, "big") for tag, value in items[1:9] if tag == 0x02]
            self.n, self.e, self.d, self.p, self.q, self.dp, self.dq, self.qinv = numbers
        except (ValueError, IndexError, TypeError) as exc:
            raise RunError("the key is not an unencrypted PEM RSA private key: %s" % exc)
        self.size = (self.n.bit_length() + 7) // 8

    def sign_sha256(self, message):
        """RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 8.2.1), CRT, checked with the public key."""
        digest_info = bytes.fromhex("3031300d060960864801650304020105000420") + hashlib.sha256(message).digest()
        if self.size < len(digest_info) + 11:
            raise RunError("the key is too short to sign")
        block = b"\x00\x01" + b"\xff" * (self.size - len(digest_info) - 3) + b"\x00" + digest_info
        value = int.from_bytes(block, "big")
        m1, m2 = pow(value, self.dp, self.p), pow(value, self.dq, self.q)
        signature = m2 + (self.qinv * (m1 - m2) % self.p) * self.q
        if pow(signature, self.e, self.n) != value:  # a CRT fault must never leak a bad signature
            raise RunError("RSA signature self-check failed")
        return signature.to_bytes(self.size, "big")


def _b64_sha256(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def sign_headers(key, user_id, method, path, body=b"", timestamp=None):
    """Chef authentication protocol 1.3 headers (the same canonical string as plugins/module_utils/_chef.py)."""
    timestamp = timestamp or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    content_hash = _b64_sha256(body)
    canonical = "\n".join([
        "Method:%s" % method.upper(),
        "Path:%s" % path,
        "X-Ops-Content-Hash:%s" % content_hash,
        "X-Ops-Sign:version=1.3",
        "X-Ops-Timestamp:%s" % timestamp,
        "X-Ops-UserId:%s" % user_id,
        "X-Ops-Server-API-Version:%s" % SERVER_API_VERSION,
    ]).encode("utf-8")
    encoded = base64.b64encode(key.sign_sha256(canonical)).decode("ascii")
    headers = {
        "X-Ops-Sign": "algorithm=sha256;version=1.3",
        "X-Ops-Userid": user_id,
        "X-Ops-Timestamp": timestamp,
        "X-Ops-Content-Hash": content_hash,
        "X-Ops-Server-API-Version": SERVER_API_VERSION,
    }
    for index in range(0, len(encoded), 60):
        headers["X-Ops-Authorization-%d" % (index // 60 + 1)] = encoded[index:index + 60]
    return headers


# --- the Chef API -----------------------------------------------------------------------------------

class ChefAPI(object):
    def __init__(self, server_url, user_id, key, ssl_context, timeout=30, retries=3):
        parts = urllib.parse.urlsplit(server_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RunError("chef_server_url must be an http(s) URL, not %r" % server_url)
        self.base = "%s://%s" % (parts.scheme, parts.netloc)
        self.prefix = parts.path
        self.user_id, self.key, self.context = user_id, key, ssl_context
        self.timeout, self.retries = timeout, retries

    def request(self, method, path, data=None, missing_ok=False):
        full = urllib.parse.quote(self.prefix + path)
        body = json.dumps(data, separators=(",", ":")).encode("utf-8") if data is not None else b""
        for attempt in range(self.retries + 1):
            headers = {"Accept": "application/json", "X-Chef-Version": "18.0.0"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            headers.update(sign_headers(self.key, self.user_id, method, full, body))
            req = urllib.request.Request(self.base + full, data=body if data is not None else None, headers=headers,
                                         method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=self.context) as response:
                    text = response.read()
                    return json.loads(text) if text else {}
            except urllib.error.HTTPError as exc:
                status, text = exc.code, exc.read().decode("utf-8", "replace")
                if status == 404 and missing_ok:
                    return None
                if status in RETRY_STATUSES and attempt < self.retries:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise ChefHTTPError(status, "%d %s %s: %s" % (status, method, self.prefix + path, _error_text(text)))
            except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
                if attempt < self.retries:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise RunError("cannot reach the Chef server at %s: %s" % (self.base, getattr(exc, "reason", exc)))
        raise RunError("unreachable")  # pragma: no cover


class ChefHTTPError(RunError):
    def __init__(self, status, message):
        super(ChefHTTPError, self).__init__(message)
        self.status = status


def _error_text(text):
    try:
        error = json.loads(text).get("error", text)
    except (ValueError, AttributeError):
        return text.strip()[:500]
    return "; ".join(str(item) for item in error) if isinstance(error, list) else str(error)


def ssl_context(config, config_dir):
    """verify_peer by default, with client.rb's ssl_ca_file and the trusted_certs directory."""
    if config.get("ssl_verify_mode", "verify_peer") == "verify_none":
        return ssl._create_unverified_context()  # nosec - asked for in client.rb (a lab)
    context = ssl.create_default_context(cafile=config.get("ssl_ca_file") or None)
    trusted = config.get("trusted_certs_dir") or os.path.join(config_dir, "trusted_certs")
    if os.path.isdir(trusted):
        for name in sorted(os.listdir(trusted)):
            if name.endswith((".crt", ".pem")):
                context.load_verify_locations(cafile=os.path.join(trusted, name))
    return context


# --- registration --------------------------------------------------------------------------------

def write_private(path, text):
    """Write a secret atomically, mode 0600 from the start (never world-readable for an instant)."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temp = tempfile.mkstemp(prefix=".client.pem.", dir=directory)
    try:
        os.fchmod(handle, 0o600)
        os.write(handle, text.encode("ascii"))
        os.fsync(handle)
    finally:
        os.close(handle)
    os.rename(temp, path)


def client_key(config, node_name, context, log):
    """The node's client key: client_key if there, else a new client registered with the validator."""
    path = config.get("client_key") or "/etc/chef/client.pem"
    if os.path.exists(path):
        with open(path, "rb") as handle:
            return RSAKey(handle.read())
    validator_key = config.get("validation_key") or "/etc/chef/validation.pem"
    validator = config.get("validation_client_name") or "chef-validator"
    if not os.path.exists(validator_key):
        raise RunError("no client key at %s and no validation key at %s: cannot authenticate as %s"
                       % (path, validator_key, node_name))
    log("Client key %s is not present - registering with the validator %s" % (path, validator))
    with open(validator_key, "rb") as handle:
        api = ChefAPI(config["chef_server_url"], validator, RSAKey(handle.read()), context)
    try:
        answer = api.request("POST", "/clients", {"name": node_name, "admin": False, "create_key": True})
    except ChefHTTPError as exc:
        if exc.status == 409:
            # chef-client would ask to regenerate the existing client's key: never take over a client
            raise RunError("client %s is already registered; a validator does not take over an existing client"
                           " (delete the client, or give this node its client.pem)" % node_name)
        raise
    pem = (answer.get("chef_key") or {}).get("private_key") or answer.get("private_key")
    if not pem:
        raise RunError("the Chef server returned no private key for the new client %s" % node_name)
    write_private(path, pem)
    log("Registered client %s, key written to %s (0600)" % (node_name, path))
    return RSAKey(pem)


# --- ohai ------------------------------------------------------------------------------------------

def _read(path, default=None):
    try:
        with open(path) as handle:
            return handle.read().strip()
    except (IOError, OSError):
        return default


def imds(base_url, timeout=2.0):
    """ec2 attributes from IMDSv2 (token first), or None when there is no IMDS."""
    base = base_url.rstrip("/")
    try:
        put = urllib.request.Request(base + "/latest/api/token", method="PUT", data=b"",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
        with urllib.request.urlopen(put, timeout=timeout) as response:
            token = response.read().decode("ascii").strip()
    except (urllib.error.URLError, socket.timeout, ConnectionError, ValueError):
        return None
    ec2 = {}
    for leaf in EC2_KEYS:
        get = urllib.request.Request(base + "/latest/meta-data/" + leaf, headers={"X-aws-ec2-metadata-token": token})
        try:
            with urllib.request.urlopen(get, timeout=timeout) as response:
                ec2[leaf.replace("/", "_").replace("-", "_")] = response.read().decode("utf-8").strip()
        except (urllib.error.URLError, socket.timeout, ConnectionError):
            continue
    return ec2 or None


def primary_address(server_url):
    """The address the node uses to reach the Chef server (what ohai reports as ipaddress on one NIC)."""
    host = urllib.parse.urlsplit(server_url).hostname or "10.255.255.255"
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.connect((host, 9))
            return probe.getsockname()[0]
        finally:
            probe.close()
    except (OSError, socket.error):
        return "127.0.0.1"


def os_release():
    out = {}
    for line in (_read("/etc/os-release", "") or "").splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            out[key] = value.strip().strip('"')
    return out


def ohai(config):
    release = os_release()
    uname = platform.uname()
    fqdn = socket.getfqdn()
    address = primary_address(config.get("chef_server_url", ""))
    platform_name = release.get("ID", uname.system.lower())
    version = _read("/etc/debian_version") if platform_name == "debian" else release.get("VERSION_ID", "")
    uptime = _read("/proc/uptime", "0 0").split()[0]
    data = {
        "ohai_time": time.time(),
        "hostname": socket.gethostname().split(".")[0],
        "machinename": socket.gethostname(),
        "fqdn": fqdn,
        "domain": fqdn.partition(".")[2] or None,
        "ipaddress": address,
        "os": uname.system.lower(),
        "os_version": uname.release,
        "platform": platform_name,
        "platform_version": version,
        "platform_family": release.get("ID_LIKE", platform_name).split()[0],
        "kernel": {"name": uname.system, "release": uname.release, "version": uname.version,
                   "machine": uname.machine, "os": "GNU/Linux" if uname.system == "Linux" else uname.system},
        "uptime_seconds": int(float(uptime)),
        "languages": {"python": {"version": platform.python_version()}},
        "chef_packages": {"chef": {"version": VERSION, "chef_root": os.path.abspath(__file__)},
                          "ohai": {"version": VERSION}},
    }
    imds_url = config.get("lab_imds_url", "http://169.254.169.254")
    ec2 = imds(imds_url) if imds_url else None
    if ec2:
        data["ec2"] = ec2
        data["cloud"] = {"provider": "ec2", "local_ipv4": ec2.get("local_ipv4"),
                         "public_ipv4": ec2.get("public_ipv4"), "local_hostname": ec2.get("local_hostname")}
    overlay = config.get("lab_ohai_json")
    if overlay:
        with open(overlay) as handle:
            deep_merge(data, json.load(handle))
    return data


def deep_merge(into, other):
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            deep_merge(into[key], value)
        else:
            into[key] = value
    return into


# --- the run ----------------------------------------------------------------------------------------

def expand_run_list(api, run_list, seen=None):
    """(recipes, roles, default attributes, override attributes), roles read from the server."""
    seen = set() if seen is None else seen
    recipes, roles, default, override = [], [], {}, {}
    for item in run_list:
        match = re.match(r"^(recipe|role)\[([^\]]+)\]$", item) or re.match(r"^()([A-Za-z0-9_:.@-]+)$", item)
        if not match:
            raise RunError("run list item %r is neither recipe[...] nor role[...]" % item)
        kind, name = match.group(1) or "recipe", match.group(2)
        if kind == "recipe":
            recipes.append(name)
            continue
        if name in seen:
            continue
        seen.add(name)
        role = api.request("GET", "/roles/%s" % name, missing_ok=True)
        if role is None:
            raise RunError("412 Precondition Failed: role[%s] is in the run list but not on the Chef server" % name)
        roles.append(name)
        sub = expand_run_list(api, role.get("run_list") or [], seen)
        recipes.extend(sub[0])
        roles.extend(sub[1])
        deep_merge(default, role.get("default_attributes") or {})
        deep_merge(default, sub[2])
        deep_merge(override, role.get("override_attributes") or {})
        deep_merge(override, sub[3])
    return recipes, roles, default, override


def converge(args, log):
    started = time.time()
    config_path = args.config
    try:
        with open(config_path) as handle:
            config, ignored = parse_client_rb(handle.read())
    except (IOError, OSError) as exc:
        raise RunError("cannot read the configuration %s: %s" % (config_path, exc))
    for line in ignored:
        log("WARN: %s line %s is not read by the stand-in (it runs no Ruby)" % (config_path, line))
    if not config.get("chef_server_url"):
        raise RunError("%s sets no chef_server_url" % config_path)
    node_name = args.node_name or config.get("node_name") or socket.getfqdn()
    log("Starting Chef Infra Client, version %s" % VERSION)
    log("[%s] Chef server %s, node %s" % (datetime.datetime.now().isoformat(timespec="seconds"),
                                          config["chef_server_url"], node_name))
    context = ssl_context(config, os.path.dirname(os.path.abspath(config_path)))
    key = client_key(config, node_name, context, log)
    api = ChefAPI(config["chef_server_url"], node_name, key, context)
    first_boot = {}
    if args.json_attributes:
        try:
            with open(args.json_attributes) as handle:
                first_boot = json.load(handle)
        except (IOError, OSError, ValueError) as exc:
            raise RunError("cannot read the JSON attributes %s: %s" % (args.json_attributes, exc))
        if not isinstance(first_boot, dict):
            raise RunError("%s must hold a JSON object" % args.json_attributes)
    automatic = ohai(config)
    node = api.request("GET", "/nodes/%s" % node_name, missing_ok=True)
    if node is None:
        log("Creating node %s" % node_name)
        node = {"name": node_name, "json_class": "Chef::Node", "chef_type": "node", "chef_environment": "_default",
                "run_list": [], "normal": {}, "default": {}, "override": {}, "automatic": {}}
        api.request("POST", "/nodes", node)
    environment = args.environment or config.get("environment") or node.get("chef_environment") or "_default"
    run_list = first_boot.get("run_list", node.get("run_list") or [])
    if not isinstance(run_list, list):
        raise RunError("run_list in %s must be a list" % args.json_attributes)
    recipes, roles, default, override = expand_run_list(api, run_list)
    normal = deep_merge(dict(node.get("normal") or {}), {k: v for k, v in first_boot.items() if k != "run_list"})
    automatic.update({"recipes": recipes, "roles": roles, "expanded_run_list": ["recipe[%s]" % r for r in recipes]})
    log("Run List is [%s]" % ", ".join(run_list))
    log("Run List expands to [%s]" % ", ".join(recipes))
    node.update({"chef_environment": environment, "run_list": run_list, "normal": normal, "default": default,
                 "override": override, "automatic": automatic})
    api.request("PUT", "/nodes/%s" % node_name, node)
    log("Chef Infra Client finished, 0/0 resources updated in %.2f seconds (node %s saved, ohai_time %.0f)"
        % (time.time() - started, node_name, automatic["ohai_time"]))


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="chef-client", description="chef-client stand-in of the cloudefigo lab")
    parser.add_argument("-c", "--config", default="/etc/chef/client.rb")
    parser.add_argument("-j", "--json-attributes")
    parser.add_argument("-E", "--environment")
    parser.add_argument("-N", "--node-name")
    parser.add_argument("-s", "--splay", type=int, default=0, help="sleep up to this many seconds first")
    parser.add_argument("-l", "--log_level", "--log-level")
    parser.add_argument("-L", "--logfile")
    parser.add_argument("--once", action="store_true")
    parser.add_argument("--no-fork", action="store_true")
    parser.add_argument("-v", "--version", action="store_true")
    return parser.parse_args(argv)  # exits 2 on bad usage, as chef-client's option parser


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        print("Chef Infra Client: %s" % VERSION)
        return 0
    out = open(args.logfile, "a") if args.logfile else sys.stdout

    def log(message):
        out.write(message + "\n")
        out.flush()

    def interrupted(signum, _frame):
        log("FATAL: interrupted by signal %d" % signum)
        sys.exit(2 if signum == signal.SIGINT else 3)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    if args.splay > 0:
        time.sleep(random.uniform(0, args.splay))  # nosec - spreading runs, not security
    try:
        converge(args, log)
    except RunError as exc:
        log("FATAL: Chef Infra Client failed: %s" % exc)
        sys.stderr.write("chef-client: %s\n" % exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
