"""Extract the collections cloudefigo.core depends on from the pinned `ansible` wheel.

Galaxy is not reachable everywhere this project is built, PyPI is: the `ansible`
package bundles the same collection releases Galaxy serves.  Idempotent: a stamp
file records which wheel the tree came from.
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import zipfile

COLLECTIONS = (
    "amazon/aws",
    "community/aws",
    "community/crypto",
    "community/general",
    "ansible/posix",
    "community/postgresql",
    "awx/awx",
)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ansible-version", required=True)
    parser.add_argument("--dest", required=True, help="directory that will hold ansible_collections/")
    parser.add_argument("--cache", required=True, help="download cache directory")
    parser.add_argument("--repo", required=True, help="this collection's root, linked as cloudefigo/core")
    args = parser.parse_args()

    root = os.path.join(args.dest, "ansible_collections")
    stamp = os.path.join(args.dest, ".ansible-wheel")
    wanted = "ansible==%s" % args.ansible_version
    current = open(stamp).read().strip() if os.path.exists(stamp) else ""
    # a new wheel re-extracts everything; the same wheel only adds collections still missing
    # (a name added to COLLECTIONS), leaving the trees other runs may be reading in place
    names = COLLECTIONS if current != wanted else tuple(
        name for name in COLLECTIONS if not os.path.isdir(os.path.join(root, name)))
    if names:
        os.makedirs(args.cache, exist_ok=True)
        pattern = os.path.join(args.cache, "ansible-%s-py3-none-any.whl" % args.ansible_version)
        if not glob.glob(pattern):
            subprocess.check_call([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                                   "-d", args.cache, wanted])
        wheel = glob.glob(pattern)[0]
        for name in names:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
        prefixes = tuple("ansible_collections/%s/" % name for name in names)
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.namelist() if m.startswith(prefixes)]
            archive.extractall(args.dest, members)
        with open(stamp, "w") as handle:
            handle.write(wanted + "\n")
        print("extracted %d files of %s into %s" % (len(members), wanted, root))

    link = os.path.join(root, "cloudefigo", "core")
    os.makedirs(os.path.dirname(link), exist_ok=True)
    target = os.path.relpath(os.path.abspath(args.repo), os.path.dirname(link))
    if not (os.path.islink(link) and os.readlink(link) == target):
        if os.path.lexists(link):
            os.remove(link)
        os.symlink(target, link)


if __name__ == "__main__":
    main()
