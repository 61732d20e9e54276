"""Instance roles for real, in the lab's qemu VM (lab up --vm).

data_volume + luks_volume: the controller side creates/attaches an encrypted volume in moto, the
instance side finds the VM's data disk by volume id (LAB_VM_DATA_VOLUME_ID, see
roles/data_volume/README.md), the key comes from moto's S3 through the IMDS answers moto gives at
LAB_AWS_ENDPOINT_FROM_VM.  Then os_upgrade (apt for real, dnf task selection in check mode with a
stub dnf module) and chef_client (a locally built dummy chef .deb).

The tests of one topic build on each other (pytest runs them in file order) and share one VM.
"""
import base64
import os
import re
import subprocess

import pytest

from _lab import ROOT, moto_reset, run_playbook, AWS

pytestmark = pytest.mark.vm

PLAYS = os.path.join(ROOT, "tests", "integration", "vm")
RECAP = re.compile(r"^lab_vm\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
MOUNT = "/data"
MAPPER = "data"


class VM:
    def __init__(self, lab):
        self.lab = lab
        self.base = ["ssh", "-p", lab["LAB_VM_SSH_PORT"], "-i", lab["LAB_VM_SSH_KEY"], "-o", "BatchMode=yes",
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                     "%s@127.0.0.1" % lab["LAB_VM_USER"]]

    def sh(self, script, check=True):
        proc = subprocess.run(self.base + ["sudo", "-n", "sh", "-c", _quote(script)], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=600, check=False)
        if check:
            assert proc.returncode == 0, "VM command failed: %s\n%s%s" % (script, proc.stdout, proc.stderr)
        return proc

    def out(self, script):
        return self.sh(script).stdout.strip()

    def reset_data_disk(self):
        """Leave the data disk blank and unmapped (other tests may have used the shared VM)."""
        serial = self.lab["LAB_VM_DATA_DISK_SERIAL"]
        self.sh(
            "for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = %s ] && disk=/dev/${b##*/}; done; "
            "for m in /dev/mapper/*; do [ \"$m\" = /dev/mapper/control ] && continue; "
            "  for t in $(findmnt -n -o TARGET -S \"$m\"); do umount \"$t\"; done; cryptsetup close \"${m##*/}\"; done; "
            "for t in $(findmnt -n -o TARGET -S \"$disk\"); do umount \"$t\"; done; "
            "wipefs -q -a \"$disk\"; sed -i '\\#^/dev/mapper/#d' /etc/fstab; "
            "umount /run/luks_volume 2>/dev/null; rm -rf /run/luks_volume" % serial)


def _quote(text):
    return "'" + text.replace("'", "'\\''") + "'"


def recap(result):
    match = RECAP.search(result.stdout)
    assert match, "no PLAY RECAP for lab_vm:\n%s\n%s" % (result.stdout[-5000:], result.stderr[-3000:])
    return {"ok": int(match.group(1)), "changed": int(match.group(2)), "unreachable": int(match.group(3)),
            "failed": int(match.group(4))}


def task_results(result, name, host="lab_vm"):
    """Results of a task by name (role tasks are named "<role> : <name>" by the json callback)."""
    out = []
    for play in (result.data or {}).get("plays", []):
        for task in play["tasks"]:
            full = task["task"]["name"]
            if (full == name or full.endswith(" : " + name)) and host in task["hosts"]:
                out.append(task["hosts"][host])
    return out


def no_secret(text, secret):
    forms = [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode(), secret[:12].hex(),
             base64.b64encode(secret[:18]).decode(), repr(secret)[2:30]]
    for form in forms:
        assert form not in text, "secret material (%r...) in the output" % form[:8]


@pytest.fixture(scope="module")
def vm(lab):
    if "LAB_VM_SSH_PORT" not in lab:
        pytest.skip("needs the VM: lab/lab up --vm")
    return VM(lab)


# --- data_volume + luks_volume ------------------------------------------------------------------

@pytest.fixture(scope="module")
def luks(lab, vm):
    moto_reset(lab)
    aws = AWS(lab)
    s3, ec2, iam = aws.client("s3"), aws.client("ec2"), aws.client("iam")
    s3.create_bucket(Bucket="lab-volume-keys")
    key = os.urandom(64)
    # the instance's own role: moto's IMDS hands out fixed test credentials for it
    iam.create_role(RoleName="lab-vm-role", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":'
                    '"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
    iam.create_instance_profile(InstanceProfileName="lab-vm-role")
    iam.add_role_to_instance_profile(InstanceProfileName="lab-vm-role", RoleName="lab-vm-role")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro",
                            IamInstanceProfile={"Name": "lab-vm-role"})["Instances"][0]["InstanceId"]
    obj = "%s/luks.key" % iid
    s3.put_object(Bucket="lab-volume-keys", Key=obj, Body=key, ServerSideEncryption="AES256")
    vm.reset_data_disk()
    world = {"aws": aws, "s3": s3, "ec2": ec2, "iid": iid, "bucket": "lab-volume-keys", "object": obj, "key": key}
    yield world
    vm.reset_data_disk()


def converge(lab, luks, extra=None, verbose=True):
    extra_vars = {"data_volume_instance_id": luks["iid"], "luks_volume_key_bucket": luks["bucket"],
                  "luks_volume_key_object": luks["object"], "luks_volume_mount_point": MOUNT,
                  "luks_volume_name": MAPPER}
    extra_vars.update(extra or {})
    return run_playbook(lab, os.path.join(PLAYS, "luks.yml"), extra_vars=extra_vars, inventory=lab["LAB_VM_INVENTORY"],
                        json_output=False, args=["-vvv"] if verbose else [])


def kernel_has_noswap(vm):
    """Linux 6.4+ knows tmpfs noswap; checked against the kernel itself, not only its version."""
    release = vm.out("uname -r")
    major, minor = (int(part) for part in re.match(r"(\d+)\.(\d+)", release).groups())
    probe = vm.sh("d=$(mktemp -d) && mount -t tmpfs -o size=1m,noswap tmpfs $d && umount $d; rc=$?; rmdir $d; exit $rc",
                  check=False)
    assert (probe.returncode == 0) == ((major, minor) >= (6, 4)), (release, probe.stderr)
    return probe.returncode == 0, release


def assert_key_tmpfs(vm, output, prefix):
    """The key had a tmpfs of its own (noswap when the kernel has it) and it is gone now."""
    noswap, release = kernel_has_noswap(vm)
    if noswap:
        assert prefix + " mounted, noswap" in output, output[-5000:]
    else:
        assert prefix + " mounted without noswap (kernel %s has no noswap, Linux 6.4+)" % release in output, \
            output[-5000:]
    assert vm.out("findmnt -n -o FSTYPE --mountpoint /run/luks_volume || true") == ""


def luks_uuid(vm):
    return vm.out("for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = %s ] && cryptsetup luksUUID /dev/${b##*/}; done"
                  % vm.lab["LAB_VM_DATA_DISK_SERIAL"])


def test_luks_first_run_formats_opens_mounts(lab, vm, luks):
    result = converge(lab, luks)
    stats = recap(result)
    assert result.rc == 0 and stats["failed"] == 0, result.stdout[-8000:]
    assert stats["changed"] > 0
    no_secret(result.stdout + result.stderr, luks["key"])
    # the controller side made an encrypted volume in the instance's AZ and attached it
    vols = [v for v in luks["ec2"].describe_volumes()["Volumes"]
            if {"Key": "Name", "Value": luks["iid"] + "-data"} in v.get("Tags", [])]
    assert len(vols) == 1 and vols[0]["Encrypted"] and vols[0]["Size"] == 1
    assert vols[0]["Attachments"][0]["InstanceId"] == luks["iid"]
    # the VM: LUKS2 with our parameters, open, ext4 mounted, key gone, boot unlock installed
    uuid = luks_uuid(vm)
    assert re.match(r"^[0-9a-f-]{36}$", uuid)
    luks["uuid"] = uuid
    assert vm.out("findmnt -n -o SOURCE,FSTYPE %s" % MOUNT) == "/dev/mapper/%s ext4" % MAPPER
    dump = vm.out("cryptsetup status %s" % MAPPER)
    assert "aes-xts-plain64" in dump and "512 bits" in dump
    vm.sh("echo precious > %s/file.txt" % MOUNT)
    assert vm.out("ls -A /run/luks_volume") == ""
    assert_key_tmpfs(vm, result.stdout, "/run/luks_volume: tmpfs")
    fstab = vm.out("grep '^/dev/mapper/%s ' /etc/fstab" % MAPPER)
    assert "x-systemd.requires=luks-volume-%s.service" % MAPPER in fstab and "_netdev" in fstab
    unit = vm.out("cat /etc/systemd/system/luks-volume-%s.service" % MAPPER)
    assert "ExecStart=/usr/local/sbin/luks-volume-unlock-%s" % MAPPER in unit
    assert vm.out("stat -c %a:%U /usr/local/sbin/luks-volume-unlock-" + MAPPER) == "700:root"


def test_luks_second_run_changes_nothing(lab, vm, luks):
    result = converge(lab, luks)
    stats = recap(result)
    assert result.rc == 0 and stats["changed"] == 0, result.stdout[-8000:]
    no_secret(result.stdout + result.stderr, luks["key"])
    assert vm.out("cat %s/file.txt" % MOUNT) == "precious"
    assert luks_uuid(vm) == luks["uuid"]


def test_luks_unit_script_unlocks_after_close(lab, vm, luks):
    vm.sh("umount %s && cryptsetup close %s" % (MOUNT, MAPPER))
    assert vm.sh("cryptsetup status %s" % MAPPER, check=False).returncode != 0
    # busybox init in the lab VM, not systemd: run the unit's ExecStart, then what fstab does
    out = vm.out("/usr/local/sbin/luks-volume-unlock-%s && mount %s" % (MAPPER, MOUNT))
    assert "opened" in out
    assert vm.out("cat %s/file.txt" % MOUNT) == "precious"
    assert vm.out("ls -A /run/luks_volume") == ""
    assert_key_tmpfs(vm, out, "luks-volume: key tmpfs /run/luks_volume")


def test_luks_wrong_key_fails_and_never_reformats(lab, vm, luks):
    vm.sh("umount %s && cryptsetup close %s" % (MOUNT, MAPPER))
    luks["s3"].put_object(Bucket=luks["bucket"], Key=luks["object"], Body=os.urandom(64))
    result = converge(lab, luks, verbose=False)
    assert result.rc != 0
    assert "No key available with this passphrase" in result.stdout, result.stdout[-5000:]
    assert luks_uuid(vm) == luks["uuid"]
    assert vm.out("ls -A /run/luks_volume") == ""
    # the unit script fails the same way and leaves nothing behind
    proc = vm.sh("/usr/local/sbin/luks-volume-unlock-%s" % MAPPER, check=False)
    assert proc.returncode != 0 and vm.out("ls -A /run/luks_volume") == ""
    assert vm.out("findmnt -n -o FSTYPE --mountpoint /run/luks_volume || true") == ""


def test_luks_missing_key_fails_clearly_then_recovers(lab, vm, luks):
    luks["s3"].delete_object(Bucket=luks["bucket"], Key=luks["object"])
    result = converge(lab, luks, verbose=False)
    assert result.rc != 0
    assert "s3://%s/%s: it does not exist (NoSuchKey)" % (luks["bucket"], luks["object"]) in result.stdout
    assert luks_uuid(vm) == luks["uuid"]
    # the right key back: opened and mounted again, the data is still there (never re-formatted)
    luks["s3"].put_object(Bucket=luks["bucket"], Key=luks["object"], Body=luks["key"])
    result = converge(lab, luks)
    assert result.rc == 0, result.stdout[-8000:]
    no_secret(result.stdout + result.stderr, luks["key"])
    assert vm.out("cat %s/file.txt" % MOUNT) == "precious"
    assert luks_uuid(vm) == luks["uuid"]


def test_data_volume_missing_device_fails_clearly(lab, vm):
    play = os.path.join(PLAYS, "find_volume.yml")
    result = run_playbook(lab, play, inventory=lab["LAB_VM_INVENTORY"], json_output=False,
                          extra_vars={"data_volume_id": "vol-0123456789abcdef0", "data_volume_wait_timeout": 3})
    assert result.rc != 0
    assert "No block device with the serial of volume vol-0123456789abcdef0" in result.stdout
    # the dash-less NVMe form of the VM's own disk is found
    result = run_playbook(lab, play, inventory=lab["LAB_VM_INVENTORY"], json_output=False,
                          extra_vars={"data_volume_id": lab["LAB_VM_DATA_DISK_SERIAL"]})
    assert result.rc == 0 and re.search(r"data_volume_device.*/dev/vd[a-z]", result.stdout), result.stdout[-3000:]


# --- os_upgrade ---------------------------------------------------------------------------------

def test_os_upgrade_apt_for_real_then_idempotent(lab, vm):
    play = os.path.join(PLAYS, "os_upgrade.yml")
    # the lab VM boots busybox init: a real reboot cannot come back, so the reboot itself is
    # exercised in check mode below; here only the decision is reported
    extra = {"os_upgrade_reboot": False, "os_upgrade_prerequisite_packages": ["cryptsetup-bin", "e2fsprogs"]}
    first = run_playbook(lab, play, extra_vars=extra, inventory=lab["LAB_VM_INVENTORY"], json_output=False)
    assert first.rc == 0, first.stdout[-8000:]
    assert "os_upgrade_reboot_required" in first.stdout
    # nothing left to upgrade
    pending = vm.out("apt-get -s dist-upgrade | grep -c '^Inst ' || true")
    assert pending == "0"
    second = run_playbook(lab, play, extra_vars=extra, inventory=lab["LAB_VM_INVENTORY"], json_output=False)
    assert second.rc == 0 and recap(second)["changed"] == 0, second.stdout[-8000:]


def test_os_upgrade_reboots_only_when_required_check_mode(lab, vm):
    play = os.path.join(PLAYS, "os_upgrade.yml")
    vm.sh("touch /var/run/reboot-required")
    try:
        result = run_playbook(lab, play, check=True, inventory=lab["LAB_VM_INVENTORY"])
    finally:
        vm.sh("rm -f /var/run/reboot-required")
    assert result.rc == 0, result.stdout[-5000:]
    reboot = task_results(result, "Reboot when required")
    assert reboot and reboot[0].get("changed") and not reboot[0].get("skipped")
    result = run_playbook(lab, play, check=True, inventory=lab["LAB_VM_INVENTORY"])
    reboot = task_results(result, "Reboot when required")
    assert result.rc == 0 and reboot and reboot[0].get("skipped")


def test_os_upgrade_dnf_path_check_mode_with_stub(lab, vm):
    """No RPM host here: the dnf path runs with a stub dnf module (tests/integration/vm/library)
    and a stand-in needs-restarting that says "reboot required" (exit 1).  Tested: task selection,
    module arguments and the reboot decision in check mode; not a real dnf transaction."""
    vm.sh("rm -f /tmp/dnf-stub.log")
    play = os.path.join(PLAYS, "os_upgrade.yml")
    result = run_playbook(lab, play, check=True, inventory=lab["LAB_VM_INVENTORY"],
                          extra_vars={"os_upgrade_pkg_mgr": "dnf", "os_upgrade_prerequisite_packages": ["cryptsetup"],
                                      "os_upgrade_needs_restarting_command": ["sh", "-c", "exit 1"]},
                          env={"ANSIBLE_LIBRARY": os.path.join(PLAYS, "library")})
    assert result.rc == 0, result.stdout[-5000:]
    calls = [__import__("json").loads(line) for line in vm.out("cat /tmp/dnf-stub.log").splitlines()]
    assert calls == [
        {"name": ["*"], "state": "latest", "update_cache": True, "check_mode": True},
        {"name": ["dnf-plugins-core", "cryptsetup"], "state": "present", "update_cache": False, "check_mode": True},
    ]
    assert not task_results(result, "Upgrade every package (apt dist-upgrade)")
    reboot = task_results(result, "Reboot when required")
    assert reboot and reboot[0].get("changed") and not reboot[0].get("skipped")


# --- chef_client --------------------------------------------------------------------------------

DUMMY_CHEF_CLIENT = """#!/bin/sh
# dummy chef-client built by test_vm_roles.py: records how it was run and what it found
conf=/etc/chef/client.rb
while [ $# -gt 0 ]; do [ "$1" = -c ] && conf="$2"; shift; done
dir="$(dirname "$conf")"
# (single quotes since client.rb escapes for Ruby, double quotes as 0.1.0 wrote it)
vkey="$(sed -n "s/^validation_key *[\\"']\\(.*\\)[\\"']$/\\1/p" "$conf" 2>/dev/null)"
mkdir -p /var/lib/chef-dummy
{
  printf 'run uid=%s conf=%s client_rb=%s' "$(id -u)" "$conf" "$([ -r "$conf" ] && echo yes || echo no)"
  [ -e "$dir/client.pem" ] && printf ' client.pem=%s' "$(stat -c %a:%U "$dir/client.pem")"
  [ -n "$vkey" ] && [ -e "$vkey" ] && printf ' validation.pem=%s:%s' "$(stat -c %a:%U "$vkey")" "$(stat -f -c %T "$vkey")"
  echo
} >>/var/lib/chef-dummy/runs.log
# a first run that fails (the test asks for it): nothing registered
[ -e /var/lib/chef-dummy/fail ] && { echo "dummy chef-client: failing as asked" >&2; exit 1; }
# registration as the real one does it: the validator gets the node its own client key
if [ -n "$vkey" ] && [ -e "$vkey" ] && [ ! -e "$dir/client.pem" ]; then
  (umask 077; echo dummy-client-key >"$dir/client.pem")
fi
"""


@pytest.fixture(scope="module")
def chef(lab, vm, tmp_path_factory):
    import hashlib
    moto_reset(lab)
    build = tmp_path_factory.mktemp("chefdeb")
    root = build / "chef"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: chef\nVersion: 18.0.0-1\nArchitecture: all\nMaintainer: lab <lab@example.invalid>\n"
        "Description: dummy chef-client for the cloudefigo lab\n")
    script = root / "usr" / "bin" / "chef-client"
    script.write_text(DUMMY_CHEF_CLIENT)
    script.chmod(0o755)
    deb = build / "chef_18.0.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)], check=True, capture_output=True)
    data = deb.read_bytes()
    s3 = AWS(lab).client("s3")
    s3.create_bucket(Bucket="lab-chef")
    # public-read: the https:// download path (get_url) fetches it without credentials
    s3.put_object(Bucket="lab-chef", Key="pkgs/" + deb.name, Body=data, ACL="public-read")
    validator = ("-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----\n"
                 % base64.b64encode(os.urandom(600)).decode())
    s3.put_object(Bucket="lab-chef", Key="validator/lab-validator.pem", Body=validator.encode())
    vm.sh("dpkg --purge chef >/dev/null 2>&1; rm -rf /etc/chef /etc/chef-vl /var/cache/chef_client /var/lib/chef-dummy")
    yield {"deb": deb.name, "sha256": hashlib.sha256(data).hexdigest(), "validator": validator,
           "http": "%s/lab-chef/pkgs/%s" % (lab["LAB_AWS_ENDPOINT_FROM_VM"], deb.name),
           "s3": "s3://lab-chef/pkgs/" + deb.name}
    vm.sh("dpkg --purge chef >/dev/null 2>&1; rm -rf /etc/chef /etc/chef-vl /var/cache/chef_client /var/lib/chef-dummy")


def chef_run(lab, extra, verbose=False):
    return run_playbook(lab, os.path.join(PLAYS, "chef_client.yml"), extra_vars=extra,
                        inventory=lab["LAB_VM_INVENTORY"], json_output=False, args=["-vvv"] if verbose else [])


def test_chef_client_checksum_mismatch_fails(lab, vm, chef):
    result = chef_run(lab, {"chef_client_package_url": chef["s3"], "chef_client_package_sha256": "0" * 64,
                            "chef_client_first_run": False})
    assert result.rc != 0
    assert "does not have SHA-256 %s" % ("0" * 64) in result.stdout, result.stdout[-5000:]
    assert vm.sh("dpkg -s chef", check=False).returncode != 0
    assert vm.out("ls -A /var/cache/chef_client") == ""


def test_chef_client_validator_key_gone_after_a_failed_first_run(lab, vm, chef):
    """The validator key is on a tmpfs only while chef-client runs, and gone when the run fails."""
    extra = {"chef_client_package_url": chef["s3"], "chef_client_package_sha256": chef["sha256"],
             "chef_client_validator_name": "lab-validator", "chef_client_validator_key_bucket": "lab-chef",
             "chef_client_validator_key_object": "validator/lab-validator.pem"}
    vm.sh("mkdir -p /var/lib/chef-dummy && touch /var/lib/chef-dummy/fail")
    try:
        result = chef_run(lab, extra)
    finally:
        vm.sh("rm -f /var/lib/chef-dummy/fail")
    assert result.rc != 0 and "failing as asked" in result.stdout, result.stdout[-5000:]
    runs = vm.out("cat /var/lib/chef-dummy/runs.log").splitlines()
    # chef-client saw the key, 0600 root, on a tmpfs
    assert runs == ["run uid=0 conf=/etc/chef/client.rb client_rb=yes validation.pem=600:root:tmpfs"]
    assert vm.sh("test -e /run/chef_client/validation.pem", check=False).returncode != 0
    assert vm.sh("test -e /etc/chef/validation.pem", check=False).returncode != 0
    assert vm.out("findmnt -n -o FSTYPE --mountpoint /run/chef_client || true") == ""
    assert vm.sh("test -e /etc/chef/.first-run-done", check=False).returncode != 0
    vm.sh("dpkg --purge chef >/dev/null 2>&1; rm -rf /etc/chef /var/lib/chef-dummy")


def test_chef_client_validator_install_config_first_run(lab, vm, chef):
    extra = {"chef_client_package_url": chef["http"], "chef_client_package_sha256": chef["sha256"],
             "chef_client_validator_name": "lab-validator", "chef_client_validator_key_bucket": "lab-chef",
             "chef_client_validator_key_object": "validator/lab-validator.pem"}
    first = chef_run(lab, extra, verbose=True)
    assert first.rc == 0, first.stdout[-8000:]
    body = chef["validator"].split("\n")[1]
    assert body[:40] not in first.stdout + first.stderr
    assert vm.out("dpkg-query -W -f '${Version}' chef") == "18.0.0-1"
    client_rb = vm.out("cat /etc/chef/client.rb")
    assert "node_name              'lab-vm-node'" in client_rb
    assert "validation_client_name 'lab-validator'" in client_rb
    assert "validation_key         '/run/chef_client/validation.pem'" in client_rb
    assert "ssl_verify_mode        :verify_peer" in client_rb
    runs = vm.out("cat /var/lib/chef-dummy/runs.log").splitlines()
    # the first run saw client.rb and the validator key, 0600 root, on tmpfs; the key is gone afterwards
    assert runs == ["run uid=0 conf=/etc/chef/client.rb client_rb=yes validation.pem=600:root:tmpfs"]
    assert vm.sh("test -e /run/chef_client/validation.pem", check=False).returncode != 0
    assert vm.sh("test -e /etc/chef/validation.pem", check=False).returncode != 0
    assert vm.out("findmnt -n -o FSTYPE --mountpoint /run/chef_client || true") == ""
    assert '"role[base]"' in vm.out("cat /etc/chef/first-boot.json")
    second = chef_run(lab, extra)
    assert second.rc == 0 and recap(second)["changed"] == 0, second.stdout[-8000:]
    assert len(vm.out("cat /var/lib/chef-dummy/runs.log").splitlines()) == 1


def test_chef_client_validatorless_key_from_chef_node(lab, vm, chef):
    client_key = ("-----BEGIN RSA PRIVATE KEY-----\n%s\n-----END RSA PRIVATE KEY-----"
                  % base64.b64encode(os.urandom(600)).decode())
    extra = {"chef_client_package_url": chef["s3"], "chef_client_package_sha256": chef["sha256"],
             "chef_client_config_dir": "/etc/chef-vl", "chef_client_client_key": client_key,
             "chef_client_environment": "lab"}
    result = chef_run(lab, extra, verbose=True)
    assert result.rc == 0, result.stdout[-8000:]
    body = client_key.split("\n")[1]
    assert body[:40] not in result.stdout + result.stderr
    assert vm.out("stat -c %a:%U:%G /etc/chef-vl/client.pem") == "600:root:root"
    assert vm.out("cat /etc/chef-vl/client.pem") == client_key
    assert "validation_key" not in vm.out("cat /etc/chef-vl/client.rb")
    runs = vm.out("cat /var/lib/chef-dummy/runs.log").splitlines()
    assert runs[-1] == "run uid=0 conf=/etc/chef-vl/client.rb client_rb=yes client.pem=600:root"
