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
