# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Whose role (or instance profile) this is, and what a run may do with it.

Private to the collection: not a public API, may change without notice.

A role and its profile carry owner marks, written when they are created: the tags
``cloudefigo:instance-id`` and ``cloudefigo:launch-id``. Before any write or delete the marks are
compared with the run's instance_id (and launch_id when given); a mismatch is refused with a
message naming the owner. The marks are only ever a reason to refuse: the policy is always built
from the run's own instance_id, never from a tag, so someone who can write tags can at most make
a run fail, never widen what a role may do.

Roles made by 0.1.0 (path ``/``, no marks) are adopted only when asked by name
(``adopt_instance_id`` equal to ``instance_id``), never silently.
"""

from __future__ import annotations

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import LEGACY_PATH
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import TAG_INSTANCE_ID
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import TAG_LAUNCH_ID

OWN = "own"
ADOPT = "adopt"


class OwnershipError(Exception):
    """The resource belongs to another instance or launch (or to nobody we may assume)."""


def owner_of(tags):
    """(instance_id, launch_id) from a resource's tags; None for a missing mark."""
    tags = tags or {}
    return tags.get(TAG_INSTANCE_ID), tags.get(TAG_LAUNCH_ID)


def describe_owner(tags):
    instance, launch = owner_of(tags)
    return "instance %s (launch %s)" % (instance or "(none)", launch or "(none)")


def check_owner(kind, name, path, tags, instance_id, launch_id=None, adopt_instance_id=None, wanted_path=None):
    """For an EXISTING role or instance profile: OWN when this run's instance (and launch, when
    given) owns it, ADOPT when the run adopts an unmarked 0.1.0 one; raises OwnershipError with a
    message naming the owner otherwise. ``kind`` is "role" or "instance profile"."""
    owner_instance, owner_launch = owner_of(tags)
    if owner_instance is None and owner_launch is None:
        if adopt_instance_id is None:
            raise OwnershipError(
                "%s %s exists without cloudefigo owner marks (tags %s, %s): made by cloudefigo.core 0.1.0 or by "
                "hand. If it belongs to instance %s, set adopt_instance_id: %s to adopt it; otherwise choose "
                "another name" % (kind, name, TAG_INSTANCE_ID, TAG_LAUNCH_ID, instance_id, instance_id))
        if path not in (LEGACY_PATH, wanted_path):
            raise OwnershipError(
                "%s %s has path %s: adopt_instance_id adopts only roles and profiles made by 0.1.0 (path /) "
                "or at path %s" % (kind, name, path, wanted_path))
        return ADOPT
    if owner_instance != instance_id:
        raise OwnershipError(
            "%s %s belongs to %s, not to instance %s: refusing to change or delete it (another launch uses "
            "this name; choose another name, or terminate that instance first)"
            % (kind, name, describe_owner(tags), instance_id))
    if launch_id is not None and owner_launch != launch_id:
        raise OwnershipError(
            "%s %s belongs to %s, not to launch %s: refusing to change or delete it"
            % (kind, name, describe_owner(tags), launch_id))
    if wanted_path is not None and path not in (wanted_path, LEGACY_PATH):
        raise OwnershipError(
            "path: %s %s exists with path %s, not %s; IAM cannot move it (stage=absent, then create it again)"
            % (kind, name, path, wanted_path))
    return OWN


def marks(instance_id, launch_id):
    """The owner-mark tags a run writes."""
    out = {TAG_INSTANCE_ID: instance_id}
    if launch_id is not None:
        out[TAG_LAUNCH_ID] = launch_id
    return out
