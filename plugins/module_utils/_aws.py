# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""AWS helpers shared by cloudefigo.core modules, built on amazon.aws.

Private to the collection: not a public API, may change without notice.
"""

from __future__ import annotations

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
