#!/usr/bin/env bash
# chef-deb.sh OUT_DIR: the lab's chef package, OUT_DIR/chef_18.0.0-1_all.deb, whose /usr/bin/chef-client
# is the stand-in lab/vm/chef_standin.py (Debian has no Chef client package).  Reproducible: the same
# stand-in gives the same bytes (and SHA-256), so a rebuild does not change what the lab uploads.
# Prints "unchanged PATH" or "built PATH".  Used by playbooks/tasks/lab_prepare.yml and the VM tests.
set -euo pipefail
OUT="${1:?usage: chef-deb.sh OUT_DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEB="$OUT/chef_18.0.0-1_all.deb"
export SOURCE_DATE_EPOCH=1767225600   # 2026-01-01: fixed, for identical bytes
WORK="$(mktemp -d "${TMPDIR:-/tmp}/chef-deb.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT" "$WORK/chef/DEBIAN" "$WORK/chef/usr/bin"
cat >"$WORK/chef/DEBIAN/control" <<CONTROL
Package: chef
Version: 18.0.0-1
Architecture: all
Maintainer: cloudefigo lab <lab@example.invalid>
Depends: python3
Description: chef-client stand-in of the cloudefigo lab
 Registers and converges against the lab's Chef server (signed requests, ohai data); runs no
 recipes. Source: lab/vm/chef_standin.py.
CONTROL
{ echo '#!/usr/bin/python3'; cat "$HERE/chef_standin.py"; } >"$WORK/chef/usr/bin/chef-client"
chmod 0755 "$WORK/chef/usr/bin/chef-client"
find "$WORK/chef" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
dpkg-deb --root-owner-group -Zxz --build "$WORK/chef" "$WORK/chef.deb" >/dev/null
if [ -f "$DEB" ] && cmp -s "$WORK/chef.deb" "$DEB"; then
    echo "unchanged $DEB"
else
    mv "$WORK/chef.deb" "$DEB"
    echo "built $DEB"
fi
