"""The collection as users get it: the tarball `ansible-galaxy collection build` makes, installed
with `ansible-galaxy collection install` into a fresh path, runs; and the execution environment
built from that tarball gets what the collection needs.  Offline, no lab."""
import glob
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest
import yaml

from _lab import ROOT

BIN = os.path.join(ROOT, ".venv", "bin")
DEPS = os.path.join(ROOT, ".cache", "collections", "ansible_collections")
GALAXY = yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))
# a finding of severity 3 (high) on one host: blocks at fail_on high
REPORT = """<?xml version="1.0" ?>
<NessusClientData_v2><Report name="t">
<ReportHost name="10.0.0.5"><HostProperties><tag name="host-ip">10.0.0.5</tag></HostProperties>
<ReportItem port="443" svc_name="www" protocol="tcp" severity="3" pluginID="12345" pluginName="Test finding"
 pluginFamily="General"><risk_factor>High</risk_factor><cvss_base_score>7.5</cvss_base_score></ReportItem>
<ReportItem port="0" svc_name="general" protocol="tcp" severity="0" pluginID="19506" pluginName="Scan info"
 pluginFamily="Settings"><risk_factor>None</risk_factor></ReportItem>
</ReportHost></Report></NessusClientData_v2>
"""


def clean_env(collections_path, **extra):
    """No repository ansible.cfg, no .cache/collections (where this repo is linked as cloudefigo.core)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    config = os.path.join(tempfile.gettempdir(), "cloudefigo-empty-ansible.cfg")
    with open(config, "w") as handle:
        handle.write("[defaults]\n")
    env.update(ANSIBLE_CONFIG=config, ANSIBLE_COLLECTIONS_PATH=str(collections_path), **extra)
    return env


def run(cmd, env=None, cwd=None):
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, "%s\n%s%s" % (" ".join(cmd), proc.stdout, proc.stderr)
    return proc.stdout


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(out), "--force", ROOT],
        env=clean_env(out), cwd=str(out))
    (path,) = glob.glob(str(out / "*.tar.gz"))
    assert os.path.basename(path) == "cloudefigo-core-%s.tar.gz" % GALAXY["version"]
    return path


@pytest.fixture(scope="module")
def dependencies(tmp_path_factory):
    """A collections path with the dependency collections only (no link back to this repo)."""
    root = tmp_path_factory.mktemp("deps")
    for name in GALAXY["dependencies"]:
        namespace, collection = name.split(".")
        os.makedirs(root / "ansible_collections" / namespace, exist_ok=True)
        os.symlink(os.path.join(DEPS, namespace, collection), root / "ansible_collections" / namespace / collection)
    return root


@pytest.fixture(scope="module")
def installed(tarball, tmp_path_factory):
    path = tmp_path_factory.mktemp("installed")
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", tarball, "-p", str(path), "--no-deps"],
        env=clean_env(path), cwd=str(path))
    assert (path / "ansible_collections" / "cloudefigo" / "core" / "MANIFEST.json").exists()
    return path


def test_tarball_holds_the_collection_and_not_the_tooling(tarball):
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    top = {name.split("/", 1)[0] for name in names}
    assert {"plugins", "roles", "playbooks", "meta", "docs", "changelogs", "MANIFEST.json", "FILES.json",
            "bindep.txt", "requirements.txt", "CHANGELOG.md", "README.md"} <= top
    assert "meta/execution-environment.yml" in names and "meta/runtime.yml" in names
    for left_out in ("lab", "bench", "tools", ".cache", ".venv", ".git", ".ci", "Makefile", "ansible.cfg"):
        assert left_out not in top, "%s is in the tarball" % left_out
    assert not [name for name in names if "node_modules" in name or name.startswith("awx/context")
                or "__pycache__" in name or name.startswith(("tests/output", "tests/data/"))]


def test_installed_tarball_runs_a_module(installed, dependencies, tmp_path):
    env = clean_env("%s:%s" % (installed, dependencies), ANSIBLE_PYTHON_INTERPRETER=sys.executable,
                    ANSIBLE_NOCOLOR="1", ANSIBLE_LOAD_CALLBACK_PLUGINS="1", ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json")
    listing = run([os.path.join(BIN, "ansible-galaxy"), "collection", "list", "cloudefigo.core"], env=env,
                  cwd=str(tmp_path))
    assert str(installed) in listing and GALAXY["version"] in listing
    report = tmp_path / "scan.nessus"
    report.write_text(REPORT)
    proc = subprocess.run([os.path.join(BIN, "ansible"), "localhost", "-vvv", "-m", "cloudefigo.core.nessus_report",
                           "-a", "path=%s fail_on=high" % report], env=env, cwd=str(tmp_path), capture_output=True,
                          text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    module_file = os.path.join(str(installed), "ansible_collections", "cloudefigo", "core", "plugins", "modules",
                               "nessus_report.py")
    assert module_file in proc.stdout + proc.stderr, "the module did not come from the installed tarball"
    assert '"passed": false' in proc.stdout and '"blocking_count": 1' in proc.stdout


def test_every_dependency_is_used_and_every_used_collection_is_a_dependency():
    used = set()
    for folder in ("plugins", "roles", "playbooks"):
        for path in glob.glob(os.path.join(ROOT, folder, "**", "*"), recursive=True):
            if os.path.isfile(path) and path.endswith((".py", ".yml", ".yaml", ".j2")):
                text = open(path, errors="replace").read()
                used |= set(re.findall(r"\b([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+:", text))
                used |= {match.replace("/", ".") for match in
                         re.findall(r"ansible_collections\.([a-z0-9_]+\.[a-z0-9_]+)\.plugins", text)}
                used |= set(re.findall(r"'([a-z0-9_]+\.[a-z0-9_]+)\.[a-z0-9_]+'", text))
    installed = {"%s.%s" % tuple(path.split(os.sep)[-2:]) for path in glob.glob(os.path.join(DEPS, "*", "*"))}
    used = (used & installed) - {"cloudefigo.core"}
    declared = set(GALAXY["dependencies"])
    assert used <= declared, "used but not in galaxy.yml dependencies: %s" % sorted(used - declared)
    assert declared <= used, "in galaxy.yml dependencies but never used: %s" % sorted(declared - used)


def test_execution_environment_is_built_from_the_tarball(tarball, tmp_path):
    """ansible-builder create renders the context; its galaxy stage installs the tarball (no git),
    and its introspection step finds the collection's Python and system requirements."""
    dist = os.path.join(ROOT, ".cache", "dist")
    os.makedirs(dist, exist_ok=True)
    shutil.copy(tarball, dist)
    context = tmp_path / "context"
    run([os.path.join(BIN, "ansible-builder"), "create", "-f", os.path.join(ROOT, "awx", "execution-environment.yml"),
         "-c", str(context), "--output-filename", "Containerfile"])
    containerfile = (context / "Containerfile").read_text()
    assert "ansible-core==2.19.14" in containerfile and "ansible-runner==" in containerfile
    galaxy_stage = containerfile.split("AS galaxy", 1)[1].split("FROM ", 1)[0]
    assert "COPY _build /build" in galaxy_stage and "WORKDIR /build" in galaxy_stage
    assert "ansible-galaxy collection install" in galaxy_stage and "-r requirements.yml" in galaxy_stage
    assert "introspect" in containerfile and "install-from-bindep" in containerfile
    build = context / "_build"
    requirements = yaml.safe_load((build / "requirements.yml").read_text())["collections"]
    assert not [entry for entry in requirements if entry.get("type") in ("git", "url") or "git" in entry["name"]]
    # the galaxy stage, file entries: the same command in /build installs the tarball
    collections = tmp_path / "usr_share_ansible_collections"
    files = [entry for entry in requirements if entry.get("type") == "file"]
    (build / "files-only.yml").write_text(yaml.safe_dump({"collections": files}))
    run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", "-r", "files-only.yml",
         "--collections-path", str(collections), "--no-deps"], env=clean_env(collections), cwd=str(build))
    manifest = collections / "ansible_collections" / "cloudefigo" / "core" / "MANIFEST.json"
    assert manifest.exists()
    # the Galaxy entries: every dependency, pinned to one version inside galaxy.yml's range
    pinned = {entry["name"]: entry["version"] for entry in requirements if entry.get("type") != "file"}
    assert set(pinned) == set(GALAXY["dependencies"])
    from ansible.galaxy.dependency_resolution.versioning import meets_requirements
    for name, version in pinned.items():
        assert version.startswith("=="), "%s is not pinned: %s" % (name, version)
        assert meets_requirements(version[2:], GALAXY["dependencies"][name]), name
    # the builder stage's introspection, run on what the galaxy stage installed
    out = run([sys.executable, str(build / "scripts" / "introspect.py"), "introspect", str(collections)])
    found = yaml.safe_load(out)
    ours = " # from collection cloudefigo.core"
    python = [line.replace("  #", " #") for line in found["python"]]
    for line in open(os.path.join(ROOT, "requirements.txt")):
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("ansible-core"):
            assert line + ours in python, "%s is not installed into the EE" % line
    # ansible-core comes from the EE definition's pin, not from the collection's requirements
    assert not [line for line in python if line.startswith("ansible-core")]
    system = [line.replace("  #", " #") for line in found["system"]]
    for package in ("openssh-clients [platform:rpm]", "libpq [platform:rpm]", "libpq-devel [compile platform:rpm]",
                    "gcc [compile]", "python3.11-devel [compile platform:rpm]"):
        assert package + ours in system, "%s is not installed into the EE" % package
    assert not [line for line in system if line.startswith("git")]
