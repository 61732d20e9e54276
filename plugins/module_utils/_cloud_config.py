# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""cloud-init user data (#cloud-config) from files and commands, within EC2's 16 KB.

Private to the collection: not a public API, may change without notice.

Plain functions (no AWS, no Ansible) used by the cloud_config module:

- ``render(write_files, runcmd, bootcmd, max_bytes, compress)`` -> ``(text, compressed)``.
  The text is YAML written by hand (the collection's modules may not import PyYAML): file contents
  as literal blocks, every other scalar as a JSON string (JSON is YAML). When the plain text is over
  ``max_bytes`` (``compress=auto``), every file whose content gets shorter so is gzip-compressed
  and base64-encoded (``encoding: gz+b64``, which cloud-init's write_files decodes), so the user data stays a
  ``#cloud-config`` document that ``cloud-init schema`` can check and ec2 RunInstances accepts as
  text. Still too big -> ``UserDataError`` saying by how much.
- ``secret_findings(text)``: what looks like a secret (a PEM private key, an AWS access key id).
  User data is readable by anyone allowed ec2:DescribeInstanceAttribute: it never carries one.
"""

from __future__ import annotations

import base64
import gzip
import json
import re

MAX_BYTES = 16384  # EC2: user data is limited to 16 KB before base64 encoding
PERMISSIONS = re.compile(r"^0?[0-7]{3}$")
OWNER = re.compile(r"^[a-z_][a-z0-9_-]*(:[a-z_][a-z0-9_-]*)?$")
_SECRETS = (
    ("a PEM private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")),
    ("an AWS secret access key", re.compile(r"(?i)aws_secret_access_key\s*[=:]\s*\S{20,}")),
)
_LITERAL_OK = re.compile(r"^[\t\n\x20-\x7e\u00a0-\ud7ff\ue000-\ufffd]*$")


class UserDataError(ValueError):
    """Input the user data cannot be made from (the message names the option and the fix)."""


def _scalar(value):
    """A YAML scalar: single-quoted for plain printable text (no escaping of JSON inside), else JSON."""
    if isinstance(value, str) and value and _LITERAL_OK.match(value) and "\n" not in value and "\t" not in value:
        return "'" + value.replace("'", "''") + "'"
    return json.dumps(value, ensure_ascii=False)


def _command(command):
    return _scalar(command) if isinstance(command, str) else "[" + ", ".join(_scalar(a) for a in command) + "]"


def _literal(content, indent):
    """A YAML literal block (|) holding content exactly, or None when content cannot be one."""
    if not content or not _LITERAL_OK.match(content):
        return None
    stripped = content.rstrip("\n")
    if not stripped:
        return None
    trailing = len(content) - len(stripped)
    chomp = "-" if trailing == 0 else ("" if trailing == 1 else "+")
    pad = " " * indent
    lines = [(pad + line) if line else "" for line in stripped.split("\n")]
    body = "\n".join(lines) + "\n" + ("\n" * (trailing - 1) if trailing > 1 else "")
    return "|%d%s\n%s" % (2, chomp, body)


def check_files(write_files):
    """Normalised copies of the write_files entries; UserDataError on a bad one."""
    out, seen = [], set()
    for index, item in enumerate(write_files or []):
        where = "write_files[%d]" % index
        if not isinstance(item, dict):
            raise UserDataError("%s must be a dict with path, content, permissions" % where)
        path = item.get("path") or ""
        if not isinstance(path, str) or not path.startswith("/") or "\n" in path:
            raise UserDataError("%s.path must be an absolute path, got %r" % (where, path))
        if path in seen:
            raise UserDataError("%s.path %s is given twice" % (where, path))
        seen.add(path)
        content = item.get("content")
        if not isinstance(content, str):
            raise UserDataError("%s.content must be a string (the file's text)" % where)
        permissions = str(item.get("permissions") or "0644")
        if not PERMISSIONS.match(permissions):
            raise UserDataError("%s.permissions must be an octal mode such as 0644, got %r" % (where, permissions))
        owner = item.get("owner") or "root:root"
        if not OWNER.match(owner):
            raise UserDataError("%s.owner must be user or user:group, got %r" % (where, owner))
        out.append({"path": path, "content": content, "permissions": permissions.zfill(4), "owner": owner})
    return out


def check_commands(name, commands):
    out = []
    for index, command in enumerate(commands or []):
        if isinstance(command, str):
            out.append(command)
        elif isinstance(command, list) and command and all(isinstance(a, str) for a in command):
            out.append(list(command))
        else:
            raise UserDataError("%s[%d] must be a string (run by sh) or a non-empty list of strings (argv), got %r"
                                % (name, index, command))
    return out


def secret_findings(text):
    return [what for what, pattern in _SECRETS if pattern.search(text)]


def _document(files, runcmd, bootcmd, compressed):
    out = ["#cloud-config", "# rendered by cloudefigo.core (docs/pull-mode.md): no secret in here, keys come from S3"]
    if bootcmd:
        out.append("bootcmd:")
        out.extend("- " + _command(c) for c in bootcmd)
    if files:
        out.append("write_files:")
        for item in files:
            out.append("- path: " + _scalar(item["path"]))
            # cloud-init's defaults (root:root, 0644) are left out: 16 KB is tight
            if item["owner"] != "root:root":
                out.append("  owner: " + _scalar(item["owner"]))
            if item["permissions"] != "0644":
                out.append("  permissions: " + _scalar(item["permissions"]))
            content = item["content"]
            literal = _literal(content, 4)
            plain = ("  content: " + literal.rstrip("\n")) if literal is not None else ("  content: " + _scalar(content))
            if compressed:
                packed = base64.b64encode(gzip.compress(content.encode("utf-8"), compresslevel=9, mtime=0)).decode("ascii")
                # a small file is shorter as it is: base64 costs a third
                if len(packed) + 20 < len(plain):
                    out.append("  encoding: gz+b64")
                    out.append("  content: " + packed)
                    continue
            if literal is None:
                out.append("  content: " + _scalar(content))
            else:
                out.append("  content: " + literal.rstrip("\n"))
                if literal.endswith("\n\n"):
                    # keep the kept (|+) trailing newlines that rstrip took away
                    out.extend([""] * (len(literal) - len(literal.rstrip("\n")) - 1))
    if runcmd:
        out.append("runcmd:")
        out.extend("- " + _command(c) for c in runcmd)
    return "\n".join(out) + "\n"


def render(write_files, runcmd=None, bootcmd=None, max_bytes=MAX_BYTES, compress="auto"):
    """The user data text and whether its files were compressed (see the module docstring)."""
    if compress not in ("auto", "always", "never"):
        raise UserDataError("compress must be auto, always or never, got %r" % (compress,))
    if not isinstance(max_bytes, int) or max_bytes < 1 or max_bytes > MAX_BYTES:
        raise UserDataError("max_bytes must be 1 to %d (EC2's limit), got %r" % (MAX_BYTES, max_bytes))
    files = check_files(write_files)
    runcmd = check_commands("runcmd", runcmd)
    bootcmd = check_commands("bootcmd", bootcmd)
    plain = _document(files, runcmd, bootcmd, False)
    found = secret_findings(plain)
    if found:
        raise UserDataError("refusing to put %s into user data: anyone allowed ec2:DescribeInstanceAttribute reads it; "
                            "keep secrets in S3 for the instance role to fetch" % " and ".join(found))
    if compress == "never" or (compress == "auto" and len(plain.encode("utf-8")) <= max_bytes):
        text, compressed = plain, False
    else:
        text, compressed = _document(files, runcmd, bootcmd, True), True
    size = len(text.encode("utf-8"))
    if size > max_bytes:
        raise UserDataError(
            "the user data is %d bytes%s, over the limit of %d by %d: leave files out (install them from S3 or "
            "bake them into the image) or shorten the commands; largest files: %s" % (
                size, " with the files gzip+base64 compressed" if compressed else " (compress=never)", max_bytes,
                size - max_bytes, ", ".join("%s (%d bytes)" % (f["path"], len(f["content"].encode("utf-8")))
                                            for f in sorted(files, key=lambda f: -len(f["content"]))[:3])))
    return text, compressed
