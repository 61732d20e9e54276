#!/usr/bin/env bash
# make demo: a lab of its own, a secure launch of two instances (one passes, one is contained), a
# rogue instance launched around the secure launch, the audit (quarantine, CloudTrail into
# PostgreSQL: the sample trail plus events synthesized from the lab's own API calls, the HTML
# report), a summary, lab down. docs/demo.md tells the story.
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
if [ ! -f playbooks/secure_launch.yml ] || [ ! -f playbooks/vars/lab.yml ]; then
    run -i localhost, playbooks/foundation_demo.yml
    echo "demo: done in $(( $(date +%s) - start ))s"
    exit 0
fi
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export PYTHONPATH="$ANSIBLE_COLLECTIONS_PATH"
step() { echo; echo "demo: ---- $* ----"; }

step "stage: trail and evidence buckets, the sample CloudTrail, Nessus criticals for demo-app-2"
python3 tools/demo_lab.py prepare

step "secure launch of a batch of two (demo-app-2 is expected to be contained: the job fails closed)"
launch_rc=0
run -i "${LAB_VM_INVENTORY:-localhost,}" playbooks/secure_launch.yml \
    -e @playbooks/vars/lab.yml -e @playbooks/vars/demo.yml || launch_rc=$?
echo "demo: secure launch exit code $launch_rc (non-zero: an instance was not promoted)"

step "a rogue instance, launched directly with boto3 around the secure launch"
python3 tools/demo_lab.py rogue

step "CloudTrail records synthesized from the lab proxy's recorded API calls"
python3 lab/cloudtrail_synth.py --log "$LAB_AWS_PROXY_LOG" --bucket cloudefigo-demo-trail \
    --endpoint "$LAB_AWS_ENDPOINT"

step "audit: unmanaged instances quarantined, security groups, CloudTrail into PostgreSQL, report"
run -i localhost, playbooks/audit.yml -e @playbooks/vars/lab.yml -e @playbooks/vars/demo.yml

step "summary"
python3 tools/demo_lab.py summary --launch-rc "$launch_rc"
echo "demo: done in $(( $(date +%s) - start ))s"
