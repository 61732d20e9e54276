"""The EDA decision environment (awx/decision-environment.yml): pinned as the repository pins,
rendered offline by ansible-builder from the collection tarball, which carries the event source and
the rulebooks.  No lab."""
import glob
import os
import re
import shutil
import subprocess
import tarfile

import yaml

from _lab import ROOT

BIN = os.path.join(ROOT, ".venv", "bin")
DEFINITION = os.path.join(ROOT, "awx", "decision-environment.yml")


def pins(path):
    out = {}
    with open(os.path.join(ROOT, path)) as handle:
        for line in handle:
            match = re.match(r"^([A-Za-z0-9_.\-\[\]]+)==(\S+)", line.strip())
            if match:
                out[match.group(1).split("[")[0].lower()] = match.group(2)
    return out


def run(cmd, cwd=None):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, "%s\n%s%s" % (" ".join(cmd), proc.stdout, proc.stderr)
    return proc.stdout


def test_decision_environment_pins_follow_the_repository():
    with open(DEFINITION) as handle:
        definition = yaml.safe_load(handle)
    repo = dict(pins("requirements.txt"), **pins("requirements-dev.txt"))
    deps = definition["dependencies"]
    wanted = [deps["ansible_core"]["package_pip"], deps["ansible_runner"]["package_pip"]] + deps["python"]
    for requirement in wanted:
        name, version = requirement.split("==")
        assert repo.get(name.lower()) == version, "%s: the repository pins %s" % (requirement, repo.get(name.lower()))
    assert "ansible-rulebook==%s" % repo["ansible-rulebook"] in deps["python"]
    assert any(s.startswith("java-17-openjdk-headless") for s in deps["system"])


def test_decision_environment_renders_from_the_tarball_with_the_event_source(tmp_path):
    out = tmp_path / "dist"
    out.mkdir()
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), "--force", ROOT],
        cwd=str(out))
    (path,) = glob.glob(str(out / "*.tar.gz"))
    with tarfile.open(path) as tar:
        names = set(tar.getnames())
    assert {"extensions/eda/plugins/event_source/asg_lifecycle.py", "extensions/eda/rulebooks/asg_gate.yml",
            "extensions/eda/rulebooks/asg_gate_controller.yml"} <= names
    dist = os.path.join(ROOT, ".cache", "dist")
    os.makedirs(dist, exist_ok=True)
    shutil.copy(path, dist)
    context = tmp_path / "context"
    run([os.path.join(BIN, "ansible-builder"), "create", "-f", DEFINITION, "-c", str(context),
         "--output-filename", "Containerfile"])
    build = context / "_build"
    assert os.path.basename(path) in os.listdir(build / "collections")
    assert "ansible-rulebook==" in (build / "requirements.txt").read_text()
    assert "java-17-openjdk-headless" in (build / "bindep.txt").read_text()
    assert "JAVA_HOME" in (context / "Containerfile").read_text()
