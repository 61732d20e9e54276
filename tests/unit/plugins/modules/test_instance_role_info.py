"""Unit tests for cloudefigo.core.instance_role_info: validation and the lookup of each role (no AWS)."""

import pytest
from botocore.exceptions import ClientError

from ansible_collections.cloudefigo.core.plugins.modules import instance_role_info as iri


def error(code):
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRole")


class Stop(Exception):
    pass


class StubModule:
    def fail_json_aws(self, exc, msg):
        raise Stop("%s: %s" % (msg, exc))


class StubIAM:
    def __init__(self, roles, errors=None, tags=None):
        self.roles, self.errors, self.tags, self.calls = roles, errors or {}, tags or {}, []

    def get_role(self, RoleName, aws_retry):
        self.calls.append(("get_role", RoleName))
        if RoleName in self.errors:
            raise self.errors[RoleName]
        return {"Role": self.roles[RoleName]}

    def list_role_tags(self, RoleName, aws_retry):
        self.calls.append(("list_role_tags", RoleName))
        return {"Tags": self.tags.get(RoleName, [])}


@pytest.mark.parametrize("names, text", [
    (["ok", "has/path"], "names[1] 'has/path' is not an IAM role name"),
    ([""], "names[0]"),
    (["x" * 65], "names[0]"),
])
def test_main_fails_naming_option(run_aws_main, names, text):
    result = run_aws_main(iri.main, names=names)
    assert result["failed"] is True and text in result["msg"], result["msg"]
    assert "exception" not in result


def test_each_role_in_order_missing_ones_as_absent():
    marks = [{"Key": "cloudefigo:instance-id", "Value": "i-0123456789abcdef0"}, {"Key": "cloudefigo:launch-id", "Value": "L1"}]
    iam = StubIAM({"r1": {"RoleName": "r1", "Arn": "arn:aws:iam::1:role/p/r1", "Path": "/p/", "Tags": marks},
                   "r3": {"RoleName": "r3", "Arn": "arn:aws:iam::1:role/r3", "Path": "/"}},
                  errors={"r2": error("NoSuchEntity")}, tags={"r3": [{"Key": "cloudefigo:launch-id", "Value": "L0"}]})
    found = [iri.look_up(StubModule(), iam, name) for name in ("r1", "r2", "r3")]
    assert [f["name"] for f in found] == ["r1", "r2", "r3"]
    assert found[0]["exists"] and found[0]["instance_id"] == "i-0123456789abcdef0" and found[0]["launch_id"] == "L1"
    assert found[0]["arn"] == "arn:aws:iam::1:role/p/r1" and found[0]["path"] == "/p/"
    assert found[1] == {"name": "r2", "exists": False, "role_name": None, "arn": None, "path": None, "tags": {},
                        "instance_id": None, "launch_id": None}
    # an answer without tags: read them, never take the role for unmarked
    assert found[2]["launch_id"] == "L0" and found[2]["instance_id"] is None
    assert ("list_role_tags", "r3") in iam.calls and ("list_role_tags", "r1") not in iam.calls


def test_a_lookup_error_stops_never_taken_for_no_role():
    iam = StubIAM({}, errors={"r1": error("AccessDenied")})
    with pytest.raises(Stop) as err:
        iri.look_up(StubModule(), iam, "r1")
    assert "never taken for 'no role'" in str(err.value)
