"""Checks that the running LocalStack validates S3 presigned URLs.

    localstack/.venv/bin/python localstack/presign_check.py

A valid presigned PUT/GET must succeed; a changed key, a flipped signature byte, a
different content-type/content-length than signed, another secret key, or an
expired URL must each get 403. Exit code 0 only if all of that holds.
Uses a throwaway bucket and deletes it afterwards.
"""
import sys
import time
import urllib.error
import urllib.request
import uuid

import boto3
from botocore.config import Config

ENDPOINT = "http://127.0.0.1:4566"


def client(secret="test"):
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def call(method, url, data=None, headers=None):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def main():
    s3 = client()
    bucket = f"presign-check-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    body = b"x" * 812
    ct = {"content-type": "video/mp4"}
    try:
        def put_url(key, ttl=300, c=s3):
            return c.generate_presigned_url(
                "put_object",
                Params={"Bucket": bucket, "Key": key, "ContentType": "video/mp4", "ContentLength": len(body)},
                ExpiresIn=ttl,
            )

        put = put_url("videos/a/init/1.mp4")
        i = put.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        sig = put[i:i + 64]
        flipped = ("0" if sig[0] != "0" else "1") + sig[1:]
        expired = put_url("videos/a/init/3.mp4", ttl=1)
        time.sleep(2.5)

        results = {
            "valid PUT": (call("PUT", put, body, ct)[0], 200),
            "PUT, key changed": (call("PUT", put.replace("1.mp4", "2.mp4"), body, ct)[0], 403),
            "PUT, signature flipped": (call("PUT", put.replace(sig, flipped), body, ct)[0], 403),
            "PUT, other content-type": (call("PUT", put, body, {"content-type": "text/plain"})[0], 403),
            "PUT, other content-length": (call("PUT", put, body + b"y", ct)[0], 403),
            "PUT, signed with other secret": (call("PUT", put_url("k", c=client("not-test")), body, ct)[0], 403),
            "PUT, expired": (call("PUT", expired, body, ct)[0], 403),
        }
        get = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "videos/a/init/1.mp4"}, ExpiresIn=300)
        status, data = call("GET", get)
        results["valid GET"] = (status if data == body else f"{status} (wrong body)", 200)
        results["GET, key changed"] = (call("GET", get.replace("1.mp4", "2.mp4"))[0], 403)
    finally:
        for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"])
        s3.delete_bucket(Bucket=bucket)

    ok = True
    for name, (got, want) in results.items():
        ok &= got == want
        print(f"{'ok  ' if got == want else 'FAIL'} {name}: {got} (want {want})")
    if not ok:
        print("LocalStack accepts bad presigned URLs: is S3_SKIP_SIGNATURE_VALIDATION=0 set?")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
