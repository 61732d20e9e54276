"""version_added: every module and option this collection adds after 0.1.0 says the version in
galaxy.yml (the release being prepared), and no version_added is ahead of it."""
import json
import os
import subprocess

import pytest
import yaml
from ansible.module_utils.compat.version import LooseVersion

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTION = "cloudefigo.core"
with open(os.path.join(ROOT, "galaxy.yml")) as handle:
    VERSION = yaml.safe_load(handle)["version"]
with open(os.path.join(ROOT, "tests", "unit", "data", "interface-0.1.0.json")) as handle:
    RELEASED = json.load(handle)["modules"]
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules")) if name.endswith(".py"))


@pytest.fixture(scope="module")
def docs():
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"))
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-doc"), "-t", "module", "--json"]
                          + ["%s.%s" % (COLLECTION, name) for name in MODULES],
                          env=env, capture_output=True, text=True, check=True, timeout=300)
    return {name.rsplit(".", 1)[-1]: entry["doc"] for name, entry in json.loads(proc.stdout).items()}


def ours(spec):
    return spec.get("version_added_collection", COLLECTION) == COLLECTION


@pytest.mark.parametrize("module", MODULES)
def test_new_things_carry_the_collection_version(docs, module):
    doc = docs[module]
    if module not in RELEASED:
        assert str(doc.get("version_added")) == VERSION, "new module %s: version_added must be %s" % (module, VERSION)
        return
    released = set(RELEASED[module]["options"])
    for name, spec in doc.get("options", {}).items():
        if name in released or not ours(spec):
            continue
        # an option renamed from a released name (kept as an alias) is not new
        if released & set(spec.get("aliases", [])):
            continue
        assert str(spec.get("version_added")) == VERSION, (
            "%s: option %s is new since 0.1.0: add `version_added: %s`" % (module, name, VERSION))


@pytest.mark.parametrize("module", MODULES)
def test_no_version_added_is_ahead_of_galaxy_yml(docs, module):
    doc = docs[module]
    found = [("module", doc.get("version_added"))] + [
        (name, spec["version_added"]) for name, spec in doc.get("options", {}).items()
        if ours(spec) and "version_added" in spec]
    for name, version in found:
        assert version is not None, "%s has no version_added" % module
        assert LooseVersion(str(version)) <= LooseVersion(VERSION), "%s %s: version_added %s > %s" % (
            module, name, version, VERSION)
