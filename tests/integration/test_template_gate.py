# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""playbooks/template_gate.yml as a CI job runs it: ansible-playbook's exit status and what it prints.

No lab service is needed (templates are read locally); the test runs the real ansible-playbook the
way a pipeline does, from the checkout, with relative paths.
"""

import os
import shutil
import subprocess

from _lab import ROOT, ansible_env

PLAYBOOK = os.path.join(ROOT, "playbooks", "template_gate.yml")
DATA = os.path.join("tests", "data", "cloudformation")


def gate(*extra, cwd=ROOT):
    env = ansible_env({}, {"PWD": cwd})     # a CI shell sets PWD to where it runs the job
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), PLAYBOOK, "-i", "localhost,"] + list(extra)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=300)


def test_clean_directory_passes():
    proc = gate("-e", "template_gate_paths=%s/clean" % DATA)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed: 2 template(s), 0 finding(s) below the gate" in proc.stdout
    assert "no findings" in proc.stdout


def test_blocked_directory_fails_and_prints_the_findings():
    proc = gate("-e", "template_gate_paths=%s/blocked" % DATA)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    bastion = os.path.join(DATA, "blocked", "bastion.template")    # as the pipeline named it
    for line in (
        "BLOCK %s:16 high open_admin_port BastionSecurityGroup: ingress rule: tcp/22 (port 22) open to the internet "
        "(from 0.0.0.0/0)" % bastion,
        "BLOCK %s:20 high cannot_evaluate BastionFromPartner: cannot evaluate ingress rule of BastionSecurityGroup "
        "CidrIp: Fn::ImportValue partner-network-cidr is another stack's output" % bastion,
        "BLOCK %s:28 medium imdsv2_not_required Bastion:" % bastion,
        "note  %s:11 low open_egress BastionSecurityGroup:" % bastion,
    ):
        assert line in proc.stdout, proc.stdout
    assert "blocked: 3 blocking finding(s) in 1 of 2 template(s)" in proc.stdout
    # the clean template beside it is read and has nothing to say
    assert "blocked/web.template:" not in proc.stdout


def test_gate_settings_from_the_pipeline(tmp_path):
    # the bastion passes once the pipeline gives the real SSH source and accepts what is not known yet
    proc = gate("-e", "template_gate_paths=%s/blocked/bastion.template" % DATA,
                "-e", '{"template_gate_parameters": {"SshCidr": "10.0.0.0/8"}, "template_gate_unresolved": "report", '
                      '"template_gate_fail_on": "high"}')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note  " in proc.stdout and "cannot_evaluate" in proc.stdout and "BLOCK" not in proc.stdout
    # several paths, from another working directory, in check mode (read-only module: same verdict)
    shutil.copy(os.path.join(ROOT, DATA, "clean", "web.template"), str(tmp_path / "web.template"))
    proc = gate("--check", "-e", '{"template_gate_paths": ["web.template", "%s"]}' % os.path.join(ROOT, DATA, "blocked"),
                cwd=str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "blocked: 3 blocking finding(s) in 1 of 3 template(s)" in proc.stdout


def test_unreadable_template_and_missing_paths_fail(tmp_path):
    (tmp_path / "broken.yaml").write_text("Resources:\n  Sg: [unclosed\n")
    proc = gate("-e", "template_gate_paths=%s" % tmp_path)
    assert proc.returncode == 2 and "cannot read 1 file(s)" in proc.stdout, proc.stdout
    proc = gate()
    assert proc.returncode == 2 and "set template_gate_paths" in proc.stdout, proc.stdout
