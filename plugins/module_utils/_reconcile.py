# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Launch records and the reconciliation of leftovers: what is proven ours, when is an instance gone.

Private to the collection: not a public API, may change without notice.

Plain functions, no AWS or Chef calls: the launch_record and instance_leftovers modules read
state, ask these what it means, and write.  See docs/audit.md ("Leftovers").

A launch record is an empty object in the key bucket, ``<prefix><region>/<instance id>``, whose
object tags (S3 allows ten) say what one launch made.  The key bucket's policy lets only the
controller principals write or tag objects (``_key_custody.SID_CONTROLLERS_ONLY``), so unlike a
resource's own tags (``ec2:CreateTags``, ``iam:TagRole``) or a Chef node's attributes (the node's
client) a record cannot be forged by an instance, by someone who can only write tags, or by
another principal of the account.  A resource is proven ours when a record names it AND the
resource's own marks name the record's instance and launch.
"""

from __future__ import annotations

import datetime
import re

from ansible_collections.cloudefigo.core.plugins.module_utils._key_custody import TAG_INSTANCE_ID, TAG_LAUNCH_ID

TAG_REGION = "cloudefigo:region"
TAG_ACCOUNT = "cloudefigo:account"
TAG_ROLE = "cloudefigo:role"
TAG_PROFILE = "cloudefigo:instance-profile"
TAG_KEY_OBJECT = "cloudefigo:key-object"
TAG_VOLUMES = "cloudefigo:volumes"
TAG_CHEF_NODE = "cloudefigo:chef-node"
# written by the audit (a controller too): when it first saw the instance gone
TAG_GONE_SINCE = "cloudefigo:gone-since"
RECORD_TAGS = (TAG_INSTANCE_ID, TAG_LAUNCH_ID, TAG_REGION, TAG_ACCOUNT, TAG_ROLE, TAG_PROFILE, TAG_KEY_OBJECT,
               TAG_VOLUMES, TAG_CHEF_NODE, TAG_GONE_SINCE)  # ten: S3's limit per object
TAG_VALUE_MAX = 256
OPTION_OF_TAG = {TAG_INSTANCE_ID: "instance_id", TAG_LAUNCH_ID: "launch_id", TAG_REGION: "region", TAG_ACCOUNT: "account",
                 TAG_ROLE: "role_name", TAG_PROFILE: "instance_profile_name", TAG_KEY_OBJECT: "key_object",
                 TAG_VOLUMES: "volume_ids", TAG_CHEF_NODE: "chef_node", TAG_GONE_SINCE: "gone_since"}
DEFAULT_PREFIX = "cloudefigo-records/"

INSTANCE_ID = re.compile(r"^i-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
VOLUME_ID = re.compile(r"^vol-(?:[0-9a-f]{8}|[0-9a-f]{17})$")
REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d$")
ACCOUNT = re.compile(r"^\d{12}$")
# characters S3 accepts in a tag value (letters, digits, spaces and + - = . _ : / @)
TAG_VALUE = re.compile(r"^[\w .:/=+@-]*$", re.UNICODE)
DURATION = re.compile(r"^\s*(?:(\d+)\s*d)?\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s?)?\s*$")
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# instance states: gone, on its way (never "gone" yet), anything else is alive
GONE_STATES = ("terminated",)
NOT_FOUND_CODES = ("InvalidInstanceID.NotFound",)


class RecordError(Exception):
    """A record or an option that cannot be used; the message names the field and the fix."""


# --- durations and times -----------------------------------------------------------------------
def parse_duration(value, option="audit_reconcile_after"):
    """Seconds from an int, a string of digits (seconds) or ``1d``, ``12h``, ``30m``, ``45s``, ``1d12h``."""
    if isinstance(value, bool):
        raise RecordError("%s: %r is not a duration (seconds, or like 1d, 12h, 30m)" % (option, value))
    if isinstance(value, int):
        if value < 0:
            raise RecordError("%s: %d is negative; give 0 or more seconds" % (option, value))
        return value
    text = str(value if value is not None else "").strip().lower()
    match = DURATION.match(text) if text else None
    if not match or not any(match.groups()):
        raise RecordError("%s: %r is not a duration: give seconds (86400) or days/hours/minutes/seconds like 1d, 12h, "
                          "1d12h, 30m, 45s" % (option, value))
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def format_time(epoch):
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).strftime(TIME_FORMAT)


def parse_time(text):
    """Epoch seconds of a TIME_FORMAT string, or None when it is not one."""
    try:
        return int(datetime.datetime.strptime(text or "", TIME_FORMAT).replace(tzinfo=datetime.timezone.utc).timestamp())
    except (TypeError, ValueError):
        return None


# --- the record --------------------------------------------------------------------------------
def record_key(prefix, region, instance_id):
    return "%s%s/%s" % (prefix or "", region, instance_id)


def record_problem(record):
    """Why `record` (a dict of the record's fields) cannot be written, or None."""
    checks = (
        ("instance_id", INSTANCE_ID, True), ("region", REGION, True), ("account", ACCOUNT, True),
    )
    for field, pattern, required in checks:
        value = record.get(field) or ""
        if (required or value) and not pattern.match(value):
            return "%s: %r is not valid" % (field, value)
    if not record.get("launch_id"):
        return "launch_id is required"
    for volume in record.get("volume_ids") or ():
        if not VOLUME_ID.match(volume or ""):
            return "volume_ids: %r is not an EBS volume id (vol-...)" % (volume,)
    for tag, value in record_tags(record, check=False).items():
        option = OPTION_OF_TAG.get(tag, tag)
        if len(value) > TAG_VALUE_MAX:
            return "%s: the record's tag %s would be %d characters, S3 takes %d" % (option, tag, len(value), TAG_VALUE_MAX)
        if not TAG_VALUE.match(value):
            return "%s: %r has characters S3 does not take in a tag value (letters, digits, spaces, + - = . _ : / @)" % (option, value)
    return None


def record_tags(record, check=True):
    """The object tags of a record (dict of str)."""
    if check:
        problem = record_problem(record)
        if problem:
            raise RecordError(problem)
    tags = {
        TAG_INSTANCE_ID: record["instance_id"],
        TAG_LAUNCH_ID: record["launch_id"],
        TAG_REGION: record["region"],
        TAG_ACCOUNT: record["account"],
        TAG_ROLE: record.get("role_name") or "",
        TAG_PROFILE: record.get("instance_profile_name") or "",
        TAG_KEY_OBJECT: record.get("key_object") or "",
        TAG_VOLUMES: " ".join(sorted(set(record.get("volume_ids") or ()))),
        TAG_CHEF_NODE: record.get("chef_node") or "",
    }
    if record.get("gone_since"):
        tags[TAG_GONE_SINCE] = record["gone_since"]
    return tags


def record_from_tags(tags, key=None):
    """The record's fields from its object tags; RecordError when it lacks what proves anything."""
    tags = tags or {}
    record = {
        "instance_id": tags.get(TAG_INSTANCE_ID) or "",
        "launch_id": tags.get(TAG_LAUNCH_ID) or "",
        "region": tags.get(TAG_REGION) or "",
        "account": tags.get(TAG_ACCOUNT) or "",
        "role_name": tags.get(TAG_ROLE) or None,
        "instance_profile_name": tags.get(TAG_PROFILE) or None,
        "key_object": tags.get(TAG_KEY_OBJECT) or None,
        "volume_ids": sorted(set((tags.get(TAG_VOLUMES) or "").split())),
        "chef_node": tags.get(TAG_CHEF_NODE) or None,
        "gone_since": tags.get(TAG_GONE_SINCE) or None,
    }
    problem = record_problem(dict(record, gone_since=None))
    if problem:
        raise RecordError("record %s: %s" % (key or "?", problem))
    if key is not None and not key.endswith("/%s/%s" % (record["region"], record["instance_id"])) \
            and key != "%s/%s" % (record["region"], record["instance_id"]):
        raise RecordError("record %s names instance %s in %s: its key does not match" % (key, record["instance_id"], record["region"]))
    return record


def merge_record(current, wanted):
    """The record to write when `current` (or None) is there: volumes only ever grow; another launch is refused."""
    if current is not None:
        if current["instance_id"] != wanted["instance_id"] or current["launch_id"] != wanted["launch_id"]:
            raise RecordError("the launch record of instance %s names launch %s, not %s: refusing to overwrite it"
                              % (wanted["instance_id"], current["launch_id"], wanted["launch_id"]))
    merged = dict(wanted)
    merged["volume_ids"] = sorted(set((current or {}).get("volume_ids") or ()) | set(wanted.get("volume_ids") or ()))
    for field in ("role_name", "instance_profile_name", "key_object", "chef_node"):
        merged[field] = wanted.get(field) or (current or {}).get(field)
    merged["gone_since"] = None  # a launch writing its record: the instance is there
    return merged


# --- is the instance gone? ---------------------------------------------------------------------
def instance_status(record, audited_regions, audited_account, outcome):
    """('live' | 'gone' | 'unknown', reason) of the record's instance.

    `outcome` is what DescribeInstances said in the record's region: ('found', state name),
    ('error', error code, message) or None when it was not asked (region or account not audited).
    Only a terminated instance, or InvalidInstanceID.NotFound in an audited region of the audited
    account, is gone: any other error is unknown (fail closed).
    """
    if record["account"] != audited_account:
        return "unknown", "account %s is not the audited account %s" % (record["account"], audited_account)
    if record["region"] not in audited_regions:
        return "unknown", "region %s is not audited" % record["region"]
    if outcome is None:
        return "unknown", "the instance was not looked up"
    if outcome[0] == "found":
        if outcome[1] in GONE_STATES:
            return "gone", "instance is %s" % outcome[1]
        return "live", "instance is %s" % outcome[1]
    if outcome[0] == "error" and outcome[1] in NOT_FOUND_CODES:
        return "gone", "EC2 does not know the instance any more (%s)" % outcome[1]
    return "unknown", "could not look the instance up: %s" % (": ".join(str(part) for part in outcome[1:]) or "error")


def gone_since_update(status, gone_since, now):
    """The record's new gone-since value (str, None to remove it) and whether it changes."""
    if status == "gone" and parse_time(gone_since) is None:
        return format_time(now), True
    if status == "live" and gone_since:
        return None, True
    return gone_since, False


def due(gone_since, now, after):
    """Whether an instance first seen gone at `gone_since` has been gone for `after` seconds."""
    since = parse_time(gone_since)
    return since is not None and now - since >= after


# --- is this resource ours? --------------------------------------------------------------------
def marks_problem(record, instance_id, launch_id, what):
    """None when the marks name the record's instance and launch, else why not."""
    if not instance_id and not launch_id:
        return "%s carries no ownership marks" % what
    if instance_id != record["instance_id"] or launch_id != record["launch_id"]:
        return "%s is marked for instance %s, launch %s; the record names instance %s, launch %s" % (
            what, instance_id or "(none)", launch_id or "(none)", record["instance_id"], record["launch_id"])
    return None


def judge_tagged(record, kind, name, tags, extra_problem=None):
    """A resource with tags (role, instance profile): present, ours or not, and why."""
    if tags is None:
        return {"kind": kind, "name": name, "present": False, "ours": False, "remove": False, "reason": "absent"}
    tags = tags or {}
    problem = marks_problem(record, tags.get(TAG_INSTANCE_ID), tags.get(TAG_LAUNCH_ID), "%s %s" % (kind.replace("_", " "), name))
    ours = problem is None
    keep = extra_problem if ours else None
    return {"kind": kind, "name": name, "present": True, "ours": ours, "remove": ours and not keep,
            "reason": problem or keep or "marked for the record's instance and launch"}


def judge_key(record, key_object, version_tags):
    """The volume key: every version must carry the record's marks. `version_tags` is a list of tag dicts."""
    if not version_tags:
        return {"kind": "key", "name": key_object, "present": False, "ours": False, "remove": False, "reason": "absent",
                "versions": 0}
    problems = [marks_problem(record, tags.get(TAG_INSTANCE_ID), tags.get(TAG_LAUNCH_ID), "a version of the key")
                for tags in version_tags]
    problems = [p for p in problems if p]
    return {"kind": "key", "name": key_object, "present": True, "ours": not problems, "remove": not problems,
            "reason": problems[0] if problems else "every version marked for the record's instance and launch",
            "versions": len(version_tags)}


def judge_volume(record, volume_id, volume):
    """A recorded data volume (DescribeVolumes' item or None): removed only when available and still marked."""
    if volume is None:
        return {"kind": "volume", "name": volume_id, "present": False, "ours": False, "remove": False, "reason": "absent"}
    tags = dict((t["Key"], t.get("Value", "")) for t in volume.get("Tags") or ())
    entry = judge_tagged(record, "volume", volume_id, tags)
    state = volume.get("State")
    entry["state"] = state
    if entry["ours"] and state != "available":
        entry.update(remove=False, reason="volume is %s (only a detached, available volume is deleted)" % state)
    return entry


def judge_node(record, name, node_marks, client_exists):
    """The Chef node (its marks: {'instance_id', 'launch_id'} or None; False when absent) and its client.

    The client carries no marks of its own: it is removed with a node proven ours, never alone.
    """
    entries = []
    if node_marks is False:
        entries.append({"kind": "chef_node", "name": name, "present": False, "ours": False, "remove": False, "reason": "absent"})
        ours = False
    else:
        marks = node_marks or {}
        problem = marks_problem(record, marks.get("instance_id"), marks.get("launch_id"), "Chef node %s" % name)
        ours = problem is None
        entries.append({"kind": "chef_node", "name": name, "present": True, "ours": ours, "remove": ours,
                        "reason": problem or "marked for the record's instance and launch"})
    if client_exists:
        entries.append({"kind": "chef_client", "name": name, "present": True, "ours": ours, "remove": ours,
                        "reason": "removed with its node" if ours else
                        "a client is proven only by its node's marks, and its node is %s" % ("absent" if node_marks is False else "not ours")})
    else:
        entries.append({"kind": "chef_client", "name": name, "present": False, "ours": False, "remove": False, "reason": "absent"})
    return entries


def plan(record, resources, is_due):
    """What to remove for one gone instance: {'key_object', 'role', 'volumes', 'chef_node', 'record'}.

    Nothing unless `is_due`. The role goes with its profile (one name, one instance_role call) and
    the node with its client, so each pair goes only when every present member of it is ours.
    The record itself goes only when everything present goes (a volume still attached, a
    quarantined role, a resource not proven ours keep it): the next run looks again with the same
    proof, and the report keeps showing what is left.
    """
    present = [r for r in resources if r["present"]]
    if not is_due:
        return {"key_object": None, "role": None, "volumes": [], "chef_node": None, "record": False}

    def pair(kinds):
        members = [r for r in present if r["kind"] in kinds]
        return bool(members) and all(r["remove"] for r in members)

    return {
        "key_object": next((r["name"] for r in present if r["kind"] == "key" and r["remove"]), None),
        "role": record.get("role_name") if pair(("role", "instance_profile")) else None,
        "volumes": sorted(r["name"] for r in present if r["kind"] == "volume" and r["remove"]),
        "chef_node": record.get("chef_node") if pair(("chef_node", "chef_client")) else None,
        "record": all(r["remove"] for r in present),
    }
