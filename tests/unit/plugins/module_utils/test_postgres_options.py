"""PostgreSQL connection options: named as community.postgresql names them, documented once,
mapped onto libpq keywords."""
import pytest
import yaml

from ansible_collections.cloudefigo.core.plugins.doc_fragments.postgres import ModuleDocFragment
from ansible_collections.cloudefigo.core.plugins.module_utils._cloudtrail.postgres import (
    connect_kwargs, connection_problem, postgres_argument_spec)

# community.postgresql 4.x's connection options (postgres_common_argument_spec + login_db)
COMMUNITY_NAMES = {"login_db", "login_host", "login_port", "login_user", "login_password", "login_unix_socket",
                   "ssl_mode", "ca_cert", "ssl_cert", "ssl_key", "connect_params"}
# what 0.1.0 accepted: every one of these must still be accepted
OLD_NAMES = {"login_host", "host", "login_port", "port", "login_user", "login", "login_password", "db",
             "login_db", "ssl_mode", "ca_cert", "ssl_rootcert"}


def params(**overrides):
    values = {name: spec.get("default") for name, spec in postgres_argument_spec().items()}
    values.update(overrides)
    return values


def test_names_are_community_postgresqls_and_old_names_stay_aliases():
    spec = postgres_argument_spec()
    assert set(spec) == COMMUNITY_NAMES
    accepted = set(spec) | {alias for option in spec.values() for alias in option.get("aliases", [])}
    assert OLD_NAMES <= accepted
    assert spec["login_db"]["aliases"] == ["db"]


def test_doc_fragment_matches_the_argument_spec():
    documented = yaml.safe_load(ModuleDocFragment.DOCUMENTATION)["options"]
    spec = postgres_argument_spec()
    assert set(documented) == set(spec)
    for name, option in spec.items():
        doc = documented[name]
        assert doc.get("type", "str") == option.get("type", "str"), name
        assert doc.get("default") == option.get("default"), name
        assert sorted(doc.get("aliases", [])) == sorted(option.get("aliases", [])), name
        assert doc.get("choices") == option.get("choices"), name


def test_only_the_password_is_secret_and_tls_is_verified_by_default():
    spec = postgres_argument_spec()
    assert [name for name, option in spec.items() if option.get("no_log")] == ["login_password"]
    assert spec["ssl_mode"]["default"] == "verify-full"


def test_libpq_keywords():
    kwargs = connect_kwargs(params(login_host="siem.internal", login_port=6432, login_user="loader",
                                   login_password="s3cret", login_db="siem", ca_cert="/ca.pem",
                                   ssl_cert="/c.pem", ssl_key="/c.key"), application_name="x")
    assert kwargs == {"host": "siem.internal", "port": 6432, "user": "loader", "password": "s3cret",
                      "dbname": "siem", "sslmode": "verify-full", "sslrootcert": "/ca.pem", "sslcert": "/c.pem",
                      "sslkey": "/c.key", "application_name": "x"}


def test_empty_values_are_left_to_libpq():
    kwargs = connect_kwargs(params())
    assert "host" not in kwargs and "password" not in kwargs and "sslrootcert" not in kwargs


@pytest.mark.parametrize("host", ["", "localhost"])
def test_unix_socket_is_the_host_for_a_local_server(host):
    assert connect_kwargs(params(login_host=host, login_unix_socket="/run/postgresql"))["host"] == "/run/postgresql"


def test_connect_params_come_last():
    kwargs = connect_kwargs(params(login_host="a", connect_params={"connect_timeout": 5, "sslmode": "require"}))
    assert kwargs["connect_timeout"] == 5 and kwargs["sslmode"] == "require"


@pytest.mark.parametrize("overrides,named", [
    ({"login_host": "siem.internal", "login_unix_socket": "/run/postgresql"}, "login_unix_socket"),
    ({"connect_params": {"password": "x"}}, "login_password"),
    ({"ssl_cert": "/c.pem"}, "ssl_key"),
    ({"ssl_key": "/c.key"}, "ssl_cert"),
])
def test_problems_name_the_option(overrides, named):
    problem = connection_problem(params(**overrides))
    assert problem and named in problem


def test_no_problem_by_default():
    assert connection_problem(params()) is None
    assert connection_problem(params(login_host="localhost", login_unix_socket="/run/postgresql")) is None
