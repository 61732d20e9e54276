"""instance_quarantine keeps its own record and cuts the instance's credentials (issue 11).

Against the lab's moto: the record lives in the evidence bucket, tags are never read as a record,
release refuses groups outside the instance's VPC, and the `cloudefigo-quarantine` inline policy
on the instance's role denies requests carrying the instance's `ec2:SourceInstanceARN` while it is
quarantined. moto does not evaluate that condition, so the written policy is evaluated with the
IAM simulator (tests/iam_sim): the quarantined instance is denied, a second instance sharing the
role is not.
"""
import json
import shutil

import pytest

from _lab import run_aws_module

BUCKET = "ir-evidence"
ROLE = "shared-app-role"
PROFILE = "shared-app-profile"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
LEGACY_GROUPS_TAG = "cloudefigo:quarantine:groups"
LEGACY_PROTECTION_TAG = "cloudefigo:quarantine:termination-protection"


def run_module(lab, name, **args):
    return run_aws_module(lab, name, **args)


@pytest.fixture
def fleet(lab, aws):
    """Two instances sharing one role (through one profile), an evidence bucket, and groups."""
    ec2, iam, s3 = aws.client("ec2"), aws.client("iam"), aws.client("s3")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    web = ec2.create_security_group(GroupName="app-web", Description="web", VpcId=vpc)["GroupId"]
    wide_open = ec2.create_security_group(GroupName="wide-open", Description="any", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=wide_open, IpPermissions=[{
        "IpProtocol": "-1", "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}])
    other_vpc = ec2.create_vpc(CidrBlock="10.99.0.0/16")["Vpc"]["VpcId"]
    foreign = ec2.create_security_group(GroupName="foreign", Description="elsewhere", VpcId=other_vpc)["GroupId"]
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName=ROLE, PolicyName="app", PolicyDocument=json.dumps(ALLOW_ALL))
    iam.create_instance_profile(InstanceProfileName=PROFILE)
    iam.add_role_to_instance_profile(InstanceProfileName=PROFILE, RoleName=ROLE)
    ids = [i["InstanceId"] for i in ec2.run_instances(
        ImageId="ami-1e749f67", MinCount=2, MaxCount=2, InstanceType="t3.micro", SubnetId=subnet,
        SecurityGroupIds=[web])["Instances"]]
    for instance_id in ids:
        ec2.associate_iam_instance_profile(IamInstanceProfile={"Name": PROFILE}, InstanceId=instance_id)
    s3.create_bucket(Bucket=BUCKET)
    account = ec2.describe_instances(InstanceIds=ids[:1])["Reservations"][0]["OwnerId"]
    return {"ec2": ec2, "iam": iam, "s3": s3, "vpc": vpc, "web": web, "wide_open": wide_open, "foreign": foreign,
            "other_vpc": other_vpc, "ids": ids,
            "arns": ["arn:aws:ec2:us-east-1:%s:instance/%s" % (account, i) for i in ids]}


def groups(ec2, instance_id):
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return sorted(g["GroupId"] for g in instance["SecurityGroups"])


def protected(ec2, instance_id):
    return ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="disableApiTermination")[
        "DisableApiTermination"]["Value"]


def eni_of(ec2, instance_id):
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return instance["NetworkInterfaces"][0]["NetworkInterfaceId"]


def revocation(iam):
    try:
        return iam.get_role_policy(RoleName=ROLE, PolicyName="cloudefigo-quarantine")["PolicyDocument"]
    except iam.exceptions.NoSuchEntityException:
        return None


def record(s3, instance_id):
    body = s3.get_object(Bucket=BUCKET, Key="quarantine/records/%s.json" % instance_id)["Body"].read()
    return json.loads(body)


def evaluate(policies, source_arn):
    """What IAM answers to ec2:TerminateInstances signed with the role's credentials from ``source_arn``."""
    from _iam_sim import Case, simulate_one  # pylint: disable=import-outside-toplevel
    if shutil.which("node") is None:
        pytest.skip("the IAM simulator needs node")
    context = {"ec2:SourceInstanceARN": source_arn} if source_arn else {}
    result = simulate_one(Case(
        principal="arn:aws:sts::123456789012:assumed-role/%s/session" % ROLE, action="ec2:TerminateInstances",
        resource="arn:aws:ec2:us-east-1:123456789012:instance/i-0target", identity_policies=policies,
        context=context, account_id="123456789012"))
    assert result.result != "Error", result.errors
    if source_arn:
        assert "ec2:SourceInstanceARN" not in result.ignored_context_keys
    return result.result


def test_record_revocation_and_release(lab, fleet):
    ec2, iam, s3 = fleet["ec2"], fleet["iam"], fleet["s3"]
    first, second = fleet["ids"]
    first_arn, second_arn = fleet["arns"]

    check = run_module(lab, "instance_quarantine", instance_id=first, case_id="IR-7", evidence_bucket=BUCKET,
                       _ansible_check_mode=True)
    assert check["changed"] and not check.get("failed"), check
    assert revocation(iam) is None and groups(ec2, first) == [fleet["web"]]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0

    done = run_module(lab, "instance_quarantine", instance_id=first, case_id="IR-7", evidence_bucket=BUCKET)
    assert done["changed"] and not done.get("failed"), done
    isolation = done["isolation_group_id"]
    assert groups(ec2, first) == [isolation] and groups(ec2, second) == [fleet["web"]]
    kept = record(s3, first)
    assert kept["state"] == "quarantined" and kept["termination_protection"] is False
    assert kept["network_interfaces"] == {eni_of(ec2, first): [fleet["web"]]} and kept["roles"] == [ROLE]
    assert done["revoked_roles"] == [ROLE] and protected(ec2, first)

    # the revocation: the quarantined instance's credentials are denied everything, wherever they
    # are used; the other instance of the role, and the role used without instance credentials, are not
    policy = revocation(iam)
    assert policy["Statement"][0]["Condition"] == {"StringEquals": {"ec2:SourceInstanceARN": first_arn}}
    assert evaluate([ALLOW_ALL, policy], first_arn) == "ExplicitlyDenied"
    assert evaluate([ALLOW_ALL, policy], second_arn) == "Allowed"
    assert evaluate([ALLOW_ALL, policy], None) == "Allowed"

    again = run_module(lab, "instance_quarantine", instance_id=first, case_id="IR-7", evidence_bucket=BUCKET)
    assert not again["changed"], again["actions"]

    # someone with ec2:CreateTags writes a "record" naming a wide-open group and protection off
    ec2.create_tags(Resources=[eni_of(ec2, first)], Tags=[{"Key": LEGACY_GROUPS_TAG, "Value": fleet["wide_open"]}])
    ec2.create_tags(Resources=[first], Tags=[{"Key": LEGACY_PROTECTION_TAG, "Value": "true"}])

    # the second instance of the role is quarantined too: one policy names both
    run_module(lab, "instance_quarantine", instance_id=second, case_id="IR-8", evidence_bucket=BUCKET)
    both = revocation(iam)
    assert evaluate([ALLOW_ALL, both], first_arn) == evaluate([ALLOW_ALL, both], second_arn) == "ExplicitlyDenied"

    released = run_module(lab, "instance_quarantine", instance_id=first, state="released", evidence_bucket=BUCKET)
    assert released["changed"] and not released.get("failed"), released
    # the record's groups, not the tag's; the record's protection (off), not the tag's
    assert groups(ec2, first) == [fleet["web"]]
    assert protected(ec2, first) is False
    tags = {t["Key"] for t in ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [first, eni_of(ec2, first)]}])["Tags"]}
    assert LEGACY_GROUPS_TAG not in tags and LEGACY_PROTECTION_TAG not in tags
    assert record(s3, first)["state"] == "released" and released["revoked_roles"] == []
    # lifted for the released instance only: the second is still cut off
    remaining = revocation(iam)
    assert evaluate([ALLOW_ALL, remaining], first_arn) == "Allowed"
    assert evaluate([ALLOW_ALL, remaining], second_arn) == "ExplicitlyDenied"

    run_module(lab, "instance_quarantine", instance_id=second, state="released", evidence_bucket=BUCKET)
    assert revocation(iam) is None
    assert groups(ec2, second) == [fleet["web"]]
    assert iam.get_role_policy(RoleName=ROLE, PolicyName="app")["PolicyDocument"] == ALLOW_ALL
    again = run_module(lab, "instance_quarantine", instance_id=first, state="released", evidence_bucket=BUCKET)
    assert not again["changed"], again["actions"]


def test_release_into_a_group_of_another_vpc_is_refused(lab, fleet):
    ec2, iam, s3 = fleet["ec2"], fleet["iam"], fleet["s3"]
    first = fleet["ids"][0]
    done = run_module(lab, "instance_quarantine", instance_id=first, case_id="IR-9", evidence_bucket=BUCKET)
    assert not done.get("failed"), done
    # the record now names a group of another VPC (a stale or altered record)
    kept = record(s3, first)
    kept["network_interfaces"] = {eni: [fleet["foreign"]] for eni in kept["network_interfaces"]}
    s3.put_object(Bucket=BUCKET, Key="quarantine/records/%s.json" % first, Body=json.dumps(kept).encode())

    refused = run_module(lab, "instance_quarantine", instance_id=first, state="released", evidence_bucket=BUCKET)
    assert refused.get("failed"), refused
    assert fleet["foreign"] in refused["msg"] and fleet["other_vpc"] in refused["msg"]
    # nothing changed: still isolated, protected, revoked
    assert groups(ec2, first) == [done["isolation_group_id"]]
    assert protected(ec2, first) is True and revocation(iam) is not None
    assert record(s3, first)["state"] == "quarantined"


def test_quarantine_tags_without_a_record_release_nothing(lab, fleet):
    """0.1.0 trusted these tags: anyone able to tag could choose the groups a release restores."""
    ec2 = fleet["ec2"]
    first = fleet["ids"][0]
    ec2.create_tags(Resources=[first], Tags=[{"Key": "SecurityStatus", "Value": "quarantined"}])
    ec2.create_tags(Resources=[eni_of(ec2, first)], Tags=[{"Key": LEGACY_GROUPS_TAG, "Value": fleet["wide_open"]}])
    refused = run_module(lab, "instance_quarantine", instance_id=first, state="released", evidence_bucket=BUCKET)
    assert refused.get("failed") and "no quarantine record" in refused["msg"], refused
    assert groups(ec2, first) == [fleet["web"]]
