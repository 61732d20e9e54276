# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # Chef server connection options; kept in sync with module_utils/_chef.py::chef_argument_spec().
    # ChefModule modules add VALIDATE_CERTS (chef_validate_certs, alias validate_certs);
    # AnsibleAWSModule modules add VALIDATE_CERTS_AWS (no alias: validate_certs is AWS's there).
    DOCUMENTATION = r"""
options:
  chef_server_url:
    description:
      - URL of the Chef Infra Server, including C(/organizations/NAME) for a multi-tenant server.
      - If not set, the value of the E(CHEF_SERVER_URL) environment variable is used.
    type: str
    required: true
  client_name:
    description:
      - Name of the API client or user that signs the requests.
      - If not set, the value of the E(CHEF_CLIENT_NAME) environment variable is used.
    type: str
    required: true
  client_key:
    description:
      - Path to the PEM private key of O(client_name).
      - If not set, the value of the E(CHEF_CLIENT_KEY_PATH) environment variable is used.
      - Exactly one of O(client_key) and O(client_key_content) is required.
    type: path
  client_key_content:
    description:
      - The PEM private key of O(client_name) itself, for keys kept in a vault.
      - If not set, the value of the E(CHEF_CLIENT_KEY) environment variable is used.
    type: str
  chef_ca_path:
    description:
      - PEM bundle of the CA(s) that signed the Chef server's certificate, instead of the system store.
      - The alias O(ca_path) is the 0.1.0 name, deprecated, to be removed in 0.3.0.
    type: path
    aliases: [ca_path]
    version_added: 0.2.0
  allow_insecure_http:
    description:
      - Allow a plain C(http://) O(chef_server_url). Without it such a URL is refused, because
        requests, their signatures and the private key of a new client would cross the network
        unencrypted. For a lab only.
    type: bool
    default: false
    version_added: 0.2.0
  timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: int
    default: 30
  auth_protocol:
    description:
      - Chef authentication protocol used to sign requests.
      - V(1.3) signs with SHA-256 and needs Chef Server 12.4 or later (goiardi accepts it).
      - V(1.0) signs with SHA-1, for old servers.
    type: str
    default: "1.3"
    choices: ["1.3", "1.0"]
requirements:
  - requests
  - cryptography
notes:
  - Requests answered HTTP 429 or 5xx, and requests that time out, are retried 3 times with
    exponential back-off (honouring C(Retry-After)). A refused connection or a host name that
    does not resolve fails at once, naming O(chef_server_url).
"""

    # modules built on ChefModule: the Chef connection is their only one
    VALIDATE_CERTS = r"""
options:
  chef_validate_certs:
    description:
      - Whether to verify the Chef server's TLS certificate. Turn off only for a lab.
      - The alias O(validate_certs) is the 0.1.0 name, deprecated, to be removed in 0.3.0.
    type: bool
    default: true
    aliases: [validate_certs]
    version_added: 0.2.0
"""

    # modules built on AnsibleAWSModule: validate_certs is AWS's, the Chef server has its own option
    VALIDATE_CERTS_AWS = r"""
options:
  chef_validate_certs:
    description:
      - Whether to verify the Chef server's TLS certificate. Turn off only for a lab.
      - Independent of O(validate_certs), which applies to AWS only (a C(group/aws) default
        cannot turn off the Chef server's certificate checks).
    type: bool
    default: true
    version_added: 0.2.0
"""
