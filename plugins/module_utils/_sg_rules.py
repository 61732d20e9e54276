# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Security group rules: one engine for live groups (security_group_audit) and templates (template_audit).

Private to the collection: not a public API, may change without notice.

Plain functions on one permission at a time: a protocol, a port span and one CIDR, in one
direction.  The caller says where the permission comes from (a region and group id, a template
file, line and logical id) and adds that to the findings.  Each finding here is a dict with
``severity``, ``rule``, ``reason``, ``cidr`` and ``ports``.

Rule ids (stable, users filter on them):
- ``open_all_ports`` (critical): internet-wide ingress on every port.
- ``open_admin_port`` (high): internet-wide ingress to an admin/database port.
- ``wide_port_range`` (medium): internet-wide ingress on more than ``max_port_range`` ports
  (off unless the caller sets ``max_port_range``).
- ``cidr_not_allowed`` (medium): ingress from outside ``allowed``.
- ``default_group_rules`` (medium): a VPC's default group with rules (live groups only).
- ``open_egress`` (low): egress to the internet on every port (AWS's default egress rule).
- ``egress_cidr_not_allowed`` (medium): egress to outside ``allowed_egress``.
- ``exposed_via_group`` (medium on admin/all ports, else low): ingress from a group whose members
  the internet reaches, directly or through a chain of group references (live groups only).
- ``cannot_evaluate``: a source whose addresses cannot be read (a prefix list that cannot be
  resolved: medium; a group in another account or a peered VPC: low).
"""

from __future__ import annotations

import ipaddress

SEVERITIES = ("critical", "high", "medium", "low")
# ports that must never be reachable from the internet: SSH, Telnet, SMB, MSSQL, Oracle, Docker,
# etcd, MySQL, RDP, PostgreSQL, CouchDB, WinRM, Redis, Cassandra, Elasticsearch, Memcached, MongoDB
DEFAULT_ADMIN_PORTS = (22, 23, 445, 1433, 1521, 2375, 2376, 2379, 3306, 3389, 5432, 5984, 5985, 5986, 6379,
                       7000, 9042, 9200, 9300, 11211, 27017)
WORLD = ("0.0.0.0/0", "::/0")
# a public range this wide is "the internet" for an admin port as much as 0.0.0.0/0 is
# (0.0.0.0/1 + 128.0.0.0/1 is a known way around checks that look for 0.0.0.0/0 only)
WIDE_PREFIX = {4: 8, 6: 16}
PRIVATE_RANGES = tuple(ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))
# protocol numbers EC2 accepts in place of names
_PROTOCOL_NAMES = {"6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


class Policy(object):
    """What is acceptable: the allow-lists and the ports that must stay closed to the internet.

    ``allowed`` / ``allowed_egress``: lists of ``ipaddress`` networks; empty = that check is off.
    ``max_port_range``: internet-wide ingress on more ports than this is ``wide_port_range``;
    None = off.
    """

    def __init__(self, allowed=(), admin_ports=DEFAULT_ADMIN_PORTS, max_port_range=None, allowed_egress=()):
        self.allowed = list(allowed)
        self.admin_ports = sorted(set(admin_ports))
        self.max_port_range = max_port_range
        self.allowed_egress = list(allowed_egress)


def parse_networks(values, option):
    """``ipaddress`` networks from CIDR strings; ValueError naming ``option`` and the fix."""
    networks = []
    for value in values or ():
        try:
            networks.append(ipaddress.ip_network(str(value), strict=False))
        except ValueError as exc:
            raise ValueError("%s: %r is not a network (%s); write it like 10.0.0.0/8" % (option, value, exc))
    return networks


def parse_network(cidr):
    """The ``ipaddress`` network of a CIDR string, or None when it is not one."""
    try:
        return ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        return None


def internet_wide(cidr):
    """True for 0.0.0.0/0, ::/0, and public ranges of /8 (IPv4) or /16 (IPv6) or wider."""
    if cidr in WORLD:
        return True
    network = parse_network(cidr)
    if network is None or network.prefixlen > WIDE_PREFIX[network.version]:
        return False
    return not any(network.version == net.version and network.subnet_of(net) for net in PRIVATE_RANGES)


def inside(cidr, allowed):
    """True when ``cidr`` is inside one of the ``allowed`` networks (False when not a CIDR)."""
    network = parse_network(cidr)
    if network is None:
        return False
    return any(network.version == net.version and network.subnet_of(net) for net in allowed)


def protocol_name(protocol):
    """EC2's protocol (name, number, ``-1``) as a lower-case name; ``-1``/``all`` stay as given."""
    protocol = str(protocol if protocol is not None else "-1").strip().lower()
    return _PROTOCOL_NAMES.get(protocol, protocol)


def port_span(protocol, start, end):
    """(protocol, from, to, label) of a permission; from/to None for every port.

    ``start``/``end`` are ints or None.  ``-1`` (or ``all``) as protocol means every protocol and
    port; tcp/udp with no ports, ``-1``, or 0-65535 mean every port.  Other protocols (icmp, esp,
    ...) have no ports to speak of: from/to are -1.
    """
    raw = str(protocol if protocol is not None else "-1").strip().lower()
    if raw in ("-1", "all"):
        return raw, None, None, "all"
    name = protocol_name(raw)
    if name in ("tcp", "udp"):
        if start is None or end is None or start == -1 or (start <= 0 and end >= 65535):
            return name, None, None, "%s/all" % name
        label = "%s/%d" % (name, start) if start == end else "%s/%d-%d" % (name, start, end)
        return name, start, end, label
    return raw, -1, -1, raw


def _finding(severity, rule, reason, cidr, label):
    return {"severity": severity, "rule": rule, "reason": reason, "cidr": cidr, "ports": label}


def ingress_findings(span, cidr, policy):
    """Findings of ingress from ``cidr`` on ``span`` (a ``port_span`` tuple).

    At most one of open_all_ports / open_admin_port / wide_port_range (the most severe), and
    cidr_not_allowed only when none of those was found.
    """
    protocol, start, end, label = span
    found = []
    if internet_wide(cidr):
        if start is None:
            found.append(_finding("critical", "open_all_ports", "every port (%s) open to the internet" % label,
                                  cidr, label))
        elif protocol in ("tcp", "udp"):
            exposed = [port for port in policy.admin_ports if start <= port <= end]
            if exposed:
                found.append(_finding("high", "open_admin_port", "%s (port %s) open to the internet"
                                      % (label, ", ".join(str(port) for port in exposed)), cidr, label))
            elif policy.max_port_range is not None and end - start + 1 > policy.max_port_range:
                found.append(_finding("medium", "wide_port_range", "%s (%d ports) open to the internet, more than %d"
                                      % (label, end - start + 1, policy.max_port_range), cidr, label))
    if policy.allowed and not found and not inside(cidr, policy.allowed):
        found.append(_finding("medium", "cidr_not_allowed", "%s from %s, outside allowed_cidrs" % (label, cidr),
                              cidr, label))
    return found


def egress_findings(span, cidr, policy):
    """Findings of egress to ``cidr`` on ``span``.

    Egress to the internet on every port is ``open_egress`` (low: what AWS adds to every new group,
    and a path out for stolen data); a destination outside ``allowed_egress`` is
    ``egress_cidr_not_allowed`` (medium) when that list is set.
    """
    label = span[3]
    found = []
    if internet_wide(cidr) and span[1] is None:
        found.append(_finding("low", "open_egress", "egress to the internet on every port (%s)" % label, cidr, label))
    if policy.allowed_egress and not inside(cidr, policy.allowed_egress):
        found.append(_finding("medium", "egress_cidr_not_allowed", "%s to %s, outside allowed_egress_cidrs"
                              % (label, cidr), cidr, label))
    return found


def reference_finding(span, via, policy):
    """Ingress on ``span`` from the members of ``via[-1]``, a group the internet reaches.

    ``via`` is the chain of group ids from the group open to the internet to the referenced one.
    Those members are one compromise away from the internet: an admin port or every port behind
    them is medium, any other port low.
    """
    protocol, start, end, label = span
    admin = start is None or (protocol in ("tcp", "udp") and any(start <= port <= end for port in policy.admin_ports))
    chain = " -> ".join(["internet"] + list(via))
    return [_finding("medium" if admin else "low", "exposed_via_group",
                     "%s open to members of %s, reachable from the internet (%s)" % (label, via[-1], chain),
                     None, label)]


def exposure_paths(exposed, admitted_from):
    """The shortest chain of group references from the internet to every group it reaches.

    ``exposed``: ids of groups with internet-wide ingress (their members are on the internet).
    ``admitted_from``: {group id: ids of the groups it admits ingress from}.
    Returns {group id: [g0, ..., gk]}: g0 is open to the internet and each next group admits
    ingress from the one before it; exposed groups map to [] (reached directly).  A group's own
    members reaching each other (a self reference) is no path.
    """
    paths = dict((group, []) for group in exposed)
    frontier = sorted(paths)
    while frontier:
        following = []
        for group, sources in sorted(admitted_from.items()):
            if group in paths:
                continue
            reached = sorted(source for source in sources if source in frontier and source != group)
            if reached:
                paths[group] = paths[reached[0]] + [reached[0]]
                following.append(group)
        frontier = following
    return paths


def default_group_findings(ingress_count, egress_count):
    """A VPC's default group should have no rules at all (CIS AWS 5.4)."""
    if not ingress_count and not egress_count:
        return []
    return [_finding("medium", "default_group_rules",
                     "default security group has %d ingress and %d egress rules; it should have none"
                     % (ingress_count, egress_count), None, None)]


def severity_rank(severity):
    """0 for critical .. 3 for low (sort key)."""
    return SEVERITIES.index(severity)


def at_or_above(severity, threshold):
    """True when ``severity`` is ``threshold`` or more severe."""
    return severity_rank(severity) <= severity_rank(threshold)


def count_by_severity(findings):
    """Number of findings per severity, every severity present."""
    counts = {severity: 0 for severity in SEVERITIES}
    for item in findings:
        counts[item["severity"]] += 1
    return counts
