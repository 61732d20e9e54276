# -*- coding: utf-8 -*-
# Copyright: Contributors to cloudefigo.core
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Where the report and its parts are kept: a local directory and/or an S3 bucket.

Private to the collection: not a public API, may change without notice.

Both stores answer read / write / list_parts with paths relative to their root (``state/...``,
``audit-report.html``). ``write`` returns whether the content changed and writes nothing in check
mode. Every S3 call names the bucket owner (``ExpectedBucketOwner``: a bucket of that name in
another account is refused, not read or written) and every object is written encrypted.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

MAX_OBJECT_BYTES = 32 * 1024 * 1024


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class StoreError(Exception):
    pass


class LocalStore(object):
    def __init__(self, root, check_mode=False):
        self.root = root
        self.check_mode = check_mode

    def describe(self, rel):
        return os.path.join(self.root, rel)

    def read(self, rel):
        path = os.path.join(self.root, rel)
        try:
            with open(path, "rb") as handle:
                return handle.read(MAX_OBJECT_BYTES + 1)
        except (IOError, OSError):
            return None

    def write(self, rel, data, content_type=None):  # pylint: disable=unused-argument
        path = os.path.join(self.root, rel)
        if self.read(rel) == data:
            return False
        if self.check_mode:
            return True
        directory = os.path.dirname(path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o750)
        handle, temp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
        try:
            with os.fdopen(handle, "wb") as out:
                out.write(data)
            os.chmod(temp, 0o640)
            os.replace(temp, path)
        except Exception:
            if os.path.exists(temp):
                os.unlink(temp)
            raise
        return True

    def list_parts(self):
        base = os.path.join(self.root, "state")
        found = []
        for directory, _dirs, files in os.walk(base):
            for name in files:
                if name.endswith(".json") and not name.startswith("."):
                    found.append(os.path.relpath(os.path.join(directory, name), self.root).replace(os.sep, "/"))
        return sorted(found)


class S3Store(object):
    """``client`` is a boto3 S3 client whose calls accept ``aws_retry`` (amazon.aws's wrapper)."""

    def __init__(self, client, bucket, prefix, expected_owner, kms_key_id=None, check_mode=False, retry=True):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.owner = expected_owner
        self.kms_key_id = kms_key_id
        self.check_mode = check_mode
        self._retry = {"aws_retry": True} if retry else {}

    def describe(self, rel):
        return "s3://%s/%s%s" % (self.bucket, self.prefix, rel)

    def _error_code(self, exc):
        return getattr(exc, "response", {}).get("Error", {}).get("Code")

    def read(self, rel):
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.prefix + rel, ExpectedBucketOwner=self.owner,
                                              **self._retry)
        except Exception as exc:  # pylint: disable=broad-except
            if self._error_code(exc) in ("NoSuchKey", "404"):
                return None
            raise
        if response.get("ContentLength", 0) > MAX_OBJECT_BYTES:
            raise StoreError("%s is larger than %d bytes: not a report part" % (self.describe(rel), MAX_OBJECT_BYTES))
        return response["Body"].read()

    def _stored_digest(self, rel):
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.prefix + rel, ExpectedBucketOwner=self.owner,
                                           **self._retry)
        except Exception as exc:  # pylint: disable=broad-except
            if self._error_code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        return (head.get("Metadata") or {}).get("sha256")

    def encryption(self):
        if self.kms_key_id:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id}
        return {"ServerSideEncryption": "AES256"}

    def write(self, rel, data, content_type="application/json"):
        digest = sha256(data)
        if self._stored_digest(rel) == digest:
            return False
        if self.check_mode:
            return True
        kwargs = dict(Bucket=self.bucket, Key=self.prefix + rel, Body=data, ContentType=content_type,
                      ExpectedBucketOwner=self.owner, Metadata={"sha256": digest}, **self.encryption())
        self.client.put_object(**dict(kwargs, **self._retry))
        return True

    def list_parts(self):
        found = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + "state/", ExpectedBucketOwner=self.owner):
            for item in page.get("Contents", []):
                key = item["Key"][len(self.prefix):]
                if key.endswith(".json"):
                    found.append(key)
        return sorted(found)
