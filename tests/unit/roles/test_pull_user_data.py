"""Pull mode's user data (role pull_user_data_document): the roles and the user data install the same bytes,
it fits EC2's 16 KB, Debian's `cloud-init schema` accepts it, and it carries no secret.

One ansible-playbook run (module scope, ~6 s): play 1 renders the user data with the role, play 2
installs the same files with the roles themselves (s3_get, luks_volume's boot unlock, chef_client's
client.rb template) into a temporary root; the tests compare.
"""
import base64
import gzip
import json
import os
import pathlib
import stat
import subprocess
import sys
import tempfile

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
CLOUD_INIT = os.path.join(ROOT, ".cache", "cloud-init", "usr", "lib", "python3", "dist-packages")
CHEF = os.path.join(ROOT, "roles", "chef_client")
SETTINGS = {
    "luks_volume_key_bucket": "keys-bucket",
    "luks_volume_key_object": "volumes/web-1.key",
    "luks_volume_imds_url": "http://10.0.2.2:45678",
    "luks_volume_s3_endpoint": "http://10.0.2.2:45677",
    "luks_volume_region": "us-east-1",
    "luks_volume_pbkdf": "pbkdf2",
    "luks_volume_pbkdf_iterations": 1000,
    "chef_client_server_url": "http://10.0.2.2:4545",
    "chef_client_node_name": "web-1",
    "chef_client_run_list": ["recipe[base]", "role[web]"],
    "chef_client_package_url": "s3://pkgs-bucket/chef_18.0.0-1_all.deb",
    "chef_client_package_sha256": "ab" * 32,
    "chef_client_validator_name": "chef-validator",
    "chef_client_validator_key_bucket": "pkgs-bucket",
    "chef_client_validator_key_object": "chef/validator.pem",
    "chef_client_ssl_verify_mode": "verify_none",
    "pull_user_data_ec2_endpoint": "http://10.0.2.2:45678",
}


def run_playbook(tmp, plays, extra):
    play = tmp / "play.json"
    play.write_text(json.dumps(plays))
    variables = tmp / "vars.json"
    variables.write_text(json.dumps(dict(extra, ansible_python_interpreter=sys.executable)))
    proc = subprocess.run([os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-c", "local",
                           str(play), "-e", "@%s" % variables], cwd=ROOT, capture_output=True, text=True, check=False,
                          env=dict(os.environ, ANSIBLE_CONFIG=os.path.join(ROOT, "ansible.cfg")))
    return proc


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pull")
    # a short root: the paths appear in the files and the settings, and 16 KB is tight
    root = pathlib.Path(tempfile.mkdtemp(prefix="p", dir="/tmp"))
    # both plays install under the same temporary root (same settings, same paths)
    extra = dict(SETTINGS, test_user_data=str(tmp / "user-data"), test_root=str(root),
                 s3_get_path=str(root / "usr/local/lib/cloudefigo-s3-get"),
                 luks_volume_bin_dir=str(root / "usr/local/sbin"), luks_volume_systemd_dir=str(root / "etc/systemd/system"),
                 luks_volume__uuid_file=str(root / "etc/cloudefigo/luks-volume-data.uuid"),
                 chef_client_config_dir=str(root / "etc/chef"))
    plays = [
        {"name": "Render the user data", "hosts": "localhost", "gather_facts": False, "tasks": [
            {"name": "Render", "ansible.builtin.include_role": {"name": "cloudefigo.core.pull_user_data"}},
            {"name": "Write", "ansible.builtin.copy": {"content": "{{ pull_user_data_document }}", "dest": "{{ test_user_data }}",
                                                       "mode": "0600"}},
        ]},
        {"name": "Install the same files with the roles", "hosts": "localhost", "gather_facts": False,
         "vars_files": [os.path.join(CHEF, "defaults", "main.yml"), os.path.join(CHEF, "vars", "main.yml")],
         "tasks": [
             {"name": "Directories", "ansible.builtin.file": {"path": "{{ test_root }}/{{ item }}", "state": "directory",
                                                              "mode": "0755"},
              "loop": ["usr/local/lib", "usr/local/sbin", "etc/systemd/system", "etc/chef"]},
             {"name": "s3_get", "ansible.builtin.include_role": {"name": "cloudefigo.core.s3_get"}},
             {"name": "luks_volume boot unlock", "ansible.builtin.include_role": {
                 "name": "cloudefigo.core.luks_volume", "tasks_from": "boot_unlock"},
              "vars": {"luks_volume_device": "/dev/vdb", "luks_volume__probe": {"luks": True, "uuid": "0-1-2"}}},
             # the role's own task (tasks/main.yml "Write client.rb", pinned below): same src, dest, mode
             {"name": "client.rb", "ansible.builtin.template": {"src": os.path.join(CHEF, "templates", "client.rb.j2"),
                                                                "dest": "{{ chef_client_config_dir }}/client.rb", "mode": "0644"}},
             # the role's "Install the chef-client service and timer" (pinned below), under the root
             {"name": "units", "ansible.builtin.template": {"src": os.path.join(CHEF, "templates", "{{ item }}.j2"),
                                                           "dest": "{{ test_root }}/etc/systemd/system/{{ item }}", "mode": "0644"},
              "loop": "{{ chef_client__units }}"},
         ]},
    ]
    proc = run_playbook(tmp, plays, extra)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    text = (tmp / "user-data").read_text()
    return {"text": text, "doc": yaml.safe_load(text), "root": root, "tmp": tmp}


def _content(entry):
    if entry.get("encoding") == "gz+b64":
        return gzip.decompress(base64.b64decode(entry["content"]))
    assert "encoding" not in entry
    return entry["content"].encode()


def test_a_cloud_config_within_16_kb(rendered):
    assert rendered["text"].startswith("#cloud-config\n")
    size = len(rendered["text"].encode())
    assert size <= 16384, size
    # the plain files are over 16 KB: they are compressed, in cloud-init's own encoding (but the
    # small ones that base64 would make longer)
    encodings = {os.path.basename(f["path"]): f.get("encoding") for f in rendered["doc"]["write_files"]}
    assert encodings["cloudefigo-s3-get"] == encodings["luks-volume-unlock-data"] == "gz+b64"
    assert encodings["first-boot.json"] is None


def test_roles_and_user_data_install_the_same_bytes(rendered):
    """Drift: every file the user data writes is byte for byte (and mode for mode) what a role installs."""
    root = str(rendered["root"])
    installed = [root + p for p in ("/usr/local/lib/cloudefigo-s3-get", "/usr/local/sbin/luks-volume-unlock-data",
                                    "/etc/systemd/system/luks-volume-data.service", "/etc/chef/client.rb")]
    files = {f["path"]: f for f in rendered["doc"]["write_files"]}
    for path in installed:
        assert _content(files[path]) == open(path, "rb").read(), path
        # cloud-init's defaults when left out: 0644, root:root
        assert int(files[path].get("permissions", "0644"), 8) == stat.S_IMODE(os.stat(path).st_mode), path
        assert files[path].get("owner", "root:root") == "root:root"
    # the script is the role's file itself, the one copy
    assert _content(files[installed[0]]) == open(os.path.join(ROOT, "roles", "s3_get", "files", "cloudefigo-s3-get"), "rb").read()
    # first-boot.json: what chef_client's "Write the first-boot attributes" writes
    assert json.loads(_content(files[root + "/etc/chef/first-boot.json"])) == {"run_list": SETTINGS["chef_client_run_list"]}
    for unit in ("chef-client.service", "chef-client.timer"):  # the role installs them at this fixed path
        local = root + "/etc/systemd/system/" + unit
        assert _content(files["/etc/systemd/system/" + unit]) == open(local, "rb").read(), unit
        assert "permissions" not in files["/etc/systemd/system/" + unit] and stat.S_IMODE(os.stat(local).st_mode) == 0o644
    assert sorted(files) == sorted(installed + [root + "/etc/chef/first-boot.json",
                                                "/etc/systemd/system/chef-client.service", "/etc/systemd/system/chef-client.timer"])


def test_the_role_writes_client_rb_where_the_user_data_does():
    """The template task above mirrors the role's own: same src, dest and mode (read from the role)."""
    tasks = yaml.safe_load(open(os.path.join(CHEF, "tasks", "main.yml")))
    task = [t for t in tasks if t.get("name") == "Write client.rb"][0]["ansible.builtin.template"]
    assert task == {"src": "client.rb.j2", "dest": "{{ chef_client_config_dir }}/client.rb", "owner": "root",
                    "group": "root", "mode": "0644"}
    units = [t for t in tasks if t.get("name") == "Install the chef-client service and timer"][0]
    assert units["ansible.builtin.template"] == {"src": "{{ item }}.j2", "dest": "/etc/systemd/system/{{ item }}",
                                                 "owner": "root", "group": "root", "mode": "0644"}
    assert units["loop"] == "{{ chef_client__units }}" and units["when"] == "chef_client_schedule"
    first = [t for t in tasks if t.get("name") == "Write the first-boot attributes"][0]["ansible.builtin.copy"]
    assert first["content"] == "{{ {'run_list': chef_client_run_list} | to_nice_json }}\n"
    assert first["dest"] == "{{ chef_client_config_dir }}/first-boot.json" and first["mode"] == "0644"


def test_the_first_boot_runs_the_pull_steps_with_the_roles_settings(rendered):
    runcmd = rendered["doc"]["runcmd"]
    assert len(runcmd) == 1 and runcmd[0][:3] == ["python3", str(rendered["root"] / "usr/local/lib/cloudefigo-s3-get"), "pull"]
    config = json.loads(runcmd[0][4])
    assert config["imds_url"] == SETTINGS["luks_volume_imds_url"]
    assert config["volume"]["key_object"] == SETTINGS["luks_volume_key_object"]
    assert config["volume"]["mount_opts"] == "defaults,nofail,_netdev,x-systemd.requires=luks-volume-data.service"
    assert config["volume"]["pbkdf"] == "pbkdf2" and config["volume"]["pbkdf_iterations"] == 1000
    assert config["chef"]["validator_key_object"] == "chef/validator.pem"
    assert config["upgrade"] == {"autoremove": True}
    assert config["chef"]["units"] == ["chef-client.timer"]  # enabled after the first run, as the role does


def test_no_secret_in_the_user_data(rendered):
    from ansible_collections.cloudefigo.core.plugins.module_utils._cloud_config import secret_findings
    everything = rendered["text"] + "".join(_content(f).decode() for f in rendered["doc"]["write_files"])
    assert secret_findings(everything) == []
    assert "PRIVATE KEY" not in everything and "SecretAccessKey\":" not in everything


def cloud_init_schema(path):
    if not os.path.isdir(os.path.join(CLOUD_INIT, "cloudinit")):
        pytest.fail("Debian's cloud-init is not unpacked in .cache/cloud-init: run tools/bootstrap.sh")
    code = ("import sys; from cloudinit.cmd.main import main; "
            "sys.argv = ['cloud-init', 'schema', '--config-file', sys.argv[1]]; sys.exit(main())")
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False,
                          timeout=120, env=dict(os.environ, PYTHONPATH=CLOUD_INIT))


def test_cloud_init_schema_accepts_it(rendered):
    proc = cloud_init_schema(rendered["tmp"] / "user-data")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Valid cloud-config" in proc.stdout


def test_cloud_init_schema_can_refuse(tmp_path):
    """The checker is real: a wrong write_files entry fails it."""
    bad = tmp_path / "bad"
    bad.write_text("#cloud-config\nwrite_files:\n- path: /x\n  encoding: zip\n  content: x\nruncmd: 5\n")
    proc = cloud_init_schema(bad)
    assert proc.returncode != 0
    assert "runcmd" in proc.stdout + proc.stderr
