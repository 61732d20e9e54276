#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: template_audit
short_description: Gate CloudFormation templates on their security groups, IMDSv2 and EBS encryption
version_added: 0.2.0
description:
  - Reads CloudFormation templates (YAML, with the short-form tags such as C(!Ref), and JSON) before
    any stack exists, and says whether they pass. Changes nothing.
  - Templates are decoded with cfn-lint's decoder, which keeps line numbers; every finding names the
    file, the line and the resource's logical id.
  - Security group rules of C(AWS::EC2::SecurityGroup) (inline ingress and egress),
    C(AWS::EC2::SecurityGroupIngress) and C(AWS::EC2::SecurityGroupEgress) are judged by the same rules
    as live groups in M(cloudefigo.core.security_group_audit). A group without egress rules is judged
    with the egress rule AWS adds to it (all traffic to C(0.0.0.0/0)).
  - C(critical) C(open_all_ports) - internet-wide ingress on every port (protocol C(-1), or C(0-65535)).
    Internet-wide means C(0.0.0.0/0), C(::/0), or a public range of C(/8) (IPv4) or C(/16) (IPv6) or wider.
  - C(high) C(open_admin_port) - internet-wide ingress to one of O(admin_ports).
  - C(high) C(cannot_evaluate) - a CIDR, port, protocol or setting whose value cannot be known before
    deployment (C(Fn::ImportValue), C(Fn::GetAtt) of a resource, an SSM parameter, a parameter with no
    value, a launch template outside the template). Blocks whatever O(fail_on) says unless
    O(unresolved=report).
  - C(medium) C(wide_port_range) - internet-wide ingress on more than O(max_port_range) ports.
  - C(medium) C(cidr_not_allowed) - ingress from outside O(allowed_cidrs) (when set);
    C(egress_cidr_not_allowed) - egress to outside O(allowed_egress_cidrs) (when set).
  - C(medium) C(imdsv2_not_required) - an C(AWS::EC2::Instance) without a launch template,
    an C(AWS::EC2::LaunchTemplate) or an C(AWS::AutoScaling::LaunchConfiguration) whose
    C(MetadataOptions.HttpTokens) is not C(required) (and whose metadata endpoint is not disabled).
  - C(medium) C(unencrypted_volume) - an C(AWS::EC2::Volume), or an C(Ebs) block device mapping of an
    instance, launch template or launch configuration, without C(Encrypted=true).
  - C(low) C(open_egress) - egress to the internet on every port (AWS's default egress rule included).
  - Parameters take the values in O(parameters), else their C(Default) (see O(use_parameter_defaults)),
    else, for a parameter with C(AllowedValues), each allowed value. C(Ref), C(Fn::Sub), C(Fn::Join),
    C(Fn::Select), C(Fn::Split), C(Fn::FindInMap), C(Fn::Cidr), C(Fn::GetAtt) of a VPC's or subnet's
    C(CidrBlock) in the same template, and conditions (C(Fn::Equals), C(Fn::And), C(Fn::Or), C(Fn::Not))
    are resolved. An C(Fn::If) whose condition cannot be decided is judged on both branches; its
    findings say which branch they hold under.
  - Rules from security groups or prefix lists (no CIDR) are not judged. Resources made by
    C(Fn::ForEach) are a C(cannot_evaluate) finding. SAM resources are not expanded.
author:
  - Cloudefigo contributors (@cloudefigo)
requirements:
  - cfn-lint (on the node that runs the module, usually the controller)
options:
  paths:
    description:
      - Template files, and directories searched recursively for files matching O(patterns).
      - A file named here must be a template. A file found in a directory that decodes to something
        without a C(Resources) mapping (a parameters file, a buildspec) is skipped and listed in
        RV(skipped). A file that is not valid YAML or JSON fails the task, wherever it was found.
    type: list
    elements: path
    required: true
    aliases: [path]
  base_dir:
    description:
      - Directory that relative O(paths) are relative to; findings then name their files relative to it.
      - By default relative paths are relative to the module's working directory. In a playbook on a
        local connection that is the playbook's directory, not the one C(ansible-playbook) was started
        in, so a pipeline passes its own (C(playbooks/template_gate.yml) passes C($PWD)).
    type: path
  patterns:
    description: File name patterns of templates in a directory of O(paths).
    type: list
    elements: str
    default: ["*.yaml", "*.yml", "*.json", "*.template"]
  parameters:
    description:
      - Parameter values of the deployment, by parameter name, for every template that declares them
        (a template that does not declare one ignores it). Pseudo parameters such as C(AWS::Region) may
        be given too.
      - A list parameter (C(CommaDelimitedList), C(List<...>)) takes a list or a comma-separated string.
      - Do not pass secrets (C(NoEcho) parameters such as passwords); no rule needs them, and module
        arguments can end up in job logs.
    type: dict
    default: {}
  use_parameter_defaults:
    description:
      - Take a parameter's C(Default) when O(parameters) does not give it.
      - V(false) judges only what the pipeline passes in O(parameters); any other parameter used in a
        CIDR or port is a C(cannot_evaluate) finding (parameters with C(AllowedValues) are judged on each
        allowed value).
    type: bool
    default: true
  fail_on:
    description:
      - Lowest severity that blocks, as in M(cloudefigo.core.nessus_report). C(cannot_evaluate) findings
        follow O(unresolved) instead.
    type: str
    choices: [low, medium, high, critical]
    default: medium
  unresolved:
    description:
      - V(block) - a C(cannot_evaluate) finding blocks, whatever O(fail_on) says.
      - V(report) - it is listed and never blocks.
    type: str
    choices: [block, report]
    default: block
  allowed_cidrs:
    description:
      - Networks ingress may come from; a CIDR outside all of them is C(cidr_not_allowed). Empty turns
        the check off. A rule already C(critical) or C(high) is not reported again here.
    type: list
    elements: str
    default: []
  allowed_egress_cidrs:
    description: Networks egress may go to; a CIDR outside all of them is C(egress_cidr_not_allowed). Empty turns the check off.
    type: list
    elements: str
    default: []
  admin_ports:
    description: Ports that must never be open to the internet (the default is M(cloudefigo.core.security_group_audit)'s).
    type: list
    elements: int
    default: [22, 23, 445, 1433, 1521, 2375, 2376, 2379, 3306, 3389, 5432, 5984, 5985, 5986, 6379,
              7000, 9042, 9200, 9300, 11211, 27017]
  max_port_range:
    description: Internet-wide ingress on more ports than this is C(wide_port_range). V(0) turns the check off.
    type: int
    default: 1000
  fail_when_blocked:
    description:
      - V(true) fails the task when a template is blocked (the result still holds the findings).
      - V(false) returns RV(blocked) and lets the playbook decide.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Read-only; runs the same in check mode.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to diff.
notes:
  - A template that cannot be read, or is not valid YAML or JSON, always fails the task; it never passes.
  - Findings are judged on the template as written. Values given at deployment that differ from the
    defaults are not seen unless they are passed in O(parameters).
seealso:
  - module: cloudefigo.core.security_group_audit
  - module: cloudefigo.core.nessus_report
"""

EXAMPLES = r"""
- name: Gate every template of the repository
  cloudefigo.core.template_audit:
    paths: [cloudformation/]
    fail_on: high
  register: gate
  delegate_to: localhost

- name: Print the findings and stop when blocked
  ansible.builtin.fail:
    msg: "{{ gate.report }}"
  when: gate.blocked

- name: One template, with the deployment's parameters and the corporate ranges
  cloudefigo.core.template_audit:
    path: cloudformation/web.yaml
    parameters:
      Environment: prod
      AWS::Region: eu-west-1
    allowed_cidrs: [10.0.0.0/8, 198.51.100.0/24]
    fail_when_blocked: true
  delegate_to: localhost
"""

RETURN = r"""
blocked:
  description: V(true) when at least one finding blocks (see O(fail_on) and O(unresolved)).
  returned: always
  type: bool
  sample: true
msg:
  description: One line saying whether the templates passed.
  returned: always
  type: str
  sample: "blocked: 2 blocking finding(s) in 1 of 3 template(s)"
findings:
  description: Every finding, blocking ones first, then by severity, file and line.
  returned: always
  type: list
  elements: dict
  contains:
    file:
      description: Template file, as found from O(paths) (relative to O(base_dir) when it is set and holds the file).
      type: str
      sample: cloudformation/web.yaml
    line:
      description: Line of the rule (or of the resource) in the file.
      type: int
      sample: 14
    logical_id:
      description: Logical id of the resource.
      type: str
      sample: WebSecurityGroup
    resource_type:
      description: CloudFormation type of the resource.
      type: str
      sample: AWS::EC2::SecurityGroup
    severity:
      description: C(critical), C(high), C(medium) or C(low).
      type: str
      sample: high
    rule:
      description:
        - C(open_all_ports), C(open_admin_port), C(wide_port_range), C(cidr_not_allowed), C(open_egress),
          C(egress_cidr_not_allowed), C(imdsv2_not_required), C(unencrypted_volume) or C(cannot_evaluate).
      type: str
      sample: open_admin_port
    title:
      description: The finding in words.
      type: str
      sample: "ingress rule: tcp/22 (port 22) open to the internet (from 0.0.0.0/0)"
    blocking:
      description: Whether this finding blocks.
      type: bool
      sample: true
    direction:
      description: C(ingress) or C(egress) for security group rules, null otherwise.
      type: str
      sample: ingress
    cidr:
      description: CIDR of the rule, when known.
      type: str
      sample: 0.0.0.0/0
    ports:
      description: Protocol and ports of the rule (C(tcp/22), C(tcp/1000-2000), C(all)), when known.
      type: str
      sample: tcp/22
    conditions:
      description: Undecided conditions and parameter values the finding holds under; empty when it always holds.
      type: list
      elements: str
      sample: ["condition IsProduction is false"]
report:
  description: One line per finding (C(file:line severity rule logical_id title)), blocking ones marked C(BLOCK).
  returned: always
  type: list
  elements: str
  sample: ["BLOCK cloudformation/web.yaml:14 high open_admin_port WebSecurityGroup: ingress rule: tcp/22 (port 22) open to the internet (from 0.0.0.0/0)"]
blocking_count:
  description: Number of blocking findings.
  returned: always
  type: int
  sample: 2
counts_by_severity:
  description: Number of findings per severity (all four keys always present).
  returned: always
  type: dict
  sample: {"critical": 0, "high": 2, "medium": 1, "low": 3}
templates:
  description: The templates read, with the number of resources judged and of findings.
  returned: always
  type: list
  elements: dict
  sample: [{"file": "cloudformation/web.yaml", "resources_judged": 4, "findings": 3, "blocked": true}]
skipped:
  description: Files found in a directory that are not CloudFormation templates.
  returned: always
  type: list
  elements: dict
  sample: [{"file": "cloudformation/params.json", "reason": "no Resources mapping"}]
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.cloudefigo.core.plugins.module_utils import _sg_rules as rules
from ansible_collections.cloudefigo.core.plugins.module_utils._cfn import load
from ansible_collections.cloudefigo.core.plugins.module_utils._cfn.audit import CANNOT_EVALUATE, audit_template


def _policy(module):
    params = module.params
    try:
        allowed = rules.parse_networks(params["allowed_cidrs"], "allowed_cidrs")
        allowed_egress = rules.parse_networks(params["allowed_egress_cidrs"], "allowed_egress_cidrs")
    except ValueError as exc:
        module.fail_json(msg=str(exc), blocked=True)
    bad_ports = [port for port in params["admin_ports"] if not 0 <= port <= 65535]
    if bad_ports:
        module.fail_json(msg="admin_ports: %s not in 0-65535" % bad_ports, blocked=True)
    if params["max_port_range"] < 0:
        module.fail_json(msg="max_port_range must be 0 (off) or more", blocked=True)
    return rules.Policy(allowed=allowed, admin_ports=params["admin_ports"], max_port_range=params["max_port_range"] or None,
                        allowed_egress=allowed_egress)


def _shown(path, base_dir):
    """``path`` relative to ``base_dir`` when it is inside it, else as it is."""
    if base_dir and os.path.abspath(path).startswith(os.path.join(os.path.abspath(base_dir), "")):
        return os.path.relpath(os.path.abspath(path), os.path.abspath(base_dir))
    return path


def _blocking(finding, fail_on, unresolved):
    if finding["rule"] == CANNOT_EVALUATE:
        return unresolved == "block"
    return rules.at_or_above(finding["severity"], fail_on)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            paths=dict(type="list", elements="path", required=True, aliases=["path"]),
            base_dir=dict(type="path"),
            patterns=dict(type="list", elements="str", default=list(load.DEFAULT_PATTERNS)),
            parameters=dict(type="dict", default={}),
            use_parameter_defaults=dict(type="bool", default=True),
            fail_on=dict(type="str", default="medium", choices=["low", "medium", "high", "critical"]),
            unresolved=dict(type="str", default="block", choices=["block", "report"]),
            allowed_cidrs=dict(type="list", elements="str", default=[]),
            allowed_egress_cidrs=dict(type="list", elements="str", default=[]),
            admin_ports=dict(type="list", elements="int", default=list(rules.DEFAULT_ADMIN_PORTS)),
            max_port_range=dict(type="int", default=1000),
            fail_when_blocked=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    if not load.HAS_CFN_LINT:
        module.fail_json(msg=missing_required_lib("cfn-lint"), exception=load.CFN_LINT_IMPORT_ERROR, blocked=True)
    params = module.params
    if not params["paths"]:
        module.fail_json(msg="paths: give at least one template file or directory", blocked=True)
    policy = _policy(module)
    base_dir = params["base_dir"]
    paths = params["paths"]
    if base_dir:
        if not os.path.isdir(base_dir):
            module.fail_json(msg="base_dir: %s is not a directory" % base_dir, blocked=True)
        paths = [os.path.join(base_dir, path) for path in paths]   # an absolute path stays as it is

    try:
        files = load.template_files(paths, params["patterns"])
    except load.TemplateError as exc:
        module.fail_json(msg="paths: %s" % exc, blocked=True)
    findings, templates, skipped, errors = [], [], [], []
    for path, explicit in files:
        shown = _shown(path, base_dir)
        try:
            decoded = load.decode(path)
        except load.TemplateError as exc:
            errors.append(str(exc))
            continue
        if not load.looks_like_template(decoded):
            if explicit:
                errors.append("%s: not a CloudFormation template (no Resources mapping)" % path)
            else:
                skipped.append({"file": shown, "reason": "no Resources mapping"})
            continue
        found, judged = audit_template(decoded, policy, params["parameters"], params["use_parameter_defaults"])
        for item in found:
            item["file"] = shown
            item["blocking"] = _blocking(item, params["fail_on"], params["unresolved"])
        templates.append({"file": shown, "resources_judged": judged, "findings": len(found),
                          "blocked": any(item["blocking"] for item in found)})
        findings.extend(found)

    findings.sort(key=lambda item: (not item["blocking"], rules.severity_rank(item["severity"]), item["file"],
                                    item["line"] or 0, item["logical_id"], item["rule"]))
    blocking = sum(1 for item in findings if item["blocking"])
    report = ["%s %s:%s %s %s %s: %s" % ("BLOCK" if item["blocking"] else "note ", item["file"], item["line"],
                                         item["severity"], item["rule"], item["logical_id"], item["title"])
              for item in findings]
    result = dict(changed=False, findings=findings, report=report, blocking_count=blocking,
                  counts_by_severity=rules.count_by_severity(findings), templates=templates, skipped=skipped)
    if errors:
        # fail closed: a template that cannot be read is never a pass
        module.fail_json(msg="cannot read %d file(s): %s" % (len(errors), " | ".join(errors)), blocked=True, **result)
    if not templates:
        module.fail_json(msg="paths: no CloudFormation template found in %s (patterns %s)"
                         % (", ".join(params["paths"]), ", ".join(params["patterns"])), blocked=True, **result)
    blocked_templates = sum(1 for item in templates if item["blocked"])
    if blocking:
        msg = "blocked: %d blocking finding(s) in %d of %d template(s)" % (blocking, blocked_templates, len(templates))
    else:
        msg = "passed: %d template(s), %d finding(s) below the gate" % (len(templates), len(findings))
    result.update(blocked=bool(blocking), msg=msg)
    if blocking and params["fail_when_blocked"]:
        module.fail_json(**result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
