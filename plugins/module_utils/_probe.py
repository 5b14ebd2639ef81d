# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Measure a URL's unavailability: probe it at an interval, record every outage window."""

from __future__ import annotations

import json
import time
import urllib.error
from pathlib import Path

from ansible.module_utils.urls import open_url

__all__ = ["OutageTracker", "probe_once", "probe_until", "wait_healthy"]


class OutageTracker:
    """Outage windows from a series of (time, ok) probes.

    An outage starts at the first failed probe and ends at the next successful one; one that
    lasts until the last probe ends there (``open`` is then true).
    """

    def __init__(self) -> None:
        self.probes = 0
        self.failures = 0
        self.first: float | None = None
        self.last: float | None = None
        self.outages: list[dict] = []
        self._down_since: float | None = None
        self._last_error = ""

    def add(self, at: float, ok: bool, detail: str = "") -> None:
        if self.last is not None and at < self.last:
            raise ValueError("probes must be added in time order")
        self.probes += 1
        self.first = at if self.first is None else self.first
        self.last = at
        if ok:
            if self._down_since is not None:
                self._close(at, still_open=False)
        else:
            self.failures += 1
            self._last_error = detail
            if self._down_since is None:
                self._down_since = at

    def _close(self, end: float, *, still_open: bool) -> None:
        start = self._down_since if self._down_since is not None else end
        self.outages.append(
            {
                "start": round(start, 3),
                "end": round(end, 3),
                "seconds": round(end - start, 3),
                "open": still_open,
                "error": self._last_error,
            }
        )
        self._down_since = None

    def summary(self) -> dict:
        outages = list(self.outages)
        if self._down_since is not None and self.last is not None:
            start = self._down_since
            outages.append(
                {
                    "start": round(start, 3),
                    "end": round(self.last, 3),
                    "seconds": round(self.last - start, 3),
                    "open": True,
                    "error": self._last_error,
                }
            )
        return {
            "probes": self.probes,
            "failures": self.failures,
            "duration_seconds": round((self.last or 0) - (self.first or 0), 3),
            "unavailable_seconds": round(sum(o["seconds"] for o in outages), 3),
            "longest_outage_seconds": round(max((o["seconds"] for o in outages), default=0), 3),
            "outages": outages,
            "available_at_end": not (outages and outages[-1]["open"]),
        }


def probe_once(
    url: str, *, validate_certs: bool = True, timeout: float = 5, require_status: bool = False
) -> tuple[bool, str]:
    """GET url; healthy when HTTP 200 and, for a JSON body with a status, status is ok.

    With require_status, only a JSON body whose status is ok is healthy (the registry's /health).
    """
    try:
        resp = open_url(
            url,
            validate_certs=validate_certs,
            timeout=timeout,
            headers={"User-Agent": "prpm.hobby-http-probe"},
        )
        body = resp.read(65536)
        code = resp.status
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return False, str(getattr(exc, "reason", exc))
    if code != 200:
        return False, f"HTTP {code}"
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict) or "status" not in data:
        return (False, "HTTP 200 without a JSON status") if require_status else (True, "HTTP 200")
    if data["status"] != "ok":
        return False, f"status {data['status']}"
    return True, "ok"


def probe_until(  # noqa: PLR0913 - keyword-only knobs, and injectable clock/sleep/probe for tests
    url: str,
    stop_file: str,
    *,
    interval: float = 0.5,
    max_seconds: float = 7200,
    validate_certs: bool = True,
    timeout: float = 5,
    clock=time.time,
    sleep=time.sleep,
    probe=probe_once,
) -> dict:
    """Probe until stop_file exists (or max_seconds pass); return the tracker's summary."""
    tracker = OutageTracker()
    deadline = clock() + max_seconds
    while True:
        at = clock()
        ok, detail = probe(url, validate_certs=validate_certs, timeout=timeout)
        tracker.add(at, ok, detail)
        if Path(stop_file).exists() or clock() >= deadline:
            break
        sleep(max(0.0, interval - (clock() - at)))
    result = tracker.summary()
    result["stopped_by"] = "stop_file" if Path(stop_file).exists() else "max_seconds"
    return result


def wait_healthy(  # noqa: PLR0913 - keyword-only knobs, and injectable clock/sleep/probe for tests
    url: str,
    *,
    wait_seconds: float = 300,
    interval: float = 3,
    validate_certs: bool = True,
    timeout: float = 10,
    clock=time.monotonic,
    sleep=time.sleep,
    probe=probe_once,
) -> dict:
    """Probe url until it answers {"status": "ok"} or wait_seconds pass (0: probe once).

    Returns healthy, the last detail, the number of probes and the seconds waited.
    """
    started = clock()
    deadline = started + max(0.0, wait_seconds)
    probes = 0
    while True:
        at = clock()
        ok, detail = probe(url, validate_certs=validate_certs, timeout=timeout, require_status=True)
        probes += 1
        if ok or clock() >= deadline:
            break
        sleep(max(0.0, min(interval - (clock() - at), deadline - clock())))
    return {
        "healthy": ok,
        "detail": detail,
        "probes": probes,
        "waited_seconds": round(clock() - started, 1),
    }
