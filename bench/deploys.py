# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench, section 7: consecutive deploys under a steady load through Caddy.

`playbooks/deploy.yml` runs DEPLOYS times in a row on the converged bench stand-in while
tools/loadgen.py sends ~20 requests/s through Caddy (keep-alive, non-2xx and connection errors
counted, p99 latency). One deploy in the middle is of the fixture's broken image (it never turns
healthy): it must fail without a failed request. The others change the registry's
configuration, so each one starts a new container and switches Caddy to it:

- with the registry fixture (no PRPM_SOURCE), the registry image alternates 1.1.0 / 1.0.0;
- with the real registry (PRPM_SOURCE), the image is the one built from the checkout and each
  deploy changes its environment (registry_stack_registry_env), which recreates the container
  the same way without shipping a 570 MiB image each time.
"""

from __future__ import annotations

import json
import statistics
import sys
import time

from common import BENCH_HTTPS, ROOT, log

sys.path.insert(0, str(ROOT / "tools"))
import ansible_recap  # tools/ is not a package: on sys.path above
from loadgen import LoadGenerator

INVENTORY = ROOT / "bench" / "inventory"
DEPLOYS = 10
BROKEN_AT = 5  # the 6th deploy
FIXTURE = "localhost/prpm-hobby/registry:{}"
RATE = 20.0


def _deploy_vars(i: int, real: bool) -> dict:
    if i == BROKEN_AT:
        extra = {
            "registry_stack_registry_image": FIXTURE.format("broken"),
            "registry_stack_health_timeout": 60,
        }
        if real:
            # The broken fixture stands in for the built registry in this deploy (never serving).
            extra |= {
                "registry_stack_image_sources": {},
                "registry_stack_allow_registry_source_change": True,
            }
        return extra
    if real:
        return {"registry_stack_registry_env": {"PRPM_BENCH_DEPLOY": str(i)}}
    return {"registry_stack_registry_image": FIXTURE.format("1.1.0" if i % 2 == 0 else "1.0.0")}


def deploys(real: bool) -> dict:
    """DEPLOYS deploys under load: wall time of each, failed requests, latency."""
    runs = []
    with LoadGenerator(
        f"https://localhost:{BENCH_HTTPS}",
        paths=("/health",),
        rate=RATE,
        max_seconds=900,
        verify=False,
    ) as load:
        time.sleep(3)  # steady load before the first deploy
        for i in range(DEPLOYS):
            extra = _deploy_vars(i, real)
            start = time.monotonic()
            run = ansible_recap.ansible_playbook(
                ["-i", str(INVENTORY), "playbooks/deploy.yml", "-e", json.dumps(extra)], cwd=ROOT
            )
            wall = round(time.monotonic() - start, 1)
            broken = i == BROKEN_AT
            if (run.rc != 0) != broken:
                sys.stderr.write(run.output[-6000:])
                raise SystemExit(f"bench: deploy {i + 1} {'succeeded' if broken else 'failed'}")
            if broken and "NEVER RECEIVED A REQUEST" not in " ".join(run.output.split()):
                sys.stderr.write(run.output[-6000:])
                raise SystemExit("bench: the broken deploy did not fail before its switch")
            runs.append({"deploy": i + 1, "broken": broken, "wall_s": wall, "rc": run.rc})
            log(f"deploy {i + 1}/{DEPLOYS}{' (broken image)' if broken else ''}: {wall} s")
        time.sleep(3)
    result = load.result
    good = [r["wall_s"] for r in runs if not r["broken"]]
    return {
        "deploys": runs,
        "kind": "environment change of the built registry" if real else "fixture 1.0.0 <-> 1.1.0",
        "good_median_s": round(statistics.median(good), 1),
        "good_max_s": max(good),
        "broken_s": next(r["wall_s"] for r in runs if r["broken"]),
        "load": result.to_dict(),
    }
