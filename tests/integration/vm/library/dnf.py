# Copyright: Contributors to the cloudefigo.core collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test stub of ansible.legacy.dnf: records its arguments instead of running a transaction.

os_upgrade's dnf path goes through ansible.builtin.package, which runs ansible.legacy.dnf, so a
library/ override replaces the real module (there is no RPM host in the lab).
"""
import json

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(argument_spec=dict(
        name=dict(type="list", elements="str", aliases=["pkg"]),
        state=dict(type="str"),
        update_cache=dict(type="bool", default=False),
    ), supports_check_mode=True)
    with open("/tmp/dnf-stub.log", "a") as handle:
        handle.write(json.dumps({"name": module.params["name"], "state": module.params["state"],
                                 "update_cache": module.params["update_cache"],
                                 "check_mode": module.check_mode}) + "\n")
    module.exit_json(changed=module.params["name"] == ["*"], msg="stub")


if __name__ == "__main__":
    main()
