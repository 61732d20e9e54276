"""Chart geometry and the HTML document: every value escaped, the style sheet matches its hash."""
import base64
import hashlib
import html
import html.parser
import re

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._report import charts, document, parts

HOSTILE = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>&amp;"


@pytest.mark.parametrize("value,expected", [(0, 1), (1, 1), (3, 5), (7, 10), (10, 10), (11, 20), (99, 100), (501, 1000)])
def test_nice_ceiling(value, expected):
    assert charts.nice_ceiling(value) == expected


def test_scaled_and_ticks():
    assert charts.scaled(5, 10, 400) == 200.0
    assert charts.scaled(0, 10, 400) == 0.0
    assert charts.scaled(3, 0, 400) == 0.0
    assert charts.ticks(10) == [0, 2, 4, 6, 8, 10]
    assert charts.ticks(1) == [0, 1]
    assert all(isinstance(t, int) for t in charts.ticks(20))


def test_short_keeps_both_ends():
    label = "arn:aws:sts::123456789012:assumed-role/a-very-long-role-name/session"
    cut = charts.short(label)
    assert len(cut) == charts.MAX_LABEL and cut.startswith("arn:aws:sts") and cut.endswith("session")


class _Elements(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.found = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        self.found.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(markup):
    parser = _Elements()
    parser.feed(markup)
    return parser


def test_hbar_lengths_are_proportional_and_carry_their_numbers():
    svg = charts.hbar_chart("c", "t", [("a", 7), ("b", 3)])
    rects = [(attrs) for tag, attrs in _parse(svg).found if tag == "rect"]
    bars = [attrs for tag, attrs in _parse(svg).found if tag == "g" and attrs.get("class") == "bar"]
    assert [(b["data-label"], b["data-value"]) for b in bars] == [("a", "7"), ("b", "3")]
    area = charts.WIDTH - charts.LABEL_WIDTH - charts.VALUE_WIDTH
    assert [float(r["width"]) for r in rects] == [round(7 * area / 10.0, 2), round(3 * area / 10.0, 2)]


def test_stacked_segments_follow_each_other():
    svg = charts.stacked_hbar_chart("c", "t", [("acct / region", {"critical": 2, "low": 3}, {"region": "r"})],
                                    ("critical", "high", "low"))
    segments = [a for tag, a in _parse(svg).found if tag == "rect" and a.get("class") == "segment"]
    assert [(s["data-series"], s["data-value"]) for s in segments] == [("critical", "2"), ("high", "0"), ("low", "3")]
    assert float(segments[1]["x"]) == float(segments[0]["x"]) + float(segments[0]["width"])
    assert float(segments[2]["x"]) == float(segments[1]["x"]) + float(segments[1]["width"])


def test_empty_charts_say_so():
    assert "No data" in charts.hbar_chart("c", "t", [])
    assert "No runs yet" in charts.stacked_column_chart("c", "t", [], ("high",))


def _hostile_view():
    unmanaged = {"unmanaged": [{"instance_id": HOSTILE, "region": HOSTILE, "state": HOSTILE, "launch_time": HOSTILE,
                                "private_dns_name": HOSTILE, "tags": {HOSTILE: HOSTILE}}],
                 "stale": [{"instance_id": HOSTILE, "region": HOSTILE, "node_name": HOSTILE, "ohai_age": 60}],
                 "counts": {HOSTILE: {"instances": 1}}}
    sg = {"findings": [{"region": HOSTILE, "group_id": HOSTILE, "group_name": HOSTILE, "severity": HOSTILE,
                        "rule": HOSTILE, "reason": HOSTILE, "ports": HOSTILE, "cidr": HOSTILE}]}
    built = parts.build_parts(HOSTILE, unmanaged, sg)
    first = [parts.finish_part(a, r, d, None, HOSTILE, HOSTILE) for (a, r), d in built.items()]
    second = [parts.finish_part(a, r, {"counts": {}, "findings": []}, p, "r2", HOSTILE) for p, ((a, r), d)
              in zip(first, built.items())]
    return parts.merge(first + second, HOSTILE, stale_before="~")


def test_every_value_in_the_document_is_escaped():
    siem = {"available": True, "since": HOSTILE, "until": HOSTILE, "events": 1,
            "events_per_day": [[HOSTILE, 1]], "top_error_codes": [[HOSTILE, 2]], "access_denied": [[HOSTILE, 3]],
            "no_mfa_logins": [[HOSTILE, 4]], "no_mfa_latest": [[HOSTILE, HOSTILE, HOSTILE, HOSTILE]]}
    cloudtrail = {"files_seen": HOSTILE, "files_loaded": HOSTILE, "events_loaded": HOSTILE,
                  "files_failed": [{"key": HOSTILE, "error": HOSTILE}, HOSTILE]}
    markup = document.render(_hostile_view(), title=HOSTILE, siem=siem, cloudtrail=cloudtrail)
    parsed = _parse(markup)
    tags = set(tag for tag, _attrs in parsed.found)
    assert "script" not in tags and "img" not in tags
    assert not [name for _tag, attrs in parsed.found for name in attrs if name.startswith("on")]
    assert "<script>" not in markup
    assert HOSTILE in "".join(parsed.text)  # shown, as text


def test_the_one_style_sheet_matches_the_policy_hash():
    markup = document.render(parts.merge([], "2026-11-29T00:00:00Z"))
    styles = re.findall(r"<style>(.*?)</style>", markup, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0].encode()).digest()).decode()
    policy = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', markup).group(1)
    policy = html.unescape(policy)
    assert "'sha256-%s'" % digest in policy
    assert "default-src 'none'" in policy and "script" not in policy and "unsafe" not in policy
    assert " style=" not in markup
