"""cloudtrail_ingest main(): the community.postgresql option names reach libpq, old names still
work, bad combinations fail before any connection."""
import psycopg2
import pytest

from ansible_collections.cloudefigo.core.plugins.modules import cloudtrail_ingest


@pytest.fixture
def connect_calls(monkeypatch):
    calls = []

    def refuse(**kwargs):
        calls.append(kwargs)
        raise psycopg2.OperationalError("connection refused (test)")
    monkeypatch.setattr(cloudtrail_ingest.psycopg2, "connect", refuse)
    return calls


@pytest.mark.parametrize("name", ["login_db", "db"])
def test_database_option_and_its_old_name(run_aws_main, connect_calls, name, tmp_path):
    out = run_aws_main(cloudtrail_ingest.main, path=str(tmp_path), login_host="siem.internal", **{name: "siem"})
    assert out["failed"] and "login_db" in out["msg"] and "ssl_mode" in out["msg"]
    assert connect_calls == [{"host": "siem.internal", "port": 5432, "user": "postgres", "dbname": "siem",
                              "sslmode": "verify-full", "application_name": "cloudefigo.core.cloudtrail_ingest"}]


def test_tls_and_socket_options_reach_libpq(run_aws_main, connect_calls, tmp_path):
    run_aws_main(cloudtrail_ingest.main, path=str(tmp_path), login_unix_socket="/run/postgresql", ca_cert="/ca.pem",
                 ssl_cert="/c.pem", ssl_key="/c.key", connect_params={"connect_timeout": 3})
    (kwargs,) = connect_calls
    assert kwargs["host"] == "/run/postgresql" and kwargs["sslrootcert"] == "/ca.pem"
    assert kwargs["sslcert"] == "/c.pem" and kwargs["sslkey"] == "/c.key" and kwargs["connect_timeout"] == 3


def test_password_in_connect_params_is_refused_before_connecting(run_aws_main, connect_calls, tmp_path):
    out = run_aws_main(cloudtrail_ingest.main, path=str(tmp_path), connect_params={"password": "hunter2"})
    assert out["failed"] and "login_password" in out["msg"]
    assert connect_calls == []


def test_password_is_masked(run_aws_main, connect_calls, tmp_path):
    out = run_aws_main(cloudtrail_ingest.main, path=str(tmp_path), login_password="hunter2-secret")
    assert "hunter2-secret" not in str(out)
    assert connect_calls[0]["password"] == "hunter2-secret"
