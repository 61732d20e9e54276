#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: chef_node_info
short_description: Read Chef nodes and when they last converged
version_added: 0.1.0
description:
  - Returns Chef nodes by name, by search query, or all of them, with their environment, run
    list, last converge time (C(ohai_time)) and its age, address, FQDN and EC2 instance id.
  - A search uses one partial search (only the returned fields travel), paged if needed.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  name:
    description:
      - Name of one node. When it does not exist, RV(nodes) is empty.
      - Mutually exclusive with O(query).
    type: str
  query:
    description:
      - Chef search query over the node index, for example C(chef_environment:prod AND roles:web).
      - Without O(name) and O(query) every node is returned.
    type: str
extends_documentation_fragment:
  - cloudefigo.core.chef
  - cloudefigo.core.chef.validate_certs
attributes:
  check_mode:
    support: full
    description: Read-only; runs in check mode too.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
"""

EXAMPLES = r"""
- name: Read one node
  cloudefigo.core.chef_node_info:
    chef_server_url: https://chef.example.com/organizations/acme
    client_name: auditor
    client_key: /etc/chef/auditor.pem
    name: web-1
  register: web1

- name: Nodes that run the web role in production
  cloudefigo.core.chef_node_info:
    chef_server_url: https://chef.example.com/organizations/acme
    client_name: auditor
    client_key_content: "{{ vault_chef_auditor_key }}"
    query: "chef_environment:prod AND roles:web"
  register: web_nodes

- name: Nodes that did not converge in the last hour
  ansible.builtin.debug:
    msg: "{{ web_nodes.nodes | selectattr('ohai_age', 'gt', 3600) | map(attribute='name') }}"
"""

RETURN = r"""
nodes:
  description: The nodes found, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Node name.
      type: str
      sample: web-1
    chef_environment:
      description: Environment of the node.
      type: str
      sample: prod
    run_list:
      description: Run list of the node.
      type: list
      elements: str
      sample: ["role[web]"]
    ohai_time:
      description: Epoch seconds of the last converge (ohai run); null when the node never converged.
      type: float
      sample: 1700000000.12
    ohai_age:
      description: Seconds since C(ohai_time) at the time of the call; null when never converged.
      type: int
      sample: 1250
    ipaddress:
      description: Primary IP address reported by ohai.
      type: str
      sample: 10.0.1.12
    fqdn:
      description: FQDN reported by ohai.
      type: str
      sample: ip-10-0-1-12.ec2.internal
    ec2_instance_id:
      description:
        - EC2 instance id reported by ohai (C(automatic.ec2.instance_id)); null off EC2.
        - What the node says about itself, not proof; see RV(nodes[].owner).
      type: str
      sample: i-0123456789abcdef0
    owner:
      description:
        - Ownership marks written by M(cloudefigo.core.chef_node) when it created the node
          (normal attributes C(cloudefigo.instance_id) and C(cloudefigo.launch_id)); null when unmarked.
        - The node's own client can rewrite them. Compare them with what the controller recorded
          (the instance's C(cloudefigo:chef-node) tag) before trusting them.
      type: dict
      version_added: 0.2.0
      sample: {"instance_id": "i-0123456789abcdef0", "launch_id": "l-20240101-abcd"}
"""

from ansible_collections.cloudefigo.core.plugins.module_utils._chef import (
    NODE_SUMMARY_FIELDS,
    ChefError,
    ChefModule,
    summarize_node,
    summarize_row,
)


def main():
    module = ChefModule(
        argument_spec=dict(
            name=dict(type="str"),
            query=dict(type="str"),
        ),
        mutually_exclusive=[("name", "query")],
        supports_check_mode=True,
    )
    name = module.params["name"]
    try:
        if name:
            node = module.chef.get("/nodes/%s" % name, missing_ok=True)
            nodes = [summarize_node(node)] if node else []
        else:
            rows = module.chef.search("node", module.params["query"] or "*:*", fields=NODE_SUMMARY_FIELDS)
            nodes = sorted((summarize_row(row) for row in rows), key=lambda node: node["name"] or "")
    except ChefError as exc:
        module.fail_chef(exc, msg="Could not read Chef nodes")
    module.exit_json(changed=False, nodes=nodes)


if __name__ == "__main__":
    main()
