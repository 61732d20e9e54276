#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: cloud_config
short_description: Render cloud-init user data (#cloud-config) within EC2's 16 KB
version_added: 0.2.0
description:
  - Writes a C(#cloud-config) document from files (C(write_files)) and commands (C(bootcmd),
    C(runcmd)), for the C(user_data) of an EC2 instance or launch template. Pull mode
    (role cloudefigo.core.pull_user_data) renders the files of the roles s3_get, luks_volume and
    chef_client with it, so the roles and the user data install the same bytes.
  - When the plain document is over O(max_bytes), the content of every file that gets shorter so
    is gzip-compressed and base64-encoded (write_files encoding C(gz+b64), which cloud-init decodes); the document stays
    text, valid for C(cloud-init schema). Still too big fails, naming the largest files.
  - Refuses content that looks like a secret (a PEM private key, an AWS access key id), as user data
    is readable by anyone allowed C(ec2:DescribeInstanceAttribute) on the instance.
  - Changes nothing; runs on the controller.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  write_files:
    description: Files the instance writes at its first boot, in this order.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: Absolute path on the instance.
        type: str
        required: true
      content:
        description: The file's text.
        type: str
        required: true
      permissions:
        description: Octal mode.
        type: str
        default: "0644"
      owner:
        description: C(user) or C(user:group).
        type: str
        default: "root:root"
  runcmd:
    description:
      - Commands of cloud-init's C(runcmd) (final stage, first boot only), in order. A list is an
        argv run without a shell; a string is run by C(sh).
    type: list
    elements: raw
    default: []
  bootcmd:
    description: Commands of cloud-init's C(bootcmd) (early, every boot), same forms as O(runcmd).
    type: list
    elements: raw
    default: []
  max_bytes:
    description: Size limit of the document in bytes (EC2 allows 16384).
    type: int
    default: 16384
  compress:
    description:
      - V(auto) compresses the files only when the plain document is over O(max_bytes);
        V(always) and V(never) force it (small files that would grow stay as they are).
    type: str
    choices: [auto, always, never]
    default: auto
attributes:
  check_mode:
    description: Changes nothing; the same result in check mode.
    support: full
  diff_mode:
    description: Nothing changes, so there is nothing to diff.
    support: none
notes:
  - Keep secrets out of the files and commands; put them in S3 for the instance role to fetch
    (cloudefigo-s3-get), as pull mode does with the volume key and the Chef validator key.
seealso:
  - name: cloud-init write_files
    description: The module that writes the files on the instance.
    link: https://cloudinit.readthedocs.io/en/latest/reference/modules.html#write-files
"""

EXAMPLES = r"""
- name: Render user data that installs a script and runs it once
  cloudefigo.core.cloud_config:
    write_files:
      - path: /usr/local/sbin/hello
        content: "#!/bin/sh\necho hello\n"
        permissions: "0755"
    runcmd:
      - [/usr/local/sbin/hello]
  register: user_data

- name: Launch with it
  amazon.aws.ec2_instance:
    name: web-1
    image_id: ami-0123456789abcdef0
    user_data: "{{ user_data.user_data }}"
"""

RETURN = r"""
user_data:
  description: The C(#cloud-config) document.
  returned: success
  type: str
  sample: "#cloud-config\nwrite_files:\n- path: \"/usr/local/sbin/hello\"\n..."
size:
  description: Its size in bytes.
  returned: success
  type: int
  sample: 9213
compressed:
  description: Whether the files' contents were gzip+base64 encoded to fit (those that get shorter).
  returned: success
  type: bool
  sample: true
files:
  description: The paths written, in order.
  returned: success
  type: list
  elements: str
  sample: [/usr/local/lib/cloudefigo-s3-get]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.cloudefigo.core.plugins.module_utils._cloud_config import UserDataError
from ansible_collections.cloudefigo.core.plugins.module_utils._cloud_config import render


def main():
    module = AnsibleModule(
        argument_spec=dict(
            write_files=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                content=dict(type="str", required=True),
                permissions=dict(type="str", default="0644"),
                owner=dict(type="str", default="root:root"),
            )),
            runcmd=dict(type="list", elements="raw", default=[]),
            bootcmd=dict(type="list", elements="raw", default=[]),
            max_bytes=dict(type="int", default=16384),
            compress=dict(type="str", choices=["auto", "always", "never"], default="auto"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    try:
        text, compressed = render(params["write_files"], params["runcmd"], params["bootcmd"],
                                  params["max_bytes"], params["compress"])
    except UserDataError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, user_data=text, size=len(text.encode("utf-8")), compressed=compressed,
                     files=[f["path"] for f in params["write_files"]])


if __name__ == "__main__":
    main()
