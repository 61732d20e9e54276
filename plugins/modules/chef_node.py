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
    missing (its private key goes to O(private_key_path), or is returned only when the task has
    C(no_log)). It then creates the node with O(run_list) and O(environment), signed by the new
    client so that the client owns its node. An existing node gets the given run list and environment.
  - O(state=absent) is deregistration, for example when an instance terminates. It deletes the
    node and the client (only the client with O(manage_node=false), which keeps the node for forensics).
  - Ownership. A node created with O(instance_id) carries the marks C(cloudefigo.instance_id) and
    C(cloudefigo.launch_id) as normal attributes. A node whose marks name another instance or
    launch is never changed or deleted, nor a marked node by a task that gives no O(instance_id);
    the failure names the owner. An existing node without marks is taken over for an instance only
    with O(adopt_instance_id).
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
  manage_node:
    description:
      - With O(state=absent), V(false) deletes only the API client and keeps the node (and its
        attributes) for forensics, for example to contain an instance that failed its launch.
      - Must be V(true) with O(state=present).
    type: bool
    default: true
    version_added: 0.2.0
  private_key_path:
    description:
      - Write the private key of a newly created client to this file (mode 0600) instead of
        returning it in RV(private_key).
    type: path
  instance_id:
    description:
      - EC2 instance id the node belongs to. Written as the node's ownership mark when the node is
        created; compared with the node's marks before any change or deletion.
      - Required to change or delete a node that carries marks.
    type: str
    version_added: 0.2.0
  launch_id:
    description:
      - Launch the node belongs to (the C(cloudefigo:launch-id) of the instance). Written with
        O(instance_id) at creation; compared with the node's mark when both have one.
      - Only with O(instance_id).
    type: str
    version_added: 0.2.0
  adopt_instance_id:
    description:
      - Explicitly adopt an existing node without ownership marks (made by 0.1.0 or by hand) for
        O(instance_id), adding the marks. Must equal O(instance_id).
      - Without it, an unmarked node is not touched by a task that gives O(instance_id).
    type: str
    version_added: 0.2.0
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
    with the client present returns no key. The key is returned in RV(private_key) only when the
    task has C(no_log) set to V(true); otherwise use O(private_key_path). A task with neither
    creates the client, does not return its key, and warns.
  - The ownership marks are only as strong as the node's ACL. The node's own client (the
    instance) can rewrite its node's attributes. The marks stop the controller being steered onto
    another instance's node (a copied tag, a reused name); they do not prove who runs a node.
"""

EXAMPLES = r"""
- name: Register this instance with Chef (validatorless)
  cloudefigo.core.chef_node:
    chef_server_url: https://chef.example.com/organizations/acme
    client_name: provisioner
    client_key: /etc/chef/provisioner.pem
    name: web-1
    instance_id: "{{ ec2_instance_id }}"
    launch_id: "{{ launch_id }}"
    run_list: ["role[base]", "role[web]"]
    environment: prod
    private_key_path: /etc/chef/client.pem

- name: Register and keep the key in a variable only
  cloudefigo.core.chef_node:
    name: web-2
    run_list: ["role[web]"]
  register: registration
  no_log: true

- name: Deregister at termination (refused when the node belongs to another instance)
  cloudefigo.core.chef_node:
    name: web-1
    instance_id: "{{ ec2_instance_id }}"
    launch_id: "{{ launch_id }}"
    state: absent

- name: Cut a failed instance off Chef, keep its node for forensics
  cloudefigo.core.chef_node:
    name: web-1
    instance_id: "{{ ec2_instance_id }}"
    state: absent
    manage_node: false
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
    - PEM private key of the client created by this run.
    - Returned only when the task has C(no_log) on; not returned when O(private_key_path) is set,
      in check mode, or when the client already existed.
  returned: when the client was created, the task has C(no_log) and O(private_key_path) is not set
  type: str
owner:
  description: Ownership marks of the node after the task; null when unmarked or absent.
  returned: always
  type: dict
  version_added: 0.2.0
  sample: {"instance_id": "i-0123456789abcdef0", "launch_id": "l-20240101-abcd"}
"""

import os
import re
import tempfile

from ansible_collections.cloudefigo.core.plugins.module_utils._chef import (
    OWNER_ATTRIBUTE,
    ChefError,
    ChefModule,
    client_from_params,
    node_owner,
    node_ownership_error,
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
    return {"run_list": list(node.get("run_list") or []), "chef_environment": node.get("chef_environment"),
            "owner": node_owner(node)}


def wanted_marks(module, node):
    """The marks the node should carry: the caller's, completing (never replacing) the node's own."""
    instance_id = module.params["instance_id"]
    if not instance_id:
        return None
    owner = node_owner(node) or {}
    return {"instance_id": instance_id,
            "launch_id": owner.get("launch_id") or module.params["launch_id"]}


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


def check_owner(module, node):
    error = node_ownership_error(module.params["name"], node, module.params["instance_id"],
                                 module.params["launch_id"], module.params["adopt_instance_id"])
    if error:
        module.fail_json(msg=error, owner=node_owner(node))


def hand_over_key(module, result, pem):
    """The new client's key: to private_key_path, or in the result only under no_log."""
    if module.params["private_key_path"]:
        write_private_key(module.params["private_key_path"], pem)
    elif module.no_log:
        result["private_key"] = pem
    else:
        module.warn("The private key of the new Chef client %s is not returned: the task does not set"
                    " no_log, and the key would be shown and logged. Set no_log: true on the task or give"
                    " private_key_path; to get a key now, deregister the client (state=absent) and register"
                    " again." % module.params["name"])


def present(module, chef):
    name = module.params["name"]
    run_list = module.params["run_list"]
    environment = module.params["environment"]
    manage_client = module.params["manage_client"]

    node = chef.get("/nodes/%s" % name, missing_ok=True)
    check_owner(module, node)
    client_exists = chef.get("/clients/%s" % name, missing_ok=True) is not None if manage_client else None
    wanted = dict(node or new_node(name, run_list, environment))
    if run_list is not None:
        wanted["run_list"] = list(run_list)
    if environment is not None:
        wanted["chef_environment"] = environment
    marks = wanted_marks(module, node)
    if marks:
        wanted["normal"] = dict(wanted.get("normal") or {})
        wanted["normal"][OWNER_ATTRIBUTE] = marks

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
        result["owner"] = node_owner(wanted) if module.check_mode else node_owner(node)
        return result

    node_signer = chef
    if create_client:
        answer = chef.post("/clients", {"name": name, "admin": False, "validator": False, "create_key": True})
        pem = created_private_key(answer)
        result["client_created"] = True
        if pem:
            # the new client creates its own node: on Chef Server it then owns the node's ACL
            node_signer = client_from_params(dict(module.params, client_name=name, client_key_content=pem))
            hand_over_key(module, result, pem)
    if node is None:
        node_signer.post("/nodes", wanted)
    elif node_view(node) != node_view(wanted):
        chef.put("/nodes/%s" % name, wanted)
    result["node"] = summarize_node(wanted)
    result["owner"] = node_owner(wanted)
    return result


def absent(module, chef):
    name = module.params["name"]
    manage_node = module.params["manage_node"]
    node = chef.get("/nodes/%s" % name, missing_ok=True)
    client = chef.get("/clients/%s" % name, missing_ok=True) if module.params["manage_client"] else None
    delete_node = manage_node and node is not None
    changed = delete_node or client is not None
    if changed:
        # the marks guard the client too: the client of a node is the node's instance
        check_owner(module, node)
    kept = None if delete_node else node
    result = {"changed": changed, "client_created": False,
              "node": summarize_node(kept) if kept else None, "owner": node_owner(kept)}
    if module._diff:
        result["diff"] = {
            "before": {"node": node_view(node), "client": client is not None},
            "after": {"node": node_view(kept), "client": False},
        }
    if changed and not module.check_mode:
        if delete_node:
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
            manage_node=dict(type="bool", default=True),
            private_key_path=dict(type="path", no_log=False),
            instance_id=dict(type="str"),
            launch_id=dict(type="str"),
            adopt_instance_id=dict(type="str"),
        ),
        required_by={"launch_id": "instance_id", "adopt_instance_id": "instance_id"},
        supports_check_mode=True,
    )
    params = module.params
    if params["adopt_instance_id"] and params["adopt_instance_id"] != params["instance_id"]:
        module.fail_json(msg="adopt_instance_id (%s) must equal instance_id (%s): adoption is for the node's own"
                         " instance" % (params["adopt_instance_id"], params["instance_id"]))
    if params["state"] == "present" and not params["manage_node"]:
        module.fail_json(msg="manage_node=false is only for state=absent (delete the client, keep the node)")
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
