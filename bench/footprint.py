# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench, section 3: the bench stand-in's memory after it has idled.

Per container from `docker stats`; for the whole host, the PSS of every process in it.
"""

from __future__ import annotations

import json
import os
import re
import time

from common import BENCH, log, sh

IDLE_SECONDS = int(os.environ.get("PRPM_BENCH_IDLE_SECONDS", "120"))


def _mib(text: str) -> float:
    value, unit = re.match(r"([\d.]+)\s*([KMG]i?B|B)", text).groups()
    factor = {
        "B": 1 / 2**20,
        "KiB": 1 / 1024,
        "KB": 1 / 1024,
        "MiB": 1,
        "MB": 1,
        "GiB": 1024,
        "GB": 1024,
    }[unit]
    return round(float(value) * factor, 1)


_PSS_SCRIPT = """
import glob
total = 0
for path in glob.glob('/proc/[0-9]*/smaps_rollup'):
    try:
        with open(path) as fh:
            total += sum(int(ln.split()[1]) for ln in fh if ln.startswith('Pss:'))
    except OSError:
        pass
print(total)
"""


def footprint() -> dict:
    log(f"footprint: {IDLE_SECONDS} s idle")
    time.sleep(IDLE_SECONDS)
    inner = sh(
        ["docker", "exec", BENCH, "docker", "stats", "--no-stream", "--format", "{{json .}}"]
    ).stdout
    containers = {}
    for line in inner.splitlines():
        row = json.loads(line)
        containers[row["Name"]] = _mib(row["MemUsage"].split("/")[0].strip())
    # Every process of the host (systemd, sshd, dockerd, containerd, the stack...), as PSS so
    # shared pages count once; the stand-in's own cgroup is empty on cgroup v1 (systemd inside
    # moves its processes), and its `free` shows the machine's memory.
    pss_kib = sh(["docker", "exec", BENCH, "python3", "-c", _PSS_SCRIPT]).stdout.strip()
    host_used = round(int(pss_kib) / 1024, 1)
    swaps = sh(["docker", "exec", BENCH, "cat", "/proc/swaps"]).stdout.strip().splitlines()[1:]
    stack = round(sum(containers.values()), 1)
    return {
        "containers_mib": containers,
        "stack_mib": stack,
        "host_system_mib": round(host_used - stack, 1),
        "host_used_mib": host_used,
        "swap_devices": swaps,
        "idle_s": IDLE_SECONDS,
    }
