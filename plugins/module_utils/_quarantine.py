# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""What instance_quarantine decides: the quarantine record, the credential revocation policy,
and whether a release may restore the recorded groups.

Private to the collection: not a public API, may change without notice.

The record (pre-quarantine groups of every interface, termination protection, the instance's
roles) is written by the controller into the evidence bucket, where the instance cannot write.
Tags on the instance or its interfaces are writable by anyone with ``ec2:CreateTags`` (the
instance itself, often) and are never read back as a record.
"""

from __future__ import annotations

import json

# inline role policy owned by instance_quarantine (instance_role never removes or edits it)
REVOCATION_POLICY_NAME = "cloudefigo-quarantine"
RECORD_VERSION = 1
# the 0.1.0 record tags: removed on release, never trusted
LEGACY_GROUPS_TAG = "cloudefigo:quarantine:groups"
LEGACY_PROTECTION_TAG = "cloudefigo:quarantine:termination-protection"


class RecordError(Exception):
    """A quarantine record that cannot be used."""


def record_key(prefix, instance_id):
    """The record object of one instance (one per instance, whatever the case)."""
    return "%srecords/%s.json" % (prefix or "", instance_id)


def instance_arn(partition, region, account_id, instance_id):
    return "arn:%s:ec2:%s:%s:instance/%s" % (partition, region, account_id, instance_id)


REVOCATION_SID = "CloudefigoQuarantineRevokeInstanceCredentials"
SOURCE_INSTANCE_KEY = "ec2:SourceInstanceARN"


def revocation_policy(arns):
    """Deny everything to requests signed with credentials delivered to the instances ``arns``.

    EC2 adds ``ec2:SourceInstanceARN`` to every request made with an instance's role
    credentials, wherever they are used from: copies stolen off the instance are denied too,
    while other instances (and other principals) using the same role are not. One policy per
    role lists every quarantined instance of that role (a condition with several values matches
    any of them). None when no instance is left.
    """
    arns = sorted(set(arns))
    if not arns:
        return None
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": REVOCATION_SID,
            "Effect": "Deny",
            "Action": "*",
            "Resource": "*",
            "Condition": {"StringEquals": {SOURCE_INSTANCE_KEY: arns if len(arns) > 1 else arns[0]}},
        }],
    }


def _document(document):
    if isinstance(document, str):
        try:
            return json.loads(document)
        except ValueError:
            return None
    return document


def revoked_arns(document):
    """The instance ARNs a cloudefigo-quarantine document revokes (a document we did not write: [])."""
    document = _document(document)
    if not isinstance(document, dict):
        return []
    arns = []
    for statement in document.get("Statement") or []:
        if not isinstance(statement, dict) or statement.get("Sid") != REVOCATION_SID:
            continue
        value = ((statement.get("Condition") or {}).get("StringEquals") or {}).get(SOURCE_INSTANCE_KEY)
        arns.extend([value] if isinstance(value, str) else [v for v in value or [] if isinstance(v, str)])
    return sorted(set(arns))


def same_policy(document, wanted):
    """Whether a policy document (dict, or JSON text as IAM may return it) equals ``wanted``."""
    return _document(document) == wanted


def new_record(instance_id, vpc_id, case_id, recorded_at, termination_protection, interfaces, roles):
    """The record written before anything changes. ``interfaces``: {eni id: [group ids]}."""
    return {
        "version": RECORD_VERSION,
        "state": "quarantined",
        "instance_id": instance_id,
        "vpc_id": vpc_id,
        "case_id": case_id,
        "recorded_at": recorded_at,
        "termination_protection": bool(termination_protection),
        "network_interfaces": dict((eni, list(groups)) for eni, groups in interfaces.items()),
        "roles": sorted(set(roles)),
    }


def parse_record(body, instance_id):
    """A record read from S3, validated; raises RecordError."""
    try:
        record = json.loads(body)
    except (ValueError, TypeError) as exc:
        raise RecordError("it is not JSON (%s)" % exc)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise RecordError("it is not a version %d quarantine record" % RECORD_VERSION)
    if record.get("instance_id") != instance_id:
        raise RecordError("it names instance %r, not %s" % (record.get("instance_id"), instance_id))
    if record.get("state") not in ("quarantined", "released"):
        raise RecordError("its state %r is neither quarantined nor released" % record.get("state"))
    interfaces = record.get("network_interfaces")
    if not isinstance(interfaces, dict) or not all(
            isinstance(groups, list) and all(isinstance(group, str) for group in groups)
            for groups in interfaces.values()):
        raise RecordError("network_interfaces must map interface ids to lists of group ids")
    if not isinstance(record.get("termination_protection"), bool):
        raise RecordError("termination_protection must be true or false")
    if not isinstance(record.get("roles", []), list):
        raise RecordError("roles must be a list")
    return record


def recorded_groups(record):
    return sorted(set(group for groups in record["network_interfaces"].values() for group in groups))


def release_problems(record, vpc_id, groups_found):
    """Why the recorded groups may not be restored (empty when they may).

    ``groups_found``: {group id: vpc id} of the recorded groups that exist. Every group must
    exist and be in the instance's VPC: a record naming a group elsewhere was not written by a
    quarantine of this instance.
    """
    problems = []
    if record.get("vpc_id") and record["vpc_id"] != vpc_id:
        problems.append("the record was made in %s but the instance is in %s" % (record["vpc_id"], vpc_id))
    for group in recorded_groups(record):
        if group not in groups_found:
            problems.append("group %s does not exist" % group)
        elif groups_found[group] != vpc_id:
            problems.append("group %s is in %s, not in the instance's VPC %s" % (group, groups_found[group], vpc_id))
    return problems


def legacy_tag_keys(tags):
    """0.1.0 record tags on an interface or instance (to remove, never to read)."""
    return sorted(key for key in tags
                  if key in (LEGACY_GROUPS_TAG, LEGACY_PROTECTION_TAG) or key.startswith(LEGACY_GROUPS_TAG + ":"))
