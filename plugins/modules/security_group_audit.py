#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: security_group_audit
short_description: Find risky EC2 security groups in every region
version_added: 0.1.0
description:
  - Reads the security groups, network interfaces and the managed prefix lists the rules use, in
    every enabled region (or O(regions), read concurrently), and reports findings with a severity
    and the instances and network interfaces each finding exposes. Changes nothing.
  - Ingress and egress rules are judged on their CIDRs and on the CIDRs of the prefix lists they
    name (C(GetManagedPrefixListEntries)). A prefix list that cannot be read is a C(cannot_evaluate)
    finding, never taken as safe.
  - Rules that admit another group are followed; a group whose members the internet reaches
    (internet-wide ingress on any port) makes every group that admits it reachable one hop further,
    and so on along chains of references (C(exposed_via_group), with the chain in RV(findings[].via_groups)).
  - Internet-wide below means C(0.0.0.0/0), C(::/0), or any public range of prefix C(/8) (IPv4) or
    C(/16) (IPv6) or wider, such as C(0.0.0.0/1).
  - C(critical) - internet-wide ingress on every port (protocol C(-1), or
    C(0-65535)).
  - C(high) - internet-wide ingress to an administration or database port
    (O(admin_ports)).
  - C(medium) - ingress from a CIDR that is not inside O(allowed_cidrs) (only when
    O(allowed_cidrs) is set); a VPC's C(default) group with any rule (CIS AWS 5.4).
  - C(medium) - C(exposed_via_group) on an administration port or every port (ingress from members of
    a group the internet reaches, directly or through a chain of references); C(egress_cidr_not_allowed)
    (egress to a CIDR outside O(allowed_egress_cidrs), when set); C(cannot_evaluate) for a rule
    naming a prefix list that cannot be read.
  - C(low) - a group attached to no network interface (unused; default groups excepted); C(open_egress)
    (egress to the internet on every port, the rule AWS adds to every new group);
    C(exposed_via_group) on other ports; C(cannot_evaluate) for ingress from a group this audit cannot see
    (another account, a peered VPC, a deleted group).
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  regions:
    description:
      - Regions to audit. Default is every region enabled for the account.
    type: list
    elements: str
  allowed_cidrs:
    description:
      - Networks ingress may come from. A rule whose CIDR is not inside one of them is a
        C(medium) finding. Empty (the default) turns this check off.
      - A rule already reported as C(critical) or C(high) is not reported again here.
    type: list
    elements: str
    default: []
  admin_ports:
    description:
      - Ports that must never be open to the internet. The default covers SSH, Telnet, RDP,
        WinRM, SMB, the usual databases and caches (MSSQL, Oracle, MySQL, PostgreSQL, Redis,
        MongoDB, Elasticsearch, Memcached, CouchDB, Cassandra) and the Docker and etcd APIs.
    type: list
    elements: int
    default: [22, 23, 445, 1433, 1521, 2375, 2376, 2379, 3306, 3389, 5432, 5984, 5985, 5986, 6379,
              7000, 9042, 9200, 9300, 11211, 27017]
  unused:
    description:
      - Whether to report groups attached to no network interface.
    type: bool
    default: true
  egress:
    description:
      - Whether to judge egress rules (C(open_egress), C(egress_cidr_not_allowed)).
    type: bool
    default: true
    version_added: 0.2.0
  allowed_egress_cidrs:
    description:
      - Networks egress may go to. An egress rule whose CIDR is not inside one of them is a
        C(medium) C(egress_cidr_not_allowed) finding. Empty (the default) turns this check off.
    type: list
    elements: str
    default: []
    version_added: 0.2.0
  exposed_limit:
    description:
      - Most instance and network interface ids listed per finding (the counts are always whole).
        V(0) lists none.
    type: int
    default: 50
    version_added: 0.2.0
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing to show a diff of.
"""

EXAMPLES = r"""
- name: Audit every enabled region
  cloudefigo.core.security_group_audit:
  register: sg_audit

- name: Fail on critical or high findings
  ansible.builtin.assert:
    that: sg_audit.counts_by_severity.critical + sg_audit.counts_by_severity.high == 0
    fail_msg: "{{ sg_audit.findings | selectattr('severity', 'in', ['critical', 'high']) }}"

- name: Only the office and VPN may reach anything
  cloudefigo.core.security_group_audit:
    regions: [eu-west-1, eu-central-1]
    allowed_cidrs:
      - 10.0.0.0/8
      - 198.51.100.0/24
    unused: false
  register: sg_audit_eu

- name: Egress only to the VPCs and the proxy
  cloudefigo.core.security_group_audit:
    allowed_egress_cidrs: [10.0.0.0/8, 203.0.113.10/32]
  register: sg_audit_egress

- name: Instances reachable from the internet through a chain of group references
  ansible.builtin.debug:
    msg: "{{ item.instances }} via {{ item.via_groups | join(' -> ') }}"
  loop: "{{ sg_audit.findings | selectattr('rule', 'equalto', 'exposed_via_group') }}"
"""

RETURN = r"""
findings:
  description: One entry per finding, most severe first.
  returned: always
  type: list
  elements: dict
  contains:
    region:
      description: Region of the group.
      type: str
    group_id:
      description: Security group id.
      type: str
    group_name:
      description: Security group name.
      type: str
    vpc_id:
      description: VPC of the group.
      type: str
    severity:
      description: C(critical), C(high), C(medium) or C(low).
      type: str
    rule:
      description:
        - C(open_all_ports), C(open_admin_port), C(cidr_not_allowed), C(open_egress), C(egress_cidr_not_allowed),
          C(exposed_via_group), C(cannot_evaluate), C(default_group_rules) or C(unused_group).
      type: str
    direction:
      description: C(ingress) or C(egress) for rule findings; null for group-level findings.
      type: str
      version_added: 0.2.0
    cidr:
      description:
        - Source (ingress) or destination (egress) CIDR of the rule, an entry of the prefix list when
          RV(findings[].prefix_list_id) is set; null for group-level and group-reference findings.
      type: str
    prefix_list_id:
      description: The managed prefix list the CIDR comes from (or that could not be read); null otherwise.
      type: str
      version_added: 0.2.0
    via_groups:
      description:
        - For C(exposed_via_group), the chain of group ids from the group open to the internet to the group
          this rule admits; for C(cannot_evaluate) of a group reference, that group. Empty otherwise.
      type: list
      elements: str
      version_added: 0.2.0
    instances:
      description:
        - Instances the finding exposes (those with a network interface in the group), at most O(exposed_limit).
      type: list
      elements: str
      version_added: 0.2.0
    instance_count:
      description: Number of those instances.
      type: int
      version_added: 0.2.0
    network_interfaces:
      description:
        - Network interfaces in the group (instances, load balancers, endpoints, Lambda...), at most O(exposed_limit).
      type: list
      elements: str
      version_added: 0.2.0
    network_interface_count:
      description: Number of those network interfaces.
      type: int
      version_added: 0.2.0
    ports:
      description: C(all), a port (C(22)) or a range (C(1000-2000)) with the protocol (C(tcp/22)); null for group-level findings.
      type: str
    reason:
      description: The finding in words.
      type: str
  sample:
    - region: us-east-1
      group_id: sg-0123456789abcdef0
      group_name: bastion
      vpc_id: vpc-0123456789abcdef0
      severity: high
      rule: open_admin_port
      direction: ingress
      cidr: 0.0.0.0/0
      prefix_list_id: null
      via_groups: []
      ports: tcp/22
      reason: "tcp/22 (port 22) open to the internet"
      instances: [i-0123456789abcdef0]
      instance_count: 1
      network_interfaces: [eni-0123456789abcdef0]
      network_interface_count: 1
counts_by_severity:
  description: Number of findings per severity (all four keys always present).
  returned: always
  type: dict
  sample: {"critical": 1, "high": 2, "medium": 3, "low": 0}
counts_by_region:
  description: Number of findings per audited region (every audited region present).
  returned: always
  type: dict
  sample: {"us-east-1": 4, "eu-west-1": 2}
groups_audited:
  description: Number of security groups read.
  returned: always
  type: int
  sample: 12
regions:
  description: Regions audited.
  returned: always
  type: list
  elements: str
  sample: ["eu-west-1", "us-east-1"]
"""

from concurrent.futures import ThreadPoolExecutor

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.cloudefigo.core.plugins.module_utils import _sg_rules as rules
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import enabled_regions, regional_clients


@AWSRetry.jittered_backoff(retries=10)
def _paginate(client, operation, key, **kwargs):
    return client.get_paginator(operation).paginate(**kwargs).build_full_result().get(key, [])


def _prefix_list_ids(groups):
    return sorted(set(item["PrefixListId"] for group in groups
                      for permission in group.get("IpPermissions", []) + group.get("IpPermissionsEgress", [])
                      for item in permission.get("PrefixListIds", []) if item.get("PrefixListId")))


def read_prefix_list(client, prefix_list_id):
    """{"name", "cidrs"} of a managed prefix list, or {"error"} when it cannot be read.

    A list shared from another account and since unshared, or one this principal may not read,
    must not stop the audit of the region: the rules that use it become cannot_evaluate findings.
    """
    try:
        found = client.describe_managed_prefix_lists(PrefixListIds=[prefix_list_id], aws_retry=True)["PrefixLists"]
        entries = _paginate(client, "get_managed_prefix_list_entries", "Entries", PrefixListId=prefix_list_id)
    except is_boto3_error_code(["InvalidPrefixListID.NotFound", "InvalidPrefixListId.NotFound",
                                "InvalidPrefixListID.Malformed", "UnauthorizedOperation", "AccessDenied"]) as exc:
        return {"name": None, "cidrs": None, "error": exc.response.get("Error", {}).get("Code", "error")}
    if not found:
        # AWS answers NotFound; an empty answer (moto, a list no longer shared) is no more readable
        return {"name": None, "cidrs": None, "error": "not found"}
    if str(found[0].get("State", "")).startswith("delete"):
        return {"name": found[0].get("PrefixListName"), "cidrs": None, "error": "state %s" % found[0]["State"]}
    return {"name": found[0].get("PrefixListName"), "cidrs": [entry["Cidr"] for entry in entries if entry.get("Cidr")],
            "error": None}


def read_region(client):
    """(groups, interfaces, prefix lists) of one region; prefix lists are only those rules use."""
    groups = _paginate(client, "describe_security_groups", "SecurityGroups")
    interfaces = _paginate(client, "describe_network_interfaces", "NetworkInterfaces")
    prefix_lists = dict((pl_id, read_prefix_list(client, pl_id)) for pl_id in _prefix_list_ids(groups))
    return groups, interfaces, prefix_lists


def members_of(interfaces):
    """{group id: {"instances": set, "network_interfaces": set}} from the interfaces' groups.

    The interfaces are what carry groups in EC2 (an instance's groups are those of its
    interfaces), and they also show what is not an instance (load balancers, endpoints, Lambda).
    """
    members = {}
    for interface in interfaces:
        instance_id = (interface.get("Attachment") or {}).get("InstanceId")
        for group in interface.get("Groups", []):
            entry = members.setdefault(group["GroupId"], {"instances": set(), "network_interfaces": set()})
            entry["network_interfaces"].add(interface["NetworkInterfaceId"])
            if instance_id:
                entry["instances"].add(instance_id)
    return members


def _sources(permission, prefix_lists):
    """(cidr, prefix list id) of every address source of a permission, prefix lists resolved;
    plus the prefix lists that could not be resolved."""
    sources = [(item.get("CidrIp"), None) for item in permission.get("IpRanges", [])]
    sources += [(item.get("CidrIpv6"), None) for item in permission.get("Ipv6Ranges", [])]
    unresolved = []
    for item in permission.get("PrefixListIds", []):
        pl_id = item.get("PrefixListId")
        resolved = (prefix_lists or {}).get(pl_id) or {"cidrs": None, "error": "not read"}
        if resolved.get("cidrs") is None:
            unresolved.append((pl_id, resolved.get("error")))
        else:
            sources.extend((cidr, pl_id) for cidr in resolved["cidrs"])
    return [source for source in sources if source[0]], unresolved


def internet_exposed(group, prefix_lists=None):
    """Whether any ingress rule of the group admits an internet-wide range (any port)."""
    for permission in group.get("IpPermissions", []):
        sources, dummy = _sources(permission, prefix_lists)
        if any(rules.internet_wide(cidr) for cidr, dummy in sources):
            return True
    return False


def admitted_groups(group):
    """Ids of the other groups this group admits ingress from."""
    return set(pair["GroupId"] for permission in group.get("IpPermissions", [])
               for pair in permission.get("UserIdGroupPairs", []) if pair.get("GroupId")) - set([group["GroupId"]])


def _finding(region, group, found, direction, prefix_list_id=None, via=None):
    item = {"region": region, "group_id": group["GroupId"], "group_name": group.get("GroupName"),
            "vpc_id": group.get("VpcId"), "direction": direction, "prefix_list_id": prefix_list_id,
            "via_groups": list(via or [])}
    item.update(found)
    return item


def _permission_findings(region, group, permission, direction, policy, prefix_lists, known_groups, paths):
    span = rules.port_span(permission.get("IpProtocol", "-1"), permission.get("FromPort"), permission.get("ToPort"))
    judge = rules.ingress_findings if direction == "ingress" else rules.egress_findings
    sources, unresolved = _sources(permission, prefix_lists)
    found = []
    for cidr, pl_id in sources:
        found.extend(_finding(region, group, item, direction, pl_id) for item in judge(span, cidr, policy))
    for pl_id, error in unresolved:
        found.append(_finding(region, group, {
            "severity": "medium", "rule": "cannot_evaluate", "cidr": None, "ports": span[3],
            "reason": "%s %s prefix list %s, which could not be read (%s): its CIDRs may be open to the internet"
                      % (span[3], "from" if direction == "ingress" else "to", pl_id, error)}, direction, pl_id))
    if direction != "ingress":
        return found
    for pair in permission.get("UserIdGroupPairs", []):
        ref = pair.get("GroupId")
        if not ref or ref == group["GroupId"]:
            continue
        if ref not in known_groups:
            where = "account %s" % pair["UserId"] if pair.get("UserId") else "another VPC"
            if pair.get("VpcPeeringConnectionId"):
                where += " through %s" % pair["VpcPeeringConnectionId"]
            found.append(_finding(region, group, {
                "severity": "low", "rule": "cannot_evaluate", "cidr": None, "ports": span[3],
                "reason": "%s from members of %s (%s), which this audit cannot see" % (span[3], ref, where)},
                direction, via=[ref]))
        elif ref in paths:
            via = paths[ref] + [ref]
            found.extend(_finding(region, group, item, direction, via=via) for item in rules.reference_finding(span, via, policy))
    return found


def audit_group(region, group, allowed, admin_ports, attached, report_unused, allowed_egress=(), prefix_lists=None,
                known_groups=None, paths=None, egress=True):
    """The findings of one group (the rules themselves live in module_utils/_sg_rules).

    ``known_groups``: ids of the groups of the region (a reference to another is not visible);
    ``paths``: exposure_paths of the region (which groups the internet reaches).
    """
    policy = rules.Policy(allowed=allowed, admin_ports=admin_ports, allowed_egress=allowed_egress)
    known_groups = set(known_groups or ()) | set([group["GroupId"]])
    paths = paths or {}
    found = []
    for permission in group.get("IpPermissions", []):
        found.extend(_permission_findings(region, group, permission, "ingress", policy, prefix_lists, known_groups, paths))
    if egress:
        for permission in group.get("IpPermissionsEgress", []):
            found.extend(_permission_findings(region, group, permission, "egress", policy, prefix_lists, known_groups, paths))
    is_default = group.get("GroupName") == "default"
    if is_default:
        found.extend(_finding(region, group, item, None) for item in rules.default_group_findings(
            len(group.get("IpPermissions", [])), len(group.get("IpPermissionsEgress", []))))
    if report_unused and not is_default and group["GroupId"] not in attached:
        found.append(_finding(region, group, {"severity": "low", "rule": "unused_group", "cidr": None, "ports": None,
                                              "reason": "attached to no network interface"}, None))
    return found


def audit_region(region, groups, interfaces, prefix_lists, params, allowed, allowed_egress):
    """Every finding of one region, each with the instances and interfaces it exposes."""
    members = members_of(interfaces)
    exposed = [group["GroupId"] for group in groups if internet_exposed(group, prefix_lists)]
    paths = rules.exposure_paths(exposed, dict((group["GroupId"], admitted_groups(group)) for group in groups))
    known = set(group["GroupId"] for group in groups)
    limit = params["exposed_limit"]
    found = []
    for group in groups:
        exposes = members.get(group["GroupId"], {"instances": set(), "network_interfaces": set()})
        instances = sorted(exposes["instances"])
        interfaces_of = sorted(exposes["network_interfaces"])
        for item in audit_group(region, group, allowed, params["admin_ports"], members, params["unused"],
                                allowed_egress=allowed_egress, prefix_lists=prefix_lists, known_groups=known,
                                paths=paths, egress=params["egress"]):
            item.update(instances=instances[:limit], instance_count=len(instances),
                        network_interfaces=interfaces_of[:limit], network_interface_count=len(interfaces_of))
            found.append(item)
    return found


def main():
    argument_spec = dict(
        regions=dict(type="list", elements="str"),
        allowed_cidrs=dict(type="list", elements="str", default=[]),
        allowed_egress_cidrs=dict(type="list", elements="str", default=[]),
        admin_ports=dict(type="list", elements="int", default=list(rules.DEFAULT_ADMIN_PORTS)),
        unused=dict(type="bool", default=True),
        egress=dict(type="bool", default=True),
        exposed_limit=dict(type="int", default=50),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params
    try:
        allowed = rules.parse_networks(params["allowed_cidrs"], "allowed_cidrs")
        allowed_egress = rules.parse_networks(params["allowed_egress_cidrs"], "allowed_egress_cidrs")
    except ValueError as exc:
        module.fail_json(msg=str(exc))
    if params["exposed_limit"] < 0:
        module.fail_json(msg="exposed_limit must be 0 or more (0 lists no instance, only the counts), got %d"
                             % params["exposed_limit"])
    if allowed_egress and not params["egress"]:
        module.fail_json(msg="allowed_egress_cidrs needs egress=true (egress rules are not read with egress=false)")

    regions = enabled_regions(module, params["regions"])
    clients = regional_clients(module, "ec2", regions)
    findings = []
    by_region = {}
    audited = 0
    # regions are independent: wait for the slowest, not the sum (as unmanaged_instances does)
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(regions)))) as pool:
        reads = dict((region, pool.submit(read_region, clients[region])) for region in regions)
        for region in regions:
            try:
                groups, interfaces, prefix_lists = reads[region].result()
            except Exception as exc:  # pylint: disable=broad-except
                module.fail_json_aws(exc, msg="Could not read security groups in %s; pass `regions` to skip it" % region)
            audited += len(groups)
            found = audit_region(region, groups, interfaces, prefix_lists, params, allowed, allowed_egress)
            by_region[region] = len(found)
            findings.extend(found)

    findings.sort(key=lambda item: (rules.severity_rank(item["severity"]), item["region"], item["group_id"], item["rule"],
                                    item["direction"] or "", item["cidr"] or "", item["ports"] or "",
                                    item["prefix_list_id"] or "", item["via_groups"]))
    module.exit_json(changed=False, findings=findings, counts_by_severity=rules.count_by_severity(findings), counts_by_region=by_region,
                     groups_audited=audited, regions=regions)


if __name__ == "__main__":
    main()
