"""Unit tests for the Chef client: signing, paging, retries, error messages (HTTP stubbed)."""
import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ansible_collections.cloudefigo.core.plugins.module_utils import _chef


@pytest.fixture(scope="module")
def key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


def b64(data, algorithm):
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode()


def signature_of(headers):
    parts = sorted((int(name.rsplit("-", 1)[1]), value) for name, value in headers.items()
                   if name.startswith("X-Ops-Authorization-"))
    assert all(len(value) <= 60 for dummy, value in parts)
    return base64.b64decode("".join(value for dummy, value in parts))


def test_canonical_request_1_3():
    body = b'{"name":"web"}'
    text = _chef.canonical_request("post", "/organizations/acme/nodes", body, "admin", "2024-01-02T03:04:05Z")
    assert text == "\n".join([
        "Method:POST",
        "Path:/organizations/acme/nodes",
        "X-Ops-Content-Hash:%s" % b64(body, "sha256"),
        "X-Ops-Sign:version=1.3",
        "X-Ops-Timestamp:2024-01-02T03:04:05Z",
        "X-Ops-UserId:admin",
        "X-Ops-Server-API-Version:1",
    ])


def test_canonical_request_1_0():
    text = _chef.canonical_request("GET", "/nodes", b"", "admin", "2024-01-02T03:04:05Z", protocol="1.0")
    assert text == "\n".join([
        "Method:GET",
        "Hashed Path:%s" % b64(b"/nodes", "sha1"),
        "X-Ops-Content-Hash:%s" % b64(b"", "sha1"),
        "X-Ops-Timestamp:2024-01-02T03:04:05Z",
        "X-Ops-UserId:admin",
    ])


def test_sign_1_3_verifies_with_the_public_key(key):
    body = b'{"a":1}'
    headers = _chef.sign_request(key, "admin", "PUT", "/nodes/web", body, timestamp="2024-01-02T03:04:05Z")
    assert headers["X-Ops-Sign"] == "algorithm=sha256;version=1.3"
    assert headers["X-Ops-Content-Hash"] == b64(body, "sha256")
    assert headers["X-Ops-Server-API-Version"] == "1"
    canonical = _chef.canonical_request("PUT", "/nodes/web", body, "admin", "2024-01-02T03:04:05Z").encode()
    # raises InvalidSignature when wrong
    key.public_key().verify(signature_of(headers), canonical, padding.PKCS1v15(), hashes.SHA256())


def test_sign_1_0_is_a_raw_private_encrypt_of_the_canonical_string(key):
    headers = _chef.sign_request(key, "admin", "GET", "/nodes", b"", protocol="1.0", timestamp="2024-01-02T03:04:05Z")
    assert headers["X-Ops-Sign"] == "algorithm=sha1;version=1.0"
    numbers = key.public_key().public_numbers()
    block = pow(int.from_bytes(signature_of(headers), "big"), numbers.e, numbers.n).to_bytes(256, "big")
    assert block[:2] == b"\x00\x01"
    message = block[block.index(b"\x00", 2) + 1:]
    assert message.decode() == _chef.canonical_request("GET", "/nodes", b"", "admin", "2024-01-02T03:04:05Z", "1.0")


def test_bad_keys_and_urls(pem):
    with pytest.raises(_chef.ChefError, match="not an unencrypted PEM"):
        _chef.load_private_key("nonsense")
    with pytest.raises(_chef.ChefError, match="chef_server_url"):
        _chef.ChefClient("chef.example.com", "admin", pem)
    with pytest.raises(_chef.ChefError, match="auth_protocol"):
        _chef.ChefClient("https://chef.example.com", "admin", pem, auth_protocol="1.1")


class Response(object):
    def __init__(self, status, data=None, text=None, headers=None):
        self.status_code = status
        self.headers = headers or {}
        self.text = text if text is not None else json.dumps(data)
        self.content = self.text.encode()

    def json(self):
        return json.loads(self.text)


class Session(object):
    """Answers from a function of (method, url, params, body); records the calls."""

    def __init__(self, answer):
        self.answer = answer
        self.calls = []

    def request(self, method, url, params=None, data=None, headers=None, timeout=None, verify=None):
        body = json.loads(data) if data else None
        self.calls.append({"method": method, "url": url, "params": dict(params or {}), "body": body, "headers": headers,
                           "verify": verify})
        return self.answer(method, url, params or {}, body)


def client(pem, answer, **kwargs):
    kwargs.setdefault("backoff", 0)
    return _chef.ChefClient("https://chef.example.com/organizations/acme", "auditor", pem, session=Session(answer), **kwargs)


def rows_server(total_rows, partial=True):
    def answer(method, url, params, body):
        start, rows = int(params["start"]), int(params["rows"])
        names = ["node-%04d" % index for index in range(total_rows)][start:start + rows]
        if partial:
            out = [{"url": "https://chef/nodes/%s" % name, "data": {"name": name}} for name in names]
        else:
            out = [{"name": name} for name in names]
        # goiardi: total is the size of this page, not the number of matches
        return Response(200, {"total": len(out), "start": start, "rows": out})
    return answer


@pytest.mark.parametrize("total,page,requests", [(0, 5, 1), (4, 5, 1), (5, 5, 2), (12, 5, 3), (5000, 5000, 2)])
def test_partial_search_pages_until_a_short_page(pem, total, page, requests):
    chef = client(pem, rows_server(total))
    rows = chef.search("node", "role:web", fields={"name": ["name"]}, page_size=page)
    assert [row["name"] for row in rows] == ["node-%04d" % index for index in range(total)]
    assert chef.request_count == requests
    calls = chef.session.calls
    assert [call["params"]["start"] for call in calls] == [page * index for index in range(requests)]
    assert all(call["method"] == "POST" and call["params"]["sort"] == "url asc" for call in calls)
    assert all(call["params"]["q"] == "role:web" and call["body"] == {"name": ["name"]} for call in calls)
    assert calls[0]["url"] == "https://chef.example.com/organizations/acme/search/node"


def test_full_search_sorts_by_name(pem):
    chef = client(pem, rows_server(7, partial=False))
    rows = chef.search("node", page_size=3)
    assert len(rows) == 7 and chef.request_count == 3
    assert all(call["method"] == "GET" and call["params"]["sort"] == "name asc" for call in chef.session.calls)


def test_signed_path_includes_the_organization(pem, key):
    chef = client(pem, lambda *args: Response(200, {}))
    chef.get("/nodes")
    headers = chef.session.calls[0]["headers"]
    canonical = _chef.canonical_request("GET", "/organizations/acme/nodes", b"", "auditor", headers["X-Ops-Timestamp"])
    key.public_key().verify(signature_of(headers), canonical.encode(), padding.PKCS1v15(), hashes.SHA256())


def test_retries_5xx_then_succeeds(pem):
    answers = [Response(503, text="busy", headers={"Retry-After": "0"}), Response(502, text="bad gateway"),
               Response(200, {"name": "web"})]
    chef = client(pem, lambda *args: answers.pop(0))
    assert chef.get("/nodes/web") == {"name": "web"}
    assert chef.request_count == 3


def test_gives_up_after_retries_with_the_server_body(pem):
    chef = client(pem, lambda *args: Response(500, {"error": ["database is down"]}), retries=2)
    with pytest.raises(_chef.ChefError, match="answered 500 to GET /organizations/acme/nodes: database is down") as info:
        chef.get("/nodes")
    assert info.value.status == 500 and chef.request_count == 3


def test_4xx_is_not_retried_and_explains(pem):
    chef = client(pem, lambda *args: Response(401, {"error": ["Failed to authenticate as 'auditor'"]}))
    with pytest.raises(_chef.ChefError, match="Failed to authenticate.*check client_name and the client key"):
        chef.get("/nodes")
    assert chef.request_count == 1


def test_missing_ok_and_validate_certs(pem):
    chef = client(pem, lambda *args: Response(404, {"error": ["not found"]}), ca_path="/etc/ca.pem")
    assert chef.get("/nodes/x", missing_ok=True) is None
    assert chef.session.calls[0]["verify"] == "/etc/ca.pem"
    assert client(pem, lambda *args: Response(200, {}), validate_certs=False).verify is False


def test_refused_connection_fails_at_once_naming_the_option(pem):
    import requests

    def refuse(*args):
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='chef.example.com', port=443): Max retries exceeded "
            "(Caused by NewConnectionError(': Failed to establish a new connection: [Errno 111] Connection refused'))")
    chef = client(pem, refuse, retries=3)
    with pytest.raises(_chef.ChefError, match=r"cannot connect to the Chef server at https://chef.example.com "
                                              r"\(connection refused\).*check chef_server_url"):
        chef.get("/nodes")
    assert chef.request_count == 1


def test_unknown_host_fails_at_once(pem):
    import requests

    def unknown(*args):
        raise requests.exceptions.ConnectionError(
            "Max retries exceeded (Caused by NameResolutionError(\"Failed to resolve 'chef.example.com' "
            "([Errno -2] Name or service not known)\"))")
    chef = client(pem, unknown, retries=3)
    with pytest.raises(_chef.ChefError, match="host name does not resolve.*check chef_server_url"):
        chef.get("/nodes")
    assert chef.request_count == 1


def test_timeouts_are_retried(pem):
    import requests
    answers = iter([requests.exceptions.ReadTimeout("read timed out"),
                    requests.exceptions.ConnectTimeout("connect timed out")])

    def slow_then_ok(*args):
        answer = next(answers, None)
        if answer is not None:
            raise answer
        return Response(200, {"ok": True})
    chef = client(pem, slow_then_ok, retries=3)
    assert chef.get("/nodes") == {"ok": True} and chef.request_count == 3

    def always_slow(*args):
        raise requests.exceptions.ReadTimeout("read timed out")
    chef = client(pem, always_slow, retries=2)
    with pytest.raises(_chef.ChefError, match="did not answer GET /organizations/acme/nodes within 30s, 3 times"):
        chef.get("/nodes")
    assert chef.request_count == 3


def test_plain_http_needs_allow_insecure_http(pem):
    params = {"chef_server_url": "http://chef.lab:4545", "client_name": "a", "client_key_content": pem}
    with pytest.raises(_chef.ChefError, match="chef_server_url http://chef.lab:4545 is plain http.*allow_insecure_http"):
        _chef.client_from_params(params)
    assert _chef.client_from_params(dict(params, allow_insecure_http=True)).base_url == "http://chef.lab:4545"
    with pytest.raises(_chef.ChefError, match="must be an https URL"):
        _chef.client_from_params(dict(params, chef_server_url="ftp://chef.lab"))


def validated(spec, params):
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    result = ArgumentSpecValidator(spec).validate(params)
    assert not result.error_messages, result.error_messages
    return result


def test_aws_validate_certs_never_turns_off_chef_tls(pem):
    """In a module that talks to AWS too, validate_certs is AWS's: a group/aws default cannot reach Chef."""
    spec = _chef.chef_argument_spec(aws_module=True)
    spec["validate_certs"] = dict(type="bool", default=True)   # AnsibleAWSModule's own option
    params = validated(spec, {"chef_server_url": "https://chef.example.com", "client_name": "a",
                              "client_key_content": pem, "validate_certs": False}).validated_parameters
    assert params["chef_validate_certs"] is True
    assert _chef.client_from_params(params).verify is True
    params = validated(spec, {"chef_server_url": "https://chef.example.com", "client_name": "a",
                              "client_key_content": pem, "chef_validate_certs": False,
                              "ca_path": "/etc/chef-ca.pem"}).validated_parameters
    assert _chef.client_from_params(params).verify is False and params["chef_ca_path"] == "/etc/chef-ca.pem"


def test_chef_only_modules_keep_the_old_names_as_deprecated_aliases(pem):
    result = validated(_chef.chef_argument_spec(), {
        "chef_server_url": "https://chef.example.com", "client_name": "a", "client_key_content": pem,
        "validate_certs": False, "ca_path": "/etc/chef-ca.pem"})
    params = result.validated_parameters
    assert params["chef_validate_certs"] is False and params["chef_ca_path"] == "/etc/chef-ca.pem"
    assert sorted(d["msg"].split("'")[1] for d in result._deprecations) == ["ca_path", "validate_certs"]
    assert {d["version"] for d in result._deprecations} == {"0.3.0"}
    assert _chef.client_from_params(params).verify is False


def test_client_from_params_reads_path_or_content(pem, tmp_path):
    path = tmp_path / "key.pem"
    path.write_text(pem)
    params = {"chef_server_url": "https://chef", "client_name": "a", "client_key": str(path), "client_key_content": None}
    assert _chef.client_from_params(params).client_name == "a"
    params.update(client_key=None, client_key_content=pem)
    assert _chef.client_from_params(params).auth_protocol == "1.3"
    params.update(client_key="/nonexistent.pem", client_key_content=None)
    with pytest.raises(_chef.ChefError, match="cannot read client_key /nonexistent.pem"):
        _chef.client_from_params(params)


def test_node_summaries():
    node = {"name": "web", "chef_environment": "prod", "run_list": ["role[web]"],
            "automatic": {"ohai_time": 1000.5, "ec2": {"instance_id": "i-1"}, "fqdn": "web.internal"},
            "normal": {"fqdn": "ignored"}, "default": {"ipaddress": "10.0.0.1"}}
    summary = _chef.summarize_node(node, now=1100)
    assert summary == {"name": "web", "chef_environment": "prod", "run_list": ["role[web]"], "ohai_time": 1000.5,
                       "ipaddress": "10.0.0.1", "fqdn": "web.internal", "ec2_instance_id": "i-1", "ohai_age": 99,
                       "owner": None}
    # the marks are read from the normal attributes only
    node["automatic"]["cloudefigo"] = {"instance_id": "i-evil"}
    assert _chef.summarize_node(node)["owner"] is None
    node["normal"]["cloudefigo"] = {"instance_id": "i-1", "launch_id": "l-1"}
    assert _chef.summarize_node(node)["owner"] == {"instance_id": "i-1", "launch_id": "l-1"}
    assert _chef.summarize_row({"name": "x", "owner": {"instance_id": "i-2"}})["owner"] == {
        "instance_id": "i-2", "launch_id": None}
    assert _chef.summarize_row({"name": "x", "owner": "i-2"})["owner"] is None
    assert _chef.ohai_age(None) is None and _chef.ohai_age("x") is None
