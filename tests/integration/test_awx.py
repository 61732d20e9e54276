"""AWX / Automation Controller material: the execution environment renders, configure.yml parses,
the credential types inject what the modules read.  Offline: no controller, no container runtime."""
import glob
import os
import re
import subprocess

import pytest
import yaml

from _lab import ROOT, ansible_env

AWX = os.path.join(ROOT, "awx")
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def _pins(path):
    pins = {}
    with open(path) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[name.strip().lower()] = version.strip()
    return pins


def test_builder_renders_the_context(tmp_path):
    context = tmp_path / "context"
    proc = subprocess.run(
        [os.path.join(VENV_BIN, "ansible-builder"), "create", "-f", os.path.join(AWX, "execution-environment.yml"),
         "-c", str(context), "--output-filename", "Containerfile"],
        capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core==2.19.14" in containerfile
    build = context / "_build"
    galaxy = yaml.safe_load((build / "requirements.yml").read_text())
    names = [c["name"] for c in galaxy["collections"]]
    assert any("cloudefigo.core" in name or "cloudefigo-core" in name for name in names)
    for dependency in yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))["dependencies"]:
        assert dependency in names, "%s is a galaxy.yml dependency but not in the EE" % dependency
    bindep = (build / "bindep.txt").read_text()
    for package in ("git", "openssh-client", "libpq"):
        assert package in bindep


def test_ee_python_pins_follow_requirements_txt():
    root = _pins(os.path.join(ROOT, "requirements.txt"))
    ee = _pins(os.path.join(AWX, "requirements.txt"))
    core = root.pop("ansible-core")
    assert root == ee
    definition = yaml.safe_load(open(os.path.join(AWX, "execution-environment.yml")))
    assert definition["version"] == 3
    assert definition["dependencies"]["ansible_core"]["package_pip"] == "ansible-core==" + core


def test_configure_playbook_syntax(lab_free_env):
    proc = subprocess.run(
        [os.path.join(VENV_BIN, "ansible-playbook"), "--syntax-check", "-i", "localhost,",
         os.path.join(AWX, "configure.yml")],
        cwd=ROOT, env=lab_free_env, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _credential_types():
    return {os.path.basename(path): yaml.safe_load(open(path))
            for path in sorted(glob.glob(os.path.join(AWX, "credential_types", "*.yml")))}


def test_credential_types_are_well_formed():
    types = _credential_types()
    assert {"nessus.yml", "chef.yml"} <= set(types)
    for name, spec in types.items():
        ids = {field["id"] for field in spec["inputs"]["fields"]}
        assert set(spec["inputs"].get("required", [])) <= ids, name
        secrets = {field["id"] for field in spec["inputs"]["fields"] if field.get("secret")}
        assert secrets, "%s has no secret field" % name
        used = set()
        for section in spec["injectors"].values():
            for value in section.values():
                used.update(re.findall(r"\b([a-z_]+)\b", value))
        for field in ids:
            assert field in used, "%s: input %s is never injected" % (name, field)


@pytest.mark.parametrize("fragment,type_file", [("nessus", "nessus.yml"), ("chef", "chef.yml")])
def test_injected_env_vars_are_the_modules_fallbacks(fragment, type_file):
    """Every env var a credential type injects must be one the modules' connection options read."""
    sources = glob.glob(os.path.join(ROOT, "plugins", "doc_fragments", fragment + ".py")) + \
        glob.glob(os.path.join(ROOT, "plugins", "module_utils", "_%s*.py" % fragment)) + \
        glob.glob(os.path.join(ROOT, "plugins", "module_utils", "_%s*" % fragment, "*.py"))
    if not sources:
        pytest.skip("plugins/doc_fragments/%s.py has not landed yet" % fragment)
    text = "".join(open(path).read() for path in sources)
    env = _credential_types()[type_file]["injectors"]["env"]
    missing = [name for name in env if name not in text]
    assert not missing, "injected but not read by the %s modules: %s" % (fragment, missing)


@pytest.fixture
def lab_free_env():
    return ansible_env({})
