"""instance_quarantine: options checked before any AWS call."""
from ansible_collections.cloudefigo.core.plugins.modules import instance_quarantine


def test_quarantine_needs_an_evidence_bucket(run_aws_main):
    result = run_aws_main(instance_quarantine.main, instance_id="i-0123", case_id="IR-1")
    assert result["failed"] and "evidence_bucket" in result["msg"]


def test_release_needs_the_evidence_bucket_too(run_aws_main):
    result = run_aws_main(instance_quarantine.main, instance_id="i-0123", state="released")
    assert result["failed"] and "evidence_bucket" in result["msg"]


def test_quarantine_needs_a_case(run_aws_main):
    result = run_aws_main(instance_quarantine.main, instance_id="i-0123", evidence_bucket="ir-evidence")
    assert result["failed"] and "case_id" in result["msg"]


def test_only_an_isolation_group_the_collection_made_counts_as_its_own():
    quarantine = instance_quarantine
    owned = {"Tags": [{"Key": "cloudefigo:purpose", "Value": "isolation"}], "Description": "anything"}
    legacy = {"Tags": [{"Key": "Purpose", "Value": "quarantine"}], "Description": quarantine.ISOLATION_DESCRIPTION}
    assert quarantine.owned_isolation_group(owned)
    assert quarantine.owned_isolation_group(legacy)
    # a group of someone else: no tag, another purpose, or the legacy tag on another description
    assert not quarantine.owned_isolation_group({"Description": "web servers"})
    assert not quarantine.owned_isolation_group({"Tags": [{"Key": "cloudefigo:purpose", "Value": "production"}]})
    assert not quarantine.owned_isolation_group({"Tags": [{"Key": "Purpose", "Value": "quarantine"}],
                                                 "Description": "web servers"})
