"""The AWX job templates run the way AWX runs them: ansible-runner (the runner AWX executes jobs
with, pinned in requirements-dev.txt and in the EE) on a private data dir laid out as AWX lays it
out, against the lab.

What AWX would put there, from awx/configure.yml and awx/credential_types/:
- project/: the project checkout (playbooks/, roles/, ansible.cfg);
- inventory/hosts: the inventory as AWX writes it, an executable script printing JSON with the
  group variables and `_meta.hostvars` (localhost with the connection variables configure.yml sets);
- env/extravars: the job template's extra vars, the survey answers, and the extra vars the
  credentials inject; env/envvars: the env vars the credentials inject; env/cmdline: the forks;
- credentials rendered from the credential types' injectors with Jinja2 as AWX renders them
  (file templates written to files of the private data dir, mode 0600, named by tower.filename);
  AWX's own "Amazon Web Services" type injects AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
The collection comes from the tarball built here and installed into a path of its own, as in
the execution environment (awx/execution-environment.yml). The runner process gets no lab
variable in its environment: everything reaches the playbooks through AWX's channels.
"""
import glob
import gzip
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid

import psycopg2
import pytest
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from _lab import ROOT, chef_client, fresh_database, nessus_switch, s3_gateway_endpoint

BIN = os.path.join(ROOT, ".venv", "bin")
AWX = os.path.join(ROOT, "awx")
DEPS = os.path.join(ROOT, ".cache", "collections", "ansible_collections")
KEY_BUCKET = "awx-runner-keys"


def _configure():
    with open(os.path.join(AWX, "configure.yml")) as handle:
        return yaml.safe_load(handle)[0]


def _job_template(name):
    for task in _configure()["tasks"]:
        spec = task.get("awx.awx.job_template")
        if spec and spec["name"] == name:
            return spec
    raise AssertionError("no job template %s in awx/configure.yml" % name)


def _credential_type(name):
    for path in glob.glob(os.path.join(AWX, "credential_types", "*.yml")):
        with open(path) as handle:
            spec = yaml.safe_load(handle)
        if spec["name"] == name:
            return spec
    raise AssertionError("no credential type %s in awx/credential_types" % name)


def _inject(spec, inputs, private_data_dir):
    """(env, extra_vars) of a credential, rendered from its type's injectors as AWX does."""
    namespace = {}
    for field in spec["inputs"]["fields"]:
        default = field.get("default", False if field.get("type") == "boolean" else "")
        namespace[field["id"]] = inputs.get(field["id"], default)
    jinja = ImmutableSandboxedEnvironment()
    injectors = spec.get("injectors", {})
    filenames = {}
    for key, template in injectors.get("file", {}).items():
        handle, path = tempfile.mkstemp(prefix="awx_", dir=os.path.join(private_data_dir, "env"))
        with os.fdopen(handle, "w") as out:
            out.write(jinja.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        filenames[key.split(".", 1)[1] if "." in key else None] = path
    tower = {"filename": filenames.get(None) or {k: v for k, v in filenames.items() if k}}
    context = dict(namespace, tower=tower)
    env = {key: jinja.from_string(value).render(**context) for key, value in injectors.get("env", {}).items()}
    extra = {key: jinja.from_string(value).render(**context)
             for key, value in injectors.get("extra_vars", {}).items()}
    return env, extra


class AwxJob:
    """A private data dir as AWX lays it out for one job of a job template, and its run."""

    def __init__(self, root, template, collections):
        self.dir = str(root)
        self.template = _job_template(template)
        self.collections = collections
        for sub in ("env", "inventory", "artifacts"):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        project = os.path.join(self.dir, "project")
        os.makedirs(project)
        for name in ("playbooks", "roles"):
            shutil.copytree(os.path.join(ROOT, name), os.path.join(project, name))
        shutil.copy(os.path.join(ROOT, "ansible.cfg"), project)
        self.env = {}
        self.extra_vars = {}
        self.secrets = []

    def credential(self, type_name, inputs):
        assert type_name in self.template["credentials"] or type_name == "Amazon Web Services", type_name
        if type_name == "Amazon Web Services":
            env, extra = {"AWS_ACCESS_KEY_ID": inputs["username"], "AWS_SECRET_ACCESS_KEY": inputs["password"]}, {}
        else:
            spec = _credential_type(type_name)
            env, extra = _inject(spec, inputs, self.dir)
            self.secrets += [inputs[f["id"]] for f in spec["inputs"]["fields"] if f.get("secret") and f["id"] in inputs]
        self.env.update(env)
        self.extra_vars.update(extra)

    def inventory(self, inventory_vars, group_vars, host_vars):
        """AWX's inventory variables are the vars of `all`; localhost sits in a group "controller"."""
        data = {"all": {"children": ["controller"], "vars": inventory_vars},
                "controller": {"hosts": ["localhost"], "vars": group_vars},
                "_meta": {"hostvars": {"localhost": host_vars}}}
        path = os.path.join(self.dir, "inventory", "hosts")
        with open(path, "w") as handle:
            handle.write("#!%s\nimport json\nprint(json.dumps(%r))\n" % (sys.executable, data))
        os.chmod(path, 0o700)

    def survey(self, answers):
        """Survey answers, checked against the template's survey spec (required, choices, bounds)."""
        spec = {question["variable"]: question for question in self.template["survey_spec"]["spec"]}
        for variable, question in spec.items():
            if question.get("required"):
                assert variable in answers or "default" in question, variable
            value = answers.get(variable, question.get("default"))
            if question["type"] == "multiplechoice":
                assert value in question["choices"], (variable, value)
            if question["type"] in ("text", "textarea"):
                assert question.get("min", 0) <= len(value) <= question.get("max", 1024), (variable, value)
            if question["type"] == "integer":
                assert question.get("min", value) <= value <= question.get("max", value), (variable, value)
            answers.setdefault(variable, value)
        assert set(answers) <= set(spec), "not survey questions: %s" % (set(answers) - set(spec))
        return answers

    def run(self, template_extra_vars, survey_answers=None):
        extra = dict(template_extra_vars)
        extra.update(self.extra_vars)
        if self.template.get("survey_enabled"):
            extra.update(self.survey(dict(survey_answers or {})))
        with open(os.path.join(self.dir, "env", "extravars"), "w") as handle:
            json.dump(extra, handle)
        # as in the execution environment: the collection installed from the tarball
        envvars = dict(self.env, ANSIBLE_COLLECTIONS_PATH=self.collections, ANSIBLE_NOCOLOR="1")
        with open(os.path.join(self.dir, "env", "envvars"), "w") as handle:
            json.dump(envvars, handle)
        with open(os.path.join(self.dir, "env", "cmdline"), "w") as handle:
            handle.write("--forks %d" % self.template.get("forks", 5))
        # nothing of the lab in the runner's own environment
        process_env = {"PATH": BIN + os.pathsep + "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
                       "LANG": "C.UTF-8"}
        proc = subprocess.run([os.path.join(BIN, "ansible-runner"), "run", self.dir, "-p", self.template["playbook"],
                               "--ident", "job", "-j"], env=process_env, capture_output=True, text=True,
                              check=False, timeout=1200)
        artifacts = os.path.join(self.dir, "artifacts", "job")
        self.status = open(os.path.join(artifacts, "status")).read().strip()
        self.rc = int(open(os.path.join(artifacts, "rc")).read().strip())
        self.stdout = open(os.path.join(artifacts, "stdout")).read()
        self.events = []
        for path in sorted(glob.glob(os.path.join(artifacts, "job_events", "*.json"))):
            with open(path) as handle:
                self.events.append(json.load(handle))
        self.runner_output = proc.stdout[-6000:] + proc.stderr[-3000:]
        return self

    def task_results(self, task_name):
        return [event["event_data"]["res"] for event in self.events
                if event.get("event") in ("runner_on_ok", "runner_on_failed")
                and event["event_data"].get("task") == task_name]

    def output(self):
        return self.stdout[-8000:] + self.runner_output


@pytest.fixture(scope="module")
def ee_collections(tmp_path_factory):
    """The tarball built here, installed into a path of its own, and the dependencies beside it."""
    dist = tmp_path_factory.mktemp("dist")
    installed = tmp_path_factory.mktemp("ee-collections")
    config = dist / "ansible.cfg"
    config.write_text("[defaults]\n")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(config), ANSIBLE_COLLECTIONS_PATH=str(installed))
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", ROOT, "--output-path", str(dist)],
                   env=env, cwd=str(dist), check=True, capture_output=True, timeout=300)
    (tarball,) = glob.glob(str(dist / "*.tar.gz"))
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", tarball, "-p", str(installed),
                    "--no-deps"], env=env, cwd=str(dist), check=True, capture_output=True, timeout=300)
    galaxy = yaml.safe_load(open(os.path.join(ROOT, "galaxy.yml")))
    for name in galaxy["dependencies"]:
        namespace, collection = name.split(".")
        os.makedirs(installed / "ansible_collections" / namespace, exist_ok=True)
        os.symlink(os.path.join(DEPS, namespace, collection), installed / "ansible_collections" / namespace / collection)
    assert (installed / "ansible_collections" / "cloudefigo" / "core" / "MANIFEST.json").exists()
    return str(installed)


def _host_vars():
    # what configure.yml gives localhost, with this venv's Python standing in for the EE's
    host = None
    for task in _configure()["tasks"]:
        if "awx.awx.host" in task:
            host = dict(task["awx.awx.host"]["variables"])
    assert host and host["ansible_connection"] == "local"
    host["ansible_python_interpreter"] = sys.executable
    return host


def _aws_location(lab):
    # what an AWX admin sets on the controller inventory: where AWS is (moto here), which region
    # and, the lab's goiardi being plain http, the explicit allowance for it
    return {"cloudefigo_aws_endpoint_url": lab["LAB_AWS_ENDPOINT"], "cloudefigo_aws_region": "us-east-1",
            "cloudefigo_chef_allow_insecure_http": True}


def _aws_credential(job):
    job.credential("Amazon Web Services", {"username": "testing", "password": "testing"})


def _chef_credential(job, lab):
    with open(lab["LAB_CHEF_KEY"]) as handle:
        key = handle.read()
    job.credential("Cloudefigo Chef server", {"server_url": lab["LAB_CHEF_URL"], "client_name": lab["LAB_CHEF_USER"],
                                              "client_key": key})
    return key


def _tags(resource):
    return {tag["Key"]: tag["Value"] for tag in resource.get("Tags", [])}


def test_secure_launch_job_fails_closed_when_the_scan_fails(lab, aws, ee_collections, tmp_path):
    """The "Cloudefigo secure launch" template with its survey: the scan of the new instance is
    aborted (simulator switch), so the job fails and the instance stays in remediation."""
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    name = "awx-%s" % uuid.uuid4().hex[:8]
    target = "target-%s" % name
    nessus_switch(lab, target, {"outcome": "aborted"})
    # what the AWS account has: an S3 gateway endpoint in the instances' VPC (the launch checks it)
    s3_gateway_endpoint(aws.client("ec2"))
    # the instance is not configured here (no VM): its Chef node exists already, as the fault matrix does
    chef_client(lab).request("POST", "/nodes", data={
        "name": name, "json_class": "Chef::Node", "chef_type": "node", "chef_environment": "_default",
        "run_list": [], "normal": {}, "default": {}, "override": {}, "automatic": {}})
    try:
        job = AwxJob(tmp_path / "job", "Cloudefigo secure launch", ee_collections)
        # inventory variables: the plays on the hosts add_host makes see them too (they are in `all`)
        job.inventory(_aws_location(lab), {}, _host_vars())
        _aws_credential(job)
        _chef_credential(job, lab)
        with open(lab["LAB_NESSUS_CA"]) as handle:
            job.credential("Cloudefigo Nessus", {"url": lab["LAB_NESSUS_URL"], "access_key": lab["LAB_NESSUS_ACCESS_KEY"],
                                                 "secret_key": lab["LAB_NESSUS_SECRET_KEY"], "ca_cert": handle.read()})
        # the template's extra vars (cloudefigo_awx_secure_launch_vars): fleet-wide settings, named
        # as playbooks/vars/secure_launch.example.yml documents them
        template_vars = {
            "secure_launch_key_bucket": KEY_BUCKET,
            # moto cannot evaluate the conditioned Deny statements (the lab switch)
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": str(tmp_path / "reports"),
            "secure_launch_configure_instance": False,
            "secure_launch_chef_require_converged": False,
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_instance_defaults": {
                "image_id": "{{ secure_launch_image_id }}", "instance_type": "{{ secure_launch_instance_type }}",
                "subnet_id": "", "key_name": "", "user_data": "", "tags": {},
                "data_volume_size": "{{ secure_launch_data_volume_size }}", "data_volume_type": "gp3",
                "data_volume_iops": 0, "data_mount_point": "/data", "chef_run_list": [], "chef_environment": "",
                # what the scanner is pointed at (the simulator's switch is keyed on it)
                "scan_targets": [target]},
        }
        job.run(template_vars, survey_answers={
            "secure_launch_names": name, "secure_launch_instance_type": "t3.micro",
            "secure_launch_image_id": "ami-1e749f67", "secure_launch_data_volume_size": 2,
            "secure_launch_nessus_fail_on": "high"})
    finally:
        chef_client(lab).request("DELETE", "/nodes/%s" % name, missing_ok=True)
        chef_client(lab).request("DELETE", "/clients/%s" % name, missing_ok=True)

    assert job.status == "failed" and job.rc != 0, job.output()
    assert "NOT promoted" in job.stdout, job.output()
    # the scan was reached over TLS with the injected CA, and its abort is the reason
    # (the launch or the poll that saw the run end evaluated it: aborted, not passed)
    launches = job.task_results("Scan the instance with Nessus - launch the scan")
    polls = job.task_results("Scan the instance with Nessus - wait, showing status and progress")
    ended = [res for res in launches + [item for poll in polls for item in poll.get("results", [])] if res.get("ended")]
    assert ended and ended[-1].get("scan_status") == "aborted" and ended[-1]["passed"] is False, (launches, polls)

    ec2 = aws.client("ec2")
    reservations = ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])["Reservations"]
    instances = [instance for reservation in reservations for instance in reservation["Instances"]]
    assert len(instances) == 1, instances
    instance = instances[0]
    tags = _tags(instance)
    assert tags["SecurityStatus"] == "remediation", tags
    assert tags["SecurityReason"].startswith("Scan the instance with Nessus"), tags
    # the survey's answers reached the launch
    assert instance["InstanceType"] == "t3.micro"
    # contained: the isolation group only (no rule in or out)
    assert {group["GroupName"] for group in instance["SecurityGroups"]} == {"cloudefigo-isolation"}
    # the credentials' secrets stay out of the job's output
    for secret in job.secrets:
        for line in secret.strip().splitlines()[1:2] or [secret]:
            assert line not in job.stdout


CLOUDTRAIL_EVENTS = 7


def _cloudtrail_file(s3, bucket):
    """One CloudTrail log file of CLOUDTRAIL_EVENTS events, where CloudTrail writes it."""
    records = [{"eventVersion": "1.08", "eventID": str(uuid.uuid4()), "eventTime": "2026-11-29T10:00:%02dZ" % i,
                "eventSource": "iam.amazonaws.com", "eventName": "ListUsers", "awsRegion": "us-east-1",
                "sourceIPAddress": "203.0.113.%d" % (i + 1), "userAgent": "test",
                "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::123456789012:user/alice",
                                 "accountId": "123456789012", "accessKeyId": "AKIAEXAMPLE"},
                "recipientAccountId": "123456789012", "eventType": "AwsApiCall"}
               for i in range(CLOUDTRAIL_EVENTS)]
    s3.create_bucket(Bucket=bucket)
    key = "AWSLogs/123456789012/CloudTrail/us-east-1/2026/11/29/123456789012_CloudTrail_us-east-1_20261129T1000Z_x.json.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(json.dumps({"Records": records}).encode()))


def test_audit_job_reports_and_loads_the_siem(lab, aws, ee_collections, tmp_path):
    """The "Cloudefigo audit" template: Chef and SIEM credentials injected as their types say."""
    ec2 = aws.client("ec2")
    shadow = ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1, InstanceType="t3.small")
    shadow_id = shadow["Instances"][0]["InstanceId"]
    _cloudtrail_file(aws.client("s3"), "awx-audit-trail")
    with fresh_database(lab, "awx_audit") as siem:
        job = AwxJob(tmp_path / "job", "Cloudefigo audit", ee_collections)
        # the endpoint as an inventory variable, the region as a variable of localhost's group
        location = _aws_location(lab)
        job.inventory({"cloudefigo_aws_endpoint_url": location["cloudefigo_aws_endpoint_url"],
                       "cloudefigo_chef_allow_insecure_http": True},
                      {"cloudefigo_aws_region": location["cloudefigo_aws_region"]}, _host_vars())
        _aws_credential(job)
        _chef_credential(job, lab)
        with open(lab["LAB_NESSUS_CA"]) as handle:
            ca = handle.read()
        # the lab's PostgreSQL has no TLS: the CA is injected and passed on, libpq ignores it with disable
        job.credential("Cloudefigo SIEM PostgreSQL", {
            "host": siem["host"], "port": str(siem["port"]), "username": siem["user"], "password": "unused-by-trust",
            "database": siem["dbname"], "ssl_mode": "disable", "ca_cert": ca})
        report_dir = tmp_path / "report"
        job.run({"audit_regions": ["us-east-1"], "audit_cloudtrail_bucket": "awx-audit-trail",
                 "audit_report_dir": str(report_dir)})
        assert job.status == "successful" and job.rc == 0, job.output()

        with psycopg2.connect(**siem) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM cloudtrail.events WHERE event_name = 'ListUsers'")
            (events,) = cursor.fetchone()
        connection.close()
    assert events == CLOUDTRAIL_EVENTS

    found = job.task_results("Find the instances Chef does not manage")
    assert shadow_id in {item["instance_id"] for item in found[0]["unmanaged"]}, found
    loaded = job.task_results("Load CloudTrail into the SIEM database")[0]
    args = loaded["invocation"]["module_args"]
    # the SIEM credential's fields reached cloudtrail_ingest's community.postgresql-named options
    assert args["login_db"] == siem["dbname"] and args["login_port"] == siem["port"]
    assert args["ssl_mode"] == "disable" and args["ca_cert"].startswith(os.path.join(job.dir, "env"))
    assert args["login_password"] != "unused-by-trust"
    assert "unused-by-trust" not in job.stdout
    assert shadow_id in (report_dir / "audit-report.html").read_text()
