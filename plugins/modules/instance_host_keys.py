#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: instance_host_keys
short_description: Pin a new instance's SSH host keys from its console output
version_added: 0.2.0
description:
  - Reads the console output of O(instance_id) (C(ec2:GetConsoleOutput)) until cloud-init's
    C(-----BEGIN SSH HOST KEY KEYS-----) block appears or O(wait_timeout) passes, and returns the
    SSH host keys printed there. The console output comes over the authenticated AWS API, not over
    the network path SSH takes, so a key pinned from it defeats a man in the middle of the first
    SSH connection (which C(StrictHostKeyChecking=accept-new) would trust).
  - Fails closed. A second keys block, a key type listed twice, a line in the block that is not a
    key, a key whose blob does not decode to its own type, an unknown key type, or a key that
    disagrees with the fingerprint cloud-init printed in its C(SSH HOST KEY FINGERPRINTS) block
    makes the module fail; nothing is guessed. DSA keys are skipped (OpenSSH no longer accepts them).
  - With O(known_hosts_path), writes a known_hosts file holding exactly these keys for O(address)
    (and O(port)), mode C(0600), replaced atomically; use it with C(StrictHostKeyChecking=yes) and
    C(UserKnownHostsFile=<path>).
  - For AMIs that do not print their keys (no cloud-init, or C(ssh.emit_keys_to_console=false)) the
    module times out; see C(docs/host-keys.md) for the fallback.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  instance_id:
    description: The instance whose console output is read (C(i-...)).
    type: str
    required: true
  wait_timeout:
    description:
      - Seconds to wait for the keys block to appear on the console. On EC2 it appears some seconds
        to a few minutes after boot (cloud-init's final stage); 0 reads once.
    type: int
    default: 600
  poll_interval:
    description: Seconds between two reads of the console output.
    type: int
    default: 10
  latest:
    description:
      - Ask for the most recent console output (C(Latest=true)), supported on Nitro instances only.
        The default reads the buffered output, which EC2 updates less often.
    type: bool
    default: false
  known_hosts_path:
    description:
      - Write the keys to this known_hosts file (its whole content is replaced; mode C(0600)). Its
        directory must exist. Requires O(address).
    type: path
  address:
    description:
      - The address SSH connects to (the instance's private or public IP address or DNS name), the
        host field of the known_hosts lines.
    type: str
  port:
    description: SSH port; a port other than 22 is written as C([address]:port).
    type: int
    default: 22
attributes:
  check_mode:
    description: Reads the console output; does not write O(known_hosts_path) but reports whether it would change.
    support: full
  diff_mode:
    description: Shows the known_hosts file before and after.
    support: full
notes:
  - Who could misuse it. Someone on the network path to the instance cannot, the keys do not come
    over that path. A principal that can only write tags cannot steer which instance is read (the
    caller names O(instance_id)). Anything that can write to the instance's serial console (root on
    the instance) could print a second block; the module then refuses both.
  - See C(docs/host-keys.md).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Pin the new instance's host keys from its console output
  cloudefigo.core.instance_host_keys:
    instance_id: "{{ instance_id }}"
    address: "{{ private_ip }}"
    known_hosts_path: "{{ playbook_dir }}/known_hosts/{{ instance_id }}"
    wait_timeout: 600
  delegate_to: localhost

- name: Connect with the pinned keys only
  ansible.builtin.set_fact:
    ansible_host_key_checking: true
    ansible_ssh_common_args: >-
      -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null
      -o UserKnownHostsFile={{ playbook_dir }}/known_hosts/{{ instance_id }}
"""

RETURN = r"""
host_keys:
  description: The host keys printed on the console, in the order printed.
  returned: success
  type: list
  elements: dict
  contains:
    type:
      description: Key type.
      type: str
      sample: ssh-ed25519
    key:
      description: The base64 public key blob.
      type: str
      sample: AAAAC3NzaC1lZDI1NTE5AAAAIHcRk4h0cxJ6pasa4fhDIasmyXTkAYGfCRWqtBoapSPn
    comment:
      description: The comment printed after the key (usually C(root@hostname)).
      type: str
      sample: root@ip-10-0-1-23
    fingerprint_sha256:
      description: OpenSSH's SHA256 fingerprint of the key.
      type: str
      sample: SHA256:mxRXQMbJoa7CGsNm6Eip2wz9fRp+cSW5QmqToaH0PqU
    known_hosts_key:
      description: C(type key), as a known_hosts line carries it after the host field.
      type: str
      sample: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcRk4h0cxJ6pasa4fhDIasmyXTkAYGfCRWqtBoapSPn
skipped_types:
  description: Key types printed but not pinned (C(ssh-dss)).
  returned: success
  type: list
  elements: str
  sample: []
fingerprints_checked:
  description: How many keys were checked against the fingerprints block cloud-init printed.
  returned: success
  type: int
  sample: 3
known_hosts_path:
  description: The known_hosts file written (or that would be, in check mode). Null without O(known_hosts_path).
  returned: success
  type: str
  sample: /home/ops/launch/known_hosts/i-0123456789abcdef0
known_hosts_lines:
  description: The known_hosts lines for O(address). Empty without O(address).
  returned: success
  type: list
  elements: str
  sample: ["10.0.1.23 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcRk4h0cxJ6pasa4fhDIasmyXTkAYGfCRWqtBoapSPn"]
console_timestamp:
  description: The time of the console output the keys were read from, as EC2 reported it.
  returned: success
  type: str
  sample: "2026-11-29T20:30:05+00:00"
waited:
  description: Seconds spent waiting for the keys block.
  returned: always
  type: int
  sample: 40
"""

import os
import re
import tempfile
import time

try:
    from botocore.exceptions import BotoCoreError, ClientError
    AWS_ERRORS = (BotoCoreError, ClientError)
except ImportError:
    AWS_ERRORS = ()  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils import _host_keys as hk
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client

INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


def validate(params):
    """A message naming the option and the fix, or None."""
    if not INSTANCE_ID.match(params["instance_id"] or ""):
        return "instance_id must look like i-0123456789abcdef0, got %r" % params["instance_id"]
    if params["wait_timeout"] < 0:
        return "wait_timeout must be 0 or more seconds"
    if params["poll_interval"] < 1:
        return "poll_interval must be at least 1 second"
    if not 1 <= params["port"] <= 65535:
        return "port must be between 1 and 65535"
    if params.get("known_hosts_path") and not params.get("address"):
        return "known_hosts_path needs address: the host the known_hosts lines are for"
    if params.get("address"):
        try:
            hk.known_hosts_host(params["address"], params["port"])
        except hk.HostKeyError as e:
            return "address: %s" % e
    return None


def read_console(ec2, module):
    kwargs = {"InstanceId": module.params["instance_id"]}
    if module.params["latest"]:
        kwargs["Latest"] = True
    try:
        answer = ec2.get_console_output(aws_retry=True, **kwargs)
    except AWS_ERRORS as e:
        module.fail_json_aws(e, msg="Could not read the console output of %s (ec2:GetConsoleOutput)" % module.params["instance_id"])
    # boto3 decodes the base64 `output`; bytes that are not UTF-8 cannot be part of a key line
    output = answer.get("Output") or ""
    timestamp = answer.get("Timestamp")
    return output, timestamp.isoformat() if hasattr(timestamp, "isoformat") else timestamp


def wait_for_keys(ec2, module):
    started = time.monotonic()
    deadline = started + module.params["wait_timeout"]
    while True:
        output, timestamp = read_console(ec2, module)
        try:
            found = hk.parse_console(output)
        except hk.HostKeyError as e:
            module.fail_json(msg="Refusing the SSH host keys on the console of %s: %s" % (module.params["instance_id"], e),
                             waited=int(time.monotonic() - started))
        if found is not None:
            return found, timestamp, int(time.monotonic() - started)
        if time.monotonic() >= deadline:
            module.fail_json(
                msg="No SSH host key block on the console of %s after %d s: the AMI may not print its keys (cloud-init's "
                    "ssh.emit_keys_to_console), or the console output is not updated yet (raise wait_timeout, or latest=true on "
                    "Nitro instances). See docs/host-keys.md for the fallback." % (module.params["instance_id"], module.params["wait_timeout"]),
                waited=int(time.monotonic() - started))
        time.sleep(min(module.params["poll_interval"], max(0.0, deadline - time.monotonic())))


def read_file(path):
    try:
        with open(path) as handle:
            return handle.read(), os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None, None
    except OSError as e:
        raise OSError("cannot read known_hosts_path %s: %s" % (path, e)) from e


def write_file(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise OSError("the directory of known_hosts_path (%s) does not exist: create it first" % directory)
    fd, tmp = tempfile.mkstemp(prefix=".known_hosts.", dir=directory)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main():
    argument_spec = dict(
        instance_id=dict(type="str", required=True),
        wait_timeout=dict(type="int", default=600),
        poll_interval=dict(type="int", default=10),
        latest=dict(type="bool", default=False),
        known_hosts_path=dict(type="path"),
        address=dict(type="str"),
        port=dict(type="int", default=22),
    )
    module = AnsibleAWSModule(argument_spec=argument_spec, supports_check_mode=True)
    problem = validate(module.params)
    if problem:
        module.fail_json(msg=problem)

    ec2 = retrying_client(module, "ec2")
    found, timestamp, waited = wait_for_keys(ec2, module)

    lines = []
    if module.params.get("address"):
        host = hk.known_hosts_host(module.params["address"], module.params["port"])
        lines = ["%s %s" % (host, key["known_hosts_key"]) for key in found["keys"]]
    result = {
        "changed": False,
        "host_keys": found["keys"],
        "skipped_types": found["skipped"],
        "fingerprints_checked": found["fingerprints_checked"],
        "known_hosts_lines": lines,
        "known_hosts_path": module.params.get("known_hosts_path"),
        "console_timestamp": timestamp,
        "waited": waited,
    }
    path = module.params.get("known_hosts_path")
    if path:
        wanted = hk.known_hosts_text([hk.known_hosts_host(module.params["address"], module.params["port"])],
                                     found["keys"], module.params["instance_id"])
        try:
            current, mode = read_file(path)
            if current != wanted or mode != 0o600:
                result["changed"] = True
                if not module.check_mode:
                    write_file(path, wanted)
        except OSError as e:
            module.fail_json(msg=str(e), **result)
        if module._diff:
            result["diff"] = {"before": current or "", "after": wanted, "before_header": path, "after_header": path}
    module.exit_json(**result)


if __name__ == "__main__":
    main()
