# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # PostgreSQL connection options, named as community.postgresql names them; kept in sync with
    # module_utils/_cloudtrail/postgres.py::postgres_argument_spec() (a unit test compares them)
    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host running the database. Empty means the local Unix socket (see O(login_unix_socket)).
    type: str
    default: ''
    aliases: [host]
  login_port:
    description:
      - Database port to connect to.
    type: int
    default: 5432
    aliases: [port]
  login_unix_socket:
    description:
      - Directory of the Unix domain socket for local connections (libpq's C(host) when it is a
        path). Used when O(login_host) is empty or C(localhost); naming another O(login_host) as
        well is refused.
    type: str
    default: ''
    aliases: [unix_socket]
    version_added: 0.2.0
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
  login_db:
    description:
      - Name of the database to connect to.
      - Called O(db) in 0.1.0; O(db) stays an alias, as in community.postgresql.
    type: str
    default: postgres
    aliases: [db]
  ssl_mode:
    description:
      - Whether and how a TLS connection is negotiated, as libpq's C(sslmode).
      - The default C(verify-full) checks that the server certificate chains to O(ca_cert) and
        names O(login_host); libpq ignores it on a Unix socket. community.postgresql's default
        is C(prefer), which accepts any certificate and falls back to plain text.
      - With C(verify-ca) or C(verify-full) and no O(ca_cert), libpq reads
        C(~/.postgresql/root.crt) (or E(PGSSLROOTCERT)).
      - See U(https://www.postgresql.org/docs/current/libpq-ssl.html).
    type: str
    default: verify-full
    choices: [allow, disable, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File of CA certificates the server certificate must chain to (libpq's C(sslrootcert)).
    type: path
    aliases: [ssl_rootcert]
  ssl_cert:
    description:
      - Client certificate file (libpq's C(sslcert)), for servers that authenticate clients by
        certificate. Needs O(ssl_key).
    type: path
    version_added: 0.2.0
  ssl_key:
    description:
      - Private key file of O(ssl_cert) (libpq's C(sslkey)).
    type: path
    version_added: 0.2.0
  connect_params:
    description:
      - More libpq connection parameters (for example C(connect_timeout), C(target_session_attrs)).
        They are passed last, so they take precedence over the options above.
      - C(password) is refused here (this dict is not kept out of logs); use O(login_password).
    type: dict
    default: {}
    version_added: 0.2.0
requirements:
  - psycopg2 >= 2.8
"""
