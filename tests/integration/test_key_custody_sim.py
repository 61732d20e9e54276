"""Who can read, write and shred a volume key: the documents volume_key and instance_role wrote to
moto, evaluated together by an IAM simulator (tests/iam_sim, @cloud-copilot/iam-simulate, test-only).

moto stores bucket and key policies but applies a bucket policy's Deny statements without their
conditions and evaluates no KMS key policy, so the lab cannot show what the documents mean.  Here:
1. volume_key creates the keys of two instances (web-01, db-01) with the lab switch (moto would
   refuse the key writes under the conditioned Deny statements), instance_role writes both roles
   (launch, then web-01 production) with kms_key_arn, without the switch;
2. volume_key runs again for web-01 WITHOUT the switch: the key exists, so nothing is written but
   the full bucket policy;
3. the bucket policy, the dedicated KMS key's key policy, the role policies and the key object's
   tags are read back with boto3 and every request of the matrix is evaluated against the
   identity policy + the bucket policy (S3) or + the key policy (S3's call to KMS).

Each bucket/key-policy statement a case depends on is shown to be what denies: without it the
same request is allowed.
"""
import json

import pytest

from _iam_sim import ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY, Case, simulate
from _lab import AWS, moto_reset, run_playbook

ENDPOINT_ARGS = {"endpoint_url": "{{ lab_aws_endpoint }}", "access_key": "testing", "secret_key": "testing", "region": "us-east-1"}
REGION = "us-east-1"
BUCKET = "sim-custody-keys"
WEB, DB = "web-01", "db-01"
IDS = {WEB: "i-0123456789abcdef0", DB: "i-0fedcba9876543210"}
KEYS = {WEB: "volumes/web-01.key", DB: "volumes/db-01.key"}
WEB_VPC, WEB_IP = "vpc-0aaaaaaaaaaaaaaaa", "10.20.1.10"
DB_VPC, DB_IP = "vpc-0cccccccccccccccc", "10.30.1.10"
LAUNCH = "sim-custody"
# what an administrator of the account might hold: S3 and KMS on everything
BROAD = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "kms:*"], "Resource": "*"}]}
READ_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}


def _key_task(name, role, switch):
    return {"name": name, "register": "out", "cloudefigo.core.volume_key": {
        "bucket": BUCKET, "object": KEYS[role], "instance_id": IDS[role], "launch_id": LAUNCH, "omit_conditioned_denies": switch}}


def _role_task(name, role, stage):
    return {"name": name, "register": "out", "cloudefigo.core.instance_role": {
        "name": role, "stage": stage, "instance_id": IDS[role], "launch_id": LAUNCH,
        "key_bucket": BUCKET, "key_object": KEYS[role], "kms_key_arn": "{{ web_key.kms_key_arn }}"}}


def _play(tmp_path, name, tasks):
    path = tmp_path / (name + ".yml")
    path.write_text(json.dumps([{"name": name, "hosts": "localhost", "connection": "local", "gather_facts": False,
                                 "module_defaults": {"group/cloudefigo.core.all": ENDPOINT_ARGS, "group/aws": ENDPOINT_ARGS},
                                 "tasks": tasks}]))
    return str(path)


@pytest.fixture(scope="module")
def written(lab, tmp_path_factory):
    moto_reset(lab)
    aws = AWS(lab)
    tmp_path = tmp_path_factory.mktemp("custody-sim")
    web_key = dict(_key_task("web key", WEB, True), register="web_key")
    result = run_playbook(lab, _play(tmp_path, "keys-and-roles", [
        web_key, _key_task("db key", DB, True),
        _role_task("web launch", WEB, "launch"), _role_task("db launch", DB, "launch"), _role_task("web production", WEB, "production"),
    ]))
    assert result.rc == 0, result.stdout[-10000:]
    s3, iam, kms = aws.client("s3"), aws.client("iam"), aws.client("kms")
    tags = {role: {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=KEYS[role])["TagSet"]} for role in (WEB, DB)}

    result = run_playbook(lab, _play(tmp_path, "full-bucket-policy", [_key_task("web key, no lab switch", WEB, False)]))
    assert result.rc == 0, result.stdout[-10000:]
    again = result.task_results("web key, no lab switch")[0]
    assert again["bucket_changes"] == ["policy"] and not again["created"], again
    out = {
        "account": aws.client("sts").get_caller_identity()["Account"],
        "kms": again["kms_key_arn"],
        "controllers": again["controller_principals"],
        "tags": tags,
        "bucket_policy": json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"]),
        "key_policy": json.loads(kms.get_key_policy(KeyId=again["kms_key_arn"], PolicyName="default")["Policy"]),
        "roles": {role: iam.get_role_policy(RoleName=role, PolicyName="cloudefigo-instance")["PolicyDocument"] for role in (WEB, DB)},
    }
    s3.delete_bucket_policy(Bucket=BUCKET)
    moto_reset(lab)
    return out


def _instance_arn(account, role):
    return "arn:aws:ec2:%s:%s:instance/%s" % (REGION, account, IDS[role])


def _object_arn(role):
    return "arn:aws:s3:::%s/%s" % (BUCKET, KEYS[role])


def _session(account, role):
    return "arn:aws:sts::%s:assumed-role/%s/%s" % (account, role, IDS[role])


def _instance_context(w, role, reading=WEB):
    """What AWS sets on `role`'s instance's own request for `reading`'s key: IMDSv2, its VPC's gateway endpoint."""
    vpc, ip = (WEB_VPC, WEB_IP) if role == WEB else (DB_VPC, DB_IP)
    return {
        "ec2:SourceInstanceARN": _instance_arn(w["account"], role),
        "ec2:RoleDelivery": "2.0",
        "aws:EC2InstanceSourceVPC": vpc,
        "aws:EC2InstanceSourcePrivateIPv4": ip,
        "aws:SourceVpc": vpc,
        "aws:VpcSourceIp": ip,
        "aws:ViaAWSService": "false",
        "aws:SecureTransport": "true",
        "aws:PrincipalArn": "arn:aws:iam::%s:role/cloudefigo/%s" % (w["account"], role),
        "s3:ExistingObjectTag/cloudefigo:instance-arn": w["tags"][reading]["cloudefigo:instance-arn"],
    }


def _outside_context(w, principal_arn, reading=WEB, **extra):
    """A request from outside any instance (a user, a laptop): TLS, no instance keys."""
    out = {"aws:SecureTransport": "true", "aws:ViaAWSService": "false", "aws:PrincipalArn": principal_arn,
           "s3:ExistingObjectTag/cloudefigo:instance-arn": w["tags"][reading]["cloudefigo:instance-arn"]}
    out.update(extra)
    return out


def _changed(context, **changes):
    out = dict(context)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _without(doc, *sids):
    return dict(doc, Statement=[s for s in doc["Statement"] if s.get("Sid") not in sids])


def test_read_back_documents_are_the_full_ones(written):
    w = written
    assert sorted(s["Sid"] for s in w["bucket_policy"]["Statement"] if s["Effect"] == "Deny" and s.get("Condition")) == sorted([
        "CloudefigoDenyInsecureTransport", "CloudefigoDenyKeyReadOutsideAnInstance", "CloudefigoDenyKeyReadByAnotherInstance",
        "CloudefigoDenyKeyReadWithImdsV1Credentials", "CloudefigoDenyEverythingElseToAllButControllers"])
    assert w["tags"][WEB]["cloudefigo:instance-arn"] == _instance_arn(w["account"], WEB)
    assert w["tags"][DB]["cloudefigo:instance-arn"] == _instance_arn(w["account"], DB)
    assert w["controllers"] == ["arn:aws:iam::%s:user/moto" % w["account"]]
    for doc in w["roles"].values():
        assert any(s["Effect"] == "Deny" for s in doc["Statement"])  # written without instance_role's lab switch


def _for_action(action, context):
    # only the object reads are judged on the object's tag (the policy uses it there only)
    if action in ("s3:GetObject", "s3:GetObjectVersion"):
        return context
    return {k: v for k, v in context.items() if not k.startswith("s3:ExistingObjectTag/")}


def _run(matrix):
    """matrix rows: (name, principal, identity, resource policy, action, resource, context, expected, [Sids removed -> ALLOWED])."""
    cases = []
    matrix = [row[:6] + (_for_action(row[4], row[6]),) + row[7:] for row in matrix]
    for name, principal, identity, resource_policy, action, resource, context, expected, sids in matrix:
        cases.append(Case(principal, action, resource, identity_policies=[identity], resource_policy=resource_policy,
                          context=context, account_id=principal.split(":")[4]))
        if sids:
            cases.append(Case(principal, action, resource, identity_policies=[identity], resource_policy=_without(resource_policy, *sids),
                              context=context, account_id=principal.split(":")[4]))
    results = iter(simulate(cases))
    for name, _principal, _identity, _policy, _action, _resource, context, expected, sids in matrix:
        got = next(results)
        assert got.result == expected, "%s: %s, expected %s" % (name, got.result, expected)
        relied = set(context) - {"aws:PrincipalArn", "aws:ViaAWSService", "aws:CalledVia"}
        assert not set(got.ignored_context_keys) & relied, "%s: simulator ignored %s" % (name, got.ignored_context_keys)
        if sids:
            assert next(results).result == ALLOWED, "%s: still denied without %s" % (name, ", ".join(sids))


def test_key_matrix(written):
    w = written
    acct, bucket_policy = w["account"], w["bucket_policy"]
    web_doc, db_doc = w["roles"][WEB], w["roles"][DB]
    web, db = _session(acct, WEB), _session(acct, DB)
    controller = w["controllers"][0]
    admin = "arn:aws:iam::%s:user/admin-without-controller-rights" % acct
    reader = "arn:aws:iam::%s:role/app-reads-all-of-s3" % acct
    own = _instance_context(w, WEB)
    key, bucket = _object_arn(WEB), "arn:aws:s3:::" + BUCKET
    read_denies = ("CloudefigoDenyKeyReadOutsideAnInstance", "CloudefigoDenyKeyReadByAnotherInstance")
    _run([
        ("own instance over IMDSv2, in its VPC", web, web_doc, bucket_policy, "s3:GetObject", key, own, ALLOWED, None),
        # identity-policy denies (instance_role's): the bucket policy alone would let them through
        ("its credentials from outside its VPC", web, web_doc, bucket_policy, "s3:GetObject", key,
         _changed(own, **{"aws:SourceVpc": "vpc-0bbbbbbbbbbbbbbbb"}), EXPLICIT_DENY, None),
        ("its credentials from the internet (no aws:SourceVpc)", web, web_doc, bucket_policy, "s3:GetObject", key,
         _changed(own, **{"aws:SourceVpc": None, "aws:VpcSourceIp": None}), EXPLICIT_DENY, None),
        # IMDSv1: denied by the role and by the bucket; with the role's deny gone the bucket still denies
        ("IMDSv1-delivered credentials", web, web_doc, bucket_policy, "s3:GetObject", key,
         _changed(own, **{"ec2:RoleDelivery": "1.0"}), EXPLICIT_DENY, None),
        ("IMDSv1-delivered, role without its IMDSv1 deny", web, _without(web_doc, "DenyImdsV1Credentials"), bucket_policy,
         "s3:GetObject", key, _changed(own, **{"ec2:RoleDelivery": "1.0"}), EXPLICIT_DENY, ["CloudefigoDenyKeyReadWithImdsV1Credentials"]),
        # another principal of the account allowed s3:GetObject on *: the bucket refuses it
        ("another principal with s3:GetObject on *, outside any instance", reader, READ_ALL, bucket_policy, "s3:GetObject", key,
         _outside_context(w, reader), EXPLICIT_DENY, list(read_denies)),
        ("another principal with s3:GetObject on *, on another instance", reader, READ_ALL, bucket_policy, "s3:GetObject", key,
         _changed(_instance_context(w, DB), **{"aws:PrincipalArn": reader}), EXPLICIT_DENY, ["CloudefigoDenyKeyReadByAnotherInstance"]),
        ("another instance's role (db-01) reading web-01's key", db, db_doc, bucket_policy, "s3:GetObject", key,
         _instance_context(w, DB), EXPLICIT_DENY, None),
        ("web-01 reading db-01's key", web, web_doc, bucket_policy, "s3:GetObject", _object_arn(DB),
         _instance_context(w, WEB, reading=DB), EXPLICIT_DENY, None),
        ("own instance without TLS", web, web_doc, bucket_policy, "s3:GetObject", key,
         _changed(own, **{"aws:SecureTransport": "false"}), EXPLICIT_DENY, ["CloudefigoDenyInsecureTransport"]),
        # the controller writes and shreds, and cannot read a key
        ("the controller writes a key", controller, BROAD, bucket_policy, "s3:PutObject", _object_arn(WEB),
         _outside_context(w, controller), ALLOWED, None),
        ("the controller tags a key", controller, BROAD, bucket_policy, "s3:PutObjectTagging", key, _outside_context(w, controller), ALLOWED, None),
        ("the controller shreds every version", controller, BROAD, bucket_policy, "s3:DeleteObjectVersion", key,
         _outside_context(w, controller), ALLOWED, None),
        ("the controller lists versions", controller, BROAD, bucket_policy, "s3:ListBucketVersions", bucket,
         {"aws:SecureTransport": "true", "aws:PrincipalArn": controller}, ALLOWED, None),
        ("the controller writes the bucket policy", controller, BROAD, bucket_policy, "s3:PutBucketPolicy", bucket,
         {"aws:SecureTransport": "true", "aws:PrincipalArn": controller}, ALLOWED, None),
        ("the controller reads a key", controller, BROAD, bucket_policy, "s3:GetObject", key,
         _outside_context(w, controller), EXPLICIT_DENY, list(read_denies)),
        ("the controller without TLS", controller, BROAD, bucket_policy, "s3:DeleteObjectVersion", key,
         _outside_context(w, controller, **{"aws:SecureTransport": "false"}), EXPLICIT_DENY, ["CloudefigoDenyInsecureTransport"]),
        # anyone else, however broad their IAM rights: no write, shred, re-tag, list or policy change
        ("an admin who is not a controller shreds", admin, BROAD, bucket_policy, "s3:DeleteObjectVersion", key,
         _outside_context(w, admin), EXPLICIT_DENY, ["CloudefigoDenyEverythingElseToAllButControllers"]),
        ("tag-write access re-tags a key to another instance", admin, BROAD, bucket_policy, "s3:PutObjectTagging", key,
         _outside_context(w, admin), EXPLICIT_DENY, ["CloudefigoDenyEverythingElseToAllButControllers"]),
        ("an admin who is not a controller rewrites the bucket policy", admin, BROAD, bucket_policy, "s3:PutBucketPolicy", bucket,
         {"aws:SecureTransport": "true", "aws:PrincipalArn": admin}, EXPLICIT_DENY, ["CloudefigoDenyEverythingElseToAllButControllers"]),
        ("the instance writes its own key", web, BROAD, bucket_policy, "s3:PutObject", key, own, EXPLICIT_DENY,
         ["CloudefigoDenyEverythingElseToAllButControllers"]),
        ("the instance lists the bucket", web, BROAD, bucket_policy, "s3:ListBucket", bucket,
         {k: v for k, v in own.items() if not k.startswith("s3:")}, EXPLICIT_DENY, ["CloudefigoDenyEverythingElseToAllButControllers"]),
    ])


ENCRYPTION_CONTEXT = "kms:EncryptionContext:aws:s3:arn"


def _without_encryption_context(policy):
    """The key policy without its kms:EncryptionContext:aws:s3:arn conditions.

    The simulator (iam-simulate 0.1.x) drops every kms:EncryptionContext:* key from the request
    (checked below), so those conditions could only fail there; AWS sets the key on S3's calls
    (the object's ARN, no S3 Bucket Key) and the condition then only narrows the grants further.
    """
    out = json.loads(json.dumps(policy))
    for statement in out["Statement"]:
        arn_like = statement.get("Condition", {}).get("ArnLike", {})
        arn_like.pop(ENCRYPTION_CONTEXT, None)
        if "ArnLike" in statement.get("Condition", {}) and not arn_like:
            del statement["Condition"]["ArnLike"]
    return out


def test_simulator_cannot_see_the_encryption_context(written):
    w = written
    conditions = [s.get("Condition", {}) for s in w["key_policy"]["Statement"]]
    assert sum(1 for c in conditions if c.get("ArnLike", {}).get(ENCRYPTION_CONTEXT) == "arn:aws:s3:::%s/*" % BUCKET) == 2
    got = simulate([Case(_session(w["account"], WEB), "kms:Decrypt", w["kms"], identity_policies=[w["roles"][WEB]],
                         resource_policy=w["key_policy"], context={ENCRYPTION_CONTEXT: _object_arn(WEB)}, account_id=w["account"])])[0]
    assert ENCRYPTION_CONTEXT in got.ignored_context_keys  # when this fails, drop _without_encryption_context


def test_s3_call_to_kms_matrix(written):
    """S3 decrypting the key object for its instance (kms:ViaService), judged by the key policy volume_key wrote."""
    w = written
    acct, kms = w["account"], w["kms"]
    key_policy = _without_encryption_context(w["key_policy"])
    web, controller = _session(acct, WEB), w["controllers"][0]
    admin = "arn:aws:iam::%s:user/admin" % acct

    def via_s3(role, **extra):
        gone = {"aws:SourceVpc": None, "aws:VpcSourceIp": None, "s3:ExistingObjectTag/cloudefigo:instance-arn": None}
        out = _changed(_instance_context(w, role), **gone)
        out.update({"aws:ViaAWSService": "true", "aws:CalledVia": ["s3.amazonaws.com"], "kms:ViaService": "s3.%s.amazonaws.com" % REGION,
                    "kms:CallerAccount": acct})
        out.update(extra)
        return out

    _run([
        ("S3 decrypts web-01's key for web-01", web, w["roles"][WEB], key_policy, "kms:Decrypt", kms, via_s3(WEB), ALLOWED, None),
        ("web-01 calls kms:Decrypt itself", web, w["roles"][WEB], key_policy, "kms:Decrypt", kms, _instance_context(w, WEB), IMPLICIT_DENY, None),
        ("S3 in another region", web, w["roles"][WEB], key_policy, "kms:Decrypt", kms,
         via_s3(WEB, **{"kms:ViaService": "s3.eu-west-1.amazonaws.com"}), IMPLICIT_DENY, None),
        ("S3 for IMDSv1-delivered credentials", web, w["roles"][WEB], key_policy, "kms:Decrypt", kms,
         via_s3(WEB, **{"ec2:RoleDelivery": "1.0"}), EXPLICIT_DENY, None),
        ("the controller encrypts a new key through S3", controller, BROAD, key_policy, "kms:GenerateDataKey", kms,
         {"aws:ViaAWSService": "true", "kms:ViaService": "s3.%s.amazonaws.com" % REGION, "aws:PrincipalArn": controller}, ALLOWED, None),
        ("the controller encrypts outside S3", controller, BROAD, key_policy, "kms:GenerateDataKey", kms,
         {"aws:PrincipalArn": controller}, IMPLICIT_DENY, None),
        ("the controller administers the key", controller, BROAD, key_policy, "kms:PutKeyPolicy", kms,
         {"aws:PrincipalArn": controller}, ALLOWED, None),
        ("an account admin who is not a controller administers the key", admin, BROAD, key_policy,
         "kms:PutKeyPolicy", kms, {"aws:PrincipalArn": admin}, IMPLICIT_DENY, None),
        ("the controller decrypts directly", controller, BROAD, key_policy, "kms:Decrypt", kms,
         {"aws:PrincipalArn": controller}, IMPLICIT_DENY, None),
    ])
