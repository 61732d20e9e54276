"""Fixtures for module unit tests."""
import json

import pytest

from ansible.module_utils.testing import patch_module_args


@pytest.fixture
def run_aws_main(capsys):
    """Run an AWS module's main() with lab-less connection options; returns its JSON result.

    Nothing listens on the endpoint: a test using this expects the module to stop (e.g. on
    validation) before any AWS call.
    """
    def _run(main, **args):
        base = {"region": "us-east-1", "access_key": "testing", "secret_key": "testing",
                "endpoint_url": "http://127.0.0.1:9"}
        base.update(args)
        with patch_module_args(base):
            with pytest.raises(SystemExit):
                main()
        return json.loads(capsys.readouterr().out)
    return _run


# Keys every module result may carry without documenting them in RETURN (ansible-core's and
# amazon.aws's own: fail_json_aws adds the boto error details)
COMMON_RESULT_KEYS = {"changed", "failed", "msg", "diff", "warnings", "deprecations", "invocation", "skipped",
                      "exception", "error", "response_metadata", "boto3_version", "botocore_version"}


def module_of_caller():
    """The collection module (its Python module object) whose code called exit_json/fail_json."""
    import inspect
    import sys
    for frame in inspect.stack()[2:]:
        name = frame.frame.f_globals.get("__name__", "")
        if name.startswith("ansible_collections.cloudefigo.core.plugins.modules."):
            return sys.modules[name]
    return None


def documented_keys(module):
    import yaml
    return set(yaml.safe_load(module.RETURN) or {})


@pytest.fixture(autouse=True)
def returned_keys_are_documented(monkeypatch):
    """Every unit test that drives a module's main() also checks that each key it returned (on
    success, and on failure besides the message) is in the module's RETURN."""
    from ansible.module_utils.basic import AnsibleModule
    seen = []
    exit_json, fail_json = AnsibleModule.exit_json, AnsibleModule.fail_json

    def record(original):
        def wrapper(self, *args, **kwargs):
            module = module_of_caller()
            if module is not None:
                seen.append((module, set(kwargs)))
            return original(self, *args, **kwargs)
        return wrapper
    monkeypatch.setattr(AnsibleModule, "exit_json", record(exit_json))
    monkeypatch.setattr(AnsibleModule, "fail_json", record(fail_json))
    yield seen
    for module, keys in seen:
        undocumented = keys - COMMON_RESULT_KEYS - documented_keys(module)
        assert not undocumented, "%s returned %s, which its RETURN does not document" % (
            module.__name__.rsplit(".", 1)[-1], sorted(undocumented))
