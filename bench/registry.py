# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench, the real PRPM registry (PRPM_SOURCE): build, workload, request paths.

The stand-in runs the registry built from the checkout when PRPM_SOURCE is set (the local
inventory's group_vars); these measure what only the real registry has: its image build, a
publish/search workload with PRPM's own CLI before the footprint is read, and the request path
for /health, search and package info.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / ".collections"))

import prpm_cli  # noqa: E402 (tools/ is not a package)

from ansible_collections.prpm.hobby.plugins.module_utils import _registry_build as rb  # noqa: E402

SOURCE = Path(os.environ.get("PRPM_SOURCE", ""))
WORK = ROOT / ".ansible" / "bench-registry"
RECIPE = ROOT / "roles" / "registry_stack" / "files" / "registry-image"
BASE_IMAGE = "localhost/prpm-hobby/stack-base:debian13"
USER = "bench-user"
PACKAGES = int(os.environ.get("PRPM_BENCH_PACKAGES", "10"))
READS = int(os.environ.get("PRPM_BENCH_READS", "300"))
# The registry limits every client to 100 requests/minute, /health included, except requests
# whose User-Agent starts with prpm-cli/. The load generators use that prefix, so the figures
# measure the request path, not the limiter.
EXEMPT_UA = "prpm-cli/bench"


def enabled() -> bool:
    return (SOURCE / "packages" / "registry" / "package.json").is_file()


def _timed_build(context: Path, tag: str, no_cache: bool) -> float:
    argv = ["docker", "build", "-q", "-t", tag, "--build-arg", f"BASE_IMAGE={BASE_IMAGE}"]
    if no_cache:
        argv.append("--no-cache")
    start = time.monotonic()
    subprocess.run([*argv, str(context)], check=True, capture_output=True)
    return round(time.monotonic() - start, 1)


def build() -> dict:
    """Cold build (no layer cache) and a rebuild after a source change, of the registry image."""
    extra_ca = rb.read_extra_ca(os.environ.get("PRPM_EXTRA_CA_FILE", ""))
    checkout = rb.read_checkout(str(SOURCE))
    tag = "localhost/prpm-bench/registry:build"
    with tempfile.TemporaryDirectory(prefix="prpm-bench-build-") as tmp:
        context = rb.stage_context(checkout, RECIPE, extra_ca, Path(tmp) / "staging")
        cold = _timed_build(context, tag, no_cache=True)
        index = context / "sources" / "packages" / "registry" / "src" / "index.ts"
        index.write_text(index.read_text() + "\n// prpm.hobby bench: a source change\n")
        rebuild = _timed_build(context, tag, no_cache=False)
    size = int(
        subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Size}}", tag],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    subprocess.run(["docker", "image", "rm", tag], check=False, capture_output=True)
    return {
        "version": checkout.version,
        "source_id": checkout.source_id,
        "cold_build_s": cold,
        "source_change_rebuild_s": rebuild,
        "image_mib": round(size / 2**20),
    }


def _caddy_root(container: str) -> str:
    return subprocess.run(
        [
            "docker",
            "exec",
            container,
            "docker",
            "compose",
            "--project-directory",
            "/opt/prpm",
            "exec",
            "-T",
            "caddy",
            "cat",
            prpm_cli.CADDY_ROOT,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def _get(url: str, ca: Path) -> int:
    req = urllib.request.Request(url, headers={"User-Agent": EXEMPT_UA})  # noqa: S310 (stand-in)
    ctx = ssl.create_default_context(cafile=str(ca))
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:  # noqa: S310
        resp.read()
        return resp.status


def workload(container: str, https_port: int) -> dict:
    """Register, publish PACKAGES packages with the CLI, then READS searches and infos."""
    url = f"https://localhost:{https_port}"
    ca = prpm_cli.ca_bundle(_caddy_root(container), WORK / "ca-bundle.pem")
    entry = prpm_cli.build(SOURCE, WORK)
    home = WORK / "home"
    shutil.rmtree(home, ignore_errors=True)
    client = prpm_cli.Client(entry, url, home, ca)
    client.register(f"{USER}-{int(time.time())}", "bench-pass-123")
    user = json.loads((home / ".prpmrc").read_text())["username"]
    start = time.monotonic()
    published = 0
    for i in range(PACKAGES):
        proc = client.publish(
            WORK / "pkgs" / f"p{i}",
            f"bench-pkg-{i}",
            "1.0.0",
            {f"bench-pkg-{i}.md": f"# Bench package {i}\n\n" + "text " * 200},
        )
        published += proc.returncode == 0
    publish_s = time.monotonic() - start
    errors = 0
    start = time.monotonic()
    for i in range(READS):
        path = (
            f"/api/v1/search?q=bench-pkg-{i % PACKAGES}"
            if i % 2 == 0
            else "/api/v1/packages/"
            + urllib.parse.quote(f"@{user}/bench-pkg-{i % PACKAGES}", safe="")
        )
        try:
            errors += _get(url + path, ca) != 200
        except OSError:
            errors += 1
    reads_s = time.monotonic() - start
    return {
        "user": user,
        "published": published,
        "publish_s_each": round(publish_s / PACKAGES, 2),
        "reads": READS,
        "read_errors": errors,
        "reads_per_s": round(READS / reads_s, 1),
    }


def paths(user: str) -> list[str]:
    """The request paths measured for the real registry."""
    return [
        "/health",
        "/api/v1/search?q=bench-pkg-1",
        "/api/v1/packages/" + urllib.parse.quote(f"@{user}/bench-pkg-1", safe=""),
    ]
