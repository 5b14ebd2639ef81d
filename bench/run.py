# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: cold converge vs a bare baseline, warm re-run, footprint, request path.

Runs beside the user's stand-in (its own containers and ports, bench/inventory) and writes
bench/results.json and docs/performance.md from what it measured. Benchmarks, not tests:
nothing here fails on a slow figure; the targets are compared and reported.

This file runs the parts in order and keeps their results; each part is a module of its own:
converge.py (cold and warm site.yml), baseline.py (the bare baseline), footprint.py,
request_path.py, deploys.py (deploys under load), backups.py, registry.py (the real PRPM
registry), report.py (the machine and docs/performance.md); common.py holds what they share.

    python bench/run.py                          everything (make bench)
    python bench/run.py --backups-only [HOST]    section 5 again on a converged host
    python bench/run.py --report-only            docs/performance.md again from results.json
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from datetime import UTC, datetime

import backups
import baseline
import converge
import deploys
import footprint
import registry
import report
import request_path
from common import BENCH, BENCH_HTTPS, HOST_IMAGE, ROOT, log, remove_container, sh

RESULTS = ROOT / "bench" / "results.json"
REPORT = ROOT / "docs" / "performance.md"
# Images make images builds; the bench stand-in's registry image is read from its deployed.json.
STACK_IMAGES = [
    "localhost/prpm-hobby/postgres:17",
    "localhost/prpm-hobby/redis:8",
    "localhost/prpm-hobby/caddy:2",
    "localhost/prpm-hobby/storage:1",
]


def main() -> int:
    if sys.argv[1:2] == ["--report-only"]:
        # After editing bench/levers.md or the report's text: nothing is measured.
        REPORT.write_text(report.render(json.loads(RESULTS.read_text())))
        log(f"wrote {REPORT.relative_to(ROOT)} from {RESULTS.relative_to(ROOT)}")
        return 0
    if sys.argv[1:2] == ["--backups-only"]:
        # Re-measure section 5 on an existing converged host (default: the make up stand-in).
        container = sys.argv[2] if len(sys.argv) > 2 else "prpm-hobby-standin"
        results = json.loads(RESULTS.read_text())
        results["backups"] = backups.backup_restore(container)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        REPORT.write_text(report.render(results))
        log(f"backups: {results['backups']}")
        return 0
    for image in [HOST_IMAGE, request_path.WRK_IMAGE, *STACK_IMAGES]:
        if sh(["docker", "image", "inspect", image], check=False).returncode != 0:
            raise SystemExit(f"bench: image {image} is missing: run `make images`")
    started = time.monotonic()
    results = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": report.machine(),
    }
    real = registry.enabled()
    results["registry"] = {"real": real}
    if real:
        log("registry image: cold build (no layer cache) and a rebuild after a source change")
        results["registry"]["build"] = registry.build()
        log(f"registry build {results['registry']['build']}")
    results["cold"] = converge.cold_converge()
    log(f"cold converge {results['cold']['wall_s']} s")
    results["baseline"] = baseline.baseline()
    log(f"baseline {results['baseline']['wall_s']} s")
    remove_container(baseline.BASELINE)
    results["warm"] = converge.warm_rerun()
    log(f"warm re-run {results['warm']['wall_s']} s, changed={results['warm']['changed']}")
    if real:
        log("workload: publish with the prpm CLI, then searches and package infos")
        results["registry"]["workload"] = registry.workload(BENCH, BENCH_HTTPS)
        log(f"workload {results['registry']['workload']}")
    # Kept as it goes: a later failure leaves what was measured in bench/results.json.
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    results["footprint"] = footprint.footprint()
    log(f"host used {results['footprint']['host_used_mib']} MiB")
    user = results["registry"]["workload"]["user"] if real else None
    results["requests"] = request_path.request_path(user)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    log(f"{deploys.DEPLOYS} deploys under {deploys.RATE:g} requests/s through Caddy")
    results["deploys"] = deploys.deploys(real)
    log(f"deploys: {results['deploys']['load']['failed']} failed requests")
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    results["backups"] = backups.backup_restore(BENCH)
    results["bench_wall_s"] = round(time.monotonic() - started, 1)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    REPORT.write_text(report.render(results))
    remove_container(BENCH)
    log(
        f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)} "
        f"in {results['bench_wall_s']} s"
    )
    print(shlex.join(["cat", str(REPORT.relative_to(ROOT))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
