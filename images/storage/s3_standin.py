# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm-storage: a small S3-compatible object store for the registry's package files.

The local tier's stand-in for S3 (the AWS tier uses a real bucket). It serves what the PRPM
registry and its clients use: PutObject, GetObject, HeadObject, DeleteObject, HeadBucket and
ListObjectsV2, path-style, every request signed with AWS Signature Version 4 (header or
presigned query) by the one configured key and verified, presigned URLs honouring their
expiry. Objects are plain files under STORAGE_DATA/<bucket>/ (backed up with the stack's
files), each with a JSON sidecar for its metadata, written atomically.

Environment: STORAGE_ACCESS_KEY, STORAGE_SECRET_KEY (or STORAGE_SECRET_KEY_FILE),
STORAGE_BUCKETS (comma-separated, created at start), STORAGE_REGION (us-east-1),
STORAGE_DATA (/data), STORAGE_PORT (9000), STORAGE_MAX_OBJECT_MIB (64). GET /health answers
200 without a signature.

Standard library only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import shutil
import sys
import tempfile
import threading
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote
from xml.sax.saxutils import escape

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
CLOCK_SKEW = dt.timedelta(minutes=15)
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
UNSIGNED = "UNSIGNED-PAYLOAD"
KEPT_HEADERS = ("content-type", "content-encoding", "content-disposition", "cache-control")


class S3Error(Exception):
    """An S3 error response: HTTP status, S3 code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def canonical_query(raw_query: str, drop_signature: bool) -> str:
    pairs = parse_qsl(raw_query, keep_blank_values=True)
    if drop_signature:
        pairs = [(k, v) for k, v in pairs if k != "X-Amz-Signature"]
    return "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in sorted(pairs))


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signature(  # noqa: PLR0913, PLR0917 (the inputs of SigV4)
    secret: str,
    method: str,
    raw_path: str,
    query: str,
    headers: dict[str, str],
    signed_headers: list[str],
    payload_hash: str,
    amz_date: str,
    scope: str,
) -> str:
    """SigV4 signature of a request (S3 flavour: the path is used as sent, not re-encoded)."""
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed_headers
    )
    canonical_request = "\n".join(
        [method, raw_path, query, canonical_headers, ";".join(signed_headers), payload_hash]
    )
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    date, region, service = scope.split("/")[:3]
    return hmac.new(
        signing_key(secret, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()


def parse_amz_date(value: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
    except ValueError as exc:
        raise S3Error(403, "AccessDenied", f"X-Amz-Date '{value}' is not valid") from exc


class Authenticator:
    """Verifies SigV4 requests made with the one configured key."""

    def __init__(self, access_key: str, secret_key: str, region: str) -> None:
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region

    def _check_credential(self, credential: str) -> str:
        parts = credential.split("/")
        if len(parts) != 5 or parts[4] != "aws4_request" or parts[3] != "s3":
            raise S3Error(
                403, "AuthorizationQueryParametersError", f"malformed credential '{credential}'"
            )
        if parts[0] != self.access_key:
            raise S3Error(
                403, "InvalidAccessKeyId", "The access key ID you provided does not exist."
            )
        if parts[2] != self.region:
            raise S3Error(
                400,
                "AuthorizationHeaderMalformed",
                f"the region '{parts[2]}' is wrong; expecting '{self.region}'",
            )
        return "/".join(parts[1:])

    def verify(  # noqa: PLR0912, PLR0913, PLR0917 (one request, both SigV4 forms)
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: dict[str, str],
        body_hash: str | None,
        now: dt.datetime,
    ) -> None:
        """Raise S3Error unless the request carries a valid, current signature."""
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        auth = headers.get("authorization", "")
        if query.get("X-Amz-Algorithm"):
            if query["X-Amz-Algorithm"] != "AWS4-HMAC-SHA256":
                raise S3Error(
                    400, "AuthorizationQueryParametersError", "only AWS4-HMAC-SHA256 is supported"
                )
            scope = self._check_credential(query.get("X-Amz-Credential", ""))
            amz_date = query.get("X-Amz-Date", "")
            signed = parse_amz_date(amz_date)
            try:
                expires = int(query.get("X-Amz-Expires", ""))
            except ValueError as exc:
                raise S3Error(
                    400, "AuthorizationQueryParametersError", "X-Amz-Expires must be a number"
                ) from exc
            if not 0 < expires <= MAX_PRESIGN_SECONDS:
                raise S3Error(
                    400, "AuthorizationQueryParametersError", "X-Amz-Expires out of range"
                )
            if now > signed + dt.timedelta(seconds=expires):
                raise S3Error(403, "AccessDenied", "Request has expired")
            if signed - now > CLOCK_SKEW:
                raise S3Error(403, "AccessDenied", "Request is not yet valid")
            signed_headers = query.get("X-Amz-SignedHeaders", "").split(";")
            provided = query.get("X-Amz-Signature", "")
            payload_hash = UNSIGNED
            canon_query = canonical_query(raw_query, drop_signature=True)
        elif auth.startswith("AWS4-HMAC-SHA256 "):
            fields = dict(
                part.strip().split("=", 1)
                for part in auth[len("AWS4-HMAC-SHA256 ") :].split(",")
                if "=" in part
            )
            scope = self._check_credential(fields.get("Credential", ""))
            amz_date = headers.get("x-amz-date", "")
            signed = parse_amz_date(amz_date)
            if abs(now - signed) > CLOCK_SKEW:
                raise S3Error(
                    403,
                    "RequestTimeTooSkewed",
                    "The difference between the request time and the server's time is too large.",
                )
            signed_headers = fields.get("SignedHeaders", "").split(";")
            provided = fields.get("Signature", "")
            payload_hash = headers.get("x-amz-content-sha256", "")
            if not payload_hash:
                raise S3Error(400, "InvalidRequest", "x-amz-content-sha256 is required")
            if payload_hash.startswith("STREAMING-"):
                raise S3Error(
                    501,
                    "NotImplemented",
                    "chunked (streaming) uploads are not supported; send the body whole",
                )
            if payload_hash != UNSIGNED and body_hash is not None and payload_hash != body_hash:
                raise S3Error(
                    400,
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                )
            canon_query = canonical_query(raw_query, drop_signature=False)
        elif auth:
            raise S3Error(400, "InvalidRequest", "only AWS Signature Version 4 is supported")
        else:
            raise S3Error(403, "AccessDenied", "Access Denied (anonymous requests are not allowed)")
        if "host" not in signed_headers:
            raise S3Error(403, "AccessDenied", "the host header must be signed")
        expected = signature(
            self.secret_key,
            method,
            raw_path,
            canon_query,
            headers,
            signed_headers,
            payload_hash,
            amz_date,
            scope,
        )
        if not hmac.compare_digest(expected, provided):
            raise S3Error(
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )


class Store:
    """Objects as files: <root>/<bucket>/data/<name> and meta/<name>.json (name: the quoted key).

    Data and metadata live in separate directories, so no key can overwrite another's
    metadata; partial writes go to tmp/ and are renamed into place, so a crash leaves no
    half-written object.
    """

    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.lock = threading.Lock()

    def bucket_dir(self, bucket: str) -> Path:
        path = self.root / bucket
        if not BUCKET_RE.match(bucket) or not (path / "data").is_dir():
            raise S3Error(404, "NoSuchBucket", "The specified bucket does not exist")
        return path

    def create_bucket(self, bucket: str) -> None:
        if not BUCKET_RE.match(bucket):
            raise ValueError(f"invalid bucket name '{bucket}'")
        for part in ("data", "meta", "tmp"):
            (self.root / bucket / part).mkdir(parents=True, exist_ok=True)

    @staticmethod
    def _name(key: str) -> str:
        if not key or len(key.encode()) > 1024:
            raise S3Error(
                400, "KeyTooLongError" if key else "InvalidArgument", "invalid object key"
            )
        name = quote(key, safe="")
        if name in (".", ".."):
            raise S3Error(400, "InvalidArgument", "invalid object key")
        if len(name) > 240:
            # File names are limited; long keys are stored under their digest.
            name = "sha256-" + hashlib.sha256(key.encode()).hexdigest()
        return name

    def put(  # noqa: PLR0913, PLR0917 (one object: where, what, how much, its hash, metadata)
        self, bucket: str, key: str, stream, length: int, payload_hash: str, meta: dict[str, str]
    ) -> str:
        """Stream length bytes to the object; check them against the signed payload hash."""
        directory = self.bucket_dir(bucket)
        name = self._name(key)
        if length > self.max_bytes:
            raise S3Error(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
            )
        sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
        fd, tmp = tempfile.mkstemp(dir=directory / "tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                left = length
                while left > 0:
                    chunk = stream.read(min(left, 1 << 16))
                    if not chunk:
                        raise S3Error(
                            400, "IncompleteBody", "the body is shorter than Content-Length"
                        )
                    sha.update(chunk)
                    md5.update(chunk)
                    fh.write(chunk)
                    left -= len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
            if payload_hash != UNSIGNED and sha.hexdigest() != payload_hash:
                raise S3Error(
                    400,
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                )
            etag = md5.hexdigest()
            record = {
                "key": key,
                "etag": etag,
                "size": length,
                "modified": formatdate(usegmt=True),
                "meta": meta,
            }
            with self.lock:
                Path(tmp).replace(directory / "data" / name)
                self._write(
                    directory, directory / "meta" / f"{name}.json", json.dumps(record).encode()
                )
        finally:
            Path(tmp).unlink(missing_ok=True)
        return etag

    @staticmethod
    def _write(directory: Path, target: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=directory / "tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            Path(tmp).replace(target)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def head(self, bucket: str, key: str) -> tuple[Path, dict]:
        directory = self.bucket_dir(bucket)
        name = self._name(key)
        try:
            record = json.loads((directory / "meta" / f"{name}.json").read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.") from exc
        return directory / "data" / name, record

    def delete(self, bucket: str, key: str) -> None:
        directory = self.bucket_dir(bucket)
        name = self._name(key)
        with self.lock:
            for path in (directory / "meta" / f"{name}.json", directory / "data" / name):
                path.unlink(missing_ok=True)

    def list(self, bucket: str, prefix: str, max_keys: int) -> list[dict]:
        directory = self.bucket_dir(bucket)
        records = []
        for meta in sorted((directory / "meta").glob("*.json")):
            record = json.loads(meta.read_text(encoding="utf-8"))
            if record["key"].startswith(prefix):
                records.append(record)
        return sorted(records, key=lambda r: r["key"])[:max_keys]


def error_xml(err: S3Error, resource: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message>"
        f"<Resource>{escape(resource)}</Resource></Error>"
    ).encode()


def _list_xml(bucket: str, records: list[dict]) -> bytes:
    contents = "".join(
        f"<Contents><Key>{escape(r['key'])}</Key><ETag>&quot;{r['etag']}&quot;</ETag>"
        f"<Size>{r['size']}</Size></Contents>"
        for r in records
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{escape(bucket)}</Name><KeyCount>{len(records)}</KeyCount>"
        f"<IsTruncated>false</IsTruncated>{contents}</ListBucketResult>"
    ).encode()


def make_handler(auth: Authenticator, store: Store) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "prpm-storage"

        def log_message(self, format: str, *args: object) -> None:
            # One line per request, without the query (it carries signatures).
            sys.stderr.write(
                f"{self.address_string()} {self.command} {self.path.split('?')[0]} "
                f"{args[1] if len(args) > 1 else ''}\n"
            )

        def _send(
            self, status: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if "Content-Length" not in (headers or {}):
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body and self.command != "HEAD":
                self.wfile.write(body)

        def _fail(self, err: S3Error, resource: str, close: bool = False) -> None:
            if close:
                # The request's body (if any) was not read: the connection cannot be reused.
                self.close_connection = True
            headers = {"Content-Type": "application/xml"}
            if close:
                headers["Connection"] = "close"
            self._send(err.status, error_xml(err, resource), headers)

        def _handle(self) -> None:
            raw_path, _sep, raw_query = self.path.partition("?")
            if raw_path == "/health" and self.command in ("GET", "HEAD"):
                self._send(200, b'{"status":"ok"}', {"Content-Type": "application/json"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
                if chunked or length < 0 or (length and self.command != "PUT"):
                    # Nothing but PUT carries a body here; refused before a byte of it is read.
                    raise S3Error(
                        400, "InvalidRequest", "a body is only accepted with PUT and Content-Length"
                    )
                headers = {k.lower(): v for k, v in self.headers.items()}
                # The signature covers the headers (and the payload's declared hash): checked
                # before the body is read, so unsigned requests cannot make it buffer anything.
                auth.verify(
                    self.command, raw_path, raw_query, headers, None, dt.datetime.now(dt.UTC)
                )
                bucket, _sep, key_enc = raw_path.lstrip("/").partition("/")
                self._dispatch(bucket, unquote(key_enc), raw_query, headers, length)
            except S3Error as err:
                self._fail(err, raw_path, close=True)
            except Exception as exc:  # any other failure is a 500, never a dropped connection
                sys.stderr.write(f"prpm-storage: {self.command} {raw_path}: {exc!r}\n")
                self._fail(
                    S3Error(500, "InternalError", "We encountered an internal error."),
                    raw_path,
                    close=True,
                )

        def _dispatch(
            self, bucket: str, key: str, raw_query: str, headers: dict[str, str], length: int
        ) -> None:
            method = self.command
            if not key:
                store.bucket_dir(bucket)
                if method == "HEAD":
                    self._send(200)
                elif method == "GET":
                    query = dict(parse_qsl(raw_query, keep_blank_values=True))
                    records = store.list(
                        bucket, query.get("prefix", ""), int(query.get("max-keys", "1000") or 1000)
                    )
                    self._send(200, _list_xml(bucket, records), {"Content-Type": "application/xml"})
                else:
                    raise S3Error(
                        405, "MethodNotAllowed", "buckets are created at start (STORAGE_BUCKETS)"
                    )
                return
            if method == "PUT":
                if "x-amz-copy-source" in headers:
                    raise S3Error(501, "NotImplemented", "CopyObject is not supported")
                meta = {
                    k: v
                    for k, v in headers.items()
                    if k.startswith("x-amz-meta-") or k in KEPT_HEADERS
                }
                payload_hash = headers.get("x-amz-content-sha256", UNSIGNED)
                etag = store.put(bucket, key, self.rfile, length, payload_hash, meta)
                self._send(200, headers={"ETag": f'"{etag}"'})
            elif method in ("GET", "HEAD"):
                path, record = store.head(bucket, key)
                out = {
                    "ETag": f'"{record["etag"]}"',
                    "Last-Modified": record["modified"],
                    "Content-Length": str(record["size"]),
                    "Content-Type": record["meta"].get("content-type", "application/octet-stream"),
                }
                out.update({k: v for k, v in record["meta"].items() if k != "content-type"})
                self._send(200, headers=out)
                if method == "GET":
                    with path.open("rb") as fh:
                        shutil.copyfileobj(fh, self.wfile, 1 << 16)
            elif method == "DELETE":
                store.delete(bucket, key)
                self._send(204)
            else:
                raise S3Error(405, "MethodNotAllowed", f"{method} is not supported")

        do_GET = do_HEAD = do_PUT = do_DELETE = do_POST = _handle

    return Handler


def read_secret() -> str:
    path = os.environ.get("STORAGE_SECRET_KEY_FILE", "")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return os.environ.get("STORAGE_SECRET_KEY", "")


def build_server(host: str, port: int) -> ThreadingHTTPServer:
    access = os.environ.get("STORAGE_ACCESS_KEY", "")
    secret = read_secret()
    if not access or len(secret) < 16:
        raise SystemExit(
            "prpm-storage: STORAGE_ACCESS_KEY and a STORAGE_SECRET_KEY(_FILE) "
            "of 16+ characters are required"
        )
    # The registry's own limit is 10 MiB per package (MAX_PACKAGE_SIZE).
    max_bytes = int(os.environ.get("STORAGE_MAX_OBJECT_MIB", "64")) * 2**20
    store = Store(Path(os.environ.get("STORAGE_DATA", "/data")), max_bytes)
    for bucket in filter(
        None, (b.strip() for b in os.environ.get("STORAGE_BUCKETS", "").split(","))
    ):
        store.create_bucket(bucket)
    auth = Authenticator(access, secret, os.environ.get("STORAGE_REGION", "us-east-1"))
    return ThreadingHTTPServer((host, port), make_handler(auth, store))


def main() -> int:
    server = build_server("0.0.0.0", int(os.environ.get("STORAGE_PORT", "9000")))  # noqa: S104 (container port)
    print(f"prpm-storage: serving on port {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
