#!/usr/bin/env bash
# Idempotent set-up of everything `make test` and `make demo` need on a fresh Debian machine:
# Debian packages (only those missing), a venv with the pinned requirements, the dependency
# collections out of the pinned `ansible` wheel, and this repo linked as cloudefigo/core.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ANSIBLE_VERSION=12.3.0
PY=${PYTHON:-python3}

need=()
for pkg in goiardi postgresql libpq-dev qemu-system-x86 debootstrap cryptsetup-bin busybox-static zstd cpio kmod chromium shellcheck ruby; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "bootstrap: apt-get install ${need[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.requirements.sha
sum=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    .venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
    echo "$sum" > "$stamp"
fi

.venv/bin/python tools/fetch_collections.py --ansible-version "$ANSIBLE_VERSION" \
    --dest "$ROOT/.cache/collections" --cache "$ROOT/.cache/downloads" --repo "$ROOT"
echo "bootstrap: ready (venv .venv, collections .cache/collections)"
