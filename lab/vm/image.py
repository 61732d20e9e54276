"""The lab VM's image: build once with build.sh, cache under .cache/vm/<hash of lab/vm/>.

    python3 lab/vm/image.py          print the cached image dir, building it first if needed

The key is a hash of the build inputs (build.sh, initramfs-init, guest-rcS, cloud-init-lab), so CI rebuilds only
when they change.  A lock file serialises concurrent builds; a build is published by renaming.
"""
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
INPUTS = ("build.sh", "initramfs-init", "guest-rcS", "cloud-init-lab")
FILES = ("vmlinuz", "initrd.img", "root.img", "id_ed25519", "id_ed25519.pub", "build.json")


def image_hash():
    digest = hashlib.sha256()
    for name in INPUTS:
        with open(os.path.join(HERE, name), "rb") as handle:
            digest.update(name.encode() + b"\0" + handle.read() + b"\0")
    return digest.hexdigest()[:16]


def cache_root():
    return os.environ.get("LAB_VM_CACHE") or os.path.join(ROOT, ".cache", "vm")


def ensure_image(log=None):
    """Return the directory holding a complete image, building it if it is not cached yet."""
    base = cache_root()
    os.makedirs(base, exist_ok=True)
    target = os.path.join(base, image_hash())
    if all(os.path.exists(os.path.join(target, f)) for f in FILES):
        return target
    with open(os.path.join(base, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all(os.path.exists(os.path.join(target, f)) for f in FILES):
            return target
        partial = target + ".partial"
        shutil.rmtree(partial, ignore_errors=True)
        out = open(log, "ab") if log else None
        try:
            subprocess.run(["bash", os.path.join(HERE, "build.sh"), partial], check=True,
                           stdout=out, stderr=subprocess.STDOUT if out else None)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError("lab VM image build failed (%s); log: %s" % (exc.returncode, log)) from exc
        finally:
            if out:
                out.close()
        os.chmod(os.path.join(partial, "id_ed25519"), 0o600)
        os.rename(partial, target)
        # older images (other hashes) are dead weight: ~600 MB each
        for name in os.listdir(base):
            path = os.path.join(base, name)
            if name != os.path.basename(target) and os.path.isdir(path) and not name.endswith(".partial"):
                shutil.rmtree(path, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(ensure_image())
    sys.exit(0)
