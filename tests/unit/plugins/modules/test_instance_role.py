"""Unit tests for cloudefigo.core.instance_role: policy building and input validation (no AWS)."""

import pytest

from ansible_collections.cloudefigo.core.plugins.modules import instance_role as ir

INSTANCE_ARN = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0"


def _actions(policy):
    out = []
    for statement in policy["Statement"]:
        action = statement["Action"]
        out += action if isinstance(action, list) else [action]
    return out


def _resources(policy):
    out = []
    for statement in policy["Statement"]:
        resource = statement["Resource"]
        out += resource if isinstance(resource, list) else [resource]
    return out


class TestBuildPolicy:
    def test_launch_reads_key_and_bootstrap_objects_only(self):
        policy = ir.build_policy("launch", "aws", "keys", "volumes/web-01.key", [("boot", "chef/validator.pem")])
        assert set(_actions(policy)) == {"s3:GetObject"}
        assert sorted(_resources(policy)) == ["arn:aws:s3:::boot/chef/validator.pem", "arn:aws:s3:::keys/volumes/web-01.key"]
        assert all(s["Effect"] == "Allow" for s in policy["Statement"])

    def test_launch_has_no_iam_passrole_or_wildcard(self):
        policy = ir.build_policy("launch", "aws", "keys", "k", [("boot", "v.pem")])
        for action in _actions(policy):
            assert not action.lower().startswith("iam:")
            assert "*" not in action
        assert "*" not in "".join(_resources(policy))

    def test_production_reads_own_key_only(self):
        policy = ir.build_policy("production", "aws", "keys", "volumes/web-01.key", [("boot", "chef/validator.pem")])
        assert policy["Statement"] == [
            {"Sid": "ReadOwnVolumeKey", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::keys/volumes/web-01.key"}
        ]

    def test_instance_id_binds_every_generated_statement(self):
        policy = ir.build_policy("launch", "aws", "keys", "k", [("boot", "v.pem")], INSTANCE_ARN)
        assert len(policy["Statement"]) == 2
        for statement in policy["Statement"]:
            assert statement["Condition"] == {"ArnEquals": {"ec2:SourceInstanceARN": INSTANCE_ARN}}

    def test_partition_is_used(self):
        policy = ir.build_policy("production", "aws-cn", "keys", "k")
        assert policy["Statement"][0]["Resource"] == "arn:aws-cn:s3:::keys/k"

    def test_extra_statements_appended_unchanged(self):
        extra = [{"Effect": "Allow", "Action": "ec2:DescribeTags", "Resource": "*"}]
        policy = ir.build_policy("production", "aws", "keys", "k", extra_statements=extra)
        assert policy["Statement"][-1] == extra[0]


class TestBootstrapObjects:
    def test_both_forms(self):
        parsed = ir.parse_bootstrap_objects(["boot/chef/validator.pem", {"bucket": "boot", "key": "chef/client.rb"}])
        assert parsed == [("boot", "chef/client.rb"), ("boot", "chef/validator.pem")]

    @pytest.mark.parametrize("item, message", [
        ("no-slash", "is not 'bucket/key'"),
        ("Bad_Bucket/key", "not a valid S3 bucket name"),
        ({"bucket": "boot"}, "key is not usable: it is empty"),
        ("boot/chef/*", "wildcards are not allowed"),
        ({"bucket": "boot", "key": "k", "region": "x"}, "unknown field"),
        (42, "expected a 'bucket/key' string"),
    ])
    def test_refused(self, item, message):
        with pytest.raises(ir.ValidationError) as err:
            ir.parse_bootstrap_objects([item])
        assert "bootstrap_objects[0]" in str(err.value)
        assert message in str(err.value)


class TestExtraStatements:
    @pytest.mark.parametrize("statement, problem", [
        ({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}, "grants IAM actions"),
        ({"Effect": "Allow", "Action": ["iam:*"], "Resource": "arn:aws:iam::123456789012:role/x"}, "grants IAM actions"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "grants IAM actions"),
        ({"Effect": "Allow", "Action": "i?m:Pass*", "Resource": "arn:aws:iam::1:role/x"}, "grants IAM actions"),
        ({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}, "on every resource"),
        ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}, "on every resource"),
        ({"Effect": "Allow", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::*"}, "on every resource"),
        ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::*/*"}, "on every resource"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::keys/*"}, "other objects of key_bucket"),
        ({"Effect": "Allow", "Action": "s3:Get*", "Resource": "arn:aws:s3:::keys/volumes/*"}, "other objects of key_bucket"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::keys/volumes/db-01.key"}, "other objects of key_bucket"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, "other objects of key_bucket"),
        ({"Effect": "Allow", "Action": "s3:GetObjectVersion", "Resource": "arn:aws:s3:::k*/volumes/*"}, "other objects of key_bucket"),
        ({"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "arn:aws:s3:::x/y"}, "NotAction or NotResource"),
        ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::keys/*"}, "write or delete objects of key_bucket"),
        ({"Effect": "Allow", "Action": "s3:DeleteObjectVersion", "Resource": "arn:aws:s3:::keys/volumes/db-01.key"},
         "write or delete objects of key_bucket"),
        ({"Effect": "Allow", "Action": "s3:Delete*", "Resource": "arn:aws:s3:::keys/volumes/web-01.key"},
         "write or delete objects of key_bucket"),
    ])
    def test_refused(self, statement, problem):
        with pytest.raises(ir.ValidationError) as err:
            ir.validate_extra_statements([statement], "aws", "keys", allow_privileged=False, key_object="volumes/web-01.key")
        message = str(err.value)
        assert message.startswith("extra_statements[0]")
        assert problem in message
        assert "allow_privileged_statements" in message

    @pytest.mark.parametrize("statement", [
        {"Effect": "Allow", "Action": "ec2:DescribeTags", "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"], "Resource": "arn:aws:logs:us-east-1:1:log-group:web:*"},
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::other-bucket/app.tar.gz"},
        {"Effect": "Allow", "Action": "s3:GetObjectVersion", "Resource": "arn:aws:s3:::keys/volumes/web-01.key"},
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
    ])
    def test_accepted(self, statement):
        assert ir.validate_extra_statements([statement], "aws", "keys", allow_privileged=False, key_object="volumes/web-01.key") == []

    def test_override_turns_refusal_into_warning(self):
        warnings = ir.validate_extra_statements([{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}], "aws", "keys", True)
        assert len(warnings) == 1 and "allow_privileged_statements=true" in warnings[0]

    @pytest.mark.parametrize("statement, message", [
        ({"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "*"}, "Effect must be Allow or Deny"),
        ({"Effect": "Allow", "Resource": "*"}, "needs Action"),
        ({"Effect": "Allow", "Action": "s3:GetObject"}, "needs Resource"),
        ({"Sid": "ReadOwnVolumeKey", "Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}, "is reserved"),
    ])
    def test_malformed(self, statement, message):
        with pytest.raises(ir.ValidationError) as err:
            ir.validate_extra_statements([statement], "aws", "keys", allow_privileged=True)
        assert message in str(err.value)


class TestMainValidation:
    """main() fails with a message naming the option, and no traceback, before touching AWS."""

    @pytest.mark.parametrize("args, option, text", [
        ({"name": "web-01", "stage": "staging", "key_bucket": "keys", "key_object": "k"}, "stage", "must be one of"),
        ({"name": "web-01", "key_bucket": "Keys_Bucket", "key_object": "k"}, "key_bucket", "not a valid S3 bucket name"),
        ({"name": "web-01", "key_bucket": "ab", "key_object": "k"}, "key_bucket", "3 to 63 characters"),
        ({"name": "web-01", "key_bucket": "192.168.1.1", "key_object": "k"}, "key_bucket", "IP address"),
        ({"name": "web-01", "key_bucket": "keys", "key_object": ""}, "key_object", "it is empty"),
        ({"name": "web-01", "key_bucket": "keys", "key_object": "volumes/*"}, "key_object", "wildcards"),
        ({"name": "web-01", "stage": "production", "key_object": "k"}, "key_bucket", "stage=production needs key_bucket"),
        ({"name": "web-01", "stage": "production", "key_bucket": "keys"}, "key_object", "stage=production needs key_object"),
        ({"name": "web 01", "key_bucket": "keys", "key_object": "k"}, "name", "not a valid IAM role name"),
        ({"name": "web-01", "key_bucket": "keys", "key_object": "k", "instance_id": "web-01"}, "instance_id", "not an EC2 instance ID"),
        ({"name": "web-01", "key_bucket": "keys", "key_object": "k", "permissions_boundary": "PowerUser"}, "permissions_boundary", "ARN"),
        ({"name": "web-01", "key_bucket": "keys", "key_object": "k",
          "extra_statements": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}, "extra_statements", "refused"),
        ({"name": "web-01", "key_bucket": "keys", "key_object": "k", "bootstrap_objects": ["boot"]}, "bootstrap_objects", "bucket/key"),
    ])
    def test_fails_naming_option(self, run_aws_main, args, option, text):
        result = run_aws_main(ir.main, **args)
        assert result["failed"] is True
        assert option in result["msg"]
        assert text in result["msg"]
        assert "exception" not in result and "Traceback" not in result["msg"]
