"""The per-interface record of the groups to restore."""
from ansible_collections.cloudefigo.core.plugins.modules import instance_quarantine as quarantine


def test_groups_round_trip_and_split_past_255_characters():
    groups = ["sg-%017d" % index for index in range(16)]
    tags = quarantine.encode_groups(groups)
    assert all(len(value) <= 255 for value in tags.values()) and len(tags) == 2
    assert quarantine.decode_groups(dict(tags, Name="x")) == groups
    assert quarantine.group_tag_keys(dict(tags, Name="x")) == sorted(tags)


def test_no_record_and_empty_record():
    assert quarantine.decode_groups({"Name": "x"}) is None
    assert quarantine.decode_groups(quarantine.encode_groups([])) == []
    assert quarantine.decode_groups(quarantine.encode_groups(["sg-1", "sg-2"])) == ["sg-1", "sg-2"]


def test_only_an_isolation_group_the_collection_made_counts_as_its_own():
    owned = {"Tags": [{"Key": "cloudefigo:purpose", "Value": "isolation"}], "Description": "anything"}
    legacy = {"Tags": [{"Key": "Purpose", "Value": "quarantine"}], "Description": quarantine.ISOLATION_DESCRIPTION}
    assert quarantine.owned_isolation_group(owned)
    assert quarantine.owned_isolation_group(legacy)
    # a group of someone else: no tag, another purpose, or the legacy tag on another description
    assert not quarantine.owned_isolation_group({"Description": "web servers"})
    assert not quarantine.owned_isolation_group({"Tags": [{"Key": "cloudefigo:purpose", "Value": "production"}]})
    assert not quarantine.owned_isolation_group({"Tags": [{"Key": "Purpose", "Value": "quarantine"}],
                                                 "Description": "web servers"})
