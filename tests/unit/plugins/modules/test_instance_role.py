"""Unit tests for cloudefigo.core.instance_role: option checks (no AWS).

The policy reasoning is tested in tests/unit/plugins/module_utils/test_iam_policy_*.py.
"""

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import inputs
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import ValidationError
from ansible_collections.cloudefigo.core.plugins.modules import instance_role as ir

I1 = "i-0123456789abcdef0"
BASE = {"name": "web-01", "instance_id": I1, "launch_id": "L1", "key_bucket": "keys", "key_object": "k"}


class TestBootstrapObjects:
    def test_both_forms(self):
        parsed = inputs.parse_bootstrap_objects(["boot/chef/validator.pem", {"bucket": "boot", "key": "chef/client.rb"}])
        assert parsed == [("boot", "chef/client.rb"), ("boot", "chef/validator.pem")]

    @pytest.mark.parametrize("item, message", [
        ("no-slash", "is not 'bucket/key'"),
        ("Bad_Bucket/key", "not a valid S3 bucket name"),
        ({"bucket": "boot"}, "key is not usable: it is empty"),
        ("boot/chef/*", "wildcards"),
        ("boot/chef/${aws:username}", "policy variables"),
        ({"bucket": "boot", "key": "k", "region": "x"}, "unknown field"),
        (42, "expected a 'bucket/key' string"),
        ("keys/chef/validator.pem", "inside key_bucket"),
    ])
    def test_refused(self, item, message):
        with pytest.raises(ValidationError) as err:
            inputs.parse_bootstrap_objects([item], "keys")
        assert "bootstrap_objects[0]" in str(err.value)
        assert message in str(err.value)


class TestMainValidation:
    """main() fails with a message naming the option, and no traceback, before touching AWS."""

    @pytest.mark.parametrize("args, option, text", [
        ({"stage": "staging"}, "stage", "must be one of"),
        ({"key_bucket": "Keys_Bucket"}, "key_bucket", "not a valid S3 bucket name"),
        ({"key_bucket": "ab"}, "key_bucket", "3 to 63 characters"),
        ({"key_bucket": "192.168.1.1"}, "key_bucket", "IP address"),
        ({"key_object": ""}, "key_object", "it is empty"),
        ({"key_object": "volumes/*"}, "key_object", "wildcards"),
        ({"stage": "production", "key_bucket": None}, "key_bucket", "stage=production needs key_bucket"),
        ({"stage": "production", "key_object": None}, "key_object", "stage=production needs key_object"),
        ({"name": "web 01"}, "name", "not a valid IAM role name"),
        ({"instance_id": None}, "instance_id", "missing required arguments"),
        ({"instance_id": None, "stage": "absent"}, "instance_id", "missing required arguments"),
        ({"instance_id": "web-01"}, "instance_id", "not an EC2 instance ID"),
        ({"launch_id": None}, "launch_id", "stage=launch needs launch_id"),
        ({"stage": "production", "launch_id": None}, "launch_id", "stage=production needs launch_id"),
        ({"launch_id": "has space"}, "launch_id", "is not a launch id"),
        ({"adopt_instance_id": "i-0fedcba9876543210"}, "adopt_instance_id", "must equal instance_id"),
        ({"tags": {"cloudefigo:instance-id": "i-0fedcba9876543210"}}, "tags", "reserved"),
        ({"tags": {"cloudefigo:launch-id": "x"}, "stage": "absent"}, "tags", "reserved"),
        ({"path": "cloudefigo"}, "path", "begin and end with /"),
        ({"permissions_boundary": "PowerUser"}, "permissions_boundary", "ARN"),
        ({"kms_key_arn": "alias/keys"}, "kms_key_arn", "KMS key ARN"),
        ({"kms_key_arn": "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"}, "kms_key_arn", "region eu-west-1"),
        ({"extra_statements": [{"Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"}]}, "extra_statements[0]", "refused"),
        ({"bootstrap_objects": ["boot"]}, "bootstrap_objects", "bucket/key"),
        ({"bootstrap_objects": ["keys/chef/validator.pem"]}, "bootstrap_objects", "inside key_bucket"),
        ({"stage": "production", "associate_instance_profile": True}, "associate_instance_profile", "only accepted with stage=launch"),
        ({"stage": "absent", "associate_instance_profile": True}, "associate_instance_profile", "only accepted with stage=launch"),
        ({"replace_instance_profile": True}, "replace_instance_profile", "needs associate_instance_profile=true"),
        ({"associate_instance_profile": True, "association_timeout": -5}, "association_timeout", "0 or more"),
    ])
    def test_fails_naming_option(self, run_aws_main, args, option, text):
        merged = dict(BASE, **args)
        result = run_aws_main(ir.main, **{k: v for k, v in merged.items() if v is not None})
        assert result["failed"] is True
        assert option in result["msg"]
        assert text in result["msg"]
        assert "exception" not in result and "Traceback" not in result["msg"]

    def test_omit_conditioned_denies_needs_a_custom_endpoint(self):
        # run_aws_main always passes an endpoint_url; without one the switch is refused
        with pytest.raises(ValidationError) as err:
            inputs.validate(dict(BASE, stage="launch", omit_conditioned_denies=True, endpoint_url=None))
        assert "omit_conditioned_denies" in str(err.value) and "endpoint_url" in str(err.value)
        assert inputs.validate(dict(BASE, stage="launch", omit_conditioned_denies=True, endpoint_url="http://127.0.0.1:1")) == ([], [])


class _Exit(Exception):
    pass


class _FakeModule:
    """Just what InstanceRole.associate uses; fail_json / fail_json_aws stop like AnsibleModule."""

    def __init__(self, check_mode=False, **params):
        self.params = dict(dict(instance_id=I1, name="web-01", associate_instance_profile=True, replace_instance_profile=False,
                                association_timeout=60, launch_id="L1"), **params)
        self.check_mode = check_mode
        self.failed = None

    def fail_json(self, **kwargs):
        self.failed = kwargs
        raise _Exit()

    def fail_json_aws(self, exception, msg):
        self.failed = {"msg": msg, "exception": exception}
        raise _Exit()


class _FakeEc2:
    """AssociateIamInstanceProfile answering a scripted list of errors, then success."""

    def __init__(self, errors=(), live=None):
        self.errors = list(errors)
        self.calls = []
        self.live = live

    def _answer(self, method, **kwargs):
        self.calls.append((method, kwargs))
        if self.errors:
            raise self.errors.pop(0)
        return {"IamInstanceProfileAssociation": {"AssociationId": "iip-assoc-new", "InstanceId": I1, "State": "associating",
                                                  "IamInstanceProfile": kwargs["IamInstanceProfile"]}}

    def associate_iam_instance_profile(self, **kwargs):
        return self._answer("associate", **kwargs)

    def replace_iam_instance_profile_association(self, **kwargs):
        return self._answer("replace", **kwargs)


def _client_error(code, message):
    import botocore.exceptions
    return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": message}}, "AssociateIamInstanceProfile")


PROFILE = "arn:aws:iam::123456789012:instance-profile/cloudefigo/web-01"
NEW_PROFILE_ERROR = ("InvalidParameterValue",
                     "Value (%s) for parameter iamInstanceProfile.arn is invalid. Invalid IAM Instance Profile ARN" % PROFILE)


def _role(monkeypatch, ec2, clock=None, **params):
    manager = ir.InstanceRole.__new__(ir.InstanceRole)
    manager.module = _FakeModule(**params)
    manager.params = manager.module.params
    manager.name = "web-01"
    manager.ec2 = ec2
    manager.changed = False
    manager.association = None
    now = [0.0]
    monkeypatch.setattr(ir.time, "time", lambda: now[0])
    monkeypatch.setattr(ir.time, "sleep", lambda seconds: now.__setitem__(0, now[0] + seconds))
    manager.clock = now
    return manager


class TestAssociate:
    """The association step (IAM's eventual consistency retried, bounded; other errors at once)."""

    def test_retries_a_brand_new_profile_then_associates(self, monkeypatch):
        ec2 = _FakeEc2([_client_error(*NEW_PROFILE_ERROR)] * 3)
        manager = _role(monkeypatch, ec2)
        state = manager.associate(PROFILE)
        assert state == {"association_id": "iip-assoc-new", "instance_profile_arn": PROFILE, "state": "associating"}
        assert [c[0] for c in ec2.calls] == ["associate"] * 4
        assert ec2.calls[-1][1] == {"IamInstanceProfile": {"Arn": PROFILE}, "InstanceId": I1, "aws_retry": True}
        assert manager.changed and 0 < manager.clock[0] < 60

    def test_gives_up_after_association_timeout(self, monkeypatch):
        ec2 = _FakeEc2([_client_error(*NEW_PROFILE_ERROR)] * 100)
        manager = _role(monkeypatch, ec2, association_timeout=20)
        with pytest.raises(_Exit):
            manager.associate(PROFILE)
        assert "association_timeout=20" in manager.module.failed["msg"]
        assert manager.clock[0] <= 20 and len(ec2.calls) < 100

    def test_other_errors_fail_at_once(self, monkeypatch):
        ec2 = _FakeEc2([_client_error("UnauthorizedOperation", "You are not authorized")])
        manager = _role(monkeypatch, ec2)
        with pytest.raises(_Exit):
            manager.associate(PROFILE)
        assert len(ec2.calls) == 1 and manager.clock[0] == 0

    def test_check_mode_calls_nothing(self, monkeypatch):
        ec2 = _FakeEc2()
        manager = _role(monkeypatch, ec2)
        manager.module.check_mode = True
        assert manager.associate(None)["association_id"] is None
        assert ec2.calls == [] and manager.changed

    def test_own_profile_already_there_is_nothing_to_do(self, monkeypatch):
        ec2 = _FakeEc2()
        manager = _role(monkeypatch, ec2)
        manager.association = {"AssociationId": "iip-assoc-1", "State": "associated", "IamInstanceProfile": {"Arn": PROFILE}}
        assert manager.associate(PROFILE)["association_id"] == "iip-assoc-1"
        assert ec2.calls == [] and not manager.changed

    def test_foreign_profile_refused_without_a_call(self, monkeypatch):
        ec2 = _FakeEc2()
        manager = _role(monkeypatch, ec2)
        foreign = "arn:aws:iam::123456789012:instance-profile/foothold"
        manager.association = {"AssociationId": "iip-assoc-1", "State": "associated", "IamInstanceProfile": {"Arn": foreign}}
        with pytest.raises(_Exit):
            manager.associate(PROFILE)
        assert ec2.calls == [] and not manager.changed
        assert manager.module.failed["associated_instance_profile_arn"] == foreign
        assert "replace_instance_profile" in manager.module.failed["msg"]

    def test_foreign_profile_replaced_when_asked(self, monkeypatch):
        ec2 = _FakeEc2([_client_error(*NEW_PROFILE_ERROR)])
        manager = _role(monkeypatch, ec2, replace_instance_profile=True)
        manager.association = {"AssociationId": "iip-assoc-1", "State": "associated",
                               "IamInstanceProfile": {"Arn": "arn:aws:iam::123456789012:instance-profile/template"}}
        assert manager.associate(PROFILE)["instance_profile_arn"] == PROFILE
        assert ec2.calls[-1] == ("replace", {"IamInstanceProfile": {"Arn": PROFILE}, "AssociationId": "iip-assoc-1",
                                             "aws_retry": True})
