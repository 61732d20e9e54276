"""What the role policies instance_role writes really allow: read back from moto, evaluated by an IAM simulator.

moto stores the documents but evaluates no condition operator but StringEquals, so it cannot tell
whether stolen credentials are useless elsewhere. Here the module runs for real (ansible-playbook
against the lab's moto, without the lab switch), the inline policy it wrote is read back with
boto3, and tests/iam_sim (@cloud-copilot/iam-simulate, test-only) evaluates requests against it
with the request context AWS would set:

- the instance itself, IMDSv2 credentials, inside its VPC through the S3 gateway endpoint: allowed;
- the same credentials from another VPC, another address, or the internet (no aws:SourceVpc):
  denied; credentials delivered by IMDSv1: denied;
- another instance's role, or the role's credentials on another instance: denied;
- S3 calling KMS on the instance's behalf to decrypt the key object: allowed; a direct
  kms:Decrypt: denied.

Each Deny is shown to be what denies: without it the same request is allowed.
"""
import json

import pytest

from _iam_sim import ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY, Case, simulate
from _lab import AWS, moto_reset, run_playbook

ENDPOINT_ARGS = {"endpoint_url": "{{ lab_aws_endpoint }}", "access_key": "testing", "secret_key": "testing", "region": "us-east-1"}
REGION = "us-east-1"
BUCKET = "sim-volume-keys"
WEB, DB = "web-01", "db-01"
WEB_ID, DB_ID = "i-0123456789abcdef0", "i-0fedcba9876543210"
WEB_VPC, WEB_IP = "vpc-0aaaaaaaaaaaaaaaa", "10.20.1.10"
KEYS = {WEB: "volumes/web-01.key", DB: "volumes/db-01.key"}
BOOT = "sim-bootstrap/chef/validator.pem"


def _role_task(name, role, instance_id, stage, kms_key_arn):
    return {"name": name, "register": "out", "cloudefigo.core.instance_role": {
        "name": role, "stage": stage, "instance_id": instance_id, "launch_id": "sim-launch",
        "key_bucket": BUCKET, "key_object": KEYS[role], "kms_key_arn": kms_key_arn, "bootstrap_objects": [BOOT]}}


@pytest.fixture(scope="module")
def written(lab, tmp_path_factory):
    """Run instance_role for two instances (web-01 at launch and production, db-01 at launch) and
    read back the inline policies it wrote (once for the module: the simulations only read)."""
    moto_reset(lab)
    aws = AWS(lab)
    tmp_path = tmp_path_factory.mktemp("sim")
    kms_key_arn = aws.client("kms").create_key(Description="sim key bucket key")["KeyMetadata"]["Arn"]
    play = [{"name": "Instance roles for simulation", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "module_defaults": {"group/cloudefigo.core.all": ENDPOINT_ARGS, "group/aws": ENDPOINT_ARGS},
             "tasks": [_role_task("web launch", WEB, WEB_ID, "launch", kms_key_arn),
                       _role_task("db launch", DB, DB_ID, "launch", kms_key_arn),
                       _role_task("web production", WEB, WEB_ID, "production", kms_key_arn)]}]
    path = tmp_path / "play.yml"
    path.write_text(json.dumps(play))
    result = run_playbook(lab, str(path))
    assert result.rc == 0, result.stdout[-10000:]
    iam = aws.client("iam")
    account = aws.client("sts").get_caller_identity()["Account"]
    docs = {role: iam.get_role_policy(RoleName=role, PolicyName="cloudefigo-instance")["PolicyDocument"] for role in (WEB, DB)}
    launch_doc = result.task_results("web launch")[0]["policy"]
    moto_reset(lab)
    return {"account": account, "kms": kms_key_arn, "docs": docs, "web_launch": launch_doc}


def _instance_arn(account, instance_id):
    return "arn:aws:ec2:%s:%s:instance/%s" % (REGION, account, instance_id)


def _key_arn(role):
    return "arn:aws:s3:::%s/%s" % (BUCKET, KEYS[role])


def _own_context(account):
    """What AWS sets on web-01's own S3 request: IMDSv2 credentials, through the VPC's gateway endpoint."""
    return {
        "ec2:SourceInstanceARN": _instance_arn(account, WEB_ID),
        "ec2:RoleDelivery": "2.0",
        "aws:EC2InstanceSourceVPC": WEB_VPC,
        "aws:EC2InstanceSourcePrivateIPv4": WEB_IP,
        "aws:SourceVpc": WEB_VPC,
        "aws:VpcSourceIp": WEB_IP,
        "aws:ViaAWSService": "false",
        "aws:SecureTransport": "true",
    }


def _ctx(account, **changes):
    """The own context with keys changed (None: the key is absent from the request)."""
    out = _own_context(account)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def _without(doc, sid):
    return {"Version": doc["Version"], "Statement": [s for s in doc["Statement"] if s.get("Sid") != sid]}


def _principal(account, role, session):
    return "arn:aws:sts::%s:assumed-role/%s/%s" % (account, role, session)


def _key_policy(account):
    """AWS's default key policy: the account's IAM policies decide (the key bucket's own key
    policy is volume_key's and is simulated with it)."""
    return {"Version": "2012-10-17", "Statement": [{"Sid": "EnableIamPolicies", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::%s:root" % account}, "Action": "kms:*", "Resource": "*"}]}


def test_written_documents_carry_the_denies(written):
    for doc in written["docs"].values():
        sids = [s.get("Sid") for s in doc["Statement"] if s["Effect"] == "Deny"]
        assert sids == ["DenyOutsideInstanceVpc", "DenyOutsideInstancePrivateIp", "DenyImdsV1Credentials", "DenyKeyWithoutVpcEndpoint"]


def test_key_read_matrix(written):
    acct, web_doc, db_doc = written["account"], written["docs"][WEB], written["docs"][DB]
    web = _principal(acct, WEB, WEB_ID)
    key = _key_arn(WEB)
    matrix = [
        ("own instance, IMDSv2, in its VPC via the endpoint", web, web_doc, _ctx(acct), ALLOWED, None),
        # private addresses repeat across VPCs: an attacker's host in another VPC may have the same one
        ("stolen credentials used from another VPC, same private address", web, web_doc,
         _ctx(acct, **{"aws:SourceVpc": "vpc-0bbbbbbbbbbbbbbbb"}), EXPLICIT_DENY, "DenyOutsideInstanceVpc"),
        ("stolen credentials used from another address of the same VPC", web, web_doc,
         _ctx(acct, **{"aws:VpcSourceIp": "10.20.1.99"}), EXPLICIT_DENY, "DenyOutsideInstancePrivateIp"),
        # from the internet, or from the instance itself when its VPC has no S3 gateway endpoint:
        # the request carries no aws:SourceVpc, ${aws:SourceVpc} does not resolve
        ("no aws:SourceVpc (internet, or no S3 gateway endpoint)", web, web_doc,
         _ctx(acct, **{"aws:SourceVpc": None, "aws:VpcSourceIp": None}), EXPLICIT_DENY, "DenyKeyWithoutVpcEndpoint"),
        ("credentials delivered by IMDSv1", web, web_doc, _ctx(acct, **{"ec2:RoleDelivery": "1.0"}), EXPLICIT_DENY, "DenyImdsV1Credentials"),
        ("web-01's credentials on another instance", web, web_doc,
         _ctx(acct, **{"ec2:SourceInstanceARN": _instance_arn(acct, DB_ID)}), IMPLICIT_DENY, None),
        ("another instance's role (db-01) reading web-01's key", _principal(acct, DB, DB_ID), db_doc,
         _ctx(acct, **{"ec2:SourceInstanceARN": _instance_arn(acct, DB_ID)}), IMPLICIT_DENY, None),
        ("web-01 reading db-01's key", web, web_doc, _ctx(acct), IMPLICIT_DENY, None),
    ]
    cases = []
    for _name, principal, doc, context, _expected, deny in matrix:
        resource = _key_arn(DB) if _name == "web-01 reading db-01's key" else key
        cases.append(Case(principal, "s3:GetObject", resource, identity_policies=[doc], context=context, account_id=acct))
        if deny:
            cases.append(Case(principal, "s3:GetObject", resource, identity_policies=[_without(doc, deny)], context=context,
                              account_id=acct))
    results = iter(simulate(cases))
    for name, _principal_arn, _doc, context, expected, deny in matrix:
        got = next(results)
        assert got.result == expected, "%s: %s, expected %s" % (name, got.result, expected)
        assert not set(got.ignored_context_keys) & set(context), "%s: simulator ignored %s" % (name, got.ignored_context_keys)
        if deny:
            # the Deny named is what denies: the same request without it is allowed
            assert next(results).result == ALLOWED, "%s: still denied without %s" % (name, deny)


def test_s3_decrypts_the_key_for_the_instance_but_the_instance_cannot_decrypt_directly(written):
    acct, web_doc, kms = written["account"], written["docs"][WEB], written["kms"]
    web = _principal(acct, WEB, WEB_ID)
    via_s3 = _ctx(acct, **{"aws:ViaAWSService": "true", "kms:ViaService": "s3.%s.amazonaws.com" % REGION,
                           "aws:CalledVia": ["s3.amazonaws.com"], "aws:SourceVpc": None, "aws:VpcSourceIp": None})
    results = simulate([
        Case(web, "kms:Decrypt", kms, identity_policies=[web_doc], resource_policy=_key_policy(acct), context=via_s3, account_id=acct),
        Case(web, "kms:Decrypt", kms, identity_policies=[web_doc], resource_policy=_key_policy(acct), context=_ctx(acct), account_id=acct),
        Case(web, "kms:Decrypt", kms, identity_policies=[web_doc], resource_policy=_key_policy(acct),
             context=dict(via_s3, **{"ec2:SourceInstanceARN": _instance_arn(acct, DB_ID)}), account_id=acct),
        Case(web, "kms:Decrypt", kms, identity_policies=[web_doc], resource_policy=_key_policy(acct),
             context=dict(via_s3, **{"ec2:RoleDelivery": "1.0"}), account_id=acct),
    ])
    assert [r.result for r in results] == [ALLOWED, IMPLICIT_DENY, IMPLICIT_DENY, EXPLICIT_DENY]
    assert "kms:ViaService" not in results[0].ignored_context_keys


def test_bootstrap_objects_only_at_launch_and_only_inside_the_vpc(written):
    acct = written["account"]
    web = _principal(acct, WEB, WEB_ID)
    boot = "arn:aws:s3:::" + BOOT
    results = simulate([
        Case(web, "s3:GetObject", boot, identity_policies=[written["web_launch"]], context=_ctx(acct), account_id=acct),
        Case(web, "s3:GetObject", boot, identity_policies=[written["web_launch"]],
             context=_ctx(acct, **{"aws:SourceVpc": None, "aws:VpcSourceIp": None}), account_id=acct),
        Case(web, "s3:GetObject", boot, identity_policies=[written["docs"][WEB]], context=_ctx(acct), account_id=acct),
    ])
    assert [r.result for r in results] == [ALLOWED, EXPLICIT_DENY, IMPLICIT_DENY]


def test_progress_tag_only_on_itself_and_only_its_progress_key(written):
    """A self-configuring instance (pull mode) reports its steps in tag cloudefigo:progress: its launch
    role may set that tag, on itself, and nothing else; the production role may tag nothing."""
    acct, launch, production = written["account"], written["web_launch"], written["docs"][WEB]
    web = _principal(acct, WEB, WEB_ID)
    own, other = _instance_arn(acct, WEB_ID), _instance_arn(acct, DB_ID)

    def tagging(keys, **changes):
        context = _ctx(acct, **changes)
        if keys is not None:
            context["aws:TagKeys"] = keys
            for key in keys:
                context["aws:RequestTag/" + key] = "chef"
        return context

    no_guard = json.loads(json.dumps(launch))
    for statement in no_guard["Statement"]:
        if statement.get("Sid") == "TagOwnProgress":
            del statement["Condition"]["Null"]
    matrix = [
        ("its own progress, on itself", "ec2:CreateTags", own, launch, tagging(["cloudefigo:progress"]), ALLOWED),
        # the EC2 API over the internet (no interface endpoint): the network Denies do not match
        ("its own progress, no VPC endpoint", "ec2:CreateTags", own, launch,
         tagging(["cloudefigo:progress"], **{"aws:SourceVpc": None, "aws:VpcSourceIp": None}), ALLOWED),
        ("SecurityStatus on itself", "ec2:CreateTags", own, launch, tagging(["SecurityStatus"]), IMPLICIT_DENY),
        ("progress and SecurityStatus at once", "ec2:CreateTags", own, launch,
         tagging(["cloudefigo:progress", "SecurityStatus"]), IMPLICIT_DENY),
        ("an owner mark on itself", "ec2:CreateTags", own, launch, tagging(["cloudefigo:instance-id"]), IMPLICIT_DENY),
        ("a look-alike key", "ec2:CreateTags", own, launch, tagging(["xcloudefigo:progress"]), IMPLICIT_DENY),
        ("no tag key at all (ForAllValues of nothing)", "ec2:CreateTags", own, launch, tagging(None), IMPLICIT_DENY),
        ("... allowed without the Null guard", "ec2:CreateTags", own, no_guard, tagging(None), ALLOWED),
        ("its progress on another instance", "ec2:CreateTags", other, launch, tagging(["cloudefigo:progress"]), IMPLICIT_DENY),
        ("its credentials used on another instance", "ec2:CreateTags", own, launch,
         tagging(["cloudefigo:progress"], **{"ec2:SourceInstanceARN": other}), IMPLICIT_DENY),
        ("deleting a tag", "ec2:DeleteTags", own, launch, tagging(["SecurityStatus"]), IMPLICIT_DENY),
        ("the production role, its own progress", "ec2:CreateTags", own, production,
         tagging(["cloudefigo:progress"]), IMPLICIT_DENY),
        ("the production role, SecurityStatus", "ec2:CreateTags", own, production, tagging(["SecurityStatus"]), IMPLICIT_DENY),
    ]
    results = simulate([Case(web, action, resource, identity_policies=[doc], context=context, account_id=acct)
                        for _name, action, resource, doc, context, _expected in matrix])
    for (name, _action, _resource, _doc, context, expected), got in zip(matrix, results):
        assert got.result == expected, "%s: %s, expected %s (%s)" % (name, got.result, expected, got.errors)
        if "aws:TagKeys" in context:
            assert "aws:TagKeys" not in got.ignored_context_keys, "%s: simulator ignored aws:TagKeys" % name
