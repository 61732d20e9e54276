#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: chef_node
short_description: Register or deregister a Chef node and its API client
version_added: 0.1.0
description:
  - O(state=present) is validatorless registration. It creates the API client named O(name) when
    missing and returns its private key. It then creates the node with O(run_list) and
    O(environment), signed by the new client so that the client owns its node. An existing node
    gets the given run list and environment.
  - O(state=absent) is deregistration, for example when an instance terminates. It deletes the
    node and the client.
  - The connection credentials (O(client_name)) must be allowed to create and delete clients
    and nodes, for example an admin user.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  name:
    description:
      - Name of the node and of its API client.
    type: str
    required: true
  state:
    description:
      - V(present) registers, V(absent) deregisters.
    type: str
    choices: [present, absent]
    default: present
  run_list:
    description:
      - Run list of the node, for example V(role[web]) or V(recipe[base::default]).
      - When not set, a new node gets an empty run list and an existing one keeps its own.
    type: list
    elements: str
  environment:
    description:
      - Chef environment of the node.
      - When not set, a new node goes to V(_default) and an existing one keeps its own.
    type: str
  manage_client:
    description:
      - Whether to create (V(present)) or delete (V(absent)) the API client named O(name) too.
    type: bool
    default: true
  private_key_path:
    description:
      - Write the private key of a newly created client to this file (mode 0600) instead of
        returning it in RV(private_key).
    type: path
extends_documentation_fragment:
  - cloudefigo.core.chef
  - cloudefigo.core.chef.validate_certs
attributes:
  check_mode:
    support: full
    description: Reports what would change and changes nothing.
  diff_mode:
    support: full
    description: Shows the state before and after.
    details: The diff shows the node's run list and environment and whether the client exists, never keys.
notes:
  - Chef shows the private key of a new client once, when it creates the client. A later run
    with the client present returns no key. Set C(no_log) to V(true) on the task, or use
    O(private_key_path).
"""

EXAMPLES = r"""
- name: Register this instance with Chef (validatorless)
  cloudefigo.core.chef_node:
    chef_server_url: https://chef.example.com/organizations/acme
    client_name: provisioner
    client_key: /etc/chef/provisioner.pem
    name: "{{ ec2_instance_id }}"
    run_list: ["role[base]", "role[web]"]
    environment: prod
    private_key_path: /etc/chef/client.pem

- name: Register and keep the key in a variable only
  cloudefigo.core.chef_node:
    name: web-2
    run_list: ["role[web]"]
  register: registration
  no_log: true

- name: Deregister at termination
  cloudefigo.core.chef_node:
    name: "{{ ec2_instance_id }}"
    state: absent
"""

RETURN = r"""
node:
  description: The node after the task (see M(cloudefigo.core.chef_node_info) for the fields); null when absent.
  returned: always
  type: dict
  sample: {"name": "web-2", "chef_environment": "prod", "run_list": ["role[web]"], "ohai_time": null}
client_created:
  description: Whether this run created the API client.
  returned: always
  type: bool
private_key:
  description:
    - PEM private key of the client created by this run. Sensitive - register with C(no_log).
    - Not returned when O(private_key_path) is set, in check mode, or when the client already existed.
  returned: when the client was created and O(private_key_path) is not set
  type: str
"""

import os
import re
import tempfile

from ansible_collections.cloudefigo.core.plugins.module_utils._chef import (
    ChefError,
    ChefModule,
    client_from_params,
    summarize_node,
)

NODE_NAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


def new_node(name, run_list, environment):
    return {
        "name": name,
        "chef_type": "node",
        "json_class": "Chef::Node",
        "chef_environment": environment or "_default",
        "run_list": list(run_list or []),
        "automatic": {},
        "normal": {},
        "default": {},
        "override": {},
    }


def node_view(node):
    if not node:
        return None
    return {"run_list": list(node.get("run_list") or []), "chef_environment": node.get("chef_environment")}


def write_private_key(path, pem):
    directory = os.path.dirname(os.path.abspath(path))
    handle, tmp = tempfile.mkstemp(dir=directory, prefix=".chef-key-")
    try:
        try:
            os.fchmod(handle, 0o600)
            os.write(handle, pem.encode("utf-8"))
        finally:
            os.close(handle)
        os.rename(tmp, path)
    except (IOError, OSError):
        # no stray copy of the key beside the path that could not be written
        os.unlink(tmp)
        raise


def created_private_key(answer):
    """Chef Server 12+ (API v1) nests the key in chef_key; goiardi and API v0 answer it at the top."""
    return answer.get("private_key") or (answer.get("chef_key") or {}).get("private_key")


def present(module, chef):
    name = module.params["name"]
    run_list = module.params["run_list"]
    environment = module.params["environment"]
    manage_client = module.params["manage_client"]

    node = chef.get("/nodes/%s" % name, missing_ok=True)
    client_exists = chef.get("/clients/%s" % name, missing_ok=True) is not None if manage_client else None
    wanted = dict(node or new_node(name, run_list, environment))
    if run_list is not None:
        wanted["run_list"] = list(run_list)
    if environment is not None:
        wanted["chef_environment"] = environment

    create_client = manage_client and not client_exists
    changed = create_client or node is None or node_view(node) != node_view(wanted)
    result = {"changed": changed, "client_created": False}
    if module._diff:
        result["diff"] = {
            "before": {"node": node_view(node), "client": client_exists},
            "after": {"node": node_view(wanted), "client": True if manage_client else None},
        }
    if not changed or module.check_mode:
        result["node"] = summarize_node(wanted) if module.check_mode else summarize_node(node)
        return result

    node_signer = chef
    if create_client:
        answer = chef.post("/clients", {"name": name, "admin": False, "validator": False, "create_key": True})
        pem = created_private_key(answer)
        result["client_created"] = True
        if pem:
            # the new client creates its own node: on Chef Server it then owns the node's ACL
            node_signer = client_from_params(dict(module.params, client_name=name, client_key_content=pem))
            if module.params["private_key_path"]:
                write_private_key(module.params["private_key_path"], pem)
            else:
                result["private_key"] = pem
    if node is None:
        node_signer.post("/nodes", wanted)
    elif node_view(node) != node_view(wanted):
        chef.put("/nodes/%s" % name, wanted)
    result["node"] = summarize_node(wanted)
    return result


def absent(module, chef):
    name = module.params["name"]
    node = chef.get("/nodes/%s" % name, missing_ok=True)
    client = chef.get("/clients/%s" % name, missing_ok=True) if module.params["manage_client"] else None
    changed = node is not None or client is not None
    result = {"changed": changed, "client_created": False, "node": None}
    if module._diff:
        result["diff"] = {
            "before": {"node": node_view(node), "client": client is not None},
            "after": {"node": None, "client": False},
        }
    if changed and not module.check_mode:
        if node is not None:
            chef.delete("/nodes/%s" % name)
        if client is not None:
            chef.delete("/clients/%s" % name)
    return result


def main():
    module = ChefModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            run_list=dict(type="list", elements="str"),
            environment=dict(type="str"),
            manage_client=dict(type="bool", default=True),
            private_key_path=dict(type="path", no_log=False),
        ),
        supports_check_mode=True,
    )
    if not NODE_NAME.match(module.params["name"]):
        module.fail_json(msg="name %r: a Chef node name may contain only letters, digits, '_', '-', '.' and ':'"
                         % module.params["name"])
    try:
        if module.params["state"] == "present":
            result = present(module, module.chef)
        else:
            result = absent(module, module.chef)
    except ChefError as exc:
        module.fail_chef(exc, msg="Could not %s Chef node %s" % (
            "register" if module.params["state"] == "present" else "deregister", module.params["name"]))
    except (IOError, OSError) as exc:
        module.fail_json(msg="Could not write private_key_path %s: %s" % (module.params["private_key_path"], exc))
    module.exit_json(**result)


if __name__ == "__main__":
    main()
