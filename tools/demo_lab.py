"""The lab-side steps of `make demo` (tools/demo.sh): prepare, rogue, summary.

    python3 tools/demo_lab.py prepare    # trail + evidence buckets, the sample trail, Chef node, Nessus switch
    python3 tools/demo_lab.py rogue      # an instance launched around the secure launch (boto3, via the proxy)
    python3 tools/demo_lab.py summary --launch-rc N

Reads the lab's environment (lab.env: LAB_AWS_ENDPOINT, LAB_AWS_PROXY_ENDPOINT, LAB_CHEF_*,
LAB_NESSUS_*, LAB_PG_*) and LAB_STATE_DIR.  The summary exits 1 when the demo did not show what it
promises (a pass, a contained failure, a quarantined rogue, real and synthetic CloudTrail events,
the report), so a broken demo never looks like a working one.
"""
import argparse
import glob
import json
import os
import re
import ssl
import sys
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_TRAIL = os.path.join(ROOT, "tests", "data", "cloudtrail", "invictus-ir")
TRAIL_BUCKET = "cloudefigo-demo-trail"
EVIDENCE_BUCKET = "cloudefigo-demo-evidence"
FAILING_INSTANCE = "demo-app-2"
ROGUE_NAME = "rogue-miner"
SAMPLE_NAME = re.compile(r"^(\d{12})_CloudTrail_([a-z0-9-]+)_(\d{4})(\d{2})(\d{2})T\d{4}Z_\w+\.json\.gz$")


def _env(name):
    value = os.environ.get(name)
    if not value:
        sys.exit("demo: %s is not set (source the lab's lab.env)" % name)
    return value


def _client(service, proxy=False):
    import boto3  # pylint: disable=import-outside-toplevel
    endpoint = _env("LAB_AWS_PROXY_ENDPOINT" if proxy else "LAB_AWS_ENDPOINT")
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def sample_key(filename):
    """The AWSLogs key CloudTrail would have given a sample file, from its name."""
    match = SAMPLE_NAME.match(filename)
    if not match:
        return None
    account, region, year, month, day = match.groups()
    return "AWSLogs/%s/CloudTrail/%s/%s/%s/%s/%s" % (account, region, year, month, day, filename)


def prepare():
    s3 = _client("s3")
    for bucket in (TRAIL_BUCKET, EVIDENCE_BUCKET):
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass
    loaded = 0
    for path in sorted(glob.glob(os.path.join(SAMPLE_TRAIL, "*.json.gz"))):
        key = sample_key(os.path.basename(path))
        if key:
            with open(path, "rb") as handle:
                s3.put_object(Bucket=TRAIL_BUCKET, Key=key, Body=handle.read())
            loaded += 1
    print("demo: %d sample CloudTrail files (invictus-ir) in s3://%s/AWSLogs/" % (loaded, TRAIL_BUCKET))

    # the lab has no chef-client for an instance without a VM: its node exists, the lab hook
    # reports its converge, as for the VM's node
    from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefClient  # pylint: disable=import-outside-toplevel
    with open(_env("LAB_CHEF_KEY"), "rb") as handle:
        chef = ChefClient(_env("LAB_CHEF_URL"), _env("LAB_CHEF_USER"), handle.read())
    if chef.request("GET", "/nodes/%s" % FAILING_INSTANCE, missing_ok=True) is None:
        chef.request("POST", "/nodes", data={
            "name": FAILING_INSTANCE, "json_class": "Chef::Node", "chef_type": "node",
            "chef_environment": "_default", "run_list": [], "normal": {}, "default": {}, "override": {},
            "automatic": {}})

    # the simulator answers scans of this target with a real report holding critical findings
    context = ssl.create_default_context(cafile=_env("LAB_NESSUS_CA"))
    body = json.dumps({"targets": {FAILING_INSTANCE: {"report": "dojo_nessus_with_cvssv3.nessus"}}}).encode()
    request = urllib.request.Request(_env("LAB_NESSUS_URL") + "/_sim/config", data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "X-Sim-Token": _env("LAB_NESSUS_ADMIN_TOKEN")})
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        response.read()
    print("demo: Nessus scans of %s will report critical findings" % FAILING_INSTANCE)


def rogue():
    # through the proxy: the launch is recorded and shows up as a synthetic RunInstances event
    ec2 = _client("ec2", proxy=True)
    answer = ec2.run_instances(ImageId="ami-1e749f67", InstanceType="t3.micro", MinCount=1, MaxCount=1,
                               TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                   {"Key": "Name", "Value": ROGUE_NAME}, {"Key": "Owner", "Value": "nobody"}]}])
    instance_id = answer["Instances"][0]["InstanceId"]
    print("demo: rogue instance %s (%s) launched without the secure launch: no role, no key, no Chef node"
          % (instance_id, ROGUE_NAME))


def _instances(ec2, **kwargs):
    reservations = ec2.describe_instances(**kwargs)["Reservations"]
    return [i for r in reservations for i in r["Instances"]]


def _describe(instance):
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    groups = ", ".join(g["GroupName"] for g in instance.get("SecurityGroups", [])) or "none"
    return tags, groups


def _cloudtrail_counts():
    import psycopg2  # pylint: disable=import-outside-toplevel
    connection = psycopg2.connect(host=_env("LAB_PG_HOST"), port=int(_env("LAB_PG_PORT")),
                                  user=_env("LAB_PG_USER"), dbname=_env("LAB_PG_DB"))
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FILTER (WHERE record->'additionalEventData'->>'cloudefigo:synthetic' = 'true'),"
                           " count(*) FROM cloudtrail.events")
            synthetic, total = cursor.fetchone()
    finally:
        connection.close()
    return total - synthetic, synthetic


def summary(launch_rc):
    state = _env("LAB_STATE_DIR")
    problems = []
    ec2 = _client("ec2")
    with open(os.path.join(state, "secure_launch", "summary.json")) as handle:
        launch = json.load(handle)
    print("demo: secure launch %s (playbook exit code %s)" % (launch["launch_id"], launch_rc))
    statuses = {}
    for item in launch["instances"]:
        live = _instances(ec2, InstanceIds=[item["instance_id"]]) if item["instance_id"] else []
        tags, groups = _describe(live[0]) if live else ({}, "?")
        statuses[item["name"]] = item["status"]
        print("demo:   %-11s %-20s %-11s groups: %s" % (item["name"], item["instance_id"] or "-", item["status"].upper(), groups))
        outcome = "passed" if item["status"] == "production" else "reason: " + tags.get("SecurityReason", item["reason"])[:110]
        print("demo:       scan %s; role %s; %s" % (item["scan_verdict"], item["role_stage"], outcome))
    if sorted(statuses.values()) != ["production", "remediation"]:
        problems.append("expected one instance in production and one contained, got %s" % statuses)

    rogues = _instances(ec2, Filters=[{"Name": "tag:Name", "Values": [ROGUE_NAME]}])
    for instance in rogues:
        tags, groups = _describe(instance)
        status = tags.get("SecurityStatus", "not quarantined")
        print("demo:   %-11s %-20s %-11s groups: %s" % (ROGUE_NAME, instance["InstanceId"], status.upper(), groups))
        if status != "quarantined":
            problems.append("the rogue instance %s was not quarantined" % instance["InstanceId"])
    if not rogues:
        problems.append("no rogue instance found")
    evidence = _client("s3").list_objects_v2(Bucket=EVIDENCE_BUCKET).get("KeyCount", 0)
    print("demo:   quarantine evidence: %d object(s) in s3://%s" % (evidence, EVIDENCE_BUCKET))

    real, synthetic = _cloudtrail_counts()
    print("demo: CloudTrail events in PostgreSQL: %d from the sample trail, %d synthetic (the lab's own API calls)"
          % (real, synthetic))
    if not real or not synthetic:
        problems.append("CloudTrail: %d real, %d synthetic events loaded" % (real, synthetic))

    report = os.path.join(state, "audit", "audit-report.html")
    if os.path.isfile(report):
        print("demo: audit report file://%s" % report)
    else:
        problems.append("no report at %s" % report)
    for problem in problems:
        print("demo: UNEXPECTED: %s" % problem)
    return 1 if problems else 0


def main():
    parser = argparse.ArgumentParser(description="lab-side steps of make demo")
    parser.add_argument("step", choices=["prepare", "rogue", "summary"])
    parser.add_argument("--launch-rc", default="?")
    args = parser.parse_args()
    if args.step == "prepare":
        prepare()
    elif args.step == "rogue":
        rogue()
    else:
        return summary(args.launch_rc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
