# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""The isolation security group (no rule in, no rule out): found, or created, in an instance's VPC.

Private to the collection: not a public API, may change without notice.

Several runs may need the group at the same moment (instances of a batch failing together, Auto
Scaling gate runs from a schedule and from events). Nothing here waits for a rule to appear: a
create that loses the race (InvalidGroup.Duplicate) takes the group the other run made, and a rule
another run already revoked (InvalidPermission.NotFound) is gone as wanted. (amazon.aws's
ec2_security_group waits, without a timeout, for the default egress rule of a group it created,
which another run may have removed already.)
"""

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import boto3_tags
from ansible_collections.cloudefigo.core.plugins.module_utils._aws import tag_dict

ISOLATION_PURPOSE = "isolation"
ISOLATION_DESCRIPTION = "Quarantine: no inbound, no outbound traffic (cloudefigo.core)"


class ForeignGroup(Exception):
    """A group of the isolation group's name that this collection did not create."""

    def __init__(self, group):
        super(ForeignGroup, self).__init__(group["GroupId"])
        self.group = group


def owned_isolation_group(group):
    """Whether this collection created the security group as an isolation group (its rules may go)."""
    tags = tag_dict(group.get("Tags"))
    if tags.get("cloudefigo:purpose") == ISOLATION_PURPOSE:
        return True
    # made by 0.1.0: no cloudefigo:purpose tag yet
    return tags.get("Purpose") == "quarantine" and group.get("Description") == ISOLATION_DESCRIPTION


def foreign_group_message(name, group_id, vpc_id, what):
    return ("security group %s (%s) in %s was not created by cloudefigo.core (tag cloudefigo:purpose=%s missing): "
            "%s would remove all its rules, refusing. Use an isolation group name of its own (it is created), or "
            "tag the group cloudefigo:purpose=%s if its rules may be removed."
            % (name, group_id, vpc_id, ISOLATION_PURPOSE, what, ISOLATION_PURPOSE))


def find_isolation_group(ec2, name, vpc_id):
    """The isolation group of that name in the VPC, or None; ForeignGroup when not the collection's."""
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}],
        aws_retry=True)["SecurityGroups"]
    if groups and not owned_isolation_group(groups[0]):
        raise ForeignGroup(groups[0])
    return groups[0] if groups else None


def ensure_isolation_group(ec2, name, vpc_id, act):
    """The isolation group's id, created and emptied of rules when needed; None when ``act`` says
    not to change anything (check mode) and the group does not exist yet.

    ``act(text)`` notes a change and answers whether to make it. Raises ForeignGroup, and botocore's
    errors for the caller to report.
    """
    group = find_isolation_group(ec2, name, vpc_id)
    if group is None:
        if not act("create isolation group %s in %s" % (name, vpc_id)):
            return None
        try:
            group_id = ec2.create_security_group(
                GroupName=name, VpcId=vpc_id, Description=ISOLATION_DESCRIPTION,
                TagSpecifications=[{"ResourceType": "security-group",
                                    "Tags": boto3_tags({"Name": name, "Purpose": "quarantine",
                                                        "cloudefigo:purpose": ISOLATION_PURPOSE})}],
                aws_retry=True)["GroupId"]
            group = ec2.describe_security_groups(GroupIds=[group_id], aws_retry=True)["SecurityGroups"][0]
        except is_boto3_error_code("InvalidGroup.Duplicate"):
            # another run created it a moment ago: take that one (it is checked like any existing one)
            group = find_isolation_group(ec2, name, vpc_id)
            if group is None:
                raise
    # a new group allows all egress; someone may have added rules to an old one
    for kind, call in (("IpPermissions", "revoke_security_group_ingress"),
                       ("IpPermissionsEgress", "revoke_security_group_egress")):
        rules = group.get(kind) or []
        if rules and act("revoke %d %s rule(s) of %s" % (len(rules), kind, group["GroupId"])):
            try:
                getattr(ec2, call)(GroupId=group["GroupId"], IpPermissions=rules, aws_retry=True)
            except is_boto3_error_code("InvalidPermission.NotFound"):
                # another run revoked them first
                pass
    return group["GroupId"]
