"""Connections that fail like a good tool (issues 11 and 12), against the lab's goiardi and Nessus simulator.

- a refused connection or a host name that does not resolve fails within seconds, naming the URL
  option (0.1.0 retried them with back-off, and said nothing about which option to fix);
- plain http:// is refused for Chef and Nessus unless allow_insecure_http says otherwise;
- a module that talks to AWS and Chef keeps one TLS switch per service: validate_certs=false
  (AWS's, e.g. from a group/aws default) leaves Chef's certificate checks on.
"""
import socket
import time

import pytest

from _lab import run_module


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chef_args(lab, **args):
    return dict({"chef_server_url": lab["LAB_CHEF_URL"], "client_name": lab["LAB_CHEF_USER"],
                 "client_key": lab["LAB_CHEF_KEY"], "allow_insecure_http": True}, **args)


def nessus_args(lab, **args):
    return dict({"url": lab["LAB_NESSUS_URL"], "ca_path": lab["LAB_NESSUS_CA"],
                 "access_key": lab["LAB_NESSUS_ACCESS_KEY"], "secret_key": lab["LAB_NESSUS_SECRET_KEY"],
                 "targets": ["10.0.0.1"], "name": "fail-fast", "wait_timeout": 30}, **args)


def timed(name, args):
    start = time.monotonic()
    result = run_module(name, args)
    return result, time.monotonic() - start


def test_lab_chef_works_with_http_allowed(lab):
    result = run_module("chef_node_info", chef_args(lab, name="no-such-node"))
    assert not result.get("failed") and result["nodes"] == [], result


@pytest.mark.parametrize("where, problem", [("127.0.0.1:%d" % free_port(), "connection refused"),
                                            ("chef.does-not-exist.invalid", "the host name does not resolve")])
def test_chef_unreachable_fails_within_seconds(lab, where, problem):
    result, took = timed("chef_node_info", chef_args(lab, chef_server_url="http://%s" % where, name="x"))
    assert result.get("failed") and problem in result["msg"] and "chef_server_url" in result["msg"], result
    assert took < 10, took


@pytest.mark.parametrize("where, problem", [("127.0.0.1:%d" % free_port(), "connection refused"),
                                            ("nessus.does-not-exist.invalid", "the host name does not resolve")])
def test_nessus_unreachable_fails_within_seconds(lab, where, problem):
    result, took = timed("nessus_scan", nessus_args(lab, url="https://%s" % where))
    assert result.get("failed") and problem in result["msg"] and "check url" in result["msg"], result
    assert took < 10, took


def test_plain_http_is_refused_unless_allowed(lab):
    assert lab["LAB_CHEF_URL"].startswith("http://")
    refused = run_module("chef_node_info", chef_args(lab, name="x", allow_insecure_http=False))
    assert refused.get("failed") and "plain http" in refused["msg"] and "allow_insecure_http" in refused["msg"]
    http_nessus = "http://" + lab["LAB_NESSUS_URL"].split("://", 1)[1]
    refused = run_module("nessus_scan", nessus_args(lab, url=http_nessus))
    assert refused.get("failed") and "plain http" in refused["msg"] and "allow_insecure_http" in refused["msg"]


def test_aws_validate_certs_does_not_switch_off_chef_tls(lab, aws, tmp_path):
    """validate_certs=false (AWS's) with an https Chef URL whose certificate is not trusted: Chef still checks it.

    The lab's Nessus simulator serves TLS with the lab's own CA, unknown to the system store: it
    stands in for a Chef server with an untrusted certificate.
    """
    chef_url = lab["LAB_NESSUS_URL"]
    common = {"chef_server_url": chef_url, "client_name": lab["LAB_CHEF_USER"], "client_key": lab["LAB_CHEF_KEY"],
              "endpoint_url": lab["LAB_AWS_ENDPOINT"], "access_key": "testing", "secret_key": "testing",
              "region": "us-east-1", "regions": ["us-east-1"]}
    result = run_module("unmanaged_instances", dict(common, validate_certs=False))
    assert result.get("failed") and "TLS error" in result["msg"] and "chef_ca_path" in result["msg"], result
    # Chef's own switch does turn it off (and then the stand-in answers something that is not Chef)
    result = run_module("unmanaged_instances", dict(common, validate_certs=False, chef_validate_certs=False))
    assert "TLS error" not in result.get("msg", ""), result
