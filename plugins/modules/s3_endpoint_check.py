#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
---
module: s3_endpoint_check
short_description: Fail unless an instance's subnet reaches S3 through a gateway endpoint
version_added: 0.2.0
description:
  - Checks, before an instance is launched, that its VPC has an C(available) S3 gateway endpoint
    and, with O(subnet_id), that the endpoint is associated with the route table that subnet uses
    (its explicit association, else the VPC's main route table).
  - The policies of M(cloudefigo.core.instance_role) deny the volume key to requests that carry no
    C(aws:SourceVpc), and S3 sets that key only for requests that come through a VPC endpoint. An
    instance without a routed gateway endpoint could not read its key; this module fails first and
    says how to add the endpoint.
  - Read-only.
author:
  - Cloudefigo contributors (@cloudefigo)
options:
  vpc_id:
    description:
      - The VPC the instance will run in. Looked up from O(subnet_id) when omitted.
      - At least one of O(vpc_id) and O(subnet_id) is required.
    type: str
  subnet_id:
    description:
      - The subnet the instance will run in. When given, the endpoint must be routed from it.
    type: str
attributes:
  check_mode:
    description: Read-only; runs in check mode too.
    support: full
  diff_mode:
    description: Nothing changes, so there is nothing to diff.
    support: none
notes:
  - Requires C(ec2:DescribeVpcEndpoints), C(ec2:DescribeRouteTables) and, with only O(subnet_id),
    C(ec2:DescribeSubnets).
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Fail before launch when the subnet does not reach S3 through a gateway endpoint
  cloudefigo.core.s3_endpoint_check:
    subnet_id: subnet-0123456789abcdef0
    region: eu-west-1
  register: s3_endpoint
"""

RETURN = r"""
vpc_id:
  description: The VPC that was checked.
  returned: success
  type: str
  sample: vpc-0123456789abcdef0
subnet_id:
  description: The subnet that was checked, or null when only the VPC was.
  returned: success
  type: str
  sample: subnet-0123456789abcdef0
route_table_id:
  description: The route table the subnet uses, or null when only the VPC was checked.
  returned: success
  type: str
  sample: rtb-0123456789abcdef0
vpc_endpoint_id:
  description: The S3 gateway endpoint the instance's S3 requests go through.
  returned: success
  type: str
  sample: vpce-0123456789abcdef0
"""

try:
    import botocore  # noqa: F401 pylint: disable=unused-import
except ImportError:
    pass  # AnsibleAWSModule reports the missing library

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.cloudefigo.core.plugins.module_utils._aws import retrying_client
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.network import s3_gateway_endpoint_decision
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.network import subnet_route_table


def _paginate(module, ec2, method, key, **kwargs):
    try:
        return ec2.get_paginator(method).paginate(**kwargs).build_full_result()[key]
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as e:
        module.fail_json_aws(e, msg="Could not %s" % method.replace("_", " "))


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(vpc_id=dict(type="str"), subnet_id=dict(type="str")),
        required_one_of=[["vpc_id", "subnet_id"]],
        supports_check_mode=True,
    )
    if not module.region:
        module.fail_json(msg="region is required: the S3 endpoint service name depends on it")
    ec2 = retrying_client(module, "ec2")
    vpc_id, subnet_id = module.params["vpc_id"], module.params["subnet_id"]
    if subnet_id:
        subnets = _paginate(module, ec2, "describe_subnets", "Subnets", Filters=[{"Name": "subnet-id", "Values": [subnet_id]}])
        if not subnets:
            module.fail_json(msg="subnet_id: subnet %s not found in %s" % (subnet_id, module.region))
        if vpc_id and subnets[0]["VpcId"] != vpc_id:
            module.fail_json(msg="subnet_id: subnet %s is in VPC %s, not vpc_id %s" % (subnet_id, subnets[0]["VpcId"], vpc_id))
        vpc_id = subnets[0]["VpcId"]
    vpc_filter = [{"Name": "vpc-id", "Values": [vpc_id]}]
    endpoints = _paginate(module, ec2, "describe_vpc_endpoints", "VpcEndpoints", Filters=vpc_filter)
    tables = _paginate(module, ec2, "describe_route_tables", "RouteTables", Filters=vpc_filter)
    endpoint_id, problem = s3_gateway_endpoint_decision(module.region, vpc_id, endpoints, tables, subnet_id)
    if problem:
        module.fail_json(msg=problem, vpc_id=vpc_id, subnet_id=subnet_id)
    module.exit_json(
        changed=False, vpc_id=vpc_id, subnet_id=subnet_id, vpc_endpoint_id=endpoint_id,
        route_table_id=subnet_route_table(tables, subnet_id) if subnet_id else None,
    )


if __name__ == "__main__":
    main()
