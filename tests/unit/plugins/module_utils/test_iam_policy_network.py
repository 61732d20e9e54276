"""_iam_policy.network: does a subnet reach S3 through a gateway endpoint."""
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy import network

VPC = "vpc-1"
TABLES = [
    {"RouteTableId": "rtb-main", "Associations": [{"Main": True}]},
    {"RouteTableId": "rtb-private", "Associations": [{"SubnetId": "subnet-private", "Main": False}]},
]


def _endpoint(tables, service="com.amazonaws.us-east-1.s3", kind="Gateway", state="available", vpc=VPC):
    return {"VpcEndpointId": "vpce-1", "VpcId": vpc, "ServiceName": service, "VpcEndpointType": kind,
            "State": state, "RouteTableIds": tables}


def test_service_name_per_partition():
    assert network.s3_service_name("us-east-1") == "com.amazonaws.us-east-1.s3"
    assert network.s3_service_name("cn-north-1") == "cn.com.amazonaws.cn-north-1.s3"


def test_subnet_uses_explicit_table_else_main():
    assert network.subnet_route_table(TABLES, "subnet-private") == "rtb-private"
    assert network.subnet_route_table(TABLES, "subnet-other") == "rtb-main"


def test_routed_gateway_endpoint_passes():
    assert network.s3_gateway_endpoint_decision("us-east-1", VPC, [_endpoint(["rtb-private"])], TABLES, "subnet-private") == ("vpce-1", None)
    assert network.s3_gateway_endpoint_decision("us-east-1", VPC, [_endpoint(["rtb-main"])], TABLES) == ("vpce-1", None)


def test_no_endpoint_says_how_to_add_one():
    endpoint, problem = network.s3_gateway_endpoint_decision("us-east-1", VPC, [], TABLES, "subnet-private")
    assert endpoint is None
    assert "no available S3 gateway endpoint" in problem
    assert "amazon.aws.ec2_vpc_endpoint" in problem and "rtb-private" in problem and "com.amazonaws.us-east-1.s3" in problem


def test_endpoints_that_do_not_count():
    for endpoint in (_endpoint(["rtb-private"], kind="Interface"), _endpoint(["rtb-private"], state="pending"),
                     _endpoint(["rtb-private"], service="com.amazonaws.us-east-1.dynamodb"),
                     _endpoint(["rtb-private"], service="com.amazonaws.eu-west-1.s3"),
                     _endpoint(["rtb-private"], vpc="vpc-2")):
        assert network.s3_gateway_endpoint_decision("us-east-1", VPC, [endpoint], TABLES, "subnet-private")[0] is None


def test_endpoint_not_routed_from_the_subnet():
    endpoint, problem = network.s3_gateway_endpoint_decision("us-east-1", VPC, [_endpoint(["rtb-main"])], TABLES, "subnet-private")
    assert endpoint is None
    assert "not associated with route table rtb-private" in problem
