#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by prpm.hobby.patching. Health-gated patch runs of the PRPM host: the stack must be
# healthy before anything changes, the upgrade is followed by a health gate, and a reboot only
# happens when the upgrade requires it. Configuration: /etc/prpm-patch/config.json. Every
# failure exits non-zero, says why on stderr (the journal) and pings <ping_url>/fail.
"""prpm-patch: health-gated OS patch runs for the PRPM registry host."""

from __future__ import annotations

import argparse
import fcntl
import glob
import http.client
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone

CONFIG = "/etc/prpm-patch/config.json"
STATE_DIR = "/var/lib/prpm-patch"
LAST_RUN = STATE_DIR + "/last-run.json"
REBOOT_MARKER = STATE_DIR + "/reboot-pending.json"
LOCK = "/run/prpm-patch.lock"
REBOOT_REQUIRED = "/run/reboot-required"
BACKUP = "/usr/local/sbin/prpm-backup"
# Stateful services: stopped last and started first around a reboot.
DATA_SERVICES = ("postgres", "redis", "storage")
APT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "NEEDRESTART_MODE": "a",
    "NEEDRESTART_SUSPEND": "",
    "APT_LISTCHANGES_FRONTEND": "none",
    "UCF_FORCE_CONFFOLD": "1",
}
# "Inst libssl3t64 [3.5.1-1] (3.5.4-1~deb13u1 Debian-Security:13/stable-security [amd64])"
INST = re.compile(r"^Inst (?P<name>\S+)(?: \[(?P<old>[^\]]+)\])? \((?P<new>\S+)")
EXIT_UNHEALTHY_BEFORE = 3
EXIT_FAILED = 1


class Failure(Exception):
    """A step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"prpm-patch: {msg}", flush=True)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def load_config() -> dict:
    with open(CONFIG, encoding="utf-8") as fh:
        return json.load(fh)


def run(cmd: list[str], *, env: dict | None = None, timeout: float | None = None) -> str:
    try:
        proc = subprocess.run(
            cmd,
            env=dict(os.environ, **(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failure(f"{' '.join(cmd[:3])} did not finish in {timeout} s") from exc
    if proc.returncode != 0:
        raise Failure(
            f"{' '.join(cmd[:3])} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout


def write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def ping(cfg: dict, ok: bool) -> None:
    url = cfg.get("ping_url") or ""
    if not url:
        return
    try:
        with urllib.request.urlopen(url if ok else url.rstrip("/") + "/fail", timeout=10):  # noqa: S310
            pass
    except OSError as exc:
        log(f"ping {url} failed: {exc}")


# --- Health -------------------------------------------------------------------------------------
class _LoopbackHTTPS(http.client.HTTPSConnection):
    """HTTPS to an address, with another name as TLS server name (Caddy picks its site by SNI)."""

    def __init__(self, address: str, port: int, server_name: str, **kw) -> None:
        super().__init__(server_name, port, **kw)
        self._address = address

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def http_health(cfg: dict) -> tuple[bool, str]:
    """GET the health URL through Caddy on this host; ok when the JSON says status ok."""
    url = urllib.parse.urlsplit(cfg["health_url"])
    ctx = ssl.create_default_context()
    # Loopback: the path through Caddy is what is checked; certificates are watched elsewhere.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = _LoopbackHTTPS(
        url.hostname or "127.0.0.1",
        url.port or 443,
        cfg.get("health_server_name") or "localhost",
        context=ctx,
        timeout=10,
    )
    try:
        conn.request("GET", url.path or "/health", headers={"Host": cfg["health_server_name"]})
        resp = conn.getresponse()
        body = resp.read(65536).decode("utf-8", "replace")
    except OSError as exc:
        return False, f"{cfg['health_url']}: {exc}"
    finally:
        conn.close()
    try:
        status = json.loads(body).get("status")
    except ValueError:
        status = None
    if resp.status == 200 and status == "ok":
        return True, f"{cfg['health_url']}: ok"
    return False, f"{cfg['health_url']}: HTTP {resp.status} {body.strip()[:300]}"


def compose_services(cfg: dict) -> tuple[bool, dict[str, str]]:
    """State of every compose service: running and healthy, or a one-shot that exited 0."""
    cmd = [
        "docker",
        "compose",
        "-f",
        cfg["compose_file"],
        "-p",
        cfg["project"],
        "ps",
        "--all",
        "--format",
        "json",
    ]
    try:
        out = run(cmd, timeout=60)
    except (Failure, OSError) as exc:
        return False, {"docker": str(exc)}
    rows = []
    out = out.strip()
    if out.startswith("["):
        rows = json.loads(out)
    else:
        rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    states: dict[str, str] = {}
    ok = True
    for row in rows:
        name, state, health = row.get("Service"), row.get("State"), row.get("Health") or ""
        if name in cfg.get("oneshot_services", []):
            good = state == "exited" and int(row.get("ExitCode", 1)) == 0
            states[name] = f"{state} ({row.get('ExitCode')})"
        else:
            good = state == "running" and health in ("", "healthy")
            states[name] = f"{state}{' ' + health if health else ''}"
        ok = ok and good
    for name in cfg.get("required_services", []):
        if name not in states:
            states[name] = "missing"
            ok = False
    return ok, states


def health(cfg: dict) -> dict:
    services_ok, services = compose_services(cfg)
    http_ok, http_msg = http_health(cfg) if services_ok else (False, "not probed")
    return {"ok": services_ok and http_ok, "services": services, "http": http_msg}


def wait_healthy(cfg: dict, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        result = health(cfg)
        if result["ok"] or time.monotonic() >= deadline:
            result["waited_seconds"] = round(timeout - max(0.0, deadline - time.monotonic()), 1)
            return result
        time.sleep(3)


def describe(result: dict) -> str:
    services = ", ".join(f"{k}={v}" for k, v in sorted(result["services"].items()))
    return f"services: {services}; health: {result['http']}"


# --- Upgrade -------------------------------------------------------------------------------------
def apt_opts(cfg: dict) -> list[str]:
    return ["-o", f"DPkg::Lock::Timeout={int(cfg.get('lock_timeout', 600))}"]


def plan_upgrade(cfg: dict) -> list[dict]:
    """What a full upgrade would install, from apt-get's simulation (held Docker included)."""
    out = run(["apt-get", "-s", *apt_opts(cfg), "dist-upgrade"], env=APT_ENV)
    return parse_plan(out)


def parse_plan(text: str) -> list[dict]:
    plan = []
    for line in text.splitlines():
        m = INST.match(line)
        if m:
            plan.append({"name": m["name"], "from": m["old"] or "", "to": m["new"]})
    return plan


def installed_version(name: str) -> str:
    proc = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", name.split(":")[0]],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def newest_kernel() -> str:
    """Release of the newest installed kernel image, '' when the host has none (a container)."""
    releases = [os.path.basename(p)[len("vmlinuz-") :] for p in glob.glob("/boot/vmlinuz-*")]
    if not releases:
        return ""

    def key(release: str) -> list:
        return [int(p) if p.isdigit() else p for p in re.split(r"[.\-+~]", release)]

    try:
        return max(releases, key=key)
    except TypeError:
        return sorted(releases)[-1]


def reboot_required() -> dict:
    reasons = []
    if os.path.exists(REBOOT_REQUIRED):
        pkgs = ""
        if os.path.exists(REBOOT_REQUIRED + ".pkgs"):
            with open(REBOOT_REQUIRED + ".pkgs", encoding="utf-8") as fh:
                pkgs = " ".join(sorted(set(fh.read().split())))
        reasons.append(f"{REBOOT_REQUIRED} exists" + (f" ({pkgs})" if pkgs else ""))
    kernel = newest_kernel()
    running = os.uname().release
    if kernel and kernel != running:
        reasons.append(f"kernel {kernel} installed, {running} running")
    return {"required": bool(reasons), "reasons": reasons}


def ensure_docker() -> list[str]:
    """A containerd or Docker upgrade can leave dockerd stopped: start what is down."""
    started = []
    for unit in ("containerd.service", "docker.service"):
        active = subprocess.run(["systemctl", "is-active", "--quiet", unit], check=False)
        enabled = subprocess.run(["systemctl", "is-enabled", "--quiet", unit], check=False)
        if active.returncode != 0 and enabled.returncode == 0:
            run(["systemctl", "start", unit], timeout=300)
            started.append(unit)
    return started


def upgrade(cfg: dict) -> dict:
    started = time.monotonic()
    run(["apt-get", "-q", *apt_opts(cfg), "update"], env=APT_ENV)
    plan = plan_upgrade(cfg)
    if plan:
        run(
            [
                "apt-get",
                "-y",
                "-q",
                *apt_opts(cfg),
                "-o",
                "Dpkg::Options::=--force-confdef",
                "-o",
                "Dpkg::Options::=--force-confold",
                "dist-upgrade",
            ],
            env=APT_ENV,
        )
    removed = []
    if cfg.get("autoremove", True):
        sim = run(["apt-get", "-s", *apt_opts(cfg), "autoremove", "--purge"], env=APT_ENV)
        removed = [line.split()[1] for line in sim.splitlines() if line.startswith("Purg ")]
        if removed:
            run(["apt-get", "-y", "-q", *apt_opts(cfg), "autoremove", "--purge"], env=APT_ENV)
    upgraded = []
    for item in plan:
        now_version = installed_version(item["name"])
        upgraded.append(dict(item, installed=now_version == item["to"]))
    missing = [i["name"] for i in upgraded if not i["installed"]]
    if missing:
        raise Failure(f"apt finished but these are not at the planned version: {missing}")
    return {
        "upgraded": [{"name": i["name"], "from": i["from"], "to": i["to"]} for i in upgraded],
        "removed": removed,
        "docker_started": ensure_docker(),
        "reboot": reboot_required(),
        "upgrade_seconds": round(time.monotonic() - started, 1),
    }


# --- Stack around a reboot ------------------------------------------------------------------------
def compose(cfg: dict, *args: str) -> list[str]:
    return ["docker", "compose", "-f", cfg["compose_file"], "-p", cfg["project"], *args]


def stop_stack(cfg: dict) -> None:
    """Stop the stack cleanly before a reboot.

    dockerd runs with live-restore, so at shutdown it leaves the containers running and they are
    killed at the end of the shutdown (PostgreSQL without its checkpoint). Stopped here, the
    front first (no new requests), then the data services with their own stop signals.
    """
    front = [s for s in cfg.get("required_services", []) if s not in DATA_SERVICES]
    data = [s for s in cfg.get("required_services", []) if s in DATA_SERVICES]
    if front:
        run(
            compose(cfg, "stop", "--timeout", str(cfg.get("front_stop_timeout", 5)), *front),
            timeout=300,
        )
    if data:
        run(compose(cfg, "stop", "--timeout", "60", *data), timeout=300)


def start_stack(cfg: dict) -> None:
    """Start the stack stopped by stop_stack (a stopped container is not restarted at boot).

    The existing containers are started as they are (no recreation, no migrations: nothing about
    the deployment changed), the data services first.
    """
    data = [s for s in cfg.get("required_services", []) if s in DATA_SERVICES]
    front = [s for s in cfg.get("required_services", []) if s not in DATA_SERVICES]
    if data:
        run(
            compose(
                cfg,
                "up",
                "--detach",
                "--no-recreate",
                "--no-deps",
                "--wait",
                "--wait-timeout",
                str(int(cfg.get("health_timeout", 300))),
                *data,
            ),
            timeout=900,
        )
    if front:
        run(compose(cfg, "up", "--detach", "--no-recreate", "--no-deps", *front), timeout=600)


# --- Commands ------------------------------------------------------------------------------------
def cmd_health(cfg: dict, args: argparse.Namespace) -> int:
    result = wait_healthy(cfg, args.wait) if args.wait else health(cfg)
    print(json.dumps(result, sort_keys=True))
    return 0 if result["ok"] else EXIT_FAILED


def cmd_plan(cfg: dict, _args: argparse.Namespace) -> int:
    run(["apt-get", "-q", *apt_opts(cfg), "update"], env=APT_ENV)
    print(json.dumps({"upgrades": plan_upgrade(cfg), "reboot": reboot_required()}, sort_keys=True))
    return 0


def cmd_upgrade(cfg: dict, _args: argparse.Namespace) -> int:
    result = upgrade(cfg)
    print(json.dumps(result, sort_keys=True))
    return 0


def cmd_reboot_required(_cfg: dict, _args: argparse.Namespace) -> int:
    print(json.dumps(reboot_required(), sort_keys=True))
    return 0


def cmd_stop_stack(cfg: dict, _args: argparse.Namespace) -> int:
    stop_stack(cfg)
    return 0


def cmd_start_stack(cfg: dict, _args: argparse.Namespace) -> int:
    start_stack(cfg)
    return 0


def cmd_run(cfg: dict, args: argparse.Namespace) -> int:
    """The scheduled patch run: health, backup, upgrade, health, reboot if required."""
    report: dict = {"started": now(), "kind": "scheduled", "rebooted": False}
    before = health(cfg)
    if not before["ok"]:
        report.update(
            result="refused",
            error="stack unhealthy before patching, nothing changed: " + describe(before),
        )
        write_json(LAST_RUN, report)
        raise Failure(report["error"])
    if cfg.get("backup", True):
        if not os.access(BACKUP, os.X_OK):
            raise Failure(
                f"backup requested but {BACKUP} is missing (prpm.hobby.backups); nothing changed"
            )
        log("backing up before the upgrade")
        run([BACKUP, "run"])
        report["backup"] = "done"
    report.update(upgrade(cfg))
    log(
        f"upgraded {len(report['upgraded'])} package(s): "
        + ", ".join(f"{u['name']} {u['from']} -> {u['to']}" for u in report["upgraded"])
    )
    after = wait_healthy(cfg, cfg.get("health_timeout", 300))
    report["health_after_upgrade"] = after
    if not after["ok"]:
        report.update(
            result="failed", error="stack unhealthy after the upgrade: " + describe(after)
        )
        write_json(LAST_RUN, report)
        raise Failure(report["error"])
    reboot = report["reboot"]["required"] and cfg.get("reboot", True) and not args.no_reboot
    if reboot:
        report.update(result="rebooting", rebooted=True)
        write_json(LAST_RUN, report)
        write_json(REBOOT_MARKER, {"since": time.time(), "reasons": report["reboot"]["reasons"]})
        log("stopping the stack, then rebooting: " + "; ".join(report["reboot"]["reasons"]))
        stop_stack(cfg)
        run(["systemctl", "reboot"])
        return 0
    report.update(result="ok", finished=now())
    write_json(LAST_RUN, report)
    log("patch run ok" + (", reboot required but not done" if report["reboot"]["required"] else ""))
    return 0


def cmd_post_boot(cfg: dict, args: argparse.Namespace) -> int:
    """After a patch reboot: wait for the stack, record and report the outcome."""
    if not os.path.exists(REBOOT_MARKER):
        log("no patch reboot pending, nothing to check")
        return 0
    with open(REBOOT_MARKER, encoding="utf-8") as fh:
        marker = json.load(fh)
    try:
        start_stack(cfg)
    except Failure as exc:
        log(f"starting the stack failed: {exc}")
    result = wait_healthy(cfg, args.timeout or cfg.get("health_timeout", 300))
    report = {}
    if os.path.exists(LAST_RUN):
        with open(LAST_RUN, encoding="utf-8") as fh:
            report = json.load(fh)
    report["post_boot"] = dict(
        result, checked=now(), seconds_since_reboot=round(time.time() - marker["since"], 1)
    )
    report["result"] = "ok" if result["ok"] else "failed"
    report["finished"] = now()
    if not result["ok"]:
        report["error"] = "stack unhealthy after the patch reboot: " + describe(result)
    write_json(LAST_RUN, report)
    os.remove(REBOOT_MARKER)
    if not result["ok"]:
        raise Failure(report["error"])
    log(f"stack healthy {report['post_boot']['seconds_since_reboot']} s after the patch reboot")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prpm-patch", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("health", help="compose services and /health through Caddy (JSON)")
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for health")
    sub.add_parser("plan", help="apt update, then what a full upgrade would do (JSON)")
    sub.add_parser("upgrade", help="apt update + full upgrade with lock waits (JSON report)")
    sub.add_parser("reboot-required", help="whether a reboot is required, and why (JSON)")
    sub.add_parser("stop-stack", help="stop the stack cleanly (before a reboot)")
    sub.add_parser("start-stack", help="start the stack stopped by stop-stack")
    p = sub.add_parser("run", help="scheduled run: health, backup, upgrade, health, reboot")
    p.add_argument("--no-reboot", action="store_true", help="never reboot in this run")
    p = sub.add_parser("post-boot", help="after a patch reboot: wait for health, report")
    p.add_argument("--timeout", type=float, default=0, help="seconds (default: config)")
    args = parser.parse_args(argv)
    cfg = load_config()
    handler = {
        "health": cmd_health,
        "plan": cmd_plan,
        "upgrade": cmd_upgrade,
        "reboot-required": cmd_reboot_required,
        "run": cmd_run,
        "post-boot": cmd_post_boot,
        "stop-stack": cmd_stop_stack,
        "start-stack": cmd_start_stack,
    }[args.command]
    try:
        if args.command in ("run", "upgrade", "plan"):
            os.makedirs(os.path.dirname(LOCK), exist_ok=True)
            with open(LOCK, "w", encoding="utf-8") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    raise Failure("another prpm-patch run holds " + LOCK) from exc
                rc = handler(cfg, args)
        else:
            rc = handler(cfg, args)
    except Failure as exc:
        print(f"prpm-patch: {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        if args.command in ("run", "post-boot"):
            ping(cfg, ok=False)
        return EXIT_UNHEALTHY_BEFORE if "nothing changed" in str(exc) else EXIT_FAILED
    if args.command in ("run", "post-boot"):
        ping(cfg, ok=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
