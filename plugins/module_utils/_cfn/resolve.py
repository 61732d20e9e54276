# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Every value a CloudFormation field can take, before the stack exists.

Private to the collection: not a public API, may change without notice.

``Template.expand(node)`` returns a list of candidates ``(value, assumptions)``: one when the
value is known, several when it depends on an ``Fn::If`` whose condition cannot be decided here or
on a parameter with ``AllowedValues`` and no value.  ``assumptions`` is a frozenset of
``(key, value)`` pairs (``("Condition:IsProd", False)``, ``("Parameter:Env", "dev")``) that the
candidate holds under; candidates that assume a condition both ways are dropped, so the two
``Fn::If`` of one condition in one rule stay consistent.

What cannot be known from the template and the given parameters (``Fn::ImportValue``, attributes
of resources, SSM parameters, a parameter without a value) is an ``Unresolved`` leaf saying why;
callers turn it into a finding.  Nothing here guesses a value.
"""

from __future__ import annotations

import ipaddress
import re

# more combinations than this in one value: give up on it (Unresolved), rather than take forever
MAX_CANDIDATES = 64
MAX_DEPTH = 40
# node visits per template: a YAML alias bomb in a rule must end in a finding, not hang the pipeline
MAX_VISITS = 200000
PSEUDO_PARAMETERS = ("AWS::AccountId", "AWS::NotificationARNs", "AWS::Partition", "AWS::Region", "AWS::StackId",
                     "AWS::StackName", "AWS::URLSuffix")
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_NO_ASSUMPTION = frozenset()


class _Marker(object):
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


NOVALUE = _Marker("AWS::NoValue")
MISSING = _Marker("MISSING")


class Unresolved(object):
    """A value that cannot be known before the stack exists; ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason):
        self.reason = reason

    def __eq__(self, other):
        return isinstance(other, Unresolved) and other.reason == self.reason

    def __hash__(self):
        return hash(self.reason)

    def __repr__(self):
        return "Unresolved(%r)" % self.reason


def line_of(node, default=None):
    """1-based line where cfn-lint's decoder found ``node`` (dicts, lists of them and strings carry it)."""
    mark = getattr(node, "start_mark", None)
    line = getattr(mark, "line", None)
    return line + 1 if isinstance(line, int) else default


def is_intrinsic(node):
    """``{"Ref": ..}`` or ``{"Fn::X": ..}`` (the decoder turns ``!Ref x`` into the same)."""
    if not isinstance(node, dict) or len(node) != 1:
        return False
    key = next(iter(node))
    return isinstance(key, str) and (key == "Ref" or key.startswith("Fn::"))


def find_unresolved(value):
    """The first Unresolved inside ``value`` (lists and dicts searched), or None."""
    if isinstance(value, Unresolved):
        return value
    if isinstance(value, dict):
        values = value.values()
    elif isinstance(value, list):
        values = value
    else:
        return None
    for item in values:
        found = find_unresolved(item)
        if found is not None:
            return found
    return None


def merge(first, second):
    """Union of two assumption sets, or None when they contradict each other."""
    if not first:
        return second
    if not second:
        return first
    seen = dict(first)
    for key, value in second:
        if key in seen and seen[key] != value:
            return None
    return first | second


def _cap(candidates, what):
    if len(candidates) > MAX_CANDIDATES:
        return [(Unresolved("%s: more than %d combinations of conditions and parameter values"
                            % (what, MAX_CANDIDATES)), _NO_ASSUMPTION)]
    return candidates


def product(candidate_lists, what="value"):
    """Consistent combinations: [([v1, v2, ...], assumptions)] from one candidate list per position."""
    out = [([], _NO_ASSUMPTION)]
    for candidates in candidate_lists:
        new = []
        for values, assumed in out:
            for value, more in candidates:
                merged = merge(assumed, more)
                if merged is not None:
                    new.append((values + [value], merged))
        out = new
        if len(out) > MAX_CANDIDATES:
            # every position unknown: a caller that unpacks the combination still gets its length
            unresolved = _cap(out, what)[0][0]
            return [([unresolved] * len(candidate_lists), _NO_ASSUMPTION)]
    return out


def describe_assumptions(assumed):
    """Readable assumptions, sorted: ``["condition IsProd is false", "parameter Env = dev"]``."""
    out = []
    for key, value in sorted(assumed, key=lambda item: (item[0], str(item[1]))):
        kind, _sep, name = key.partition(":")
        if kind == "Condition":
            out.append("condition %s is %s" % (name, "true" if value else "false"))
        else:
            out.append("parameter %s = %s" % (name, value))
    return out


def _text(value):
    """CloudFormation's string form of a scalar (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Template(object):
    """One decoded template and the parameter values to judge it with.

    ``parameters``: values given by the caller (they win over defaults; pseudo parameters such
    as ``AWS::Region`` may be given too).  ``use_defaults``: take a parameter's ``Default`` when
    no value is given (the stack's values are then the defaults).
    """

    def __init__(self, template, parameters=None, use_defaults=True):
        self.template = template
        self.parameters = self._section("Parameters")
        self.mappings = self._section("Mappings")
        self.conditions = self._section("Conditions")
        self.resources = self._section("Resources")
        self.given = dict(parameters or {})
        self.use_defaults = use_defaults
        self._conditions_done = {}
        self._conditions_running = set()
        self._depth = 0
        self.visits = 0

    def _section(self, name):
        section = self.template.get(name) if isinstance(self.template, dict) else None
        return section if isinstance(section, dict) else {}

    # ---------------------------------------------------------------- parameters and references
    def _split_list(self, name, value):
        declared = self.parameters.get(name)
        kind = str(declared.get("Type", "")) if isinstance(declared, dict) else ""
        if isinstance(value, str) and (kind == "CommaDelimitedList" or kind.startswith("List<")):
            return [item.strip() for item in value.split(",")]
        return value

    def parameter(self, name):
        """Candidates of ``Ref`` to a parameter or pseudo parameter."""
        if name == "AWS::NoValue":
            return [(NOVALUE, _NO_ASSUMPTION)]
        if name in self.given:
            return [(self._split_list(name, self.given[name]), _NO_ASSUMPTION)]
        if name in PSEUDO_PARAMETERS:
            return [(Unresolved("pseudo parameter %s is known only at deployment (give it in parameters)" % name),
                     _NO_ASSUMPTION)]
        declared = self.parameters.get(name)
        if not isinstance(declared, dict):
            return [(Unresolved("Ref to %s, which is neither a parameter nor a resource" % name), _NO_ASSUMPTION)]
        kind = str(declared.get("Type", ""))
        if kind.startswith("AWS::SSM::Parameter::Value"):
            return [(Unresolved("parameter %s is looked up in SSM Parameter Store at deployment (give its value "
                                "in parameters)" % name), _NO_ASSUMPTION)]
        if self.use_defaults and "Default" in declared:
            return [(self._split_list(name, declared["Default"]), _NO_ASSUMPTION)]
        allowed = declared.get("AllowedValues")
        if isinstance(allowed, list) and allowed and not is_intrinsic(allowed):
            key = "Parameter:%s" % name
            return _cap([(self._split_list(name, value), frozenset([(key, _text(value))])) for value in allowed],
                        "parameter %s" % name)
        how = "no value was given" if not self.use_defaults else "it has no Default and no value was given"
        return [(Unresolved("parameter %s: %s" % (name, how)), _NO_ASSUMPTION)]

    def ref(self, name):
        name = str(name)
        if name in self.resources and name not in self.given:
            return [(Unresolved("Ref to resource %s is known only once the stack exists" % name), _NO_ASSUMPTION)]
        return self.parameter(name)

    # ---------------------------------------------------------------- conditions
    def condition(self, name):
        """True, False, or None when it cannot be decided from the template and parameters."""
        name = str(name)
        if name in self._conditions_done:
            return self._conditions_done[name]
        if name not in self.conditions or name in self._conditions_running:
            return None
        self._conditions_running.add(name)
        try:
            value = self._condition_value(self.conditions[name])
        finally:
            self._conditions_running.discard(name)
        self._conditions_done[name] = value
        return value

    def _condition_value(self, node):
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict) or len(node) != 1:
            return None
        key, args = next(iter(node.items()))
        if key == "Condition":
            return self.condition(args)
        if key == "Fn::Equals":
            if not isinstance(args, list) or len(args) != 2:
                return None
            outcomes = set()
            for (left, right), _assumed in product([self.expand(args[0]), self.expand(args[1])], "Fn::Equals"):
                if find_unresolved([left, right]) is not None or NOVALUE in (left, right):
                    return None
                outcomes.add(self._comparable(left) == self._comparable(right))
            return outcomes.pop() if len(outcomes) == 1 else None
        if key == "Fn::Not":
            inner = self._condition_value(args[0]) if isinstance(args, list) and len(args) == 1 else None
            return None if inner is None else not inner
        if key in ("Fn::And", "Fn::Or") and isinstance(args, list):
            values = [self._condition_value(item) for item in args]
            decisive = key == "Fn::Or"   # True decides an Or, False decides an And
            if decisive in values:
                return decisive
            return None if None in values else not decisive
        return None

    @staticmethod
    def _comparable(value):
        if isinstance(value, list):
            return [_text(item) for item in value]
        return _text(value)

    # ---------------------------------------------------------------- values
    def expand(self, node):
        """Every value ``node`` can take, as [(value, assumptions)]."""
        # a template can refer to itself in circles (a VPC whose CidrBlock is its own CidrBlock)
        if self._depth >= MAX_DEPTH:
            return [(Unresolved("references nested more than %d deep (a cycle?)" % MAX_DEPTH), _NO_ASSUMPTION)]
        self.visits += 1
        if self.visits > MAX_VISITS:
            return [(Unresolved("the template is too large to evaluate (more than %d values)" % MAX_VISITS),
                     _NO_ASSUMPTION)]
        self._depth += 1
        try:
            return self._expand(node)
        finally:
            self._depth -= 1

    def _expand(self, node):
        if is_intrinsic(node):
            key, args = next(iter(node.items()))
            handler = self._FUNCTIONS.get(key)
            if handler is None:
                return [(Unresolved("%s is not evaluated before deployment" % key), _NO_ASSUMPTION)]
            return handler(self, args)
        if isinstance(node, dict):
            keys = list(node)
            out = []
            for values, assumed in product([self.expand(node[key]) for key in keys], "object"):
                out.append(({str(key): value for key, value in zip(keys, values) if value is not NOVALUE}, assumed))
            return out
        if isinstance(node, list):
            return [([value for value in values if value is not NOVALUE], assumed)
                    for values, assumed in product([self.expand(item) for item in node], "list")]
        if isinstance(node, str):
            if "{{resolve:" in node:
                return [(Unresolved("dynamic reference %s is resolved only at deployment" % node), _NO_ASSUMPTION)]
            return [(str(node), _NO_ASSUMPTION)]
        return [(node, _NO_ASSUMPTION)]

    def lookup(self, node, keys, assumed=_NO_ASSUMPTION):
        """Candidates of ``node[keys[0]][keys[1]]...``, expanding intrinsics only along that path.

        A key that is not there gives MISSING.
        """
        if not keys:
            out = []
            for value, more in self.expand(node):
                merged = merge(assumed, more)
                if merged is not None:
                    out.append((value, merged))
            return out
        if is_intrinsic(node):
            out = []
            for value, more in self.expand(node):
                merged = merge(assumed, more)
                if merged is None:
                    continue
                if isinstance(value, Unresolved):
                    out.append((value, merged))
                else:
                    out.extend(self.lookup(value, keys, merged))
            return out
        if isinstance(node, dict) and keys[0] in node:
            return self.lookup(node[keys[0]], keys[1:], assumed)
        return [(MISSING, assumed)]

    def branches(self, node, assumed=_NO_ASSUMPTION):
        """The lists ``node`` can be, as [(elements, assumptions)] with elements [(element_node, line)].

        Elements stay undecoded (so each keeps its own line); a list-level ``Fn::If`` gives one
        entry per branch.  A missing list or ``AWS::NoValue`` is an empty list.
        """
        line = line_of(node)
        if node is MISSING or node is None or node is NOVALUE:
            return [([], assumed)]
        if isinstance(node, list):
            return [([(item, line_of(item, line)) for item in node], assumed)]
        if is_intrinsic(node) and "Fn::If" in node:
            out = []
            for branch, more in self._if_branches(node["Fn::If"]):
                merged = merge(assumed, more)
                if merged is not None:
                    out.extend(self.branches(branch, merged))
            return out
        if is_intrinsic(node):
            out = []
            for value, more in self.lookup(node, [], assumed):
                if value is NOVALUE:
                    out.append(([], more))
                elif isinstance(value, list):
                    out.append(([(item, line) for item in value], more))
                else:
                    out.append(([(value, line)], more))
            return out
        return [([(node, line)], assumed)]

    # ---------------------------------------------------------------- intrinsic functions
    def _if_branches(self, args):
        """[(branch_node, assumptions)] of an Fn::If: the chosen branch, or both when undecided."""
        if not isinstance(args, list) or len(args) != 3:
            return [(Unresolved("malformed Fn::If"), _NO_ASSUMPTION)]
        name = str(args[0])
        decided = self.condition(name)
        if decided is True:
            return [(args[1], _NO_ASSUMPTION)]
        if decided is False:
            return [(args[2], _NO_ASSUMPTION)]
        key = "Condition:%s" % name
        return [(args[1], frozenset([(key, True)])), (args[2], frozenset([(key, False)]))]

    def _fn_if(self, args):
        out = []
        for branch, assumed in self._if_branches(args):
            if isinstance(branch, Unresolved):
                out.append((branch, assumed))
                continue
            out.extend(self.lookup(branch, [], assumed))
        return _cap(out, "Fn::If")

    def _fn_ref(self, args):
        return self.ref(args)

    def _each(self, args, what, function):
        """Apply ``function(values)`` to every consistent combination of the expanded ``args``."""
        if not isinstance(args, list):
            return [(Unresolved("malformed %s" % what), _NO_ASSUMPTION)]
        out = []
        for values, assumed in product([self.expand(item) for item in args], what):
            unresolved = find_unresolved(values)
            if unresolved is not None:
                out.append((unresolved, assumed))
                continue
            try:
                out.append((function(values), assumed))
            except (ValueError, TypeError, IndexError, KeyError) as exc:
                out.append((Unresolved("%s cannot be evaluated: %s" % (what, exc)), assumed))
        return out

    def _fn_join(self, args):
        def join(values):
            delimiter, items = values
            if not isinstance(items, list):
                raise ValueError("the second argument is not a list")
            return _text(delimiter).join(_text(item) for item in items)
        return self._each(args, "Fn::Join", join)

    def _fn_select(self, args):
        def select(values):
            index, items = values
            if not isinstance(items, list):
                raise ValueError("the second argument is not a list")
            index = int(index)
            if index < 0 or index >= len(items):
                raise IndexError("index %d out of range" % index)
            return items[index]
        return self._each(args, "Fn::Select", select)

    def _fn_split(self, args):
        def split(values):
            delimiter, text = values
            return _text(text).split(_text(delimiter))
        return self._each(args, "Fn::Split", split)

    def _fn_cidr(self, args):
        def cidr(values):
            block, count, bits = values[0], int(values[1]), int(values[2])
            network = ipaddress.ip_network(_text(block), strict=False)
            prefix = network.max_prefixlen - bits
            subnets = []
            for subnet in network.subnets(new_prefix=prefix):
                if len(subnets) == count:
                    break
                subnets.append(str(subnet))
            if len(subnets) < count:
                raise ValueError("%s holds fewer than %d /%d subnets" % (network, count, prefix))
            return subnets
        return self._each(args, "Fn::Cidr", cidr)

    def _fn_find_in_map(self, args):
        if not isinstance(args, list) or len(args) not in (3, 4):
            return [(Unresolved("malformed Fn::FindInMap"), _NO_ASSUMPTION)]
        default = MISSING
        if len(args) == 4 and isinstance(args[3], dict) and "DefaultValue" in args[3]:
            default = args[3]["DefaultValue"]
        out = []
        for (name, first, second), assumed in product([self.expand(item) for item in args[:3]], "Fn::FindInMap"):
            unresolved = find_unresolved([name, first, second])
            if unresolved is not None:
                out.append((unresolved, assumed))
                continue
            mapping = self.mappings.get(_text(name))
            top = mapping.get(_text(first)) if isinstance(mapping, dict) else None
            value = top.get(_text(second), MISSING) if isinstance(top, dict) else MISSING
            if value is MISSING:
                value = default
            if value is MISSING:
                out.append((Unresolved("Fn::FindInMap %s/%s/%s is not in Mappings" % (name, first, second)), assumed))
                continue
            out.extend(self.lookup(value, [], assumed))
        return _cap(out, "Fn::FindInMap")

    def _fn_sub(self, args):
        if isinstance(args, list) and len(args) == 2 and isinstance(args[1], dict):
            text, variables = args
        else:
            text, variables = args, {}
        if not isinstance(text, str):
            return [(Unresolved("malformed Fn::Sub"), _NO_ASSUMPTION)]
        pieces = []    # literal strings and candidate lists, in order
        position = 0
        for match in _SUB_VARIABLE.finditer(text):
            pieces.append([(text[position:match.start()], _NO_ASSUMPTION)])
            name = match.group(1).strip()
            if name.startswith("!"):
                pieces.append([("${%s}" % name[1:], _NO_ASSUMPTION)])
            elif name in variables:
                pieces.append(self.expand(variables[name]))
            elif "." in name and name.split(".", 1)[0] not in self.given:
                pieces.append(self._fn_get_att(name))
            else:
                pieces.append(self.ref(name))
            position = match.end()
        pieces.append([(text[position:], _NO_ASSUMPTION)])
        out = []
        for values, assumed in product(pieces, "Fn::Sub"):
            unresolved = find_unresolved(values)
            if unresolved is not None:
                out.append((unresolved, assumed))
            elif any(isinstance(value, (list, dict)) for value in values):
                out.append((Unresolved("Fn::Sub of a list or an object"), assumed))
            else:
                out.append(("".join(_text(value) for value in values if value is not NOVALUE), assumed))
        return out

    # attributes whose value is a property of the resource in the same template
    _ATTRIBUTE_PROPERTIES = {
        ("AWS::EC2::VPC", "CidrBlock"): "CidrBlock",
        ("AWS::EC2::Subnet", "CidrBlock"): "CidrBlock",
    }

    def _fn_get_att(self, args):
        if isinstance(args, str):
            args = args.split(".", 1)
        if not isinstance(args, list) or len(args) != 2:
            return [(Unresolved("malformed Fn::GetAtt"), _NO_ASSUMPTION)]
        name, attribute = _text(args[0]), args[1]
        if not isinstance(attribute, str):
            return [(Unresolved("Fn::GetAtt %s with a computed attribute name" % name), _NO_ASSUMPTION)]
        resource = self.resources.get(name)
        kind = resource.get("Type") if isinstance(resource, dict) else None
        prop = self._ATTRIBUTE_PROPERTIES.get((kind, attribute))
        if prop is not None and isinstance(resource.get("Properties"), dict) and prop in resource["Properties"]:
            return self.lookup(resource["Properties"], [prop])
        return [(Unresolved("Fn::GetAtt %s.%s is known only once the stack exists" % (name, attribute)),
                 _NO_ASSUMPTION)]

    def _fn_import_value(self, args):
        names = sorted({_text(value) for value, _assumed in self.expand(args) if not isinstance(value, (Unresolved, list, dict))})
        return [(Unresolved("Fn::ImportValue %s is another stack's output" % ("/".join(names) or "(computed name)")),
                 _NO_ASSUMPTION)]

    _FUNCTIONS = {
        "Ref": _fn_ref,
        "Fn::If": _fn_if,
        "Fn::Join": _fn_join,
        "Fn::Select": _fn_select,
        "Fn::Split": _fn_split,
        "Fn::Cidr": _fn_cidr,
        "Fn::FindInMap": _fn_find_in_map,
        "Fn::Sub": _fn_sub,
        "Fn::GetAtt": _fn_get_att,
        "Fn::ImportValue": _fn_import_value,
    }
