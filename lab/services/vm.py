"""vm: a throwaway stand-in EC2 instance under qemu (software emulation, no KVM).

Image from lab/vm/ (built once, cached under .cache/vm/).  Each start boots it with the root disk
in `snapshot=on` mode (the image is never written: qemu keeps the changes in a temporary overlay
for the life of its process) plus a fresh sparse data disk standing in for the EBS data volume.
A reboot of the guest (`reboot()` below, or `busybox reboot` inside) resets the machine in the
same qemu process: the overlay, hence the root disk's changes, and the data disk survive it, as
an EC2 instance's disks survive a reboot; `lab down` forgets them.  The kernel command line
carries `lab.imds=<the lab proxy as the VM reaches it>` for the VM's cloud-init stand-in
(lab/vm/cloud-init-lab: pull mode).  That disk's virtio serial is what an EBS volume shows as its NVMe serial: `vol` and
the hex digits without the dash (20 characters, virtio's limit too).  LAB_VM_DATA_VOLUME_ID is
the API form `vol-<hex>`; the data_volume role accepts either form.

env: LAB_VM_SSH_PORT, LAB_VM_SSH_KEY, LAB_VM_USER (admin, passwordless sudo; root works too),
LAB_VM_DATA_VOLUME_ID, LAB_VM_DATA_DISK_SERIAL, LAB_VM_INVENTORY (host `lab_vm`).
"""
import os
import secrets
import shutil
import socket
import subprocess
import sys

from ._util import free_port, spawn, wait_for

NAME = "vm"
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "vm"))

import image  # noqa: E402  (lab/vm/image.py)

DATA_DISK_BYTES = 1 << 30
USER = "admin"


def _ssh_banner(port):
    # slirp accepts on the forwarded port before the guest listens: wait for sshd's banner
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.settimeout(3)
        return sock.recv(64).startswith(b"SSH-")


def _ssh_ok(port, key):
    cmd = ["ssh", "-p", str(port), "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR",
           USER + "@127.0.0.1", "sudo -n true"]
    return subprocess.run(cmd, capture_output=True, timeout=60, check=False).returncode == 0


def start(ctx):
    state = ctx.state_dir
    build_log = os.path.join(state, "vm-build.log")
    img = image.ensure_image(log=build_log)
    key = os.path.join(state, "vm_id_ed25519")
    shutil.copyfile(os.path.join(img, "id_ed25519"), key)
    os.chmod(key, 0o600)

    hexid = secrets.token_hex(9)[:17]
    volume_id = "vol-" + hexid
    serial = "vol" + hexid
    data = os.path.join(state, "vm-data.img")
    if os.path.exists(data):
        os.remove(data)
    with open(data, "wb") as handle:
        handle.truncate(DATA_DISK_BYTES)

    port = free_port()
    # lab/services/aws_proxy.py answers GetConsoleOutput from this file (its --vm-console)
    console = os.path.join(state, "vm-console.log")
    log = os.path.join(state, "vm-qemu.log")
    for path in (console, log):
        if os.path.exists(path):
            os.remove(path)
    cmd = [
        "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "1024", "-smp", "2",
        # no -no-reboot: a guest reboot resets the machine in this process (the overlay survives)
        "-display", "none", "-monitor", "none", "-serial", "file:" + console,
        "-kernel", os.path.join(img, "vmlinuz"), "-initrd", os.path.join(img, "initrd.img"),
        "-append", "console=ttyS0 quiet panic=-1" + (
            " lab.imds=" + ctx.env["LAB_AWS_PROXY_ENDPOINT_FROM_VM"] if ctx.env.get("LAB_AWS_PROXY_ENDPOINT_FROM_VM") else ""),
        "-drive", "file=%s,format=raw,if=none,id=root,snapshot=on" % os.path.join(img, "root.img"),
        "-device", "virtio-blk-pci,drive=root,serial=rootfs",
        "-drive", "file=%s,format=raw,if=none,id=data,cache=unsafe" % data,
        "-device", "virtio-blk-pci,drive=data,serial=%s" % serial,
        "-nic", "user,model=virtio-net-pci,hostfwd=tcp:127.0.0.1:%d-:22" % port,
    ]
    proc = spawn(cmd, log)
    try:
        wait_for(lambda: _ssh_banner(port), 300, "lab VM sshd (console: %s)" % console, proc, log)
        wait_for(lambda: _ssh_ok(port, key), 120, "lab VM ssh login", proc, log)
    except Exception:
        proc.kill()
        raise

    inventory = os.path.join(state, "vm_inventory.yml")
    with open(inventory, "w") as handle:
        handle.write(
            "---\n# written by lab/services/vm.py\nall:\n  hosts:\n    lab_vm:\n"
            "      ansible_host: 127.0.0.1\n"
            "      ansible_port: %d\n"
            "      ansible_user: %s\n"
            "      ansible_ssh_private_key_file: %s\n"
            "      ansible_ssh_pipelining: true\n"
            "      ansible_ssh_common_args: -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null\n"
            "      ansible_python_interpreter: /usr/bin/python3\n" % (port, USER, key)
        )
    return {
        "pids": [proc.pid],
        "env": {
            "LAB_VM_SSH_PORT": str(port),
            "LAB_VM_SSH_KEY": key,
            "LAB_VM_USER": USER,
            "LAB_VM_DATA_VOLUME_ID": volume_id,
            "LAB_VM_DATA_DISK_SERIAL": serial,
            "LAB_VM_INVENTORY": inventory,
        },
        "files": [data, inventory, key],
    }


def _ssh(port, key, command, timeout=60, connect_timeout=10):
    cmd = ["ssh", "-p", str(port), "-i", key, "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
           "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=%d" % connect_timeout, "-o", "LogLevel=ERROR",
           "root@127.0.0.1", command]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def reboot(env, timeout=300):
    """Reboot the guest for real (busybox init's reboot: every process ends, the kernel restarts,
    tmpfs is gone) and wait until it answers again; returns the new boot id.  env: the lab env."""
    import time
    port, key = int(env["LAB_VM_SSH_PORT"]), env["LAB_VM_SSH_KEY"]
    before = _ssh(port, key, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    _ssh(port, key, "sync; (sleep 1; /usr/local/lib/lab/busybox reboot) >/dev/null 2>&1 &")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(1)
        try:
            # slirp accepts while the guest is down: a short banner wait, then try again
            answer = _ssh(port, key, "cat /proc/sys/kernel/random/boot_id", timeout=30, connect_timeout=4)
        except subprocess.TimeoutExpired:
            continue
        now = answer.stdout.strip()
        if answer.returncode == 0 and now and now != before:
            return now
    raise RuntimeError("lab VM did not come back from its reboot within %d s" % timeout)


def stop(ctx, info):
    # labctl stops the PIDs after this; the data disk and inventory go with the VM
    from ._util import stop_pid
    for pid in info.get("pids", []):
        stop_pid(pid)
    for path in info.get("files", []):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
