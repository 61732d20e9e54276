# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PostgreSQL connection options, named as community.postgresql names them.

Private to the collection: not a public API, may change without notice.
Documented once in ``plugins/doc_fragments/postgres.py``: keep the two in sync (a unit test
compares them).
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback

SSL_MODES = ["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]

# libpq keywords that connect_params may not set: the password belongs in login_password, which
# is no_log (connect_params is shown in logs and -v output)
SECRET_CONNECT_PARAMS = ("password",)


def postgres_argument_spec():
    return dict(
        login_host=dict(type="str", default="", aliases=["host"]),
        login_port=dict(type="int", default=5432, aliases=["port"]),
        login_unix_socket=dict(type="str", default="", aliases=["unix_socket"]),
        login_user=dict(type="str", default="postgres", aliases=["login"]),
        login_password=dict(type="str", default="", no_log=True, fallback=(env_fallback, ["PGPASSWORD"])),
        # 0.1.0 called it db (login_db was the alias): both names keep working
        login_db=dict(type="str", default="postgres", aliases=["db"]),
        ssl_mode=dict(type="str", default="verify-full", choices=SSL_MODES),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
        ssl_cert=dict(type="path"),
        ssl_key=dict(type="path", no_log=False),
        connect_params=dict(type="dict", default={}),
    )


def connection_problem(params):
    """What is wrong with the connection options (a message naming the option), or None."""
    socket = params.get("login_unix_socket")
    host = params.get("login_host")
    if socket and host not in (None, "", "localhost"):
        return ("login_unix_socket (%s) and login_host (%s) name two different servers: pass one of them"
                % (socket, host))
    secrets = sorted(set(params.get("connect_params") or {}) & set(SECRET_CONNECT_PARAMS))
    if secrets:
        return ("connect_params may not set %s: pass it as login_password (or PGPASSWORD), which is "
                "kept out of logs" % ", ".join(secrets))
    if bool(params.get("ssl_cert")) != bool(params.get("ssl_key")):
        return "ssl_cert and ssl_key go together: pass both (the client certificate and its key) or neither"
    return None


def connect_kwargs(params, application_name="cloudefigo.core"):
    """psycopg2.connect() keyword arguments from the module's parameters (empty ones left out).

    As in community.postgresql: login_unix_socket is the host when login_host is empty or
    localhost, and connect_params are passed last, so they take precedence.
    """
    host = params.get("login_host")
    if params.get("login_unix_socket") and host in (None, "", "localhost"):
        host = params["login_unix_socket"]
    kwargs = {
        "host": host,
        "port": params.get("login_port"),
        "user": params.get("login_user"),
        "password": params.get("login_password"),
        "dbname": params.get("login_db"),
        "sslmode": params.get("ssl_mode"),
        "sslrootcert": params.get("ca_cert"),
        "sslcert": params.get("ssl_cert"),
        "sslkey": params.get("ssl_key"),
        "application_name": application_name,
    }
    kwargs = {key: value for key, value in kwargs.items() if value not in (None, "")}
    kwargs.update(params.get("connect_params") or {})
    return kwargs
