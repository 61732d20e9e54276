"""_iam_policy.ownership: who owns a role or profile, and what a run may do with it."""
import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import ownership

MINE = {"cloudefigo:instance-id": "i-0123456789abcdef0", "cloudefigo:launch-id": "L1", "Project": "x"}
I1 = "i-0123456789abcdef0"


def _check(tags, path="/cloudefigo/", instance_id=I1, launch_id="L1", adopt=None):
    return ownership.check_owner("role", "web-01", path, tags, instance_id, launch_id, adopt, "/cloudefigo/")


def test_own_role():
    assert _check(MINE) == ownership.OWN
    assert _check(MINE, launch_id=None) == ownership.OWN


def test_other_instance_is_refused_naming_it():
    with pytest.raises(ownership.OwnershipError) as err:
        _check(MINE, instance_id="i-0fedcba9876543210", launch_id="L2")
    assert "belongs to instance i-0123456789abcdef0 (launch L1)" in str(err.value)
    assert "not to instance i-0fedcba9876543210" in str(err.value)


def test_other_launch_of_the_same_instance_id_is_refused():
    with pytest.raises(ownership.OwnershipError) as err:
        _check(MINE, launch_id="L2")
    assert "launch L1" in str(err.value) and "not to launch L2" in str(err.value)


def test_missing_launch_mark_is_refused_when_a_launch_is_given():
    with pytest.raises(ownership.OwnershipError):
        _check({"cloudefigo:instance-id": I1})


def test_unmarked_role_needs_explicit_adoption():
    with pytest.raises(ownership.OwnershipError) as err:
        _check({"Project": "x"}, path="/")
    assert "adopt_instance_id: %s" % I1 in str(err.value)
    assert _check({"Project": "x"}, path="/", adopt=I1) == ownership.ADOPT


def test_adoption_never_takes_a_marked_role_of_another_instance():
    with pytest.raises(ownership.OwnershipError):
        _check(MINE, instance_id="i-0fedcba9876543210", adopt="i-0fedcba9876543210")


def test_adoption_only_at_legacy_or_own_path():
    with pytest.raises(ownership.OwnershipError) as err:
        _check({}, path="/admin/", adopt=I1)
    assert "path /admin/" in str(err.value)


def test_path_of_own_role():
    assert _check(MINE, path="/") == ownership.OWN  # adopted from 0.1.0, IAM cannot move it
    with pytest.raises(ownership.OwnershipError) as err:
        _check(MINE, path="/other/")
    assert err.value.args[0].startswith("path:")


def test_marks():
    assert ownership.marks(I1, "L1") == {"cloudefigo:instance-id": I1, "cloudefigo:launch-id": "L1"}
    assert ownership.marks(I1, None) == {"cloudefigo:instance-id": I1}
    assert ownership.owner_of(MINE) == (I1, "L1")
    assert ownership.owner_of(None) == (None, None)
