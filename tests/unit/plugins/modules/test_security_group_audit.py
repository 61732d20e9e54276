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
    # the default group's egress to the world is judged like any other egress rule
    assert rules(audit(default, attached=())) == [("default_group_rules", "medium", None, None),
                                                  ("open_egress", "low", "0.0.0.0/0", "all")]
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


WORLD_OUT = {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [], "PrefixListIds": []}


def test_egress_to_the_world_on_every_port_is_reported_and_can_be_turned_off():
    item = group(egress=[WORLD_OUT, {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                     "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    found = audit(item)
    assert rules(found) == [("open_egress", "low", "0.0.0.0/0", "all")]
    assert found[0]["direction"] == "egress"
    assert sga.audit_group("r", item, [], ADMIN, {"sg-1"}, True, egress=False) == []
    # an egress allow-list: 443 to the world is outside it
    limited = sga.audit_group("r", item, [], ADMIN, {"sg-1"}, True, allowed_egress=[ipaddress.ip_network("10.0.0.0/8")])
    assert rules(limited) == [("egress_cidr_not_allowed", "medium", "0.0.0.0/0", "all"),
                              ("egress_cidr_not_allowed", "medium", "0.0.0.0/0", "tcp/443"),
                              ("open_egress", "low", "0.0.0.0/0", "all")]


def test_prefix_lists_are_judged_on_their_cidrs():
    lists = {"pl-world": {"name": "everyone", "cidrs": ["10.0.0.0/8", "0.0.0.0/0"], "error": None},
             "pl-office": {"name": "office", "cidrs": ["198.51.100.0/24"], "error": None}}
    item = group(permissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                               "PrefixListIds": [{"PrefixListId": "pl-world"}, {"PrefixListId": "pl-office"}]}])
    found = sga.audit_group("r", item, [], ADMIN, {"sg-1"}, True, prefix_lists=lists)
    assert rules(found) == [("open_admin_port", "high", "0.0.0.0/0", "tcp/22")]
    assert found[0]["prefix_list_id"] == "pl-world"
    assert sga.internet_exposed(item, lists)
    assert not sga.internet_exposed(item, {"pl-world": {"cidrs": ["10.0.0.0/8"]}, "pl-office": lists["pl-office"]})


def test_a_prefix_list_that_cannot_be_read_is_not_taken_as_safe():
    item = group(permissions=[{"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22,
                               "PrefixListIds": [{"PrefixListId": "pl-gone"}]}])
    found = sga.audit_group("r", item, [], ADMIN, {"sg-1"}, True,
                            prefix_lists={"pl-gone": {"name": None, "cidrs": None, "error": "InvalidPrefixListID.NotFound"}})
    assert rules(found) == [("cannot_evaluate", "medium", None, "tcp/22")]
    assert "pl-gone" in found[0]["reason"] and found[0]["prefix_list_id"] == "pl-gone"
    # never read at all (not in the map): the same
    assert rules(sga.audit_group("r", item, [], ADMIN, {"sg-1"}, True)) == [("cannot_evaluate", "medium", None, "tcp/22")]


def ref(start, group_id, user="111111111111", end=None):
    return {"IpProtocol": "tcp", "FromPort": start, "ToPort": start if end is None else end,
            "UserIdGroupPairs": [{"GroupId": group_id, "UserId": user}]}


def chain_groups():
    web = group("web", permissions=[tcp(443, cidrs=["0.0.0.0/0"])], group_id="sg-web")
    app = group("app", permissions=[ref(8080, "sg-web"), ref(8080, "sg-app")], group_id="sg-app")
    db = group("db", permissions=[ref(5432, "sg-app")], group_id="sg-db")
    backup = group("backup", permissions=[ref(873, "sg-db")], group_id="sg-backup")
    internal = group("internal", permissions=[ref(22, "sg-internal-admin")], group_id="sg-internal")
    admin = group("internal-admin", permissions=[tcp(22, cidrs=["10.0.0.0/8"])], group_id="sg-internal-admin")
    return [web, app, db, backup, internal, admin]


def test_group_reference_chain_from_the_internet():
    groups = chain_groups()
    interfaces = [
        {"NetworkInterfaceId": "eni-web", "Attachment": {"InstanceId": "i-web"}, "Groups": [{"GroupId": "sg-web"}]},
        {"NetworkInterfaceId": "eni-db", "Attachment": {"InstanceId": "i-db"}, "Groups": [{"GroupId": "sg-db"}]},
        {"NetworkInterfaceId": "eni-lb", "Groups": [{"GroupId": "sg-web"}]},
    ]
    params = {"exposed_limit": 50, "admin_ports": ADMIN, "unused": False, "egress": False}
    found = sga.audit_region("r", groups, interfaces, {}, params, [], [])
    by_group = dict((item["group_id"], item) for item in found if item["rule"] == "exposed_via_group")
    assert sorted(by_group) == ["sg-app", "sg-backup", "sg-db"]
    assert by_group["sg-app"]["via_groups"] == ["sg-web"] and by_group["sg-app"]["severity"] == "low"
    # PostgreSQL is an admin port: two hops from the internet is still medium
    assert by_group["sg-db"]["via_groups"] == ["sg-web", "sg-app"] and by_group["sg-db"]["severity"] == "medium"
    assert by_group["sg-db"]["ports"] == "tcp/5432"
    assert "internet -> sg-web -> sg-app" in by_group["sg-db"]["reason"]
    assert by_group["sg-backup"]["via_groups"] == ["sg-web", "sg-app", "sg-db"]
    # which instances and interfaces each finding exposes: the members of the group with the rule
    assert by_group["sg-db"]["instances"] == ["i-db"] and by_group["sg-db"]["network_interfaces"] == ["eni-db"]
    assert by_group["sg-app"]["instances"] == [] and by_group["sg-app"]["instance_count"] == 0
    web = [item for item in found if item["group_id"] == "sg-web"]
    assert web == []  # 443 to the world: fine without an allow-list


def test_exposed_instances_are_listed_up_to_the_limit():
    groups = [group("ssh", permissions=[tcp(22, cidrs=["0.0.0.0/0"])], group_id="sg-ssh")]
    interfaces = [{"NetworkInterfaceId": "eni-%d" % n, "Attachment": {"InstanceId": "i-%d" % n},
                   "Groups": [{"GroupId": "sg-ssh"}]} for n in range(5)]
    params = {"exposed_limit": 2, "admin_ports": ADMIN, "unused": True, "egress": True}
    found = sga.audit_region("r", groups, interfaces, {}, params, [], [])
    assert rules(found) == [("open_admin_port", "high", "0.0.0.0/0", "tcp/22")]
    assert found[0]["instances"] == ["i-0", "i-1"] and found[0]["instance_count"] == 5
    assert found[0]["network_interfaces"] == ["eni-0", "eni-1"] and found[0]["network_interface_count"] == 5


def test_a_group_of_another_account_cannot_be_evaluated():
    item = group(permissions=[ref(5432, "sg-elsewhere", user="999999999999")])
    found = sga.audit_group("r", item, [], ADMIN, {"sg-1"}, True, known_groups={"sg-1"})
    assert rules(found) == [("cannot_evaluate", "low", None, "tcp/5432")]
    assert "999999999999" in found[0]["reason"] and found[0]["via_groups"] == ["sg-elsewhere"]
