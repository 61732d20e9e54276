#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance_role_info
short_description: Whether the named IAM roles exist and whose they are, several roles in one call
version_added: 0.2.0
description:
  - Reads each role of O(names) with C(iam:GetRole) (and C(iam:ListRoleTags) when the answer carries
    no tags), in the order given, and reports its ownership marks C(cloudefigo:instance-id) and
    C(cloudefigo:launch-id), for example the roles of a whole batch before a secure launch, in one
    module call instead of one C(amazon.aws.iam_role_info) call per name.
  - It reads exactly the named roles, never lists a path or the account's roles.
  - A missing role (C(NoSuchEntity)) is reported as RV(roles[].exists=false). Any other lookup error
    stops the module; it is never taken for "no role".
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  names:
    description:
      - Names of the IAM roles (without path), for example C(cloudefigo-web-01).
    type: list
    elements: str
    required: true
attributes:
  check_mode:
    description: Reads only; runs the same in check mode.
    support: full
  diff_mode:
    description: Reads only; no diff.
    support: none
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the instance roles of a batch
  cloudefigo.core.instance_role_info:
    names: [cloudefigo-web-01, cloudefigo-web-02]
  register: batch_roles

- name: Fail when a role belongs to another launch
  ansible.builtin.assert:
    that: >-
      batch_roles.roles | selectattr('exists') | rejectattr('launch_id', 'equalto', my_launch_id) | list | length == 0
"""

RETURN = r"""
roles:
  description: One entry per name of O(names), in the same order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The name asked for.
      type: str
      sample: cloudefigo-web-01
    exists:
      description: Whether the role exists.
      type: bool
      sample: true
    role_name:
      description: The role's name as IAM spells it; null when it does not exist.
      type: str
      sample: cloudefigo-web-01
    arn:
      description: The role's ARN; null when it does not exist.
      type: str
      sample: arn:aws:iam::123456789012:role/cloudefigo/cloudefigo-web-01
    path:
      description: The role's path; null when it does not exist.
      type: str
      sample: /cloudefigo/
    tags:
      description: The role's tags; empty when it does not exist.
      type: dict
      sample: {"cloudefigo:instance-id": "i-0123456789abcdef0", "cloudefigo:launch-id": "20261129T120000Z-000001"}
    instance_id:
      description: The C(cloudefigo:instance-id) mark; null when absent.
      type: str
      sample: i-0123456789abcdef0
    launch_id:
      description: The C(cloudefigo:launch-id) mark; null when absent.
      type: str
      sample: 20261129T120000Z-000001
"""

import re

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict

# IAM's rule for role names
ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


def validate(names):
    """The first problem with `names` (a message naming the option), or None."""
    for index, name in enumerate(names):
        if not ROLE_NAME.match(name or ""):
            return ("names[%d] %r is not an IAM role name (1-64 letters, digits and +=,.@_-, no path): "
                    "give the role's name only" % (index, name))
    return None


def look_up(module, iam, name):
    """The result entry of one role (reads only); fails the module on any error but NoSuchEntity."""
    entry = {"name": name, "exists": False, "role_name": None, "arn": None, "path": None, "tags": {},
             "instance_id": None, "launch_id": None}
    try:
        role = iam.get_role(RoleName=name, aws_retry=True)["Role"]
    except is_boto3_error_code("NoSuchEntity"):
        return entry
    except AWS_ERRORS as e:  # pylint: disable=duplicate-except
        module.fail_json_aws(e, msg="Could not read IAM role %s (iam:GetRole); a failed lookup is never taken for 'no role'" % name)
    tags = role.get("Tags")
    if tags is None:
        try:
            tags = iam.list_role_tags(RoleName=name, aws_retry=True).get("Tags", [])
        except AWS_ERRORS as e:
            module.fail_json_aws(e, msg="Could not read the tags of IAM role %s (iam:ListRoleTags)" % name)
    tags = tag_dict(tags)
    entry.update(exists=True, role_name=role["RoleName"], arn=role["Arn"], path=role.get("Path"), tags=tags,
                 instance_id=tags.get("cloudefigo:instance-id"), launch_id=tags.get("cloudefigo:launch-id"))
    return entry


def main():
    argument_spec = dict(names=dict(type="list", elements="str", required=True))
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    problem = validate(module.params["names"])
    if problem:
        module.fail_json(msg=problem)
    iam = retrying_client(module, "iam")
    module.exit_json(changed=False, roles=[look_up(module, iam, name) for name in module.params["names"]])


if __name__ == "__main__":
    main()
