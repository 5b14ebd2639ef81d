#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by prpm.hobby.patching in /usr/local/lib/prpm-hobby/, /usr/local/sbin/prpm-patch
# links to it. Health-gated patch runs of the PRPM host: the stack must be healthy before
# anything changes, the upgrade is followed by a health gate, and a reboot only happens when the
# upgrade requires it. Configuration (patch settings only): /etc/prpm-patch/config.json; the
# stack (services, compose project, health URL) comes from the stack contract through
# prpm_stack. Every failure exits non-zero, says why on stderr (the journal) and pings
# <ping_url>/fail.
"""prpm-patch: health-gated OS patch runs for the PRPM registry host."""

from __future__ import annotations

import argparse
import fcntl
import functools
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import prpm_stack
from prpm_stack import Failure, Host

PROG = "prpm-patch"
CONFIG = "/etc/prpm-patch/config.json"
CONFIG_SPEC: dict[str, prpm_stack.Spec] = {
    # Seconds the stack gets to be healthy after an upgrade, a start or a reboot.
    "health_timeout": int,
    # Seconds apt waits for the dpkg lock (a running unattended-upgrades).
    "lock_timeout": int,
    "autoremove": bool,
    # Run prpm-backup before upgrading.
    "backup": bool,
    # Reboot in a scheduled run when the upgrade requires it.
    "reboot": bool,
    # Pinged after run and post-boot ('' for none).
    "ping_url": prpm_stack.Text,
}
STATE_DIR = "/var/lib/prpm-patch"
LOCK = "/run/prpm-patch.lock"
REBOOT_REQUIRED = "/run/reboot-required"
BOOT = "/boot"
BACKUP = "/usr/local/sbin/prpm-backup"
# Seconds the host gets to go down after `systemctl reboot` before the run counts the reboot as
# failed and starts the stack again (the shutdown ends this process long before).
REBOOT_GRACE_SECONDS = 600
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

log = functools.partial(prpm_stack.log, PROG)


class Patch(Host):
    """A prpm-patch run: the configuration, the stack, and where runs are recorded."""

    default_state_dir = STATE_DIR

    @property
    def last_run(self) -> Path:
        return self.state_dir / "last-run.json"

    @property
    def reboot_marker(self) -> Path:
        """Written before a patch reboot; prpm-patch-post-boot.service runs while it exists."""
        return self.state_dir / "reboot-pending.json"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- Upgrade -----------------------------------------------------------------------------------
def apt_opts(cfg: Mapping[str, Any]) -> list[str]:
    return ["-o", f"DPkg::Lock::Timeout={int(cfg['lock_timeout'])}"]


def plan_upgrade(cfg: Mapping[str, Any]) -> list[dict[str, str]]:
    """What a full upgrade would install, from apt-get's simulation (held Docker included)."""
    out = prpm_stack.run(["apt-get", "-s", *apt_opts(cfg), "dist-upgrade"], env=APT_ENV)
    return parse_plan(out)


def parse_plan(text: str) -> list[dict[str, str]]:
    plan = []
    for line in text.splitlines():
        m = INST.match(line)
        if m:
            plan.append({"name": m["name"], "from": m["old"] or "", "to": m["new"]})
    return plan


def installed_version(name: str) -> str:
    proc = prpm_stack.attempt(["dpkg-query", "-W", "-f", "${Version}", name.partition(":")[0]])
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _release_key(release: str) -> list[int | str]:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\-+~]", release)]


def newest_kernel(boot: str | Path = BOOT) -> str:
    """Release of the newest installed kernel image, '' when the host has none (a container)."""
    releases = [p.name[len("vmlinuz-") :] for p in Path(boot).glob("vmlinuz-*")]
    if not releases:
        return ""
    try:
        return max(releases, key=_release_key)
    except TypeError:
        return sorted(releases)[-1]


def reboot_required(flag: str | Path = REBOOT_REQUIRED, boot: str | Path = BOOT) -> dict[str, Any]:
    """Whether a reboot is required, and why: the flag packages leave, or a newer kernel."""
    reasons = []
    flag = Path(flag)
    if flag.exists():
        pkgs_file = flag.with_name(flag.name + ".pkgs")
        pkgs = ""
        if pkgs_file.exists():
            pkgs = " ".join(sorted(set(pkgs_file.read_text(encoding="utf-8").split())))
        reasons.append(f"{flag} exists" + (f" ({pkgs})" if pkgs else ""))
    kernel = newest_kernel(boot)
    running = os.uname().release
    if kernel and kernel != running:
        reasons.append(f"kernel {kernel} installed, {running} running")
    return {"required": bool(reasons), "reasons": reasons}


def ensure_docker() -> list[str]:
    """A containerd or Docker upgrade can leave dockerd stopped: start what is down."""
    started = []
    for unit in ("containerd.service", "docker.service"):
        active = prpm_stack.attempt(["systemctl", "is-active", "--quiet", unit])
        enabled = prpm_stack.attempt(["systemctl", "is-enabled", "--quiet", unit])
        if active.returncode != 0 and enabled.returncode == 0:
            prpm_stack.run(["systemctl", "start", unit], timeout=300)
            started.append(unit)
    return started


def upgrade(cfg: Mapping[str, Any]) -> dict[str, Any]:
    run = functools.partial(prpm_stack.run, env=APT_ENV)
    started = time.monotonic()
    run(["apt-get", "-q", *apt_opts(cfg), "update"])
    plan = plan_upgrade(cfg)
    if plan:
        keep_conffiles = ["-o", "Dpkg::Options::=--force-confdef"]
        keep_conffiles += ["-o", "Dpkg::Options::=--force-confold"]
        run(["apt-get", "-y", "-q", *apt_opts(cfg), *keep_conffiles, "dist-upgrade"])
    removed = []
    if cfg["autoremove"]:
        sim = run(["apt-get", "-s", *apt_opts(cfg), "autoremove", "--purge"])
        removed = [line.split()[1] for line in sim.splitlines() if line.startswith("Purg ")]
        if removed:
            run(["apt-get", "-y", "-q", *apt_opts(cfg), "autoremove", "--purge"])
    missing = [i["name"] for i in plan if installed_version(i["name"]) != i["to"]]
    if missing:
        raise Failure(f"apt finished but these are not at the planned version: {missing}")
    return {
        "upgraded": plan,
        "removed": removed,
        "docker_started": ensure_docker(),
        "reboot": reboot_required(),
        "upgrade_seconds": round(time.monotonic() - started, 1),
    }


# --- Commands ----------------------------------------------------------------------------------
def cmd_health(h: Patch, args: argparse.Namespace) -> int:
    result = h.stack.wait_healthy(args.wait) if args.wait else h.stack.health()
    print(json.dumps(result, sort_keys=True), flush=True)
    return 0 if result["ok"] else EXIT_FAILED


def cmd_plan(h: Patch, _args: argparse.Namespace) -> int:
    prpm_stack.run(["apt-get", "-q", *apt_opts(h.cfg), "update"], env=APT_ENV)
    plan = {"upgrades": plan_upgrade(h.cfg), "reboot": reboot_required()}
    print(json.dumps(plan, sort_keys=True), flush=True)
    return 0


def cmd_upgrade(h: Patch, _args: argparse.Namespace) -> int:
    print(json.dumps(upgrade(h.cfg), sort_keys=True), flush=True)
    return 0


def cmd_reboot_required(_h: Patch, _args: argparse.Namespace) -> int:
    print(json.dumps(reboot_required(), sort_keys=True), flush=True)
    return 0


def cmd_stop_stack(h: Patch, _args: argparse.Namespace) -> int:
    h.stack.stop()
    return 0


def cmd_start_stack(h: Patch, _args: argparse.Namespace) -> int:
    h.stack.start(h.cfg["health_timeout"])
    return 0


def cmd_run(h: Patch, args: argparse.Namespace) -> int:
    """The scheduled patch run: health, backup, upgrade, health, reboot if required."""
    cfg, stack = h.cfg, h.stack
    report: dict[str, Any] = {"started": now(), "kind": "scheduled", "rebooted": False}
    before = stack.health()
    if not before["ok"]:
        error = "stack unhealthy before patching, nothing changed: " + prpm_stack.describe(before)
        report.update(result="refused", error=error)
        prpm_stack.write_json(h.last_run, report)
        raise Failure(error)
    if cfg["backup"]:
        if not os.access(BACKUP, os.X_OK):
            raise Failure(
                f"backup requested but {BACKUP} is missing (prpm.hobby.backups); nothing changed"
            )
        log("backing up before the upgrade")
        prpm_stack.run([BACKUP, "run"])
        report["backup"] = "done"
    report.update(upgrade(cfg))
    log(
        f"upgraded {len(report['upgraded'])} package(s): "
        + ", ".join(f"{u['name']} {u['from']} -> {u['to']}" for u in report["upgraded"])
    )
    after = stack.wait_healthy(cfg["health_timeout"])
    report["health_after_upgrade"] = after
    if not after["ok"]:
        error = "stack unhealthy after the upgrade: " + prpm_stack.describe(after)
        report.update(result="failed", error=error)
        prpm_stack.write_json(h.last_run, report)
        raise Failure(error)
    reasons = report["reboot"]["reasons"]
    if report["reboot"]["required"] and cfg["reboot"] and not args.no_reboot:
        report.update(result="rebooting", rebooted=True)
        prpm_stack.write_json(h.last_run, report)
        prpm_stack.write_json(h.reboot_marker, {"since": time.time(), "reasons": reasons})
        log("stopping the stack, then rebooting: " + "; ".join(reasons))
        stack.stop()
        try:
            prpm_stack.run(["systemctl", "reboot"])
            await_shutdown(REBOOT_GRACE_SECONDS)
            raise Failure(
                f"the host was still up {REBOOT_GRACE_SECONDS} s after `systemctl reboot`"
            )
        except Failure as exc:
            reboot_failed(h, report, exc)
    report.update(result="ok", finished=now())
    prpm_stack.write_json(h.last_run, report)
    log("patch run ok" + (", reboot required but not done" if report["reboot"]["required"] else ""))
    return 0


def await_shutdown(seconds: float) -> None:
    """Return only if this process is still alive `seconds` after a reboot was asked for."""
    time.sleep(seconds)


def reboot_failed(h: Patch, report: dict[str, Any], exc: Failure) -> NoReturn:
    """The stack was stopped for a reboot that did not happen: start it again, then fail."""
    log(f"the reboot failed ({exc}): starting the stack again")
    h.reboot_marker.unlink(missing_ok=True)
    try:
        h.stack.start(h.cfg["health_timeout"])
    except Failure as start_exc:
        log(f"starting the stack failed: {start_exc}")
    health = h.stack.wait_healthy(h.cfg["health_timeout"])
    error = f"reboot failed: {exc}; the stack was started again"
    if not health["ok"]:
        error += " but is unhealthy: " + prpm_stack.describe(health)
    report.update(
        result="failed",
        rebooted=False,
        error=error,
        health_after_failed_reboot=health,
        finished=now(),
    )
    prpm_stack.write_json(h.last_run, report)
    raise Failure(error)


def cmd_post_boot(h: Patch, args: argparse.Namespace) -> int:
    """After a patch reboot: start the stack, wait for it, record and report the outcome."""
    if not h.reboot_marker.exists():
        log("no patch reboot pending, nothing to check")
        return 0
    marker = prpm_stack.read_json(h.reboot_marker, "the reboot marker")
    try:
        h.stack.start(h.cfg["health_timeout"])
    except Failure as exc:
        log(f"starting the stack failed: {exc}")
    result = h.stack.wait_healthy(args.timeout or h.cfg["health_timeout"])
    report = prpm_stack.read_json(h.last_run, "the last run") if h.last_run.exists() else {}
    since = round(time.time() - marker["since"], 1)
    report["post_boot"] = dict(result, checked=now(), seconds_since_reboot=since)
    report["result"] = "ok" if result["ok"] else "failed"
    report["finished"] = now()
    if not result["ok"]:
        report["error"] = "stack unhealthy after the patch reboot: " + prpm_stack.describe(result)
    prpm_stack.write_json(h.last_run, report)
    h.reboot_marker.unlink()
    if not result["ok"]:
        raise Failure(report["error"])
    log(f"stack healthy {since} s after the patch reboot")
    return 0


COMMANDS: dict[str, Callable[[Patch, argparse.Namespace], int]] = {
    "health": cmd_health,
    "plan": cmd_plan,
    "upgrade": cmd_upgrade,
    "reboot-required": cmd_reboot_required,
    "stop-stack": cmd_stop_stack,
    "start-stack": cmd_start_stack,
    "run": cmd_run,
    "post-boot": cmd_post_boot,
}
# Commands that change the host: one at a time.
LOCKED = ("run", "upgrade", "plan")
# Commands that ping (the scheduled run and the check after its reboot).
PINGED = ("run", "post-boot")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
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
    return parser


def _locked(handler: Callable[[], int], lock_path: str) -> int:
    Path(lock_path).parent.mkdir(parents=True, exist_ok=True)
    with Path(lock_path).open("w", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Failure(f"another {PROG} run holds {lock_path}") from exc
        return handler()


def main(
    argv: Sequence[str] | None = None,
    config_path: str = CONFIG,
    contract_path: str = prpm_stack.CONTRACT,
    state_dir: str = STATE_DIR,
    lock_path: str = LOCK,
) -> int:
    args = _parser().parse_args(argv)
    ping_url = ""
    try:
        cfg = prpm_stack.load_config(config_path, CONFIG_SPEC)
        ping_url = cfg["ping_url"] if args.command in PINGED else ""
        handler = functools.partial(
            COMMANDS[args.command], Patch(cfg, contract_path, state_dir), args
        )
        rc = _locked(handler, lock_path) if args.command in LOCKED else handler()
    except Failure as exc:
        print(f"{PROG}: {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        prpm_stack.ping(ping_url, False, str(exc), prog=PROG)
        return EXIT_UNHEALTHY_BEFORE if "nothing changed" in str(exc) else EXIT_FAILED
    prpm_stack.ping(ping_url, True, prog=PROG)
    return rc


if __name__ == "__main__":
    sys.exit(main())
