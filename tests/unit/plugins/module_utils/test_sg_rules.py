# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The security group rule engine shared by security_group_audit and template_audit."""

from __future__ import annotations

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils import _sg_rules as rules


def ingress(protocol, start, end, cidr, **policy):
    return [(item["severity"], item["rule"], item["ports"])
            for item in rules.ingress_findings(rules.port_span(protocol, start, end), cidr, rules.Policy(**policy))]


def egress(protocol, start, end, cidr, **policy):
    return [(item["severity"], item["rule"], item["ports"])
            for item in rules.egress_findings(rules.port_span(protocol, start, end), cidr, rules.Policy(**policy))]


@pytest.mark.parametrize("protocol, start, end, expected", [
    ("-1", None, None, ("-1", None, None, "all")),
    (-1, 22, 22, ("-1", None, None, "all")),               # ports are ignored for every protocol
    ("all", None, None, ("all", None, None, "all")),
    ("tcp", 0, 65535, ("tcp", None, None, "tcp/all")),
    ("TCP", -1, -1, ("tcp", None, None, "tcp/all")),
    ("6", 22, 22, ("tcp", 22, 22, "tcp/22")),               # protocol numbers as EC2 accepts them
    (17, 1000, 2000, ("udp", 1000, 2000, "udp/1000-2000")),
    ("tcp", 22, None, ("tcp", None, None, "tcp/all")),      # half a range is every port, not a crash
    ("icmp", 8, -1, ("icmp", -1, -1, "icmp")),
    ("50", None, None, ("50", -1, -1, "50")),               # ESP: no ports
])
def test_port_span(protocol, start, end, expected):
    assert rules.port_span(protocol, start, end) == expected


def test_ingress_severities():
    assert ingress("-1", None, None, "0.0.0.0/0") == [("critical", "open_all_ports", "all")]
    assert ingress("tcp", 0, 65535, "::/0") == [("critical", "open_all_ports", "tcp/all")]
    assert ingress("tcp", 3000, 4000, "::/0") == [("high", "open_admin_port", "tcp/3000-4000")]
    assert ingress("udp", 443, 443, "0.0.0.0/0") == []
    assert ingress("icmp", -1, -1, "0.0.0.0/0") == []


def test_admin_port_reason_names_the_ports():
    found = rules.ingress_findings(rules.port_span("tcp", 3000, 5500), "0.0.0.0/0", rules.Policy())
    assert "3306, 3389, 5432" in found[0]["reason"]


def test_wide_port_range_only_when_asked_and_without_admin_ports():
    assert ingress("tcp", 8000, 9000, "0.0.0.0/0") == []          # live groups: off
    assert ingress("tcp", 8000, 9000, "0.0.0.0/0", max_port_range=1000) == [
        ("medium", "wide_port_range", "tcp/8000-9000")]
    assert ingress("tcp", 8000, 8999, "0.0.0.0/0", max_port_range=1000) == []   # exactly 1000 ports
    assert ingress("tcp", 1024, 65535, "0.0.0.0/0", max_port_range=1000) == [
        ("high", "open_admin_port", "tcp/1024-65535")]                      # the worse finding only
    assert ingress("tcp", 8000, 9000, "10.0.0.0/8", max_port_range=1000) == []   # not the internet


def test_allow_list_ingress():
    allowed = rules.parse_networks(["10.0.0.0/8", "2001:db8::/32"], "allowed_cidrs")
    assert ingress("tcp", 443, 443, "10.1.0.0/16", allowed=allowed) == []
    assert ingress("tcp", 443, 443, "2001:db8:1::/48", allowed=allowed) == []
    assert ingress("tcp", 443, 443, "192.0.2.0/24", allowed=allowed) == [("medium", "cidr_not_allowed", "tcp/443")]
    assert ingress("tcp", 22, 22, "0.0.0.0/0", allowed=allowed) == [("high", "open_admin_port", "tcp/22")]


def test_egress():
    assert egress("-1", None, None, "0.0.0.0/0") == [("low", "open_egress", "all")]
    assert egress("-1", None, None, "::/0") == [("low", "open_egress", "all")]
    assert egress("tcp", 443, 443, "0.0.0.0/0") == []
    assert egress("-1", None, None, "127.0.0.1/32") == []
    allowed = rules.parse_networks(["10.0.0.0/8"], "allowed_egress_cidrs")
    assert egress("tcp", 443, 443, "0.0.0.0/0", allowed_egress=allowed) == [
        ("medium", "egress_cidr_not_allowed", "tcp/443")]
    assert egress("tcp", 5432, 5432, "10.0.0.0/16", allowed_egress=allowed) == []


@pytest.mark.parametrize("cidr, wide", [
    ("0.0.0.0/0", True), ("::/0", True), ("0.0.0.0/1", True), ("3.0.0.0/8", True), ("2000::/3", True),
    ("3.0.0.0/9", False), ("10.0.0.0/8", False), ("fd00::/8", False), ("not-a-cidr", False),
])
def test_internet_wide(cidr, wide):
    assert rules.internet_wide(cidr) is wide


def test_parse_networks_names_the_option():
    with pytest.raises(ValueError, match="allowed_cidrs: 'office' is not a network.*10.0.0.0/8"):
        rules.parse_networks(["10.0.0.0/8", "office"], "allowed_cidrs")


def test_severity_order_and_counts():
    assert rules.at_or_above("critical", "medium") and rules.at_or_above("medium", "medium")
    assert not rules.at_or_above("low", "medium")
    assert rules.count_by_severity([{"severity": "low"}, {"severity": "low"}]) == {
        "critical": 0, "high": 0, "medium": 0, "low": 2}
    assert rules.default_group_findings(0, 0) == []
    assert rules.default_group_findings(1, 1)[0]["rule"] == "default_group_rules"


def test_exposure_paths_are_the_shortest_chains():
    admitted = {"b": {"a"}, "c": {"b", "x"}, "d": {"c", "a"}, "e": {"e"}, "x": set()}
    paths = rules.exposure_paths(["a"], admitted)
    assert paths == {"a": [], "b": ["a"], "c": ["a", "b"], "d": ["a"]}
    # a self reference or a cycle away from the internet reaches nothing
    assert rules.exposure_paths([], {"a": {"b"}, "b": {"a"}}) == {}


def test_reference_finding_severity():
    policy = rules.Policy(admin_ports=[22])
    assert rules.reference_finding(rules.port_span("tcp", 22, 22), ["a"], policy)[0]["severity"] == "medium"
    assert rules.reference_finding(rules.port_span("-1", None, None), ["a"], policy)[0]["severity"] == "medium"
    assert rules.reference_finding(rules.port_span("tcp", 443, 443), ["a", "b"], policy)[0]["severity"] == "low"
