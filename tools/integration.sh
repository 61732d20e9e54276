#!/usr/bin/env bash
# Integration tests in two labs side by side: the VM tests (-m vm) in a lab with the qemu VM,
# plus a few VM-less ones marked vmlane to balance the lanes, everything else in a lab without it. Each lab has its own moto, so tests that empty moto
# never see each other's state; the VM's software emulation keeps one core busy while the
# other suites use the second. Exit status: non-zero if either half failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
PY="$ROOT/.venv/bin/python"
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

LAB_NO_VM=1 bash tools/with-lab.sh "$ROOT/.cache/test-lab" \
    "$PY" -m pytest -q --durations=15 -m "not vm and not vmlane" tests/integration "$@" > "$logs/main.log" 2>&1 &
main=$!
vm_status=0
if [ -f lab/services/vm.py ]; then
    bash tools/with-lab.sh "$ROOT/.cache/test-lab-vm" \
        "$PY" -m pytest -q --durations=15 -m "vm or vmlane" tests/integration "$@" > "$logs/vm.log" 2>&1
    vm_status=$?
    echo "== integration tests in the VM lab (exit $vm_status)"
    cat "$logs/vm.log"
fi
wait "$main"
main_status=$?
echo "== integration tests in the main lab (exit $main_status)"
cat "$logs/main.log"
[ "$main_status" -eq 0 ] && [ "$vm_status" -eq 0 ]
