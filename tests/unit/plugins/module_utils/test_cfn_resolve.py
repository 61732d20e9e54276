# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Parameters, conditions and intrinsic functions, on templates decoded by cfn-lint's decoder."""

from __future__ import annotations

from cfnlint.decode import decode_str

from ansible_collections.cloudefigo.core.plugins.module_utils._cfn.resolve import NOVALUE, Template, Unresolved

TEMPLATE = """
Parameters:
  Env:
    Type: String
    AllowedValues: [dev, prod]
  Port:
    Type: Number
    Default: 22
  Nets:
    Type: CommaDelimitedList
    Default: "10.0.0.0/8, 192.168.0.0/16"
  Free:
    Type: String
  Ami:
    Type: AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>
    Default: /aws/service/ami
Mappings:
  Ranges:
    prod: {Office: 198.51.100.0/24}
    dev: {Office: 0.0.0.0/0}
Conditions:
  IsProd: !Equals [!Ref Env, prod]
  IsNotProd: !Not [!Condition IsProd]
  Always: !Equals [!Ref Port, "22"]
  Unknown: !Equals [!Ref "AWS::Region", eu-west-1]
  AlwaysOrUnknown: !Or [!Condition Always, !Condition Unknown]
  NeverAndUnknown: !And [!Not [!Condition Always], !Condition Unknown]
Resources:
  Vpc:
    Type: AWS::EC2::VPC
    Properties: {CidrBlock: 10.1.0.0/16}
"""


def template(**kwargs):
    decoded, matches = decode_str(TEMPLATE)
    assert not matches
    return Template(decoded, **kwargs)


def values(node, **kwargs):
    return [value for value, _assumed in template(**kwargs).expand(node)]


def test_parameters_defaults_given_and_lists():
    assert values({"Ref": "Port"}) == [22]
    assert values({"Ref": "Port"}, parameters={"Port": "2222"}) == ["2222"]
    assert values({"Ref": "Nets"}) == [["10.0.0.0/8", "192.168.0.0/16"]]
    assert values({"Fn::Select": [1, {"Ref": "Nets"}]}) == ["192.168.0.0/16"]


def test_parameters_that_cannot_be_known():
    assert "no Default" in values({"Ref": "Free"})[0].reason
    assert "SSM" in values({"Ref": "Ami"})[0].reason                    # the default is a name, not the value
    assert values({"Ref": "Ami"}, parameters={"Ami": "ami-1"}) == ["ami-1"]
    assert "AWS::Region" in values({"Ref": "AWS::Region"})[0].reason
    assert values({"Ref": "AWS::Region"}, parameters={"AWS::Region": "eu-west-1"}) == ["eu-west-1"]
    assert "resource Vpc" in values({"Ref": "Vpc"})[0].reason
    assert "no value was given" in values({"Ref": "Port"}, use_defaults=False)[0].reason


def test_allowed_values_give_one_candidate_each():
    got = template().expand({"Ref": "Env"})
    assert sorted((value, sorted(assumed)) for value, assumed in got) == [
        ("dev", [("Parameter:Env", "dev")]), ("prod", [("Parameter:Env", "prod")])]


def test_conditions():
    tpl = template()
    assert tpl.condition("Always") is True
    assert tpl.condition("IsProd") is None                  # Env has no value: both are possible
    assert tpl.condition("IsNotProd") is None
    assert tpl.condition("Unknown") is None
    assert tpl.condition("AlwaysOrUnknown") is True         # three-valued logic
    assert tpl.condition("NeverAndUnknown") is False
    assert template(parameters={"Env": "prod"}).condition("IsProd") is True
    assert template(parameters={"Env": "prod"}).condition("IsNotProd") is False


def test_fn_if_resolved_and_both_branches():
    node = {"Fn::If": ["IsProd", "10.0.0.0/8", "0.0.0.0/0"]}
    assert values(node, parameters={"Env": "prod"}) == ["10.0.0.0/8"]
    both = template().expand(node)
    assert sorted((value, sorted(assumed)) for value, assumed in both) == [
        ("0.0.0.0/0", [("Condition:IsProd", False)]), ("10.0.0.0/8", [("Condition:IsProd", True)])]
    assert values({"Fn::If": ["Always", {"Ref": "AWS::NoValue"}, "x"]}) == [NOVALUE]


def test_one_condition_is_taken_the_same_way_in_one_object():
    node = {"Low": {"Fn::If": ["IsProd", 443, 0]}, "High": {"Fn::If": ["IsProd", 443, 65535]}}
    assert sorted(sorted(value.items()) for value in values(node)) == [
        [("High", 443), ("Low", 443)], [("High", 65535), ("Low", 0)]]


def test_string_functions():
    assert values({"Fn::Sub": "${Port}-${!Literal}-${AWS::NoValue}x"}) == ["22-${Literal}-x"]
    assert values({"Fn::Sub": ["${A}/${B}", {"A": "10.0.0.0", "B": 8}]}) == ["10.0.0.0/8"]
    assert "Fn::GetAtt Vpc.Arn" in values({"Fn::Sub": "${Vpc.Arn}"})[0].reason
    assert values({"Fn::Join": ["/", ["10.0.0.0", {"Ref": "Port"}]]}) == ["10.0.0.0/22"]
    assert values({"Fn::Split": [",", "a,b"]}) == [["a", "b"]]
    assert isinstance(values({"Fn::Join": ["", ["a", {"Fn::ImportValue": "x"}]]})[0], Unresolved)


def test_find_in_map_with_a_parameter_key():
    assert values({"Fn::FindInMap": ["Ranges", "prod", "Office"]}) == ["198.51.100.0/24"]
    got = sorted(values({"Fn::FindInMap": ["Ranges", {"Ref": "Env"}, "Office"]}))
    assert got == ["0.0.0.0/0", "198.51.100.0/24"]
    assert "not in Mappings" in values({"Fn::FindInMap": ["Ranges", "test", "Office"]})[0].reason


def test_cidr_select_get_att_and_imports():
    assert values({"Fn::Select": [2, {"Fn::Cidr": ["10.0.0.0/16", 4, 8]}]}) == ["10.0.2.0/24"]
    assert values({"Fn::GetAtt": ["Vpc", "CidrBlock"]}) == ["10.1.0.0/16"]
    assert values({"Fn::GetAtt": "Vpc.CidrBlock"}) == ["10.1.0.0/16"]
    assert "known only once the stack exists" in values({"Fn::GetAtt": ["Vpc", "DefaultSecurityGroup"]})[0].reason
    assert "Fn::ImportValue shared-cidr" in values({"Fn::ImportValue": "shared-cidr"})[0].reason
    assert "dynamic reference" in values("{{resolve:ssm:office-cidr}}")[0].reason
    assert "out of range" in values({"Fn::Select": [5, ["a"]]})[0].reason
    assert "Fn::GetAZs" in values({"Fn::GetAZs": ""})[0].reason


def test_too_many_combinations_is_unresolved_not_a_guess():
    conditions = {"C%d" % index: {"Fn::Equals": [{"Ref": "AWS::Region"}, "r%d" % index]} for index in range(7)}
    tpl = Template({"Conditions": conditions, "Resources": {}})
    six = [{"Fn::If": ["C%d" % index, "a", "b"]} for index in range(6)]
    assert len(tpl.expand({"Fn::Join": ["", six]})) == 64
    seven = six + [{"Fn::If": ["C6", "a", "b"]}]
    got = tpl.expand({"Fn::Join": ["", seven]})
    assert len(got) == 1 and isinstance(got[0][0], Unresolved) and "more than 64" in got[0][0].reason


def test_cycles_are_unresolved_not_a_crash():
    tpl = Template({
        "Mappings": {"M": {"a": {"b": {"Fn::FindInMap": ["M", "a", "b"]}}}},
        "Resources": {"Vpc": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": {"Fn::GetAtt": ["Vpc", "CidrBlock"]}}}},
    })
    for node in ({"Fn::FindInMap": ["M", "a", "b"]}, {"Fn::GetAtt": ["Vpc", "CidrBlock"]}):
        value = tpl.expand(node)[0][0]
        assert isinstance(value, Unresolved) and "nested more than" in value.reason


def test_work_is_bounded(monkeypatch):
    from ansible_collections.cloudefigo.core.plugins.module_utils._cfn import resolve
    monkeypatch.setattr(resolve, "MAX_VISITS", 5)
    got = Template({"Resources": {}}).expand([[1, 2], [3, 4]])
    assert "too large to evaluate" in find_reason(got[0][0])


def find_reason(value):
    from ansible_collections.cloudefigo.core.plugins.module_utils._cfn.resolve import find_unresolved
    return find_unresolved(value).reason
