# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Findings of one CloudFormation template (a decoded dict, see ``load``).

Private to the collection: not a public API, may change without notice.

Security group rules (``AWS::EC2::SecurityGroup`` inline ingress and egress,
``AWS::EC2::SecurityGroupIngress``, ``AWS::EC2::SecurityGroupEgress``) are judged by
``module_utils/_sg_rules``, the engine ``security_group_audit`` uses on live groups.  A group whose
``SecurityGroupEgress`` is absent or empty gets AWS's default egress rule (all traffic to
0.0.0.0/0) and is judged with it.  Rules from security groups or prefix lists are not judged here
(no CIDR to judge).  Instances, launch templates and launch configurations are judged for IMDSv2,
volumes and block device mappings for encryption.

Every value goes through ``resolve.Template``: an ``Fn::If`` that cannot be decided is judged on
both branches (the worst one decides; the finding says which branch), and a CIDR, port, protocol
or setting that cannot be resolved is a ``cannot_evaluate`` finding, never a pass.
"""

from __future__ import annotations

import itertools

from ansible_collections.cloudefigo.core.plugins.module_utils import _sg_rules as rules
from ansible_collections.cloudefigo.core.plugins.module_utils._cfn.resolve import (
    MISSING,
    NOVALUE,
    Template,
    Unresolved,
    describe_assumptions,
    is_intrinsic,
    line_of,
    merge,
)

CANNOT_EVALUATE = "cannot_evaluate"
# what a cannot_evaluate finding is ranked as (whether it blocks is the caller's choice)
CANNOT_EVALUATE_SEVERITY = "high"
_RULE_KEYS = ("IpProtocol", "FromPort", "ToPort", "CidrIp", "CidrIpv6", "SourceSecurityGroupId",
              "SourceSecurityGroupName", "SourcePrefixListId", "DestinationSecurityGroupId", "DestinationPrefixListId")
_PORT_PROTOCOLS = ("tcp", "udp")
_TRUE = ("true",)
_NO_ASSUMPTION = frozenset()


class _Resource(object):
    """Where findings of one resource go: its logical id, type and line."""

    def __init__(self, logical_id, resource, found):
        self.logical_id = str(logical_id)
        self.kind = str(resource.get("Type"))
        self.line = line_of(logical_id) or line_of(resource)
        self.found = found

    def add(self, severity, rule, title, line=None, assumed=_NO_ASSUMPTION, direction=None, cidr=None, ports=None):
        self.found.append({"logical_id": self.logical_id, "resource_type": self.kind, "line": line or self.line,
                           "severity": severity, "rule": rule, "title": title, "direction": direction,
                           "cidr": cidr, "ports": ports, "assumed": assumed})

    def cannot_evaluate(self, what, unresolved, line=None, assumed=_NO_ASSUMPTION, direction=None, cidr=None,
                        ports=None):
        self.add(CANNOT_EVALUATE_SEVERITY, CANNOT_EVALUATE, "cannot evaluate %s: %s" % (what, unresolved.reason),
                 line, assumed, direction, cidr, ports)


def _int(value):
    if isinstance(value, bool):
        raise ValueError(value)
    return int(str(value).strip())


def _rule_span(item):
    """(port_span, None) of a rule, or (None, why) when its protocol or ports are not known."""
    protocol = item.get("IpProtocol", MISSING)
    if isinstance(protocol, Unresolved):
        return None, ("IpProtocol", protocol)
    if protocol is MISSING:
        return None, ("IpProtocol", Unresolved("the rule has no IpProtocol"))
    name = rules.protocol_name(protocol)
    ports = [None, None]
    if name in _PORT_PROTOCOLS:
        for index, key in enumerate(("FromPort", "ToPort")):
            value = item.get(key, MISSING)
            if isinstance(value, Unresolved):
                return None, (key, value)
            if value is MISSING:
                continue
            try:
                ports[index] = _int(value)
            except (TypeError, ValueError):
                return None, (key, Unresolved("%s %r is not a port number" % (key, value)))
    return rules.port_span(protocol, ports[0], ports[1]), None


def _judge_rule(res, item, direction, policy, line, assumed, group=None):
    """Findings of one rule (an expanded dict whose leaves may be Unresolved)."""
    where = "%s rule%s" % (direction, " of %s" % group if group else "")
    if isinstance(item, Unresolved):
        res.cannot_evaluate(where, item, line, assumed, direction)
        return
    if not isinstance(item, dict):
        res.cannot_evaluate(where, Unresolved("the rule is not an object"), line, assumed, direction)
        return
    cidrs = [(key, item[key]) for key in ("CidrIp", "CidrIpv6") if key in item]
    if not cidrs:
        return   # from/to a security group or prefix list: nothing to judge as a CIDR here
    span, why = _rule_span(item)
    if span is None:
        known = [value for _key, value in cidrs if isinstance(value, str)]
        res.cannot_evaluate("%s %s" % (where, why[0]), why[1], line, assumed, direction, cidr=(known or [None])[0])
        return
    for key, cidr in cidrs:
        if isinstance(cidr, Unresolved):
            res.cannot_evaluate("%s %s" % (where, key), cidr, line, assumed, direction, ports=span[3])
            continue
        if not isinstance(cidr, str) or rules.parse_network(cidr) is None:
            res.cannot_evaluate("%s %s" % (where, key), Unresolved("%r is not a CIDR" % (cidr,)), line, assumed,
                                direction, ports=span[3])
            continue
        judge = rules.ingress_findings if direction == "ingress" else rules.egress_findings
        for found in judge(span, cidr, policy):
            reason = found["reason"]
            if cidr not in reason:
                reason = "%s (%s %s)" % (reason, "from" if direction == "ingress" else "to", cidr)
            res.add(found["severity"], found["rule"], "%s: %s" % (where, reason), line, assumed, direction,
                    cidr, found["ports"])


def _expand_rule(template, node, assumed):
    """Candidates of one rule node, only the keys that matter expanded."""
    if isinstance(node, dict) and not is_intrinsic(node):
        node = {key: node[key] for key in _RULE_KEYS if key in node}
    return template.lookup(node, [], assumed)


def _group_name(template, node):
    """Logical id of the group a standalone rule belongs to (Ref / GetAtt in this template), or None."""
    if is_intrinsic(node):
        key, args = next(iter(node.items()))
        target = args if key == "Ref" else (args[0] if isinstance(args, list) and args else
                                            (args.split(".")[0] if isinstance(args, str) else None))
        if key in ("Ref", "Fn::GetAtt") and target in template.resources:
            return str(target)
    return None


def _security_group(template, res, props, policy, assumed):
    for direction, key in (("ingress", "SecurityGroupIngress"), ("egress", "SecurityGroupEgress")):
        node = props.get(key, MISSING) if isinstance(props, dict) else MISSING
        for elements, list_assumed in template.branches(node, assumed):
            can_be_empty = True   # every element may be AWS::NoValue: the list may be empty
            empty_assumed = list_assumed
            for element, line in elements:
                element_empty = False
                for item, item_assumed in _expand_rule(template, element, list_assumed):
                    if item is NOVALUE:
                        if not element_empty:
                            element_empty = True
                            empty_assumed = merge(empty_assumed, item_assumed) or empty_assumed
                        continue
                    _judge_rule(res, item, direction, policy, line, item_assumed)
                can_be_empty = can_be_empty and element_empty
            if direction == "egress" and can_be_empty:
                # what AWS adds to a group created without egress rules
                for found in rules.egress_findings(rules.port_span("-1", None, None), "0.0.0.0/0", policy):
                    res.add(found["severity"], found["rule"],
                            "no SecurityGroupEgress: AWS adds its default egress rule, %s" % found["reason"],
                            line_of(node, res.line), empty_assumed, direction, found["cidr"], found["ports"])


def _standalone_rule(template, res, props, policy, assumed, direction):
    group = _group_name(template, props.get("GroupId")) if isinstance(props, dict) else None
    for item, item_assumed in _expand_rule(template, props, assumed):
        if item is not NOVALUE:
            _judge_rule(res, item, direction, policy, res.line, item_assumed, group)


def _metadata_options(template, res, node, what, assumed):
    """IMDSv2: HttpTokens must be ``required`` (or the metadata endpoint turned off)."""
    line = line_of(template_get(node, "MetadataOptions"), res.line)
    for endpoint, endpoint_assumed in template.lookup(node, ["MetadataOptions", "HttpEndpoint"], assumed):
        if isinstance(endpoint, str) and endpoint.lower() == "disabled":
            continue
        for tokens, tokens_assumed in template.lookup(node, ["MetadataOptions", "HttpTokens"], endpoint_assumed):
            if isinstance(tokens, Unresolved):
                res.cannot_evaluate("%s MetadataOptions.HttpTokens" % what, tokens, line, tokens_assumed)
            elif not (isinstance(tokens, str) and tokens.lower() == "required"):
                res.add("medium", "imdsv2_not_required",
                        "%s: MetadataOptions.HttpTokens is %s, not required: IMDSv1 answers, so an SSRF can read "
                        "the instance role's credentials" % (what, "not set" if tokens is MISSING else repr(tokens)),
                        line, tokens_assumed)


def _encrypted(template, res, node, what, line, assumed):
    for value, more in template.lookup(node, ["Encrypted"], assumed):
        if isinstance(value, Unresolved):
            res.cannot_evaluate("%s Encrypted" % what, value, line, more)
        elif not (value is True or (isinstance(value, str) and value.strip().lower() in _TRUE)):
            res.add("medium", "unencrypted_volume",
                    "%s: Encrypted is %s: the EBS volume is not encrypted (unless the account encrypts by default)"
                    % (what, "not set" if value is MISSING else repr(value)), line, more)


def _block_devices(template, res, node, key, assumed):
    for elements, list_assumed in template.branches(template_get(node, key), assumed):
        for element, line in elements:
            for ebs, ebs_assumed in template.lookup(element, ["Ebs"], list_assumed):
                if ebs is MISSING or ebs is NOVALUE:
                    continue   # instance store, NoDevice, or no mapping under this branch
                if isinstance(ebs, Unresolved):
                    res.cannot_evaluate("%s Ebs" % key, ebs, line or res.line, ebs_assumed)
                    continue
                device = ebs_device(template, element)
                _encrypted(template, res, ebs, "%s %s" % (key, device), line or res.line, ebs_assumed)


def template_get(node, key):
    """``node[key]`` of a raw node, MISSING when it is not a plain object holding it."""
    if isinstance(node, dict) and not is_intrinsic(node):
        return node.get(key, MISSING)
    return MISSING


def ebs_device(template, element):
    names = [value for value, _assumed in template.lookup(element, ["DeviceName"]) if isinstance(value, str)]
    return names[0] if names else "(device)"


def _instance(template, res, props, assumed):
    launch_template = template_get(props, "LaunchTemplate")
    if launch_template is MISSING:
        _metadata_options(template, res, props, "instance", assumed)
    else:
        # IMDSv2 comes from the launch template: judged there when it is in this template
        ids = [template_get(launch_template, key) for key in ("LaunchTemplateId", "LaunchTemplateName")]
        local = [_group_name(template, node) for node in ids if node is not MISSING]
        local = [name for name in local if name and template.resources[name].get("Type") == "AWS::EC2::LaunchTemplate"]
        if not local and template_get(props, "MetadataOptions") is MISSING:
            res.cannot_evaluate("IMDSv2 of the instance", Unresolved(
                "its launch template is not in this template"), line_of(launch_template), assumed)
    _block_devices(template, res, props, "BlockDeviceMappings", assumed)


def _launch_template(template, res, props, assumed):
    raw = template_get(props, "LaunchTemplateData")
    candidates = template.lookup(raw, [], assumed) if is_intrinsic(raw) else [(raw, assumed)]
    for node, node_assumed in candidates:
        if isinstance(node, Unresolved):
            res.cannot_evaluate("LaunchTemplateData", node, res.line, node_assumed)
            continue
        _metadata_options(template, res, node, "launch template", node_assumed)
        _block_devices(template, res, node, "BlockDeviceMappings", node_assumed)


def _launch_configuration(template, res, props, assumed):
    _metadata_options(template, res, props, "launch configuration", assumed)
    _block_devices(template, res, props, "BlockDeviceMappings", assumed)


def _volume(template, res, props, assumed):
    _encrypted(template, res, props, "volume", res.line, assumed)


_SECURITY_GROUP_TYPES = ("AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress")
RESOURCE_TYPES = _SECURITY_GROUP_TYPES + ("AWS::EC2::Instance", "AWS::EC2::LaunchTemplate",
                                          "AWS::AutoScaling::LaunchConfiguration", "AWS::EC2::Volume")


def audit_template(decoded, policy, parameters=None, use_defaults=True):
    """Findings of one decoded template, and the number of resources judged.

    Findings carry ``logical_id``, ``resource_type``, ``line``, ``severity``, ``rule``, ``title``,
    ``direction``, ``cidr``, ``ports`` and ``conditions`` (the undecided conditions and parameter
    values the finding holds under; empty when it always holds).
    """
    template = Template(decoded, parameters, use_defaults)
    found = []
    judged = 0
    for logical_id, resource in template.resources.items():
        if str(logical_id).startswith("Fn::ForEach"):
            res = _Resource(logical_id, {"Type": "Fn::ForEach"}, found)
            res.cannot_evaluate("resources made by %s" % logical_id,
                                Unresolved("Fn::ForEach (AWS::LanguageExtensions) is not expanded here"))
            continue
        if not isinstance(resource, dict) or resource.get("Type") not in RESOURCE_TYPES:
            continue
        judged += 1
        res = _Resource(logical_id, resource, found)
        assumed = _NO_ASSUMPTION
        if "Condition" in resource:
            decided = template.condition(resource["Condition"])
            if decided is False:
                continue
            if decided is None:
                assumed = frozenset([("Condition:%s" % resource["Condition"], True)])
        props = resource.get("Properties", {})
        if is_intrinsic(props):
            candidates = template.lookup(props, [], assumed)
        else:
            candidates = [(props, assumed)]
        for props, props_assumed in candidates:
            if isinstance(props, Unresolved):
                res.cannot_evaluate("Properties", props, res.line, props_assumed)
                continue
            if not isinstance(props, dict):
                props = {}
            _JUDGES[res.kind](template, res, props, policy, props_assumed)
    return _merge_branches(found), judged


def _always(assumption_sets):
    """True when the findings' branches cover every outcome of the conditions they assume."""
    if any(not assumed for assumed in assumption_sets):
        return True
    keys = sorted({key for assumed in assumption_sets for key, _value in assumed})
    if len(keys) > 10 or any(not key.startswith("Condition:") for key in keys):
        return False
    for outcome in itertools.product((True, False), repeat=len(keys)):
        chosen = dict(zip(keys, outcome))
        if not any(all(chosen[key] == value for key, value in assumed) for assumed in assumption_sets):
            return False
    return True


def _merge_branches(found):
    """One finding per resource, line, rule and title.

    The same finding from several branches of undecided conditions is listed once: unconditional
    when its branches cover every outcome, else with each set of conditions it holds under
    (``conditions``: one string per alternative).
    """
    merged = {}
    for item in found:
        key = (item["logical_id"], item["line"], item["rule"], item["title"], item["cidr"], item["ports"])
        if key in merged:
            merged[key]["assumed"].append(item["assumed"])
        else:
            item["assumed"] = [item["assumed"]]
            merged[key] = item
    out = []
    for item in merged.values():
        sets = item.pop("assumed")
        if _always(sets):
            item["conditions"] = []
        else:
            item["conditions"] = sorted({" and ".join(describe_assumptions(assumed)) for assumed in sets})
            item["title"] = "%s (when %s)" % (item["title"], "; or when ".join(item["conditions"]))
        out.append(item)
    return out


_JUDGES = {
    "AWS::EC2::SecurityGroup": _security_group,
    "AWS::EC2::SecurityGroupIngress": lambda t, r, p, pol, a: _standalone_rule(t, r, p, pol, a, "ingress"),
    "AWS::EC2::SecurityGroupEgress": lambda t, r, p, pol, a: _standalone_rule(t, r, p, pol, a, "egress"),
    "AWS::EC2::Instance": lambda t, r, p, pol, a: _instance(t, r, p, a),
    "AWS::EC2::LaunchTemplate": lambda t, r, p, pol, a: _launch_template(t, r, p, a),
    "AWS::AutoScaling::LaunchConfiguration": lambda t, r, p, pol, a: _launch_configuration(t, r, p, a),
    "AWS::EC2::Volume": lambda t, r, p, pol, a: _volume(t, r, p, a),
}
