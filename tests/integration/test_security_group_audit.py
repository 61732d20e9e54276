# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""security_group_audit against the lab's moto: prefix lists, reference chains, exposed instances.

Seeded with boto3 (amazon.aws has no managed prefix list module), audited through a playbook, and
every expectation read back from moto, not written down: the instance ids are those run_instances
returned, the prefix list's CIDRs those moto stores.
"""
import os
import textwrap

PLAY = textwrap.dedent("""\
    - name: Audit security groups
      hosts: localhost
      connection: local
      gather_facts: false
      tasks:
        - name: Audit
          cloudefigo.core.security_group_audit:
            endpoint_url: "{{ lab_aws_endpoint }}"
            access_key: testing
            secret_key: testing
            region: us-east-1
            regions: [us-east-1]
            exposed_limit: "{{ sga_limit | default(omit) }}"
          register: sga
""")


def audit(playbook, tmp_path, **extra):
    path = os.path.join(str(tmp_path), "audit.yml")
    with open(path, "w") as handle:
        handle.write(PLAY)
    result = playbook(path, extra_vars=extra)
    assert result.rc == 0, result.stdout[-3000:]
    return result.task_results("Audit")[0]


def seed(aws):
    ec2 = aws.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    world = ec2.create_managed_prefix_list(PrefixListName="partners", MaxEntries=5, AddressFamily="IPv4",
                                           Entries=[{"Cidr": "198.51.100.0/24"}, {"Cidr": "0.0.0.0/0"}])["PrefixList"]
    office = ec2.create_managed_prefix_list(PrefixListName="office", MaxEntries=5, AddressFamily="IPv4",
                                            Entries=[{"Cidr": "10.20.0.0/16"}])["PrefixList"]

    def group(name):
        return ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]

    ids = dict((name, group(name)) for name in ("web", "app", "db", "office-only"))
    # web: HTTPS from a prefix list that (among partners) holds 0.0.0.0/0, SSH from the office list
    ec2.authorize_security_group_ingress(GroupId=ids["web"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": [{"PrefixListId": world["PrefixListId"]}]},
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [{"PrefixListId": world["PrefixListId"]}]}])
    ec2.authorize_security_group_ingress(GroupId=ids["office-only"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [{"PrefixListId": office["PrefixListId"]}]}])
    # web -> app -> db: a chain of references
    ec2.authorize_security_group_ingress(GroupId=ids["app"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": ids["web"]}]}])
    ec2.authorize_security_group_ingress(GroupId=ids["db"], IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [{"GroupId": ids["app"]}]}])
    # egress to a prefix list of the world on every port (besides AWS's default rule)
    ec2.authorize_security_group_egress(GroupId=ids["db"], IpPermissions=[
        {"IpProtocol": "-1", "PrefixListIds": [{"PrefixListId": world["PrefixListId"]}]}])
    subnet = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"][0]["SubnetId"]
    instances = {}
    for name, count in (("web", 2), ("db", 1)):
        reservation = ec2.run_instances(ImageId="ami-12c6146b", MinCount=count, MaxCount=count, SubnetId=subnet,
                                        SecurityGroupIds=[ids[name]])
        instances[name] = sorted(i["InstanceId"] for i in reservation["Instances"])
    return ec2, ids, instances, world["PrefixListId"], office["PrefixListId"]


def interfaces_of(ec2, group_id):
    found = ec2.describe_network_interfaces(Filters=[{"Name": "group-id", "Values": [group_id]}])["NetworkInterfaces"]
    return sorted(i["NetworkInterfaceId"] for i in found)


def test_prefix_lists_chains_and_exposed_instances(lab, aws, playbook, tmp_path):
    ec2, ids, instances, world, office = seed(aws)
    result = audit(playbook, tmp_path)
    findings = result["findings"]

    def of(group, rule):
        return [f for f in findings if f["group_id"] == ids[group] and f["rule"] == rule]

    # the prefix list's 0.0.0.0/0 opens SSH to the internet; its 198.51.100.0/24 is no finding
    ssh = of("web", "open_admin_port")
    assert [(f["cidr"], f["ports"], f["prefix_list_id"], f["severity"]) for f in ssh] == [
        ("0.0.0.0/0", "tcp/22", world, "high")]
    assert [e["Cidr"] for e in ec2.get_managed_prefix_list_entries(PrefixListId=world)["Entries"]].count("0.0.0.0/0") == 1
    # the instances it exposes are the ones launched into the group, with their interfaces
    assert ssh[0]["instances"] == instances["web"] and ssh[0]["instance_count"] == 2
    assert ssh[0]["network_interfaces"] == interfaces_of(ec2, ids["web"])
    # an office-only prefix list is not the internet
    assert [f["rule"] for f in findings if f["group_id"] == ids["office-only"]] == ["open_egress", "unused_group"]

    # the chain: internet -> web (HTTPS and SSH) -> app (8080) -> db (5432)
    app = of("app", "exposed_via_group")
    db = of("db", "exposed_via_group")
    assert [(f["via_groups"], f["ports"], f["severity"]) for f in app] == [([ids["web"]], "tcp/8080", "low")]
    assert [(f["via_groups"], f["ports"], f["severity"]) for f in db] == [([ids["web"], ids["app"]], "tcp/5432", "medium")]
    assert db[0]["instances"] == instances["db"]
    assert app[0]["instances"] == [] and app[0]["instance_count"] == 0

    # egress to the world on every port: AWS's default rule and the prefix list's 0.0.0.0/0
    egress = of("db", "open_egress")
    assert sorted((f["cidr"], f["prefix_list_id"] or "", f["ports"], f["direction"]) for f in egress) == [
        ("0.0.0.0/0", "", "all", "egress"), ("0.0.0.0/0", world, "all", "egress")]
    assert all(f["instances"] == instances["db"] for f in egress)

    # the listed ids are cut at exposed_limit, the counts are not
    limited = audit(playbook, tmp_path, sga_limit=1)
    ssh = [f for f in limited["findings"] if f["group_id"] == ids["web"] and f["rule"] == "open_admin_port"][0]
    assert ssh["instances"] == instances["web"][:1] and ssh["instance_count"] == 2


def test_a_prefix_list_that_cannot_be_read_is_not_taken_as_safe(lab, aws, playbook, tmp_path):
    # a rule naming a list this principal cannot see (shared from another account, then unshared;
    # or deleted): its sources are unknown, so the audit says so instead of passing the rule
    ec2 = aws.client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]["VpcId"]
    deleted = ec2.create_managed_prefix_list(PrefixListName="gone", MaxEntries=2, AddressFamily="IPv4",
                                             Entries=[{"Cidr": "0.0.0.0/0"}])["PrefixList"]["PrefixListId"]
    unseen = "pl-0123456789abcdef0"
    group = ec2.create_security_group(GroupName="uses-gone", Description="x", VpcId=vpc)["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [{"PrefixListId": deleted}]},
        {"IpProtocol": "tcp", "FromPort": 80, "ToPort": 80, "PrefixListIds": [{"PrefixListId": unseen}]}])
    ec2.delete_managed_prefix_list(PrefixListId=deleted)
    assert ec2.describe_managed_prefix_lists(PrefixListIds=[unseen])["PrefixLists"] == []
    findings = [f for f in audit(playbook, tmp_path)["findings"] if f["group_id"] == group and f["direction"] == "ingress"]
    assert sorted((f["rule"], f["severity"], f["prefix_list_id"], f["ports"]) for f in findings) == sorted([
        ("cannot_evaluate", "medium", deleted, "tcp/22"), ("cannot_evaluate", "medium", unseen, "tcp/80")])
