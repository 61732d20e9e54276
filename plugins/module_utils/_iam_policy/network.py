# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Whether an instance's subnet reaches S3 through a gateway endpoint of its VPC.

Private to the collection: not a public API, may change without notice.

The instance role's policy denies its key unless the request carries ``aws:SourceVpc``, which S3
sets only for requests that arrive through a VPC endpoint. Without a gateway endpoint routed from
the instance's subnet the instance cannot read its key, so a launch checks this first.
"""

from __future__ import annotations


def s3_service_name(region):
    """The VPC endpoint service name of S3 in a region (China regions carry a cn. prefix)."""
    prefix = "cn.com.amazonaws" if (region or "").startswith("cn-") else "com.amazonaws"
    return "%s.%s.s3" % (prefix, region)


def subnet_route_table(route_tables, subnet_id):
    """The route table a subnet uses: its explicit association, else the VPC's main table."""
    main = None
    for table in route_tables:
        for assoc in table.get("Associations") or []:
            if subnet_id and assoc.get("SubnetId") == subnet_id:
                return table["RouteTableId"]
            if assoc.get("Main"):
                main = table["RouteTableId"]
    return main


def _how_to_add(region, vpc_id, route_table):
    tables = route_table or "<route table of the instance's subnet>"
    return (
        "add one: amazon.aws.ec2_vpc_endpoint with vpc_id=%s, service=%s, vpc_endpoint_type=Gateway, "
        "route_table_ids=[%s] (or: aws ec2 create-vpc-endpoint --vpc-id %s --service-name %s "
        "--route-table-ids %s)" % (vpc_id, s3_service_name(region), tables, vpc_id, s3_service_name(region), tables)
    )


def s3_gateway_endpoint_decision(region, vpc_id, endpoints, route_tables, subnet_id=None):
    """(endpoint_id, None) when the subnet (or, without one, the VPC) has an available S3 gateway
    endpoint routed to it; (None, message saying how to add one) otherwise.

    ``endpoints``: describe_vpc_endpoints items of the VPC; ``route_tables``: describe_route_tables
    items of the VPC.
    """
    service = s3_service_name(region)
    gateways = [
        e for e in endpoints
        if e.get("VpcId") == vpc_id and e.get("ServiceName") == service
        and (e.get("VpcEndpointType") or "Gateway") == "Gateway"
        and (e.get("State") or "").lower() == "available"
    ]
    table = subnet_route_table(route_tables, subnet_id) if subnet_id else None
    if not gateways:
        return None, (
            "VPC %s has no available S3 gateway endpoint (%s): without one S3 requests carry no "
            "aws:SourceVpc and the instance role's policy denies the volume key; %s"
            % (vpc_id, service, _how_to_add(region, vpc_id, table))
        )
    if subnet_id is None:
        return sorted(e["VpcEndpointId"] for e in gateways)[0], None
    if table is None:
        return None, "subnet %s of VPC %s has no route table (and the VPC no main one)" % (subnet_id, vpc_id)
    routed = sorted(e["VpcEndpointId"] for e in gateways if table in (e.get("RouteTableIds") or []))
    if not routed:
        return None, (
            "the S3 gateway endpoint(s) %s of VPC %s are not associated with route table %s of subnet %s, "
            "so the instance's S3 requests bypass them and its key is denied; associate the route table "
            "(amazon.aws.ec2_vpc_endpoint route_table_ids, or aws ec2 modify-vpc-endpoint --vpc-endpoint-id %s "
            "--add-route-table-ids %s)"
            % (", ".join(sorted(e["VpcEndpointId"] for e in gateways)), vpc_id, table, subnet_id,
               sorted(e["VpcEndpointId"] for e in gateways)[0], table)
        )
    return routed[0], None
