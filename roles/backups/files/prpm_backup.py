#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by prpm.hobby.backups in /usr/local/lib/prpm-hobby/, /usr/local/sbin/prpm-backup
# links to it. Backs up, checks, restores and drills the PRPM stack with restic.
# Configuration (backup settings only): /etc/prpm-backup/config.json. The stack (compose
# project, database, package files, paths) comes from the stack contract through prpm_stack.
# Every failure (an unexpected error too) exits non-zero, says why on stderr (the journal) and
# pings <ping_url>/fail when a ping URL is set for the command. One run at a time per host (a
# lock, see LOCKED_OUT); every command it starts has a time limit (see Timeouts).
"""prpm-backup: restic backups of the PRPM registry stack that fail loudly."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import prpm_stack
from prpm_stack import Failure, Host, Stack

PROG = "prpm-backup"
CONFIG = "/etc/prpm-backup/config.json"
CONFIG_SPEC: dict[str, prpm_stack.Spec] = {
    "host_tag": str,
    "password_file": str,
    # append_only: this host only adds to the repository (its credentials cannot delete there):
    # it never forgets or prunes it with its own (`forget --repo NAME --credentials-stdin`, run by
    # the controller's backup-prune playbook with another identity's credentials).
    "repositories": [
        {"name": str, "url": str, "env?": dict, "env_file?": prpm_stack.Text, "append_only?": bool}
    ],
    # Files a backup holds besides the stack contract's backup_paths.
    "extra_paths": [str],
    "retention": {"hourly": int, "daily": int, "weekly": int, "monthly": int},
    "check_subset": str,
    "rpo_minutes": int,
    # Command -> URL pinged on success (<url>/fail on failure); commands without one: no ping.
    "ping_urls": dict,
    # Time limits of the commands it starts (see Timeouts); absent: the defaults.
    "command_timeout_seconds?": int,
    "short_command_timeout_seconds?": int,
    # Seconds a run waits for another one to finish (see host_lock); absent: LOCK_WAIT.
    "lock_wait_seconds?": int,
    # SNS topic ARN every failure is published to, besides the ping URLs ('' or absent: none).
    "alert_sns_topic?": prpm_stack.Text,
}
STATE_DIR = "/var/lib/prpm-backup"
DRILL_CONTAINER = "prpm-backup-drill"
RESTIC_CACHE = "/var/cache/prpm-backup/restic"
DUMP_NAME = "prpm.dump"
ROW_TAG = "rows:"
COUNT_SQL = (
    "SELECT table_schema || '.' || table_name, "
    "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', "
    "table_schema, table_name), false, true, '')))[1]::text "
    "FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
    "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)

# Time limits (seconds) of the commands prpm-backup starts. Long: the ones that move data
# (restic backup, forget --prune, check, restore, and restic dump | pg_restore). Short: all the
# others (snapshot lists, row counts, docker and compose). Past its limit a command gets SIGTERM,
# with every process it started, then SIGKILL after KILL_GRACE_SECONDS.
LONG_TIMEOUT = 21600
SHORT_TIMEOUT = 900
# A run waits this long for the one holding the lock (an hourly db backup while the patch run's
# backup starts, timers firing together after downtime) before it gives up (LOCKED_OUT).
LOCK_WAIT = 3600
KILL_GRACE_SECONDS = 10.0
# How long the drill's database gets to accept connections.
READY_TIMEOUT = 120
# One run at a time on a host: a run that finds the lock held exits LOCKED_OUT (EX_TEMPFAIL)
# without doing anything, as a failure (it pings /fail). freshness only reads, and init only
# creates a repository where there is none (the role runs it on every converge): no lock.
LOCK_NAME = "prpm-backup.lock"
UNLOCKED = frozenset({"freshness", "init"})
FAILED = 1
LOCKED_OUT = 75
INTERRUPTED = 130
TERMINATED = 143
# Environment variables whose values never reach the output (the journal, pings).
SECRET_NAME = re.compile(r"SECRET|PASSWORD|PASSPHRASE|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)

log = functools.partial(prpm_stack.log, PROG)
T = TypeVar("T")


class Locked(Failure):
    """Another prpm-backup run holds the host's lock."""


class Terminated(BaseException):
    """SIGTERM (systemctl stop, a shutdown), raised in the main thread so that cleanups run."""


# --- Secrets ------------------------------------------------------------------------------------
_secrets: set[str] = set()


def keep_secret(name: str, value: str) -> None:
    """Remember value when name says it is a secret: redact() takes it out of any output."""
    if SECRET_NAME.search(name) and not name.upper().endswith("_FILE") and len(value) >= 4:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


# --- Commands with a time limit -----------------------------------------------------------------
@dataclass(frozen=True)
class Timeouts:
    """Time limits of the commands a run starts (config.json, from the role's
    backups_command_timeout_seconds and backups_short_command_timeout_seconds)."""

    long: int = LONG_TIMEOUT
    short: int = SHORT_TIMEOUT

    @classmethod
    def of(cls, cfg: Mapping[str, Any]) -> Timeouts:
        return cls(
            cfg.get("command_timeout_seconds", LONG_TIMEOUT),
            cfg.get("short_command_timeout_seconds", SHORT_TIMEOUT),
        )


def describe(cmd: Sequence[str]) -> str:
    text = shlex.join(cmd)
    return text if len(text) <= 200 else text[:200] + " ..."


def _proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a process, from /proc; None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _descendants(root: int) -> set[tuple[int, int]]:
    """Every process below root, as (pid, start time): a pid reused meanwhile is not the same."""
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat:
                children.setdefault(stat[0], []).append((int(entry.name), stat[1]))
    found: set[tuple[int, int]] = set()
    todo = [root]
    while todo:
        for proc in children.get(todo.pop(), []):
            if proc not in found:
                found.add(proc)
                todo.append(proc[0])
    return found


def _alive(proc: tuple[int, int]) -> bool:
    stat = _proc_stat(proc[0])
    return stat is not None and stat[1] == proc[1] and stat[2] not in ("Z", "X")


class Guard:
    """A command's time limit. Past it, every process the command started (its whole tree, its
    children's children too, found in /proc) gets SIGTERM, and SIGKILL KILL_GRACE_SECONDS later
    when still there; the command then returns and the caller reports the timeout."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.fired = False
        self._before = _descendants(os.getpid())
        self._timer = threading.Timer(timeout, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def started(self) -> set[tuple[int, int]]:
        return _descendants(os.getpid()) - self._before

    def _fire(self) -> None:
        self.fired = True
        self.stop_all()

    def stop_all(self) -> None:
        procs = self.started()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for proc in procs:
                if _alive(proc):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(proc[0], sig)
            if sig == signal.SIGTERM:
                deadline = time.monotonic() + KILL_GRACE_SECONDS
                while any(_alive(p) for p in procs) and time.monotonic() < deadline:
                    threading.Event().wait(0.1)
                # And whatever they started meanwhile.
                procs |= self.started()

    def finish(self, interrupted: bool = False) -> None:
        """The command returned: no more timer (one that fired has finished its work). When it
        was interrupted (SIGTERM, ^C), what it started goes too."""
        self._timer.cancel()
        if self._timer.is_alive() and self._timer is not threading.current_thread():
            self._timer.join()
        if interrupted and not self.fired:
            self.stop_all()


def limited(what: str, timeout: float, call: Callable[[], T]) -> T:
    """call() (which runs one command, or one pipeline), stopped past timeout seconds: then a
    Failure naming what and the limit."""
    guard = Guard(timeout)
    try:
        result = call()
    except Failure:
        guard.finish()
        if guard.fired:
            raise _timed_out(what, timeout) from None
        raise
    except BaseException:
        guard.finish(interrupted=True)
        raise
    guard.finish()
    if guard.fired and isinstance(result, subprocess.CompletedProcess) and result.returncode:
        raise _timed_out(what, timeout)
    return result


def _timed_out(what: str, timeout: float) -> Failure:
    return Failure(
        f"{what} did not finish within its time limit of {timeout:g} s: it was stopped, with "
        "every process it started"
    )


def run(
    cmd: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
) -> str:
    """prpm_stack.run with a time limit."""
    return limited(describe(cmd), timeout, lambda: prpm_stack.run(cmd, env=env, capture=capture))


def attempt(
    cmd: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """prpm_stack.attempt with a time limit (past it: Failure, not an exit status)."""
    return limited(describe(cmd), timeout, lambda: prpm_stack.attempt(cmd, env=env))


def pipe(
    producer: Sequence[str],
    consumer: Sequence[str],
    *,
    timeout: float,
    producer_env: Mapping[str, str] | None = None,
    producer_name: str = "",
) -> str:
    """prpm_stack.pipe with one time limit for both commands."""
    what = f"{producer_name or describe(producer)} | {describe(consumer)}"
    return limited(
        what,
        timeout,
        lambda: prpm_stack.pipe(
            producer, consumer, producer_env=producer_env, producer_name=producer_name
        ),
    )


class Database:
    """The stack's database (the contract's 'database'), reached in its service's container."""

    def __init__(self, stack: Stack, timeouts: Timeouts) -> None:
        db = stack.contract["database"]
        self.stack = stack
        self.timeouts = timeouts
        self.service: str = db["service"]
        self.name: str = db["name"]
        self.user: str = db["user"]

    def exec(self, *args: str) -> list[str]:
        return self.stack.exec(self.service, *args)

    def psql(self, sql: str, container: Sequence[str] | None = None) -> str:
        base = list(container) if container else self.exec()
        login = ["-U", self.user, "-d", self.name]
        return run(
            [*base, "psql", "-v", "ON_ERROR_STOP=1", *login, "-At", "-F", "\t", "-c", sql],
            timeout=self.timeouts.short,
        )

    def counts(self, container: Sequence[str] | None = None) -> dict[str, int]:
        """Rows in every table, by schema.table."""
        rows = {}
        for line in self.psql(COUNT_SQL, container).splitlines():
            table, _tab, count = line.partition("\t")
            rows[table] = int(count)
        return rows

    def dump_cmd(self) -> list[str]:
        return self.exec("pg_dump", "-U", self.user, "-d", self.name, "-Fc")

    def restore_args(self, clean: bool) -> list[str]:
        args = ["pg_restore", "-U", self.user, "-d", self.name, "--no-owner"]
        args += ["--exit-on-error", "--single-transaction"]
        return args + (["--clean", "--if-exists"] if clean else [])


class Backup(Host):
    """A prpm-backup run: the configuration, the stack's database and package files, and where
    drills are recorded."""

    default_state_dir = STATE_DIR

    @property
    def timeouts(self) -> Timeouts:
        return Timeouts.of(self.cfg)

    @property
    def lock_file(self) -> Path:
        return self.state_dir / LOCK_NAME

    @property
    def lock_wait(self) -> int:
        return self.cfg.get("lock_wait_seconds", LOCK_WAIT)

    @property
    def last_drill(self) -> Path:
        return self.state_dir / "last-drill.json"

    @property
    def scratch(self) -> Path:
        """On disk, not in /tmp (tmpfs: RAM on a 1 GiB host)."""
        return self.state_dir / "scratch"

    @functools.cached_property
    def db(self) -> Database:
        return Database(self.stack, self.timeouts)

    @property
    def packages_path(self) -> str:
        """The package files on the host (local storage), '' when they are elsewhere (S3)."""
        files = self.contract["package_files"]
        return files["path"] if files else ""

    @property
    def storage_service(self) -> str:
        return self.contract["package_files"]["service"]

    @property
    def paths(self) -> list[str]:
        """The files a backup holds: the stack's, then the configured extra ones."""
        return [*self.contract["backup_paths"], *self.cfg["extra_paths"]]


class Repo:
    def __init__(self, spec: Mapping[str, Any], cfg: Mapping[str, Any]) -> None:
        self.name: str = spec["name"]
        self.timeouts = Timeouts.of(cfg)
        self.append_only = bool(spec.get("append_only", False))
        self.env = dict(os.environ)
        env_file = spec.get("env_file")
        if env_file and Path(env_file).exists():
            for raw in Path(env_file).read_text(encoding="utf-8").splitlines():
                line = raw.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, _eq, value = line.partition("=")
                    self.env[key] = value
        # Given ones win over the file: the pruning identity's credentials over the host's keys.
        self.env.update(spec.get("env", {}))
        self.env["RESTIC_REPOSITORY"] = spec["url"]
        self.env["RESTIC_PASSWORD_FILE"] = cfg["password_file"]
        self.env.setdefault("RESTIC_CACHE_DIR", RESTIC_CACHE)
        for key, value in self.env.items():
            keep_secret(key, value)
        self.host: str = cfg["host_tag"]

    def restic(self, *args: str, long: bool = False) -> str:
        """restic with the short time limit, or the long one for the commands that move data."""
        timeout = self.timeouts.long if long else self.timeouts.short
        try:
            return run(["restic", "--quiet", *args], env=self.env, timeout=timeout)
        except Failure as exc:
            raise Failure(f"[{self.name}] {exc}") from None

    def exists(self) -> bool:
        proc = attempt(["restic", "cat", "config"], env=self.env, timeout=self.timeouts.short)
        if proc.returncode == 0:
            return True
        if (
            proc.returncode == 10
            or "does not exist" in proc.stderr
            or "Is there a repository" in proc.stderr
        ):
            return False
        raise Failure(f"[{self.name}] cannot open the repository: {proc.stderr.strip()[-1000:]}")

    def snapshots(self, tag: str) -> list[dict[str, Any]]:
        out = self.restic("snapshots", "--json", "--host", self.host, "--tag", tag)
        snaps = json.loads(out or "[]")
        return sorted(snaps, key=lambda s: s["time"])

    def snapshot(self, tag: str, ident: str) -> dict[str, Any]:
        snaps = self.snapshots(tag)
        if not snaps:
            raise Failure(f"[{self.name}] no {tag} snapshot in the repository")
        if ident == "latest":
            return snaps[-1]
        for snap in snaps:
            if snap["id"].startswith(ident) or snap["short_id"] == ident:
                return snap
        raise Failure(f"[{self.name}] no {tag} snapshot {ident}")

    def dump_cmd(self, snap: Mapping[str, Any]) -> list[str]:
        """argv that writes the snapshot's database dump to stdout."""
        return ["restic", "--quiet", "dump", snap["id"], f"/{DUMP_NAME}"]


def recorded_counts(snap: Mapping[str, Any]) -> dict[str, int]:
    counts = {}
    for tag in snap.get("tags") or []:
        if tag.startswith(ROW_TAG):
            table, _eq, count = tag[len(ROW_TAG) :].rpartition("=")
            counts[table] = int(count)
    return counts


def repos(cfg: Mapping[str, Any], only: str | None = None) -> list[Repo]:
    found = [Repo(r, cfg) for r in cfg["repositories"] if only in (None, r["name"])]
    if not found:
        raise Failure(f"no repository named {only}")
    return found


# --- commands ----------------------------------------------------------------------------------


def cmd_init(b: Backup, args: argparse.Namespace) -> None:
    for repo in repos(b.cfg, args.repo):
        if repo.exists():
            log(f"[{repo.name}] repository exists")
        else:
            repo.restic("init")
            log(f"[{repo.name}] repository initialized")


def cmd_db(b: Backup, args: argparse.Namespace) -> None:
    for repo in repos(b.cfg, args.repo):
        for tries in range(1, 4):
            before = b.db.counts()
            tags = ["db"] + [f"{ROW_TAG}{t}={n}" for t, n in sorted(before.items())]
            tag_args = [a for t in tags for a in ("--tag", t)]
            out = repo.restic(
                "backup", "--json", "--host", repo.host, *tag_args,
                "--stdin-filename", DUMP_NAME, "--stdin-from-command", "--", *b.db.dump_cmd(),
                long=True,
            )  # fmt: skip
            summary = [json.loads(x) for x in out.splitlines() if '"summary"' in x]
            snap_id = summary[-1]["snapshot_id"] if summary else "?"
            after = b.db.counts()
            if after == before:
                size = summary[-1].get("total_bytes_processed", 0) if summary else 0
                log(
                    f"[{repo.name}] database snapshot {snap_id[:8]}: {len(before)} tables, "
                    f"{sum(before.values())} rows, {size} bytes"
                )
                break
            log(f"[{repo.name}] rows changed during the dump (attempt {tries}); again")
            if repo.append_only:
                log(f"[{repo.name}] snapshot {snap_id[:8]} stays (append-only): pruning forgets it")
            else:
                repo.restic("forget", snap_id)
        else:
            raise Failure(f"[{repo.name}] the database kept changing during three dumps")
        try:
            _backup_packages(b, repo, snap_id)
        except BaseException:
            # A database snapshot without its package files would restore rows without files.
            _forget_after_failure(repo, snap_id)
            raise


def _forget_after_failure(repo: Repo, snap_id: str) -> None:
    """Forget a snapshot while another failure is reported: one that stays is said, not raised."""
    if repo.append_only:
        print(
            f"{PROG}: database snapshot {snap_id} stays in the append-only repository "
            f"{repo.name} (restores pick a database snapshot with its package files)",
            file=sys.stderr,
        )
        return
    try:
        repo.restic("forget", snap_id)
    except Failure as exc:
        print(
            redact(f"{PROG}: database snapshot {snap_id} was not forgotten: {exc}"), file=sys.stderr
        )


def _backup_packages(b: Backup, repo: Repo, db_snap_id: str) -> None:
    """Package files (local storage), right after the database: every file a row refers to is
    in it. Tagged with the database snapshot's id, which is how a restore finds it."""
    path = b.packages_path
    if not path:
        return
    if not Path(path).is_dir():
        raise Failure(f"the package files directory {path} is missing")
    objects = count_objects(path)
    repo.restic(
        "backup", "--host", repo.host, "--tag", "packages", "--tag", f"db={db_snap_id}",
        "--tag", f"objects={objects}", path, long=True,
    )  # fmt: skip
    log(f"[{repo.name}] package files snapshot: {objects} objects in {path}")


def db_snapshot(b: Backup, repo: Repo, ident: str) -> dict[str, Any]:
    """The database snapshot to restore: `latest` is the newest one whose package files were
    backed up too when the package files are on this host (an append-only repository keeps a
    database snapshot whose package files failed; the host cannot forget it)."""
    if ident != "latest" or not b.packages_path or not repo.append_only:
        return repo.snapshot("db", ident)
    with_files = {
        tag[len("db=") :]
        for snap in repo.snapshots("packages")
        for tag in snap.get("tags") or []
        if tag.startswith("db=")
    }
    complete = [s for s in repo.snapshots("db") if s["id"] in with_files]
    if not complete:
        raise Failure(f"[{repo.name}] no db snapshot with its package files in the repository")
    return complete[-1]


def _packages_snapshot(repo: Repo, db_snap: Mapping[str, Any]) -> dict[str, Any]:
    """The package files snapshot taken with a database snapshot (tag db=<its id>)."""
    for snap in repo.snapshots("packages"):
        if f"db={db_snap['id']}" in (snap.get("tags") or []):
            return snap
    raise Failure(
        f"[{repo.name}] no package files snapshot goes with database snapshot "
        f"{db_snap['short_id']}: its rows would come back without their files"
    )


def _recorded_objects(snap: Mapping[str, Any]) -> int:
    for tag in snap.get("tags") or []:
        if tag.startswith("objects="):
            return int(tag.partition("=")[2])
    raise Failure(f"package files snapshot {snap['short_id']} records no object count")


def count_objects(path: str | Path) -> int:
    """Objects of the storage service: the files in each bucket's data/ directory."""
    return sum(1 for bucket in Path(path).glob("*/data") for f in bucket.iterdir() if f.is_file())


def cmd_files(b: Backup, args: argparse.Namespace) -> None:
    wanted = b.paths
    paths = [p for p in wanted if Path(p).exists()]
    missing = sorted(set(wanted) - set(paths))
    if missing:
        raise Failure(f"paths to back up are missing: {', '.join(missing)}")
    for repo in repos(b.cfg, args.repo):
        repo.restic("backup", "--host", repo.host, "--tag", "files", *paths, long=True)
        log(f"[{repo.name}] files snapshot of {', '.join(paths)}")


def cmd_forget(b: Backup, args: argparse.Namespace) -> None:
    keep = b.cfg["retention"]
    keep_args = []
    for key in ("hourly", "daily", "weekly", "monthly"):
        keep_args += [f"--keep-{key}", str(keep[key])]
    for repo in repos(b.cfg, args.repo):
        # Only with another identity's credentials (on stdin): the host's own cannot delete there.
        if repo.append_only and not getattr(args, "credentials_stdin", False):
            log(
                f"[{repo.name}] append-only on this host: pruned with another identity "
                f"(playbooks/backup-prune.yml runs forget --repo {repo.name} --credentials-stdin)"
            )
            continue
        repo.restic(
            "forget", "--host", repo.host, "--group-by", "host,paths", *keep_args, "--prune",
            long=True,
        )  # fmt: skip
        log(f"[{repo.name}] retention applied and pruned")


def cmd_check(b: Backup, args: argparse.Namespace) -> None:
    subset = b.cfg["check_subset"]
    for repo in repos(b.cfg, args.repo):
        repo.restic("check", f"--read-data-subset={subset}", long=True)
        log(f"[{repo.name}] check passed (read {subset} of the data)")


def cmd_freshness(b: Backup, args: argparse.Namespace) -> None:
    rpo = b.cfg["rpo_minutes"]
    for repo in repos(b.cfg, args.repo):
        snaps = repo.snapshots("db")
        if not snaps:
            raise Failure(f"[{repo.name}] no database snapshot at all")
        newest = datetime.fromisoformat(snaps[-1]["time"].replace("Z", "+00:00"))
        age = (datetime.now(UTC) - newest).total_seconds()
        if age > rpo * 60:
            raise Failure(
                f"[{repo.name}] newest database snapshot {snaps[-1]['short_id']} is "
                f"{age / 60:.0f} min old, older than the RPO of {rpo} min"
            )
        log(f"[{repo.name}] newest database snapshot is {age / 60:.0f} min old (RPO {rpo} min)")


def _restore_into(
    b: Backup, repo: Repo, snap: Mapping[str, Any], target: Sequence[str], clean: bool
) -> None:
    """restic dump | pg_restore in target (argv prefix that runs a command in a container)."""
    try:
        pipe(
            repo.dump_cmd(snap),
            [*target, *b.db.restore_args(clean)],
            producer_env=repo.env,
            producer_name="restic dump",
            timeout=b.timeouts.long,
        )
    except Failure as exc:
        raise Failure(f"[{repo.name}] {exc}") from None


def _verify(expected: Mapping[str, int], got: Mapping[str, int], where: str) -> None:
    if not expected:
        raise Failure("the snapshot records no row counts")
    diff = {t: (n, got.get(t)) for t, n in expected.items() if got.get(t) != n}
    if diff:
        raise Failure(
            f"row counts in {where} differ from the snapshot's record: "
            + ", ".join(f"{t}: expected {a}, found {b}" for t, (a, b) in diff.items())
        )


def cmd_restore(b: Backup, args: argparse.Namespace) -> None:
    compose = b.stack.compose

    def step(*words: str) -> None:
        run(compose(*words), timeout=b.timeouts.short)

    registry = b.contract["registry_service"]
    repo = repos(b.cfg, args.repo)[0]
    snap = db_snapshot(b, repo, args.snapshot)
    expected = recorded_counts(snap)
    path = b.packages_path
    # Found before anything stops: a database snapshot without its package files is refused.
    packages = _packages_snapshot(repo, snap) if path else None
    log(f"[{repo.name}] restoring database snapshot {snap['short_id']} of {snap['time']}")
    step("stop", registry)
    # `up` brings back the database's volume (empty) when it was lost.
    step("up", "-d", "--wait", b.db.service)
    _restore_into(b, repo, snap, b.db.exec(), clean=True)
    _verify(expected, b.db.counts(), "the live database")
    log(
        f"[{repo.name}] restored {len(expected)} tables, {sum(expected.values())} rows; "
        "row counts match the snapshot"
    )
    if packages is not None:
        storage = b.storage_service
        step("stop", storage)
        # `create` brings back the volume (and container) when they were removed.
        step("create", "--no-recreate", storage)
        repo.restic("restore", packages["id"], "--target", "/", "--include", path, long=True)
        want, got = _recorded_objects(packages), count_objects(path)
        if got < want:
            raise Failure(
                f"[{repo.name}] {got} package files after the restore, the snapshot recorded {want}"
            )
        step("up", "-d", "--wait", "--no-deps", storage)
        log(f"[{repo.name}] restored package files snapshot {packages['short_id']}: {got} objects")
    step("up", "-d", "--wait", "--no-deps", registry)
    log(f"{registry} started")


def drill_container_cmd(b: Backup, name: str) -> list[str]:
    """docker run argv of the drill's throwaway database: the stack's image and server program,
    small and without fsync, no network. Its password comes from the environment, never argv.
    --rm: docker removes it with its anonymous volume (the restored copy of the database) when
    it exits, and when the daemon starts again after a crash; the drill removes it (rm -f -v)
    when it is done, failed or stopped."""
    config = run(b.stack.compose("config", "--format", "json"), timeout=b.timeouts.short)
    service = json.loads(config)["services"][b.db.service]
    # The server program as the stack runs it (the command's first word), with the drill's
    # settings; a service without a command runs the image's own.
    command = service.get("command") or []
    server = [command[0], "-c", "shared_buffers=32MB", "-c", "fsync=off"] if command else []
    return [
        "docker", "run", "-d", "--rm", "--name", name, "--network", "none", "--memory", "256m",
        "-e", f"POSTGRES_USER={b.db.user}", "-e", f"POSTGRES_DB={b.db.name}",
        "-e", "POSTGRES_HOST_AUTH_METHOD=trust", "-e", "POSTGRES_PASSWORD",
        service["image"], *server,
    ]  # fmt: skip


def _wait_ready(b: Backup, name: str, target: Sequence[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    probe = min(b.timeouts.short, timeout)
    ready = [*target, "pg_isready", "-U", b.db.user, "-d", b.db.name, "-h", "127.0.0.1"]
    while attempt(ready, timeout=probe).returncode != 0:
        state = attempt(["docker", "inspect", "-f", "{{.State.Running}}", name], timeout=probe)
        if state.stdout.strip() != "true":
            logs = attempt(["docker", "logs", "--tail", "20", name], timeout=probe)
            output = (logs.stdout + logs.stderr).strip()[-1000:] if logs.returncode == 0 else ""
            # --rm: the container may be gone with its output by now.
            raise Failure(
                "the drill's database exited: "
                + (output or "its container was removed with its output (docker run --rm)")
            )
        if time.monotonic() > deadline:
            raise Failure(f"the drill's database did not become ready in {timeout:.0f} s")
        time.sleep(1)


def remove_drill_container(b: Backup) -> str:
    """docker rm -f -v: the drill's container and its anonymous volume (the restored copy of the
    database). '' when they are gone, else what is wrong."""
    name = DRILL_CONTAINER
    try:
        proc = attempt(["docker", "rm", "-f", "-v", name], timeout=b.timeouts.short)
    except Failure as exc:
        why = str(exc)
    else:
        # Gone already, or being removed by docker (--rm) right now: both are fine.
        if proc.returncode == 0 or any(
            text in proc.stderr for text in ("No such container", "already in progress")
        ):
            return ""
        why = (proc.stderr or proc.stdout).strip()[-500:] or f"docker rm exited {proc.returncode}"
    return (
        f"the drill container {name} and its volume (a copy of the database) could not be "
        f"removed: {why}; remove them with: docker rm -f -v {name}"
    )


def cmd_drill(b: Backup, args: argparse.Namespace) -> None:
    repo = repos(b.cfg, args.repo)[0]
    started = time.monotonic()
    snap = db_snapshot(b, repo, args.snapshot)
    expected = recorded_counts(snap)
    # A container left by a drill that was killed (its name is taken, its volume holds a copy).
    leftover = remove_drill_container(b)
    if leftover:
        raise Failure(f"{leftover}; the drill did not start")
    target = ["docker", "exec", "-i", DRILL_CONTAINER]
    password = os.urandom(16).hex()
    _secrets.add(password)
    try:
        run(
            drill_container_cmd(b, DRILL_CONTAINER),
            env={"POSTGRES_PASSWORD": password},
            timeout=b.timeouts.short,
        )
        _wait_ready(b, DRILL_CONTAINER, target, READY_TIMEOUT)
        _restore_into(b, repo, snap, target, clean=False)
        _verify(expected, b.db.counts(target), "the drill database")
        objects = _drill_packages(b, repo, snap)
    except BaseException:
        # Failed, stopped or interrupted: the container goes all the same; the first failure
        # is the one reported.
        problem = remove_drill_container(b)
        if problem:
            print(redact(f"{PROG}: {problem}"), file=sys.stderr, flush=True)
        raise
    problem = remove_drill_container(b)
    if problem:
        raise Failure(problem)
    rto = time.monotonic() - started
    result = {
        "snapshot": snap["short_id"],
        "snapshot_time": snap["time"],
        "tables": len(expected),
        "rows": sum(expected.values()),
        "package_objects": objects,
        "rto_seconds": round(rto, 1),
    }
    prpm_stack.write_json(b.last_drill, dict(result, finished=datetime.now(UTC).isoformat()))
    log(
        f"[{repo.name}] drill passed: snapshot {snap['short_id']} restored into a throwaway "
        f"database, {result['tables']} tables, {result['rows']} rows match; RTO {rto:.1f} s"
    )
    print(json.dumps(result), flush=True)


def _drill_packages(b: Backup, repo: Repo, db_snap: Mapping[str, Any]) -> int | None:
    """Restore the package files that go with the snapshot into scratch space and count them."""
    path = b.packages_path
    if not path:
        return None
    packages = _packages_snapshot(repo, db_snap)
    b.scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drill-", dir=b.scratch) as scratch:
        repo.restic("restore", packages["id"], "--target", scratch, "--include", path, long=True)
        want, got = _recorded_objects(packages), count_objects(scratch + path)
    if got != want:
        raise Failure(
            f"[{repo.name}] the drill restored {got} package files, the snapshot recorded {want}"
        )
    log(f"[{repo.name}] drill: package files snapshot {packages['short_id']}: {got} objects")
    return got


def cmd_run(b: Backup, args: argparse.Namespace) -> None:
    """The daily job: database, files, retention."""
    cmd_db(b, args)
    cmd_files(b, args)
    cmd_forget(b, args)


COMMANDS: dict[str, Callable[[Backup, argparse.Namespace], None]] = {
    "init": cmd_init,
    "db": cmd_db,
    "files": cmd_files,
    "forget": cmd_forget,
    "check": cmd_check,
    "freshness": cmd_freshness,
    "restore": cmd_restore,
    "drill": cmd_drill,
    "run": cmd_run,
}


@contextlib.contextmanager
def host_lock(path: Path, command: str, wait: float = 0, poll: float = 5) -> Iterator[None]:
    """One run at a time on the host: flock on path, waiting up to `wait` seconds for the run
    that holds it. Locked when it is still held then (the file says which run, since when)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left > 0:
                    time.sleep(min(poll, left))
                    continue
                holder = os.pread(fd, 300, 0).decode("utf-8", "replace").strip() or "unknown"
                raise Locked(
                    f"another {PROG} run holds the lock {path} ({holder}), still after "
                    f"{wait:g} s; this {command} run did not start"
                ) from None
        os.ftruncate(fd, 0)
        since = datetime.now(UTC).isoformat(timespec="seconds")
        os.pwrite(fd, f"pid {os.getpid()}, {command} since {since}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Terminated in the main thread (once), so that cleanups (the drill's
    container, the commands running) happen and the failure is reported."""
    raised = False

    def handler(_signum: int, _frame: object) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: the default action stays
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _check_timeouts(cfg: Mapping[str, Any], path: str) -> None:
    for key in ("command_timeout_seconds", "short_command_timeout_seconds"):
        if key in cfg and cfg[key] < 1:
            raise Failure(f"the configuration {path} is not valid: '{key}' must be at least 1")
    if cfg.get("lock_wait_seconds", 0) < 0:
        raise Failure(f"the configuration {path} is not valid: 'lock_wait_seconds' must be >= 0")


def publish_alert(topic_arn: str, subject: str, message: str) -> bool:
    """Publish to an SNS topic (the AWS tier's alarms topic, whose e-mail subscribers get it),
    with the credentials botocore finds (the instance role); whether it was published. Never
    fatal: a publish that fails is said on stderr."""
    if not topic_arn:
        return False
    try:
        import botocore.session  # noqa: PLC0415 (python3-botocore, installed with a topic only)

        region = topic_arn.split(":")[3]
        client = botocore.session.get_session().create_client("sns", region_name=region)
        client.publish(TopicArn=topic_arn, Subject=subject[:100], Message=message[:10000])
    except Exception as exc:  # any failure to alert is said, not raised
        print(redact(f"{PROG}: alert to {topic_arn} failed: {exc}"), file=sys.stderr, flush=True)
        return False
    return True


# Commands whose alert was sent and has not recovered yet: <state dir>/alerts/<command>.failed.
ALERTS_DIR = "alerts"


def alert(cfg: Mapping[str, Any], state_dir: str, command: str, why: str | None) -> None:
    """One alert when a command turns bad (why: the reason) and one when it succeeds again
    (why None), not one per failing run: an hourly backup failing for a day sends one e-mail,
    not 24. A command's marker is written only once its alert was published, so an alert that
    could not be sent is tried again by the next failing run."""
    topic, host = cfg.get("alert_sns_topic", ""), cfg["host_tag"]
    if not topic:
        return
    marker = Path(state_dir) / ALERTS_DIR / f"{command}.failed"
    if why is None:
        if marker.exists() and publish_alert(
            topic,
            f"{PROG} {command} recovered on {host}",
            f"{PROG} {command} succeeded on {host} again. It had failed: {marker.read_text()}",
        ):
            marker.unlink()
        return
    if marker.exists():
        log(f"{command} still failing: its alert went out already, the next one when it recovers")
        return
    if publish_alert(
        topic,
        f"{PROG} {command} failed on {host}",
        f"{PROG} {command} failed on {host}: {why}\n"
        f"journalctl -u prpm-backup@{command} on the host says more.",
    ):
        try:
            marker.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            marker.write_text(f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {why[:2000]}")
        except OSError as exc:  # then the next failing run alerts again: better than silence
            print(f"{PROG}: could not record the alert in {marker}: {exc}", file=sys.stderr)


CREDENTIAL_KEYS = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"})


def given_credentials(cfg: dict[str, Any], args: argparse.Namespace, text: str) -> None:
    """Put the credentials read from standard input into the environment of the one repository
    `forget --repo NAME` names (never into a file, an argument or the output)."""
    if args.command != "forget" or not args.repo:
        raise Failure("--credentials-stdin goes with forget --repo NAME only")
    try:
        given = json.loads(text)
    except ValueError:
        raise Failure("--credentials-stdin: standard input is not a JSON object") from None
    if not isinstance(given, dict) or not given:
        raise Failure("--credentials-stdin: standard input is not a JSON object with credentials")
    unknown = sorted(set(given) - CREDENTIAL_KEYS)
    if unknown or not all(isinstance(v, str) and v for v in given.values()):
        raise Failure(
            "--credentials-stdin: only non-empty strings under "
            f"{', '.join(sorted(CREDENTIAL_KEYS))} (got {', '.join(unknown) or 'an empty value'})"
        )
    for value in given.values():
        keep_secret("credential", value)
    for spec in cfg["repositories"]:
        if spec["name"] == args.repo:
            spec["env"] = {**spec.get("env", {}), **given}


def execute(b: Backup, args: argparse.Namespace) -> tuple[int, str]:
    """Run the command: (0, '') or (exit status, what went wrong). Any exception is a failure;
    one that is not a Failure leaves its traceback on stderr."""
    try:
        with sigterm_raises():
            lock = (
                contextlib.nullcontext()
                if args.command in UNLOCKED
                else host_lock(
                    b.lock_file,
                    args.command,
                    wait=b.lock_wait
                    if getattr(args, "lock_wait", None) is None
                    else args.lock_wait,
                )
            )
            with lock:
                COMMANDS[args.command](b, args)
    except Locked as exc:
        return LOCKED_OUT, str(exc)
    except Failure as exc:
        return FAILED, str(exc)
    except Terminated:
        return TERMINATED, "stopped by SIGTERM before it finished"
    except KeyboardInterrupt:
        return INTERRUPTED, "interrupted before it finished"
    except Exception as exc:
        print(redact(traceback.format_exc()), file=sys.stderr, end="", flush=True)
        return FAILED, f"unexpected error: {type(exc).__name__}: {exc} (traceback in the log)"
    return 0, ""


def main(
    argv: Sequence[str] | None = None,
    config_path: str = CONFIG,
    contract_path: str = prpm_stack.CONTRACT,
    state_dir: str = STATE_DIR,
) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--repo", help="only this repository (by name)")
    parser.add_argument("--snapshot", default="latest", help="restore/drill: snapshot id")
    parser.add_argument(
        "--credentials-stdin",
        action="store_true",
        help="forget --repo NAME: that repository's credentials as a JSON object on standard "
        f"input (keys {', '.join(sorted(CREDENTIAL_KEYS))}), e.g. a pruning identity's",
    )
    parser.add_argument(
        "--lock-wait",
        type=int,
        metavar="SECONDS",
        help="seconds to wait for another run's lock, instead of the configured lock_wait_seconds "
        "(a prune with one-hour credentials must not spend them waiting)",
    )
    args = parser.parse_args(argv)
    if args.lock_wait is not None and args.lock_wait < 0:
        parser.error("--lock-wait must be 0 or more seconds")
    try:
        cfg = prpm_stack.load_config(config_path, CONFIG_SPEC)
        _check_timeouts(cfg, config_path)
    except Failure as exc:
        print(f"{PROG} {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        return FAILED
    if args.credentials_stdin:
        try:
            given_credentials(cfg, args, sys.stdin.read())
        except Failure as exc:
            print(f"{PROG} {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
            return FAILED
    ping_url = cfg["ping_urls"].get(args.command) or ""
    for repo in cfg["repositories"]:
        for key, value in repo.get("env", {}).items():
            keep_secret(key, str(value))
    status, why = execute(Backup(cfg, contract_path, state_dir), args)
    if status:
        why = redact(why)
        print(f"{PROG} {args.command} FAILED: {why}", file=sys.stderr, flush=True)
        prpm_stack.ping(ping_url, False, why, prog=PROG)
        alert(cfg, state_dir, args.command, why)
        return status
    prpm_stack.ping(ping_url, True, prog=PROG)
    alert(cfg, state_dir, args.command, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
