# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What to do about an instance's profile association (instance_role associate_instance_profile).

Private to the collection: not a public API, may change without notice.

The association is the moment an instance first gets credentials, so instance_role makes it last,
after the role, its bound policy and the profile are in place. An instance that already holds
ANOTHER profile got credentials from someone else (a launch template, or a principal who attached
its own profile to get a foothold): that is refused unless the caller asked to replace it.
"""

from __future__ import annotations

# associations that give (or are about to give) the instance credentials
LIVE_STATES = ("associating", "associated")

NOTHING = "none"
ASSOCIATE = "associate"
REPLACE = "replace"


class AssociationError(Exception):
    """The association cannot be made as asked; the message names the option and the fix."""


def live_association(associations):
    """The association that gives the instance credentials (None when it has none).

    EC2 allows one live association per instance; a disassociating or disassociated one no longer
    counts. More than one live association is not something EC2 makes: refused.
    """
    live = [a for a in associations or [] if a.get("State") in LIVE_STATES]
    if len(live) > 1:
        raise AssociationError(
            "instance %s has %d live instance profile associations (%s): EC2 allows one; refusing to add another"
            % (live[0].get("InstanceId"), len(live), ", ".join(a.get("AssociationId", "?") for a in live)))
    return live[0] if live else None


def association_state(association):
    """The association as the module reports it (diff, return values)."""
    if not association:
        return None
    return {
        "association_id": association.get("AssociationId"),
        "instance_profile_arn": (association.get("IamInstanceProfile") or {}).get("Arn"),
        "state": association.get("State"),
    }


def same_profile(arn, wanted_arn):
    """Whether an associated profile ARN is the wanted profile.

    ``wanted_arn`` is None in check mode when the profile would be created: then no existing
    association can be it (no profile of that name existed).
    """
    return bool(arn) and bool(wanted_arn) and arn == wanted_arn


def decide(association, wanted_arn, wanted_name, instance_id, replace):
    """(action, association id) for the live ``association`` (or None) and the wanted profile.

    NOTHING when the wanted profile is already associated (or associating); ASSOCIATE when the
    instance has no live association; REPLACE when it holds another profile and ``replace`` is
    true; AssociationError otherwise, naming the other profile and the option.
    """
    if association is None:
        return ASSOCIATE, None
    current = (association.get("IamInstanceProfile") or {}).get("Arn")
    if same_profile(current, wanted_arn):
        return NOTHING, association.get("AssociationId")
    if not replace:
        raise AssociationError(
            "instance %s already has instance profile %s (association %s, %s), not %s: it holds credentials "
            "that this role does not bound. Refusing to associate; set replace_instance_profile=true to replace "
            "that association (for example a profile a launch template gave), or find out who associated it"
            % (instance_id, current, association.get("AssociationId"), association.get("State"), wanted_arn or wanted_name))
    return REPLACE, association.get("AssociationId")


def is_new_profile_error(code, message):
    """EC2's answer while IAM has not yet propagated a brand-new instance profile.

    AWS: InvalidParameterValue "Value (...) for parameter iamInstanceProfile.arn is invalid.
    Invalid IAM Instance Profile ARN" (or "... name"). Retried, bounded; anything else fails at once.
    """
    return code == "InvalidParameterValue" and "invalid iam instance profile" in (message or "").lower()


def check_options(params):
    """Option checks that need no AWS call; returns a message or None."""
    if params.get("associate_instance_profile") and params.get("stage") != "launch":
        return ("associate_instance_profile is only accepted with stage=launch (the association gives the "
                "instance its first credentials, right after its launch-stage role is bound to it); got stage=%s: "
                "remove associate_instance_profile" % params.get("stage"))
    if params.get("replace_instance_profile") and not params.get("associate_instance_profile"):
        return "replace_instance_profile needs associate_instance_profile=true (it decides what the association does)"
    timeout = params.get("association_timeout")
    if timeout is not None and timeout < 0:
        return "association_timeout must be 0 or more seconds, got %s" % timeout
    return None
