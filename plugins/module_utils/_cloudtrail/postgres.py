# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""PostgreSQL connection options, named like community.postgresql's.

Private to the collection: not a public API, may change without notice.
Documented once in ``plugins/doc_fragments/postgres.py``: keep the two in sync.
"""

from __future__ import annotations

from ansible.module_utils.basic import env_fallback


def postgres_argument_spec():
    return dict(
        login_host=dict(type="str", default="", aliases=["host"]),
        login_port=dict(type="int", default=5432, aliases=["port"]),
        login_user=dict(type="str", default="postgres", aliases=["login"]),
        login_password=dict(type="str", default="", no_log=True, fallback=(env_fallback, ["PGPASSWORD"])),
        db=dict(type="str", default="postgres", aliases=["login_db"]),
        ssl_mode=dict(type="str", default="prefer",
                      choices=["allow", "disable", "prefer", "require", "verify-ca", "verify-full"]),
        ca_cert=dict(type="path", aliases=["ssl_rootcert"]),
    )


def connect_kwargs(params, application_name="cloudefigo.core"):
    """psycopg2.connect() keyword arguments from the module's parameters (empty ones left out)."""
    kwargs = {
        "host": params.get("login_host"),
        "port": params.get("login_port"),
        "user": params.get("login_user"),
        "password": params.get("login_password"),
        "dbname": params.get("db"),
        "sslmode": params.get("ssl_mode"),
        "sslrootcert": params.get("ca_cert"),
        "application_name": application_name,
    }
    return {key: value for key, value in kwargs.items() if value not in (None, "")}
