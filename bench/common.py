# SPDX-License-Identifier: GPL-3.0-or-later
"""What the parts of make bench share: paths, the bench stand-in, running commands.

The bench stand-in runs beside the user's (its own container and ports, bench/inventory).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOST_IMAGE = "localhost/prpm-hobby/host:debian13"
BENCH = "prpm-bench-standin"
BENCH_HTTPS = 18543


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def sh(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    check = kwargs.pop("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, check=check, **kwargs)


def remove_container(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", f"{name}-docker"], capture_output=True, check=False)
