"""Unit tests for module_utils/_reconcile: durations, launch records, "is it gone", "is it ours", the plan."""
import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils import _reconcile as rc

IID = "i-0123456789abcdef0"
OTHER = "i-0fedcba9876543210"
VOL = "vol-0123456789abcdef0"
NOW = 1_800_000_000


def record(**changes):
    base = {"instance_id": IID, "launch_id": "l1", "region": "us-east-1", "account": "123456789012",
            "role_name": "cloudefigo-web-01", "instance_profile_name": "cloudefigo-web-01", "key_object": "volumes/web-01.key",
            "volume_ids": [VOL], "chef_node": "web-01", "gone_since": None}
    base.update(changes)
    return base


def marks(instance_id=IID, launch_id="l1"):
    return {"cloudefigo:instance-id": instance_id, "cloudefigo:launch-id": launch_id}


# --- durations ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value, seconds", [
    (0, 0), (86400, 86400), ("86400", 86400), ("1d", 86400), ("12h", 43200), ("1d12h", 129600),
    ("30m", 1800), ("45s", 45), ("45", 45), (" 2D ", 172800), ("1d 2h 3m 4s", 93784), ("0", 0),
])
def test_durations(value, seconds):
    assert rc.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "1w", "-1", -5, "d", "1.5h", "h1", True, None, "1d1d"])
def test_bad_durations_name_the_option(value):
    with pytest.raises(rc.RecordError, match="audit_reconcile_after"):
        rc.parse_duration(value)


def test_times_round_trip():
    text = rc.format_time(NOW)
    assert text.endswith("Z") and rc.parse_time(text) == NOW
    assert rc.parse_time("yesterday") is None and rc.parse_time(None) is None


# --- the record --------------------------------------------------------------------------------
def test_record_tags_round_trip_and_fit_s3():
    tags = rc.record_tags(record(volume_ids=[VOL, "vol-0fedcba9876543210"], gone_since=rc.format_time(NOW)))
    assert len(tags) <= 10  # S3's limit per object
    assert tags["cloudefigo:volumes"] == "vol-0123456789abcdef0 vol-0fedcba9876543210"
    back = rc.record_from_tags(tags, "us-east-1/" + IID)
    assert back["volume_ids"] == [VOL, "vol-0fedcba9876543210"] and back["gone_since"] == rc.format_time(NOW)
    assert back["role_name"] == "cloudefigo-web-01" and back["chef_node"] == "web-01"
    # no instance-arn tag: the key bucket's policy lets no instance read a record
    assert "cloudefigo:instance-arn" not in tags


@pytest.mark.parametrize("changes, text", [
    ({"instance_id": "i-xyz"}, "instance_id"),
    ({"region": "mars"}, "region"),
    ({"account": "12"}, "account"),
    ({"launch_id": ""}, "launch_id"),
    ({"volume_ids": ["disk-1"]}, "volume_ids"),
    ({"volume_ids": ["vol-%017x" % n for n in range(12)]}, "256"),
    ({"chef_node": "web 01;rm"}, "chef_node"),
])
def test_bad_records_are_refused(changes, text):
    with pytest.raises(rc.RecordError, match=text):
        rc.record_tags(record(**changes))


def test_a_record_under_another_instance_key_is_refused():
    tags = rc.record_tags(record())
    with pytest.raises(rc.RecordError, match="does not match"):
        rc.record_from_tags(tags, "us-east-1/" + OTHER)
    with pytest.raises(rc.RecordError):
        rc.record_from_tags({"cloudefigo:instance-id": IID}, "us-east-1/" + IID)


def test_merge_keeps_volumes_and_refuses_another_launch():
    merged = rc.merge_record(record(volume_ids=[VOL], gone_since="2020-01-01T00:00:00Z"),
                             record(volume_ids=["vol-0fedcba9876543210"], role_name=None))
    assert merged["volume_ids"] == [VOL, "vol-0fedcba9876543210"]
    assert merged["role_name"] == "cloudefigo-web-01" and merged["gone_since"] is None
    with pytest.raises(rc.RecordError, match="names launch l1, not l2"):
        rc.merge_record(record(), record(launch_id="l2"))


# --- gone? -------------------------------------------------------------------------------------
REGIONS = ["us-east-1"]


@pytest.mark.parametrize("outcome, status", [
    (("found", "terminated"), "gone"),
    (("error", "InvalidInstanceID.NotFound"), "gone"),
    (("found", "running"), "live"),
    (("found", "stopped"), "live"),
    (("found", "shutting-down"), "live"),
    (("error", "UnauthorizedOperation", "denied"), "unknown"),
    (("error", "InternalError", "500"), "unknown"),
    (("error", "RequestLimitExceeded"), "unknown"),
    (None, "unknown"),
])
def test_only_terminated_or_not_found_is_gone(outcome, status):
    assert rc.instance_status(record(), REGIONS, "123456789012", outcome)[0] == status


def test_another_region_or_account_is_never_gone():
    status, reason = rc.instance_status(record(region="eu-west-1"), REGIONS, "123456789012", ("error", "InvalidInstanceID.NotFound"))
    assert status == "unknown" and "not audited" in reason
    status, reason = rc.instance_status(record(account="210987654321"), REGIONS, "123456789012", ("found", "terminated"))
    assert status == "unknown" and "account" in reason


def test_gone_since_starts_once_and_resets_when_seen_again():
    assert rc.gone_since_update("gone", None, NOW) == (rc.format_time(NOW), True)
    assert rc.gone_since_update("gone", rc.format_time(NOW - 5), NOW) == (rc.format_time(NOW - 5), False)
    assert rc.gone_since_update("gone", "forged", NOW) == (rc.format_time(NOW), True)
    assert rc.gone_since_update("live", rc.format_time(NOW - 5), NOW) == (None, True)
    assert rc.gone_since_update("unknown", rc.format_time(NOW - 5), NOW) == (rc.format_time(NOW - 5), False)


def test_due_after_the_delay_only():
    assert rc.due(rc.format_time(NOW), NOW, 0)
    assert not rc.due(rc.format_time(NOW - 3600), NOW, 86400)
    assert rc.due(rc.format_time(NOW - 86400), NOW, 86400)
    assert not rc.due(None, NOW, 0)


# --- ours? -------------------------------------------------------------------------------------
def test_tagged_resource_needs_the_record_marks():
    assert rc.judge_tagged(record(), "role", "r", marks())["remove"]
    assert not rc.judge_tagged(record(), "role", "r", None)["present"]
    for tags in ({}, marks(OTHER), marks(IID, "l0"), {"cloudefigo:instance-id": IID}):
        judged = rc.judge_tagged(record(), "role", "r", tags)
        assert judged["present"] and not judged["ours"] and not judged["remove"]
    quarantined = rc.judge_tagged(record(), "role", "r", marks(), "role is quarantined")
    assert quarantined["ours"] and not quarantined["remove"] and "quarantined" in quarantined["reason"]


def test_key_needs_every_version_marked():
    assert rc.judge_key(record(), "k", [marks(), marks()])["remove"]
    assert not rc.judge_key(record(), "k", [marks(), marks(OTHER)])["remove"]
    assert not rc.judge_key(record(), "k", [])["present"]


def test_volume_only_when_available_and_marked():
    def volume(state, tags):
        return {"State": state, "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
    assert rc.judge_volume(record(), VOL, volume("available", marks()))["remove"]
    attached = rc.judge_volume(record(), VOL, volume("in-use", marks()))
    assert attached["ours"] and not attached["remove"] and "in-use" in attached["reason"]
    assert not rc.judge_volume(record(), VOL, volume("available", marks(OTHER)))["ours"]
    assert not rc.judge_volume(record(), VOL, None)["present"]


def test_chef_client_goes_only_with_a_node_proven_ours():
    node, client = rc.judge_node(record(), "web-01", {"instance_id": IID, "launch_id": "l1"}, True)
    assert node["remove"] and client["remove"]
    node, client = rc.judge_node(record(), "web-01", False, True)
    assert not node["present"] and client["present"] and not client["remove"]
    # a rogue node that marks itself for another instance: neither goes
    node, client = rc.judge_node(record(), "web-01", {"instance_id": OTHER, "launch_id": "l1"}, True)
    assert not node["remove"] and not client["remove"]
    node, client = rc.judge_node(record(), "web-01", None, False)
    assert node["present"] and not node["ours"] and not client["present"]


# --- the plan ----------------------------------------------------------------------------------
def resources(**overrides):
    out = [rc.judge_key(record(), "volumes/web-01.key", [marks()]),
           rc.judge_tagged(record(), "role", "cloudefigo-web-01", marks()),
           rc.judge_tagged(record(), "instance_profile", "cloudefigo-web-01", marks()),
           rc.judge_volume(record(), VOL, {"State": "available", "Tags": [{"Key": k, "Value": v} for k, v in marks().items()]})]
    out += rc.judge_node(record(), "web-01", {"instance_id": IID, "launch_id": "l1"}, True)
    for index, tags in overrides.items():
        out[int(index[1:])] = tags
    return out


def test_plan_removes_everything_proven_once_due():
    plan = rc.plan(record(), resources(), True)
    assert plan == {"key_object": "volumes/web-01.key", "role": "cloudefigo-web-01", "volumes": [VOL],
                    "chef_node": "web-01", "record": True}


def test_plan_removes_nothing_before_due():
    assert rc.plan(record(), resources(), False) == {"key_object": None, "role": None, "volumes": [], "chef_node": None,
                                                     "record": False}


def test_plan_keeps_a_pair_with_a_member_not_ours_and_keeps_the_record():
    forged_profile = rc.judge_tagged(record(), "instance_profile", "cloudefigo-web-01", marks(OTHER))
    plan = rc.plan(record(), resources(r2=forged_profile), True)
    assert plan["role"] is None and plan["key_object"] and plan["chef_node"] and not plan["record"]
    attached = rc.judge_volume(record(), VOL, {"State": "in-use", "Tags": [{"Key": k, "Value": v} for k, v in marks().items()]})
    plan = rc.plan(record(), resources(r3=attached), True)
    assert plan["volumes"] == [] and plan["role"] and not plan["record"]


def test_plan_of_absent_resources_removes_just_the_record():
    gone = [dict(r, present=False, ours=False, remove=False) for r in resources()]
    assert rc.plan(record(), gone, True) == {"key_object": None, "role": None, "volumes": [], "chef_node": None, "record": True}
