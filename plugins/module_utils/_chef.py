# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Chef Infra Server API client: signed requests, retries, paged (partial) search.

Private to the collection: not a public API, may change without notice.

pychef is not used: 0.3.0 does not import on Python >= 3.10, returns only the first 1,000
search rows and drops the server's error bodies.  Signing follows the Chef authentication
protocol (1.3 by default: SHA-256 and a PKCS#1 v1.5 signature; 1.0 for old servers: SHA-1 and
a raw RSA private-key operation over the canonical string).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import time
import traceback

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

try:
    import requests
except ImportError:
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None

try:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa
except ImportError:
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None

try:
    from urllib.parse import quote, urlsplit
except ImportError:  # pragma: no cover - Python 2 is not supported by the collection
    from urlparse import urlsplit  # type: ignore
    from urllib import quote  # type: ignore

SERVER_API_VERSION = "1"
AUTH_PROTOCOLS = ("1.3", "1.0")
# retried: rate limiting, server errors and timeouts; never a refused connection or an unknown
# host name (a wrong URL does not heal: fail within seconds and say which option to fix)
RETRY_STATUSES = (429, 500, 502, 503, 504)
# Big enough that an audit of 5,000 nodes costs two requests (the full page, then the empty
# one that proves it was the last).  search() stops at the first short page, so a server that
# caps rows below page_size would end a search early: keep page_size at or below such a cap.
DEFAULT_PAGE_SIZE = 5000


class ChefError(Exception):
    """A failed Chef API call; ``status`` is the HTTP status (None when the server was unreachable)."""

    def __init__(self, message, status=None, body=None):
        super(ChefError, self).__init__(message)
        self.status = status
        self.body = body


# --- signing ---------------------------------------------------------------------------------

def load_private_key(pem):
    """An RSA private key from PEM text (PKCS#1 or PKCS#8, unencrypted)."""
    if isinstance(pem, str):
        pem = pem.encode("utf-8")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ChefError("the client key is not an unencrypted PEM private key: %s" % exc)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ChefError("the client key must be an RSA key")
    return key


def _b64_digest(data, algorithm):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode("ascii")


def timestamp_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def canonical_request(method, path, body, user_id, timestamp, protocol="1.3",
                      server_api_version=SERVER_API_VERSION):
    """The string a Chef request signature covers (``path`` without the query string)."""
    method = method.upper()
    if protocol == "1.3":
        return "\n".join([
            "Method:%s" % method,
            "Path:%s" % path,
            "X-Ops-Content-Hash:%s" % _b64_digest(body, "sha256"),
            "X-Ops-Sign:version=1.3",
            "X-Ops-Timestamp:%s" % timestamp,
            "X-Ops-UserId:%s" % user_id,
            "X-Ops-Server-API-Version:%s" % server_api_version,
        ])
    if protocol == "1.0":
        return "\n".join([
            "Method:%s" % method,
            "Hashed Path:%s" % _b64_digest(path, "sha1"),
            "X-Ops-Content-Hash:%s" % _b64_digest(body, "sha1"),
            "X-Ops-Timestamp:%s" % timestamp,
            "X-Ops-UserId:%s" % user_id,
        ])
    raise ChefError("auth_protocol must be one of %s, not %r" % (", ".join(AUTH_PROTOCOLS), protocol))


def _rsa_private_encrypt(key, message):
    """PKCS#1 v1.5 type-1 padding + the raw RSA private operation (OpenSSL's RSA_private_encrypt).

    Protocol 1.0 signs the canonical string itself, not a DigestInfo, which cryptography's
    sign() cannot express.
    """
    numbers = key.private_numbers()
    size = (key.key_size + 7) // 8
    if len(message) > size - 11:
        raise ChefError("canonical request too long for a %d-bit key" % key.key_size)
    block = b"\x00\x01" + b"\xff" * (size - 3 - len(message)) + b"\x00" + message
    value = pow(int.from_bytes(block, "big"), numbers.d, numbers.public_numbers.n)
    return value.to_bytes(size, "big")


def sign_request(key, user_id, method, path, body=b"", protocol="1.3", timestamp=None,
                 server_api_version=SERVER_API_VERSION):
    """The authentication headers for one request."""
    timestamp = timestamp or timestamp_now()
    canonical = canonical_request(method, path, body, user_id, timestamp, protocol, server_api_version).encode("utf-8")
    if protocol == "1.3":
        signature = key.sign(canonical, padding.PKCS1v15(), hashes.SHA256())
        content_hash = _b64_digest(body, "sha256")
        sign = "algorithm=sha256;version=1.3"
    else:
        signature = _rsa_private_encrypt(key, canonical)
        content_hash = _b64_digest(body, "sha1")
        sign = "algorithm=sha1;version=1.0"
    encoded = base64.b64encode(signature).decode("ascii")
    headers = {
        "X-Ops-Sign": sign,
        "X-Ops-Userid": user_id,
        "X-Ops-Timestamp": timestamp,
        "X-Ops-Content-Hash": content_hash,
        "X-Ops-Server-API-Version": server_api_version,
    }
    for index in range(0, len(encoded), 60):
        headers["X-Ops-Authorization-%d" % (index // 60 + 1)] = encoded[index:index + 60]
    return headers


# --- the client ------------------------------------------------------------------------------

def _error_text(response):
    """The server's own explanation: Chef answers {"error": [...]} or {"error": "..."}."""
    try:
        data = response.json()
    except ValueError:
        return (response.text or "").strip()[:2000]
    if isinstance(data, dict) and "error" in data:
        error = data["error"]
        return "; ".join(str(item) for item in error) if isinstance(error, list) else str(error)
    return json.dumps(data)[:2000]


def connection_problem(exc):
    """A short name for why a connection failed (the exception text says the rest)."""
    text = repr(exc)
    if "NameResolution" in text or "Name or service not known" in text or "getaddrinfo" in text \
            or "nodename nor servname" in text or "Temporary failure in name resolution" in text:
        return "the host name does not resolve"
    if "Connection refused" in text or "ConnectionRefused" in text:
        return "connection refused"
    return "connection failed"


def insecure_url_problem(url, option, allow_insecure_http):
    """Why ``url`` may not be used (None when it may): plain http only when explicitly allowed."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "%s must be an https URL, not %r" % (option, url)
    if parts.scheme == "http" and not allow_insecure_http:
        return ("%s %s is plain http: the requests, their signatures and any key or token in them would cross the"
                " network unencrypted. Use https, or set allow_insecure_http=true (a lab only)" % (option, url))
    return None


class ChefClient(object):
    """Signed JSON requests to one Chef server (``server_url`` may include /organizations/NAME)."""

    def __init__(self, server_url, client_name, key, validate_certs=True, ca_path=None, timeout=30,
                 auth_protocol="1.3", retries=3, backoff=0.5, session=None):
        if auth_protocol not in AUTH_PROTOCOLS:
            raise ChefError("auth_protocol must be one of %s, not %r" % (", ".join(AUTH_PROTOCOLS), auth_protocol))
        parts = urlsplit(server_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ChefError("chef_server_url must be an http(s) URL, not %r" % server_url)
        self.base_url = "%s://%s" % (parts.scheme, parts.netloc)
        self.base_path = parts.path
        self.client_name = client_name
        self.key = load_private_key(key) if not isinstance(key, rsa.RSAPrivateKey) else key
        self.auth_protocol = auth_protocol
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.verify = (ca_path or True) if validate_certs else False
        self.session = session or requests.Session()
        self.request_count = 0

    def request(self, method, path, params=None, data=None, missing_ok=False):
        """One API call; JSON in, JSON out.  404 gives None when ``missing_ok``."""
        full_path = self.base_path + path
        body = json.dumps(data, separators=(",", ":")).encode("utf-8") if data is not None else b""
        url = self.base_url + quote(full_path)
        attempt = 0
        while True:
            attempt += 1
            headers = {"Accept": "application/json", "X-Chef-Version": "12.0.0"}
            if data is not None:
                headers["Content-Type"] = "application/json"
            # signatures carry a timestamp: sign every attempt afresh
            headers.update(sign_request(self.key, self.client_name, method, quote(full_path), body, self.auth_protocol))
            self.request_count += 1
            try:
                response = self.session.request(method, url, params=params, data=body or None, headers=headers,
                                                timeout=self.timeout, verify=self.verify)
            except requests.exceptions.SSLError as exc:
                raise ChefError("TLS error talking to %s: %s (set chef_ca_path, or chef_validate_certs=false for a lab)"
                                % (self.base_url, exc))
            except requests.exceptions.Timeout as exc:
                if attempt <= self.retries:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                    continue
                raise ChefError("the Chef server at %s did not answer %s %s within %ss, %d times: %s; check"
                                " chef_server_url and timeout"
                                % (self.base_url, method, full_path, self.timeout, attempt, exc))
            except requests.exceptions.RequestException as exc:
                raise ChefError("cannot connect to the Chef server at %s (%s): %s; check chef_server_url"
                                % (self.base_url, connection_problem(exc), exc))
            if response.status_code in RETRY_STATUSES and attempt <= self.retries:
                time.sleep(self._retry_delay(response, attempt))
                continue
            return self._result(response, method, full_path, missing_ok)

    def _retry_delay(self, response, attempt):
        try:
            return min(float(response.headers.get("Retry-After", "")), 60.0)
        except ValueError:
            return self.backoff * 2 ** (attempt - 1)

    def _result(self, response, method, full_path, missing_ok):
        status = response.status_code
        if status == 404 and missing_ok:
            return None
        if status >= 400:
            hint = ""
            if status == 401:
                hint = " (check client_name and the client key, and that the clock is in sync)"
            elif status == 403:
                hint = " (client %r lacks the permission)" % self.client_name
            raise ChefError("Chef server answered %d to %s %s: %s%s"
                            % (status, method, full_path, _error_text(response), hint), status=status,
                            body=response.text)
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise ChefError("Chef server answered %s %s with non-JSON: %r" % (method, full_path, response.text[:500]),
                            status=status)

    # --- convenience ---

    def get(self, path, missing_ok=False, params=None):
        return self.request("GET", path, params=params, missing_ok=missing_ok)

    def post(self, path, data):
        return self.request("POST", path, data=data)

    def put(self, path, data):
        return self.request("PUT", path, data=data)

    def delete(self, path, missing_ok=True):
        return self.request("DELETE", path, missing_ok=missing_ok)

    def search(self, index, query="*:*", fields=None, page_size=DEFAULT_PAGE_SIZE):
        """Every row matching ``query``.

        With ``fields`` ({"out_name": ["attr", "path"]}) a partial search: rows are the ``data``
        dicts.  Pages until a short page because goiardi reports ``total`` as the size of the
        returned page.  Pages need a stable order: goiardi's paged partial search loses rows
        unless sorted by ``url``, while its full search sorts by an attribute and scrambles pages
        when asked for ``url`` (measured on 0.11.10), so full searches sort by ``name``.
        """
        path = "/search/%s" % index
        rows_out = []
        start = 0
        sort = "url asc" if fields else "name asc"
        while True:
            params = {"q": query, "rows": page_size, "start": start, "sort": sort}
            if fields:
                answer = self.request("POST", path, params=params, data=fields)
                rows = [row.get("data", {}) for row in answer.get("rows", [])]
            else:
                answer = self.request("GET", path, params=params)
                rows = answer.get("rows", [])
            rows_out.extend(rows)
            if len(rows) < page_size:
                return rows_out
            start += len(rows)


# --- modules ---------------------------------------------------------------------------------

def chef_argument_spec(aws_module=False):
    """Connection options, kept in sync with doc_fragments/chef.py.

    Documented by fragment ``cloudefigo.core.chef`` plus ``cloudefigo.core.chef.validate_certs``
    (ChefModule: ``chef_validate_certs`` with the 0.1.0 name ``validate_certs`` as a deprecated
    alias) or ``cloudefigo.core.chef.validate_certs_aws`` (``aws_module``: AnsibleAWSModule keeps
    ``validate_certs`` for AWS, so Chef's option has no alias there).
    """
    spec = dict(
        chef_server_url=dict(type="str", required=True, fallback=(env_fallback, ["CHEF_SERVER_URL"])),
        client_name=dict(type="str", required=True, fallback=(env_fallback, ["CHEF_CLIENT_NAME"])),
        client_key=dict(type="path", no_log=False, fallback=(env_fallback, ["CHEF_CLIENT_KEY_PATH"])),
        client_key_content=dict(type="str", no_log=True, fallback=(env_fallback, ["CHEF_CLIENT_KEY"])),
        # the Chef connection's own TLS options: in a module that also talks to AWS, validate_certs
        # is AWS's (and a group/aws default), and must never switch Chef's verification off
        chef_validate_certs=dict(type="bool", default=True),
        chef_ca_path=dict(type="path", aliases=["ca_path"],
                          deprecated_aliases=[dict(name="ca_path", version="0.3.0", collection_name="cloudefigo.core")]),
        allow_insecure_http=dict(type="bool", default=False),
        timeout=dict(type="int", default=30),
        auth_protocol=dict(type="str", default="1.3", choices=list(AUTH_PROTOCOLS)),
    )
    if not aws_module:
        spec["chef_validate_certs"].update(
            aliases=["validate_certs"],
            deprecated_aliases=[dict(name="validate_certs", version="0.3.0", collection_name="cloudefigo.core")])
    return spec


CHEF_MUTUALLY_EXCLUSIVE = [("client_key", "client_key_content")]
CHEF_REQUIRED_ONE_OF = [("client_key", "client_key_content")]


def check_chef_libs(module):
    if not HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"), exception=REQUESTS_IMPORT_ERROR)
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)


def client_from_params(params):
    """A ChefClient from the connection options (raises ChefError)."""
    key = params.get("client_key_content")
    if not key:
        path = params.get("client_key")
        try:
            with open(path, "rb") as handle:
                key = handle.read()
        except (IOError, OSError) as exc:
            raise ChefError("cannot read client_key %s: %s" % (path, exc))
    problem = insecure_url_problem(params["chef_server_url"], "chef_server_url", params.get("allow_insecure_http"))
    if problem:
        raise ChefError(problem)
    validate = params.get("chef_validate_certs")
    return ChefClient(params["chef_server_url"], params["client_name"], key,
                      validate_certs=True if validate is None else validate, ca_path=params.get("chef_ca_path"),
                      timeout=params.get("timeout") or 30, auth_protocol=params.get("auth_protocol") or "1.3")


def chef_client(module):
    """The ChefClient for any module that has the chef_argument_spec() options (also AnsibleAWSModule)."""
    check_chef_libs(module)
    try:
        return client_from_params(module.params)
    except ChefError as exc:
        module.fail_json(msg=str(exc))


class ChefModule(AnsibleModule):
    """An AnsibleModule that owns the Chef connection options and the client."""

    def __init__(self, argument_spec=None, mutually_exclusive=None, required_one_of=None, **kwargs):
        spec = chef_argument_spec()
        spec.update(argument_spec or {})
        super(ChefModule, self).__init__(
            argument_spec=spec,
            mutually_exclusive=CHEF_MUTUALLY_EXCLUSIVE + list(mutually_exclusive or []),
            required_one_of=CHEF_REQUIRED_ONE_OF + list(required_one_of or []),
            **kwargs)
        self._chef = None

    @property
    def chef(self):
        if self._chef is None:
            self._chef = chef_client(self)
        return self._chef

    def fail_chef(self, exc, msg=None, **result):
        detail = str(exc)
        message = "%s: %s" % (msg, detail) if msg else detail
        self.fail_json(msg=message, status=getattr(exc, "status", None), **result)


# --- node helpers ----------------------------------------------------------------------------

ATTRIBUTE_PRECEDENCE = ("automatic", "override", "normal", "default")


def node_attribute(node, *path):
    """An attribute from a full node object, highest precedence first."""
    for level in ATTRIBUTE_PRECEDENCE:
        value = node.get(level) or {}
        for part in path:
            if not isinstance(value, dict) or part not in value:
                value = None
                break
            value = value[part]
        if value is not None:
            return value
    return None


def ohai_age(ohai_time, now=None):
    """Seconds since the last converge, or None when the node never converged."""
    if ohai_time in (None, ""):
        return None
    try:
        return max(0, int((now if now is not None else time.time()) - float(ohai_time)))
    except (TypeError, ValueError):
        return None


# --- ownership marks ---------------------------------------------------------------------------
# chef_node writes them as the node's normal attributes {"cloudefigo": {"instance_id", "launch_id"}}
# when it creates the node.  They are only as trustworthy as the node's ACL: the node's own client
# (the instance) can rewrite its node.  They stop the controller from being steered onto a node of
# another instance or launch (a copied tag, a reused name); they do not prove who runs a node.

OWNER_ATTRIBUTE = "cloudefigo"


def owner_of(marks):
    """{"instance_id", "launch_id"} from a marks dict, or None when there are no marks."""
    if not isinstance(marks, dict):
        return None
    owner = {
        "instance_id": marks.get("instance_id") if isinstance(marks.get("instance_id"), str) else None,
        "launch_id": marks.get("launch_id") if isinstance(marks.get("launch_id"), str) else None,
    }
    return owner if owner["instance_id"] or owner["launch_id"] else None


def node_owner(node):
    """The ownership marks of a full node object (normal attributes only), or None."""
    return owner_of(((node or {}).get("normal") or {}).get(OWNER_ATTRIBUTE))


def describe_owner(owner):
    if not owner:
        return "no owner"
    parts = []
    if owner.get("instance_id"):
        parts.append("instance %s" % owner["instance_id"])
    if owner.get("launch_id"):
        parts.append("launch %s" % owner["launch_id"])
    return ", ".join(parts)


def node_ownership_error(name, node, instance_id=None, launch_id=None, adopt_instance_id=None):
    """Why the caller may not write or delete node ``name`` (None when it may).

    - a node that does not exist may be created by anyone (the caller's marks go on it);
    - a marked node is touched only by a caller naming the same instance, and the same launch
      when both sides have one; a caller naming no instance is refused (fail closed);
    - an unmarked node (0.1.0, or made by hand, or pre-created by a rogue client) is touched by a
      caller that names an instance only after explicit adoption (adopt_instance_id == instance_id);
      a caller that names no instance keeps the 0.1.0 behaviour.
    """
    if node is None:
        return None
    owner = node_owner(node)
    if owner:
        if not instance_id:
            return ("Chef node %s belongs to %s: give instance_id (and launch_id) to change or delete it"
                    % (name, describe_owner(owner)))
        if owner["instance_id"] and owner["instance_id"] != instance_id:
            return ("Chef node %s belongs to %s, not to instance %s: refusing to change or delete it"
                    % (name, describe_owner(owner), instance_id))
        if launch_id and owner["launch_id"] and owner["launch_id"] != launch_id:
            return ("Chef node %s belongs to %s, not to launch %s: refusing to change or delete it"
                    % (name, describe_owner(owner), launch_id))
        return None
    if instance_id and adopt_instance_id != instance_id:
        return ("Chef node %s exists without ownership marks (made by 0.1.0, by hand, or by another client):"
                " refusing to take it over for instance %s; set adopt_instance_id=%s to adopt it once"
                % (name, instance_id, instance_id))
    return None


NODE_SUMMARY_FIELDS = {
    "name": ["name"],
    "chef_environment": ["chef_environment"],
    "run_list": ["run_list"],
    "ohai_time": ["ohai_time"],
    "ipaddress": ["ipaddress"],
    "fqdn": ["fqdn"],
    "ec2_instance_id": ["ec2", "instance_id"],
    # partial search merges the precedence levels; chef_node writes the marks as normal attributes
    "owner": [OWNER_ATTRIBUTE],
}


def summarize_row(row, now=None):
    """A node summary from a partial-search row (NODE_SUMMARY_FIELDS)."""
    summary = dict((field, row.get(field)) for field in NODE_SUMMARY_FIELDS)
    summary["run_list"] = summary["run_list"] or []
    summary["ohai_age"] = ohai_age(summary["ohai_time"], now)
    summary["owner"] = owner_of(summary["owner"])
    return summary


def summarize_node(node, now=None):
    """The same summary from a full node object (GET /nodes/NAME)."""
    return summarize_row({
        "name": node.get("name"),
        "chef_environment": node.get("chef_environment"),
        "run_list": node.get("run_list"),
        "ohai_time": node_attribute(node, "ohai_time"),
        "ipaddress": node_attribute(node, "ipaddress"),
        "fqdn": node_attribute(node, "fqdn"),
        "ec2_instance_id": node_attribute(node, "ec2", "instance_id"),
        "owner": ((node.get("normal") or {}).get(OWNER_ATTRIBUTE)),
    }, now)
