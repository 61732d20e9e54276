# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""CloudFormation templates for cloudefigo.core: reading, resolving, auditing.

Private to the collection: not a public API, may change without notice.

- ``load``: finds template files and decodes them with cfn-lint's decoder (YAML short-form tags
  and JSON, line numbers kept).
- ``resolve``: parameters, conditions and intrinsic functions, to every value a field can take;
  what cannot be known before the stack exists is an ``Unresolved`` value, never a guess.
- ``audit``: security groups, instances, launch templates and volumes of one template, judged by
  the rule engine shared with live groups (``module_utils/_sg_rules``).
"""
