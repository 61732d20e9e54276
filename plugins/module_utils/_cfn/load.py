# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Finding CloudFormation template files and decoding them with cfn-lint's decoder.

Private to the collection: not a public API, may change without notice.

cfn-lint's decoder reads YAML (with the short-form tags ``!Ref``, ``!Sub``, ``!GetAtt``, ...,
turned into their long form) and JSON, and keeps the line of every mapping and string; we do not
handle YAML tags ourselves.
"""

from __future__ import annotations

import fnmatch
import os
import traceback

try:
    from cfnlint.decode import decode as _cfn_decode
except ImportError:
    HAS_CFN_LINT = False
    CFN_LINT_IMPORT_ERROR = traceback.format_exc()
else:
    HAS_CFN_LINT = True
    CFN_LINT_IMPORT_ERROR = None

DEFAULT_PATTERNS = ("*.yaml", "*.yml", "*.json", "*.template")


class TemplateError(Exception):
    """A template file that cannot be read or is not valid YAML/JSON."""


def template_files(paths, patterns=DEFAULT_PATTERNS):
    """[(file, explicit)] for the given files and the matching files under the given directories.

    ``explicit`` is True for a file named directly (it must be a template) and False for one found
    in a directory (it may be something else, such as a parameters file).  Directories are walked
    recursively in sorted order, without following symbolic links to directories; hidden
    directories (``.git``) are skipped.  A path that does not exist raises TemplateError.
    """
    out = []
    seen = set()
    for path in paths:
        if os.path.isdir(path):
            found = []
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(name for name in dirs if not name.startswith("."))
                for name in sorted(files):
                    if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                        found.append(os.path.join(root, name))
            entries = [(name, False) for name in found]
        elif os.path.isfile(path):
            entries = [(path, True)]
        else:
            raise TemplateError("%s: no such file or directory" % path)
        for name, explicit in entries:
            if name not in seen:
                seen.add(name)
                out.append((name, explicit))
    return out


def decode(path):
    """The decoded template (dicts and lists whose nodes carry their line); TemplateError if unreadable."""
    if not HAS_CFN_LINT:
        raise TemplateError("cfn-lint is not installed")
    template, matches = _cfn_decode(path)
    if matches:
        messages = []
        for match in matches[:5]:
            line = getattr(match, "linenumber", None)
            messages.append("%s%s" % ("line %s: " % line if line else "", getattr(match, "message", match)))
        raise TemplateError("%s: not a readable YAML or JSON template: %s" % (path, "; ".join(messages)))
    return template


def looks_like_template(template):
    """True when the decoded document is a CloudFormation template (a ``Resources`` mapping)."""
    return isinstance(template, dict) and isinstance(template.get("Resources"), dict)
