"""Role argument_specs: a required option has no default, so core's validation (the role's first
step) stops a run that does not set it, before any task of the role runs."""
import glob
import json
import os
import subprocess
import sys

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = sorted(os.path.basename(os.path.dirname(os.path.dirname(path)))
               for path in glob.glob(os.path.join(ROOT, "roles", "*", "meta", "argument_specs.yml")))


def load(role, *parts):
    path = os.path.join(ROOT, "roles", role, *parts)
    if not os.path.exists(path):
        return {}
    with open(path) as handle:
        return yaml.safe_load(handle) or {}


def required(role):
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    return sorted(name for name, spec in options.items() if spec.get("required"))


@pytest.mark.parametrize("role", ROLES)
def test_required_options_have_no_default(role):
    specs = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    defaults = load(role, "defaults", "main.yml")
    for name in required(role):
        assert "default" not in specs[name], "%s: %s is required and has a default in argument_specs" % (role, name)
        assert name not in defaults, ("%s: %s is required, but defaults/main.yml sets it (%r), so validation "
                                      "passes when the user forgets it" % (role, name, defaults[name]))


def run_role(tmp_path, role, role_vars):
    """Include the role on localhost with these vars; returns the json callback's task results."""
    play = [{"name": "Run the role", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": [{"name": "Include the role", "ansible.builtin.include_role": {"name": "cloudefigo.core." + role},
                        "vars": role_vars}]}]
    path = tmp_path / "play.yml"
    path.write_text(yaml.safe_dump(play))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, ".cache", "collections"),
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_PYTHON_INTERPRETER=sys.executable,
               ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", str(path)],
                          cwd=str(tmp_path), env=env, capture_output=True, text=True, check=False, timeout=300)
    data = json.loads(proc.stdout)
    return [(task["task"]["name"].split(" : ")[-1], task["hosts"]["localhost"]) for task in data["plays"][0]["tasks"]]


# per role: values for its required options, and one harmless bad setting that the role's own
# first task rejects (so a run that passes validation stops there, touching nothing)
VALID = {
    "luks_volume": ({"luks_volume_device": "/dev/nonexistent-test", "luks_volume_key_bucket": "b",
                     "luks_volume_key_object": "k"}, {"luks_volume_name": "not a valid name!"}, "Check the mapper name"),
    "chef_client": ({"chef_client_package_url": "https://example.invalid/chef.deb",
                     "chef_client_package_sha256": "not-hex", "chef_client_server_url": "https://chef.invalid"},
                    {}, "Check the settings"),
}


@pytest.mark.parametrize("role", sorted(VALID))
def test_validation_rejects_each_missing_required_option(role, tmp_path):
    values, bad, first_task = VALID[role]
    assert sorted(values) == required(role)
    # all required given: validation passes, the role's own check stops it
    tasks = run_role(tmp_path, role, dict(values, **bad))
    last_name, last = tasks[-1]
    assert last_name == first_task and last.get("failed"), tasks
    for name in required(role):
        tasks = run_role(tmp_path, role, {key: value for key, value in values.items() if key != name})
        last_name, last = tasks[-1]
        assert last.get("failed"), tasks
        assert "missing required arguments: %s" % name in last["msg"], last["msg"]
        # nothing of the role ran: the failing task is core's validation
        assert not any(task[0] == first_task for task in tasks)
