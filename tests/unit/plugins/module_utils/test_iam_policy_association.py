"""Unit tests for _iam_policy/association.py: what instance_role does about a profile association."""

import pytest

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import association as assoc

I1 = "i-0123456789abcdef0"
OURS = "arn:aws:iam::123456789012:instance-profile/cloudefigo/web-01"
FOREIGN = "arn:aws:iam::123456789012:instance-profile/foothold"


def _a(arn, state="associated", aid="iip-assoc-1"):
    return {"AssociationId": aid, "InstanceId": I1, "IamInstanceProfile": {"Arn": arn, "Id": "AIPA"}, "State": state}


class TestLiveAssociation:
    def test_none(self):
        assert assoc.live_association([]) is None
        assert assoc.live_association(None) is None

    def test_gone_associations_do_not_count(self):
        assert assoc.live_association([_a(FOREIGN, "disassociated"), _a(FOREIGN, "disassociating", "iip-assoc-2")]) is None

    @pytest.mark.parametrize("state", ["associating", "associated"])
    def test_live(self, state):
        assert assoc.live_association([_a(FOREIGN, "disassociated", "x"), _a(OURS, state)])["State"] == state

    def test_two_live_refused(self):
        with pytest.raises(assoc.AssociationError) as err:
            assoc.live_association([_a(OURS), _a(FOREIGN, aid="iip-assoc-2")])
        assert "iip-assoc-1, iip-assoc-2" in str(err.value)


class TestDecide:
    def test_no_association_associates(self):
        assert assoc.decide(None, OURS, "web-01", I1, False) == (assoc.ASSOCIATE, None)

    @pytest.mark.parametrize("state", ["associating", "associated"])
    @pytest.mark.parametrize("replace", [False, True])
    def test_same_profile_is_nothing_to_do(self, state, replace):
        assert assoc.decide(_a(OURS, state), OURS, "web-01", I1, replace) == (assoc.NOTHING, "iip-assoc-1")

    def test_foreign_profile_refused_naming_option_and_profile(self):
        with pytest.raises(assoc.AssociationError) as err:
            assoc.decide(_a(FOREIGN), OURS, "web-01", I1, False)
        message = str(err.value)
        assert "replace_instance_profile" in message and FOREIGN in message and I1 in message and "iip-assoc-1" in message

    def test_foreign_profile_replaced_when_asked(self):
        assert assoc.decide(_a(FOREIGN), OURS, "web-01", I1, True) == (assoc.REPLACE, "iip-assoc-1")

    def test_profile_of_the_same_name_elsewhere_is_not_ours(self):
        # another account's or path's profile of that name is another profile
        other = "arn:aws:iam::210987654321:instance-profile/cloudefigo/web-01"
        with pytest.raises(assoc.AssociationError):
            assoc.decide(_a(other), OURS, "web-01", I1, False)

    def test_check_mode_without_a_profile_yet_never_takes_an_association_for_ours(self):
        # the profile would be created: whatever the instance holds is someone else's
        with pytest.raises(assoc.AssociationError) as err:
            assoc.decide(_a(OURS), None, "web-01", I1, False)
        assert "web-01" in str(err.value)
        assert assoc.decide(None, None, "web-01", I1, False) == (assoc.ASSOCIATE, None)


class TestNewProfileError:
    @pytest.mark.parametrize("message", [
        "Value (arn:aws:iam::123456789012:instance-profile/cloudefigo/web-01) for parameter iamInstanceProfile.arn is invalid. "
        "Invalid IAM Instance Profile ARN",
        "Value (web-01) for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name",
    ])
    def test_retried(self, message):
        assert assoc.is_new_profile_error("InvalidParameterValue", message)

    @pytest.mark.parametrize("code, message", [
        ("InvalidParameterValue", "Value (x) for parameter instanceId is invalid"),
        ("UnauthorizedOperation", "Invalid IAM Instance Profile"),
        ("IncorrectState", "There is an existing association for instance i-0123456789abcdef0"),
        ("InvalidParameterValue", None),
    ])
    def test_not_retried(self, code, message):
        assert not assoc.is_new_profile_error(code, message)


class TestCheckOptions:
    @pytest.mark.parametrize("stage", ["production", "absent"])
    def test_associate_only_at_launch(self, stage):
        message = assoc.check_options({"stage": stage, "associate_instance_profile": True})
        assert "associate_instance_profile" in message and "stage=launch" in message

    def test_replace_needs_associate(self):
        message = assoc.check_options({"stage": "launch", "replace_instance_profile": True})
        assert "replace_instance_profile" in message and "associate_instance_profile=true" in message

    def test_negative_timeout(self):
        assert "association_timeout" in assoc.check_options(
            {"stage": "launch", "associate_instance_profile": True, "association_timeout": -1})

    def test_fine(self):
        assert assoc.check_options({"stage": "launch", "associate_instance_profile": True, "replace_instance_profile": True,
                                    "association_timeout": 0}) is None
        assert assoc.check_options({"stage": "production"}) is None
