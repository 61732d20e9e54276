"""roles/chef_client/templates/client.rb.j2 rendered by Ansible, then loaded by Debian's ruby.

Hostile values (Ruby interpolation, quotes, backslashes) must come back as the very same strings
and run nothing: chef-client evaluates client.rb as Ruby, as root.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLE = os.path.join(ROOT, "roles", "chef_client")

# Loads client.rb the way chef-client's config does (method calls on a config object) and prints
# every setting as JSON; symbols as ":name".
LOADER = r"""
require 'json'
# an ordinary object, as Chef's config context: File, STDOUT, Kernel#` ... are all reachable
class Settings
  def initialize; @v = {}; end
  def __values; @v; end
  def respond_to_missing?(*) = true
  def method_missing(name, *args)
    value = args.length == 1 ? args[0] : args
    @v[name.to_s] = value.is_a?(Symbol) ? ":#{value}" : (value.is_a?(String) ? value : value.inspect)
  end
end
settings = Settings.new
settings.instance_eval(File.read(ARGV[0]), ARGV[0], 1)
puts JSON.generate(settings.__values)
"""


def render(tmp_path, variables):
    """client.rb as the role writes it, with the role's defaults and vars under ``variables``."""
    play = tmp_path / "render.yml"
    dest = tmp_path / "client.rb"
    play.write_text(json.dumps([{
        "name": "Render client.rb", "hosts": "localhost", "gather_facts": False,
        "vars_files": [os.path.join(ROLE, "defaults", "main.yml"), os.path.join(ROLE, "vars", "main.yml")],
        "tasks": [{"name": "Render", "ansible.builtin.template": {
            "src": os.path.join(ROLE, "templates", "client.rb.j2"), "dest": str(dest), "mode": "0600"}}],
    }]))
    extra = tmp_path / "vars.json"
    extra.write_text(json.dumps(dict(variables, ansible_python_interpreter=sys.executable)))
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play), "-e", "@%s" % extra], cwd=ROOT, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dest


def load_with_ruby(path):
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.fail("Debian's ruby is needed (tools/bootstrap.sh installs it)")
    proc = subprocess.run([ruby, "-e", LOADER, str(path)], capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_hostile_values_stay_strings(tmp_path):
    witness = tmp_path / "pwned"
    hostile = {
        "chef_client_server_url": "https://chef.example/organizations/o#{File.write(%%q{%s}, 'url')}" % witness,
        "chef_client_node_name": "web'; File.write('%s', 'quote'); x = '\\" % witness,
        "chef_client_environment": 'prod"#{File.write("%s", "env")}\\#{1}`touch %s`' % (witness, witness),
        "chef_client_validator_name": "v\\'#{File.write('%s','validator')}\n#{2}" % witness,
        "chef_client_validator_key_object": "validator.pem",
        "chef_client_validator_key_bucket": "b",
        "chef_client_config_dir": "/etc/chef'#{File.write('%s','dir')}" % witness,
    }
    values = load_with_ruby(render(tmp_path, hostile))
    assert not witness.exists(), "client.rb ran code: %s" % witness.read_text()
    assert values["chef_server_url"] == hostile["chef_client_server_url"]
    assert values["node_name"] == hostile["chef_client_node_name"]
    assert values["environment"] == hostile["chef_client_environment"]
    assert values["validation_client_name"] == hostile["chef_client_validator_name"]
    assert values["client_key"] == hostile["chef_client_config_dir"] + "/client.pem"
    assert values["validation_key"] == "/run/chef_client/validation.pem"
    assert values["ssl_verify_mode"] == ":verify_peer" and values["log_level"] == ":info"


def test_plain_values(tmp_path):
    values = load_with_ruby(render(tmp_path, {"chef_client_server_url": "https://chef.example/organizations/acme",
                                              "chef_client_node_name": "i-0abc", "chef_client_ssl_verify_mode": "verify_none"}))
    assert values["chef_server_url"] == "https://chef.example/organizations/acme"
    assert values["node_name"] == "i-0abc" and values["ssl_verify_mode"] == ":verify_none"
    assert "validation_key" not in values and "environment" not in values


@pytest.mark.parametrize("option, key", [
    ("chef_client_node_name", "node_name"),
    ("chef_client_server_url", "chef_server_url"),
    ("chef_client_environment", "environment"),
    ("chef_client_validator_name", "validation_client_name"),
])
def test_interpolation_does_not_run(tmp_path, option, key):
    """One value at a time, written so that it would be valid Ruby either way: only escaping stops it."""
    witness = tmp_path / "pwned"
    value = "x#{File.write(%%q{%s}, %%q{%s})}" % (witness, option)
    # chef_client_server_url is required (no default): a plain one unless it is the value under test
    variables = {"chef_client_server_url": "https://chef.example/organizations/acme",
                 option: value, "chef_client_validator_key_object": "v.pem", "chef_client_validator_key_bucket": "b"}
    values = load_with_ruby(render(tmp_path, variables))
    assert not witness.exists(), "client.rb ran code from %s as root" % option
    assert values[key] == value
