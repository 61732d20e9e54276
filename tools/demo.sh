#!/usr/bin/env bash
# make demo: a lab of its own, the secure launch and the audit against it, a summary, lab down.
set -euo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
export LAB_STATE_DIR="$ROOT/.cache/demo-lab"
export ANSIBLE_CONFIG="$ROOT/ansible.cfg"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.cache/collections"
export PATH="$ROOT/.venv/bin:$PATH"
up_args=()
if [ -f lab/services/vm.py ] && [ -f playbooks/secure_launch.yml ]; then up_args+=(--vm); fi
trap 'echo "demo: lab down"; lab/lab down >/dev/null 2>&1 || true' EXIT
start=$(date +%s)
lab/lab up "${up_args[@]}"
# shellcheck disable=SC1091
source "$LAB_STATE_DIR/lab.env"
run() {
    echo "demo: ansible-playbook $*"
    ansible-playbook -e "@$LAB_STATE_DIR/lab_vars.yml" "$@"
}
if [ -f playbooks/secure_launch.yml ] && [ -f playbooks/vars/lab.yml ]; then
    run -i "${LAB_VM_INVENTORY:-localhost,}" playbooks/secure_launch.yml -e @playbooks/vars/lab.yml
    run -i localhost, playbooks/audit.yml -e @playbooks/vars/lab.yml
    python3 - "$LAB_STATE_DIR" <<'PY'
import json, os, sys
state = sys.argv[1]
summary = json.load(open(os.path.join(state, "secure_launch", "summary.json")))
print("demo: secure launch %s" % summary["launch_id"])
for item in summary["instances"]:
    print("demo:   instance %s (%s): %s" % (item["instance_id"], item["name"], item["status"]))
    print("demo:     security groups %s" % ", ".join(item["security_groups"]))
    print("demo:     role %s stage %s allows %s" % (item["role"], item["role_stage"], ", ".join(item["role_actions"]) or "nothing"))
    print("demo:     scan verdict: %s %s" % (item["scan_verdict"], item["scan_counts"]))
print("demo: audit report file://%s" % os.path.join(state, "audit", "audit-report.html"))
PY
else
    run -i localhost, playbooks/foundation_demo.yml
fi
echo "demo: done in $(( $(date +%s) - start ))s"
