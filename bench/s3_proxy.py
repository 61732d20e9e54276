# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A small forwarding proxy in front of moto's S3: adds latency, records requests, injects failures.

Self-contained (standard library only) so the benchmarks and tests need nothing else:

    proxy = S3Proxy("http://127.0.0.1:5000", delay=0.030)   # 30 ms before every request
    proxy.start(); ...; proxy.url; proxy.requests; proxy.stop()

Every request is forwarded unchanged (the Host header too, so SigV4 signatures still match),
after ``delay`` seconds, on a keep-alive connection per proxy thread (one thread per client
connection). ``requests`` holds, per request, a dict: method, path, query (parsed), headers
(lower-case names), status. ``fail`` maps an object key's path suffix to an HTTP status answered
instead of moto (with an S3 error body) the next ``fail_times`` times. ``owner``, when set, makes
the proxy answer 403 AccessDenied to any request whose ``x-amz-expected-bucket-owner`` header
is present and differs, as S3 does (moto ignores the header).
"""

import http.client
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade"}

ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message>'
              '<RequestId>proxy</RequestId></Error>')


class S3Proxy:
    def __init__(self, upstream, delay=0.0, owner=None):
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port or 80)
        self.delay = delay
        self.owner = owner
        self.fail = {}
        self.fail_times = {}
        self.requests = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self._server.server_address[1]

    def reset(self):
        with self._lock:
            self.requests = []

    def count(self, method=None, action=None):
        """Requests recorded; action 'list' = ListObjectsV2, 'get' = GetObject."""
        found = 0
        for request in list(self.requests):
            if method and request["method"] != method:
                continue
            if action == "list" and not (request["method"] == "GET" and request["query"].get("list-type") == ["2"]):
                continue
            if action == "get" and not (request["method"] == "GET" and request["path"].count("/") >= 2
                                        and "list-type" not in request["query"]):
                continue
            found += 1
        return found

    def start(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # pylint: disable=arguments-differ
                return

            def _upstream(self):
                connection = getattr(self, "_connection", None)
                if connection is None:
                    connection = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                    self._connection = connection
                return connection

            def _answer(self, status, body, headers=()):
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                parts = urllib.parse.urlsplit(self.path)
                record = {"method": self.command, "path": parts.path,
                          "query": urllib.parse.parse_qs(parts.query, keep_blank_values=True),
                          "headers": dict((k.lower(), v) for k, v in self.headers.items()), "status": None}
                with proxy._lock:
                    proxy.requests.append(record)
                if proxy.delay:
                    time.sleep(proxy.delay)
                owner = record["headers"].get("x-amz-expected-bucket-owner")
                if proxy.owner and owner is not None and owner != proxy.owner:
                    record["status"] = 403
                    self._answer(403, (ERROR_BODY % ("AccessDenied", "Access Denied")).encode(),
                                 [("Content-Type", "application/xml")])
                    return
                for suffix, status in list(proxy.fail.items()):
                    if parts.path.endswith(suffix) and proxy.fail_times.get(suffix, 0) > 0:
                        with proxy._lock:
                            proxy.fail_times[suffix] -= 1
                        record["status"] = status
                        self._answer(status, (ERROR_BODY % ("AccessDenied", "injected by the proxy")).encode(),
                                     [("Content-Type", "application/xml")])
                        return
                headers = dict((k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP)
                for attempt in (1, 2):
                    connection = self._upstream()
                    try:
                        connection.request(self.command, self.path, body=body, headers=headers)
                        response = connection.getresponse()
                        data = response.read()
                        break
                    except (http.client.HTTPException, OSError):
                        connection.close()
                        self._connection = None
                        if attempt == 2:
                            raise
                record["status"] = response.status
                self._answer(response.status, data,
                             [(k, v) for k, v in response.getheaders()
                              if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"])

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="s3-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
