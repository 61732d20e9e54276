"""Benchmark: unmanaged_instances on 5,000 EC2 instances x 5,000 Chef nodes.

Runs against the lab whose env is loaded (bench/run under tools/with-lab.sh, or
LAB_STATE_DIR=... for a lab of your own).  Seeds moto (two regions, several instances per
reservation) and goiardi (threads), then measures in the same run:

  floor  describe_instances pagination in both regions + ONE partial search with rows=all,
         raw boto3 / one signed request, nothing else
  audit  the module's main() in-process (argument parsing, both regions, paged partial search,
         matching, JSON output), its Chef requests counted by instrumenting ChefClient.request

Goals: <= 2 Chef requests per 5,000 nodes; audit wall time <= 1.3x the floor.
"""
import contextlib
import io
import json
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, ".cache", "collections"))

import boto3  # noqa: E402

from ansible.module_utils.testing import patch_module_args  # noqa: E402
from ansible_collections.cloudefigo.core.plugins.module_utils import _chef  # noqa: E402
from ansible_collections.cloudefigo.core.plugins.modules import unmanaged_instances  # noqa: E402

INSTANCES = {"us-east-1": 4000, "eu-west-1": 1000}
RESERVATION = 250          # instances per run_instances call: several per reservation
NODES = 5000
UNMANAGED = 100            # instances left without a node; as many nodes get no instance
STALE = 250
AMI = "ami-03cf127a"
GOAL_REQUESTS, GOAL_WALL = 2, 1.3
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
# the audit's default states: the floor reads the same instances (a reused lab keeps terminated ones)
STATE_FILTER = [{"Name": "instance-state-name", "Values": ["pending", "running", "stopping", "stopped"]}]


def lab_env():
    env = dict(os.environ)
    if "LAB_CHEF_URL" not in env:
        state = env.get("LAB_STATE_DIR") or os.path.join(ROOT, "lab", ".state")
        with open(os.path.join(state, "lab.json")) as handle:
            env.update(json.load(handle))
    return env


def seed_instances(endpoint):
    ids = {}
    for region, count in INSTANCES.items():
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=endpoint,
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        sizes = [RESERVATION] * (count // RESERVATION) + ([count % RESERVATION] if count % RESERVATION else [])
        with ThreadPoolExecutor(4) as pool:
            answers = pool.map(lambda size: ec2.run_instances(ImageId=AMI, MinCount=size, MaxCount=size,
                                                              InstanceType="t3.micro")["Instances"], sizes)
            ids[region] = [instance["InstanceId"] for batch in answers for instance in batch]
    return ids


def seed_nodes(env, prefix, instance_ids):
    now = time.time()
    key = open(env["LAB_CHEF_KEY"]).read()
    managed = instance_ids[:NODES - UNMANAGED]
    targets = managed + ["i-%017x" % index for index in range(UNMANAGED)]   # the last ones: no instance

    def chunk(indexes):
        chef = _chef.ChefClient(env["LAB_CHEF_URL"], env["LAB_CHEF_USER"], key)
        for index in indexes:
            ohai_time = now - (7200 if index < STALE else 60)
            chef.post("/nodes", {"name": "%s-%05d" % (prefix, index), "chef_type": "node", "json_class": "Chef::Node",
                                 "chef_environment": "_default", "run_list": ["role[base]"],
                                 "automatic": {"ohai_time": ohai_time, "ec2": {"instance_id": targets[index]},
                                               "fqdn": "node-%05d.example" % index, "hostname": "node-%05d" % index},
                                 "normal": {}, "default": {}, "override": {}})
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(chunk, [range(start, NODES, 8) for start in range(8)]))


def delete_nodes(env, prefix):
    key = open(env["LAB_CHEF_KEY"]).read()

    def chunk(indexes):
        chef = _chef.ChefClient(env["LAB_CHEF_URL"], env["LAB_CHEF_USER"], key)
        for index in indexes:
            chef.delete("/nodes/%s-%05d" % (prefix, index))
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(chunk, [range(start, NODES, 8) for start in range(8)]))


def floor(env, query):
    start = time.perf_counter()
    count = 0
    for region in INSTANCES:
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=env["LAB_AWS_ENDPOINT"],
                           aws_access_key_id="testing", aws_secret_access_key="testing")
        pages = ec2.get_paginator("describe_instances").paginate(Filters=STATE_FILTER, PaginationConfig={"PageSize": 1000})
        for page in pages:
            count += sum(len(reservation["Instances"]) for reservation in page["Reservations"])
    aws_done = time.perf_counter()
    chef = _chef.ChefClient(env["LAB_CHEF_URL"], env["LAB_CHEF_USER"], open(env["LAB_CHEF_KEY"]).read())
    rows = chef.request("POST", "/search/node", params={"q": query, "rows": NODES * 2, "start": 0},
                        data=unmanaged_instances.NODE_FIELDS)["rows"]
    end = time.perf_counter()
    return end - start, aws_done - start, end - aws_done, count, len(rows)


def audit(env, query):
    calls = {"n": 0}
    original = _chef.ChefClient.request

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)
    _chef.ChefClient.request = counting
    args = {"chef_server_url": env["LAB_CHEF_URL"], "client_name": env["LAB_CHEF_USER"],
            "client_key": env["LAB_CHEF_KEY"], "allow_insecure_http": env["LAB_CHEF_URL"].startswith("http://"),
            "endpoint_url": env["LAB_AWS_ENDPOINT"], "access_key": "testing",
            "secret_key": "testing", "region": "us-east-1", "regions": list(INSTANCES), "node_query": query,
            "stale_after": 3600}
    out = io.StringIO()
    start = time.perf_counter()
    try:
        with patch_module_args(args), contextlib.redirect_stdout(out):
            try:
                unmanaged_instances.main()
            except SystemExit:
                pass
    finally:
        _chef.ChefClient.request = original
    wall = time.perf_counter() - start
    return wall, calls["n"], json.loads(out.getvalue())


def main():
    env = lab_env()
    prefix = "bench-%s" % uuid.uuid4().hex[:8]
    query = "name:%s-*" % prefix
    t0 = time.perf_counter()
    ids = seed_instances(env["LAB_AWS_ENDPOINT"])
    t1 = time.perf_counter()
    seed_nodes(env, prefix, ids["us-east-1"] + ids["eu-west-1"])
    t2 = time.perf_counter()
    print("seeded %d instances in %.1fs, %d nodes in %.1fs (8 threads)"
          % (sum(len(v) for v in ids.values()), t1 - t0, NODES, t2 - t1))
    try:
        floors, audits = [], []
        # interleaved and repeated: the lab shares two cores with other work, so single runs are noisy
        for dummy in range(REPEAT):
            floors.append(floor(env, query))
            audits.append(audit(env, query))
        wall, requests, result = audits[-1]
        assert result.get("failed") is not True, result.get("msg")
        totals = result["totals"]
        assert totals["instances"] == sum(INSTANCES.values()) and totals["nodes"] == NODES, totals
        assert totals["unmanaged"] == UNMANAGED and totals["stale"] == STALE, totals
        assert len(set(a[1] for a in audits)) == 1
        per_5000 = requests * 5000.0 / NODES
        best = min(floors)
        print("floor (best): %.2fs = describe_instances %.2fs for %d instances + one partial search %.2fs for %d rows"
              % (best[0], best[1], best[3], best[2], best[4]))
        print("audit: %d Chef requests, totals %s" % (requests, json.dumps(totals, sort_keys=True)))
        print("runs floor/audit (s): %s" % ", ".join("%.2f/%.2f" % (f[0], a[0]) for f, a in zip(floors, audits)))
        ratios = sorted(a[0] / f[0] for f, a in zip(floors, audits))
        ratio = ratios[len(ratios) // 2]
        print("chef requests per 5,000 nodes: %.1f (goal <= %d) -> %s"
              % (per_5000, GOAL_REQUESTS, "OK" if per_5000 <= GOAL_REQUESTS else "MISSED"))
        print("wall / floor, median of %d paired runs: %.2fx (min %.2fx, best/best %.2fx; goal <= %.1fx) -> %s"
              % (REPEAT, ratio, ratios[0], min(a[0] for a in audits) / best[0], GOAL_WALL,
                 "OK" if ratio <= GOAL_WALL else "MISSED"))
        return 0 if per_5000 <= GOAL_REQUESTS and ratio <= GOAL_WALL else 1
    finally:
        delete_nodes(env, prefix)
        for region, instance_ids in ids.items():
            ec2 = boto3.client("ec2", region_name=region, endpoint_url=env["LAB_AWS_ENDPOINT"],
                               aws_access_key_id="testing", aws_secret_access_key="testing")
            for start in range(0, len(instance_ids), 1000):
                ec2.terminate_instances(InstanceIds=instance_ids[start:start + 1000])


if __name__ == "__main__":
    sys.exit(main())
