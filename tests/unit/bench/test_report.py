# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/report.py: docs/performance.md is rendered from the results alone, and says the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import report  # bench/ is a folder of scripts: on sys.path above

ROOT = report.ROOT


def _results(**changes: dict) -> dict:
    """A fixture-registry run that meets every target, with some sections replaced."""
    results = {
        "date": "2026-01-02 03:04 UTC",
        "machine": {
            "cpus": 2,
            "cpu": "Test CPU",
            "memory_gib": 1.0,
            "kernel": "6.1",
            "docker": "27.0",
            "ansible": "ansible [core 2.19.0]",
            "python": "3.11.0",
        },
        "registry": {"real": False},
        "cold": {"wall_s": 60.0, "tasks": 180, "changed": 80, "roles_s": {"base": 20.0}},
        "baseline": {"wall_s": 50.0, "steps": {"host_s": 1.0, "up_s": 9.0}, "packages": ["sudo"]},
        "warm": {"wall_s": 19.0, "tasks": 155, "changed": 0, "roles_s": {"base": 9.0}},
        "footprint": {
            "containers_mib": {"prpm-registry-1": 80.0, "prpm-caddy-1": 20.0},
            "stack_mib": 100.0,
            "host_system_mib": 250.0,
            "host_used_mib": 350.0,
            "swap_devices": [],
            "idle_s": 120,
        },
        "requests": {
            "/health": {
                "caddy_https": {
                    "rps": 1000,
                    "p50_ms": 3.0,
                    "p99_ms": 9.0,
                    "requests": 9,
                    "non_2xx": 0,
                },
                "direct": {"rps": 2000, "p50_ms": 1.0, "p99_ms": 4.0, "requests": 19, "non_2xx": 1},
                "rps_ratio": 0.5,
            }
        },
    }
    results.update(changes)
    return results


def test_committed_report_renders_from_committed_results() -> None:
    """docs/performance.md is what bench/results.json renders to (bench/run.py --report-only)."""
    results = json.loads((ROOT / "bench" / "results.json").read_text())
    assert report.render(results) == (ROOT / "docs" / "performance.md").read_text()


def test_summary_rows_and_sections() -> None:
    text = report.render(_results())
    assert "| Cold converge / bare baseline | 60.0 s / 50.0 s = **1.2** | <= 1.5 | yes |" in text
    assert (
        "| Warm re-run of site.yml | **19.0 s**, 155 tasks, changed=0 | <= 20 s, changed=0 | yes |"
        in text
    )
    assert "| **host used**: PSS of every process on the host | **350.0** |" in text
    assert (
        "| `GET /health` | 1000, 3.0 ms, 9.0 ms, 0/9 | 2000, 1.0 ms, 4.0 ms, 1/19 | 0.5 |" in text
    )
    # Containers sorted by name; the fixture registry said so; no section 5 or 6 without data.
    assert text.index("| prpm-caddy-1 |") < text.index("| prpm-registry-1 |")
    assert "The registry here is the fixture" in text
    assert "## 5." not in text
    assert "## 6." not in text


@pytest.mark.parametrize(
    ("changes", "row"),
    [
        pytest.param(
            {"cold": {"wall_s": 100.0, "tasks": 1, "changed": 1, "roles_s": {}}},
            "| Cold converge / bare baseline | 100.0 s / 50.0 s = **2.0** | <= 1.5 | no |",
            id="cold-too-slow",
        ),
        pytest.param(
            {"warm": {"wall_s": 10.0, "tasks": 155, "changed": 1, "roles_s": {}}},
            "| **10.0 s**, 155 tasks, changed=1 | <= 20 s, changed=0 | no |",
            id="warm-changed",
        ),
    ],
)
def test_missed_targets_say_no(changes: dict, row: str) -> None:
    assert row in report.render(_results(**changes))


def test_swap_device_misses_the_memory_target() -> None:
    results = _results()
    results["footprint"]["swap_devices"] = ["/swapfile file 1048572 0 -2"]
    assert "(swap devices: 1) | <= 600 MiB, swap unused | no |" in report.render(results)
