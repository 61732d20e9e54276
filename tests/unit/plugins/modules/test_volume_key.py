"""Unit tests for cloudefigo.core.volume_key: validation, bucket policy merge, key generation (no AWS)."""

import pytest

from ansible_collections.cloudefigo.core.plugins.modules import volume_key as vk


@pytest.mark.parametrize("args, option, text", [
    ({"bucket": "Bad_Bucket", "object": "k"}, "bucket", "not a valid S3 bucket name"),
    ({"bucket": "xn--keys", "object": "k"}, "bucket", "reserves"),
    ({"bucket": "keys..x", "object": "k"}, "bucket", "adjacent"),
    ({"bucket": "keys", "object": ""}, "object", "it is empty"),
    ({"bucket": "keys", "object": "k", "key_bytes": 16}, "key_bytes", "at least 256 bits"),
    ({"bucket": "keys", "object": "k", "key_bytes": 100000}, "key_bytes", "between 32 and 8192"),
    ({"bucket": "keys", "object": "k", "state": "shredded"}, "state", "must be one of"),
    ({"bucket": "keys", "object": "k", "kms_key_id": " "}, "kms_key_id", "empty"),
])
def test_main_fails_naming_option(run_aws_main, args, option, text):
    result = run_aws_main(vk.main, **args)
    assert result["failed"] is True
    assert option in result["msg"] and text in result["msg"]
    assert "exception" not in result


def test_new_key_is_random_and_sized():
    first, second = vk.new_key(64), vk.new_key(64)
    assert len(first) == 64 and len(second) == 64
    assert first != second


def test_tls_statement():
    statement = vk.tls_statement("aws", "keys")
    assert statement["Effect"] == "Deny" and statement["Principal"] == "*" and statement["Action"] == "s3:*"
    assert statement["Resource"] == ["arn:aws:s3:::keys", "arn:aws:s3:::keys/*"]
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_merge_policy_keeps_other_statements_and_replaces_by_sid():
    other = {"Sid": "AllowBackup", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:role/b"}, "Action": "s3:GetObject",
             "Resource": "arn:aws:s3:::keys/*"}
    stale = dict(vk.tls_statement("aws", "keys"), Resource="arn:aws:s3:::keys")
    merged = vk.merge_policy({"Version": "2012-10-17", "Statement": [other, stale]}, vk.tls_statement("aws", "keys"))
    assert merged["Statement"] == [other, vk.tls_statement("aws", "keys")]


def test_merge_policy_single_statement_dict_and_empty():
    other = {"Sid": "X", "Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": "arn:aws:s3:::keys"}
    assert vk.merge_policy({"Statement": other}, vk.tls_statement("aws", "keys"))["Statement"][0] == other
    assert vk.merge_policy({}, vk.tls_statement("aws", "keys"))["Statement"] == [vk.tls_statement("aws", "keys")]


@pytest.mark.parametrize("rules, kms, needed", [
    ([], None, True),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}], None, False),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k1"}}], None, False),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}], "k1", True),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k1"}}], "k1", False),
    ([{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k2"}}], "k1", True),
])
def test_encryption_needs_change(rules, kms, needed):
    assert vk.encryption_needs_change(rules, kms) is needed


def test_encryption_rule():
    assert vk.encryption_rule(None) == {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    assert vk.encryption_rule("k1")["ApplyServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "k1"}
