"""Pull mode in the lab VM: secure_launch.yml with secure_launch_mode=pull.

The VM stands in for the moto instance: the lab proxy serves it that instance's IMDS (its id, the
user data moto stored, its tags, role credentials only once the profile is associated), and its
cloud-init stand-in (lab/vm/cloud-init-lab) runs the user data at boot in cloud-init's order. The
controller never connects to the instance: it waits for the progress tag, then checks Chef, scans
and promotes. One launch (module fixture) is shared by the tests; the wrong-key test launches a
second instance on the same data disk. Assertions on moto, goiardi and the VM's own state.
"""
import base64
import gzip
import json
import os
import sys
import time
import urllib.request
import uuid

import pytest
import yaml

from _lab import AWS, ROOT, chef_client, moto_reset, run_playbook, s3_gateway_endpoint
from test_vm_roles import VM

sys.path.insert(0, os.path.join(ROOT, "lab"))
from services import vm as lab_vm  # noqa: E402

pytestmark = pytest.mark.vm

SECURE_LAUNCH = os.path.join(ROOT, "playbooks", "secure_launch.yml")
LAB_VARS = [os.path.join(ROOT, "playbooks", "vars", "lab.yml"), os.path.join(ROOT, "playbooks", "vars", "lab_pull.yml")]
KEY_BUCKET = "pull-keys"


def _tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


def _proxy(lab, path, data=None):
    req = urllib.request.Request(lab["LAB_AWS_PROXY_ENDPOINT"] + "/_lab/proxy/" + path, data=data,
                                 method="POST" if data is not None else "GET")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


def _forget_instance(vm):
    """The root disk as a new instance has it: no cloud-init state, no unlock, nothing mounted or
    open (the data disk keeps what it holds: a volume moved to a new instance)."""
    vm.sh("umount /data 2>/dev/null; cryptsetup close data 2>/dev/null; "
          "umount /run/luks_volume /run/chef_client 2>/dev/null; "
          "rm -rf /var/lib/cloud /etc/cloudefigo /etc/chef /var/lib/chef-dummy /var/cache/chef_client "
          "/usr/local/sbin/luks-volume-unlock-data /etc/systemd/system/luks-volume-data.service; "
          "sed -i '\\#^/dev/mapper/#d' /etc/fstab; true")


def launch(lab, workdir, name, launch_id):
    variables = os.path.join(workdir, "%s.json" % name)
    with open(variables, "w") as handle:
        json.dump({
            "secure_launch_id": launch_id,
            "secure_launch_key_bucket": KEY_BUCKET,
            "secure_launch_report_dir": workdir,
            "secure_launch_summary_file": os.path.join(workdir, "%s-summary.json" % name),
            "secure_launch_instances": [{"name": name, "inventory_host": "lab_vm", "data_volume_id": lab["LAB_VM_DATA_VOLUME_ID"],
                                         "chef_run_list": ["recipe[base]"], "tags": {"Owner": "pull"}}],
        }, handle)
    args = []
    for path in LAB_VARS + [variables]:
        args += ["-e", "@" + path]
    return run_playbook(lab, SECURE_LAUNCH, inventory=lab["LAB_VM_INVENTORY"], args=args)


def instance_of(aws, name):
    found = aws.client("ec2").describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])
    return ([i for r in found["Reservations"] for i in r["Instances"]] or [None])[0]


@pytest.fixture(scope="module")
def vm(lab):
    if "LAB_VM_SSH_PORT" not in lab:
        pytest.skip("needs the VM: lab/lab up --vm")
    return VM(lab)


@pytest.fixture(scope="module")
def pulled(lab, vm, tmp_path_factory):
    moto_reset(lab)
    _proxy(lab, "reset", b"")
    vm.reset_data_disk()
    _forget_instance(vm)
    aws = AWS(lab)
    s3_gateway_endpoint(aws.client("ec2"))
    workdir = str(tmp_path_factory.mktemp("pull"))
    name = "pull-%s" % uuid.uuid4().hex[:6]
    result = launch(lab, workdir, name, "pull-%s" % uuid.uuid4().hex[:8])
    with open(os.path.join(workdir, "launch.out"), "w") as handle:  # for a failed run's post-mortem
        handle.write(result.stdout + result.stderr)
    yield {"result": result, "name": name, "aws": aws, "instance": instance_of(aws, name), "workdir": workdir}
    moto_reset(lab)
    _proxy(lab, "reset", b"")


def _output(result):
    return result.stdout[-6000:] + result.stderr[-3000:]


def test_pull_launch_reaches_production_without_any_inbound_rule(lab, vm, pulled):
    result, aws, name = pulled["result"], pulled["aws"], pulled["name"]
    assert result.rc == 0, _output(result)
    ec2 = aws.client("ec2")
    instance = instance_of(aws, name)
    tags = _tags(instance)
    assert tags["SecurityStatus"] == "production" and tags["cloudefigo:progress"] == "done"
    groups = {g["GroupName"]: g for g in ec2.describe_security_groups()["SecurityGroups"]}
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [groups["cloudefigo-production"]["GroupId"]]
    # pull: nothing may reach into the remediation group, not even SSH from the controller
    assert groups["cloudefigo-remediation"]["IpPermissions"] == []
    # Chef: the node exists, converged, reports this instance, carries this launch's marks
    node = chef_client(lab).request("GET", "/nodes/%s" % name)
    assert node["automatic"]["ohai_time"] and node["automatic"]["ec2"]["instance_id"] == instance["InstanceId"]
    assert node["normal"]["cloudefigo"]["instance_id"] == instance["InstanceId"]
    # the controller never connected: no task ran on the instance itself
    for play in result.data["plays"]:
        for task in play["tasks"]:
            outcome = task["hosts"].get(name, {})
            if task["task"]["name"] in ("Wait for the instance to answer", "Pin the instance's SSH host keys"):
                assert outcome.get("skipped") or not outcome, task["task"]["name"]
    # on the instance (one ssh: each costs seconds under emulation): the volume open and mounted by
    # the user data, its LUKS UUID recorded for the boot unlock, chef-client (the lab's stand-in)
    # registered with the validator and ran once, no key left where keys were fetched to
    state = vm.out(
        "findmnt -n -o SOURCE /data; "
        "for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = %s ] && cryptsetup luksUUID /dev/${b##*/}; done; "
        "cat /etc/cloudefigo/luks-volume-data.uuid; "
        "test -s /etc/chef/client.pem && test -f /etc/chef/.first-run-done && echo chef-ran; "
        "ls -A /run/luks_volume /run/chef_client 2>/dev/null | grep -cE 'pem|key' || true" % lab["LAB_VM_DATA_DISK_SERIAL"])
    mapper, header, recorded, chef_ran, keys = state.split("\n")
    assert (mapper, chef_ran, keys) == ("/dev/mapper/data", "chef-ran", "0"), state
    assert header == recorded and len(header) == 36
    assert node["run_list"] == ["recipe[base]"]


def test_user_data_holds_no_secret(lab, pulled):
    """User data is readable with ec2:DescribeInstanceAttribute: no volume key, no Chef key, no credentials."""
    aws, instance = pulled["aws"], pulled["instance"]
    raw = base64.b64decode(aws.client("ec2").describe_instance_attribute(
        InstanceId=instance["InstanceId"], Attribute="userData")["UserData"]["Value"])
    text = raw.decode()
    doc = yaml.safe_load(text)
    contents = [gzip.decompress(base64.b64decode(f["content"])) if f.get("encoding") == "gz+b64" else f["content"].encode()
                for f in doc["write_files"]]
    everything = raw + b"".join(contents)
    key = aws.client("s3").get_object(Bucket=KEY_BUCKET, Key="volumes/%s.key" % pulled["name"])["Body"].read()
    validator = open(lab["LAB_CHEF_VALIDATOR_KEY"], "rb").read()
    for secret in (key, base64.b64encode(key), key.hex().encode(), validator.strip(), validator.split(b"\n")[1]):
        assert secret not in everything
    assert b"PRIVATE KEY" not in everything and b"SecretAccessKey\":" not in everything
    assert len(raw) <= 16384


def test_a_real_reboot_unlocks_and_mounts_the_volume(lab, vm, pulled):
    assert pulled["result"].rc == 0, _output(pulled["result"])
    opened = "grep -c 'opened /dev/' /var/log/cloud-init-output.log || true"
    boot_id, opened_before = vm.out("echo kept > /data/witness && sync && cat /proc/sys/kernel/random/boot_id; "
                                    + opened).split("\n")
    started = time.monotonic()
    assert lab_vm.reboot(lab) != boot_id
    rebooted = time.monotonic()
    # the boot unlock (fstab x-systemd.requires, run by the VM's systemd stand-in) needs IMDS and S3
    state = vm.out("for i in $(seq 120); do findmnt -n /data >/dev/null && break; sleep 1; done; "
                   "findmnt -n -o SOURCE /data; cat /data/witness; findmnt -n /run/luks_volume || echo no-key-tmpfs; "
                   + opened)
    print("reboot %.0f s, then unlocked and mounted in %.0f s" % (rebooted - started, time.monotonic() - rebooted))
    # opened with the key from S3, mounted, the data kept, the key's tmpfs gone after the open
    assert state.split("\n") == ["/dev/mapper/data", "kept", "no-key-tmpfs", str(int(opened_before) + 1)], state


def test_wrong_key_never_reformats_and_the_launch_is_contained(lab, vm, pulled):
    assert pulled["result"].rc == 0, _output(pulled["result"])
    aws = pulled["aws"]
    header_of = ("for b in /sys/block/vd*; do [ \"$(cat $b/serial)\" = %s ] && cryptsetup luksUUID /dev/${b##*/}; done"
                 % lab["LAB_VM_DATA_DISK_SERIAL"])
    header = vm.out(header_of)
    assert len(header) == 36
    # the data volume moves to a new instance, whose volume key is another one (the VM's
    # cloud-init stand-in runs the next instance bound to it: no reboot needed)
    _forget_instance(vm)
    name = "pull-%s" % uuid.uuid4().hex[:6]
    result = launch(lab, pulled["workdir"], name, "pull-%s" % uuid.uuid4().hex[:8])
    assert result.rc != 0
    instance = instance_of(aws, name)
    progress = _tags(instance)["cloudefigo:progress"]
    assert progress.startswith("failed:volume:") and "wrong key" in progress, progress
    # never re-formatted, never opened
    assert vm.out(header_of + "; cryptsetup status data >/dev/null 2>&1 && echo open || echo closed") == header + "\nclosed"
    groups = {g["GroupId"]: g["GroupName"] for g in aws.client("ec2").describe_security_groups()["SecurityGroups"]}
    assert [groups[g["GroupId"]] for g in instance["SecurityGroups"]] == ["cloudefigo-isolation"]
    assert _tags(instance)["SecurityStatus"] != "production"
    assert "failed:volume" in _tags(instance).get("SecurityReason", "")
