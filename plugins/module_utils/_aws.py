# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""AWS helpers shared by cloudefigo.core modules, built on amazon.aws.

Private to the collection: not a public API, may change without notice.
"""

from __future__ import annotations

import re

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code  # noqa: F401 pylint: disable=unused-import
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry


def retrying_client(module, service, region=None):
    """A boto3 client whose calls retry throttling and eventual-consistency errors (aws_retry=True)."""
    kwargs = {"retry_decorator": AWSRetry.jittered_backoff(retries=10)}
    if region is not None:
        kwargs["region"] = region
    return module.client(service, **kwargs)


def enabled_regions(module, regions=None):
    """The regions to look at: the given list, or every region enabled for the account.

    ``describe_regions`` with ``AllRegions=False`` answers only opted-in and default regions,
    which is what an audit must cover (an attacker's instance in a forgotten region included).
    """
    if regions:
        return list(regions)
    ec2 = retrying_client(module, "ec2")
    try:
        found = ec2.describe_regions(AllRegions=False, aws_retry=True)["Regions"]
    except Exception as exc:  # pylint: disable=broad-except
        module.fail_json_aws(exc, msg="Could not list the enabled regions; pass `regions` explicitly")
    return sorted(region["RegionName"] for region in found)


def boto3_tags(tags):
    """{'k': 'v'} -> [{'Key': 'k', 'Value': 'v'}] (AWS APIs' tag list shape)."""
    return [{"Key": key, "Value": str(value)} for key, value in sorted((tags or {}).items())]


def tag_dict(tag_list):
    """[{'Key': 'k', 'Value': 'v'}] -> {'k': 'v'}."""
    return {tag["Key"]: tag.get("Value", "") for tag in (tag_list or [])}


# S3 bucket naming rules (general purpose buckets):
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_BUCKET_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_BUCKET_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def s3_bucket_name_problem(name):
    """Why ``name`` is not a valid S3 bucket name, or None when it is."""
    if not name:
        return "it is empty"
    if not 3 <= len(name) <= 63:
        return "it must be 3 to 63 characters long"
    if re.search(r"[^a-z0-9.-]", name):
        return "only lowercase letters, digits, dots and hyphens are allowed"
    if not (name[0].isalnum() and name[-1].isalnum()):
        return "it must begin and end with a letter or digit"
    if ".." in name or ".-" in name or "-." in name:
        return "dots may not be adjacent to each other or to a hyphen"
    if re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", name):
        return "it must not look like an IP address"
    if name.startswith(_BUCKET_RESERVED_PREFIXES) or name.endswith(_BUCKET_RESERVED_SUFFIXES):
        return "it uses a prefix or suffix that AWS reserves"
    return None


def s3_key_problem(key):
    """Why ``key`` is not a usable S3 object key, or None when it is."""
    if not key:
        return "it is empty"
    if len(key.encode("utf-8")) > 1024:
        return "it is longer than 1024 bytes"
    return None


def partition_for_region(region):
    """The ARN partition a region belongs to ('aws', 'aws-cn', 'aws-us-gov')."""
    region = region or ""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def regional_clients(module, service, regions):
    """{region: retrying client} built from ONE boto3 session.

    ``module.client()`` opens a new boto3 session per call, and each loads botocore's data
    afresh (~1 s): auditing 38 regions that way costs ~40 s before the first API call.
    """
    # imported here: AnsibleAWSModule has already checked that boto3 is there
    import boto3  # pylint: disable=import-outside-toplevel
    import botocore.config  # pylint: disable=import-outside-toplevel
    from ansible_collections.amazon.aws.plugins.module_utils.botocore import get_aws_connection_info  # pylint: disable=import-outside-toplevel
    from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper  # pylint: disable=import-outside-toplevel

    dummy, endpoint_url, params = get_aws_connection_info(module)
    session = boto3.session.Session(profile_name=params.pop("profile_name", None))
    config = params.pop("aws_config", None) or botocore.config.Config()
    config = config.merge(botocore.config.Config(max_pool_connections=20))
    retry = AWSRetry.jittered_backoff(retries=10)
    return dict((region, RetryingBotoClientWrapper(
        session.client(service, region_name=region, endpoint_url=endpoint_url, config=config, **params), retry))
        for region in regions)
