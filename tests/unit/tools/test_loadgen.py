# SPDX-License-Identifier: GPL-3.0-or-later
"""tools/loadgen.py against local http.server instances that misbehave on purpose."""

from __future__ import annotations

import datetime
import ipaddress
import json
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from loadgen import (  # tools/ is not a package: on sys.path above
    USER_AGENT,
    LoadGenerator,
    LoadResult,
    _nearest_rank,
)

TOOL = Path(__file__).resolve().parents[3] / "tools" / "loadgen.py"


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.lock = threading.Lock()
        self.seen: list[tuple[float, str, str | None]] = []

    def count(self, path: str, agent: str | None) -> int:
        with self.lock:
            self.seen.append((time.monotonic(), path, agent))
            return len(self.seen)


class Healthy(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, 200 for everything; subclasses change answer()."""

    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.answer(self.server.count(self.path, self.headers.get("User-Agent")))

    def answer(self, n: int) -> None:
        self.reply(200)

    def reply(self, status: int, body: bytes = b"ok\n") -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class EveryThird503(Healthy):
    def answer(self, n):
        self.reply(503 if n % 3 == 0 else 200, b"busy\n" if n % 3 == 0 else b"ok\n")


class Slow(Healthy):
    delay = 0.05

    def answer(self, n):
        time.sleep(self.delay)
        self.reply(200)


class Slower(Slow):
    delay = 0.2


class ClosesSilently(Healthy):
    """Announces keep-alive, then closes the connection after each response anyway."""

    def answer(self, n):
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.send_header("Connection", "keep-alive")
        self.end_headers()
        self.wfile.write(b"ok\n")
        self.wfile.flush()
        self.close_connection = True  # after send_header, which would reset it


class ResetsMidBody(Healthy):
    """The second request on each connection: status and headers, then a reset, no body."""

    served = 0

    def answer(self, n):
        self.served += 1  # one handler instance per connection
        if self.served == 1:
            self.reply(200)
            return
        self.send_response(200)
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.write(b"abc")
        self.wfile.flush()
        time.sleep(0.05)  # let the client read the headers first
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # linger 0: RST, not FIN
        self.close_connection = True


class TruncatesBody(Healthy):
    """Announces 10 bytes, sends 3, closes the connection."""

    def answer(self, n):
        self.send_response(200)
        self.send_header("Content-Length", "10")
        self.end_headers()
        self.wfile.write(b"abc")
        self.close_connection = True


@contextmanager
def serve(handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None):
    server = Server(handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield server, f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def run(base_url: str, **kwargs) -> LoadResult:
    kwargs.setdefault("max_seconds", 10)
    kwargs.setdefault("timeout", 5)
    with LoadGenerator(base_url, **kwargs) as load:
        assert load.wait(15), "the run did not reach its bound"
    assert load.result is not None
    check(load.result)
    return load.result


def check(result: LoadResult) -> None:
    """What holds for every result: each request counted once, and JSON-able."""
    assert result.sent == result.ok + result.failed, result.summary()
    assert sum(result.statuses.values()) == result.sent, result.summary()
    assert len(result.failures) == min(result.failed, 50)
    json.dumps(result.to_dict())
    assert f"{result.failed} failed" in result.summary()


def test_all_ok_bounded_by_count_and_paced():
    with serve(Healthy) as (server, url):
        result = run(url, rate=50, max_requests=20)
    assert (result.sent, result.ok, result.failed, result.reconnects) == (20, 20, 0, 0)
    assert result.statuses == {200: 20}
    assert len(server.seen) == 20
    # Open loop at 50/s: the 20th request is due 0.38 s after the first, never earlier.
    arrivals = sorted(seen[0] for seen in server.seen)
    assert arrivals[-1] - arrivals[0] >= 0.38 - 0.02
    assert result.duration_s >= 0.38
    assert result.rate_achieved == pytest.approx(20 / result.duration_s, rel=0.01)
    assert all(v is not None and v > 0 for v in result.latency_ms.values())


def test_time_bound_stops_the_run():
    with serve(Healthy) as (server, url):
        load = LoadGenerator(url, rate=10, max_seconds=0.5, max_requests=1000, timeout=5)
        load.start()
        assert load.wait(5), "a 0.5 s run still going after 5 s"
        result = load.stop()
    check(result)
    assert 1 <= result.sent <= 6
    assert result.failed == 0
    assert len(server.seen) == result.sent


def test_default_count_bound_is_rate_times_seconds():
    assert LoadGenerator("http://127.0.0.1:1", rate=20, max_seconds=120).max_requests == 2400
    assert LoadGenerator("http://127.0.0.1:1", rate=3, max_seconds=0.5).max_requests == 2


def test_non_2xx_answers_are_failures():
    with serve(EveryThird503) as (_server, url):
        result = run(url, rate=60, max_requests=30, paths=["/health", "/api/v1/packages"])
    assert result.failed == 10, result.summary()
    assert result.ok == 20
    assert result.statuses == {200: 20, 503: 10}
    assert result.reconnects == 0
    assert {f["path"] for f in result.failures} <= {"/health", "/api/v1/packages"}
    assert all(f["error"].startswith("HTTP 503") for f in result.failures)
    assert all(0 <= f["t"] < 10 for f in result.failures)
    # Non-2xx answers are complete responses: they count in the latency.
    assert result.latency_ms["p99"] is not None


def test_connection_refused_fails_every_request_and_is_never_retried():
    with socket.socket() as reserved:  # bound, not listening: connecting is refused
        reserved.bind(("127.0.0.1", 0))
        port = reserved.getsockname()[1]
        result = run(f"http://127.0.0.1:{port}", rate=50, max_requests=8)
    assert result.sent == 8
    assert result.failed == 8
    assert result.ok == 0
    assert result.statuses == {"ConnectionRefusedError": 8}
    assert result.reconnects == 0
    assert result.failures[0]["error"].startswith("ConnectionRefusedError")
    assert result.latency_ms == {"p50": None, "p95": None, "p99": None, "max": None}


def test_idle_connection_closed_by_the_server_is_retried_once_on_a_fresh_one():
    with serve(ClosesSilently) as (server, url):
        result = run(url, rate=50, max_requests=12, workers=2)
    assert result.failed == 0, result.summary()
    assert result.ok == 12
    # Every request after a worker's first one found its connection closed.
    assert result.reconnects >= 12 - 2
    # The failed attempts never reached the server: each request arrived exactly once.
    assert len(server.seen) == 12


def test_failure_after_the_response_started_is_not_retried():
    with serve(ResetsMidBody) as (server, url):
        result = run(url, rate=50, max_requests=6, workers=1)
    # Requests 2, 4 and 6 were the second on their connection: headers, then a reset.
    assert result.reconnects == 0, result.summary()
    assert (result.ok, result.failed) == (3, 3), result.summary()
    assert set(result.statuses) <= {200, "ConnectionResetError", "IncompleteRead"}
    assert len(server.seen) == 6


def test_a_2xx_with_a_truncated_body_is_a_failure():
    with serve(TruncatesBody) as (_server, url):
        result = run(url, rate=50, max_requests=4)
    assert (result.ok, result.failed, result.reconnects) == (0, 4, 0), result.summary()
    assert result.statuses == {"IncompleteRead": 4}


def test_late_requests_are_sent_late_not_skipped_and_their_wait_is_not_latency():
    with serve(Slower) as (server, url):
        result = run(url, rate=50, max_requests=6, workers=1)
    assert (result.sent, result.ok) == (6, 6)
    assert len(server.seen) == 6
    assert result.duration_s >= 6 * 0.2
    assert result.latency_ms["p50"] >= 190
    # Measured from the scheduled time, the last one would be about 1.1 s.
    assert result.latency_ms["max"] < 900, result.summary()


def test_latency_percentiles():
    with serve(Slow) as (_server, url):
        result = run(url, rate=40, max_requests=8)
    lat = result.latency_ms
    assert lat["p50"] >= 45, result.summary()
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]


def test_nearest_rank():
    ordered = [float(v) for v in range(1, 101)]
    assert [_nearest_rank(ordered, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    assert _nearest_rank([1.0, 2.0], 50) == 1.0
    assert _nearest_rank([7.0], 99) == 7.0


def test_headers_paths_and_prefix():
    with serve(Healthy) as (server, url):
        run(f"{url}/prefix/", rate=50, max_requests=6, paths=["/a", "/b", "/c"])
        first = list(server.seen)
        run(url, rate=50, max_requests=2, headers={"user-agent": "other/1"})
    assert sorted(seen[1] for seen in first) == sorted(["/prefix/a", "/prefix/b", "/prefix/c"] * 2)
    assert {seen[2] for seen in first} == {USER_AGENT}
    assert {seen[2] for seen in server.seen[6:]} == {"other/1"}


def test_stop_ends_a_long_run_and_the_context_keeps_the_result():
    with serve(Healthy) as (server, url):
        with LoadGenerator(url, rate=40, max_seconds=60) as load:
            deadline = time.monotonic() + 10
            while len(server.seen) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert load.wait(0), "workers still running after the context exited"
        result = load.result
    assert result is not None
    check(result)
    assert 3 <= result.sent < 2400
    assert result.failed == 0
    assert load.stop() is result


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "rate"),
        ({"rate": -1}, "rate"),
        ({"rate": 500}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"max_seconds": 1000}, "max_seconds"),
        ({"max_requests": 0}, "max_requests"),
        ({"workers": 0}, "workers"),
        ({"timeout": 0}, "timeout"),
        ({"paths": []}, "paths"),
        ({"paths": ["health"]}, "paths"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LoadGenerator("http://127.0.0.1:1", **kwargs)


@pytest.mark.parametrize("url", ["ftp://host/", "localhost:8080", "http:///x", "http://h/?q=1"])
def test_bad_base_url(url):
    with pytest.raises(ValueError, match="base_url"):
        LoadGenerator(url)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    x509 = pytest.importorskip("cryptography.x509")  # only to make the test certificate
    hashes = pytest.importorskip("cryptography.hazmat.primitives.hashes")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "loadgen test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_https(tmp_path):
    cert, key = _self_signed(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    with serve(Healthy, tls=tls) as (_server, url):
        unverified = run(url, rate=50, max_requests=4, verify=False)
        pinned = run(url, rate=50, max_requests=4, verify=str(cert))
        system = run(url, rate=50, max_requests=2, verify=True)
    assert (unverified.ok, unverified.failed) == (4, 0), unverified.summary()
    assert (pinned.ok, pinned.failed) == (4, 0), pinned.summary()
    assert system.statuses == {"SSLCertVerificationError": 2}, system.summary()


def cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(TOOL), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        **kwargs,
    )


def test_cli_exit_status_and_json():
    with serve(Healthy) as (_server, url):
        healthy = cli(url, "--rate", "50", "--max-requests", "5", "--json")
    assert healthy.returncode == 0, healthy.stderr
    data = json.loads(healthy.stdout)
    assert (data["sent"], data["ok"], data["failed"]) == (5, 5, 0)
    assert data["statuses"] == {"200": 5}
    assert set(data["latency_ms"]) == {"p50", "p95", "p99", "max"}

    with serve(EveryThird503) as (_server, url):
        failing = cli(url, "--path", "/x", "--rate", "50", "--max-requests", "6")
    assert failing.returncode == 1, failing.stderr
    assert "2 failed" in failing.stdout
    assert "HTTP 503" in failing.stdout

    bad = cli("http://127.0.0.1:1", "--rate", "0")
    assert bad.returncode == 2
    assert "rate must be > 0" in bad.stderr
    assert cli("http://127.0.0.1:1", "--rate", "fast").returncode == 2


def test_cli_sigterm_stops_cleanly_and_reports():
    with serve(Healthy) as (server, url):
        proc = subprocess.Popen(
            [sys.executable, str(TOOL), url, "--rate", "40", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 15
            while len(server.seen) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    data = json.loads(out)
    assert 3 <= data["sent"] < 2400
    assert data["failed"] == 0
