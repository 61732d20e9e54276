# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""SSH host keys of a new instance, read from its console output.

Private to the collection: not a public API, may change without notice.

Plain functions, no AWS calls: the instance_host_keys module fetches the console output
(ec2:GetConsoleOutput), asks these what the keys are, and writes a known_hosts file.

cloud-init (cc_keys_to_console, its ``write-ssh-key-fingerprints`` helper) prints, once per
instance::

    <14>Nov 29 20:30:01 ec2: -----BEGIN SSH HOST KEY FINGERPRINTS-----
    <14>Nov 29 20:30:01 ec2: 256 SHA256:Abc... root@ip-10-0-0-5 (ED25519)
    <14>Nov 29 20:30:01 ec2: -----END SSH HOST KEY FINGERPRINTS-----
    <14>Nov 29 20:30:01 ec2: -----BEGIN SSH HOST KEY KEYS-----
    <14>Nov 29 20:30:01 ec2: ssh-ed25519 AAAAC3... root@ip-10-0-0-5
    <14>Nov 29 20:30:01 ec2: -----END SSH HOST KEY KEYS-----

(the ``<14>date ec2:`` prefix is what ``logger --stderr -t ec2`` adds; older releases printed the
keys block without it).  The parser fails closed: a second block, a key type twice, a line in a
block that is not a key, a key whose blob does not decode to its own type, or a fingerprint that
disagrees with its key all raise HostKeyError; nothing is guessed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

BEGIN_FP = "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
END_FP = "-----END SSH HOST KEY FINGERPRINTS-----"
BEGIN_KEYS = "-----BEGIN SSH HOST KEY KEYS-----"
END_KEYS = "-----END SSH HOST KEY KEYS-----"
MARKERS = (BEGIN_FP, END_FP, BEGIN_KEYS, END_KEYS)

# Host key types pinned, with the label ssh-keygen -l prints for them.
KEY_TYPES = {
    "ssh-ed25519": "ED25519",
    "ecdsa-sha2-nistp256": "ECDSA",
    "ecdsa-sha2-nistp384": "ECDSA",
    "ecdsa-sha2-nistp521": "ECDSA",
    "ssh-rsa": "RSA",
}
# Printed by old images; OpenSSH no longer accepts DSA host keys: never pinned, reported as skipped.
SKIPPED_TYPES = {"ssh-dss": "DSA"}

# `logger --stderr -t ec2` output: "<14>" + optional "Mmm dd hh:mm:ss " + optional host + "ec2: "
_PREFIX = re.compile(r"^(?:<\d{1,3}>)?(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d )?(?:[\w.-]+ )?ec2: ?")
# kernel messages interleaved on the serial console ("[   12.345678] ...") are never key lines
_KERNEL = re.compile(r"^\[\s*\d+\.\d+\]")
_FP_LINE = re.compile(r"^(\d+) ((?:SHA256:[A-Za-z0-9+/]+=*)|(?:MD5:)?(?:[0-9a-f]{2}:){15}[0-9a-f]{2}) (?:.* )?\(([A-Z0-9-]+)\)$")


class HostKeyError(ValueError):
    """The console output holds host keys that cannot be trusted (the message says why)."""


def _strip(line):
    line = line.rstrip("\r\n").rstrip()
    return _PREFIX.sub("", line, count=1)


def _read_string(blob, offset):
    if offset + 4 > len(blob):
        raise ValueError("truncated")
    (length,) = struct.unpack(">I", blob[offset:offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise ValueError("truncated")
    return blob[offset + 4:end], end


def fingerprint_sha256(blob):
    """OpenSSH's SHA256 fingerprint of a key blob: ``SHA256:`` + unpadded base64."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def fingerprint_md5(blob):
    digest = hashlib.md5(blob).hexdigest()  # noqa: S324 -- OpenSSH's legacy fingerprint format
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def parse_key_line(text):
    """``type base64 [comment]`` -> dict(type, blob, key, comment); raises HostKeyError."""
    fields = text.split(None, 2)
    if len(fields) < 2:
        raise HostKeyError("not a host key line: %r" % text[:120])
    ktype, b64 = fields[0], fields[1]
    if ktype not in KEY_TYPES and ktype not in SKIPPED_TYPES:
        raise HostKeyError("unknown host key type %r in the keys block" % ktype[:60])
    try:
        blob = base64.b64decode(b64, validate=True)
        name, offset = _read_string(blob, 0)
        if name.decode("ascii") != ktype:
            raise ValueError("the key blob is of type %r" % name[:40])
        if ktype.startswith("ecdsa-sha2-"):
            curve, offset = _read_string(blob, offset)
            if curve.decode("ascii") != ktype[len("ecdsa-sha2-"):]:
                raise ValueError("the key blob is on curve %r" % curve[:40])
        _read_string(blob, offset)  # at least one more field: a bare type name is no key
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise HostKeyError("malformed %s host key (%s)" % (ktype, exc)) from None
    return {"type": ktype, "blob": blob, "key": b64, "comment": fields[2] if len(fields) > 2 else ""}


def _blocks(lines, begin, end):
    """The lines between each begin/end pair; HostKeyError on a broken pair, None content if unfinished."""
    blocks, current = [], None
    for number, line in enumerate(lines, 1):
        if begin in line:
            if current is not None:
                raise HostKeyError("%s at line %d inside an unfinished block" % (begin, number))
            if line.strip() != begin:
                raise HostKeyError("%s at line %d is not on a line of its own" % (begin, number))
            current = []
        elif end in line:
            if current is None:
                raise HostKeyError("%s at line %d without its BEGIN line (console output truncated?)" % (end, number))
            if line.strip() != end:
                raise HostKeyError("%s at line %d is not on a line of its own" % (end, number))
            blocks.append(current)
            current = None
        elif current is not None:
            if any(marker in line for marker in MARKERS):
                raise HostKeyError("another host key marker inside a block at line %d" % number)
            current.append(line)
    return blocks, current is not None


def _noise(line):
    return not line.strip() or bool(_KERNEL.match(line))


def parse_console(output):
    """Host keys printed by cloud-init in ``output`` (the decoded console text).

    Returns ``None`` while the keys block has not appeared (or is not finished yet: poll again),
    else a dict ``{"keys": [...], "skipped": [...], "fingerprints_checked": int}`` where each key
    is ``{"type", "key", "comment", "fingerprint_sha256", "known_hosts_key"}``.
    Raises HostKeyError when what is there cannot be trusted.
    """
    lines = [_strip(line) for line in (output or "").splitlines()]
    key_blocks, keys_open = _blocks(lines, BEGIN_KEYS, END_KEYS)
    fp_blocks, fp_open = _blocks(lines, BEGIN_FP, END_FP)
    if len(key_blocks) > 1:
        raise HostKeyError("the console shows %d SSH host key blocks: ambiguous, none is trusted" % len(key_blocks))
    if len(fp_blocks) > 1:
        raise HostKeyError("the console shows %d SSH host key fingerprint blocks: ambiguous, none is trusted" % len(fp_blocks))
    if key_blocks and keys_open:
        raise HostKeyError("a second SSH host key block starts after the first: ambiguous, none is trusted")
    if not key_blocks or fp_open:
        return None

    keys, skipped, seen_types = [], [], {}
    for line in key_blocks[0]:
        if _noise(line):
            continue
        key = parse_key_line(line)
        if key["type"] in SKIPPED_TYPES:
            skipped.append(key["type"])
            continue
        if key["type"] in seen_types:
            raise HostKeyError("the keys block lists %s twice: ambiguous, none is trusted" % key["type"])
        seen_types[key["type"]] = key
        key["fingerprint_sha256"] = fingerprint_sha256(key["blob"])
        key["fingerprint_md5"] = fingerprint_md5(key["blob"])
        keys.append(key)
    if not keys:
        raise HostKeyError("the SSH host key block holds no usable key")

    checked = 0
    if fp_blocks:
        by_label = {}
        for key in keys:
            by_label.setdefault(KEY_TYPES[key["type"]], []).append(key)
        fp_labels = set()
        for line in fp_blocks[0]:
            if _noise(line):
                continue
            match = _FP_LINE.match(line)
            if not match:
                raise HostKeyError("not a fingerprint line in the fingerprints block: %r" % line[:120])
            fingerprint, label = match.group(2), match.group(3)
            if label in fp_labels:
                raise HostKeyError("the fingerprints block lists %s twice: ambiguous, none is trusted" % label)
            fp_labels.add(label)
            for key in by_label.get(label, []):
                expected = key["fingerprint_sha256"] if fingerprint.startswith("SHA256:") else key["fingerprint_md5"]
                if fingerprint.replace("MD5:", "") != expected:
                    raise HostKeyError("the %s key does not match its fingerprint %s (console tampered?)" % (key["type"], fingerprint))
                checked += 1
    result = []
    for key in keys:
        result.append({
            "type": key["type"],
            "key": key["key"],
            "comment": key["comment"],
            "fingerprint_sha256": key["fingerprint_sha256"],
            "known_hosts_key": "%s %s" % (key["type"], key["key"]),
        })
    return {"keys": result, "skipped": skipped, "fingerprints_checked": checked}


def known_hosts_host(address, port=22):
    """The host field of a known_hosts line as ssh looks it up: ``addr`` or ``[addr]:port``."""
    if not address or any(c.isspace() for c in address) or any(c in address for c in ",*?![]#"):
        raise HostKeyError("not a host address for known_hosts: %r" % address)
    return address if int(port) == 22 else "[%s]:%d" % (address, int(port))


def known_hosts_text(hosts, keys, instance_id=""):
    """The whole known_hosts file: one line per (host, key), with a comment naming the instance."""
    names = ",".join(hosts)
    lines = ["# SSH host keys of %s, pinned from its console output by cloudefigo.core.instance_host_keys" % instance_id]
    for key in keys:
        lines.append("%s %s" % (names, key["known_hosts_key"]))
    return "\n".join(lines) + "\n"
