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
