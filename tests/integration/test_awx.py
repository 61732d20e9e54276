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


def test_ee_pins_follow_the_repository():
    """ansible-core / ansible-runner in the EE are the ones the tests run with; the EE takes the
    tarball of galaxy.yml's version and the collection's own Python/system requirements."""
    root = _pins(os.path.join(ROOT, "requirements.txt"))
    dev = _pins(os.path.join(ROOT, "requirements-dev.txt"))
    definition = yaml.safe_load(open(os.path.join(AWX, "execution-environment.yml")))
    assert definition["version"] == 3
    assert definition["dependencies"]["ansible_core"]["package_pip"] == "ansible-core==" + root["ansible-core"]
    assert definition["dependencies"]["ansible_runner"]["package_pip"] == "ansible-runner==" + dev["ansible-runner"]
    version = yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))["version"]
    tarball = "cloudefigo-core-%s.tar.gz" % version
    assert [entry["src"] for entry in definition["additional_build_files"]] == ["../.cache/dist/" + tarball]
    galaxy = yaml.safe_load(open(os.path.join(AWX, "requirements.yml")))["collections"]
    assert {"name": "collections/" + tarball, "type": "file"} in galaxy
    # the collection's requirements reach the image through its meta/execution-environment.yml only
    assert "python" not in definition["dependencies"] and "system" not in definition["dependencies"]
    meta = yaml.safe_load(open(os.path.join(ROOT, "meta", "execution-environment.yml")))
    assert meta["dependencies"] == {"python": "requirements.txt", "system": "bindep.txt"}


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


def test_siem_credential_reaches_cloudtrail_ingest():
    """The SIEM type's extra vars are the ones audit.yml passes to cloudtrail_ingest, CA included."""
    spec = _credential_types()["siem_postgresql.yml"]
    assert "ca_cert" in {field["id"] for field in spec["inputs"]["fields"]}
    assert "ca_cert" in spec["injectors"]["file"]["template.ca_cert"]
    audit = open(os.path.join(ROOT, "playbooks", "audit.yml")).read()
    for name in spec["injectors"]["extra_vars"]:
        assert name in audit, "%s is injected but playbooks/audit.yml never reads it" % name
