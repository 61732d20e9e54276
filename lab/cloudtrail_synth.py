"""CloudTrail records synthesized from the lab proxy's request log (moto has no CloudTrail).

    python lab/cloudtrail_synth.py --log "$LAB_AWS_PROXY_LOG" --bucket TRAIL_BUCKET \\
        --endpoint "$LAB_AWS_ENDPOINT" [--account 123456789012] [--region us-east-1]

Every AWS call the lab's playbooks made through ``lab/services/aws_proxy.py`` (one JSON line per
request: method, path, query, headers, service, action, status -- never a body) becomes one
CloudTrail record: eventName from the Query/JSON API's action or, for S3's REST API, from the
method, path and sub-resource; eventSource, awsRegion (the SigV4 scope), userIdentity (the access
key), sourceIPAddress, requestID, eventTime, errorCode for answers >= 400.  They are written as
one gzipped CloudTrail file in the AWSLogs layout of the trail bucket, so
``cloudefigo.core.cloudtrail_ingest`` loads them like any trail.

They are labelled synthetic, so no one mistakes them for AWS's: ``additionalEventData``
``{"cloudefigo:synthetic": true}``, a ``userAgent`` starting ``cloudefigo-synthetic``, and the lab's
own ``recipientAccountId`` (moto's account, not the sample trail's).  Event ids are derived from
the proxy's sequence number and time, so converting the same log twice loads nothing new.
"""
import argparse
import datetime
import gzip
import json
import re
import sys
import uuid

SYNTHETIC_AGENT = "cloudefigo-synthetic/1.0"
LAB_ACCOUNT = "123456789012"
NAMESPACE = uuid.UUID("6f1d3c1e-8a43-4f5b-9d1e-0c1ef160a11b")
SCOPE = re.compile(r"Credential=([^/]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")
READ_ONLY = re.compile(r"^(Get|List|Describe|Head|Lookup)")
# S3 sub-resources (query keys) and the name CloudTrail gives the operation on them
S3_SUBRESOURCES = {
    "policy": "BucketPolicy", "versioning": "BucketVersioning", "encryption": "BucketEncryption",
    "tagging": "BucketTagging", "acl": "BucketAcl", "ownershipControls": "BucketOwnershipControls",
    "publicAccessBlock": "PublicAccessBlock", "lifecycle": "BucketLifecycle", "cors": "BucketCors",
    "logging": "BucketLogging", "object-lock": "ObjectLockConfiguration", "website": "BucketWebsite",
    "notification": "BucketNotificationConfiguration", "replication": "BucketReplication",
    "policyStatus": "BucketPolicyStatus", "requestPayment": "BucketRequestPayment",
    "accelerate": "BucketAccelerateConfiguration",
}
S3_VERBS = {"GET": "Get", "PUT": "Put", "DELETE": "Delete", "HEAD": "Head", "POST": "Post"}
ERRORS = {400: "InvalidRequest", 401: "AuthFailure", 403: "AccessDenied", 404: "NotFound",
          409: "Conflict", 500: "InternalError", 501: "NotImplemented", 503: "ServiceUnavailable"}


def s3_operation(method, path, params, headers=None):
    """CloudTrail's eventName of an S3 REST request (path-style addressing, as boto3 uses on the lab)."""
    headers = headers or {}
    parts = path.lstrip("/").split("/", 1)
    bucket = parts[0]
    key = parts[1] if len(parts) > 1 and parts[1] else ""
    verb = S3_VERBS.get(method, method.title())
    if not bucket:
        return "ListBuckets"
    if key:
        if "uploadId" in params:
            if method == "POST":
                return "CompleteMultipartUpload"
            if method == "DELETE":
                return "AbortMultipartUpload"
            return "UploadPart" if method == "PUT" else "ListParts"
        if method == "POST" and "uploads" in params:
            return "CreateMultipartUpload"
        if method == "PUT" and headers.get("x-amz-copy-source"):
            return "CopyObject"
        for sub, name in (("tagging", "ObjectTagging"), ("acl", "ObjectAcl"), ("retention", "ObjectRetention"),
                          ("legal-hold", "ObjectLegalHold"), ("attributes", "ObjectAttributes")):
            if sub in params:
                return verb + name
        return verb + "Object"
    if method == "POST" and "delete" in params:
        return "DeleteObjects"
    if method == "GET":
        if "location" in params:
            return "GetBucketLocation"
        if "versions" in params:
            return "ListObjectVersions"
        if "uploads" in params:
            return "ListMultipartUploads"
    for sub, name in S3_SUBRESOURCES.items():
        if sub in params:
            return verb + name
    return {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}.get(
        method, "ListObjectsV2" if params.get("list-type") == ["2"] else "ListObjects")


def _identity(access_key, account):
    if access_key.startswith("ASIA"):
        arn = "arn:aws:sts::%s:assumed-role/lab-session/%s" % (account, access_key)
        return {"type": "AssumedRole", "principalId": access_key, "arn": arn, "accountId": account,
                "accessKeyId": access_key}
    name = "lab-controller" if access_key in ("testing", "") else "lab-" + access_key
    return {"type": "IAMUser", "principalId": access_key or "anonymous", "userName": name,
            "arn": "arn:aws:iam::%s:user/%s" % (account, name), "accountId": account, "accessKeyId": access_key}


def to_event(record, account=LAB_ACCOUNT, default_region="us-east-1"):
    """One CloudTrail record for one proxy record; None for what is not an AWS API call (IMDS, unsigned)."""
    headers = record.get("headers") or {}
    match = SCOPE.search(headers.get("authorization", ""))
    service = record.get("service")
    if not match or not service or service == "imds":
        return None
    access_key, region, service = match.group(1), match.group(2), match.group(3)
    params = record.get("params") or {}
    if service == "s3":
        name = s3_operation(record.get("method", "GET"), record.get("path", "/"), params, headers)
    else:
        name = record.get("action") or "Unknown"
    when = datetime.datetime.fromtimestamp(float(record["time"]), tz=datetime.timezone.utc)
    seed = "%s/%s/%s" % (record.get("seq"), record["time"], name)
    event = {
        "eventVersion": "1.08",
        "userIdentity": _identity(access_key, account),
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "%s.amazonaws.com" % service,
        "eventName": name,
        "awsRegion": region if region != "aws-global" else default_region,
        "sourceIPAddress": (headers.get("x-forwarded-for") or "127.0.0.1").split(",")[0].strip(),
        "userAgent": ("%s (%s)" % (SYNTHETIC_AGENT, headers.get("user-agent", "")))[:256],
        "requestParameters": None,
        "responseElements": None,
        "additionalEventData": {"cloudefigo:synthetic": True, "labProxySeq": record.get("seq"),
                                "httpStatus": record.get("status")},
        "requestID": str(uuid.uuid5(NAMESPACE, "request/" + seed)).upper().replace("-", "")[:16],
        "eventID": str(uuid.uuid5(NAMESPACE, "event/" + seed)),
        "readOnly": bool(READ_ONLY.match(name)),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    if service == "s3":
        parts = record.get("path", "/").lstrip("/").split("/", 1)
        event["requestParameters"] = {"bucketName": parts[0]} if parts[0] else {}
        if len(parts) > 1 and parts[1]:
            event["requestParameters"]["key"] = parts[1]
            event["managementEvent"] = False
            event["eventCategory"] = "Data"
    status = int(record.get("status") or 0)
    if status >= 400:
        event["errorCode"] = ERRORS.get(status, "HTTP%d" % status)
        event["errorMessage"] = "synthetic: the lab answered HTTP %d" % status
    return event


def convert(records, account=LAB_ACCOUNT, default_region="us-east-1"):
    """CloudTrail records for the proxy records that are AWS API calls, oldest first."""
    events = [to_event(r, account, default_region) for r in records]
    return sorted((e for e in events if e), key=lambda e: e["eventTime"])


def read_log(path):
    records = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line:
                records.append(json.loads(line))
    return records


def log_file(events, account=LAB_ACCOUNT, region="us-east-1"):
    """(key, gzipped body) of one CloudTrail log file holding the events, in the AWSLogs layout."""
    last = max(e["eventTime"] for e in events)
    stamp = datetime.datetime.strptime(last, "%Y-%m-%dT%H:%M:%SZ")
    digest = uuid.uuid5(NAMESPACE, "".join(e["eventID"] for e in events)).hex[:16]
    key = "AWSLogs/%s/CloudTrail/%s/%s/%s_CloudTrail_%s_%s_synthetic%s.json.gz" % (
        account, region, stamp.strftime("%Y/%m/%d"), account, region, stamp.strftime("%Y%m%dT%H%MZ"), digest)
    return key, gzip.compress(json.dumps({"Records": events}).encode("utf-8"), mtime=0)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--log", required=True, help="the lab proxy's request log (LAB_AWS_PROXY_LOG)")
    parser.add_argument("--bucket", required=True, help="trail bucket to write the log file into")
    parser.add_argument("--endpoint", required=True, help="S3 endpoint (moto's own URL: LAB_AWS_ENDPOINT)")
    parser.add_argument("--account", default=LAB_ACCOUNT)
    parser.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    events = convert(read_log(args.log), args.account, args.region)
    if not events:
        print("cloudtrail_synth: no AWS API call in %s" % args.log)
        return 0
    import boto3  # pylint: disable=import-outside-toplevel
    key, body = log_file(events, args.account, args.region)
    s3 = boto3.client("s3", endpoint_url=args.endpoint, region_name=args.region)
    s3.put_object(Bucket=args.bucket, Key=key, Body=body)
    print("cloudtrail_synth: %d synthetic events -> s3://%s/%s" % (len(events), args.bucket, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
