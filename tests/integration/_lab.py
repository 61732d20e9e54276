"""Helpers for integration tests: the lab's env, moto reset, boto3 clients, ansible-playbook runs."""
import contextlib
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lab_env():
    state = os.path.abspath(os.environ.get("LAB_STATE_DIR") or os.path.join(ROOT, "lab", ".state"))
    path = os.path.join(state, "lab.json")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


def moto_post(lab, path, body=b"", content_type="text/plain"):
    req = urllib.request.Request(lab["LAB_AWS_ENDPOINT"] + path, data=body, method="POST",
                                 headers={"Content-Type": content_type})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.read()


def moto_reset(lab):
    # turn IAM enforcement off first (a previous test may have left it on), then empty everything
    moto_post(lab, "/moto-api/reset-auth", b"inf")
    moto_post(lab, "/moto-api/reset")


def secure_launch_lab_vars(lab):
    """The extra vars that point playbooks/secure_launch.yml at the lab's AWS, Chef and Nessus."""
    return {
        "cloudefigo_aws_region": "us-east-1",
        "cloudefigo_aws_endpoint_url": lab["LAB_AWS_ENDPOINT"],
        "cloudefigo_chef_server_url": lab["LAB_CHEF_URL"],
        "cloudefigo_chef_client_name": lab["LAB_CHEF_USER"],
        "cloudefigo_chef_client_key": lab["LAB_CHEF_KEY"],
        # goiardi listens on plain http: allowed explicitly (refused by default)
        "cloudefigo_chef_allow_insecure_http": lab["LAB_CHEF_URL"].startswith("http://"),
        "cloudefigo_nessus_url": lab["LAB_NESSUS_URL"],
        "cloudefigo_nessus_access_key": lab["LAB_NESSUS_ACCESS_KEY"],
        "cloudefigo_nessus_secret_key": lab["LAB_NESSUS_SECRET_KEY"],
        "cloudefigo_nessus_ca_path": lab["LAB_NESSUS_CA"],
    }


def s3_gateway_endpoint(ec2, region="us-east-1"):
    """Route moto's default VPC to S3 through a gateway endpoint (secure_launch.yml checks for one)."""
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    service = "com.amazonaws.%s.s3" % region
    found = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                                {"Name": "service-name", "Values": [service]}])["VpcEndpoints"]
    if found:
        return found[0]["VpcEndpointId"]
    tables = [t["RouteTableId"] for t in ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}])["RouteTables"]]
    return ec2.create_vpc_endpoint(VpcId=vpc, ServiceName=service, VpcEndpointType="Gateway",
                                   RouteTableIds=tables)["VpcEndpoint"]["VpcEndpointId"]


class AWS:
    """boto3 clients against the lab's moto server."""

    def __init__(self, lab, region="us-east-1"):
        import boto3
        self.endpoint = lab["LAB_AWS_ENDPOINT"]
        self.region = region
        self._boto3 = boto3

    def client(self, service, region=None, **creds):
        creds.setdefault("aws_access_key_id", "testing")
        creds.setdefault("aws_secret_access_key", "testing")
        return self._boto3.client(service, endpoint_url=self.endpoint, region_name=region or self.region, **creds)


class PlaybookResult:
    def __init__(self, proc, data):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.data = data

    def stats(self, host="localhost"):
        return self.data["stats"][host] if self.data else {}

    def task_results(self, name, host="localhost"):
        out = []
        for play in (self.data or {}).get("plays", []):
            for task in play["tasks"]:
                if task["task"]["name"] == name and host in task["hosts"]:
                    out.append(task["hosts"][host])
        return out


def ansible_env(lab, extra=None):
    env = dict(os.environ)
    env.update(lab)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg"),
        "ANSIBLE_COLLECTIONS_PATH": os.path.join(ROOT, ".cache", "collections"),
        "ANSIBLE_ROLES_PATH": os.path.join(ROOT, "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable,
    })
    env.update(extra or {})
    return env


def run_playbook(lab, playbook, extra_vars=None, check=False, inventory=None, env=None, args=(), json_output=True):
    """Run ansible-playbook for real; returns rc, output and (json callback) per-task results."""
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), playbook]
    state = lab["LAB_STATE_DIR"]
    cmd += ["-e", "@" + os.path.join(state, "lab_vars.yml")]
    if extra_vars:
        handle = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, dir=state)
        json.dump(extra_vars, handle)
        handle.close()
        cmd += ["-e", "@" + handle.name]
    if check:
        cmd.append("--check")
    cmd += ["-i", inventory or "localhost,"]
    cmd += list(args)
    extra_env = {"ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"} if json_output else {}
    extra_env.update(env or {})
    proc = subprocess.run(cmd, cwd=ROOT, env=ansible_env(lab, extra_env), capture_output=True, text=True, check=False,
                          timeout=1800)
    data = None
    if json_output:
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            data = None
    return PlaybookResult(proc, data)


@contextlib.contextmanager
def fresh_database(lab, prefix):
    """A new, empty database in the lab's PostgreSQL (dropped afterwards): psycopg2 connect kwargs."""
    import psycopg2
    from psycopg2 import sql
    name = "%s_%s" % (prefix, uuid.uuid4().hex[:12])
    params = {"host": lab["LAB_PG_HOST"], "port": int(lab["LAB_PG_PORT"]), "user": lab["LAB_PG_USER"]}
    admin = psycopg2.connect(dbname=lab["LAB_PG_DB"], **params)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield dict(params, dbname=name)
    finally:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.close()


def run_module(name, args, timeout=300):
    """Run one cloudefigo.core module as Ansible does (JSON args in, JSON result out): no playbook."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    try:
        env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, ".cache", "collections"))
        proc = subprocess.run([sys.executable, "-m", "ansible_collections.cloudefigo.core.plugins.modules.%s" % name,
                               handle.name], capture_output=True, text=True, env=env, timeout=timeout, check=False)
    finally:
        os.unlink(handle.name)
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module %s printed no JSON:\n%s\n%s" % (name, proc.stdout, proc.stderr))


def run_aws_module(lab, name, **args):
    """run_module() with the lab's AWS connection options."""
    return run_module(name, dict({"endpoint_url": lab["LAB_AWS_ENDPOINT"], "access_key": "testing",
                                  "secret_key": "testing", "region": "us-east-1"}, **args))


def chef_client(lab):
    """A Chef API client of the lab's goiardi, as its admin user."""
    from ansible_collections.cloudefigo.core.plugins.module_utils._chef import ChefClient
    with open(lab["LAB_CHEF_KEY"], "rb") as handle:
        return ChefClient(lab["LAB_CHEF_URL"], lab["LAB_CHEF_USER"], handle.read())


def nessus_switch(lab, target, behaviour):
    ctx = ssl.create_default_context(cafile=lab["LAB_NESSUS_CA"])
    req = urllib.request.Request(lab["LAB_NESSUS_URL"] + "/_sim/config",
                                 data=json.dumps({"targets": {target: behaviour}}).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          "X-Sim-Token": lab["LAB_NESSUS_ADMIN_TOKEN"]})
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
        resp.read()


def poll(check, timeout=20.0, interval=0.1):
    """check()'s first truthy value, called every interval seconds; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not reached within %ss (last: %r)" % (timeout, value))
        time.sleep(interval)
