# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The audit report: findings per account and region, their merge, charts and HTML.

Private to the collection: not a public API, may change without notice.

- ``parts``: the audit modules' results -> one *part* per (account, region), compared with the
  part of the previous run (new / resolved, trend history); parts merged into one view.
- ``charts``: inline SVG chart geometry (no script).
- ``document``: the HTML document (every value escaped, strict Content-Security-Policy).
- ``siem``: the CloudTrail questions the report asks the SIEM's PostgreSQL (bound SQL only).
"""
