#!/usr/bin/env bash
# with-lab.sh STATE_DIR CMD...: bring up a lab in STATE_DIR (with the VM unless LAB_NO_VM=1),
# run CMD with its env, and always bring it down again.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export LAB_STATE_DIR="$1"; shift
up_args=()
if [ "${LAB_NO_VM:-0}" != "1" ] && [ -f lab/services/vm.py ]; then up_args+=(--vm); fi
trap 'lab/lab down >/dev/null 2>&1 || true' EXIT
lab/lab up "${up_args[@]}" || exit 1
# shellcheck disable=SC1091
source "$LAB_STATE_DIR/lab.env"
"$@"
