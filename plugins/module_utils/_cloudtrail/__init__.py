# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CloudTrail log files into PostgreSQL, for cloudefigo.core.cloudtrail_ingest.

Private to the collection: not a public API, may change without notice.

- ``records``: parse a log file, build one COPY row per event (no database needed).
- ``sources``: where the files come from (a local directory, S3 buckets), read-only.
- ``schema``: versioned migrations, the tables, indexes and views.
- ``postgres``: the connection options (kept in sync with ``doc_fragments/postgres.py``).
- ``loader``: the pipelined load (a reader thread, database sessions doing COPY per file).
"""
