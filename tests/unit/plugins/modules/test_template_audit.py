# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""template_audit's main(): hand-made edge cases and real public templates (tests/data/cloudformation)."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from ansible.module_utils.testing import patch_module_args

from ansible_collections.cloudefigo.core.plugins.module_utils._cfn import load
from ansible_collections.cloudefigo.core.plugins.modules import template_audit

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "data", "cloudformation")


@pytest.fixture
def run(capsys):
    def _run(**args):
        with patch_module_args(args):
            with pytest.raises(SystemExit):
                template_audit.main()
        return json.loads(capsys.readouterr().out)
    return _run


@pytest.fixture
def write(tmp_path):
    def _write(text, name="template.yaml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return str(path)
    return _write


def summary(result):
    """(line, logical_id, rule, cidr, ports, blocking) of every finding, sorted."""
    return sorted((item["line"], item["logical_id"], item["rule"], item["cidr"], item["ports"], item["blocking"])
                  for item in result["findings"])


def group(rules_yaml, egress="      SecurityGroupEgress: [{IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8}]\n",
          parameters="", conditions=""):
    return ("AWSTemplateFormatVersion: '2010-09-09'\n" + parameters + conditions
            + "Resources:\n  Sg:\n    Type: AWS::EC2::SecurityGroup\n    Properties:\n      GroupDescription: g\n"
            + "      SecurityGroupIngress:\n" + textwrap.indent(textwrap.dedent(rules_yaml).lstrip("\n"), " " * 8) + egress)


def test_ranges_protocol_all_and_ipv6(run, write):
    path = write(group("""
        - {IpProtocol: tcp, FromPort: 3000, ToPort: 4000, CidrIp: 0.0.0.0/0}
        - {IpProtocol: "-1", CidrIpv6: "::/0"}
        - {IpProtocol: tcp, FromPort: 12000, ToPort: 13500, CidrIp: 0.0.0.0/0}
        - {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIpv6: "::/0"}
        - {IpProtocol: 6, FromPort: "22", ToPort: "22", CidrIp: 0.0.0.0/1}
        - {IpProtocol: icmp, FromPort: 8, ToPort: -1, CidrIp: 0.0.0.0/0}
    """))
    result = run(paths=[path])
    assert summary(result) == [
        (8, "Sg", "open_admin_port", "0.0.0.0/0", "tcp/3000-4000", True),
        (9, "Sg", "open_all_ports", "::/0", "all", True),
        (10, "Sg", "wide_port_range", "0.0.0.0/0", "tcp/12000-13500", True),
        (12, "Sg", "open_admin_port", "0.0.0.0/1", "tcp/22", True),
    ]
    assert result["blocked"] is True and result["changed"] is False
    assert result["counts_by_severity"] == {"critical": 1, "high": 2, "medium": 1, "low": 0}
    first = result["findings"][0]
    assert first["severity"] == "critical" and first["file"] == path and first["resource_type"] == "AWS::EC2::SecurityGroup"
    assert first["title"] == "ingress rule: every port (all) open to the internet (from ::/0)"
    assert result["report"][0] == "BLOCK %s:9 critical open_all_ports Sg: %s" % (path, first["title"])


def test_fail_on_decides_what_blocks(run, write):
    path = write(group("- {IpProtocol: tcp, FromPort: 12000, ToPort: 13500, CidrIp: 0.0.0.0/0}\n"))
    assert run(paths=[path])["blocked"] is True                   # medium blocks at the default
    passed = run(paths=[path], fail_on="high")
    assert passed["blocked"] is False and passed["blocking_count"] == 0 and len(passed["findings"]) == 1
    assert passed["msg"] == "passed: 1 template(s), 1 finding(s) below the gate"
    assert run(paths=[path], max_port_range=0)["findings"] == []


def test_parameters_from_defaults_and_given_values(run, write):
    path = write(group("- {IpProtocol: tcp, FromPort: !Ref Port, ToPort: !Ref Port, CidrIp: !Ref Source}\n",
                       parameters="Parameters:\n  Port: {Type: Number, Default: 22}\n"
                                  "  Source: {Type: String, Default: 0.0.0.0/0}\n"))
    assert summary(run(paths=[path])) == [(11, "Sg", "open_admin_port", "0.0.0.0/0", "tcp/22", True)]
    # the pipeline's values win over the defaults
    assert run(paths=[path], parameters={"Source": "10.0.0.0/8"})["findings"] == []
    assert summary(run(paths=[path], parameters={"Port": 443})) == []
    # strict mode: a parameter the pipeline does not give cannot be evaluated
    strict = run(paths=[path], use_parameter_defaults=False, parameters={"Port": "22"})
    assert [(item["rule"], item["blocking"]) for item in strict["findings"]] == [("cannot_evaluate", True)]
    assert "parameter Source" in strict["findings"][0]["title"]


def test_conditions_worst_branch_unless_resolved(run, write):
    path = write(group("- {IpProtocol: tcp, FromPort: 22, ToPort: 22, CidrIp: !If [IsProd, 10.0.0.0/8, 0.0.0.0/0]}\n",
                       parameters="Parameters:\n  Env: {Type: String}\n",
                       conditions="Conditions:\n  IsProd: !Equals [!Ref Env, prod]\n"))
    undecided = run(paths=[path])
    assert summary(undecided) == [(12, "Sg", "open_admin_port", "0.0.0.0/0", "tcp/22", True)]
    assert undecided["findings"][0]["conditions"] == ["condition IsProd is false"]
    assert undecided["findings"][0]["title"].endswith("(when condition IsProd is false)")
    assert run(paths=[path], parameters={"Env": "prod"})["findings"] == []
    assert len(run(paths=[path], parameters={"Env": "dev"})["findings"]) == 1


def test_intrinsic_functions_in_ports(run, write):
    parameters = ("Parameters:\n  Tier: {Type: String, Default: admin}\n  Net: {Type: String, Default: 0.0.0.0}\n"
                  "Mappings:\n  Ports:\n    admin: {Range: 3389-3389}\n    web: {Range: 443-443}\n")
    conditions = "Conditions:\n  Wide: !Equals [!Ref 'AWS::Region', us-east-1]\n"
    path = write(group("""
        - IpProtocol: tcp
          FromPort: !Select [0, !Split ["-", !FindInMap [Ports, !Ref Tier, Range]]]
          ToPort: !Select [1, !Split ["-", !FindInMap [Ports, !Ref Tier, Range]]]
          CidrIp: !Sub "${Net}/0"
        - IpProtocol: tcp
          FromPort: !If [Wide, 0, 443]
          ToPort: !If [Wide, 65535, 443]
          CidrIp: 0.0.0.0/0
    """, parameters=parameters, conditions=conditions))
    result = run(paths=[path])
    assert summary(result) == [
        (17, "Sg", "open_admin_port", "0.0.0.0/0", "tcp/3389", True),
        (21, "Sg", "open_all_ports", "0.0.0.0/0", "tcp/all", True),   # the worst branch of Wide
    ]
    # the two Fn::If of one condition are taken the same way: no 0-443 or 443-65535 mix
    assert [item["conditions"] for item in result["findings"] if item["line"] == 21] == [["condition Wide is true"]]
    assert run(paths=[path], parameters={"Tier": "web", "AWS::Region": "eu-west-1"})["findings"] == []


def test_unresolvable_values_are_findings_that_block(run, write):
    path = write(group("""
        - {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: !ImportValue office-cidr}
        - {IpProtocol: tcp, FromPort: !GetAtt Lb.Port, ToPort: 443, CidrIp: 10.0.0.0/8}
        - {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: "{{resolve:ssm:office-cidr}}"}
        - {IpProtocol: !Ref "AWS::Region", CidrIp: 10.0.0.0/8}
        - {IpProtocol: tcp, FromPort: 443, ToPort: 443, SourceSecurityGroupId: !ImportValue web-sg}
    """))
    result = run(paths=[path])
    assert [(item["line"], item["rule"], item["blocking"]) for item in sorted(result["findings"], key=lambda i: i["line"])] == [
        (8, "cannot_evaluate", True), (9, "cannot_evaluate", True), (10, "cannot_evaluate", True),
        (11, "cannot_evaluate", True)]
    titles = " | ".join(item["title"] for item in result["findings"])
    assert "Fn::ImportValue office-cidr" in titles and "Fn::GetAtt Lb.Port" in titles
    assert "dynamic reference" in titles and "AWS::Region" in titles
    assert result["blocked"] is True
    # cannot_evaluate ignores fail_on; unresolved=report lists them without blocking
    assert run(paths=[path], fail_on="critical")["blocked"] is True
    reported = run(paths=[path], unresolved="report")
    assert reported["blocked"] is False and len(reported["findings"]) == 4


def test_implicit_and_explicit_egress(run, write):
    none = write(group("- {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8}\n", egress=""), "none.yaml")
    found = run(paths=[none])["findings"]
    assert [(item["rule"], item["severity"], item["line"], item["direction"], item["blocking"]) for item in found] == [
        ("open_egress", "low", 3, "egress", False)]
    assert "no SecurityGroupEgress" in found[0]["title"]
    maybe = write(group("- {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8}\n",
                        egress="      SecurityGroupEgress: !If [Locked, [{IpProtocol: '-1', CidrIp: 127.0.0.1/32}], !Ref 'AWS::NoValue']\n",
                        conditions="Conditions:\n  Locked: !Equals [!Ref 'AWS::Region', eu-west-1]\n"), "maybe.yaml")
    found = run(paths=[maybe])["findings"]
    assert [(item["rule"], item["conditions"]) for item in found] == [("open_egress", ["condition Locked is false"])]
    allowed = run(paths=[none], allowed_egress_cidrs=["10.0.0.0/8"])["findings"]
    assert sorted(item["rule"] for item in allowed) == ["egress_cidr_not_allowed", "open_egress"]


def test_standalone_rules_and_allow_list(run, write):
    path = write("""
        Resources:
          Sg:
            Type: AWS::EC2::SecurityGroup
            Properties:
              GroupDescription: g
              SecurityGroupEgress: [{IpProtocol: "-1", CidrIp: 127.0.0.1/32}]
          In:
            Type: AWS::EC2::SecurityGroupIngress
            Properties: {GroupId: !Ref Sg, IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 192.0.2.0/24}
          Out:
            Type: AWS::EC2::SecurityGroupEgress
            Properties: {GroupId: !GetAtt Sg.GroupId, IpProtocol: "-1", CidrIpv6: "::/0"}
    """)
    result = run(paths=[path], allowed_cidrs=["10.0.0.0/8"])
    assert summary(result) == [(7, "In", "cidr_not_allowed", "192.0.2.0/24", "tcp/443", True),
                               (10, "Out", "open_egress", "::/0", "all", False)]
    assert "ingress rule of Sg" in result["findings"][0]["title"]


def test_instances_launch_templates_and_volumes(run, write):
    path = write("""
        Resources:
          Lt:
            Type: AWS::EC2::LaunchTemplate
            Properties:
              LaunchTemplateData:
                MetadataOptions: {HttpTokens: required}
                BlockDeviceMappings:
                  - {DeviceName: /dev/xvda, Ebs: {Encrypted: true}}
                  - {DeviceName: /dev/xvdb, VirtualName: ephemeral0}
          FromLt:
            Type: AWS::EC2::Instance
            Properties:
              LaunchTemplate: {LaunchTemplateId: !Ref Lt, Version: "1"}
          Old:
            Type: AWS::EC2::Instance
            Properties:
              ImageId: ami-1
              BlockDeviceMappings:
                - DeviceName: /dev/xvda
                  Ebs: {VolumeSize: 8, Encrypted: "false"}
          Foreign:
            Type: AWS::EC2::Instance
            Properties:
              LaunchTemplate: {LaunchTemplateId: !ImportValue shared-lt, Version: "1"}
          NoImds:
            Type: AWS::EC2::LaunchTemplate
            Properties:
              LaunchTemplateData: {MetadataOptions: {HttpEndpoint: disabled}}
          Optional:
            Type: AWS::AutoScaling::LaunchConfiguration
            Properties:
              ImageId: ami-1
              InstanceType: t3.micro
              MetadataOptions: {HttpTokens: optional}
          Plain:
            Type: AWS::EC2::Volume
            Properties: {AvailabilityZone: eu-west-1a, Size: 10}
          Sealed:
            Type: AWS::EC2::Volume
            Properties: {AvailabilityZone: eu-west-1a, Size: 10, Encrypted: true}
    """)
    result = run(paths=[path])
    assert sorted((item["logical_id"], item["rule"], item["line"]) for item in result["findings"]) == [
        ("Foreign", "cannot_evaluate", 24),
        ("Old", "imdsv2_not_required", 14),
        ("Old", "unencrypted_volume", 19),
        ("Optional", "imdsv2_not_required", 34),
        ("Plain", "unencrypted_volume", 35),
    ]
    assert result["templates"] == [{"file": path, "resources_judged": 8, "findings": 5, "blocked": True}]


def test_resource_conditions(run, write):
    path = write("""
        Parameters:
          Env: {Type: String, Default: dev}
        Conditions:
          IsProd: !Equals [!Ref Env, prod]
          Later: !Equals [!Ref 'AWS::AccountId', '123456789012']
        Resources:
          ProdOnly:
            Type: AWS::EC2::Volume
            Condition: IsProd
            Properties: {AvailabilityZone: a, Size: 1}
          Maybe:
            Type: AWS::EC2::Volume
            Condition: Later
            Properties: {AvailabilityZone: a, Size: 1}
          Fn::ForEach::Groups: [Name, [a, b], {"Sg${Name}": {Type: AWS::EC2::SecurityGroup}}]
    """)
    result = run(paths=[path])
    assert sorted((item["logical_id"], item["rule"], item["conditions"]) for item in result["findings"]) == [
        ("Fn::ForEach::Groups", "cannot_evaluate", []),
        ("Maybe", "unencrypted_volume", ["condition Later is true"]),
    ]


def test_directory_json_and_skipped_files(run):
    clean = os.path.join(DATA, "clean")
    result = run(paths=[clean])
    assert result["blocked"] is False and result["findings"] == []
    assert sorted(os.path.basename(item["file"]) for item in result["templates"]) == ["db.json", "web.template"]
    assert [os.path.basename(item["file"]) for item in result["skipped"]] == ["parameters.json"]


def test_base_dir(run, tmp_path):
    result = run(paths=["clean", os.path.join(DATA, "blocked")], base_dir=os.path.abspath(DATA) + "/../cloudformation")
    files = sorted(item["file"] for item in result["templates"])
    assert files == [os.path.join("blocked", "bastion.template"), os.path.join("blocked", "web.template"),
                     os.path.join("clean", "db.json"), os.path.join("clean", "web.template")]
    assert result["skipped"] == [{"file": os.path.join("clean", "parameters.json"), "reason": "no Resources mapping"}]
    assert result["report"][0].startswith("BLOCK blocked/bastion.template:16 high open_admin_port")
    outside = run(paths=[os.path.join(os.path.abspath(DATA), "clean")], base_dir=str(tmp_path))
    assert os.path.isabs(outside["templates"][0]["file"])
    missing = run(paths=["clean"], base_dir=str(tmp_path / "nowhere"))
    assert missing["failed"] is True and missing["msg"].startswith("base_dir:")


def test_errors_fail_closed(run, write, tmp_path):
    broken = write("Resources:\n  Sg:\n    Type: [unclosed\n", "broken.yaml")
    result = run(paths=[broken])
    assert result["failed"] is True and result["blocked"] is True and "broken.yaml" in result["msg"]
    params = write('[{"ParameterKey": "A", "ParameterValue": "b"}]', "params.json")
    result = run(paths=[params])
    assert result["failed"] is True and "not a CloudFormation template" in result["msg"]
    result = run(paths=[str(tmp_path / "missing")])
    assert result["failed"] is True and "no such file or directory" in result["msg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no CloudFormation template found" in run(paths=[str(empty)])["msg"]
    ok = write(group("- {IpProtocol: tcp, FromPort: 443, ToPort: 443, CidrIp: 10.0.0.0/8}\n"), "ok.yaml")
    result = run(paths=[ok], allowed_cidrs=["office"])
    assert result["failed"] is True and result["msg"].startswith("allowed_cidrs: 'office' is not a network")


def test_yaml_alias_amplification_fails_the_task(run, write):
    # a template author cannot stall the gate with a YAML alias bomb: cfn-lint's decoder refuses it
    lines = ["Metadata:", "  a: &a [x, x, x, x, x, x, x, x, x, x]"]
    previous = "a"
    for name in "bcdefghi":
        lines.append("  %s: &%s [%s]" % (name, name, ", ".join(["*" + previous] * 10)))
        previous = name
    lines.append(group("- {IpProtocol: tcp, FromPort: 22, ToPort: 22, CidrIp: *i}\n"))
    result = run(paths=[write("\n".join(lines))])
    assert result["failed"] is True and result["blocked"] is True and "alias" in result["msg"]


def test_fail_when_blocked_and_check_mode(run, write):
    path = write(group("- {IpProtocol: tcp, FromPort: 22, ToPort: 22, CidrIp: 0.0.0.0/0}\n"))
    failed = run(paths=[path], fail_when_blocked=True)
    assert failed["failed"] is True and failed["blocked"] is True and failed["findings"][0]["rule"] == "open_admin_port"
    checked = run(paths=[path], _ansible_check_mode=True)
    assert checked["changed"] is False and checked["blocked"] is True


def test_missing_cfn_lint_is_reported(run, write, monkeypatch):
    monkeypatch.setattr(load, "HAS_CFN_LINT", False)
    monkeypatch.setattr(load, "CFN_LINT_IMPORT_ERROR", "Traceback: No module named 'cfnlint'")
    result = run(paths=[write(group(""))])
    assert result["failed"] is True and "cfn-lint" in result["msg"] and result["blocked"] is True


# ---------------------------------------------------------------- real public templates

def public(name):
    return os.path.join(DATA, "public", name)


def test_public_nist_vpc_production_bastion_ssh_from_the_world(run):
    result = run(paths=[public("nist_vpc_production.yaml")])
    blocking = [(item["line"], item["logical_id"], item["rule"], item["cidr"], item["ports"])
                for item in result["findings"] if item["blocking"]]
    assert blocking == [(621, "rSecurityGroupMgmtBastion", "open_admin_port", "0.0.0.0/0", "tcp/22")]
    assert sorted(item["logical_id"] for item in result["findings"] if item["rule"] == "open_egress") == [
        "rSecurityGroupMgmtBastion", "rSecurityGroupSSHFromProd", "rSecurityGroupVpcNat"]
    # the pipeline passes the bastion's real source: nothing blocks any more
    assert run(paths=[public("nist_vpc_production.yaml")], parameters={"pBastionSSHCIDR": "10.10.0.0/16"})["blocked"] is False


def test_public_openshift_all_ports_open_and_parameters_without_default(run):
    result = run(paths=[public("openshift.yaml")])
    found = {(item["line"], item["logical_id"], item["rule"]) for item in result["findings"]}
    assert (1058, "OpenShiftInternalSecurityGroup", "open_all_ports") in found
    assert (1643, "OpenShiftSecurityGroup", "cannot_evaluate") in found     # RemoteAccessCIDR has no default
    assert (1457, "OpenShiftNodesLaunchConfig", "unencrypted_volume") in found
    assert (1414, "OpenShiftNodesLaunchConfig", "imdsv2_not_required") in found
    sources = {"RemoteAccessCIDR": "203.0.113.0/24", "ContainerAccessCIDR": "203.0.113.0/24"}
    given = run(paths=[public("openshift.yaml")], parameters=sources)
    assert not [item for item in given["findings"] if item["rule"] == "cannot_evaluate"]
    assert given["blocked"] is True   # the all-ports group is still there


def test_public_json_and_cfn_lint_fixtures(run):
    result = run(paths=[public("nat-instance.json"), public("cfn-lint_properties_sg_ingress.template"),
                        public("cfn-lint_conditions.template")])
    found = {(os.path.basename(item["file"]), item["line"], item["logical_id"], item["rule"]) for item in result["findings"]}
    assert ("nat-instance.json", 93, "rNatInstance", "imdsv2_not_required") in found
    assert ("cfn-lint_properties_sg_ingress.template", 51, "SecurityGroupRuleSSM", "cannot_evaluate") in found
    assert ("cfn-lint_properties_sg_ingress.template", 82, "myLaunchTemplate", "imdsv2_not_required") in found
    assert ("cfn-lint_conditions.template", 45, "myInstance2", "unencrypted_volume") in found
    conditional = [item for item in result["findings"] if item["logical_id"] == "myInstance2" and item["line"] == 45]
    assert conditional[0]["conditions"] == ["condition isDevelopment is true and condition isPrimaryAndProduction is false"]
    # Properties under Fn::If with three branches, none with IMDSv2: one unconditional finding
    assert [item["conditions"] for item in result["findings"] if item["logical_id"] == "myInstance3"] == [[]]
