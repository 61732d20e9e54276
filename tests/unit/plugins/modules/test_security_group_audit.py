# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""security_group_audit's rules on groups shaped like describe_security_groups answers."""

from __future__ import annotations

import ipaddress

from ansible_collections.cloudefigo.core.plugins.modules import security_group_audit as sga

ADMIN = [22, 3389, 5432]


def group(name="g", permissions=(), egress=(), group_id="sg-1"):
    return {"GroupId": group_id, "GroupName": name, "VpcId": "vpc-1", "IpPermissions": list(permissions),
            "IpPermissionsEgress": list(egress)}


def tcp(start, end=None, cidrs=(), cidrs6=()):
    return {"IpProtocol": "tcp", "FromPort": start, "ToPort": start if end is None else end,
            "IpRanges": [{"CidrIp": cidr} for cidr in cidrs], "Ipv6Ranges": [{"CidrIpv6": cidr} for cidr in cidrs6]}


def audit(item, allowed=(), attached=("sg-1",), unused=True):
    return sga.audit_group("r", item, [ipaddress.ip_network(cidr) for cidr in allowed], ADMIN, set(attached), unused)


def rules(found):
    return sorted((item["rule"], item["severity"], item["cidr"], item["ports"]) for item in found)


def test_ssh_from_world_is_high():
    assert rules(audit(group(permissions=[tcp(22, cidrs=["0.0.0.0/0"])]))) == [
        ("open_admin_port", "high", "0.0.0.0/0", "tcp/22")]


def test_range_covering_rdp_from_ipv6_world():
    found = audit(group(permissions=[tcp(3000, 4000, cidrs6=["::/0"])]))
    assert rules(found) == [("open_admin_port", "high", "::/0", "tcp/3000-4000")]
    assert "3389" in found[0]["reason"]


def test_all_traffic_and_full_range_are_critical():
    everything = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": []}
    assert rules(audit(group(permissions=[everything]))) == [("open_all_ports", "critical", "0.0.0.0/0", "all")]
    assert rules(audit(group(permissions=[tcp(0, 65535, cidrs=["0.0.0.0/0"])]))) == [
        ("open_all_ports", "critical", "0.0.0.0/0", "tcp/all")]


def test_https_from_world_is_fine_without_allow_list():
    assert audit(group(permissions=[tcp(443, cidrs=["0.0.0.0/0"])])) == []


def test_allow_list():
    item = group(permissions=[tcp(443, cidrs=["10.1.0.0/16", "192.0.2.0/24", "0.0.0.0/0"]), tcp(22, cidrs=["0.0.0.0/0"])])
    assert rules(audit(item, allowed=["10.0.0.0/8"])) == [
        ("cidr_not_allowed", "medium", "0.0.0.0/0", "tcp/443"),
        ("cidr_not_allowed", "medium", "192.0.2.0/24", "tcp/443"),
        ("open_admin_port", "high", "0.0.0.0/0", "tcp/22"),
    ]


def test_icmp_from_world_is_not_an_admin_port():
    icmp = {"IpProtocol": "icmp", "FromPort": 8, "ToPort": -1, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
    assert audit(group(permissions=[icmp])) == []


def test_unused_and_default_groups():
    assert rules(audit(group(), attached=())) == [("unused_group", "low", None, None)]
    assert audit(group(), attached=(), unused=False) == []
    default = group("default", permissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-1"}]}],
                    egress=[{"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    assert rules(audit(default, attached=())) == [("default_group_rules", "medium", None, None)]
    assert audit(group("default"), attached=()) == []


def test_split_world_ranges_count_as_the_internet():
    # 0.0.0.0/1 + 128.0.0.0/1 is the whole internet without saying 0.0.0.0/0
    found = audit(group(permissions=[tcp(22, cidrs=["0.0.0.0/1", "128.0.0.0/1", "3.0.0.0/8"], cidrs6=["2000::/3"])]))
    assert rules(found) == [
        ("open_admin_port", "high", "0.0.0.0/1", "tcp/22"),
        ("open_admin_port", "high", "128.0.0.0/1", "tcp/22"),
        ("open_admin_port", "high", "2000::/3", "tcp/22"),
        ("open_admin_port", "high", "3.0.0.0/8", "tcp/22"),
    ]


def test_private_and_narrow_ranges_are_not_the_internet():
    assert audit(group(permissions=[tcp(22, cidrs=["10.0.0.0/8", "203.0.113.0/24"], cidrs6=["fd00::/8"])])) == []
