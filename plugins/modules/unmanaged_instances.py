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
  - An instance matches a node that reports its instance id (ohai C(ec2.instance_id)). An
    instance with no such node matches a node without an EC2 instance id whose FQDN or hostname
    is the instance's private DNS name (or its first label). A node that reports another
    instance id never matches by name, because private addresses are reused.
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
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
notes:
  - In modules that also talk to AWS, O(validate_certs) applies to the Chef server and to AWS alike.
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
      description: V(instance_id), V(fqdn) or V(hostname).
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
counts:
  description: Per region, the number of instances, managed, unmanaged and stale ones.
  returned: always
  type: dict
  sample: {"us-east-1": {"instances": 3, "managed": 2, "unmanaged": 1, "stale": 1}}
totals:
  description: The same numbers over all regions, plus C(nodes).
  returned: always
  type: dict
  sample: {"instances": 5, "managed": 3, "unmanaged": 2, "stale": 1, "nodes": 4}
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


def match_instances(instances, nodes, stale_after, now=None):
    """Split instances into managed / unmanaged / stale and find the nodes with no instance."""
    now = time.time() if now is None else now
    by_id, by_host = {}, {}
    for node in nodes:
        instance_id = node.get("ec2_instance_id")
        if instance_id:
            # two nodes claiming one instance: the one that converged last wins
            if instance_id not in by_id or _newer(node, by_id[instance_id]):
                by_id[instance_id] = node
            continue
        for field in ("fqdn", "hostname"):
            host = (node.get(field) or "").lower()
            if host and host not in by_host:
                by_host[host] = (node, field)
    managed, unmanaged, stale, matched_nodes = [], [], [], set()
    for instance in instances:
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
    return managed, unmanaged, stale, sorted(without, key=lambda node: node["name"] or "")


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

    managed, unmanaged, stale, without = match_instances(instances, nodes, module.params["stale_after"], now)
    counts = region_counts(regions, instances, managed, unmanaged, stale)
    totals = {"instances": len(instances), "managed": len(managed), "unmanaged": len(unmanaged),
              "stale": len(stale), "nodes": len(nodes)}
    module.exit_json(changed=False, managed=managed, unmanaged=unmanaged, stale=stale,
                     nodes_without_instance=without, counts=counts, totals=totals)


if __name__ == "__main__":
    main()
