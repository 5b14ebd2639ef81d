# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers of the host programs' tests: the default contract and a stand-in for the processes
the programs start (conftest makes the programs importable)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import prpm_stack

ROOT = Path(__file__).resolve().parents[3]

# The contract as prpm.hobby.registry_stack writes it for the default stack (schema 1).
CONTRACT: dict[str, Any] = {
    "schema": 1,
    "dir": "/opt/prpm",
    "project": "prpm",
    "compose_file": "/opt/prpm/compose.yaml",
    "services": ["postgres", "redis", "storage", "registry", "caddy"],
    "data_services": ["postgres", "redis", "storage"],
    "oneshot_services": ["migrate"],
    "registry_service": "registry",
    "database": {
        "service": "postgres",
        "name": "prpm_registry",
        "user": "prpm",
        "volume": "pgdata",
        "path": "/var/lib/docker/volumes/prpm_pgdata/_data",
    },
    "package_files": {
        "service": "storage",
        "volume": "packages",
        "path": "/var/lib/docker/volumes/prpm_packages/_data",
    },
    "backup_paths": ["/opt/prpm", "/var/lib/docker/volumes/prpm_caddy_data/_data"],
    "health": {
        "url": "https://localhost:8443/health",
        "validate_certs": False,
        "local_url": "https://127.0.0.1:443/health",
        "server_name": "localhost",
    },
    "storage": "local",
}


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


Answer = str | Callable[[list[str]], str] | Exception


class FakeHost:
    """Stands in for every process the host programs start (prpm_stack.run, attempt, pipe):
    records each call, and answers from rules. A rule matches when all its words are in the
    argv; the last rule added that matches wins; no rule: empty output, exit 0."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[str], dict[str, str]]] = []
        self.rules: list[tuple[tuple[str, ...], Answer, int]] = []

    def on(self, *words: str, out: Answer = "", rc: int = 0) -> None:
        self.rules.append((words, out, rc))

    def _answer(self, argv: list[str]) -> tuple[str, int]:
        for words, out, rc in reversed(self.rules):
            if all(w in argv for w in words):
                if isinstance(out, Exception):
                    raise out
                return (out(argv) if callable(out) else out), rc
        return "", 0

    def run(self, cmd: Sequence[str], *, env: Any = None, **_kw: Any) -> str:
        argv = list(cmd)
        self.calls.append(("run", argv, dict(env or {})))
        out, rc = self._answer(argv)
        if rc:
            raise prpm_stack.Failure(f"{argv[0]} exited {rc}")
        return out

    def attempt(self, cmd: Sequence[str], *, env: Any = None, **_kw: Any) -> Any:
        argv = list(cmd)
        self.calls.append(("attempt", argv, dict(env or {})))
        out, rc = self._answer(argv)
        return subprocess.CompletedProcess(argv, rc, out, "")

    def pipe(
        self,
        producer: Sequence[str],
        consumer: Sequence[str],
        *,
        producer_env: Any = None,
        **_kw: Any,
    ) -> str:
        argv = [*producer, "|", *consumer]
        self.calls.append(("pipe", argv, dict(producer_env or {})))
        out, rc = self._answer(argv)
        if rc:
            raise prpm_stack.Failure(f"{argv[0]} exited {rc}")
        return out

    def argvs(self, kind: str | None = None) -> list[list[str]]:
        return [argv for k, argv, _env in self.calls if kind in (None, k)]

    def find(self, *words: str) -> list[list[str]]:
        return [argv for argv in self.argvs() if all(w in argv for w in words)]


def ps_rows(rows: Sequence[dict[str, Any]]) -> str:
    """`docker compose ps --format json` output: one JSON object a line (Compose v2.21+)."""
    return "\n".join(json.dumps(r) for r in rows)


def healthy_rows(contract: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [{"Service": s, "State": "running", "Health": "healthy"} for s in contract["services"]]
    rows += [{"Service": s, "State": "exited", "ExitCode": 0} for s in contract["oneshot_services"]]
    return rows
