"""Instance roles for real, in the lab's qemu VM (lab up --vm).

data_volume + luks_volume: the controller side creates/attaches an encrypted volume in moto, the
instance side finds the VM's data disk by volume id (LAB_VM_DATA_VOLUME_ID, see
roles/data_volume/README.md), the key comes from moto's S3 through the IMDS answers moto gives at
LAB_AWS_ENDPOINT_FROM_VM.  Then os_upgrade (apt for real, dnf task selection in check mode with a
stub dnf module) and chef_client (the lab's chef package, whose chef-client is the stand-in
lab/vm/chef_standin.py: it registers and converges against the lab's goiardi for real, its ec2 data
from the IMDS the lab proxy serves for the moto instance the VM stands in for).

The tests of one topic build on each other (pytest runs them in file order) and share one VM.
"""
import base64
import json
import os
import re
import subprocess
import time
import urllib.request
import uuid

import pytest

from _lab import ROOT, chef_client, moto_reset, run_playbook, AWS

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

# Run by the role instead of /usr/bin/chef-client in the tests that look at the validator key: records
# what the run found (mode, owner, file system of the key), then runs the real stand-in.
WITNESS = """#!/bin/sh
conf=/etc/chef/client.rb
prev=; for a in "$@"; do [ "$prev" = -c ] && conf="$a"; prev="$a"; done
vkey="$(sed -n "s/^validation_key *'\\(.*\\)'$/\\1/p" "$conf")"
mkdir -p /var/lib/chef-witness
{ printf 'run uid=%s conf=%s' "$(id -u)" "$conf"
  [ -n "$vkey" ] && [ -e "$vkey" ] && printf ' validation.pem=%s:%s' "$(stat -c %a:%U "$vkey")" "$(stat -f -c %T "$vkey")"
  echo; } >>/var/lib/chef-witness/runs.log
exec /usr/bin/chef-client "$@"
"""
CHEF_CLEAN = ("dpkg --purge chef >/dev/null 2>&1; rm -rf /etc/chef /etc/chef-vl /var/cache/chef_client /var/lib/chef-witness"
              " /usr/local/bin/chef-client-witness /etc/systemd/system/chef-client.service"
              " /etc/systemd/system/chef-client.timer")


@pytest.fixture(scope="module")
def chef(lab, vm, tmp_path_factory):
    """The lab's chef package (its chef-client is the stand-in lab/vm/chef_standin.py) and the lab's
    validator key in moto's S3, a moto instance the VM stands in for (its IMDS through the lab proxy),
    and goiardi's API as admin."""
    import hashlib
    moto_reset(lab)
    build = tmp_path_factory.mktemp("chefdeb")
    subprocess.run(["bash", os.path.join(ROOT, "lab", "vm", "chef-deb.sh"), str(build)], check=True, capture_output=True)
    deb = build / "chef_18.0.0-1_all.deb"
    data = deb.read_bytes()
    aws = AWS(lab)
    s3, ec2 = aws.client("s3"), aws.client("ec2")
    s3.create_bucket(Bucket="lab-chef")
    # public-read: the https:// download path (get_url) fetches it without credentials
    s3.put_object(Bucket="lab-chef", Key="pkgs/" + deb.name, Body=data, ACL="public-read")
    with open(lab["LAB_CHEF_VALIDATOR_KEY"], "rb") as handle:
        validator = handle.read()
    s3.put_object(Bucket="lab-chef", Key="validator/lab-validator.pem", Body=validator)
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    iid = ec2.run_instances(ImageId=ami, MinCount=1, MaxCount=1, InstanceType="t3.micro")["Instances"][0]["InstanceId"]
    # its role (moto's IMDS hands out fixed test credentials once the profile is associated)
    iam = aws.client("iam")
    iam.create_role(RoleName="lab-vm-chef", AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":'
                    '"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}')
    iam.create_instance_profile(InstanceProfileName="lab-vm-chef")
    iam.add_role_to_instance_profile(InstanceProfileName="lab-vm-chef", RoleName="lab-vm-chef")
    ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": "lab-vm-chef"}, InstanceId=iid)
    # the VM stands in for this instance: the proxy's IMDS answers its instance id
    request = urllib.request.Request(lab["LAB_AWS_PROXY_ENDPOINT"] + "/_lab/proxy/console", method="POST",
                                     data=json.dumps({"instance_id": iid}).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()
    vm.sh(CHEF_CLEAN)
    vm.sh("cat > /usr/local/bin/chef-client-witness <<'EOF'\n%sEOF\nchmod 0755 /usr/local/bin/chef-client-witness" % WITNESS)
    api = chef_client(lab)
    names = []
    yield {"deb": deb.name, "sha256": hashlib.sha256(data).hexdigest(), "validator": validator.decode(), "iid": iid,
           "http": "%s/lab-chef/pkgs/%s" % (lab["LAB_AWS_ENDPOINT_FROM_VM"], deb.name),
           "s3": "s3://lab-chef/pkgs/" + deb.name, "api": api, "names": names}
    vm.sh(CHEF_CLEAN)
    for name in names:
        api.delete("/nodes/%s" % name, missing_ok=True)
        api.delete("/clients/%s" % name, missing_ok=True)


def chef_run(lab, extra, verbose=False):
    return run_playbook(lab, os.path.join(PLAYS, "chef_client.yml"), extra_vars=extra,
                        inventory=lab["LAB_VM_INVENTORY"], json_output=False, args=["-vvv"] if verbose else [])


def chef_node_name(chef):
    name = "lab-vm-%s" % uuid.uuid4().hex[:8]
    chef["names"].append(name)
    return name


def validator_vars(chef, name, **more):
    return dict({"chef_client_package_url": chef["s3"], "chef_client_package_sha256": chef["sha256"],
                 "chef_client_node_name": name, "chef_client_validator_name": "chef-validator",
                 "chef_client_validator_key_bucket": "lab-chef",
                 "chef_client_validator_key_object": "validator/lab-validator.pem"}, **more)


def test_chef_client_checksum_mismatch_fails(lab, vm, chef):
    result = chef_run(lab, {"chef_client_package_url": chef["s3"], "chef_client_package_sha256": "0" * 64,
                            "chef_client_first_run": False})
    assert result.rc != 0
    assert "does not have SHA-256 %s" % ("0" * 64) in result.stdout, result.stdout[-5000:]
    assert vm.sh("dpkg -s chef", check=False).returncode != 0
    assert vm.out("ls -A /var/cache/chef_client") == ""


def test_chef_client_validator_key_gone_after_a_failed_first_run(lab, vm, chef):
    """The validator key is on a tmpfs only while chef-client runs, and gone when the run fails
    (here for real: the server refuses a validator name its key does not belong to)."""
    name = chef_node_name(chef)
    extra = validator_vars(chef, name, chef_client_validator_name="no-such-validator",
                           chef_client_binary="/usr/local/bin/chef-client-witness")
    result = chef_run(lab, extra)
    assert result.rc != 0 and "FATAL: Chef Infra Client failed" in result.stdout, result.stdout[-5000:]
    runs = vm.out("cat /var/lib/chef-witness/runs.log").splitlines()
    # chef-client saw the key, 0600 root, on a tmpfs
    assert runs == ["run uid=0 conf=/etc/chef/client.rb validation.pem=600:root:tmpfs"]
    assert vm.sh("test -e /run/chef_client/validation.pem", check=False).returncode != 0
    assert vm.sh("test -e /etc/chef/validation.pem", check=False).returncode != 0
    assert vm.out("findmnt -n -o FSTYPE --mountpoint /run/chef_client || true") == ""
    assert vm.sh("test -e /etc/chef/.first-run-done", check=False).returncode != 0
    assert vm.sh("test -e /etc/chef/client.pem", check=False).returncode != 0
    assert chef["api"].get("/clients/%s" % name, missing_ok=True) is None
    assert chef["api"].get("/nodes/%s" % name, missing_ok=True) is None
    vm.sh(CHEF_CLEAN)


def test_chef_client_validator_registers_and_converges(lab, vm, chef):
    """The first run registers with the validator key and converges the node in goiardi; the timer's
    unit files are installed; a second role run changes nothing."""
    name = chef_node_name(chef)
    chef["validator_node"] = name
    started = time.time()
    first = chef_run(lab, validator_vars(chef, name, chef_client_package_url=chef["http"]), verbose=True)
    assert first.rc == 0, first.stdout[-8000:]
    body = chef["validator"].split("\n")[1]
    assert body[:40] not in first.stdout + first.stderr
    assert vm.out("dpkg-query -W -f '${Version}' chef") == "18.0.0-1"
    client_rb = vm.out("cat /etc/chef/client.rb")
    assert "node_name              '%s'" % name in client_rb
    assert "validation_client_name 'chef-validator'" in client_rb
    assert "validation_key         '/run/chef_client/validation.pem'" in client_rb
    assert "registering with the validator chef-validator" in first.stdout
    # the Chef server: a non-admin client of the node's name, the node converged from the VM
    client = chef["api"].get("/clients/%s" % name)
    assert client["name"] == name and not client.get("admin") and not client.get("validator")
    node = chef["api"].get("/nodes/%s" % name)
    auto = node["automatic"]
    assert started <= auto["ohai_time"] <= time.time()
    assert auto["ec2"]["instance_id"] == chef["iid"]
    assert node["run_list"] == ["recipe[base]"] and auto["recipes"] == ["base"]
    assert auto["hostname"] == "lab-vm" and auto["ipaddress"] == "10.0.2.15"
    assert auto["platform"] == "debian" and auto["platform_version"].startswith("12.")
    assert auto["kernel"]["release"] == vm.out("uname -r")
    # the client key the registration wrote, and no validator key anywhere after the run
    assert vm.out("stat -c %a:%U /etc/chef/client.pem") == "600:root"
    assert vm.sh("test -e /run/chef_client/validation.pem", check=False).returncode != 0
    assert vm.sh("test -e /etc/chef/validation.pem", check=False).returncode != 0
    assert vm.out("findmnt -n -o FSTYPE --mountpoint /run/chef_client || true") == ""
    # the schedule: units installed (busybox init here, no systemd: nothing to enable)
    unit = vm.out("cat /etc/systemd/system/chef-client.service")
    assert "ExecStart=/usr/bin/chef-client --once --no-fork -c /etc/chef/client.rb" in unit
    assert "OnUnitInactiveSec=1800s" in vm.out("cat /etc/systemd/system/chef-client.timer")
    second = chef_run(lab, validator_vars(chef, name, chef_client_package_url=chef["http"]))
    assert second.rc == 0 and recap(second)["changed"] == 0, second.stdout[-8000:]
    assert chef["api"].get("/nodes/%s" % name)["automatic"]["ohai_time"] == auto["ohai_time"]


def test_chef_client_schedule_command_reconverges(lab, vm, chef):
    """What chef-client.timer starts: the service's ExecStart, run in the VM (busybox init), converges
    again with the node's own key: ohai_time advances on the Chef server."""
    name = chef.get("validator_node")
    if not name:
        pytest.fail("needs test_chef_client_validator_registers_and_converges first")
    before = chef["api"].get("/nodes/%s" % name)["automatic"]["ohai_time"]
    command = vm.out("sed -n 's/^ExecStart=//p' /etc/systemd/system/chef-client.service")
    assert command.startswith("/usr/bin/chef-client ")
    out = vm.out(command)
    assert "Chef Infra Client finished" in out and "registering" not in out
    after = chef["api"].get("/nodes/%s" % name)
    assert after["automatic"]["ohai_time"] > before
    assert after["automatic"]["ec2"]["instance_id"] == chef["iid"] and after["run_list"] == ["recipe[base]"]


def test_chef_client_validatorless_key_from_chef_node(lab, vm, chef):
    """The secure launch's way: cloudefigo.core.chef_node made the client (and its node, with the
    ownership marks); the role places its key and the first run converges that node with it."""
    name = chef_node_name(chef)
    result = run_playbook(lab, os.path.join(PLAYS, "chef_node.yml"), json_output=False,
                          extra_vars={"name": name, "instance_id": chef["iid"], "dest": os.path.join(
                              lab["LAB_STATE_DIR"], "%s.pem" % name)})
    assert result.rc == 0, result.stdout[-5000:]
    key_file = os.path.join(lab["LAB_STATE_DIR"], "%s.pem" % name)
    with open(key_file) as handle:
        client_key = handle.read()
    os.unlink(key_file)
    extra = {"chef_client_package_url": chef["s3"], "chef_client_package_sha256": chef["sha256"],
             "chef_client_config_dir": "/etc/chef-vl", "chef_client_client_key": client_key,
             "chef_client_node_name": name, "chef_client_schedule": False}
    result = chef_run(lab, extra, verbose=True)
    assert result.rc == 0, result.stdout[-8000:]
    body = client_key.split("\n")[1]
    assert body[:40] not in result.stdout + result.stderr
    assert vm.out("stat -c %a:%U:%G /etc/chef-vl/client.pem") == "600:root:root"
    assert "validation_key" not in vm.out("cat /etc/chef-vl/client.rb")
    node = chef["api"].get("/nodes/%s" % name)
    assert node["normal"]["cloudefigo"]["instance_id"] == chef["iid"]
    assert node["automatic"]["ec2"]["instance_id"] == chef["iid"] and node["automatic"]["ohai_time"]
