#!/usr/bin/env bash
# Idempotent set-up of everything `make test` and `make demo` need on a fresh Debian machine:
# Debian packages (only those missing; Java 17 for ansible-rulebook's rule engine), a venv with
# the pinned requirements (ansible-rulebook among them), the dependency collections out of the
# pinned `ansible` wheel, and this repo linked as cloudefigo/core.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ANSIBLE_VERSION=12.3.0
PY=${PYTHON:-python3}

need=()
for pkg in goiardi postgresql libpq-dev qemu-system-x86 debootstrap cryptsetup-bin busybox-static zstd cpio kmod chromium shellcheck ruby systemd openjdk-17-jre-headless; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
# node + npm for the test-only IAM simulator (tests/iam_sim); a machine may already have them
# from elsewhere (nodesource's nodejs bundles npm)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
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
# Test-only IAM policy simulator (AGPL, never shipped): installed from the committed lock, again
# only when the lock is newer than the install; a failed (offline) install keeps what is there.
if command -v npm >/dev/null 2>&1; then
    sim=tests/iam_sim
    if [ ! -f "$sim/node_modules/.package-lock.json" ] || [ "$sim/package-lock.json" -nt "$sim/node_modules/.package-lock.json" ]; then
        (cd "$sim" && npm ci --no-audit --no-fund --prefer-offline >/dev/null) \
            || echo "bootstrap: npm ci in $sim failed; IAM simulation tests will fail until it succeeds" >&2
    fi
else
    echo "bootstrap: npm not found; IAM simulation tests need node >= 20 and npm" >&2
fi

# Debian's cloud-init, unpacked (never installed: its services stay off this host), for
# `cloud-init schema` on the pull-mode user data (tests/unit/plugins/modules/test_cloud_config_schema.py);
# the venv has its other Python dependencies, configobj comes from Debian too.
ci_dir="$ROOT/.cache/cloud-init"
if [ ! -f "$ci_dir/usr/lib/python3/dist-packages/cloudinit/__init__.py" ] \
        || [ ! -d "$ci_dir/usr/lib/python3/dist-packages/configobj" ]; then
    debs="$(mktemp -d)"
    if (cd "$debs" && apt-get download cloud-init python3-configobj >/dev/null 2>&1); then
        for deb in "$debs"/*.deb; do dpkg -x "$deb" "$ci_dir"; done
    else
        echo "bootstrap: apt-get download cloud-init failed; the cloud-init schema test will fail until it succeeds" >&2
    fi
    rm -rf "$debs"
fi

echo "bootstrap: ready (venv .venv, collections .cache/collections)"
