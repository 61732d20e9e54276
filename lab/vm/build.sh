#!/usr/bin/env bash
# build.sh OUT_DIR: build the lab's stand-in instance from Debian packages into OUT_DIR.
#
#   vmlinuz        Debian's kernel (apt-get download + dpkg -x; nothing installed on the host)
#   initrd.img     static busybox + the modules the lab needs; /init finds the root disk by its
#                  virtio serial "rootfs" (there is no udev) and switch_roots into it
#   root.img       ext4, debootstrap bookworm minbase + python3, openssh-server, cryptsetup-bin ...
#                  PID 1 is busybox init (no systemd: see lab/vm/README.md)
#   id_ed25519     the lab's SSH key for users root and admin (fresh per build)
#
# lab/services/vm.py calls this through lab/vm/image.py, which caches OUT_DIR under
# .cache/vm/<hash of this directory> so the image is rebuilt only when the build changes.
set -euo pipefail

OUT="${1:?usage: build.sh OUT_DIR}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIRROR="${LAB_VM_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
PACKAGES=cryptsetup-bin,e2fsprogs,python3,python3-apt,kmod,openssh-server,iproute2,sudo,util-linux
# pull mode: lab/vm/cloud-init-lab reads the #cloud-config user data
PACKAGES="$PACKAGES,python3-yaml"
# modprobe names; their dependencies are added by modprobe --show-depends
MODULES="virtio_pci virtio_blk virtio_net ext4 dm_mod dm_crypt xts aesni_intel aes_generic algif_skcipher af_alg cbc ecb sha256_generic crc32c_generic"

for tool in debootstrap dpkg apt-get mkfs.ext4 cpio ssh-keygen depmod modprobe; do
    command -v "$tool" >/dev/null || { echo "build.sh: $tool missing (run tools/bootstrap.sh)" >&2; exit 2; }
done

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lab-vm-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT" "$WORK/debs" "$WORK/kernel" "$WORK/bb" "$WORK/initrd" "$WORK/root"

# --- kernel + busybox from Debian packages -----------------------------------------------------
kpkg="$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')"
[ -n "$kpkg" ] || { echo "build.sh: cannot resolve linux-image-amd64 (apt-get update?)" >&2; exit 2; }
(cd "$WORK/debs" && apt-get download "$kpkg" busybox-static >/dev/null 2>&1) \
    || (cd "$WORK/debs" && apt-get download "$kpkg" busybox-static)
dpkg -x "$WORK"/debs/linux-image-*.deb "$WORK/kernel"
dpkg -x "$WORK"/debs/busybox-static_*.deb "$WORK/bb"
kver="$(ls "$WORK/kernel/lib/modules")"
cp "$WORK/kernel/boot/vmlinuz-$kver" "$WORK/vmlinuz"

# --- root file system (in the background while the initramfs is made) -------------------------
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$WORK/root" "$MIRROR" \
    >"$WORK/debootstrap.log" 2>&1 &
boot_pid=$!

# --- initramfs: busybox + modules in dependency order ------------------------------------------
depmod -b "$WORK/kernel" "$kver"
mkdir -p "$WORK/initrd"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$WORK/bb/bin/busybox" "$WORK/initrd/bin/busybox"
ln -s busybox "$WORK/initrd/bin/sh"
: >"$WORK/initrd/modules.order"
for mod in $MODULES; do
    modprobe -d "$WORK/kernel" -S "$kver" --show-depends "$mod" 2>/dev/null | awk '$1 == "insmod" {print $2}'
done | awk '!seen[$0]++' | while read -r path; do
    name="$(basename "$path")"
    cp "$path" "$WORK/initrd/lib/modules/$name"
    echo "$name" >>"$WORK/initrd/modules.order"
done
cp "$HERE/initramfs-init" "$WORK/initrd/init"
chmod 0755 "$WORK/initrd/init"
(cd "$WORK/initrd" && find . | cpio -o -H newc --quiet) >"$WORK/initrd.img"

if ! wait "$boot_pid"; then
    tail -30 "$WORK/debootstrap.log" >&2
    exit 1
fi

# --- configure the guest -----------------------------------------------------------------------
R="$WORK/root"
install -D -m 0755 "$WORK/bb/bin/busybox" "$R/usr/local/lib/lab/busybox"
install -D -m 0755 "$HERE/guest-rcS" "$R/usr/local/lib/lab/rcS"
install -D -m 0644 "$HERE/cloud-init-lab" "$R/usr/local/lib/lab/cloud-init-lab"
cat >"$R/etc/inittab" <<'EOF'
::sysinit:/usr/local/lib/lab/rcS
::respawn:/usr/sbin/sshd -D -e
ttyS0::respawn:/usr/local/lib/lab/busybox getty -n -l /bin/sh 115200 ttyS0
::ctrlaltdel:/usr/local/lib/lab/busybox poweroff -f
::shutdown:/usr/local/lib/lab/busybox umount -a -r
EOF
echo lab-vm >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 lab-vm\n' >"$R/etc/hosts"
printf 'LABEL=rootfs / ext4 defaults 0 1\n' >"$R/etc/fstab"
cat >"$R/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
# apt would otherwise fetch translations and keep .deb files on the small root disk
printf 'Acquire::Languages "none";\nAPT::Keep-Downloaded-Packages "false";\n' >"$R/etc/apt/apt.conf.d/90lab"
chroot "$R" useradd -m -s /bin/bash -G sudo admin
echo 'admin ALL=(ALL) NOPASSWD:ALL' >"$R/etc/sudoers.d/90-lab"
chmod 0440 "$R/etc/sudoers.d/90-lab"
cat >"$R/etc/ssh/sshd_config.d/lab.conf" <<'EOF'
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
rm -f "$WORK/id_ed25519" "$WORK/id_ed25519.pub"
ssh-keygen -q -t ed25519 -N '' -C lab-vm -f "$WORK/id_ed25519"
for home in "$R/root" "$R/home/admin"; do
    install -d -m 0700 "$home/.ssh"
    install -m 0600 "$WORK/id_ed25519.pub" "$home/.ssh/authorized_keys"
done
chroot "$R" chown -R admin:admin /home/admin/.ssh
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*_Packages
mkfs.ext4 -q -F -L rootfs -d "$R" "$WORK/root.img" 1536M

# --- publish atomically --------------------------------------------------------------------------
for f in vmlinuz initrd.img root.img id_ed25519 id_ed25519.pub; do
    mv "$WORK/$f" "$OUT/$f"
done
printf '{"kernel": "%s", "suite": "%s", "built": "%s"}\n' "$kver" "$SUITE" "$(date -u +%FT%TZ)" >"$OUT/build.json"
