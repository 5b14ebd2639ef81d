# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench, section 4: the request path, through Caddy (HTTPS) and straight to the registry.

wrk runs in a container inside Caddy's network namespace on the bench stand-in. Named
request_path, not requests: bench/ is first on sys.path and would shadow the library.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import urllib.request

import registry
from common import BENCH, BENCH_HTTPS, log, sh

WRK_IMAGE = "localhost/prpm-hobby/wrk:4"
WRK_SECONDS = int(os.environ.get("PRPM_BENCH_WRK_SECONDS", "10"))
# Few connections: the fixture registry answers /health with 503 when overloaded, and Caddy
# then marks it down; a run with error responses measures errors, not the path.
WRK_CONNECTIONS = int(os.environ.get("PRPM_BENCH_WRK_CONNECTIONS", "4"))


def _wrk(url: str, header: str | None = None) -> dict:
    caddy = sh(
        [
            "docker",
            "exec",
            BENCH,
            "docker",
            "ps",
            "-q",
            "-f",
            "label=com.docker.compose.service=caddy",
        ]
    ).stdout.strip()
    cmd = [
        "docker",
        "exec",
        BENCH,
        "docker",
        "run",
        "--rm",
        "--network",
        f"container:{caddy}",
        WRK_IMAGE,
        "-t2",
        f"-c{WRK_CONNECTIONS}",
        f"-d{WRK_SECONDS}s",
        "--latency",
    ]
    if header:
        cmd += ["-H", header]
    out = sh([*cmd, url]).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def ms(v: str) -> float:
        num, unit = re.match(r"([\d.]+)(\w+)", v).groups()
        return round(float(num) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": round(rps),
        "p50_ms": ms(lat["50"]),
        "p99_ms": ms(lat["99"]),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def request_path(real_user: str | None = None) -> dict:
    log("request path: wrk through Caddy (HTTPS) and straight to the registry")
    with subprocess.Popen(["docker", "save", WRK_IMAGE], stdout=subprocess.PIPE) as save:
        sh(["docker", "exec", "-i", BENCH, "docker", "load", "-q"], stdin=save.stdout)
    if real_user:
        results = {}
        header = f"User-Agent: {registry.EXEMPT_UA}"
        for path in registry.paths(real_user):
            caddy = _wrk(f"https://localhost{path}", header)
            direct = _wrk(f"http://registry:3111{path}", header)
            results[path] = {
                "caddy_https": caddy,
                "direct": direct,
                "rps_ratio": round(caddy["rps"] / direct["rps"], 2),
            }
        return results
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = json.dumps({"name": "bench-pkg", "version": "1.0.0", "description": "x" * 512})
    req = urllib.request.Request(
        f"https://localhost:{BENCH_HTTPS}/api/v1/packages/bench-pkg",
        data=body.encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10):  # noqa: S310 (local URL)
        pass
    results = {}
    for path in ("/health", "/api/v1/packages/bench-pkg"):
        caddy = _wrk(f"https://localhost{path}")
        direct = _wrk(f"http://registry:3111{path}")
        results[path] = {
            "caddy_https": caddy,
            "direct": direct,
            "rps_ratio": round(caddy["rps"] / direct["rps"], 2),
        }
    return results
