#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by prpm.hobby.registry_stack in /usr/local/lib/prpm-hobby/, with the command
# /usr/local/sbin/prpm-stack linked to it. The host programs prpm-backup and prpm-patch
# (same directory) import it: Python puts the resolved directory of the script a symlink
# points at first on sys.path. Debian's python3 and its standard library only.
"""prpm-stack: the PRPM stack as its contract describes it (status, health, stop, start, switch).

The stack's facts (compose project, services, database, package files, health URL) are written
once, by prpm.hobby.registry_stack, to the contract file /etc/prpm-hobby/stack.json. This
module reads and validates that file and holds what the host programs share: their errors,
logging, subprocess calls, JSON state files, pings, and the Stack (compose, service states,
health through Caddy, stop and start in order).
"""

from __future__ import annotations

import argparse
import functools
import http.client
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

PROG = "prpm-stack"
CONTRACT = "/etc/prpm-hobby/stack.json"
SCHEMA = 1
# Front services stop with this timeout (they hold no data); data services get their own.
FRONT_STOP_TIMEOUT = 5
DATA_STOP_TIMEOUT = 60
HEALTH_POLL_SECONDS = 3
# A switch: how long the old registry container may take to finish what it serves, how long
# Caddy may take to answer healthy from the new one, and how often both are polled.
DRAIN_TIMEOUT = 30
SWITCH_GATE_TIMEOUT = 30
SWITCH_POLL_SECONDS = 0.5
# The registry's stop grace (its compose stop_grace_period): SIGTERM, then in-flight requests
# finish before it exits.
REGISTRY_STOP_TIMEOUT = 20
SETUP_HINT = "run prpm.hobby.registry_stack first"


class Failure(Exception):
    """A step failed; the message says which and why."""


class CandidateFailed(Failure):
    """The new registry container failed before it served a request; the old one still serves."""


def log(prog: str, msg: str) -> None:
    """One line on stdout (the journal), prefixed with the program's name."""
    print(f"{prog}: {msg}", flush=True)


def _describe(cmd: Sequence[str]) -> str:
    text = shlex.join(cmd)
    return text if len(text) <= 200 else text[:200] + " ..."


def run(
    cmd: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: IO[Any] | int | None = None,
    capture: bool = True,
    timeout: float | None = None,
) -> str:
    """Run cmd (never a shell); its stdout when capture, else ''. Failure when it fails.

    env holds variables added to this process's environment.
    """
    try:
        proc = subprocess.run(
            list(cmd),
            env=dict(os.environ, **(env or {})),
            stdin=stdin,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"{_describe(cmd)} did not finish in {timeout} s") from exc
    except OSError as exc:
        raise Failure(f"{_describe(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        raise Failure(f"{_describe(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout if capture else ""


def attempt(
    cmd: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a probe: its exit status, stdout and stderr, whatever they are (rc 127: not found)."""
    try:
        return subprocess.run(
            list(cmd),
            env=dict(os.environ, **(env or {})),
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(list(cmd), 127, "", str(exc))


def pipe(
    producer: Sequence[str],
    consumer: Sequence[str],
    *,
    producer_env: Mapping[str, str] | None = None,
    producer_name: str = "",
) -> str:
    """producer | consumer; the consumer's stdout.

    A failed producer is the cause to report (as producer_name, else its argv), not the
    truncated input the consumer saw.
    """
    try:
        source = subprocess.Popen(
            list(producer),
            env=dict(os.environ, **(producer_env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as exc:
        raise Failure(f"{_describe(producer)}: {exc}") from exc
    consumer_error = None
    out = ""
    try:
        out = run(consumer, stdin=source.stdout)
    except Failure as exc:
        consumer_error = exc
    finally:
        if source.stdout:
            source.stdout.close()
        err = source.stderr.read().decode("utf-8", "replace") if source.stderr else ""
        if source.stderr:
            source.stderr.close()
        rc = source.wait()
    if rc != 0:
        name = producer_name or _describe(producer)
        raise Failure(f"{name} exited {rc}: {err.strip()[-1000:]}")
    if consumer_error:
        raise consumer_error
    return out


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write data as JSON atomically: readers see the old file or the new one, never a part."""
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: str | Path, what: str, hint: str = "") -> Any:
    """The JSON in path; Failure naming the file (and the hint) when it is missing or broken."""
    try:
        with Path(path).open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise Failure(f"{what} {path} is missing" + (f": {hint}" if hint else "")) from None
    except (OSError, ValueError) as exc:
        raise Failure(f"{what} {path} cannot be read: {exc}") from None


def ping(url: str, ok: bool, message: str = "", *, prog: str = PROG, timeout: float = 10) -> None:
    """Dead man's switch, healthchecks.io style: POST <url> on success, <url>/fail on failure.

    No URL, no ping. A ping that fails is logged, never fatal.
    """
    if not url:
        return
    target = url.rstrip("/") + ("" if ok else "/fail")
    if urllib.parse.urlsplit(target).scheme not in ("http", "https"):
        log(prog, f"ping to {target} skipped: not an http(s) URL")
        return
    try:
        body = message.encode()[:10000]
        req = urllib.request.Request(target, data=body, method="POST")  # noqa: S310 - http(s) only
        with urllib.request.urlopen(req, timeout=timeout):  # noqa: S310 - http(s) only, as above
            pass
    except (OSError, ValueError) as exc:
        log(prog, f"ping to {target} failed: {exc}")


# --- Validation of the contract and the programs' configurations ----------------------------
class Nullable:
    """A value that may be null (JSON null), else matches spec."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec


class Text(str):
    """Spec of a string that may be empty (str alone means a non-empty one)."""

    __slots__ = ()


Spec = Any
# A spec is a type (str, Text, int, float, bool, dict), a list holding one spec (a list of
# those), a dict of key -> spec (keys ending in "?" are optional), or Nullable(spec).
_TYPE_NAMES = {
    str: "a string",
    Text: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dict: "an object",
    list: "a list",
}


def _type_ok(value: Any, kind: type) -> bool:
    if kind is Text:
        return isinstance(value, str)
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind is str:
        return isinstance(value, str) and value != ""
    return isinstance(value, kind)


def _check_dict(value: Any, spec: Mapping[str, Spec], where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"'{where or 'the file'}' must be an object"]
    problems = []
    for name, sub in spec.items():
        key = name.rstrip("?")
        path = f"{where}.{key}" if where else key
        if key in value:
            problems += check(value[key], sub, path)
        elif not name.endswith("?"):
            problems.append(f"'{path}' is missing")
    return problems


def check(value: Any, spec: Spec, where: str = "") -> list[str]:
    """What is wrong with value against spec: one line a problem, each naming its key."""
    if isinstance(spec, Nullable):
        return [] if value is None else check(value, spec.spec, where)
    if isinstance(spec, dict):
        return _check_dict(value, spec, where)
    if isinstance(spec, list):
        if not isinstance(value, list):
            return [f"'{where}' must be a list"]
        return [p for i, item in enumerate(value) for p in check(item, spec[0], f"{where}[{i}]")]
    if _type_ok(value, spec):
        return []
    kind = _TYPE_NAMES.get(spec, spec.__name__)
    return [f"'{where}' must be {kind}" + (" (not empty)" if spec is str else "")]


CONTRACT_SPEC: dict[str, Spec] = {
    "schema": int,
    "dir": str,
    "project": str,
    "compose_file": str,
    "services": [str],
    "data_services": [str],
    "oneshot_services": [str],
    "registry_service": str,
    "database": {"service": str, "name": str, "user": str, "volume": str, "path": str},
    "package_files": Nullable({"service": str, "volume": str, "path": str}),
    "backup_paths": [str],
    "health": {"url": str, "validate_certs": bool, "local_url": str, "server_name": str},
    "storage": str,
}


def _consistency(contract: Mapping[str, Any]) -> list[str]:
    services = contract["services"]
    problems = []
    if not services:
        problems.append("'services' is empty")
    problems += [
        f"'data_services' names {s}, which is not in 'services'"
        for s in contract["data_services"]
        if s not in services
    ]
    problems += [
        f"'oneshot_services' names {s}, which is also in 'services' (long-running)"
        for s in contract["oneshot_services"]
        if s in services
    ]
    named = [("registry_service", contract["registry_service"])]
    named.append(("database.service", contract["database"]["service"]))
    if contract["package_files"]:
        named.append(("package_files.service", contract["package_files"]["service"]))
    problems += [
        f"'{key}' is {s}, which is not in 'services'" for key, s in named if s not in services
    ]
    return problems


def validate_contract(contract: Any, path: str | Path = CONTRACT) -> dict[str, Any]:
    """The contract when it is one this module reads; Failure naming the file and the key."""
    if not isinstance(contract, dict):
        raise Failure(f"the stack contract {path} is not a JSON object: {SETUP_HINT}")
    schema = contract.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool) or schema != SCHEMA:
        raise Failure(
            f"the stack contract {path} has 'schema' {schema!r}; this "
            f"prpm_stack.py reads schema {SCHEMA}: run prpm.hobby.registry_stack of the same "
            "collection version as the host programs"
        )
    problems = check(contract, CONTRACT_SPEC)
    if not problems:
        problems = _consistency(contract)
    if problems:
        raise Failure(
            f"the stack contract {path} is not valid: {'; '.join(problems)} ({SETUP_HINT})"
        )
    return contract


def load_contract(path: str | Path = CONTRACT) -> dict[str, Any]:
    """The validated stack contract in path (written by prpm.hobby.registry_stack)."""
    return validate_contract(read_json(path, "the stack contract", SETUP_HINT), path)


def load_config(path: str | Path, spec: Mapping[str, Spec]) -> dict[str, Any]:
    """A program's JSON configuration, checked against spec; Failure naming file and key."""
    config = read_json(path, "the configuration")
    problems = check(config, dict(spec))
    if problems:
        raise Failure(f"the configuration {path} is not valid: {'; '.join(problems)}")
    return config


# --- Health ----------------------------------------------------------------------------------
class _LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address, with another name as TLS server name (Caddy picks its site by SNI)."""

    def __init__(self, address: str, port: int, server_name: str, **kw: Any) -> None:
        super().__init__(server_name, port, **kw)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def judge_health(url: str, status: int, body: str) -> tuple[bool, str]:
    """ok when the answer is HTTP 200 with the JSON {"status": "ok"}."""
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    state = answer.get("status") if isinstance(answer, dict) else None
    if status == 200 and state == "ok":
        return True, f"{url}: ok"
    return False, f"{url}: HTTP {status} {body.strip()[:300]}"


def parse_ps(text: str) -> list[dict[str, Any]]:
    """Rows of `docker compose ps --format json`: a JSON array (older Compose) or JSON lines."""
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def judge_services(
    rows: Sequence[Mapping[str, Any]], services: Sequence[str], oneshots: Sequence[str]
) -> tuple[bool, dict[str, str]]:
    """Every row running and healthy (or without a health check), a one-shot exited 0, and
    every long-running service present."""
    states: dict[str, str] = {}
    ok = True
    for row in rows:
        name, state, health = row.get("Service"), row.get("State"), row.get("Health") or ""
        if name in oneshots:
            good = state == "exited" and int(row.get("ExitCode", 1)) == 0
            states[name] = f"{state} ({row.get('ExitCode')})"
        else:
            good = state == "running" and health in ("", "healthy")
            states[name] = f"{state}{' ' + health if health else ''}"
        ok = ok and good
    for name in services:
        if name not in states:
            states[name] = "missing"
            ok = False
    return ok, states


def describe(result: Mapping[str, Any]) -> str:
    """One line from a health result: each service's state, then the HTTP answer."""
    services = ", ".join(f"{k}={v}" for k, v in sorted(result["services"].items()))
    return f"services: {services}; health: {result['http']}"


class Stack:
    """The compose project the contract describes."""

    def __init__(self, contract: Mapping[str, Any]) -> None:
        self.contract = contract
        self.services: list[str] = list(contract["services"])
        self.oneshots: list[str] = list(contract["oneshot_services"])
        self.data: list[str] = [s for s in self.services if s in contract["data_services"]]
        self.front: list[str] = [s for s in self.services if s not in contract["data_services"]]

    def compose(self, *args: str) -> list[str]:
        """argv of `docker compose` for this project."""
        c = self.contract
        return ["docker", "compose", "-f", c["compose_file"], "-p", c["project"], *args]

    def exec(self, service: str, *args: str) -> list[str]:
        """argv that runs args in the service's container, stdin attached, no TTY."""
        return self.compose("exec", "-T", service, *args)

    def service_config(self, service: str) -> dict[str, Any]:
        """The service as Compose resolves it (image, command, ...)."""
        return json.loads(run(self.compose("config", "--format", "json")))["services"][service]

    def service_states(self) -> tuple[bool, dict[str, str]]:
        """State of every compose service: running and healthy, or a one-shot that exited 0."""
        try:
            out = run(self.compose("ps", "--all", "--format", "json"), timeout=60)
            rows = parse_ps(out)
        except (Failure, ValueError) as exc:
            return False, {"docker": str(exc)}
        return judge_services(rows, self.services, self.oneshots)

    def http_health(self) -> tuple[bool, str]:
        """GET the health URL through Caddy on this host, with the site's name as SNI."""
        health = self.contract["health"]
        local_url, server_name = health["local_url"], health["server_name"]
        url = urllib.parse.urlsplit(local_url)
        ctx = ssl.create_default_context()
        # Loopback: the path through Caddy is what is checked; certificates are watched elsewhere.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = _LoopbackHTTPS(
            url.hostname or "127.0.0.1", url.port or 443, server_name, context=ctx, timeout=10
        )
        try:
            conn.request("GET", url.path or "/health", headers={"Host": server_name})
            resp = conn.getresponse()
            body = resp.read(65536).decode("utf-8", "replace")
        except OSError as exc:
            return False, f"{local_url}: {exc}"
        finally:
            conn.close()
        return judge_health(local_url, resp.status, body)

    def health(self) -> dict[str, Any]:
        """Services, then (when they are fine) /health through Caddy."""
        services_ok, services = self.service_states()
        http_ok, http_msg = self.http_health() if services_ok else (False, "not probed")
        return {"ok": services_ok and http_ok, "services": services, "http": http_msg}

    def wait_healthy(self, timeout: float) -> dict[str, Any]:
        """health() until ok or timeout seconds have passed; the last result, with the wait."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.health()
            if result["ok"] or time.monotonic() >= deadline:
                waited = timeout - max(0.0, deadline - time.monotonic())
                result["waited_seconds"] = round(waited, 1)
                return result
            time.sleep(HEALTH_POLL_SECONDS)

    def stop(
        self, front_timeout: int = FRONT_STOP_TIMEOUT, data_timeout: int = DATA_STOP_TIMEOUT
    ) -> None:
        """Stop the stack cleanly (before a reboot).

        dockerd runs with live-restore, so at shutdown it leaves the containers running and they
        are killed at the end of the shutdown (PostgreSQL without its checkpoint). Stopped here,
        the front first (no new requests), then the data services with their own stop signals.
        """
        if self.front:
            run(self.compose("stop", "--timeout", str(front_timeout), *self.front), timeout=300)
        if self.data:
            run(self.compose("stop", "--timeout", str(data_timeout), *self.data), timeout=300)

    def start(self, wait_timeout: int = 300) -> None:
        """Start the stack stopped by stop() (a stopped container is not restarted at boot).

        The existing containers are started as they are (no recreation, no migrations: nothing
        about the deployment changed), the data services first, healthy before the front starts.
        """
        if self.data:
            up = ("up", "--detach", "--no-recreate", "--no-deps", "--wait")
            run(
                self.compose(*up, "--wait-timeout", str(int(wait_timeout)), *self.data), timeout=900
            )
        if self.front:
            run(
                self.compose("up", "--detach", "--no-recreate", "--no-deps", *self.front),
                timeout=600,
            )


# --- The registry switch (zero-downtime deploys) ---------------------------------------------
_PLAN_LINE = re.compile(r"Container\s+(\S+)\s+(Recreate|Create)\b")


def needs_new_container(dry_run_output: str, containers: Sequence[str]) -> bool:
    """True when `compose up --dry-run` would recreate one of the containers."""
    for line in dry_run_output.splitlines():
        match = _PLAN_LINE.search(line)
        if match and match.group(1) in containers:
            return True
    return False


def upstream_line(container: str, port: int) -> str:
    """Caddy's upstream for the registry: the serving container, by name. Never the service
    name: Docker's DNS answers it with every container of the service, a starting or broken
    new one included. After a manual `compose down`/`up` (new names), `prpm-stack switch`
    points Caddy at the serving container again."""
    return f"to {container}:{port}\n"


def upstream_in(text: str) -> str:
    """The container the upstream file names first ('' when the file says nothing)."""
    match = re.search(r"^\s*to\s+([^\s:]+):\d+", text, re.MULTILINE)
    return match.group(1) if match else ""


def idle_upstream(upstreams_json: str, address: str) -> bool:
    """True when Caddy (GET /reverse_proxy/upstreams) has no request in flight to address."""
    for upstream in json.loads(upstreams_json) or []:
        if upstream.get("address") == address and int(upstream.get("num_requests", 0)) > 0:
            return False
    return True


class Switch:
    """Deploy the registry service's new configuration without a failed request.

    The new container starts beside the old one (`compose up --scale N+1 --no-recreate`) and
    must turn healthy (its image's health check); Caddy is then pointed at it (the upstream file
    it imports, then a graceful reload: requests in flight finish on the old container); /health
    through Caddy must answer ok; the old container is drained (Caddy's admin API shows no
    request in flight to it) and stopped (SIGTERM, its stop grace). A new container that fails
    its health check is removed and never received a request (CandidateFailed); one that fails
    behind Caddy is switched away from and removed, the old one serving again.
    """

    def __init__(
        self,
        stack: Stack,
        *,
        proxy: str,
        upstream_file: str | Path,
        port: int,
        wait_timeout: int = 120,
    ) -> None:
        self.stack = stack
        self.service = stack.contract["registry_service"]
        self.proxy = proxy
        self.upstream_file = Path(upstream_file)
        self.port = port
        self.wait_timeout = wait_timeout

    def containers(self) -> list[dict[str, Any]]:
        """The registry service's containers, running or not (oldest number first)."""
        rows = parse_ps(run(self.stack.compose("ps", "--all", "--format", "json", self.service)))
        rows = [r for r in rows if r.get("Service") == self.service]
        return sorted(rows, key=lambda r: (len(r.get("Name", "")), r.get("Name", "")))

    def plan(self, containers: Sequence[str]) -> bool:
        """Compose's own answer: would `up` recreate the registry's container?

        Asked, like every `up` here, of all the stack's services with --no-deps: Compose hashes a
        service's configuration with the dependencies left after --no-deps, so a container made
        by `up` of fewer services would be recreated by the role's next `up` of them all.
        """
        probe = attempt(
            self.stack.compose("up", "--dry-run", "--no-deps", "--detach", *self.stack.services),
            timeout=120,
        )
        if probe.returncode != 0:
            raise Failure(f"compose up --dry-run: {probe.stderr.strip()[-1000:]}")
        return needs_new_container(probe.stdout + "\n" + probe.stderr, containers)

    def write_upstream(self, container: str) -> None:
        tmp = self.upstream_file.with_name(self.upstream_file.name + ".tmp")
        tmp.write_text(upstream_line(container, self.port), encoding="utf-8")
        tmp.chmod(0o644)
        tmp.replace(self.upstream_file)

    def reload_proxy(self) -> None:
        reload_proxy(self.stack, self.proxy)

    def remove(self, ids: Sequence[str], stop_timeout: int) -> None:
        for cid in ids:
            run(["docker", "stop", "--time", str(stop_timeout), cid], timeout=stop_timeout + 60)
            run(["docker", "rm", cid], timeout=60)

    def gate(self, timeout: float) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        while True:
            ok, msg = self.stack.http_health()
            if ok or time.monotonic() >= deadline:
                return ok, msg
            time.sleep(SWITCH_POLL_SECONDS)

    def drain(self, container: str, timeout: float) -> bool:
        """Wait until Caddy has no request in flight to the container (True), or timeout."""
        address = f"{container}:{self.port}"
        url = "http://localhost:2019/reverse_proxy/upstreams"
        deadline = time.monotonic() + timeout
        while True:
            probe = attempt(self.stack.exec(self.proxy, "wget", "-qO-", url), timeout=30)
            try:
                if probe.returncode == 0 and idle_upstream(probe.stdout or "[]", address):
                    return True
            except (ValueError, TypeError, AttributeError):
                pass  # not the admin API's JSON: asked again until the timeout
            if time.monotonic() >= deadline:
                return False
            time.sleep(SWITCH_POLL_SECONDS)

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        rows = self.containers()
        running = [r for r in rows if r.get("State") == "running"]
        if not running:
            return {
                "changed": False,
                "switched": False,
                "msg": f"no {self.service} container runs: nothing to switch from",
            }
        text = self.upstream_file.read_text(encoding="utf-8") if self.upstream_file.exists() else ""
        current = upstream_in(text)
        serving = next((r for r in running if r["Name"] == current), running[0])
        # Leftovers of an interrupted switch: only the container the file names stays.
        strays = [r["ID"] for r in rows if r["ID"] != serving["ID"]]
        # Caddy points at the serving container before anything else happens: the file may name
        # a container that is gone (a manual compose down/up), whose name the new one may get,
        # and after an interrupted switch Caddy may not have loaded what the file says.
        repointed = text != upstream_line(serving["Name"], self.port) or bool(strays)
        if repointed:
            self.write_upstream(serving["Name"])
            self.reload_proxy()
        if strays:
            self.remove(strays, REGISTRY_STOP_TIMEOUT)
        if not self.plan([serving["Name"]]):
            return {
                "changed": bool(strays) or repointed,
                "switched": False,
                "serving": serving["Name"],
                "removed": strays,
                "msg": f"{serving['Name']} runs the wanted configuration",
            }

        # All the stack's services, as in every `up` here (the configuration hash), without
        # --wait: it would also wait on the serving registry and Caddy, and a fix must deploy
        # while they are unhealthy. The new container alone is waited for.
        up = ("up", "--detach", "--no-deps", "--no-recreate")
        try:
            run(
                self.stack.compose(*up, "--scale", f"{self.service}=2", *self.stack.services),
                timeout=600,
            )
            new = [r for r in self.containers() if r["ID"] != serving["ID"]]
            if len(new) != 1:
                raise Failure(f"expected one new {self.service} container, found {len(new)}")
            healthy, detail = self.wait_container_healthy(new[0]["ID"], self.wait_timeout)
            if not healthy:
                raise Failure(detail)
        except Failure as exc:
            new = [r for r in self.containers() if r["ID"] != serving["ID"]]
            self.remove([r["ID"] for r in new], 1)
            raise CandidateFailed(
                f"the new {self.service} container did not turn healthy ({exc}); it "
                f"was removed and never received a request: {serving['Name']} still serves"
            ) from exc
        candidate_s = time.monotonic() - started
        fresh = new[0]
        self.write_upstream(fresh["Name"])
        try:
            self.reload_proxy()
            ok, msg = self.gate(SWITCH_GATE_TIMEOUT)
            if not ok:
                raise Failure(f"behind Caddy the new container failed: {msg}")
        except Failure as exc:
            # It may have served requests by now: a plain failure, not CandidateFailed.
            self.write_upstream(serving["Name"])
            self.reload_proxy()
            self.remove([fresh["ID"]], 1)
            raise Failure(
                f"{exc}; Caddy was switched back, the new container removed: "
                f"{serving['Name']} serves again"
            ) from exc
        switched_s = time.monotonic() - started
        drained = self.drain(serving["Name"], DRAIN_TIMEOUT)
        self.remove([serving["ID"]], REGISTRY_STOP_TIMEOUT)
        return {
            "changed": True,
            "switched": True,
            "from": serving["Name"],
            "to": fresh["Name"],
            "serving": fresh["Name"],
            "drained": drained,
            "removed": [*strays, serving["ID"]],
            "seconds": {
                "healthy": round(candidate_s, 1),
                "switched": round(switched_s, 1),
                "total": round(time.monotonic() - started, 1),
            },
            "msg": f"{self.service}: {serving['Name']} -> {fresh['Name']}, no request dropped",
        }

    def wait_container_healthy(self, cid: str, timeout: float) -> tuple[bool, str]:
        """Poll the container's health check: (True, '') when healthy; (False, why) when it
        is unhealthy, stopped, or still starting after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            probe = attempt(["docker", "inspect", "--format", "{{json .State}}", cid], timeout=30)
            try:
                state = json.loads(probe.stdout) if probe.returncode == 0 else {}
            except ValueError:
                state = {}
            health = (state.get("Health") or {}).get("Status", "")
            restarts = int(state.get("RestartCount") or 0) + bool(state.get("Restarting"))
            if state.get("Running") and not restarts and health == "healthy":
                return True, ""
            if state and (not state.get("Running") or restarts or health == "unhealthy"):
                why = [self.health_log(cid)] if health else []
                if restarts:
                    why.insert(0, f"exited {state.get('ExitCode')}, restarted {restarts} times")
                elif not state.get("Running"):
                    why.insert(0, f"exited {state.get('ExitCode')}")
                return False, "; ".join(why)
            if time.monotonic() >= deadline:
                return False, f"still {health or 'starting'} after {timeout:g} s"
            time.sleep(SWITCH_POLL_SECONDS)

    def health_log(self, cid: str) -> str:
        probe = attempt(["docker", "inspect", "--format", "{{json .State.Health}}", cid])
        try:
            health = json.loads(probe.stdout)
            last = (health or {}).get("Log") or [{}]
            output = str(last[-1].get("Output", "")).strip()[:300]
            return f"{health.get('Status')}: {output or 'its health check printed nothing'}"
        except (ValueError, AttributeError):
            return probe.stderr.strip()[:300]


class Host:
    """A host program's run: its configuration, where it keeps its state, and the stack read
    from the contract when a command first needs it (commands that do not touch the stack work
    without a contract)."""

    # The program's state directory, unless the caller names another.
    default_state_dir = ""

    def __init__(
        self,
        cfg: Mapping[str, Any],
        contract_path: str | Path = CONTRACT,
        state_dir: str | Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.contract_path = contract_path
        self.state_dir = Path(state_dir or self.default_state_dir)

    @functools.cached_property
    def contract(self) -> dict[str, Any]:
        return load_contract(self.contract_path)

    @functools.cached_property
    def stack(self) -> Stack:
        return Stack(self.contract)


# --- The prpm-stack command --------------------------------------------------------------------
def reload_proxy(stack: Stack, proxy: str) -> None:
    """Caddy re-reads its Caddyfile and the files it imports; requests in flight finish."""
    run(
        stack.exec(
            proxy, "caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"
        ),
        timeout=60,
    )


def main(argv: Sequence[str] | None = None, contract_path: str = CONTRACT) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="the stack's services and /health through Caddy (JSON)")
    p = sub.add_parser("health", help="the health gate: services and /health (JSON), exit 0/1")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for health")
    sub.add_parser("stop", help="stop the stack cleanly: front first, then the data services")
    p = sub.add_parser("start", help="start the stack stopped by stop: data services first")
    p.add_argument("--wait-timeout", type=int, default=300, help="seconds for the data services")
    p = sub.add_parser("reload", help="Caddy re-reads its configuration (graceful)")
    p.add_argument("--proxy", required=True, help="the compose service of Caddy")
    p = sub.add_parser(
        "switch",
        help="deploy the registry's new configuration beside the old container, switch Caddy "
        "to it when healthy, drain and stop the old one (JSON; exit 3: the new one failed and "
        "never served)",
    )
    p.add_argument("--proxy", required=True, help="the compose service of Caddy")
    p.add_argument("--upstream-file", required=True, help="the upstream file Caddy imports")
    p.add_argument("--port", type=int, required=True, help="the registry's port")
    p.add_argument("--wait-timeout", type=int, default=120, help="seconds to turn healthy")
    args = parser.parse_args(argv)
    try:
        contract = load_contract(contract_path)
        stack = Stack(contract)
        if args.command == "status":
            result = stack.health()
            result.update(project=contract["project"], compose_file=contract["compose_file"])
        elif args.command == "health":
            result = stack.wait_healthy(args.wait) if args.wait else stack.health()
        elif args.command == "switch":
            switch = Switch(
                stack,
                proxy=args.proxy,
                upstream_file=args.upstream_file,
                port=args.port,
                wait_timeout=args.wait_timeout,
            )
            print(json.dumps(switch.run(), sort_keys=True), flush=True)
            return 0
        elif args.command == "reload":
            reload_proxy(stack, args.proxy)
            log(PROG, f"{args.proxy} reloaded its configuration")
            return 0
        elif args.command == "stop":
            stack.stop()
            log(PROG, "stack stopped: " + ", ".join(stack.front + stack.data))
            return 0
        else:
            stack.start(args.wait_timeout)
            log(PROG, "stack started: " + ", ".join(stack.data + stack.front))
            return 0
    except Failure as exc:
        print(f"{PROG}: {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        return 3 if isinstance(exc, CandidateFailed) else 1
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
