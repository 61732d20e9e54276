"""The quarantine record, the revocation policy and the release check."""
import json

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils import _quarantine as q

ARN_A = "arn:aws:ec2:us-east-1:123456789012:instance/i-0aaa"
ARN_B = "arn:aws:ec2:us-east-1:123456789012:instance/i-0bbb"


def record(**changes):
    base = q.new_record("i-0aaa", "vpc-1", "IR-1", "2026-01-01T00:00:00+00:00", False,
                        {"eni-1": ["sg-web", "sg-ssh"], "eni-2": ["sg-data"]}, ["role-a"])
    base.update(changes)
    return base


def test_record_round_trip():
    body = json.dumps(record())
    assert q.parse_record(body, "i-0aaa") == record()
    assert q.recorded_groups(record()) == ["sg-data", "sg-ssh", "sg-web"]
    assert q.record_key("quarantine/", "i-0aaa") == "quarantine/records/i-0aaa.json"


@pytest.mark.parametrize("body, problem", [
    ("not json", "not JSON"),
    (json.dumps(record(version=0)), "version 1"),
    (json.dumps(record(instance_id="i-0bbb")), "names instance 'i-0bbb'"),
    (json.dumps(record(state="open")), "state"),
    (json.dumps(record(network_interfaces={"eni-1": "sg-1"})), "network_interfaces"),
    (json.dumps(record(termination_protection="false")), "termination_protection"),
])
def test_bad_records_are_refused(body, problem):
    with pytest.raises(q.RecordError, match=problem):
        q.parse_record(body, "i-0aaa")


def test_release_only_into_groups_of_the_instance_vpc():
    found = {"sg-web": "vpc-1", "sg-ssh": "vpc-1", "sg-data": "vpc-1"}
    assert q.release_problems(record(), "vpc-1", found) == []
    problems = q.release_problems(record(), "vpc-1", dict(found, **{"sg-data": "vpc-2"}))
    assert problems == ["group sg-data is in vpc-2, not in the instance's VPC vpc-1"]
    problems = q.release_problems(record(), "vpc-1", {"sg-web": "vpc-1", "sg-ssh": "vpc-1"})
    assert problems == ["group sg-data does not exist"]
    assert "made in vpc-1" in q.release_problems(record(), "vpc-9", {})[0]


def test_revocation_names_each_quarantined_instance_of_the_role():
    one = q.revocation_policy([ARN_A])
    statement = one["Statement"][0]
    assert statement["Effect"] == "Deny" and statement["Action"] == "*" and statement["Resource"] == "*"
    assert statement["Condition"] == {"StringEquals": {"ec2:SourceInstanceARN": ARN_A}}
    assert q.revoked_arns(one) == [ARN_A] and q.revoked_arns(json.dumps(one)) == [ARN_A]
    two = q.revocation_policy([ARN_B, ARN_A, ARN_A])
    assert q.revoked_arns(two) == [ARN_A, ARN_B]
    assert q.revocation_policy([]) is None
    # a document someone else wrote under the name revokes nothing we know of
    assert q.revoked_arns({"Statement": [{"Sid": "Other", "Condition": {"StringEquals": {
        "ec2:SourceInstanceARN": ARN_A}}}]}) == []
    assert q.same_policy(json.dumps(one), one) and not q.same_policy("{", one)
    assert q.instance_arn("aws", "us-east-1", "123456789012", "i-0aaa") == ARN_A


def test_legacy_tags_are_found_for_removal():
    tags = {"Name": "x", q.LEGACY_GROUPS_TAG: "sg-1", q.LEGACY_GROUPS_TAG + ":2": "sg-2",
            q.LEGACY_PROTECTION_TAG: "false"}
    assert q.legacy_tag_keys(tags) == sorted(k for k in tags if k != "Name")
