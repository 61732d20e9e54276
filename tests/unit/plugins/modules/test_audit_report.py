"""audit_report: bad input fails naming the option, before any AWS or database call."""
import pytest

from ansible_collections.cloudefigo.core.plugins.modules import audit_report


@pytest.mark.parametrize("args,option", [
    ({"account_id": "123456789012"}, "dest_dir"),
    ({"account_id": "123456789012", "bucket": "Bad_Bucket"}, "bucket"),
    ({"account_id": "123456789012", "dest_dir": "/tmp/x", "generated_at": "yesterday"}, "generated_at"),
    ({"account_id": "123456789012", "dest_dir": "/tmp/x", "prefix": "../up/"}, "prefix"),
    ({"account_id": "123456789012", "dest_dir": "/tmp/x", "history": 0}, "history"),
    ({"account_id": "123456789012", "dest_dir": "/tmp/x", "siem_days": 0}, "siem_days"),
])
def test_bad_input_names_the_option(run_aws_main, args, option):
    result = run_aws_main(audit_report.main, **args)
    assert result["failed"]
    assert option in result["msg"]


def test_render_only_to_a_directory(run_aws_main, tmp_path):
    """No bucket, an account given: nothing to ask AWS; check mode writes nothing."""
    args = {"account_id": "123456789012", "dest_dir": str(tmp_path), "generated_at": "2026-11-29T06:00:00Z",
            "unmanaged": {"unmanaged": [{"instance_id": "i-1", "region": "us-east-1", "state": "running"}],
                          "counts": {"us-east-1": {"instances": 1}}}}
    dry = run_aws_main(audit_report.main, _ansible_check_mode=True, _ansible_diff=True, **args)
    assert dry["changed"] and not list(tmp_path.iterdir())
    assert dry["diff"]["after"]["unmanaged_instances"] == 1 and dry["diff"]["before"] == {}
    first = run_aws_main(audit_report.main, **args)
    assert first["changed"] and first["parts_written"] == ["state/123456789012/us-east-1.json"]
    assert (tmp_path / "audit-report.html").exists()
    again = run_aws_main(audit_report.main, **args)
    assert not again["changed"]
    assert again["summary"] == first["summary"]
