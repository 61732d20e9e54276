# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Which extra statements an instance role refuses, and why.

Private to the collection: not a public API, may change without notice.

Actions are resolved against the IAM action catalogue (access levels from the AWS Service
Authorization Reference, never name prefixes such as ``Get*``): a pattern is expanded to the
actions it names, and a pattern that names no catalogued action is refused. An Allow statement is
refused (unless allow_privileged_statements) when it

- is not plain: NotAction / NotResource, an action that is not a ``service:Action`` pattern, an
  empty Action or Resource list, or an action the catalogue does not know;
- assumes or passes roles, manages permissions anywhere, or writes IAM;
- reveals credentials or secrets on broad resources;
- controls other compute (run command, sessions, SSH keys, function code, instance or security
  group changes, termination, volumes) on anything but the instance itself;
- writes, tags or manages on every resource, or tags instances or volumes (its own included: owner
  marks and stage tags live there);
- lists, administers, writes or deletes in key_bucket, or reads objects of it other than the
  instance's own key;
- names a policy variable or an S3 access point where it could cover key_bucket.

Deny statements are always accepted (they can only take away).
"""

from __future__ import annotations

import re

from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import LIST
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import PERMISSIONS
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import PLAIN_ACTION_RE
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import READ
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import TAGGING
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import WRITE
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import catalogue
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.catalogue import source
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import RESERVED_SIDS
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import ValidationError
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import as_list
from ansible_collections.cloudefigo.core.plugins.module_utils._iam_policy.common import iam_pattern_match

ROLE_ACTIONS = frozenset(a.lower() for a in (
    "sts:AssumeRole", "sts:AssumeRoleWithSAML", "sts:AssumeRoleWithWebIdentity", "sts:AssumeRoot",
    "iam:PassRole",
))
# actions whose answer is a credential, a secret or plaintext key material
SECRET_ACTIONS = frozenset(a.lower() for a in (
    "secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue",
    "ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath", "ssm:GetParameterHistory",
    "kms:Decrypt", "kms:GenerateDataKey", "kms:GenerateDataKeyPair", "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncryptFrom", "kms:ReEncryptTo", "kms:ExportPrivateKey",
    "sts:GetSessionToken", "sts:GetFederationToken", "sts:GetServiceBearerToken",
    "iam:CreateAccessKey", "iam:CreateServiceSpecificCredential", "iam:ResetServiceSpecificCredential",
    "iam:CreateLoginProfile", "iam:UpdateLoginProfile",
    "ec2:GetPasswordData", "sso:GetRoleCredentials", "redshift:GetClusterCredentials",
    "redshift:GetClusterCredentialsWithIAM", "redshift-serverless:GetCredentials", "rds-db:connect",
    "cognito-identity:GetCredentialsForIdentity", "glue:GetConnection", "glue:GetConnections",
    "lambda:GetFunction", "lambda:GetFunctionConfiguration", "codecommit:GitPull",
    "acm:ExportCertificate", "acm-pca:GetCertificateAuthorityCertificate",
))
# actions that run code on, log in to, reconfigure, stop or read the disks of other compute
COMPUTE_ACTIONS = frozenset(a.lower() for a in (
    "ssm:SendCommand", "ssm:StartSession", "ssm:ResumeSession", "ssm:StartAutomationExecution",
    "ssm:StartAssociationsOnce", "ssm:CreateAssociation", "ssm:UpdateAssociation",
    "ssm-guiconnect:StartConnection", "ec2-instance-connect:SendSSHPublicKey",
    "ec2-instance-connect:SendSerialConsoleSSHPublicKey", "ec2-instance-connect:OpenTunnel",
    "ec2:RunInstances", "ec2:StartInstances", "ec2:StopInstances", "ec2:RebootInstances",
    "ec2:TerminateInstances", "ec2:ModifyInstanceAttribute", "ec2:ModifyInstanceMetadataOptions",
    "ec2:AssociateIamInstanceProfile", "ec2:ReplaceIamInstanceProfileAssociation",
    "ec2:DisassociateIamInstanceProfile", "ec2:CreateKeyPair", "ec2:ImportKeyPair", "ec2:DeleteKeyPair",
    "ec2:AttachVolume", "ec2:DetachVolume", "ec2:CreateSnapshot", "ec2:CreateSnapshots",
    "ec2:ModifyNetworkInterfaceAttribute", "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup",
    "ec2:AuthorizeSecurityGroupIngress", "ec2:AuthorizeSecurityGroupEgress",
    "ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress", "ec2:ModifySecurityGroupRules",
    "ec2:UpdateSecurityGroupRuleDescriptionsIngress", "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
    "ec2:ApplySecurityGroupsToClientVpnTargetNetwork",
    "lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
    "lambda:InvokeFunction", "lambda:AddPermission", "lambda:PublishLayerVersion",
    "ecs:ExecuteCommand", "ecs:RunTask", "ecs:StartTask", "ecs:UpdateService", "ecs:RegisterTaskDefinition",
    "eks:AccessKubernetesApi", "autoscaling:UpdateAutoScalingGroup", "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup", "ec2:CreateLaunchTemplateVersion",
    "ec2:ModifyLaunchTemplate", "cloudformation:CreateStack", "cloudformation:UpdateStack",
    "cloudformation:DeleteStack",
))
_S3_SERVICES = ("s3", "s3-object-lambda", "s3express")
_VARIABLE_RE = re.compile(r"\$\{[^}]*\}")


def _arn_parts(resource):
    parts = resource.split(":", 5)
    return parts if len(parts) == 6 else None


def resource_is_broad(resource):
    """`*`; an ARN with a wildcard service or account; or one whose resource part is only a
    resource type followed by wildcards (``parameter/*``, ``secret:*``, ``arn:aws:s3:::*/*``)."""
    resource = resource.strip()
    if resource == "*":
        return True
    parts = _arn_parts(resource)
    if parts is None:
        return "*" in resource or "?" in resource
    if "*" in parts[2] or "?" in parts[2] or parts[4] in ("*", "?") or parts[4].startswith("*"):
        return True
    if parts[2] in _S3_SERVICES and not parts[4]:
        # arn:aws:s3:::BUCKET/KEY: the first part is a bucket name, not a resource type
        return re.fullmatch(r"[*?/]+", parts[5]) is not None
    return re.fullmatch(r"[A-Za-z0-9-]*[:/]?[*?/:]*", parts[5]) is not None and ("*" in parts[5] or "?" in parts[5])


def _without_variables(resource):
    return _VARIABLE_RE.sub("*", resource)


def covers_key_bucket(resource, partition, key_bucket):
    """Whether a resource pattern (policy variables taken as anything) covers the key bucket or
    any of its objects."""
    pattern = _without_variables(resource)
    bucket_arn = "arn:%s:s3:::%s" % (partition, key_bucket)
    probe = bucket_arn + "/cloudefigo-probe/volume.key"
    return iam_pattern_match(pattern, bucket_arn, ignore_case=False) or iam_pattern_match(pattern, probe, ignore_case=False) \
        or _bucket_part_matches(pattern, key_bucket)


def _bucket_part_matches(pattern, key_bucket):
    parts = _arn_parts(pattern)
    if parts is None:
        return pattern.strip() == "*"
    if not iam_pattern_match(parts[2], "s3", ignore_case=False) or parts[3] not in ("", "*") or parts[4] not in ("", "*"):
        return False
    bucket = parts[5].split("/", 1)[0]
    return iam_pattern_match(bucket, key_bucket, ignore_case=False)


def covers_other_key(resource, partition, key_bucket, key_object):
    """Whether a resource pattern covers an object of the key bucket other than the instance's key."""
    if not covers_key_bucket(resource, partition, key_bucket):
        return False
    pattern = _without_variables(resource)
    own = "arn:%s:s3:::%s/%s" % (partition, key_bucket, key_object)
    return pattern != own


def _is_access_point(resource):
    """An S3 access point, Multi-Region Access Point or Object Lambda ARN (or a pattern covering
    one): it may front any bucket, the key bucket included."""
    parts = _arn_parts(_without_variables(resource))
    if parts is None:
        return False
    if iam_pattern_match(parts[2], "s3-object-lambda", ignore_case=False):
        return True
    if not iam_pattern_match(parts[2], "s3", ignore_case=False) or not (parts[3] or parts[4]):
        return False
    return iam_pattern_match(parts[5].split("/", 1)[0], "accesspoint", ignore_case=False)


def _names(expanded, limit=6):
    names = [name for name, _levels in expanded]
    if len(names) > limit:
        return "%s and %d more" % (", ".join(names[:limit]), len(names) - limit)
    return ", ".join(names)


def is_own_instance(resource, partition, region, instance_id):
    """Whether a resource is exactly this instance's ARN (any account: instance ids are unique)."""
    if not instance_id:
        return False
    return re.fullmatch(r"arn:%s:ec2:%s:\d{12}:instance/%s" % (re.escape(partition), re.escape(region or ""), re.escape(instance_id)),
                        resource) is not None


def statement_problems(statement, partition, key_bucket=None, key_object=None, instance_id=None, region=None, table=None):
    """Why an extra statement would give an instance more than it should have (list of strings)."""
    if statement.get("Effect") != "Allow":
        return []
    table = table or catalogue()
    problems = []
    if "NotAction" in statement or "NotResource" in statement:
        problems.append("Allow with NotAction or NotResource grants more than it names")
    actions = [str(a) for a in as_list(statement.get("Action"))]
    resources = [str(r) for r in as_list(statement.get("Resource"))]
    if "Action" in statement and not actions:
        problems.append("empty Action list")
    if "Resource" in statement and not resources:
        problems.append("empty Resource list: a statement must name what it applies to")

    expanded = []
    for action in actions:
        if not PLAIN_ACTION_RE.match(action):
            problems.append("action %r is not a plain service:Action pattern (a wildcard in the service "
                            "part, or a bare *, names actions of every service)" % action)
            continue
        named = table.expand(action)
        if not named:
            problems.append("action %r names no action of the IAM action catalogue (%s); check the spelling, "
                            "or regenerate the table with tools/gen_iam_actions.py" % (action, source()))
        expanded.extend(named)
    if not expanded:
        return problems

    def having(levels=None, names=None, service=None):
        return [(n, lv) for n, lv in expanded
                if (levels is None or lv & levels) and (names is None or n.lower() in names)
                and (service is None or n.split(":", 1)[0] == service)]

    broad = [r for r in resources if resource_is_broad(r)]
    own_instance_only = bool(resources) and all(is_own_instance(r, partition, region, instance_id) for r in resources)

    found = having(names=ROLE_ACTIONS)
    if found:
        problems.append("assumes or passes roles (%s): the instance could act as another principal" % _names(found))
    found = having(levels={PERMISSIONS})
    if found:
        problems.append("manages permissions (%s): the instance could grant itself anything" % _names(found))
    found = [x for x in having(levels={WRITE, TAGGING}, service="iam") if x[0].lower() not in ROLE_ACTIONS]
    if found:
        problems.append("writes IAM (%s)" % _names(found))
    found = having(names=SECRET_ACTIONS)
    if found and broad:
        problems.append("reveals credentials or secrets (%s) on broad resources (%s); name the secret, "
                        "parameter path or key" % (_names(found), ", ".join(broad)))
    found = having(names=COMPUTE_ACTIONS)
    if found and not own_instance_only:
        problems.append("controls other compute (%s): run commands, sessions, SSH keys, function code, instance "
                        "or security-group changes, termination or volumes beyond the instance itself" % _names(found))
    found = having(levels={TAGGING}, service="ec2")
    if found and any(":instance/" in r or ":volume/" in r for r in resources):
        problems.append("tags instances or volumes (%s): cloudefigo's owner marks and stage tags live there, and "
                        "an instance must not re-label itself" % _names(found))
    found = having(levels={WRITE, TAGGING})
    if found and broad and "*" in resources:
        problems.append("writes or tags on every resource (%s on *)" % _names(found))
    elif found and broad:
        problems.append("writes or tags on every resource of a kind (%s on %s)" % (_names(found), ", ".join(broad)))

    if key_bucket:
        s3_named = [(n, lv) for n, lv in expanded if n.split(":", 1)[0] in _S3_SERVICES]
        in_bucket = [r for r in resources if covers_key_bucket(r, partition, key_bucket)]
        if s3_named:
            variables = [r for r in resources if "${" in r and covers_key_bucket(r, partition, key_bucket)]
            if variables:
                problems.append("policy variable in %s could resolve to key_bucket %s (for example through a "
                                "tag anyone who can tag could set)" % (", ".join(variables), key_bucket))
            points = [r for r in resources if _is_access_point(r)]
            if points:
                problems.append("access point %s could front key_bucket %s; name buckets" % (", ".join(points), key_bucket))
        not_read = [(n, lv) for n, lv in s3_named if lv & {LIST, WRITE, PERMISSIONS, TAGGING}]
        if not_read and in_bucket:
            problems.append("lists, administers, writes or deletes in key_bucket %s (%s): listing shows every "
                            "instance's key, writing or deleting destroys volume keys" % (key_bucket, _names(not_read)))
        reads = [(n, lv) for n, lv in s3_named if READ in lv and "object" in n.lower()]
        if reads and key_object and any(covers_other_key(r, partition, key_bucket, key_object) for r in resources):
            problems.append("lets the instance read other objects of key_bucket %s (%s: other instances' keys)"
                            % (key_bucket, _names(reads)))
    return problems


def validate_extra_statements(statements, partition, key_bucket, allow_privileged, key_object=None, instance_id=None, region=None,
                              table=None):
    """Raises ValidationError for malformed or (unless allowed) privileged statements; returns warnings.

    The message names the statement index and every reason.
    """
    warnings = []
    for index, statement in enumerate(statements or []):
        where = "extra_statements[%d]" % index
        if not isinstance(statement, dict):
            raise ValidationError("%s: a statement is a dictionary" % where)
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise ValidationError("%s: Effect must be Allow or Deny" % where)
        if "Action" not in statement and "NotAction" not in statement:
            raise ValidationError("%s: needs Action or NotAction" % where)
        if "Resource" not in statement and "NotResource" not in statement:
            raise ValidationError("%s: needs Resource or NotResource" % where)
        if "Principal" in statement or "NotPrincipal" in statement:
            raise ValidationError("%s: Principal has no place in an identity policy; remove it" % where)
        if statement.get("Sid") in RESERVED_SIDS:
            raise ValidationError("%s: Sid %s is reserved for the statements the module generates" % (where, statement["Sid"]))
        problems = statement_problems(statement, partition, key_bucket, key_object, instance_id, region, table)
        if not problems:
            continue
        message = "%s %s" % (where, "; ".join(problems))
        if not allow_privileged:
            raise ValidationError(message + "; refused (set allow_privileged_statements=true to override)")
        warnings.append(message + "; accepted because allow_privileged_statements=true")
    return warnings
