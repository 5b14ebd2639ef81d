# SPDX-License-Identifier: GPL-3.0-or-later
"""images/storage/s3_standin.py against boto3, the way the registry's AWS SDK signs (SigV4)."""

from __future__ import annotations

import datetime as dt
import importlib.util
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

SOURCE = Path(__file__).resolve().parents[3] / "images" / "storage" / "s3_standin.py"
SPEC = importlib.util.spec_from_file_location("s3_standin", SOURCE)
s3_standin = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(s3_standin)

ACCESS, SECRET, BUCKET = "prpm-registry", "s3cr3t-s3cr3t-s3cr3t", "prpm-packages"
KEY = "packages/@alice/rules/1.0.0/package.tar.gz"


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory, monkeypatch_module=None):
    data = tmp_path_factory.mktemp("s3data")
    env = {
        "STORAGE_MAX_OBJECT_MIB": "1",
        "STORAGE_ACCESS_KEY": ACCESS,
        "STORAGE_SECRET_KEY": SECRET,
        "STORAGE_BUCKETS": BUCKET,
        "STORAGE_DATA": str(data),
    }
    saved = {k: s3_standin.os.environ.get(k) for k in env}
    s3_standin.os.environ.update(env)
    try:
        server = s3_standin.build_server("127.0.0.1", 0)
    finally:
        for k, v in saved.items():
            if v is None:
                s3_standin.os.environ.pop(k, None)
            else:
                s3_standin.os.environ[k] = v
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", data
    server.shutdown()


def client(url: str, secret: str = SECRET):
    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id=ACCESS,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 (loopback test server)
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_put_get_head_list_delete(endpoint) -> None:
    url, data = endpoint
    s3 = client(url)
    s3.put_object(
        Bucket=BUCKET,
        Key=KEY,
        Body=b"tarball",
        ContentType="application/gzip",
        Metadata={"hash": "h"},
    )
    got = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert got["Body"].read() == b"tarball"
    assert got["ContentType"] == "application/gzip"
    assert s3.head_object(Bucket=BUCKET, Key=KEY)["Metadata"] == {"hash": "h"}
    assert [
        o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="packages/")["Contents"]
    ] == [KEY]
    assert any(p.name.endswith("package.tar.gz") for p in (data / BUCKET / "data").iterdir())
    s3.delete_object(Bucket=BUCKET, Key=KEY)
    with pytest.raises(ClientError, match=r"NoSuchKey|404"):
        s3.head_object(Bucket=BUCKET, Key=KEY)


def test_presigned_url_works_and_tampering_or_anonymity_is_refused(endpoint) -> None:
    url = endpoint[0]
    s3 = client(url)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"tarball")
    signed = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": KEY}, ExpiresIn=60
    )
    assert status_of(signed) == 200
    assert status_of(signed.replace("X-Amz-Signature=", "X-Amz-Signature=0")) == 403
    assert status_of(signed.replace("package.tar.gz", "other.tar.gz")) == 403
    assert status_of(f"{url}/{BUCKET}/packages/%40alice/rules/1.0.0/package.tar.gz") == 403
    assert status_of(f"{url}/health") == 200


def test_wrong_secret_and_unknown_bucket_are_refused(endpoint) -> None:
    url = endpoint[0]
    with pytest.raises(ClientError, match="SignatureDoesNotMatch"):
        wrong = client(url, secret="wrong-wrong-wrong-wrong")  # noqa: S106 (a wrong key on purpose)
        wrong.put_object(Bucket=BUCKET, Key="k", Body=b"x")
    with pytest.raises(ClientError, match="NoSuchBucket"):
        client(url).put_object(Bucket="no-such-bucket", Key="k", Body=b"x")


def test_presigned_url_expires() -> None:
    auth = s3_standin.Authenticator(ACCESS, SECRET, "us-east-1")
    signed = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
    query = (
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=prpm-registry%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20260101T120000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host&X-Amz-Signature=00"
    )
    with pytest.raises(s3_standin.S3Error, match="expired"):
        auth.verify("GET", "/b/k", query, {"host": "h"}, None, signed + dt.timedelta(seconds=61))
    with pytest.raises(s3_standin.S3Error, match="does not match"):
        auth.verify("GET", "/b/k", query, {"host": "h"}, None, signed + dt.timedelta(seconds=30))


def test_keys_cannot_escape_the_bucket(endpoint) -> None:
    url, data = endpoint
    s3 = client(url)
    s3.put_object(Bucket=BUCKET, Key="../../escape", Body=b"x")
    assert not (data.parent / "escape").exists()
    assert s3.get_object(Bucket=BUCKET, Key="../../escape")["Body"].read() == b"x"


def test_keys_cannot_clobber_metadata_or_name_directories(endpoint) -> None:
    url = endpoint[0]
    s3 = client(url)
    s3.put_object(Bucket=BUCKET, Key="x", Body=b"object x")
    s3.put_object(Bucket=BUCKET, Key="x.meta.json", Body=b"not metadata")
    s3.put_object(Bucket=BUCKET, Key="x.json", Body=b"not metadata either")
    assert s3.get_object(Bucket=BUCKET, Key="x")["Body"].read() == b"object x"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert {"x", "x.meta.json", "x.json"} <= set(keys)
    for key in (".", ".."):
        with pytest.raises(ClientError, match="InvalidArgument"):
            s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")


def _raw(url: str, request: bytes) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        return sock.recv(4096)


def test_bodies_are_refused_unread_except_signed_puts(endpoint) -> None:
    url = endpoint[0]
    # An unsigned GET announcing 100 MB: answered at once (the body is never awaited).
    head = _raw(
        url, b"GET /prpm-packages/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 400"), head
    # An unsigned PUT: refused before its body is read.
    head = _raw(
        url, b"PUT /prpm-packages/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"
    )
    assert head.startswith(b"HTTP/1.1 403"), head


def test_objects_over_the_limit_are_refused(endpoint) -> None:
    url = endpoint[0]
    with pytest.raises(ClientError, match="EntityTooLarge"):
        client(url).put_object(Bucket=BUCKET, Key="big", Body=b"x" * (2 * 2**20))
