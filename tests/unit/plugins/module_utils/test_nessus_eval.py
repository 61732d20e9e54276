"""Verdicts of the shared Nessus evaluation on the real samples in tests/data/nessus/."""
import os

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._nessus import evaluation
from ansible_collections.cloudefigo.core.plugins.module_utils._nessus.evaluation import (
    SEVERITY_NAMES,
    NessusReportError,
    evaluate_file,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
SAMPLES = os.environ.get("LAB_NESSUS_SAMPLES") or os.path.join(ROOT, "tests", "data", "nessus")

# severity 0..4 counts, from the samples README
EXPECTED = {
    "pytenable_example.nessus": (135, 2, 9, 77, 7),
    "dojo_nessus_with_cvssv3.nessus": (23, 1, 13, 10, 2),
    "dojo_nessus_many_vuln.xml": (7, 0, 0, 0, 0),
    "rubynessus_example_v3.nessus": (118, 8, 16, 5, 8),
}
HOSTS = {
    "pytenable_example.nessus": "adam",
    "dojo_nessus_with_cvssv3.nessus": "testphp.vulnweb.com",
    "dojo_nessus_many_vuln.xml": "preprod.boardvantage.net",
    "rubynessus_example_v3.nessus": "10.0.0.1",
}


def sample(name):
    path = os.path.join(SAMPLES, name)
    if not os.path.exists(path):
        pytest.fail("samples not found at %s (tests/data/nessus is part of the repository)" % SAMPLES)
    return path


@pytest.mark.parametrize("threshold", SEVERITY_NAMES)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_verdict_at_every_threshold(name, threshold):
    counts = EXPECTED[name]
    level = SEVERITY_NAMES.index(threshold)
    result = evaluate_file(sample(name), fail_on=threshold, max_findings=0)
    blocking = sum(counts[level:])
    assert result["blocking_count"] == blocking
    assert len(result["blocking_findings"]) == blocking
    assert result["passed"] is (blocking == 0)
    assert result["counts"] == dict(zip(SEVERITY_NAMES, counts), total=sum(counts))
    assert result["hosts"] == {HOSTS[name]: dict(zip(SEVERITY_NAMES, counts), total=sum(counts))}
    assert result["host_count"] == 1
    assert all(f["severity"] >= level for f in result["blocking_findings"])
    assert result["accepted_findings"] == [] and result["accepted_count"] == 0
    assert result["findings_truncated"] is False


def test_clean_report_passes_every_threshold_above_info():
    for threshold in SEVERITY_NAMES[1:]:
        assert evaluate_file(sample("dojo_nessus_many_vuln.xml"), fail_on=threshold)["passed"] is True
    assert evaluate_file(sample("dojo_nessus_many_vuln.xml"), fail_on="info")["passed"] is False


def test_finding_fields():
    result = evaluate_file(sample("dojo_nessus_with_cvssv3.nessus"), fail_on="critical")
    assert result["blocking_count"] == 2
    finding = result["blocking_findings"][0]
    assert set(finding) >= {"host", "plugin_id", "plugin_name", "severity", "port", "protocol"}
    assert finding["host"] == "testphp.vulnweb.com"
    assert isinstance(finding["plugin_id"], int) and isinstance(finding["port"], int)
    assert finding["severity"] == 4 and finding["severity_name"] == "critical"
    assert "critical" in result["msg"] and "not passed" in result["msg"]


def test_severity_basis():
    assert evaluate_file(sample("dojo_nessus_with_cvssv3.nessus"))["severity_basis"] == "cvss_v2"
    assert evaluate_file(sample("pytenable_example.nessus"))["severity_basis"] is None


def _critical_ids(name):
    return sorted({f["plugin_id"] for f in evaluate_file(sample(name), fail_on="critical")["blocking_findings"]})


def test_accepted_plugins_global_list():
    ids = _critical_ids("pytenable_example.nessus")
    result = evaluate_file(sample("pytenable_example.nessus"), fail_on="critical", accepted_plugins=ids)
    assert result["passed"] is True
    assert result["accepted_count"] == 7 and len(result["accepted_findings"]) == 7
    # numeric strings are plugin IDs too; one missing keeps it blocked
    partial = [str(i) for i in ids[1:]]
    result = evaluate_file(sample("pytenable_example.nessus"), fail_on="critical", accepted_plugins=partial)
    assert result["passed"] is False
    assert {f["plugin_id"] for f in result["blocking_findings"]} == {ids[0]}
    assert result["accepted_count"] + result["blocking_count"] == 7


def test_accepted_plugins_per_host():
    name = "pytenable_example.nessus"
    ids = _critical_ids(name)
    # the scanned address (host-ip), any case, and "*"
    assert evaluate_file(sample(name), fail_on="critical", accepted_plugins={"192.168.16.133": ids})["passed"] is True
    assert evaluate_file(sample(name), fail_on="critical", accepted_plugins={"*": ids})["passed"] is True
    # the scan's target: the only target of the scan, or the ReportHost name when it is a target
    assert evaluate_file(sample(name), fail_on="critical", accepted_plugins={"10.9.9.9": ids},
                         targets=["10.9.9.9"])["passed"] is True
    assert evaluate_file(sample(name), fail_on="critical", accepted_plugins={"ADAM": ids},
                         targets=["adam", "10.1.1.1"])["passed"] is True
    other = evaluate_file(sample(name), fail_on="critical", accepted_plugins={"someone-else": ids})
    assert other["passed"] is False and other["blocking_count"] == 7
    mixed = evaluate_file(sample(name), fail_on="critical", accepted_plugins={"*": ids[:3], "192.168.16.133": ids[3:]})
    assert mixed["passed"] is True
    # an address in the ReportHost name is the scanned address
    v3 = "rubynessus_example_v3.nessus"
    assert evaluate_file(sample(v3), fail_on="critical", accepted_plugins={"10.0.0.1": _critical_ids(v3)})["passed"]


@pytest.mark.parametrize("claimed", ["adam", "adam.ad.demo.io", "ADAM.AD.DEMO.IO"])
def test_accepted_plugins_never_match_what_the_host_says_about_itself(claimed):
    """host-fqdn / hostname (and a ReportHost name that is neither an address nor a target) come
    from the host or its DNS: a rogue host claiming the name of an accepted host stays blocked."""
    name = "pytenable_example.nessus"
    ids = _critical_ids(name)
    result = evaluate_file(sample(name), fail_on="critical", accepted_plugins={claimed: ids})
    assert result["passed"] is False and result["blocking_count"] == 7 and result["accepted_count"] == 0
    # scanned as 192.168.16.133 (another target than the accepted one): still blocked
    result = evaluate_file(sample(name), fail_on="critical", accepted_plugins={claimed: ids},
                           targets=["192.168.16.133", "10.0.0.7"])
    assert result["passed"] is False and result["blocking_count"] == 7


def test_accepted_plugins_netbios_name_is_not_a_target():
    name = "rubynessus_example_v3.nessus"
    ids = _critical_ids(name)
    for claimed in ("METASPLOITABLE", "hostname"):
        result = evaluate_file(sample(name), fail_on="critical", accepted_plugins={claimed: ids})
        assert result["passed"] is False and result["accepted_count"] == 0


def test_accepted_plugins_forged_host_properties(tmp_path):
    """A host whose self-reported names are another host's address gains nothing from them."""
    text = ('<NessusClientData_v2><Report name="r"><ReportHost name="rogue.internal"><HostProperties>'
            '<tag name="hostname">10.0.0.5</tag><tag name="host-fqdn">10.0.0.5</tag>'
            '<tag name="netbios-name">10.0.0.5</tag><tag name="host-ip">10.0.0.66</tag></HostProperties>'
            '<ReportItem severity="4" port="22" protocol="tcp" pluginID="51192" pluginName="x"/>'
            '</ReportHost></Report></NessusClientData_v2>')
    path = _write(tmp_path, text)
    assert evaluate_file(path, accepted_plugins={"10.0.0.5": [51192]})["passed"] is False
    assert evaluate_file(path, accepted_plugins={"10.0.0.5": [51192]}, targets=["10.0.0.66", "10.0.0.5"])["passed"] is False
    assert evaluate_file(path, accepted_plugins={"10.0.0.66": [51192]})["passed"] is True


@pytest.mark.parametrize("bad", [["abc"], {"host": ["x1"]}, [True], {"host": [None]}])
def test_accepted_plugins_rejects_non_ids(bad):
    with pytest.raises(NessusReportError, match="accepted_plugins"):
        evaluate_file(sample("dojo_nessus_many_vuln.xml"), accepted_plugins=bad)


def test_max_findings_truncates_lists_not_counts():
    result = evaluate_file(sample("pytenable_example.nessus"), fail_on="medium", max_findings=5)
    assert result["blocking_count"] == 93
    assert len(result["blocking_findings"]) == 5
    assert result["findings_truncated"] is True


def test_unknown_threshold():
    with pytest.raises(NessusReportError, match="fail_on"):
        evaluate_file(sample("dojo_nessus_many_vuln.xml"), fail_on="severe")


def test_malformed_sample_is_an_error():
    with pytest.raises(NessusReportError, match="not well-formed.*line 1488"):
        evaluate_file(sample("rubynessus_malformed_example_v2.nessus"), fail_on="critical")


def _write(tmp_path, text, name="report.nessus"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


HOST = ('<Report name="r"><ReportHost name="h"><HostProperties/>'
        '<ReportItem severity="0" port="0" protocol="tcp" pluginID="1" pluginName="x"/></ReportHost></Report>')


def test_xxe_is_refused(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    text = ('<?xml version="1.0"?>\n<!DOCTYPE NessusClientData_v2 [<!ENTITY xxe SYSTEM "file://%s">]>\n'
            '<NessusClientData_v2><Report name="&xxe;"><ReportHost name="h"><ReportItem severity="0" pluginID="1"/>'
            '</ReportHost></Report></NessusClientData_v2>' % secret)
    with pytest.raises(NessusReportError, match="DOCTYPE") as err:
        evaluate_file(_write(tmp_path, text), fail_on="critical")
    assert "s3cret" not in str(err.value)


def test_billion_laughs_is_refused(tmp_path):
    lol = ['<!ENTITY lol0 "lol">']
    lol += ['<!ENTITY lol%d "%s">' % (i, "&lol%d;" % (i - 1) * 10) for i in range(1, 10)]
    text = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [%s]>\n<NessusClientData_v2><Report name="&lol9;">'
            '</Report></NessusClientData_v2>' % "".join(lol))
    with pytest.raises(NessusReportError, match="DOCTYPE"):
        evaluate_file(_write(tmp_path, text), fail_on="critical")


def test_plain_doctype_is_refused(tmp_path):
    text = '<?xml version="1.0"?><!DOCTYPE NessusClientData_v2 SYSTEM "http://example.invalid/x.dtd"><NessusClientData_v2>%s</NessusClientData_v2>' % HOST
    with pytest.raises(NessusReportError, match="DOCTYPE"):
        evaluate_file(_write(tmp_path, text))


def test_minimal_report_passes(tmp_path):
    result = evaluate_file(_write(tmp_path, "<NessusClientData_v2>%s</NessusClientData_v2>" % HOST), fail_on="low")
    expected = {"info": 1, "low": 0, "medium": 0, "high": 0, "critical": 0, "total": 1}
    assert result["passed"] is True and result["hosts"] == {"h": expected}


def test_empty_file(tmp_path):
    with pytest.raises(NessusReportError, match="empty"):
        evaluate_file(_write(tmp_path, b""), fail_on="critical")


def test_whitespace_only_file(tmp_path):
    with pytest.raises(NessusReportError, match="not well-formed"):
        evaluate_file(_write(tmp_path, b"  \n\n"), fail_on="critical")


def test_missing_file(tmp_path):
    with pytest.raises(NessusReportError, match="cannot read"):
        evaluate_file(str(tmp_path / "nope.nessus"))


def test_non_nessus_xml(tmp_path):
    text = '<?xml version="1.0"?><rss version="2.0"><channel><title>x</title></channel></rss>'
    with pytest.raises(NessusReportError, match="not a Nessus v2 report"):
        evaluate_file(_write(tmp_path, text), fail_on="critical")


def test_nessus_v1_root_is_refused(tmp_path):
    with pytest.raises(NessusReportError, match="NessusClientData_v2"):
        evaluate_file(_write(tmp_path, "<NessusClientData>%s</NessusClientData>" % HOST))


def test_no_report_element(tmp_path):
    with pytest.raises(NessusReportError, match="no <Report>"):
        evaluate_file(_write(tmp_path, "<NessusClientData_v2><Policy/></NessusClientData_v2>"))


def test_no_host(tmp_path):
    with pytest.raises(NessusReportError, match="no scanned host"):
        evaluate_file(_write(tmp_path, '<NessusClientData_v2><Report name="r"></Report></NessusClientData_v2>'))


@pytest.mark.parametrize("severity", ["5", "-1", "high", ""])
def test_bad_severity_is_an_error(tmp_path, severity):
    text = ('<NessusClientData_v2><Report name="r"><ReportHost name="h"><ReportItem severity="%s" pluginID="9"/>'
            '</ReportHost></Report></NessusClientData_v2>' % severity)
    with pytest.raises(NessusReportError, match="severity"):
        evaluate_file(_write(tmp_path, text), fail_on="critical")


def test_missing_severity_is_an_error(tmp_path):
    text = '<NessusClientData_v2><Report name="r"><ReportHost name="h"><ReportItem pluginID="9"/></ReportHost></Report></NessusClientData_v2>'
    with pytest.raises(NessusReportError, match="severity"):
        evaluate_file(_write(tmp_path, text), fail_on="critical")


def test_truncated_real_report_is_an_error(tmp_path):
    data = open(sample("dojo_nessus_many_vuln.xml"), "rb").read()
    with pytest.raises(NessusReportError, match="not well-formed"):
        evaluate_file(_write(tmp_path, data[: len(data) - 200]), fail_on="critical")


def test_report_item_outside_host(tmp_path):
    text = '<NessusClientData_v2><Report name="r"><ReportItem severity="0" pluginID="9"/></Report></NessusClientData_v2>'
    with pytest.raises(NessusReportError, match="outside"):
        evaluate_file(_write(tmp_path, text))


def test_small_chunks_give_the_same_result(tmp_path, monkeypatch):
    # element boundaries across chunk edges must not change anything
    monkeypatch.setattr(evaluation, "_CHUNK", 997)
    result = evaluate_file(sample("dojo_nessus_with_cvssv3.nessus"), fail_on="low")
    assert result["blocking_count"] == 26 and result["severity_basis"] == "cvss_v2"
