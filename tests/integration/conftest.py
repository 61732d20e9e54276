"""Integration fixtures: real servers from lab/ (moto, goiardi, PostgreSQL, Nessus simulator, VM).

`make test` brings the lab up; the fixtures read its lab.json.  Each test that uses `aws` gets an
empty moto (POST /moto-api/reset).  Playbooks and targets run with the real ansible-playbook.
Helpers live in _lab.py.
"""
import pytest

from _lab import AWS, lab_env, moto_reset, run_playbook


@pytest.fixture(scope="session")
def lab():
    env = lab_env()
    if env is None:
        pytest.fail("the lab is not up: run `lab/lab up` (make test does it)")
    return env


@pytest.fixture
def aws(lab):
    moto_reset(lab)
    yield AWS(lab)
    moto_reset(lab)


@pytest.fixture
def playbook(lab):
    def _run(*args, **kwargs):
        return run_playbook(lab, *args, **kwargs)
    return _run
