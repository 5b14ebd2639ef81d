# SPDX-License-Identifier: GPL-3.0-or-later
"""PRPM's own `prpm` CLI, built from a PRPM checkout on this machine, as a user runs it.

Used by the molecule scenario `registry` and by `make bench`: build once per checkout (the
build is reused while the CLI's sources and the lockfile are unchanged), register a user with
password auth, write ~/.prpmrc, run commands against a registry URL.

Standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

WORKSPACES = ("packages/types", "packages/converters", "packages/registry-client", "packages/cli")
CADDY_ROOT = "/data/caddy/pki/authorities/local/root.crt"


def build(source: Path, cache: Path) -> Path:
    """Build the CLI from a copy of the checkout; returns its dist/index.js."""
    digest = hashlib.sha256()
    for rel in (
        "package-lock.json",
        *(f"{w}/package.json" for w in WORKSPACES),
        *(f"{w}/src" for w in WORKSPACES),
    ):
        path = source / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(source)).encode() + b"\0" + file.read_bytes())
    target = cache / f"cli-{digest.hexdigest()[:12]}"
    entry = target / "packages" / "cli" / "dist" / "index.js"
    if entry.exists():
        return entry
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        source, target, ignore=shutil.ignore_patterns("node_modules", "dist", ".git"), symlinks=True
    )
    npm = ["npm", "--no-audit", "--no-fund", "--no-update-notifier"]
    steps = [[*npm, "ci", *(a for w in WORKSPACES for a in ("-w", w))]]
    steps += [[*npm, "run", "build", "-w", w] for w in WORKSPACES]
    for step in steps:
        proc = subprocess.run(step, cwd=target, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(step)} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return entry


def ca_bundle(caddy_root_pem: str, dest: Path) -> Path:
    """This machine's CA bundle plus Caddy's local root (Node and urllib trust both)."""
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(
        (system.read_text() if system.exists() else "") + "\n" + caddy_root_pem, encoding="utf-8"
    )
    return dest


def api(url: str, path: str, ca: Path, body: dict | None = None) -> tuple[int, dict]:
    """A JSON request to the registry (no redirects followed)."""
    req = urllib.request.Request(  # noqa: S310 (the registry under test)
        url + path, method="POST" if body is not None else "GET"
    )
    req.add_header("Content-Type", "application/json")
    data = json.dumps(body).encode() if body is not None else None
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with urllib.request.urlopen(req, data=data, context=ctx, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@dataclass
class Client:
    """`prpm` for one user: its own HOME (~/.prpmrc), the registry URL, the CA bundle."""

    entry: Path
    url: str
    home: Path
    ca: Path

    def register(self, username: str, password: str) -> None:
        status, body = api(
            self.url,
            "/api/v1/auth/register",
            self.ca,
            {"username": username, "email": f"{username}@example.org", "password": password},
        )
        if status not in (200, 201) or "token" not in body:
            raise RuntimeError(f"register {username}: HTTP {status} {body}")
        rc = {
            "registryUrl": self.url,
            "token": body["token"],
            "username": username,
            "telemetryEnabled": False,
        }
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / ".prpmrc").write_text(json.dumps(rc), encoding="utf-8")
        (self.home / ".prpmrc").chmod(0o600)

    def run(
        self, *args: str, cwd: Path | None = None, timeout: int = 180
    ) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            HOME=str(self.home),
            PRPM_REGISTRY_URL=self.url,
            NODE_EXTRA_CA_CERTS=str(self.ca),
            NO_COLOR="1",
        )
        return subprocess.run(
            ["node", str(self.entry), *args],
            cwd=cwd or self.home,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def publish(
        self, directory: Path, name: str, version: str, files: dict[str, str]
    ) -> subprocess.CompletedProcess:
        """Write a generic package (prpm.json + files) and publish it."""
        directory.mkdir(parents=True, exist_ok=True)
        for filename, content in files.items():
            (directory / filename).write_text(content, encoding="utf-8")
        manifest = {
            "name": name,
            "version": version,
            "description": f"{name}: a package published by prpm.hobby's tests.",
            "format": "generic",
            "files": sorted(files),
        }
        (directory / "prpm.json").write_text(json.dumps(manifest), encoding="utf-8")
        return self.run("publish", cwd=directory)
