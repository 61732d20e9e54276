"""Only the controller can write a launch record: the key bucket's policy (the statements volume_key keeps,
from module_utils/_key_custody) evaluated by the IAM simulator (tests/iam_sim, test-only).

moto applies a bucket policy's Deny statements without their conditions (LAB-FACTS), so the lab
runs without them; here the real statements decide. A record is what the audit's reconciliation
trusts to remove a gone instance's key, role, volumes and Chef node: if anyone but the controller
could write or re-tag one (an instance with its own credentials, another principal of the account
with s3:* on everything, someone who can only write tags), that person could steer the removal
onto resources of their choice. Each denial is shown to come from the controllers-only statement:
without it the same request is allowed.
"""
from _iam_sim import ALLOWED, EXPLICIT_DENY, Case, simulate

from ansible_collections.cloudefigo.core.plugins.module_utils import _key_custody as kc
from ansible_collections.cloudefigo.core.plugins.module_utils import _reconcile as rc

ACCOUNT = "123456789012"
BUCKET = "sim-record-keys"
CONTROLLER = "arn:aws:iam::%s:role/cloudefigo/controller" % ACCOUNT
ADMIN = "arn:aws:iam::%s:user/admin-without-controller-rights" % ACCOUNT
TAGGER = "arn:aws:iam::%s:role/tag-editor" % ACCOUNT
INSTANCE_ROLE = "arn:aws:iam::%s:role/cloudefigo/web-01" % ACCOUNT
INSTANCE_ID = "i-0123456789abcdef0"
RECORD = "arn:aws:s3:::%s/%s" % (BUCKET, rc.record_key(rc.DEFAULT_PREFIX, "us-east-1", INSTANCE_ID))
BROAD = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:*", "kms:*"], "Resource": "*"}]}
# someone whose job is tagging: every tag write AWS has, and nothing else
TAG_WRITER = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [
    "ec2:CreateTags", "iam:TagRole", "iam:TagInstanceProfile", "s3:PutObjectTagging", "s3:PutObjectVersionTagging"],
    "Resource": "*"}]}
WRITES = ("s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectVersionTagging", "s3:DeleteObject", "s3:DeleteObjectVersion")


def _policy(without=()):
    policy = kc.merge_bucket_policy(None, kc.bucket_statements("aws", BUCKET, [CONTROLLER]))
    return dict(policy, Statement=[s for s in policy["Statement"] if s["Sid"] not in without])


def _context(principal, instance=False):
    out = {"aws:SecureTransport": "true", "aws:PrincipalArn": principal}
    if instance:
        out.update({"ec2:SourceInstanceARN": "arn:aws:ec2:us-east-1:%s:instance/%s" % (ACCOUNT, INSTANCE_ID),
                    "ec2:RoleDelivery": "2.0"})
    return out


def test_only_the_controller_writes_or_tags_a_record():
    rows = [(CONTROLLER, BROAD, action, _context(CONTROLLER), ALLOWED) for action in WRITES]
    rows += [(ADMIN, BROAD, action, _context(ADMIN), EXPLICIT_DENY) for action in WRITES]
    rows += [(TAGGER, TAG_WRITER, action, _context(TAGGER), EXPLICIT_DENY) for action in ("s3:PutObjectTagging", "s3:PutObjectVersionTagging")]
    # the instance itself, with its own credentials, even if its role were given s3:* by mistake
    session = "arn:aws:sts::%s:assumed-role/web-01/%s" % (ACCOUNT, INSTANCE_ID)
    rows += [(session, BROAD, action, dict(_context(INSTANCE_ROLE, instance=True)), EXPLICIT_DENY) for action in WRITES]
    cases = [Case(principal, action, RECORD, identity_policies=[identity], resource_policy=_policy(), context=context,
                  account_id=ACCOUNT) for principal, identity, action, context, _expected in rows]
    # the same requests without the controllers-only statement: allowed, so that statement is what denies
    denied = [row for row in rows if row[4] == EXPLICIT_DENY]
    cases += [Case(principal, action, RECORD, identity_policies=[identity], resource_policy=_policy([kc.SID_CONTROLLERS_ONLY]),
                   context=context, account_id=ACCOUNT) for principal, identity, action, context, _expected in denied]
    results = simulate(cases)
    for (principal, _identity, action, _context_, expected), got in zip(rows, results):
        assert got.result == expected, "%s %s: %s, expected %s" % (principal, action, got.result, expected)
    for (principal, _identity, action, _context_, _expected), got in zip(denied, results[len(rows):]):
        assert got.result == ALLOWED, "%s %s without %s: %s" % (principal, action, kc.SID_CONTROLLERS_ONLY, got.result)


def test_no_instance_reads_a_record():
    """A record carries no cloudefigo:instance-arn tag: no instance can read it, not even its own."""
    session = "arn:aws:sts::%s:assumed-role/web-01/%s" % (ACCOUNT, INSTANCE_ID)
    got = simulate([Case(session, "s3:GetObject", RECORD, identity_policies=[BROAD], resource_policy=_policy(),
                         context=_context(INSTANCE_ROLE, instance=True), account_id=ACCOUNT)])
    assert got[0].result == EXPLICIT_DENY
    assert "cloudefigo:instance-arn" not in rc.record_tags({
        "instance_id": INSTANCE_ID, "launch_id": "l1", "region": "us-east-1", "account": ACCOUNT})
