"""Secure launch: a batch of 10 against a batch of 1, in the lab, with a simulated 60 s scan.

Goal (issue 7): wall(10) <= 1.5 x wall(1): the instances of a batch go through the flow at the
same time (forks 10), so ten cost about what one does.  The on-instance roles are left out
(secure_launch_configure_instance: false; one VM cannot stand in for ten instances); every AWS,
Chef and Nessus step runs for real against the lab.  Prints the ratio; asserts nothing.

    LAB_STATE_DIR=/tmp/lab-x lab/lab up && LAB_STATE_DIR=/tmp/lab-x .venv/bin/python bench/bench_batch.py
"""
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

from _lab import AWS, ansible_env, lab_env, moto_reset, s3_gateway_endpoint, secure_launch_lab_vars  # noqa: E402  pylint: disable=wrong-import-position

SCAN_SECONDS = float(os.environ.get("BENCH_SCAN_SECONDS", "60"))


def nessus_switch(lab, targets):
    ctx = ssl.create_default_context(cafile=lab["LAB_NESSUS_CA"])
    body = {"targets": {t: {"scan_seconds": SCAN_SECONDS} for t in targets}}
    req = urllib.request.Request(lab["LAB_NESSUS_URL"] + "/_sim/config", data=json.dumps(body).encode(),
                                 method="POST", headers={"Content-Type": "application/json",
                                                         "X-Sim-Token": lab["LAB_NESSUS_ADMIN_TOKEN"]})
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
        resp.read()


def chef_nodes(lab, names):
    from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefClient
    with open(lab["LAB_CHEF_KEY"], "rb") as handle:
        client = ChefClient(lab["LAB_CHEF_URL"], lab["LAB_CHEF_USER"], handle.read())
    for name in names:
        client.request("POST", "/nodes", data={"name": name, "json_class": "Chef::Node", "chef_type": "node",
                                               "chef_environment": "_default", "run_list": [], "normal": {},
                                               "default": {}, "override": {}, "automatic": {}})


def launch(lab, size, workdir):
    tag = uuid.uuid4().hex[:6]
    names = ["bench-%s-%02d" % (tag, i) for i in range(size)]
    chef_nodes(lab, names)
    nessus_switch(lab, names)
    s3_gateway_endpoint(AWS(lab).client("ec2"))
    extra = dict(secure_launch_lab_vars(lab), **{
        "secure_launch_image_id": "ami-1e749f67",
        "secure_launch_key_bucket": "bench-batch-keys",
        "secure_launch_omit_conditioned_denies": True,
        "secure_launch_report_dir": workdir,
        "secure_launch_configure_instance": False,
        "secure_launch_chef_require_converged": False,
        "secure_launch_nessus_poll_interval": 2,
        "secure_launch_instances": [{"name": n, "scan_targets": [n]} for n in names],
    })
    extra_file = os.path.join(workdir, "extra-%d.json" % size)
    with open(extra_file, "w") as handle:
        json.dump(extra, handle)
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-f", str(max(size, 1)),
           os.path.join(ROOT, "playbooks", "secure_launch.yml"), "-e", "@" + extra_file]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(lab), capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:])
        raise SystemExit("batch of %d failed (rc %d)" % (size, proc.returncode))
    return wall


def main():
    lab = lab_env()
    if not lab or "LAB_NESSUS_URL" not in lab:
        raise SystemExit("bring the lab up first (lab/lab up), with the Nessus simulator")
    with tempfile.TemporaryDirectory() as workdir:
        moto_reset(lab)
        wall1 = launch(lab, 1, workdir)
        print("batch of  1: %6.1f s (simulated scan %.0f s)" % (wall1, SCAN_SECONDS))
        moto_reset(lab)
        wall10 = launch(lab, 10, workdir)
        print("batch of 10: %6.1f s" % wall10)
        moto_reset(lab)
    ratio = wall10 / wall1
    print("ratio wall(10)/wall(1) = %.2f (goal <= 1.5: %s)" % (ratio, "met" if ratio <= 1.5 else "NOT met"))


if __name__ == "__main__":
    main()
