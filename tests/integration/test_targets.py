"""Run every tests/integration/targets/<name> the way ansible-test does: as a role on localhost.

Each target gets an empty moto first.  A target that needs the VM lists `needs/vm` in its
`aliases` file and is skipped unless the lab runs one; `disabled` skips it.
"""
import os

import pytest

from _lab import ROOT, moto_reset, run_playbook

TARGETS = os.path.join(ROOT, "tests", "integration", "targets")


def _targets():
    if not os.path.isdir(TARGETS):
        return []
    names = []
    for name in sorted(os.listdir(TARGETS)):
        if not os.path.exists(os.path.join(TARGETS, name, "tasks", "main.yml")):
            continue
        aliases = os.path.join(TARGETS, name, "aliases")
        tags = open(aliases).read().split() if os.path.exists(aliases) else []
        if "disabled" in tags:
            continue
        marks = [pytest.mark.vm] if "needs/vm" in tags else []
        names.append(pytest.param(name, marks=marks, id=name))
    return names


@pytest.mark.parametrize("target", _targets())
def test_target(lab, target, tmp_path):
    aliases = os.path.join(TARGETS, target, "aliases")
    if os.path.exists(aliases) and "needs/vm" in open(aliases).read().split() and "LAB_VM_SSH_PORT" not in lab:
        pytest.skip("needs the VM: lab/lab up --vm")
    moto_reset(lab)
    play = tmp_path / "play.yml"
    play.write_text(
        "- name: Integration target %s\n"
        "  hosts: localhost\n"
        "  connection: local\n"
        "  gather_facts: false\n"
        "  roles:\n"
        "    - role: %s\n" % (target, os.path.join(TARGETS, target))
    )
    result = run_playbook(lab, str(play), json_output=False, args=["-v"])
    assert result.rc == 0, "target %s failed:\n%s\n%s" % (target, result.stdout[-20000:], result.stderr[-5000:])
