# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What instance_security_status decides: plain functions, no AWS call.

Private to the collection: not a public API, may change without notice.
"""

from __future__ import annotations

import re

STATUS_TAG = "SecurityStatus"
REASON_TAG = "SecurityReason"
# EC2 tag limits
MAX_KEY = 128
MAX_VALUE = 256
# an instance that is going away cannot be given a status
GONE_STATES = ("shutting-down", "terminated")

_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")


def option_problem(params):
    """Why the options cannot be used (a message naming the option and the fix), or None."""
    instance_id = params.get("instance_id") or ""
    if not _INSTANCE_ID.match(instance_id):
        return "instance_id %r is not an EC2 instance id (i- and 8 or 17 hexadecimal digits)" % instance_id
    status = params.get("status")
    if not status:
        return "status must not be empty: give the value of the %s tag (e.g. production, remediation)" % STATUS_TAG
    if len(status) > MAX_VALUE:
        return "status is %d characters long; an EC2 tag value holds at most %d" % (len(status), MAX_VALUE)
    reason = params.get("reason")
    if reason is not None and len(reason) > MAX_VALUE:
        return "reason is %d characters long; an EC2 tag value holds at most %d: shorten it" % (len(reason), MAX_VALUE)
    groups = params.get("security_groups")
    if groups is not None:
        if not groups:
            return "security_groups is empty: an interface needs at least one group; omit the option to keep the groups"
        bad = [group for group in groups if not _GROUP_ID.match(group or "")]
        if bad:
            return "security_groups takes group ids (sg- and 8 or 17 hexadecimal digits), not %s" % ", ".join(map(repr, bad))
    for option in ("tags", "volume_tags"):
        problem = tags_problem(option, params.get(option))
        if problem:
            return problem
    if params.get("volume_tags") and params.get("volumes") is False:
        return "volume_tags needs volumes=true: the extra tags go on the attached volumes, which volumes=false leaves alone"
    return None


def tags_problem(option, tags):
    """Why a dict of extra tags cannot be written (a message naming the option), or None."""
    for key, value in sorted((tags or {}).items()):
        if key in (STATUS_TAG, REASON_TAG):
            return "%s must not set %s: use the status and reason options" % (option, key)
        if not key or len(key) > MAX_KEY:
            return "%s key %r must be 1 to %d characters long" % (option, key, MAX_KEY)
        if key.lower().startswith("aws:"):
            return "%s key %r: the aws: prefix is reserved by AWS" % (option, key)
        if value is None or len(str(value)) > MAX_VALUE:
            return "%s value of %r must be a string of at most %d characters" % (option, key, MAX_VALUE)
    return None


def unique(items):
    """The items without repeats, first occurrence kept."""
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out


def instance_problem(instance_id, instance, region):
    """Why the instance cannot be given a status (None when it can)."""
    if instance is None:
        return "instance_id %s not found in %s" % (instance_id, region)
    state = (instance.get("State") or {}).get("Name")
    if state in GONE_STATES:
        return "instance_id %s is %s: a status cannot be set on an instance that is going away" % (instance_id, state)
    return None


def group_problems(wanted, found, vpc_id):
    """Why the wanted groups cannot be put on the instance (empty when they can).

    ``found``: {group id: its VPC id} of the groups DescribeSecurityGroups returned.
    """
    problems = []
    if not vpc_id:
        problems.append("the instance is not in a VPC")
    for group in wanted:
        if group not in found:
            problems.append("%s does not exist" % group)
        elif vpc_id and found[group] != vpc_id:
            problems.append("%s is in %s, not in the instance's VPC %s" % (group, found[group] or "no VPC", vpc_id))
    return problems


def interface_groups(instance):
    """{interface id: sorted group ids} of every network interface, primary (device index 0) first."""
    interfaces = sorted(instance.get("NetworkInterfaces") or [],
                        key=lambda eni: (eni.get("Attachment") or {}).get("DeviceIndex", 0))
    return dict((eni["NetworkInterfaceId"], sorted(group["GroupId"] for group in eni.get("Groups") or []))
                for eni in interfaces)


def interfaces_to_change(current, wanted):
    """The interface ids (in order) whose groups are not exactly ``wanted``."""
    return [eni for eni, groups in current.items() if set(groups) != set(wanted)]


def volume_ids(instance):
    """The EBS volumes attached to the instance, in device order."""
    return unique([(mapping.get("Ebs") or {}).get("VolumeId") for mapping in instance.get("BlockDeviceMappings") or []
                   if (mapping.get("Ebs") or {}).get("VolumeId")])


def wanted_tags(status, reason, extra, volume_extra=None):
    """(tags of the instance, tags of its volumes): the extra tags of each, and the status tags."""
    status_tags = {STATUS_TAG: status}
    if reason is not None:
        status_tags[REASON_TAG] = reason
    instance_tags = dict((key, str(value)) for key, value in (extra or {}).items())
    instance_tags.update(status_tags)
    volume_tags = dict((key, str(value)) for key, value in (volume_extra or {}).items())
    volume_tags.update(status_tags)
    return instance_tags, volume_tags


def tag_writes(current, wanted):
    """The CreateTags calls to make: [(tags, [resource ids])], one per distinct tag set.

    ``current`` and ``wanted``: {resource id: {key: value}}. A resource any of whose wanted tags
    differs gets all of its wanted tags; resources wanting the same tags share one call (the
    instance and its volumes, unless the instance takes extra tags). Other tags are never removed.
    """
    calls = []
    for resource, tags in wanted.items():
        have = current.get(resource) or {}
        if all(have.get(key) == value for key, value in tags.items()):
            continue
        for call_tags, resources in calls:
            if call_tags == tags:
                resources.append(resource)
                break
        else:
            calls.append((dict(tags), [resource]))
    return calls


def status_view(tags, keys):
    """The given keys of a tag dict (None for a missing key), for the diff."""
    return dict((key, (tags or {}).get(key)) for key in sorted(keys))
