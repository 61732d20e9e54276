# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""A small Nessus REST client on ansible.module_utils.urls.

Private to the collection: not a public API, may change without notice.

Auth by API keys (``X-ApiKeys``) or a session (``POST /session`` -> ``X-Cookie: token=``);
a session that expired (401) is opened again once per request.  429 and 5xx are retried,
honouring ``Retry-After``.  412 "API is not available" (Nessus Professional, Expert,
Essentials) becomes NessusApiUnavailable with the way out in its message.
"""

from __future__ import annotations

import email.utils
import json
import random
import socket
import ssl
import time
import urllib.error
import urllib.parse

from ansible.module_utils.urls import SSLValidationError, open_url

# retried: rate limiting, server errors and timeouts; never a refused connection or an unknown host
RETRY_STATUSES = frozenset((429, 500, 502, 503, 504))
# Run statuses after which a run will not change any more without a person acting.
FINAL_STATUSES = frozenset(("completed", "aborted", "canceled", "imported", "paused"))
API_UNAVAILABLE_HINT = (
    "this scanner does not allow creating or launching scans over the API (Nessus Professional, Expert"
    " and Essentials answer 412 'API is not available'). Launch the scan in the Nessus UI and evaluate"
    " it with scan_id (export works on every edition), or use Nessus Manager or Tenable Vulnerability"
    " Management.")


class NessusError(Exception):
    """A Nessus API call failed; ``status`` is the HTTP status when there was one."""

    def __init__(self, msg, status=None):
        super(NessusError, self).__init__(msg)
        self.status = status


class NessusApiUnavailable(NessusError):
    """The scanner edition refuses scan creation / launch over the API."""


class NessusTimeout(NessusError):
    """A wait ran past its deadline; ``last_status`` is what the scanner said last."""

    def __init__(self, msg, status=None, last_status=None):
        super(NessusTimeout, self).__init__(msg, status)
        self.last_status = last_status


def retry_after_seconds(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date); None if absent/invalid."""
    if value is None:
        return None
    value = str(value).strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


def _error_text(body):
    if not body:
        return ""
    try:
        data = json.loads(body.decode("utf-8", "replace") if isinstance(body, bytes) else body)
    except ValueError:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        return text.strip()[:300]
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return json.dumps(data)[:300]


def connection_problem(reason):
    """A short name for why a connection failed (the reason's text says the rest)."""
    if isinstance(reason, socket.gaierror):
        return "the host name does not resolve"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return "connection failed"


class NessusClient(object):
    """Nessus REST API.  ``opener``, ``sleep`` and ``clock`` are there for tests."""

    def __init__(self, url, access_key=None, secret_key=None, username=None, password=None,
                 validate_certs=True, ca_path=None, timeout=30, max_retries=5, max_retry_wait=120,
                 opener=None, sleep=None, clock=None):
        self.url = url.rstrip("/")
        self.access_key = access_key
        self.secret_key = secret_key
        self.username = username
        self.password = password
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_retry_wait = max_retry_wait
        self._open = opener or open_url
        self._sleep = sleep or time.sleep
        self._clock = clock or time.monotonic
        self.token = None
        self.relogins = 0
        self.retries = 0
        if not (access_key and secret_key) and not (username and password):
            raise NessusError("give access_key and secret_key (API keys, preferred), or username and password")

    @property
    def uses_session(self):
        return not (self.access_key and self.secret_key)

    # -- transport
    def _headers(self, content_type=True):
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = "application/json"
        if not self.uses_session:
            headers["X-ApiKeys"] = "accessKey=%s; secretKey=%s" % (self.access_key, self.secret_key)
        elif self.token:
            headers["X-Cookie"] = "token=%s" % self.token
        return headers

    def _call(self, method, path, body=None, query=None, auth=True):
        """One logical call: returns the open response; retries, re-login and errors handled here."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        if auth and self.uses_session and not self.token:
            self.login()
        attempt = 0
        relogged = False
        while True:
            try:
                return self._open(url, data=data, headers=self._headers(data is not None), method=method,
                                  validate_certs=self.validate_certs, ca_path=self.ca_path, timeout=self.timeout,
                                  follow_redirects="none", use_proxy=True, http_agent="cloudefigo.core-nessus")
            except urllib.error.HTTPError as exc:
                status = exc.code
                try:
                    err_body = exc.read()
                except Exception:  # pylint: disable=broad-except  # the body is only a hint
                    err_body = b""
                if status == 401 and auth and self.uses_session and not relogged:
                    # sessions expire after 30 idle minutes: log in again, once per call
                    relogged = True
                    self.relogins += 1
                    self.token = None
                    self.login()
                    continue
                if status in RETRY_STATUSES and attempt < self.max_retries:
                    wait = retry_after_seconds(exc.headers.get("Retry-After") if exc.headers else None)
                    if wait is None:
                        wait = min(30.0, 2.0 ** attempt) + random.uniform(0, 0.5)
                    attempt += 1
                    self.retries += 1
                    self._sleep(min(wait, self.max_retry_wait))
                    continue
                raise self._http_error(method, path, status, err_body)
            except (ssl.SSLError, ssl.CertificateError, SSLValidationError) as exc:
                raise NessusError("TLS error talking to %s: %s. Give the scanner's CA with ca_path"
                                  " (validate_certs=false only for a throw-away lab)" % (self.url, exc))
            except urllib.error.URLError as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, (ssl.SSLError, ssl.CertificateError)) or "CERTIFICATE" in str(reason).upper():
                    raise NessusError("TLS certificate of %s not trusted: %s. Give the scanner's CA with ca_path"
                                      " (validate_certs=false only for a throw-away lab)" % (self.url, reason))
                if attempt < self.max_retries and isinstance(reason, (socket.timeout, TimeoutError)):
                    attempt += 1
                    self.retries += 1
                    self._sleep(min(30.0, 2.0 ** attempt))
                    continue
                # refused, unknown host name, unreachable: a wrong url does not heal, fail now
                raise NessusError("cannot connect to Nessus at %s (%s): %s; check url"
                                  % (self.url, connection_problem(reason), reason))
            except (socket.timeout, TimeoutError) as exc:
                if attempt < self.max_retries:
                    attempt += 1
                    self.retries += 1
                    self._sleep(min(30.0, 2.0 ** attempt))
                    continue
                raise NessusError("Nessus at %s did not answer %s %s within %ss, %d times: %s; check url and timeout"
                                  % (self.url, method, path, self.timeout, attempt + 1, exc))
            except ConnectionError as exc:
                raise NessusError("cannot connect to Nessus at %s (%s): %s; check url"
                                  % (self.url, connection_problem(exc), exc))

    def _http_error(self, method, path, status, body):
        text = _error_text(body)
        if status == 412:
            return NessusApiUnavailable("Nessus answered 412 %r to %s %s: %s" % (text, method, path, API_UNAVAILABLE_HINT),
                                        status)
        if status == 401:
            if self.uses_session:
                return NessusError("Nessus rejected the session for %s %s (401 %s) even after logging in again:"
                                   " check username / password" % (method, path, text), status)
            return NessusError("Nessus rejected the API keys (401 %s) on %s %s: check access_key / secret_key"
                               % (text, method, path), status)
        if status == 403:
            return NessusError("Nessus refused %s %s (403 %s): the user lacks the permission" % (method, path, text), status)
        if status == 404:
            return NessusError("Nessus has no %s (404 %s)" % (path, text), status)
        if status == 409:
            return NessusError("Nessus answered 409 %r to %s %s: the scan is still running (or busy)"
                               % (text, method, path), status)
        if status == 429:
            return NessusError("Nessus kept answering 429 (rate limited) to %s %s after %d retries"
                               % (method, path, self.max_retries), status)
        return NessusError("Nessus answered %s %r to %s %s" % (status, text, method, path), status)

    def request(self, method, path, body=None, query=None, auth=True):
        """JSON in, JSON out (``{}`` for an empty body)."""
        resp = self._call(method, path, body, query, auth)
        try:
            raw = resp.read()
        finally:
            resp.close()
        if not raw or not raw.strip():
            return {}
        try:
            return json.loads(raw.decode("utf-8"))
        except ValueError:
            raise NessusError("Nessus sent a non-JSON answer to %s %s: %r" % (method, path, raw[:200]))

    def download(self, path, dest, chunk=1 << 20):
        """Stream a response body into the file ``dest``; returns its size."""
        resp = self._call("GET", path)
        size = 0
        try:
            with open(dest, "wb") as handle:
                while True:
                    data = resp.read(chunk)
                    if not data:
                        break
                    handle.write(data)
                    size += len(data)
        finally:
            resp.close()
        return size

    # -- session
    def login(self):
        data = self.request("POST", "/session", {"username": self.username, "password": self.password}, auth=False)
        token = data.get("token")
        if not token:
            raise NessusError("POST /session returned no token")
        self.token = token

    def logout(self):
        if self.uses_session and self.token:
            try:
                self.request("DELETE", "/session", auth=True)
            except NessusError:
                pass  # the session ends on its own; logging out is a courtesy
            self.token = None

    # -- server
    def server_properties(self):
        return self.request("GET", "/server/properties")

    def check_scan_api(self):
        """Raise NessusApiUnavailable before creating anything on an edition that will refuse it."""
        props = self.server_properties()
        nessus_type = str(props.get("nessus_type") or "")
        features = (props.get("license") or {}).get("features") or {}
        scan_api = features.get("scan_api")
        if scan_api is False or any(word in nessus_type.lower() for word in ("professional", "expert", "essentials")):
            raise NessusApiUnavailable("%s (server/properties: nessus_type=%r, scan_api=%r): %s"
                                       % (self.url, nessus_type or None, scan_api, API_UNAVAILABLE_HINT))
        return props

    # -- lookups
    def template_uuid(self, name):
        data = self.request("GET", "/editor/scan/templates")
        templates = data.get("templates") or []
        for template in templates:
            if str(template.get("name", "")).lower() == name.lower() or str(template.get("title", "")).lower() == name.lower():
                return template["uuid"]
        raise NessusError("no scan template named %r; available: %s" % (
            name, ", ".join(sorted(str(t.get("name")) for t in templates)) or "none"))

    def policy(self, name):
        data = self.request("GET", "/policies")
        for policy in data.get("policies") or []:
            if str(policy.get("name")) == name or str(policy.get("id")) == str(name):
                return policy
        raise NessusError("no policy named %r; available: %s" % (
            name, ", ".join(sorted(str(p.get("name")) for p in data.get("policies") or [])) or "none"))

    def folder_id(self, name, create=True):
        """Id of the folder called ``name``; created when missing. Returns (id, created)."""
        data = self.request("GET", "/folders")
        for folder in data.get("folders") or []:
            if folder.get("name") == name:
                return folder["id"], False
        if not create:
            return None, True
        created = self.request("POST", "/folders", {"name": name})
        return created["id"], True

    # -- scans
    def create_scan(self, template_uuid, name, targets, folder_id=None, policy_id=None, description=None):
        settings = {"name": name, "text_targets": ",".join(targets), "enabled": False}
        if folder_id is not None:
            settings["folder_id"] = folder_id
        if policy_id is not None:
            settings["policy_id"] = policy_id
        if description:
            settings["description"] = description
        data = self.request("POST", "/scans", {"uuid": template_uuid, "settings": settings})
        try:
            return data["scan"]["id"]
        except (KeyError, TypeError):
            raise NessusError("POST /scans returned no scan id: %r" % (data,))

    def launch(self, scan_id):
        data = self.request("POST", "/scans/%s/launch" % scan_id)
        if not data.get("scan_uuid"):
            raise NessusError("POST /scans/%s/launch returned no scan_uuid: %r" % (scan_id, data))
        return data["scan_uuid"]

    def scan(self, scan_id):
        return self.request("GET", "/scans/%s" % scan_id)

    def delete_scan(self, scan_id):
        """True when deleted, False when there was no such scan."""
        try:
            self.request("DELETE", "/scans/%s" % scan_id)
        except NessusError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    @staticmethod
    def find_run(details, scan_uuid=None):
        """The history run for ``scan_uuid`` (or the latest run); None when not listed yet."""
        history = details.get("history") or []
        if scan_uuid:
            for run in history:
                if run.get("uuid") == scan_uuid:
                    return run
            return None
        if not history:
            return None
        return max(history, key=lambda run: (run.get("creation_date") or 0, run.get("history_id") or 0))

    @staticmethod
    def progress_of(details):
        """Percentage done of the run ``details`` describe, as Nessus gives it; None when it says nothing.

        A top-level ``progress`` (0-100) when the API has one, else the hosts' checks done over
        checks planned (``hosts[].scanprogresscurrent`` / ``scanprogresstotal``, the figures the
        Nessus UI shows per host).  No host listed yet (a pending run) says nothing.
        """
        value = details.get("progress")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(max(0, min(100, value)))
        current = total = 0
        for host in details.get("hosts") or []:
            try:
                current += max(0, int(host.get("scanprogresscurrent") or 0))
                total += max(0, int(host.get("scanprogresstotal") or 0))
            except (TypeError, ValueError):
                return None
        if total <= 0:
            return None
        return int(min(100, current * 100 // total))

    def run_state(self, scan_id, scan_uuid=None):
        """(run, progress) of a run now, without waiting: the history entry (None when not listed
        yet) and its percentage done (None when Nessus says nothing).

        ``GET /scans/{id}`` describes the latest run; another run's hosts come with ``?history_id=``.
        """
        details = self.scan(scan_id)
        run = self.find_run(details, scan_uuid)
        if run is None:
            return None, None
        latest = self.find_run(details)
        if latest is not None and run.get("history_id") != latest.get("history_id") and run.get("history_id") is not None:
            details = self.request("GET", "/scans/%s" % scan_id, query={"history_id": run["history_id"]})
        return run, self.progress_of(details)

    def watch_run(self, scan_id, scan_uuid=None, timeout=0, poll=5):
        """(run, progress) once the run ended, or when ``timeout`` seconds are up: never raises on time.

        ``timeout=0`` reads once.  For a caller that shows progress between two watches.
        """
        deadline = self._clock() + timeout
        while True:
            run, progress = self.run_state(scan_id, scan_uuid)
            if (run is not None and run.get("status") in FINAL_STATUSES) or self._clock() >= deadline:
                return run, progress
            self._sleep(max(0.0, min(poll, deadline - self._clock())))

    def wait_for_run(self, scan_id, scan_uuid=None, timeout=3600, poll=5):
        """Poll until the run (matched by launch uuid, else the latest) reaches a final status.

        Returns the history entry.  Right after a launch the scan may still show the previous
        run or no run at all: only the run whose uuid matches counts.
        """
        deadline = self._clock() + timeout
        last = None
        while True:
            run = self.find_run(self.scan(scan_id), scan_uuid)
            if run is not None:
                last = run
                if run.get("status") in FINAL_STATUSES:
                    return run
            if self._clock() >= deadline:
                raise NessusTimeout("scan %s run %s still %s after wait_timeout=%ss; raise wait_timeout, or use"
                                    " state=launched and poll (see the module examples)"
                                    % (scan_id, scan_uuid or "(latest)", (last or {}).get("status", "not started"),
                                       timeout), last_status=(last or {}).get("status"))
            self._sleep(max(0.0, min(poll, deadline - self._clock())))

    def export(self, scan_id, history_id=None, timeout=600, poll=2):
        """Ask for a .nessus export and wait until it is ready; returns the file id.

        409 means the run is still going: asked again until ``timeout``.
        """
        deadline = self._clock() + timeout
        query = {"history_id": history_id} if history_id is not None else None
        while True:
            try:
                data = self.request("POST", "/scans/%s/export" % scan_id, {"format": "nessus"}, query=query)
                break
            except NessusError as exc:
                if exc.status != 409 or self._clock() >= deadline:
                    if exc.status == 409:
                        raise NessusTimeout("%s; still refused after %ss" % (exc, timeout), 409)
                    raise
                self._sleep(max(0.0, min(poll, deadline - self._clock())))
        file_id = data.get("file")
        if file_id is None:
            raise NessusError("POST /scans/%s/export returned no file id: %r" % (scan_id, data))
        while True:
            status = self.request("GET", "/scans/%s/export/%s/status" % (scan_id, file_id)).get("status")
            if status == "ready":
                return file_id
            if status not in ("loading", None):
                raise NessusError("export %s of scan %s ended %r" % (file_id, scan_id, status))
            if self._clock() >= deadline:
                raise NessusTimeout("export %s of scan %s not ready after %ss" % (file_id, scan_id, timeout))
            self._sleep(max(0.0, min(poll, deadline - self._clock())))

    def download_export(self, scan_id, file_id, dest):
        return self.download("/scans/%s/export/%s/download" % (scan_id, file_id), dest)
