#!/usr/bin/env bash
# Changelog with antsibull-changelog (pinned in requirements-dev.txt).
#   tools/changelog.sh lint      fragments are valid, and CHANGELOG.md is what changelogs/changelog.yaml renders to
#   tools/changelog.sh release   release galaxy.yml's version: fragments -> changelog.yaml -> CHANGELOG.md
#   tools/changelog.sh generate  re-render CHANGELOG.md from changelog.yaml
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# antsibull-changelog calls ansible-doc (the venv's) to find new modules, with this collection in the path
export PATH="$ROOT/.venv/bin:$PATH"
export ANSIBLE_COLLECTIONS_PATH="$ROOT/.cache/collections"
CHANGELOG="$ROOT/.venv/bin/antsibull-changelog"

case "${1:-lint}" in
  lint)
    "$CHANGELOG" lint
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    cp -a changelogs CHANGELOG.md "$tmp/"
    "$CHANGELOG" generate
    status=0
    if ! diff -u "$tmp/CHANGELOG.md" CHANGELOG.md; then
      echo "CHANGELOG.md is not what changelogs/changelog.yaml renders to: run tools/changelog.sh generate" >&2
      status=1
    fi
    # leave the tree as it was
    cp "$tmp/CHANGELOG.md" CHANGELOG.md
    rm -rf changelogs && cp -a "$tmp/changelogs" changelogs
    exit $status
    ;;
  release)
    "$CHANGELOG" release "${@:2}"
    ;;
  generate)
    "$CHANGELOG" generate
    ;;
  *)
    echo "usage: $0 lint|release [--date YYYY-MM-DD]|generate" >&2
    exit 2
    ;;
esac
