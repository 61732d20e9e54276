# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The loader's failure paths that need no database: a session that cannot open stops the run."""

from __future__ import annotations

import gzip
import json
import threading

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail import loader
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.sources import LogFile


class Source:
    def __init__(self, count):
        body = gzip.compress(json.dumps({"Records": [{"eventID": "e"}]}).encode())
        self.files = [LogFile("f%d" % number, "x", 1, lambda: body) for number in range(count)]

    def pages(self, ledger=None):  # pylint: disable=unused-argument
        yield self.files


def test_worker_session_failure_stops_the_run_without_hanging(monkeypatch):
    calls = []

    def connect():
        calls.append(threading.current_thread().name)
        raise RuntimeError("connection refused")

    run = loader.Loader(connect, workers=2)
    monkeypatch.setattr(run, "prepare", lambda: 0)  # as if the store did not exist yet (no ledger read)
    finished = []
    thread = threading.Thread(target=lambda: finished.append(pytest.raises(RuntimeError, run.run, [Source(20)])))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the loader hung after its sessions failed"
    assert finished and calls
