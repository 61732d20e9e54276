"""Least privilege of cloudefigo.core.instance_role and the key handling of volume_key, on moto.

The modules run for real through ansible-playbook; what they left behind is read with boto3.

How the enforcement test works, and what it cannot show (moto 5.2, measured):
- An instance gets its role's credentials from the metadata service.  Here the "instance" is an
  STS session: an admin user (inline ``*:*`` policy) assumes each instance role while IAM
  enforcement is still off, then ``POST /moto-api/reset-auth`` with body ``0`` turns enforcement
  on (moto answers AssumeRole with a 500 once enforcement is on) and the session's credentials
  are used against S3.  Moto evaluates the role's identity policy for them: that is what is tested.
- The trust policy (only ec2.amazonaws.com may assume the role) is not what lets the test assume
  it: assuming happens before enforcement, so the trust policy is asserted on the document only.
- Moto evaluates no condition operator but StringEquals, and only on keys it knows; the
  ``ArnEquals ec2:SourceInstanceARN`` binding of the production policy is therefore not enforced
  by moto (and an STS session is no EC2 instance anyway), and the conditioned Deny statements
  (network, IMDSv1, no VPC endpoint) would be taken as always met: the roles here are written
  with ``omit_conditioned_denies``.  The binding is asserted on the document; what the full
  documents allow and deny is evaluated with an IAM simulator in test_instance_role_sim.py.
- Moto applies a bucket policy's Deny statements without evaluating their conditions, so volume_key
  runs with the lab switch ``omit_conditioned_denies: true`` here too (the statements are tested in
  the volume_key target and unit tests, and evaluated by the IAM simulator in test_key_custody_sim.py).
"""
import base64
import json
import urllib.error

import pytest

from _lab import moto_post

ENDPOINT_ARGS = {
    "endpoint_url": "{{ lab_aws_endpoint }}",
    "access_key": "testing",
    "secret_key": "testing",
    "region": "us-east-1",
}
BUCKET = "lp-volume-keys"
BOOT_BUCKET = "lp-bootstrap"
WEB_KEY = "volumes/web-01.key"
DB_KEY = "volumes/db-01.key"
VALIDATOR = "chef/validator.pem"


def write_play(tmp_path, tasks, name="play.yml"):
    """A one-play playbook (JSON is YAML) with the lab's endpoint as module_defaults."""
    play = [{
        "name": "Least privilege test",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "module_defaults": {"group/cloudefigo.core.all": ENDPOINT_ARGS, "group/aws": ENDPOINT_ARGS},
        "tasks": tasks,
    }]
    path = tmp_path / name
    path.write_text(json.dumps(play, indent=1))
    return str(path)


KEY_OWNERS = {WEB_KEY: "i-0123456789abcdef0", DB_KEY: "i-0123456789abcdef1"}


def key_task(name, obj, **extra):
    # the lab switch: moto applies the bucket policy's conditioned Deny statements unconditionally
    args = {"bucket": BUCKET, "object": obj, "instance_id": KEY_OWNERS.get(obj, "i-0123456789abcdef2"),
            "launch_id": "lp-launch", "omit_conditioned_denies": True}
    args.update(extra)
    return {"name": name, "cloudefigo.core.volume_key": args, "register": "out"}


# instance_role binds every role to its instance from creation (instance_id at every stage)
ROLE_INSTANCE_IDS = {"web-01": "i-0123456789abcdef0", "web-02": "i-0000000000000a002", "web-03": "i-0000000000000a003"}


def role_task(name, role, stage, key, **extra):
    # omit_conditioned_denies: moto would take the conditioned Deny statements as always met
    # (their logic is proven by simulation in test_instance_role_sim.py)
    args = {"name": role, "stage": stage, "instance_id": ROLE_INSTANCE_IDS.get(role, "i-0000000000000a004"),
            "launch_id": "lp-launch", "omit_conditioned_denies": True}
    if stage != "absent":
        args.update(key_bucket=BUCKET, key_object=key)
    args.update(extra)
    return {"name": name, "cloudefigo.core.instance_role": args, "register": "out"}


def one(result, task_name):
    found = result.task_results(task_name)
    assert found, "task %r did not run:\n%s\n%s" % (task_name, result.stdout[-5000:], result.stderr[-3000:])
    return found[0]


def run_ok(playbook, path):
    result = playbook(path)
    assert result.rc == 0, "%s\n%s" % (result.stdout[-15000:], result.stderr[-3000:])
    return result


def s3_keys(aws, bucket, key):
    """(version ids, delete marker ids) of exactly `key`."""
    pages = aws.client("s3").get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key)
    versions, markers = [], []
    for page in pages:
        versions += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key]
        markers += [m["VersionId"] for m in page.get("DeleteMarkers", []) if m["Key"] == key]
    return versions, markers


def error_code(call):
    with pytest.raises(Exception) as err:
        call()
    return getattr(err.value, "response", {}).get("Error", {}).get("Code")


def test_production_role_reads_only_its_own_key(aws, lab, playbook, tmp_path):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=BOOT_BUCKET)
    s3.put_object(Bucket=BOOT_BUCKET, Key=VALIDATOR, Body=b"validator")
    path = write_play(tmp_path, [
        key_task("Key web-01", WEB_KEY),
        key_task("Key db-01", DB_KEY),
        role_task("Role web-01 launch", "web-01", "launch", WEB_KEY, bootstrap_objects=[BOOT_BUCKET + "/" + VALIDATOR]),
        role_task("Role web-01 production", "web-01", "production", WEB_KEY),
        role_task("Role web-02 launch", "web-02", "launch", "volumes/web-02.key", bootstrap_objects=[BOOT_BUCKET + "/" + VALIDATOR]),
    ])
    result = run_ok(playbook, path)
    production = one(result, "Role web-01 production")
    launch = one(result, "Role web-02 launch")
    assert production["changed"] and production["stage"] == "production"

    # The production document: the own key only, bound to the instance (moto does not enforce the binding).
    iam = aws.client("iam")
    document = iam.get_role_policy(RoleName="web-01", PolicyName="cloudefigo-instance")["PolicyDocument"]
    assert document == production["policy"]
    assert len(document["Statement"]) == 1
    statement = document["Statement"][0]
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Allow", "s3:GetObject", "arn:aws:s3:::%s/%s" % (BUCKET, WEB_KEY))
    assert statement["Condition"] == {"ArnEquals": {"ec2:SourceInstanceARN": "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"}}
    trust = iam.get_role(RoleName="web-01")["Role"]["AssumeRolePolicyDocument"]
    assert [s["Principal"] for s in trust["Statement"]] == [{"Service": "ec2.amazonaws.com"}]

    # An admin user, and the instance sessions, made before enforcement is turned on.
    iam.create_user(UserName="lab-admin")
    iam.put_user_policy(UserName="lab-admin", PolicyName="admin",
                        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
    admin_key = iam.create_access_key(UserName="lab-admin")["AccessKey"]
    sts = aws.client("sts", aws_access_key_id=admin_key["AccessKeyId"], aws_secret_access_key=admin_key["SecretAccessKey"])

    def session(role_arn, name):
        creds = sts.assume_role(RoleArn=role_arn, RoleSessionName=name)["Credentials"]
        return {"aws_access_key_id": creds["AccessKeyId"], "aws_secret_access_key": creds["SecretAccessKey"],
                "aws_session_token": creds["SessionToken"]}

    web01_creds = session(production["role_arn"], "i-0123456789abcdef0")
    web01, web01_iam = aws.client("s3", **web01_creds), aws.client("iam", **web01_creds)
    web02 = aws.client("s3", **session(launch["role_arn"], "web-02-launch"))
    moto_post(lab, "/moto-api/reset-auth", b"0")
    try:
        assert len(web01.get_object(Bucket=BUCKET, Key=WEB_KEY)["Body"].read()) == 64
        assert error_code(lambda: web01.get_object(Bucket=BUCKET, Key=DB_KEY)) == "AccessDenied"
        assert error_code(lambda: web01.put_object(Bucket=BUCKET, Key=WEB_KEY, Body=b"x" * 64)) == "AccessDenied"
        assert error_code(lambda: web01.put_object(Bucket=BUCKET, Key="volumes/new.key", Body=b"x")) == "AccessDenied"
        assert error_code(lambda: web01.list_objects_v2(Bucket=BUCKET)) == "AccessDenied"
        assert error_code(lambda: web01.delete_object(Bucket=BUCKET, Key=WEB_KEY)) == "AccessDenied"
        assert error_code(lambda: web01_iam.create_role(RoleName="escalate", AssumeRolePolicyDocument=json.dumps(trust))) == "AccessDenied"
        # bootstrap objects are gone at production, still readable by a launch-stage role
        assert error_code(lambda: web01.get_object(Bucket=BOOT_BUCKET, Key=VALIDATOR)) == "AccessDenied"
        assert web02.get_object(Bucket=BOOT_BUCKET, Key=VALIDATOR)["Body"].read() == b"validator"
        assert error_code(lambda: web02.get_object(Bucket=BUCKET, Key=WEB_KEY)) == "AccessDenied"
    finally:
        moto_post(lab, "/moto-api/reset-auth", b"inf")


def test_launch_document_grants_no_privilege(aws, playbook, tmp_path):
    path = write_play(tmp_path, [
        role_task("Role launch", "web-03", "launch", "volumes/web-03.key",
                  bootstrap_objects=[BOOT_BUCKET + "/" + VALIDATOR, {"bucket": BOOT_BUCKET, "key": "chef/client.rb"}],
                  extra_statements=[{"Sid": "ReadOwnTags", "Effect": "Allow", "Action": "ec2:DescribeTags", "Resource": "*"}]),
    ])
    run_ok(playbook, path)
    iam = aws.client("iam")
    assert iam.list_role_policies(RoleName="web-03")["PolicyNames"] == ["cloudefigo-instance"]
    assert iam.list_attached_role_policies(RoleName="web-03")["AttachedPolicies"] == []
    document = iam.get_role_policy(RoleName="web-03", PolicyName="cloudefigo-instance")["PolicyDocument"]
    # the one write of the launch stage: its own progress tag (pull mode), on its own ARN, under conditions
    progress = [s for s in document["Statement"] if s.get("Sid") == "TagOwnProgress"]
    assert len(progress) == 1
    instance_arn = progress[0]["Resource"]
    assert progress[0]["Effect"] == "Allow" and progress[0]["Action"] == "ec2:CreateTags"
    assert isinstance(instance_arn, str) and instance_arn.endswith(":instance/i-0000000000000a003") and "*" not in instance_arn
    assert progress[0]["Condition"] == {"ArnEquals": {"ec2:SourceInstanceARN": instance_arn},
                                        "ForAllValues:StringLike": {"aws:TagKeys": "cloudefigo:progress*"},
                                        "Null": {"aws:TagKeys": "false"}}
    for statement in document["Statement"]:
        assert "NotAction" not in statement and "NotResource" not in statement
        if statement.get("Sid") == "TagOwnProgress":
            continue
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        for action in actions:
            assert not action.lower().startswith("iam:"), action
            assert action.lower() != "iam:passrole" and action != "*"
            assert action.split(":")[1].startswith(("Get", "Describe", "List")), "write action %s" % action
            if "*" in resources:
                assert not action.endswith("*"), "wildcard action %s on *" % action
        if statement["Sid"] != "ReadOwnTags":
            assert actions == ["s3:GetObject"] and "*" not in "".join(resources)
    profile = iam.get_instance_profile(InstanceProfileName="web-03")["InstanceProfile"]
    assert [r["RoleName"] for r in profile["Roles"]] == ["web-03"]


def test_volume_key_never_overwrites_and_shreds_every_version(aws, playbook, tmp_path):
    sibling = WEB_KEY + ".bak"  # shares the prefix: must survive the shred
    path = write_play(tmp_path, [
        key_task("Key first", WEB_KEY),
        key_task("Key second", WEB_KEY),
        key_task("Key sibling", sibling),
    ], name="present.yml")
    result = run_ok(playbook, path)
    first, second = one(result, "Key first"), one(result, "Key second")
    assert first["changed"] and first["created"]
    assert not second["changed"] and not second["created"]
    assert second["version_id"] == first["version_id"]
    assert s3_keys(aws, BUCKET, WEB_KEY) == ([first["version_id"]], [])

    s3 = aws.client("s3")
    key = s3.get_object(Bucket=BUCKET, Key=WEB_KEY, VersionId=first["version_id"])["Body"].read()
    assert len(key) == 64
    for shown in (key.hex(), base64.b64encode(key).decode(), repr(key)):
        assert shown not in result.stdout, "the key bytes appear in the playbook output"
    assert s3.head_object(Bucket=BUCKET, Key=WEB_KEY)["ServerSideEncryption"] == "aws:kms"
    assert s3.get_bucket_versioning(Bucket=BUCKET)["Status"] == "Enabled"

    # A plain delete leaves a marker on top of the old version; present then writes a new key on
    # top (warning), and absent must remove both versions and the marker.
    s3.delete_object(Bucket=BUCKET, Key=WEB_KEY)
    path = write_play(tmp_path, [
        key_task("Key after delete", WEB_KEY),
        key_task("Shred check", WEB_KEY, state="absent"),
    ], name="recreate.yml")
    result = playbook(path, check=False)
    assert result.rc == 0, result.stdout[-5000:]
    recreated = one(result, "Key after delete")
    assert recreated["created"] and recreated["version_id"] != first["version_id"]
    assert any("older version" in w for w in recreated.get("warnings", []))
    shred = one(result, "Shred check")
    assert (shred["deleted_versions"], shred["deleted_delete_markers"]) == (2, 1)
    assert s3_keys(aws, BUCKET, WEB_KEY) == ([], [])
    assert len(s3_keys(aws, BUCKET, sibling)[0]) == 1

    path = write_play(tmp_path, [key_task("Shred again", WEB_KEY, state="absent")], name="again.yml")
    again = one(run_ok(playbook, path), "Shred again")
    assert not again["changed"] and again["deleted_versions"] == 0


@pytest.mark.parametrize("task, option", [
    (key_task("Bad", WEB_KEY, bucket="Bad_Bucket_Name"), "bucket"),
    (key_task("Bad", WEB_KEY, key_bytes=16), "key_bytes"),
    (role_task("Bad", "web-04", "launch", WEB_KEY, key_bucket="-bad-"), "key_bucket"),
    (role_task("Bad", "web-04", "staging", WEB_KEY), "stage"),
    (role_task("Bad", "web-04", "production", WEB_KEY), "production"),
    (role_task("Bad", "web-04", "launch", WEB_KEY, extra_statements=[{"Effect": "Allow", "Action": "iam:*", "Resource": "*"}]),
     "extra_statements"),
])
def test_bad_input_fails_naming_the_option(aws, playbook, tmp_path, task, option):
    result = playbook(write_play(tmp_path, [task]))
    assert result.rc != 0
    outcome = one(result, "Bad")
    assert outcome.get("failed") is True
    assert option in outcome["msg"], outcome["msg"]
    # ansible-core 2.19 fills `exception` with a placeholder when the module gave no traceback
    assert outcome.get("exception") in (None, "(traceback unavailable)")
    assert "Traceback" not in result.stdout
    if option == "production":
        assert "missing instance role for production" in outcome["msg"] and "stage=launch first" in outcome["msg"]
        assert aws.client("iam").list_roles()["Roles"] == []


def test_enforcement_is_really_on(aws, lab):
    """Guard for the first test: with enforcement on, unknown credentials are refused."""
    moto_post(lab, "/moto-api/reset-auth", b"0")
    try:
        assert error_code(lambda: aws.client("s3").list_buckets()) in ("InvalidAccessKeyId", "AccessDenied", "InvalidClientTokenId")
    finally:
        try:
            moto_post(lab, "/moto-api/reset-auth", b"inf")
        except urllib.error.URLError:
            pass
