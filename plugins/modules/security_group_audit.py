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
  - Reads the security groups and network interfaces of every enabled region (or O(regions))
    and reports findings with a severity. Changes nothing.
  - Internet-wide below means C(0.0.0.0/0), C(::/0), or any public range of prefix C(/8) (IPv4) or
    C(/16) (IPv6) or wider, such as C(0.0.0.0/1).
  - C(critical) - internet-wide ingress on every port (protocol C(-1), or
    C(0-65535)).
  - C(high) - internet-wide ingress to an administration or database port
    (O(admin_ports)).
  - C(medium) - ingress from a CIDR that is not inside O(allowed_cidrs) (only when
    O(allowed_cidrs) is set); a VPC's C(default) group with any rule (CIS AWS 5.4).
  - C(low) - a group attached to no network interface (unused; default groups excepted).
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
      description: C(open_all_ports), C(open_admin_port), C(cidr_not_allowed), C(default_group_rules) or C(unused_group).
      type: str
    cidr:
      description: Source CIDR of the ingress rule; null for group-level findings.
      type: str
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
      cidr: 0.0.0.0/0
      ports: tcp/22
      reason: "tcp/22 (port 22) open to the internet"
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

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.cloudefigo.core.plugins.module_utils import _sg_rules as rules
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import enabled_regions, regional_clients


@AWSRetry.jittered_backoff(retries=10)
def _paginate(client, operation, key):
    return client.get_paginator(operation).paginate().build_full_result().get(key, [])


def _finding(region, group, found):
    item = {"region": region, "group_id": group["GroupId"], "group_name": group.get("GroupName"),
            "vpc_id": group.get("VpcId")}
    item.update(found)
    return item


def audit_group(region, group, allowed, admin_ports, attached, report_unused):
    """The findings of one group (ingress rules; the rules themselves live in module_utils/_sg_rules)."""
    policy = rules.Policy(allowed=allowed, admin_ports=admin_ports)
    found = []
    for permission in group.get("IpPermissions", []):
        span = rules.port_span(permission.get("IpProtocol", "-1"), permission.get("FromPort"), permission.get("ToPort"))
        cidrs = [item.get("CidrIp") for item in permission.get("IpRanges", [])]
        cidrs += [item.get("CidrIpv6") for item in permission.get("Ipv6Ranges", [])]
        for cidr in filter(None, cidrs):
            found.extend(_finding(region, group, item) for item in rules.ingress_findings(span, cidr, policy))
    is_default = group.get("GroupName") == "default"
    if is_default:
        found.extend(_finding(region, group, item) for item in rules.default_group_findings(
            len(group.get("IpPermissions", [])), len(group.get("IpPermissionsEgress", []))))
    if report_unused and not is_default and group["GroupId"] not in attached:
        found.append(_finding(region, group, {"severity": "low", "rule": "unused_group", "cidr": None, "ports": None,
                                              "reason": "attached to no network interface"}))
    return found


def main():
    argument_spec = dict(
        regions=dict(type="list", elements="str"),
        allowed_cidrs=dict(type="list", elements="str", default=[]),
        admin_ports=dict(type="list", elements="int", default=list(rules.DEFAULT_ADMIN_PORTS)),
        unused=dict(type="bool", default=True),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        allowed = rules.parse_networks(module.params["allowed_cidrs"], "allowed_cidrs")
    except ValueError as exc:
        module.fail_json(msg=str(exc))

    regions = enabled_regions(module, module.params["regions"])
    clients = regional_clients(module, "ec2", regions)
    findings = []
    by_region = {}
    audited = 0
    for region in regions:
        client = clients[region]
        try:
            groups = _paginate(client, "describe_security_groups", "SecurityGroups")
            interfaces = _paginate(client, "describe_network_interfaces", "NetworkInterfaces")
        except Exception as exc:  # pylint: disable=broad-except
            module.fail_json_aws(exc, msg="Could not read security groups in %s; pass `regions` to skip it" % region)
        attached = {group["GroupId"] for interface in interfaces for group in interface.get("Groups", [])}
        audited += len(groups)
        found = []
        for group in groups:
            found.extend(audit_group(region, group, allowed, module.params["admin_ports"], attached,
                                     module.params["unused"]))
        by_region[region] = len(found)
        findings.extend(found)

    findings.sort(key=lambda item: (rules.severity_rank(item["severity"]), item["region"], item["group_id"], item["rule"],
                                    item["cidr"] or "", item["ports"] or ""))
    module.exit_json(changed=False, findings=findings, counts_by_severity=rules.count_by_severity(findings), counts_by_region=by_region,
                     groups_audited=audited, regions=regions)


if __name__ == "__main__":
    main()
