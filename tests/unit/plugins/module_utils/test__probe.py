# SPDX-License-Identifier: GPL-3.0-or-later
"""Outage windows and probes, against a real local HTTP server."""

from __future__ import annotations

import http.server
import json
import threading
from typing import ClassVar

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils._probe import (
    OutageTracker,
    probe_once,
    probe_until,
    wait_healthy,
)


def test_no_failure_no_outage() -> None:
    t = OutageTracker()
    for at in (0.0, 0.5, 1.0):
        t.add(at, True)
    s = t.summary()
    assert (s["probes"], s["failures"], s["unavailable_seconds"], s["outages"]) == (3, 0, 0, [])
    assert s["available_at_end"] is True
    assert s["duration_seconds"] == 1.0


def test_outage_from_first_failure_to_next_success() -> None:
    t = OutageTracker()
    series = [
        (0, True),
        (1, False, "refused"),
        (2, False, "HTTP 502"),
        (4.5, True),
        (5, True),
        (6, False, "timeout"),
        (7, True),
    ]
    for at, ok, *detail in series:
        t.add(at, ok, *detail)
    s = t.summary()
    assert s["failures"] == 3
    assert [(o["start"], o["end"], o["seconds"], o["error"]) for o in s["outages"]] == [
        (1, 4.5, 3.5, "HTTP 502"),
        (6, 7, 1, "timeout"),
    ]
    assert s["unavailable_seconds"] == 4.5
    assert s["longest_outage_seconds"] == 3.5


def test_outage_still_open_at_the_end() -> None:
    t = OutageTracker()
    for at, ok in [(0, True), (1, False), (3, False)]:
        t.add(at, ok)
    s = t.summary()
    assert s["outages"][-1]["open"] is True
    assert s["unavailable_seconds"] == 2
    assert s["available_at_end"] is False


def test_probes_must_be_in_order() -> None:
    t = OutageTracker()
    t.add(2, True)
    with pytest.raises(ValueError, match="time order"):
        t.add(1, True)


class _Handler(http.server.BaseHTTPRequestHandler):
    responses: ClassVar[dict[str, tuple[int, bytes]]] = {}

    def do_GET(self) -> None:
        code, body = self.responses[self.path]
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_probe_once_reads_the_health_status(server) -> None:
    _Handler.responses = {
        "/ok": (200, json.dumps({"status": "ok"}).encode()),
        "/degraded": (200, json.dumps({"status": "degraded"}).encode()),
        "/down": (503, b"no"),
        "/plain": (200, b"hello"),
    }
    assert probe_once(server + "/ok") == (True, "ok")
    assert probe_once(server + "/degraded") == (False, "status degraded")
    assert probe_once(server + "/down") == (False, "HTTP 503")
    assert probe_once(server + "/plain") == (True, "HTTP 200")
    # The health gate's probe: a 200 that is not {"status": "ok"} is not healthy.
    assert probe_once(server + "/plain", require_status=True) == (
        False,
        "HTTP 200 without a JSON status",
    )
    assert probe_once(server + "/ok", require_status=True) == (True, "ok")
    ok, detail = probe_once("http://127.0.0.1:9/health", timeout=1)
    assert ok is False
    assert detail


def test_probe_until_stops_on_the_stop_file(tmp_path) -> None:
    clock = iter(range(100))
    stop = tmp_path / "stop"
    calls = []

    def fake_probe(url, *, validate_certs, timeout):
        calls.append(url)
        if len(calls) == 4:
            stop.touch()
        return (len(calls) not in (2, 3), "down")

    result = probe_until(
        "http://x/health",
        str(stop),
        interval=0,
        clock=lambda: next(clock),
        sleep=lambda _s: None,
        probe=fake_probe,
    )
    assert len(calls) == 4
    assert result["stopped_by"] == "stop_file"
    assert result["failures"] == 2
    assert len(result["outages"]) == 1


class _FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _probe_sequence(results: list[tuple[bool, str]]):
    calls = iter(results)

    def probe(
        url: str, *, validate_certs: bool, timeout: float, require_status: bool
    ) -> tuple[bool, str]:
        assert require_status  # the gate wants {"status": "ok"}, not any 200
        return next(calls)

    return probe


def test_wait_healthy_returns_at_the_first_healthy_probe() -> None:
    clock = _FakeClock()
    probe = _probe_sequence([(False, "HTTP 502"), (False, "HTTP 503"), (True, "ok")])
    result = wait_healthy(
        "https://x/health", wait_seconds=60, interval=3, clock=clock, sleep=clock.sleep, probe=probe
    )
    assert result == {"healthy": True, "detail": "ok", "probes": 3, "waited_seconds": 6.0}


def test_wait_healthy_gives_up_at_the_deadline_with_the_last_detail() -> None:
    clock = _FakeClock()
    probe = _probe_sequence([(False, "HTTP 502")] * 100)
    result = wait_healthy(
        "https://x/health", wait_seconds=10, interval=3, clock=clock, sleep=clock.sleep, probe=probe
    )
    assert not result["healthy"]
    assert result["detail"] == "HTTP 502"
    assert result["waited_seconds"] == 10.0
    assert result["probes"] == 5  # at 0, 3, 6, 9 and at the deadline


def test_wait_healthy_zero_probes_once() -> None:
    clock = _FakeClock()
    probe = _probe_sequence([(False, "status degraded"), (True, "ok")])
    result = wait_healthy(
        "https://x/health", wait_seconds=0, clock=clock, sleep=clock.sleep, probe=probe
    )
    assert result == {
        "healthy": False,
        "detail": "status degraded",
        "probes": 1,
        "waited_seconds": 0.0,
    }
