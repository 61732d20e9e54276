# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # PostgreSQL connection options, named like community.postgresql's; kept in sync with
    # module_utils/_cloudtrail/postgres.py::postgres_argument_spec()
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host running the database. Empty means the local Unix socket.
    type: str
    default: ''
    aliases: [host]
  login_port:
    description:
      - Database port to connect to.
    type: int
    default: 5432
    aliases: [port]
  login_user:
    description:
      - The role to connect as. It needs C(CREATE) on the database the first time (the schema is
        created and migrated), then C(INSERT)/C(SELECT)/C(UPDATE) on it and C(TEMPORARY).
    type: str
    default: postgres
    aliases: [login]
  login_password:
    description:
      - The password of O(login_user).
      - If not set, the value of the E(PGPASSWORD) environment variable is used.
    type: str
    default: ''
  db:
    description:
      - Name of the database to connect to.
    type: str
    default: postgres
    aliases: [login_db]
  ssl_mode:
    description:
      - Whether and how a TLS connection is negotiated, as libpq's C(sslmode).
      - See U(https://www.postgresql.org/docs/current/libpq-ssl.html).
    type: str
    default: prefer
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File of CA certificates the server certificate must chain to (libpq's C(sslrootcert)).
    type: path
    aliases: [ssl_rootcert]
requirements:
  - psycopg2 >= 2.8
"""
