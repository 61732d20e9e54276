"""The controller's own IAM policy (playbooks/controller_policy.yml) in the lab, with moto's IAM enforcement on.

An IAM user gets the rendered policy (and the optional quarantine policy) before enforcement is
turned on; secure_launch.yml, audit.yml (with the quarantine of an unmanaged instance) and
terminate.yml then run with that user's access keys only, and must pass. The same launch with one
needed statement removed must fail with AccessDenied, so the policy is what makes the run pass.

What moto can and cannot check (measured on moto 5.2.5, read in moto/core/authorization.py and
moto/iam/access_control.py):
- moto evaluates the Action of every statement, and the Resource of S3 requests (bucket and object
  ARNs); for every other service it authorises against the resource "*" (IAM: the role ARN, for a
  request naming an existing role), so a statement scoped to ARNs never matches there. The user
  therefore gets `moto_view()` of the policy: the same statements, actions and conditions, with
  the Resource of the non-S3 Allow statements widened to "*". The resource scoping of those
  statements (roles under /cloudefigo/, PassRole, the boundary) is proven by the IAM simulator in
  test_controller_policy_sim.py instead.
- moto names some S3 requests otherwise than IAM does (moto/s3/responses.py ACTION_MAP): HEAD on a
  bucket is "s3:HeadBucket", GET/PUT ?publicAccessBlock "s3:Get/PutPublicAccessBlock", PUT
  ?encryption and ?ownershipControls "s3:CreateBucket", GET ?encryption, ?replication, ?object-lock,
  ?ownershipControls "s3:ListBucket", and GET ?tagging&versionId "s3:GetObjectVersion". moto_view()
  adds moto's name beside IAM's in the S3 statements (MOTO_S3_NAMES). moto authorises DeleteObjects
  (POST ?delete) as s3:DeleteObject on the bucket's ARN, where AWS checks each object: a statement
  granting s3:DeleteObject on objects gets their bucket's ARN beside them.
- moto treats every condition but StringEquals as met, and a StringEquals on a key the request
  does not carry as met too: conditions are never what makes a call pass or fail here.
- iam:PassRole is never checked by moto: the calls the run made are recorded (botocore's client
  side monitoring, AWS_CSM_*) and each one's IAM action must be granted by the exact policy.
"""
import fnmatch
import gzip
import json
import os
import socket
import threading
import time
import uuid

import pytest

from _lab import AWS, ROOT, chef_client, fresh_database, moto_post, moto_reset, run_playbook, s3_gateway_endpoint, secure_launch_lab_vars
from test_secure_launch import HOOK

POLICY_PLAYBOOK = os.path.join(ROOT, "playbooks", "controller_policy.yml")
SECURE_LAUNCH = os.path.join(ROOT, "playbooks", "secure_launch.yml")
TERMINATE = os.path.join(ROOT, "playbooks", "terminate.yml")
AUDIT = os.path.join(ROOT, "playbooks", "audit.yml")
SAMPLES = os.path.join(ROOT, "tests", "data", "cloudtrail", "invictus-ir")
ACCOUNT = "123456789012"  # moto's account
KEY_BUCKET = "ctl-policy-keys"
REPORT_BUCKET = "ctl-policy-reports"
EVIDENCE_BUCKET = "ctl-policy-evidence"
TRAIL_BUCKET = "ctl-policy-trail"

# The playbooks read a key object's marks with cloudefigo.core.volume_key_info (ListObjectVersions
# + GetObjectTagging), never with HeadObject (s3:GetObject): the key bucket's policy denies that to
# every principal without ec2:SourceInstanceARN, and the controller's policy does not grant it.

# boto3 operation -> IAM action, where the name differs (S3) or no permission is needed
S3_ACTIONS = {
    "HeadObject": "GetObject", "HeadBucket": "ListBucket", "ListObjectsV2": "ListBucket", "ListObjects": "ListBucket",
    "ListObjectVersions": "ListBucketVersions", "DeleteObjects": "DeleteObject",
    "GetBucketEncryption": "GetEncryptionConfiguration", "PutBucketEncryption": "PutEncryptionConfiguration",
    "GetPublicAccessBlock": "GetBucketPublicAccessBlock", "PutPublicAccessBlock": "PutBucketPublicAccessBlock",
    "GetBucketReplication": "GetReplicationConfiguration",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
}
NO_PERMISSION = {("STS", "GetCallerIdentity")}
SERVICE_PREFIX = {"EC2": "ec2", "IAM": "iam", "S3": "s3", "KMS": "kms", "STS": "sts", "CloudTrail": "cloudtrail"}


def iam_action(service, api):
    if service == "S3":
        return "s3:" + S3_ACTIONS.get(api, api)
    return "%s:%s" % (SERVICE_PREFIX.get(service, service.lower()), api)


def _listify(value):
    return value if isinstance(value, list) else [value]


def allowed_actions(*policies):
    """Every Action pattern of the Allow statements of the given documents."""
    return [a for policy in policies if policy for s in policy["Statement"] if s["Effect"] == "Allow"
            for a in _listify(s["Action"])]


def is_s3_statement(statement):
    return all(r.startswith("arn:aws:s3:::") for r in _listify(statement["Resource"]))


# IAM's S3 action -> the name moto authorises the same request under (see the module doc)
MOTO_S3_NAMES = {
    "s3:ListBucket": ["s3:HeadBucket"],
    "s3:GetBucketPublicAccessBlock": ["s3:GetPublicAccessBlock"],
    "s3:PutBucketPublicAccessBlock": ["s3:PutPublicAccessBlock"],
    "s3:PutEncryptionConfiguration": ["s3:CreateBucket"],
    "s3:PutBucketOwnershipControls": ["s3:CreateBucket"],
    "s3:GetEncryptionConfiguration": ["s3:ListBucket"],
    "s3:GetBucketOwnershipControls": ["s3:ListBucket"],
    "s3:GetReplicationConfiguration": ["s3:ListBucket"],
    "s3:GetBucketObjectLockConfiguration": ["s3:ListBucket"],
    "s3:GetObjectVersionTagging": ["s3:GetObjectVersion"],
}


def moto_view(policy):
    """The policy as moto can evaluate it (see the module doc): non-S3 Allow statements on Resource
    "*", moto's names beside IAM's in S3 statements; Sids, effects, conditions, S3 resources and every
    Deny as rendered."""
    view = json.loads(json.dumps(policy))
    for statement in view["Statement"]:
        if statement["Effect"] == "Allow" and not is_s3_statement(statement):
            statement["Resource"] = "*"
        elif is_s3_statement(statement):
            actions = _listify(statement["Action"])
            extra = sorted({m for a in actions for m in MOTO_S3_NAMES.get(a, [])} - set(actions))
            if extra:
                statement["Action"] = actions + extra
            if statement["Effect"] == "Allow" and "s3:DeleteObject" in actions:
                statement["Resource"] = _listify(statement["Resource"]) + _delete_objects_buckets(statement)
    return view


def _delete_objects_buckets(statement):
    """The bucket ARNs of a statement's object resources (moto authorises DeleteObjects on the bucket)."""
    return sorted({r.split("/", 1)[0] for r in _listify(statement["Resource"]) if "/" in r})


def without(policy, sid):
    view = json.loads(json.dumps(policy))
    view["Statement"] = [s for s in view["Statement"] if s.get("Sid") != sid]
    assert len(view["Statement"]) == len(policy["Statement"]) - 1, sid
    return view


class CallRecorder:
    """botocore client side monitoring: every AWS API call of the playbooks' modules, from UDP datagrams."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.calls = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def env(self):
        return {"AWS_CSM_ENABLED": "true", "AWS_CSM_HOST": "127.0.0.1", "AWS_CSM_PORT": str(self.sock.getsockname()[1]),
                "AWS_CSM_CLIENT_ID": "cloudefigo-controller-policy"}

    def _run(self):
        while not self._stop.is_set():
            try:
                data = json.loads(self.sock.recv(65535))
            except socket.timeout:
                continue
            if data.get("Type") == "ApiCall":
                self.calls.append((data["Service"], data["Api"], data.get("FinalHttpStatusCode")))

    def close(self):
        time.sleep(1)  # the last datagrams of the playbook
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def render(lab, workdir, **settings):
    """Run playbooks/controller_policy.yml; returns (controller policy, quarantine policy or None)."""
    dest = os.path.join(workdir, "controller-%s.json" % uuid.uuid4().hex[:6])
    quarantine_dest = dest.replace(".json", "-quarantine.json")
    extra = dict({"controller_policy_account_id": ACCOUNT, "controller_policy_key_bucket": KEY_BUCKET,
                  "controller_policy_dest": dest, "controller_policy_quarantine_dest": quarantine_dest}, **settings)
    result = run_playbook(lab, POLICY_PLAYBOOK, extra_vars=extra, json_output=False)
    assert result.rc == 0, result.stdout[-4000:] + result.stderr[-2000:]
    with open(dest) as handle:
        controller = json.load(handle)
    quarantine = None
    if os.path.exists(quarantine_dest):
        with open(quarantine_dest) as handle:
            quarantine = json.load(handle)
    return controller, quarantine


def controller_user(aws, *policies):
    """An IAM user holding exactly these policy documents (inline); returns its key as AWS_* env."""
    iam = aws.client("iam")
    name = "cloudefigo-controller-%s" % uuid.uuid4().hex[:6]
    iam.create_user(UserName=name)
    for index, policy in enumerate(p for p in policies if p):
        iam.put_user_policy(UserName=name, PolicyName="controller-%d" % index, PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def run_enforced(lab, playbook, extra_vars, env, recorder=None):
    """One playbook run with moto's IAM enforcement on, and the controller's key only."""
    env = dict(env, **(recorder.env if recorder else {}))
    moto_post(lab, "/moto-api/reset-auth", b"0")
    try:
        return run_playbook(lab, playbook, extra_vars=extra_vars, env=env)
    finally:
        moto_post(lab, "/moto-api/reset-auth", b"inf")


def _output(result):
    return result.stdout[-8000:] + result.stderr[-3000:]


def _tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


class Launch:
    def __init__(self, lab, workdir):
        self.lab = lab
        self.aws = AWS(lab)
        self.workdir = workdir
        self.launch_id = "ctlpol-%s" % uuid.uuid4().hex[:8]
        self.name = "ctlpol-%s" % uuid.uuid4().hex[:6]
        self.hook = os.path.join(workdir, "hook_configured.yml")
        with open(self.hook, "w") as handle:
            handle.write(HOOK)

    def launch_vars(self):
        return dict(secure_launch_lab_vars(self.lab), **{
            "secure_launch_id": self.launch_id,
            "secure_launch_image_id": "ami-1e749f67",
            "secure_launch_key_bucket": KEY_BUCKET,
            "secure_launch_omit_conditioned_denies": True,
            "secure_launch_report_dir": self.workdir,
            "secure_launch_configure_instance": False,
            "secure_launch_hook_configured": self.hook,
            "secure_launch_nessus_poll_interval": 1,
            "secure_launch_instances": [{"name": self.name, "scan_targets": [self.name],
                                         "chef_run_list": ["recipe[base]"]}],
        })

    def terminate_vars(self, instance_id):
        return dict(secure_launch_lab_vars(self.lab), secure_launch_key_bucket=KEY_BUCKET,
                    terminate_instance_ids=[instance_id])

    def instances(self):
        ec2 = self.aws.client("ec2")
        found = ec2.describe_instances(Filters=[{"Name": "tag:cloudefigo:launch-id", "Values": [self.launch_id]}])
        return [i for r in found["Reservations"] for i in r["Instances"]]

    def cleanup(self):
        for path in ("/nodes/%s" % self.name, "/clients/%s" % self.name):
            try:
                chef_client(self.lab).request("DELETE", path, missing_ok=True)
            except Exception:  # pylint: disable=broad-except
                pass


@pytest.fixture
def launch(lab, tmp_path):
    if "LAB_NESSUS_URL" not in lab:
        pytest.skip("needs the Nessus simulator (lab/services/nessus.py)")
    moto_reset(lab)
    created = Launch(lab, str(tmp_path))
    s3_gateway_endpoint(created.aws.client("ec2"))
    yield created
    created.cleanup()
    moto_reset(lab)


def _upload_cloudtrail(s3, bucket, count=3):
    s3.create_bucket(Bucket=bucket)
    paths = sorted(f for f in os.listdir(SAMPLES) if f.endswith(".json.gz"))[:count]
    events = 0
    for name in paths:
        with gzip.open(os.path.join(SAMPLES, name)) as handle:
            events += len(json.load(handle)["Records"])
        account, _service, region, stamp = name.split("_")[:4]
        key = "AWSLogs/%s/CloudTrail/%s/%s/%s/%s/%s" % (account, region, stamp[:4], stamp[4:6], stamp[6:8], name)
        s3.upload_file(os.path.join(SAMPLES, name), bucket, key)
    return events


def test_moto_view_only_widens_what_moto_cannot_scope(lab, tmp_path):
    controller, quarantine = render(lab, str(tmp_path), controller_policy_quarantine_unmanaged=True,
                                    controller_policy_evidence_bucket=EVIDENCE_BUCKET,
                                    controller_policy_quarantine_protected_role_arns=["arn:aws:iam::%s:role/keep" % ACCOUNT])
    for policy in (controller, quarantine):
        view = moto_view(policy)
        assert len(view["Statement"]) == len(policy["Statement"])
        for exact, seen in zip(policy["Statement"], view["Statement"]):
            # same Sid, effect and conditions; S3 resources and every Deny exactly as rendered
            assert {k: v for k, v in seen.items() if k not in ("Resource", "Action")} == \
                {k: v for k, v in exact.items() if k not in ("Resource", "Action")}
            actions = _listify(exact["Action"])
            added = set(_listify(seen["Action"])) - set(actions)
            assert _listify(seen["Action"])[:len(actions)] == actions
            # only moto's names of actions the statement grants, and only in S3 statements
            assert added <= {m for a in actions for m in MOTO_S3_NAMES.get(a, [])}
            assert not added or is_s3_statement(exact)
            if exact["Effect"] == "Allow" and "s3:DeleteObject" in actions:
                assert seen["Resource"] == _listify(exact["Resource"]) + _delete_objects_buckets(exact)
            elif exact["Effect"] == "Deny" or is_s3_statement(exact):
                assert seen["Resource"] == exact["Resource"]
            else:
                assert seen["Resource"] == "*"


def test_launch_audit_terminate_pass_under_the_policy(lab, launch, tmp_path):
    aws = launch.aws
    s3, ec2, iam = aws.client("s3"), aws.client("ec2"), aws.client("iam")
    controller, quarantine = render(lab, str(tmp_path), controller_policy_report_bucket=REPORT_BUCKET,
                                    controller_policy_cloudtrail_buckets=[TRAIL_BUCKET],
                                    controller_policy_quarantine_unmanaged=True,
                                    controller_policy_evidence_bucket=EVIDENCE_BUCKET)
    # what the account holds before the controller's first run: the buckets audit.yml writes to or
    # reads from, and an instance Chef does not know (to be quarantined, with a role of its own
    # outside /cloudefigo/)
    for bucket in (REPORT_BUCKET, EVIDENCE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    events = _upload_cloudtrail(s3, TRAIL_BUCKET)
    iam.create_role(RoleName="shadow-app", Path="/apps/", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    iam.create_instance_profile(InstanceProfileName="shadow-app", Path="/apps/")
    iam.add_role_to_instance_profile(InstanceProfileName="shadow-app", RoleName="shadow-app")
    shadow = ec2.run_instances(ImageId="ami-1e749f67", MinCount=1, MaxCount=1, InstanceType="t3.small",
                               IamInstanceProfile={"Name": "shadow-app"},
                               TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "shadow-it"}]}],
                               )["Instances"][0]["InstanceId"]

    env = controller_user(aws, moto_view(controller), moto_view(quarantine))
    recorder = CallRecorder()
    try:
        # 1. secure_launch: promoted, with the controller's key only
        result = run_enforced(lab, SECURE_LAUNCH, launch.launch_vars(), env, recorder)
        assert result.rc == 0, _output(result)
        assert "All 1 instance(s) promoted to production." in result.stdout, _output(result)
        instances = launch.instances()
        assert len(instances) == 1
        instance = instances[0]
        assert _tags(instance)["SecurityStatus"] == "production"
        role = iam.get_role(RoleName="cloudefigo-" + launch.name)["Role"]
        assert role["Path"] == "/cloudefigo/", role
        profile_arn = instance["IamInstanceProfile"]["Arn"]
        assert ":instance-profile/cloudefigo/" in profile_arn, profile_arn
        versions = s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="volumes/%s.key" % launch.name).get("Versions", [])
        assert len(versions) == 1

        # 2. audit: the unmanaged instance quarantined (its role's credentials revoked), report in S3,
        #    CloudTrail loaded
        with fresh_database(lab, "ctlpol") as db:
            result = run_enforced(lab, AUDIT, dict(secure_launch_lab_vars(lab), **{
                "audit_regions": ["us-east-1"],
                "audit_quarantine": True,
                "audit_quarantine_grace_seconds": 0,
                "audit_quarantine_case_id": "case-ctlpol",
                "audit_evidence_bucket": EVIDENCE_BUCKET,
                "audit_pg_host": db["host"], "audit_pg_port": db["port"], "audit_pg_user": db["user"],
                "audit_pg_db": db["dbname"], "audit_pg_ssl_mode": "disable",
                "audit_cloudtrail_bucket": TRAIL_BUCKET,
                "audit_report_dir": str(tmp_path / "audit"),
                "audit_report_bucket": REPORT_BUCKET,
            }), env, recorder)
        assert result.rc == 0, _output(result)
        quarantined = ec2.describe_instances(InstanceIds=[shadow])["Reservations"][0]["Instances"][0]
        assert _tags(quarantined)["SecurityStatus"] == "quarantined", _tags(quarantined)
        assert "cloudefigo-quarantine" in iam.list_role_policies(RoleName="shadow-app")["PolicyNames"]
        # the launched instance is managed (its Chef node reports it): left alone
        kept = launch.instances()[0]
        assert _tags(kept)["SecurityStatus"] == "production"
        loaded = result.task_results("Load CloudTrail into the SIEM database")[0]
        assert loaded["events_loaded"] == events, loaded
        reports = [o["Key"] for o in s3.list_objects_v2(Bucket=REPORT_BUCKET).get("Contents", [])]
        assert any(k.endswith(".html") for k in reports), reports
        assert [o["Key"] for o in s3.list_objects_v2(Bucket=EVIDENCE_BUCKET).get("Contents", [])], "no quarantine record"

        # 3. terminate: key shredded, instance terminated, role and profile gone
        result = run_enforced(lab, TERMINATE, launch.terminate_vars(instance["InstanceId"]), env, recorder)
        assert result.rc == 0, _output(result)
        assert launch.instances()[0]["State"]["Name"] == "terminated"
        listing = s3.list_object_versions(Bucket=KEY_BUCKET, Prefix="volumes/%s.key" % launch.name)
        assert not listing.get("Versions") and not listing.get("DeleteMarkers"), listing
        with pytest.raises(iam.exceptions.NoSuchEntityException):
            iam.get_role(RoleName="cloudefigo-" + launch.name)
        with pytest.raises(iam.exceptions.NoSuchEntityException):
            iam.get_instance_profile(InstanceProfileName="cloudefigo-" + launch.name)
    finally:
        recorder.close()

    # every call was made with the controller's key, none was refused, and each one's IAM action
    # is granted by the policy as rendered (moto checks no iam:PassRole, for one)
    assert recorder.calls, "no AWS call recorded (AWS_CSM_* not honoured?)"
    assert not [c for c in recorder.calls if c[2] == 403], [c for c in recorder.calls if c[2] == 403]
    granted = allowed_actions(controller, quarantine)
    needed = sorted({iam_action(service, api) for service, api, _status in recorder.calls
                     if (service, api) not in NO_PERMISSION})
    missing = [a for a in needed if not any(fnmatch.fnmatchcase(a, pattern) for pattern in granted)]
    assert missing == [], missing
    # the launch gave the instance its profile: EC2 needs iam:PassRole for that, granted to ec2 only
    assert ("EC2", "AssociateIamInstanceProfile", 200) in recorder.calls
    passrole = [s for s in controller["Statement"] if "iam:PassRole" in _listify(s["Action"])]
    assert passrole == [{"Sid": "PassInstanceRolesToEc2Only", "Effect": "Allow", "Action": "iam:PassRole",
                         "Resource": "arn:aws:iam::%s:role/cloudefigo/*" % ACCOUNT,
                         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}}]


@pytest.mark.parametrize("sid, denied", [
    ("ManageInstanceProfilesUnderPath", "iam:CreateInstanceProfile"),
    ("LaunchInstances", "ec2:RunInstances"),
])
def test_launch_fails_without_a_needed_statement(lab, launch, tmp_path, sid, denied):
    controller, _quarantine = render(lab, str(tmp_path))
    env = controller_user(launch.aws, moto_view(without(controller, sid)))
    result = run_enforced(lab, SECURE_LAUNCH, launch.launch_vars(), env)
    assert result.rc != 0, _output(result)
    assert "NOT promoted" in result.stdout, _output(result)
    assert "not authorized to perform: %s" % denied in result.stdout + result.stderr, _output(result)
    assert not [i for i in launch.instances() if _tags(i).get("SecurityStatus") == "production"]
