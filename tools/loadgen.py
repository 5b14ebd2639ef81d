# SPDX-License-Identifier: GPL-3.0-or-later
"""A bounded, paced HTTP load generator that counts failed requests, for zero-downtime checks.

Used by the molecule scenarios that deploy a new registry version under load and assert that
no request failed, and by `make bench`, which reports failed requests and the p99 latency
during deploys. They put tools/ on sys.path (tools/ is a folder of scripts, not a package):

    from loadgen import LoadGenerator

    with LoadGenerator("https://localhost:18443", rate=20.0, max_seconds=120, verify=False) as load:
        ...  # deploy
    assert load.result.failed == 0, load.result.summary()

Or from a shell: `python tools/loadgen.py https://localhost:18443 --insecure --seconds 60`
(exit status 0 when no request failed, 1 when one did, 2 for bad arguments).

Bounds. A run is bounded in time (max_seconds, at most 900) and in count (max_requests,
ceil(rate * max_seconds) unless given); it ends at whichever comes first, or at stop().
No request is sent once max_seconds have passed since start().

Pacing. Open loop: request i is due at start + i / rate, whatever happened to the earlier
ones. `workers` threads take the due requests in order, each over its own persistent
HTTP/1.1 (keep-alive) connection; paths are used round-robin. When every worker is busy (a
proxy holding requests during a reload), the next due request goes out late, as soon as a
worker is free: it is never skipped. Its latency is measured from when it was actually sent
(connecting included, on a fresh connection) to when its whole response body was read, so
the time it waited for a free worker is not counted; a request that needed a reconnect
(below) counts both attempts.

Failure accounting, the point of the tool. A request is OK only when it got a 2xx status
and its whole body was read (http.client checks Content-Length and chunked framing). Every
other outcome is a failed request: a non-2xx status (counted under that status), a timeout
(`timeout` seconds without progress, connecting or reading), a refused or reset connection,
a truncated body, a TLS error, any other exception (counted under the exception's class
name, e.g. "ConnectionRefusedError").

One exception, and only one. When a request on a REUSED keep-alive connection fails before
any byte of its response arrived (the server had closed the idle connection: the send raises
BrokenPipeError or ConnectionResetError, or the first read finds the connection closed:
http.client.RemoteDisconnected, ConnectionResetError, or their TLS forms SSLEOFError and
SSLZeroReturnError), it is sent again, once, on a fresh connection, as RFC 9110 section
9.2.2 allows for idempotent requests and as browsers and urllib3 do when a server closes an
idle keep-alive connection (a proxy's graceful config reload does). The retry is counted in
`reconnects`, and the request's outcome is the retry's outcome. A request that failed on a
fresh connection, or after a byte of its response arrived, is never sent again.

A request still in flight when stop() gives up waiting (2 * timeout + 1 seconds) is counted
as failed, under "StillInFlight": sent == ok + failed always holds.

Standard library only: it runs on any Python >= 3.11 without installing anything.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import signal
import ssl
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

MAX_SECONDS = 900.0
MAX_RATE = 200.0
MAX_WORKERS = 64
MAX_FAILURES_KEPT = 50
# The PRPM registry exempts prpm-cli/ clients from its 100 requests/minute limit; without
# this, a run would measure the limiter.
USER_AGENT = "prpm-cli/loadgen"
STILL_IN_FLIGHT = "StillInFlight"

# Raised when a reused keep-alive connection turns out to be closed by the server (before any
# response byte). RemoteDisconnected is a ConnectionResetError; it is named for the reader.
_STALE_ERRORS = (
    http.client.RemoteDisconnected,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    ssl.SSLEOFError,
    ssl.SSLZeroReturnError,
)


@dataclass
class LoadResult:
    """What a run did. `statuses` keys are HTTP statuses (int) or exception class names."""

    sent: int
    ok: int
    failed: int
    reconnects: int
    statuses: dict[int | str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    duration_s: float = 0.0
    rate_achieved: float = 0.0
    latency_ms: dict[str, float | None] = field(
        default_factory=lambda: dict.fromkeys(("p50", "p95", "p99", "max"))
    )

    def summary(self) -> str:
        """One line for a human (and for an assertion message)."""
        statuses = " ".join(f"{k}={v}" for k, v in _sorted_statuses(self.statuses))
        latency = " ".join(
            f"{k} {'-' if v is None else f'{v:.1f}'}" for k, v in self.latency_ms.items()
        )
        line = (
            f"{self.sent} sent, {self.ok} ok, {self.failed} failed, {self.reconnects} reconnects"
            f" in {self.duration_s:.2f} s ({self.rate_achieved:.1f} req/s);"
            f" statuses {statuses or '-'}; latency ms {latency}"
        )
        if self.failures:
            shown = "; ".join(
                f"t={f['t']:.2f}s {f['path']} {f['error']}" for f in self.failures[:3]
            )
            more = len(self.failures) - 3
            line += f"; failures: {shown}" + (f" (+{more} more listed)" if more > 0 else "")
        return line

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: statuses keys become strings."""
        data = asdict(self)
        data["statuses"] = {str(k): v for k, v in _sorted_statuses(self.statuses)}
        return data


def _sorted_statuses(statuses: Mapping[int | str, int]) -> list[tuple[int | str, int]]:
    return sorted(statuses.items(), key=lambda kv: (isinstance(kv[0], str), str(kv[0])))


def _nearest_rank(ordered: list[float], pct: float) -> float:
    return ordered[max(1, math.ceil(pct / 100.0 * len(ordered))) - 1]


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:300]


def _check_bounds(
    rate: float, max_seconds: float, max_requests: int | None, timeout: float, workers: int
) -> int:
    """ValueError unless the numbers bound a run; returns max_requests (or its default)."""
    number = (int, float)
    if isinstance(rate, bool) or not isinstance(rate, number) or not 0 < rate <= MAX_RATE:
        raise ValueError(f"rate must be > 0 and <= {MAX_RATE:g} requests/s, not {rate!r}")
    if (
        isinstance(max_seconds, bool)
        or not isinstance(max_seconds, number)
        or not 0 < max_seconds <= MAX_SECONDS
    ):
        raise ValueError(f"max_seconds must be > 0 and <= {MAX_SECONDS:g}, not {max_seconds!r}")
    if max_requests is None:
        max_requests = math.ceil(rate * max_seconds)
    elif isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
        raise ValueError(f"max_requests must be an integer >= 1, not {max_requests!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, number) or not timeout > 0:
        raise ValueError(f"timeout must be > 0 seconds, not {timeout!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers must be an integer >= 1 and <= {MAX_WORKERS}, not {workers!r}")
    return max_requests


class _Response(http.client.HTTPResponse):
    """Tells its connection when the first line of the response arrived."""

    def __init__(self, sock, debuglevel=0, method=None, url=None, *, owner):
        super().__init__(sock, debuglevel, method, url)
        self.fp = _FirstLineReader(self.fp, owner)


class _FirstLineReader:
    """Wraps a response's file; the first non-empty readline() marks the response started."""

    def __init__(self, fp, owner):
        self._fp = fp
        self._owner = owner

    def readline(self, *args):
        line = self._fp.readline(*args)
        if line:
            self._owner.response_started = True
        return line

    def __getattr__(self, name):
        return getattr(self._fp, name)


class _TrackingMixin:
    response_started = False

    def _make_response(self, sock, debuglevel=0, method=None, url=None):
        return _Response(sock, debuglevel, method, url, owner=self)


class _HTTPConnection(_TrackingMixin, http.client.HTTPConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_class = self._make_response


class _HTTPSConnection(_TrackingMixin, http.client.HTTPSConnection):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.response_class = self._make_response


class LoadGenerator:
    """Sends GET requests at `rate` per second until a bound is reached or stop() is called.

    verify: True checks the server's certificate against the system CAs, a string is the path
    of a CA bundle to check it against, False checks nothing (a self-signed test server).
    """

    def __init__(  # noqa: PLR0913 - keyword-only knobs, with defaults
        self,
        base_url: str,
        *,
        paths: Iterable[str] = ("/health",),
        rate: float = 20.0,
        max_seconds: float = 120.0,
        max_requests: int | None = None,
        verify: bool | str = True,
        timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        workers: int = 4,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be http(s)://host[:port][/prefix], not {base_url!r}")
        if parts.query or parts.fragment:
            raise ValueError(f"base_url must have no query or fragment: {base_url!r}")
        port = parts.port  # ValueError for a port that is not a number in range
        self.paths = (paths,) if isinstance(paths, str) else tuple(paths)
        if not self.paths or not all(isinstance(p, str) and p.startswith("/") for p in self.paths):
            raise ValueError(f"paths must be one or more paths starting with '/': {paths!r}")
        max_requests = _check_bounds(rate, max_seconds, max_requests, timeout, workers)

        self.base_url = base_url
        self.rate = float(rate)
        self.max_seconds = float(max_seconds)
        self.max_requests = max_requests
        self.timeout = float(timeout)
        self.workers = workers
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._prefix = parts.path.rstrip("/")
        self._headers = {"User-Agent": USER_AGENT}
        for name, value in (headers or {}).items():
            for old in [k for k in self._headers if k.lower() == name.lower()]:
                del self._headers[old]
            self._headers[name] = value
        self._ssl_context = self._make_ssl_context(verify) if self._https else None

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._t0 = 0.0
        self._next = 0
        self._sent = 0
        self._ok = 0
        self._failed = 0
        self._reconnects = 0
        self._statuses: dict[int | str, int] = {}
        self._failures: list[dict[str, Any]] = []
        self._latencies: list[float] = []
        self._in_flight: dict[int, tuple[float, str]] = {}
        self._last_exit = 0.0
        self._finished = False
        self.result: LoadResult | None = None

    @staticmethod
    def _make_ssl_context(verify: bool | str) -> ssl.SSLContext:
        if verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        if verify is True:
            return ssl.create_default_context()
        if isinstance(verify, str) and verify:
            return ssl.create_default_context(cafile=verify)
        raise ValueError(f"verify must be True, False or the path of a CA bundle, not {verify!r}")

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> LoadGenerator:
        if self._threads:
            raise RuntimeError("this LoadGenerator was already started")
        self._t0 = time.monotonic()
        count = min(self.workers, self.max_requests)
        self._threads = [
            threading.Thread(target=self._work, args=(n,), name=f"loadgen-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the run to reach a bound by itself; True when it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return bool(self._threads) and not any(t.is_alive() for t in self._threads)

    def stop(self) -> LoadResult:
        """Send no more requests, wait for those in flight, return (and keep) the result."""
        if self.result is not None:
            return self.result
        if not self._threads:
            raise RuntimeError("stop() before start()")
        self._stop.set()
        self.wait(2 * self.timeout + 1.0)
        self.result = self._finish()
        return self.result

    def __enter__(self) -> LoadGenerator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- workers ---------------------------------------------------------------------------

    def _work(self, worker: int) -> None:
        conn: _HTTPConnection | _HTTPSConnection | None = None
        try:
            while not self._stop.is_set():
                with self._lock:
                    index = self._next
                    self._next += 1
                due = index / self.rate
                if index >= self.max_requests or due >= self.max_seconds:
                    break
                delay = self._t0 + due - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                if self._stop.is_set() or time.monotonic() - self._t0 >= self.max_seconds:
                    break
                conn = self._request(conn, worker, self.paths[index % len(self.paths)])
        finally:
            if conn is not None:
                conn.close()
            with self._lock:
                self._last_exit = max(self._last_exit, time.monotonic())

    def _connection(self) -> _HTTPConnection | _HTTPSConnection:
        if self._https:
            return _HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl_context
            )
        return _HTTPConnection(self._host, self._port, timeout=self.timeout)

    def _attempt(self, conn: _HTTPConnection | _HTTPSConnection, path: str) -> tuple[int, str]:
        conn.response_started = False
        conn.request("GET", self._prefix + path, headers=self._headers)
        response = conn.getresponse()
        response.read()  # IncompleteRead when the body is shorter than announced
        return response.status, response.reason

    def _request(self, conn, worker: int, path: str):
        sent_at = time.monotonic()
        with self._lock:
            self._sent += 1
            self._in_flight[worker] = (sent_at - self._t0, path)
        reused = conn is not None and conn.sock is not None
        if conn is None:
            conn = self._connection()
        reconnected = False
        outcome: tuple[int, str] | BaseException
        try:
            outcome = self._attempt(conn, path)
        except Exception as exc:
            conn.close()
            outcome = exc
            if reused and not conn.response_started and isinstance(exc, _STALE_ERRORS):
                reconnected = True  # the server closed the idle connection: once more, fresh
                try:
                    outcome = self._attempt(conn, path)
                except Exception as retry_exc:
                    conn.close()
                    outcome = retry_exc
        self._record(worker, sent_at, path, outcome, reconnected)
        return conn

    def _record(self, worker, sent_at, path, outcome, reconnected) -> None:
        done_at = time.monotonic()
        with self._lock:
            if self._finished:  # stop() gave up on this request and counted it already
                return
            self._in_flight.pop(worker, None)
            self._reconnects += reconnected
            if isinstance(outcome, BaseException):
                key: int | str = type(outcome).__name__
                error = _error_text(outcome)
            else:
                key, reason = outcome
                self._latencies.append((done_at - sent_at) * 1000.0)
                error = None if 200 <= key < 300 else f"HTTP {key} {reason}".rstrip()
            self._statuses[key] = self._statuses.get(key, 0) + 1
            if error is None:
                self._ok += 1
            else:
                self._fail(sent_at - self._t0, path, error)

    def _fail(self, t: float, path: str, error: str) -> None:
        self._failed += 1
        if len(self._failures) < MAX_FAILURES_KEPT:
            self._failures.append({"t": round(t, 3), "path": path, "error": error})

    def _finish(self) -> LoadResult:
        now = time.monotonic()
        with self._lock:
            self._finished = True
            for t, path in sorted(self._in_flight.values()):
                self._statuses[STILL_IN_FLIGHT] = self._statuses.get(STILL_IN_FLIGHT, 0) + 1
                self._fail(t, path, f"{STILL_IN_FLIGHT}: no answer when stop() gave up")
            self._in_flight.clear()
            all_exited = not any(t.is_alive() for t in self._threads)
            end = self._last_exit if all_exited else now
            duration = max(0.0, end - self._t0)
            ordered = sorted(self._latencies)
            latency: dict[str, float | None] = dict.fromkeys(("p50", "p95", "p99", "max"))
            if ordered:
                for name, pct in (("p50", 50), ("p95", 95), ("p99", 99)):
                    latency[name] = round(_nearest_rank(ordered, pct), 3)
                latency["max"] = round(ordered[-1], 3)
            return LoadResult(
                sent=self._sent,
                ok=self._ok,
                failed=self._failed,
                reconnects=self._reconnects,
                statuses=dict(_sorted_statuses(self._statuses)),
                failures=list(self._failures),
                duration_s=round(duration, 3),
                rate_achieved=round(self._sent / duration, 3) if duration > 0 else 0.0,
                latency_ms=latency,
            )


# -- command line ----------------------------------------------------------------------------


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"a header is 'Name: value', not {text!r}")
    return name.strip(), value.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="loadgen.py",
        description="Paced, bounded GET load; reports failed requests (non-2xx, connection "
        "errors, timeouts) and latency. Exit status 0: none failed, 1: some failed, "
        "2: bad arguments.",
    )
    parser.add_argument("base_url", help="http(s)://host[:port][/prefix]")
    parser.add_argument(
        "--path",
        action="append",
        dest="paths",
        metavar="PATH",
        help="path to GET, repeatable, used round-robin (default /health)",
    )
    parser.add_argument("--rate", type=float, default=20.0, help="requests/s (default 20)")
    parser.add_argument("--seconds", type=float, default=60.0, help="time bound (default 60)")
    parser.add_argument("--max-requests", type=int, help="count bound (default rate * seconds)")
    parser.add_argument("--workers", type=int, default=4, help="connections (default 4)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.add_argument(
        "--header", action="append", type=_header, default=[], metavar="'NAME: VALUE'"
    )
    parser.add_argument("--insecure", action="store_true", help="do not verify TLS certificates")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    try:
        load = LoadGenerator(
            args.base_url,
            paths=args.paths or ("/health",),
            rate=args.rate,
            max_seconds=args.seconds,
            max_requests=args.max_requests,
            verify=not args.insecure,
            timeout=args.timeout,
            headers=dict(args.header),
            workers=args.workers,
        )
    except ValueError as exc:
        parser.error(str(exc))  # exit status 2

    interrupted = threading.Event()

    def on_signal(signum, frame):
        interrupted.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        load.start()
        while not interrupted.is_set() and not load.wait(0.2):
            pass
        result = load.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(f"{args.base_url}: {result.summary()}")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
