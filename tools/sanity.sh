#!/usr/bin/env bash
# ansible-test sanity, offline. ansible-test wants the collection at
# .../ansible_collections/cloudefigo/core (a real path, not a symlink) and downloads a pip
# bootstrap script from a host that is not reachable here: we give it the pip wheel from PyPI
# and a get-pip stand-in that runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export HOME="$ROOT/.cache/home"
PIP_VERSION=24.2
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
if ! ls "$cache"/pip-$PIP_VERSION-*.whl >/dev/null 2>&1; then
    .venv/bin/pip download -q --disable-pip-version-check --no-deps -d "$cache" "pip==$PIP_VERSION"
fi
cat > "$cache/get_pip_${PIP_VERSION//./_}.py" <<PY
import glob, os, sys
wheel = glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "pip-$PIP_VERSION-*.whl"))[0]
sys.path.insert(0, wheel)
from pip._internal.cli.main import main
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
sys.exit(main(["install", "--upgrade", "--force-reinstall"] + args))
PY

# a tree of its own per run: concurrent runs must not share (or delete) each other's copy
mkdir -p "$ROOT/.cache/sanity"
work=$(mktemp -d "$ROOT/.cache/sanity/run.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree="$work/ansible_collections"
dest="$tree/cloudefigo/core"
mkdir -p "$tree/cloudefigo"
for dep in amazon ansible community; do
    ln -sfn "$ROOT/.cache/collections/ansible_collections/$dep" "$tree/$dep"
done
mkdir -p "$dest"
# what git would commit: tracked files plus new, not ignored ones (deleted ones skipped)
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] || continue
    mkdir -p "$dest/$(dirname "$f")"
    cp -p "$f" "$dest/$f"
done
cd "$dest"
git init -q . && git add -A >/dev/null 2>&1 && git -c user.email=ci@localhost -c user.name=ci commit -qm sanity >/dev/null
"$ROOT/.venv/bin/ansible-test" sanity --venv --python 3.11 --color no "$@"
