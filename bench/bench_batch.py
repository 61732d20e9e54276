"""Secure launch: a batch of 10 against a batch of 1, in the lab, with a simulated 60 s scan.

Goal (issue 12 section 6): wall(10) <= 1.3 x wall(1): the instances of a batch go through the flow at
the same time (forks 10), so ten cost about what one does, and each instance costs few module
calls (2 cores run the ten workers).  The on-instance roles are left out
(secure_launch_configure_instance: false; one VM cannot stand in for ten instances); every AWS,
Chef and Nessus step runs for real against the lab.  Prints the absolute times, the ratio and the
module calls per instance, counted from the run's task events (json callback): every module
execution (each loop item, each `until` attempt), apart from the Nessus status polls (their number
follows the scan's length and poll interval, not the batch), which are counted on their own.
Controller-side actions (set_fact, assert, include_*, add_host, debug) run no module and are not counted.
Asserts nothing.

    LAB_STATE_DIR=/tmp/lab-x lab/lab up && LAB_STATE_DIR=/tmp/lab-x .venv/bin/python bench/bench_batch.py
    BENCH_SCAN_SECONDS=20 ... (shorter simulated scans)   BENCH_SIZES=1,10 (the batch sizes)
    BENCH_KEEP_JSON=DIR (keep each run's json callback output there, to see where the time goes)

Measured 2026-11-29 on the shared 2-core machine (load average 6-10 from other work: absolute
times are inflated and noisy), 60 s scans, before = main at 4068b2b, after = this bench's branch:
    before: batch of 1 155.8 s, batch of 10 251.0 s, ratio 1.61, 18.7 module calls per instance
    after:  batch of 1 131.1 s, batch of 10 212.6 s, ratio 1.62, 14.8 module calls per instance
            (+ 2 scan status polls per instance: one line of progress per 30 s)
The batch of 10 spends most of its time in CPU contention (10 workers on 2 busy cores); see
bench/bench_batch.py's per-module counts for what is left per instance.
Then (2026-11-30, 30 s scans, two before/after pairs back to back in one lab, load average 5-8 from
other work): the plan play reads the batch's roles in one call (instance_role_info) and makes the key
bucket's KMS key once (volume_key state=bucket; before, the instances raced to make it, the losers
retried and left KMS keys without alias behind):
    before: 70.1 s / 126.4 s (1.80), 59.9 s / 126.4 s (2.11), 16.4 module calls per instance
    after:  70.5 s / 133.7 s (1.90), 58.9 s / 108.2 s (1.84), 15.1 module calls per instance
Per instance of a batch of 10, every module call then costs ~4-5 s of wall time (CPU contention);
the rest: ec2_instance 3 (launch, profile, promote), instance_role 2, launch_record 2, ec2_tag 2 (root
and data volume), nessus_scan 2 (+ polls), volume_key, ec2_vol, chef_node_info.
Then (2026-11-30, a quiet machine: load average below 1 before each run, 60 s scans, one lab):
instance_role associates the profile itself, one launch record per instance, instance_security_status
moves the groups and tags the instance and its volumes in one call, the launch of the scan watches its
first interval and the call that sees the run end evaluates it (nessus_scan evaluate), the Chef check
runs while the scan does, and a new launch skips the re-run and push-configuration files in one task:
    before (bbee47e): batch of 1 131.1 s / batch of 10 212.6 s (1.62, loaded machine), 15.2 module calls
                      + 1-2 polls per instance, 12.2-13.0 CPU s per instance
    after:  86.7 s / 117.4 s (1.35), 87.3 s / 114.0 s (1.31), 87.1 s / 113.8 s (1.31);
            10.2 module calls + 1 poll per instance, 8.7-9.1 CPU s per instance
Where the rest goes (batch of 10, per instance): before the scan ec2_instance, ec2_vol, volume_key,
launch_record, instance_role (about 4.5 CPU s: ten instances take ~23 s of the two cores before
their scans start, against ~4.5 s for one); after it instance_security_status and instance_role
(~6 s for ten). Next: the data volume in the launch's block device mappings (one EC2 call and the
data_volume role's tasks fewer), one boto3 session per module run for modules with several clients.
Then (2026-11-30, quiet machine, 60 s scans, one lab, same day as the last line): the data volume is
made by RunInstances itself (block device mapping) and marked as the instance's by one
instance_security_status call (volume_tags; ec2_vol and the data_volume role's five controller tasks
gone), volume_key writes the launch record in the same call (launch_record; the launch_record call
and its include gone), the role shrinks to its own key while the scan runs (the promotion then only
moves the instance: one module call fewer after the scan, when the ten scans end together), the
verdict's two checks are one task, and the verify and instance files are imported (static):
    before (f0f2905): 86.8 s / 113.0 s (1.30), 10.2 module calls + 1 poll, 8.7 CPU s per instance,
                      36 host tasks per instance (26 run, 10 skipped)
    after:            86.5 s / 106.4 s (1.23), 87.7 s / 108.0 s (1.23), 86.0 s / 107.9 s (1.25);
                      9.2 module calls + 1 poll, 8.2-8.3 CPU s per instance,
                      22 host tasks per instance (16 run, 6 skipped)
In a batch of 10 the instances now reach their scans 19 s after the plan play (3.5 s for one) and
the post-scan work takes ~5 s (1 s for one).
"""
import json
import os
import ssl
import subprocess
import sys
import tempfile
import collections
import time
import resource
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

from _lab import AWS, ansible_env, lab_env, moto_reset, s3_gateway_endpoint, secure_launch_lab_vars  # noqa: E402  pylint: disable=wrong-import-position

SCAN_SECONDS = float(os.environ.get("BENCH_SCAN_SECONDS", "60"))
POLL_SECONDS = float(os.environ.get("BENCH_POLL_SECONDS", "2"))
# actions that run on the controller without executing a module
NO_MODULE = {"set_fact", "assert", "debug", "include_tasks", "include_role", "import_tasks", "import_role",
             "add_host", "meta", "fail", "include_vars", "group_by", "pause", "set_stats", "validate_argument_spec"}
# the scan status polls: one module call per poll, as many as the scan lasts (the poll that sees the
# run end also evaluates it: nessus_scan evaluate=true)
POLL_TASKS = ("Scan the instance with Nessus - wait",)


def module_calls(data):
    """(calls, polls, per module) counted from the json callback's task events."""
    calls = collections.Counter()
    polls = 0
    for play in data.get("plays", []):
        for task in play["tasks"]:
            name = task["task"]["name"]
            for result in task["hosts"].values():
                action = str(result.get("action", "")).rsplit(".", 1)[-1]
                if action in NO_MODULE:
                    continue
                items = result.get("results") if isinstance(result.get("results"), list) else [result]
                count = 0
                for item in items:
                    if not isinstance(item, dict) or item.get("skipped"):
                        continue
                    count += int(item.get("attempts") or 1)
                if name.startswith(POLL_TASKS):
                    polls += count
                else:
                    calls[str(result.get("action"))] += count
    return sum(calls.values()), polls, calls


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


def lab_cpu(lab):
    """CPU seconds used so far by the lab's services (moto, the proxy, Chef, Nessus simulator)."""
    try:
        with open(os.path.join(lab["LAB_STATE_DIR"], "state.json")) as handle:
            services = json.load(handle).get("services", {})
    except (OSError, ValueError, KeyError):
        return 0.0
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for service in services.values():
        for pid in service.get("pids", []):
            try:
                with open("/proc/%d/stat" % pid) as handle:
                    fields = handle.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            # utime, stime, cutime, cstime (fields 14-17 of proc(5))
            total += sum(int(f) for f in fields[11:15]) / float(tick)
    return total


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
        "secure_launch_nessus_poll_interval": POLL_SECONDS,
        "secure_launch_instances": [{"name": n, "scan_targets": [n]} for n in names],
    })
    extra_file = os.path.join(workdir, "extra-%d.json" % size)
    with open(extra_file, "w") as handle:
        json.dump(extra, handle)
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), "-i", "localhost,", "-f", str(max(size, 1)),
           os.path.join(ROOT, "playbooks", "secure_launch.yml"), "-e", "@" + extra_file]
    start = time.monotonic()
    cpu_start, lab_start = children_cpu(), lab_cpu(lab)
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(lab, {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}),
                          capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    cpu = (children_cpu() - cpu_start, lab_cpu(lab) - lab_start)
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-2000:])
        raise SystemExit("batch of %d failed (rc %d)" % (size, proc.returncode))
    if os.environ.get("BENCH_KEEP_JSON"):
        with open(os.path.join(os.environ["BENCH_KEEP_JSON"], "batch-%d.json" % size), "w") as handle:
            handle.write(proc.stdout)
    calls, polls, per_module = module_calls(json.loads(proc.stdout))
    return wall, cpu, calls, polls, per_module


def report(size, wall, cpu, calls, polls, per_module):
    print("batch of %2d: %6.1f s  module calls %4d (%.1f per instance) + %d scan status polls"
          " (%.1f module executions per instance in all)"
          % (size, wall, calls, calls / float(size), polls, (calls + polls) / float(size)))
    print("    CPU: Ansible %.1f s (%.1f per instance), lab services %.1f s (%.1f per instance)"
          % (cpu[0], cpu[0] / size, cpu[1], cpu[1] / size))
    ranked = sorted(per_module.items(), key=lambda kv: -kv[1])
    parts = ["%s %.1f" % (name.split(".")[-1], count / float(size)) for name, count in ranked if count]
    print("    per instance: " + ", ".join(parts))


def main():
    lab = lab_env()
    if not lab or "LAB_NESSUS_URL" not in lab:
        raise SystemExit("bring the lab up first (lab/lab up), with the Nessus simulator")
    sizes = [int(n) for n in os.environ.get("BENCH_SIZES", "1,10").split(",")]
    print("simulated scan %.0f s, poll interval %.0f s" % (SCAN_SECONDS, POLL_SECONDS))
    walls = {}
    with tempfile.TemporaryDirectory() as workdir:
        for size in sizes:
            moto_reset(lab)
            walls[size], cpu, calls, polls, per_module = launch(lab, size, workdir)
            report(size, walls[size], cpu, calls, polls, per_module)
        moto_reset(lab)
    if len(sizes) > 1:
        ratio = walls[sizes[-1]] / walls[sizes[0]]
        print("ratio wall(%d)/wall(%d) = %.2f (goal <= 1.3: %s)"
              % (sizes[-1], sizes[0], ratio, "met" if ratio <= 1.3 else "NOT met"))


if __name__ == "__main__":
    main()
