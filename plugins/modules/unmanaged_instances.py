#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: unmanaged_instances
short_description: Find EC2 instances that Chef does not manage
version_added: 0.1.0
description:
  - Lists the EC2 instances of every enabled region (or of O(regions)), every instance of every
    reservation, and matches them against the Chef nodes read with one partial search.
  - An instance launched by the collection carries the tag C(cloudefigo:chef-node), the node name
    the controller issued it. It matches that node and no other; what a node says about itself
    does not move it. Nodes whose report (ohai C(ec2.instance_id)) or ownership marks disagree
    with the tag, nodes that claim an instance issued another node, and several instances
    carrying one node name are returned in RV(findings).
  - Other instances (no tag) match a node that reports their instance id, among the nodes not
    issued to a tagged instance. Failing that, they match a node without an EC2 instance id whose
    FQDN or hostname is the instance's private DNS name (or its first label). A node that reports
    another instance id never matches by name, because private addresses are reused. These
    matches rest on what the node says about itself (see the collection's docs/audit.md).
  - Managed instances whose node did not converge within O(stale_after) seconds (or never did)
    are also listed in RV(stale).
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  regions:
    description:
      - Regions to audit. By default every region enabled for the account (C(describe_regions)).
    type: list
    elements: str
  instance_states:
    description:
      - Instance states to audit.
    type: list
    elements: str
    default: [pending, running, stopping, stopped]
  tags:
    description:
      - Audit only instances carrying all of these tags (C(tag:KEY) filters).
    type: dict
  filters:
    description:
      - More C(describe_instances) filters, name to value or list of values.
    type: dict
  stale_after:
    description:
      - Seconds after which a node that has not converged (by C(ohai_time)) is stale.
    type: int
    default: 3600
  node_query:
    description:
      - Chef search query selecting the nodes to match against.
    type: str
    default: "*:*"
  search_page_size:
    description:
      - Rows per Chef search request. The search pages until a short page.
    type: int
    default: 5000
extends_documentation_fragment:
  - cloudefigo.core.chef
  - cloudefigo.core.chef.validate_certs_aws
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - O(validate_certs) applies to AWS only, O(chef_validate_certs) to the Chef server only (until
    0.1.0, O(validate_certs) switched both).
attributes:
  check_mode:
    support: full
    description: Read-only; runs in check mode too.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
"""

EXAMPLES = r"""
- name: Audit every enabled region
  cloudefigo.core.unmanaged_instances:
    chef_server_url: https://chef.example.com/organizations/acme
    client_name: auditor
    client_key: /etc/chef/auditor.pem
    stale_after: 7200
  register: audit

- name: Quarantine what Chef does not manage
  cloudefigo.core.instance_quarantine:
    instance_id: "{{ item.instance_id }}"
    region: "{{ item.region }}"
    case_id: "unmanaged-{{ now(utc=true, fmt='%Y%m%d') }}"
  loop: "{{ audit.unmanaged }}"

- name: Audit production instances in two regions
  cloudefigo.core.unmanaged_instances:
    regions: [us-east-1, eu-west-1]
    tags:
      Environment: prod
    instance_states: [running]
"""

RETURN = r"""
managed:
  description: Instances with a Chef node.
  returned: always
  type: list
  elements: dict
  contains:
    instance_id:
      description: EC2 instance id.
      type: str
    region:
      description: Region of the instance.
      type: str
    state:
      description: Instance state.
      type: str
    private_dns_name:
      description: Private DNS name of the instance.
      type: str
    private_ip_address:
      description: Private IP address of the instance.
      type: str
    vpc_id:
      description: VPC of the instance.
      type: str
    launch_time:
      description: Launch time, ISO 8601.
      type: str
    tags:
      description: Tags of the instance.
      type: dict
    node_name:
      description: Name of the matching node.
      type: str
    matched_by:
      description:
        - V(chef_node_tag) (the node name issued at launch), or what the node reports about
          itself, V(instance_id), V(fqdn) or V(hostname).
      type: str
    ohai_time:
      description: Last converge of the node, epoch seconds; null if never.
      type: float
    ohai_age:
      description: Seconds since the last converge; null if never.
      type: int
  sample: [{"instance_id": "i-0abc", "region": "us-east-1", "node_name": "web-1", "matched_by": "instance_id"}]
unmanaged:
  description: Instances with no Chef node (same fields as RV(managed) without the node ones).
  returned: always
  type: list
  elements: dict
  sample: [{"instance_id": "i-0def", "region": "eu-west-1", "state": "running", "tags": {"Name": "debug"}}]
stale:
  description: The managed instances whose node did not converge within O(stale_after) (same fields as RV(managed)).
  returned: always
  type: list
  elements: dict
nodes_without_instance:
  description:
    - Nodes matched to no audited instance; candidates for deregistration, or nodes off EC2 or in
      regions not audited.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
    ec2_instance_id:
      description: Instance id the node reports; null off EC2.
      type: str
    ohai_time:
      description: Last converge, epoch seconds.
      type: float
findings:
  description:
    - Disagreements between what the controller recorded (the C(cloudefigo:chef-node) tag) and
      what nodes say about themselves.
    - C(kind) is V(node_reports_other_instance), V(node_marks_other_instance),
      V(node_claims_issued_instance), V(node_claimed_by_several_instances) or
      V(instance_claimed_by_several_nodes).
  returned: always
  type: list
  elements: dict
  version_added: 0.2.0
  contains:
    kind:
      description: What disagrees.
      type: str
    node_name:
      description: The node concerned.
      type: str
    instance_id:
      description: The instance concerned (null when several; see C(instances)).
      type: str
    region:
      description: Region of RV(findings[].instance_id).
      type: str
    instances:
      description: The instances carrying one node name (only for V(node_claimed_by_several_instances)).
      type: list
      elements: dict
    detail:
      description: One sentence for the report.
      type: str
  sample: [{"kind": "node_claims_issued_instance", "node_name": "rogue", "instance_id": "i-0abc",
            "region": "us-east-1", "detail": "node rogue reports instance i-0abc, which was issued node web-1"}]
counts:
  description: Per region, the number of instances, managed, unmanaged and stale ones.
  returned: always
  type: dict
  sample: {"us-east-1": {"instances": 3, "managed": 2, "unmanaged": 1, "stale": 1}}
totals:
  description: The same numbers over all regions, plus C(nodes) and C(findings).
  returned: always
  type: dict
  sample: {"instances": 5, "managed": 3, "unmanaged": 2, "stale": 1, "nodes": 4, "findings": 0}
status:
  description: HTTP status of the Chef server's answer when the node search failed (the module fails).
  returned: on failure of the Chef node search
  type: int
  sample: 403
"""

import time
from concurrent.futures import ThreadPoolExecutor

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import enabled_regions, regional_clients, tag_dict
from ansible_collections.cloudefigo.core.plugins.module_utils._chef import (
    CHEF_MUTUALLY_EXCLUSIVE,
    CHEF_REQUIRED_ONE_OF,
    ChefError,
    chef_argument_spec,
    chef_client,
    ohai_age,
)

NODE_FIELDS = {
    "name": ["name"],
    "ec2_instance_id": ["ec2", "instance_id"],
    "fqdn": ["fqdn"],
    "hostname": ["hostname"],
    "ohai_time": ["ohai_time"],
    # ownership marks chef_node writes at creation (normal attributes)
    "owner": ["cloudefigo"],
}


def ec2_filters(instance_states, tags, filters):
    out = [{"Name": "instance-state-name", "Values": list(instance_states)}] if instance_states else []
    for key, value in sorted((tags or {}).items()):
        out.append({"Name": "tag:%s" % key, "Values": [str(value)]})
    for name, value in sorted((filters or {}).items()):
        out.append({"Name": name, "Values": [str(v) for v in value] if isinstance(value, list) else [str(value)]})
    return out


def instance_record(instance, region):
    launch = instance.get("LaunchTime")
    return {
        "instance_id": instance["InstanceId"],
        "region": region,
        "state": (instance.get("State") or {}).get("Name"),
        "private_dns_name": instance.get("PrivateDnsName") or None,
        "private_ip_address": instance.get("PrivateIpAddress"),
        "vpc_id": instance.get("VpcId"),
        "launch_time": launch.isoformat() if hasattr(launch, "isoformat") else launch,
        "tags": tag_dict(instance.get("Tags")),
    }


def instances_from_pages(pages, region):
    """Every instance of every reservation (Cloudefigo looked at Instances[0] only)."""
    return [instance_record(instance, region)
            for page in pages
            for reservation in page.get("Reservations", [])
            for instance in reservation.get("Instances", [])]


@AWSRetry.jittered_backoff(retries=10)
def _describe_pages(ec2, filters):
    paginator = ec2.get_paginator("describe_instances")
    return list(paginator.paginate(Filters=filters, PaginationConfig={"PageSize": 1000}))


def _converged_at(node):
    try:
        return float(node.get("ohai_time") or 0)
    except (TypeError, ValueError):
        return 0.0


def _newer(node, other):
    return _converged_at(node) > _converged_at(other)


CHEF_NODE_TAG = "cloudefigo:chef-node"


def _finding(kind, detail, node_name=None, instance=None, instances=None):
    out = {"kind": kind, "node_name": node_name, "detail": detail,
           "instance_id": instance["instance_id"] if instance else None,
           "region": instance["region"] if instance else None}
    if instances is not None:
        out["instances"] = [{"instance_id": item["instance_id"], "region": item["region"]} for item in instances]
    return out


def _owner_instance(node):
    owner = node.get("owner")
    return owner.get("instance_id") if isinstance(owner, dict) and isinstance(owner.get("instance_id"), str) else None


def issued_matches(instances, nodes_by_name):
    """Instances matched through the node name the collection issued (the cloudefigo:chef-node tag).

    Returns ({instance_id: node}, findings). The tag is written by the controller at launch; a
    node's own report (ec2.instance_id) or marks only break a tie. Two instances naming one node:
    the one the node's ownership marks name keeps it, else the one the node reports, else none.
    """
    claims = {}
    for instance in instances:
        name = (instance.get("tags") or {}).get(CHEF_NODE_TAG)
        if name:
            claims.setdefault(name, []).append(instance)
    matched, findings = {}, []
    for name in sorted(claims):
        claimants = claims[name]
        node = nodes_by_name.get(name)
        if len(claimants) > 1:
            winner = None
            if node is not None:
                for wanted in (_owner_instance(node), node.get("ec2_instance_id")):
                    winner = next((item for item in claimants if item["instance_id"] == wanted), None)
                    if winner is not None:
                        break
            findings.append(_finding(
                "node_claimed_by_several_instances",
                "%d instances carry %s=%s; %s" % (
                    len(claimants), CHEF_NODE_TAG, name,
                    "the node's own marks or report pick %s" % winner["instance_id"] if winner
                    else "none of them is matched to the node"),
                node_name=name, instances=claimants))
            claimants = [winner] if winner else []
        if node is None or not claimants:
            continue
        instance = claimants[0]
        matched[instance["instance_id"]] = node
        reported, owner = node.get("ec2_instance_id"), _owner_instance(node)
        if reported and reported != instance["instance_id"]:
            findings.append(_finding(
                "node_reports_other_instance",
                "node %s was issued to %s (its %s tag) but reports instance %s" % (
                    name, instance["instance_id"], CHEF_NODE_TAG, reported),
                node_name=name, instance=instance))
        if owner and owner != instance["instance_id"]:
            findings.append(_finding(
                "node_marks_other_instance",
                "node %s was issued to %s (its %s tag) but its ownership marks name instance %s" % (
                    name, instance["instance_id"], CHEF_NODE_TAG, owner),
                node_name=name, instance=instance))
    return matched, findings


def match_instances(instances, nodes, stale_after, now=None):
    """Split instances into managed / unmanaged / stale, find the nodes with no instance, and the findings.

    First the node names the collection issued (instance tag cloudefigo:chef-node); then, for
    instances without that tag, what the remaining nodes report about themselves (ec2.instance_id,
    then FQDN/hostname): a weaker match, a node can claim any instance id.
    """
    now = time.time() if now is None else now
    nodes_by_name = dict((node.get("name"), node) for node in nodes)
    issued, findings = issued_matches(instances, nodes_by_name)
    issued_nodes = set(node.get("name") for node in issued.values())
    tagged = dict((instance["instance_id"], (instance.get("tags") or {}).get(CHEF_NODE_TAG)) for instance in instances
                  if (instance.get("tags") or {}).get(CHEF_NODE_TAG))
    instances_by_id = dict((instance["instance_id"], instance) for instance in instances)

    by_id, claims, by_host = {}, {}, {}
    for node in nodes:
        if node.get("name") in issued_nodes:
            continue
        instance_id = node.get("ec2_instance_id")
        if instance_id:
            claims.setdefault(instance_id, []).append(node)
            if instance_id in tagged:
                # a node claiming an instance that was issued another node name: never a match
                findings.append(_finding(
                    "node_claims_issued_instance",
                    "node %s reports instance %s, which was issued node %s (%s tag)" % (
                        node.get("name"), instance_id, tagged[instance_id], CHEF_NODE_TAG),
                    node_name=node.get("name"), instance=instances_by_id[instance_id]))
                continue
            # two nodes claiming one instance: the one that converged last wins
            if instance_id not in by_id or _newer(node, by_id[instance_id]):
                by_id[instance_id] = node
            continue
        for field in ("fqdn", "hostname"):
            host = (node.get(field) or "").lower()
            if host and host not in by_host:
                by_host[host] = (node, field)
    for instance_id in sorted(claims):
        if len(claims[instance_id]) > 1 and instance_id in instances_by_id and instance_id not in tagged:
            findings.append(_finding(
                "instance_claimed_by_several_nodes",
                "nodes %s all report instance %s" % (", ".join(sorted(n.get("name") for n in claims[instance_id])),
                                                     instance_id),
                instance=instances_by_id[instance_id]))

    managed, unmanaged, stale, matched_nodes = [], [], [], set()
    for instance in instances:
        if instance["instance_id"] in tagged:
            node, matched_by = issued.get(instance["instance_id"]), "chef_node_tag"
        else:
            node, matched_by = by_id.get(instance["instance_id"]), "instance_id"
            if node is None and instance.get("private_dns_name"):
                dns = instance["private_dns_name"].lower()
                found = by_host.get(dns) or by_host.get(dns.split(".")[0])
                if found:
                    node, matched_by = found
        if node is None:
            unmanaged.append(instance)
            continue
        matched_nodes.add(node.get("name"))
        age = ohai_age(node.get("ohai_time"), now)
        record = dict(instance, node_name=node.get("name"), matched_by=matched_by,
                      ohai_time=node.get("ohai_time"), ohai_age=age)
        managed.append(record)
        if age is None or age > stale_after:
            stale.append(record)
    without = [{"name": node.get("name"), "ec2_instance_id": node.get("ec2_instance_id"),
                "ohai_time": node.get("ohai_time")}
               for node in nodes if node.get("name") not in matched_nodes]
    return (managed, unmanaged, stale, sorted(without, key=lambda node: node["name"] or ""),
            sorted(findings, key=lambda f: (f["kind"], f["node_name"] or "", f["instance_id"] or "")))


def region_counts(regions, instances, managed, unmanaged, stale):
    counts = dict((region, {"instances": 0, "managed": 0, "unmanaged": 0, "stale": 0}) for region in regions)
    for key, items in (("instances", instances), ("managed", managed), ("unmanaged", unmanaged), ("stale", stale)):
        for item in items:
            counts.setdefault(item["region"], {"instances": 0, "managed": 0, "unmanaged": 0, "stale": 0})[key] += 1
    return counts


def main():
    argument_spec = chef_argument_spec(aws_module=True)
    argument_spec.update(
        regions=dict(type="list", elements="str"),
        instance_states=dict(type="list", elements="str", default=["pending", "running", "stopping", "stopped"]),
        tags=dict(type="dict"),
        filters=dict(type="dict"),
        stale_after=dict(type="int", default=3600),
        node_query=dict(type="str", default="*:*"),
        search_page_size=dict(type="int", default=5000),
    )
    module = AnsibleAWSModule(
        argument_spec=argument_spec,
        mutually_exclusive=CHEF_MUTUALLY_EXCLUSIVE,
        required_one_of=CHEF_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    if module.params["search_page_size"] < 1:
        module.fail_json(msg="search_page_size must be at least 1")
    chef = chef_client(module)
    regions = enabled_regions(module, module.params["regions"])
    filters = ec2_filters(module.params["instance_states"], module.params["tags"], module.params["filters"])
    clients = regional_clients(module, "ec2", regions)
    now = time.time()

    # the regions and the Chef search are independent: wait for the slowest, not the sum
    with ThreadPoolExecutor(max_workers=min(8, len(regions)) + 1) as pool:
        search = pool.submit(chef.search, "node", module.params["node_query"], NODE_FIELDS,
                             module.params["search_page_size"])
        pages = dict((region, pool.submit(_describe_pages, clients[region], filters)) for region in regions)
        instances = []
        for region in regions:
            try:
                instances.extend(instances_from_pages(pages[region].result(), region))
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                module.fail_json_aws(exc, msg="Could not list the instances in %s" % region)
        try:
            nodes = search.result()
        except ChefError as exc:
            module.fail_json(msg="Could not search Chef nodes (node_query=%r): %s" % (module.params["node_query"], exc),
                             status=exc.status)

    managed, unmanaged, stale, without, findings = match_instances(instances, nodes, module.params["stale_after"], now)
    counts = region_counts(regions, instances, managed, unmanaged, stale)
    totals = {"instances": len(instances), "managed": len(managed), "unmanaged": len(unmanaged),
              "stale": len(stale), "nodes": len(nodes)}
    totals["findings"] = len(findings)
    module.exit_json(changed=False, managed=managed, unmanaged=unmanaged, stale=stale,
                     nodes_without_instance=without, findings=findings, counts=counts, totals=totals)


if __name__ == "__main__":
    main()
