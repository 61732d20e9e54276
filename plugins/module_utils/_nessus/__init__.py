# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Nessus support for cloudefigo.core: REST client, report evaluation, module plumbing.

Private to the collection: not a public API, may change without notice.

- ``client``: the Nessus REST client (auth, retries, scan / export flow).
- ``evaluation``: streaming, fail-closed verdict on a ``.nessus`` v2 report.
- ``common``: connection options (argument spec, kept in sync with doc_fragments/nessus.py)
  and the helpers the modules share.
"""
