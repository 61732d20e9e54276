# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment(object):
    # Chef server connection options; kept in sync with module_utils/_chef.py::chef_argument_spec().
    # ChefModule modules add VALIDATE_CERTS; AnsibleAWSModule modules do not, their validate_certs
    # (amazon.aws.common.modules) covers the Chef server too.
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
  ca_path:
    description:
      - PEM bundle of the CA(s) that signed the server's certificate, instead of the system store.
    type: path
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
  - Requests that fail with HTTP 429 or 5xx, or that cannot reach the server, are retried 3 times
    with exponential back-off (honouring C(Retry-After)).
"""

    # modules built on ChefModule: validate_certs is the Chef connection's own
    VALIDATE_CERTS = r"""
options:
  validate_certs:
    description:
      - Whether to verify the server's TLS certificate. Turn off only for a lab.
    type: bool
    default: true
"""
