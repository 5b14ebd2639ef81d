#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by prpm.hobby.backups in /usr/local/lib/prpm-hobby/, /usr/local/sbin/prpm-backup
# links to it. Backs up, checks, restores and drills the PRPM stack with restic.
# Configuration (backup settings only): /etc/prpm-backup/config.json. The stack (compose
# project, database, package files, paths) comes from the stack contract through prpm_stack.
# Every failure exits non-zero, says why on stderr (the journal) and pings <ping_url>/fail when
# a ping URL is set for the command.
"""prpm-backup: restic backups of the PRPM registry stack that fail loudly."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import prpm_stack
from prpm_stack import Failure, Host, Stack

PROG = "prpm-backup"
CONFIG = "/etc/prpm-backup/config.json"
CONFIG_SPEC: dict[str, prpm_stack.Spec] = {
    "host_tag": str,
    "password_file": str,
    "repositories": [{"name": str, "url": str, "env?": dict, "env_file?": prpm_stack.Text}],
    # Files a backup holds besides the stack contract's backup_paths.
    "extra_paths": [str],
    "retention": {"hourly": int, "daily": int, "weekly": int, "monthly": int},
    "check_subset": str,
    "rpo_minutes": int,
    # Command -> URL pinged on success (<url>/fail on failure); commands without one: no ping.
    "ping_urls": dict,
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

log = functools.partial(prpm_stack.log, PROG)


class Database:
    """The stack's database (the contract's 'database'), reached in its service's container."""

    def __init__(self, stack: Stack) -> None:
        db = stack.contract["database"]
        self.stack = stack
        self.service: str = db["service"]
        self.name: str = db["name"]
        self.user: str = db["user"]

    def exec(self, *args: str) -> list[str]:
        return self.stack.exec(self.service, *args)

    def psql(self, sql: str, container: Sequence[str] | None = None) -> str:
        base = list(container) if container else self.exec()
        login = ["-U", self.user, "-d", self.name]
        return prpm_stack.run(
            [*base, "psql", "-v", "ON_ERROR_STOP=1", *login, "-At", "-F", "\t", "-c", sql]
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
    def last_drill(self) -> Path:
        return self.state_dir / "last-drill.json"

    @property
    def scratch(self) -> Path:
        """On disk, not in /tmp (tmpfs: RAM on a 1 GiB host)."""
        return self.state_dir / "scratch"

    @functools.cached_property
    def db(self) -> Database:
        return Database(self.stack)

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
        self.env = dict(os.environ)
        self.env.update(spec.get("env", {}))
        env_file = spec.get("env_file")
        if env_file and Path(env_file).exists():
            for raw in Path(env_file).read_text(encoding="utf-8").splitlines():
                line = raw.strip()
                if line and not line.startswith("#") and "=" in line:
                    key, _eq, value = line.partition("=")
                    self.env[key] = value
        self.env["RESTIC_REPOSITORY"] = spec["url"]
        self.env["RESTIC_PASSWORD_FILE"] = cfg["password_file"]
        self.env.setdefault("RESTIC_CACHE_DIR", RESTIC_CACHE)
        self.host: str = cfg["host_tag"]

    def restic(self, *args: str, capture: bool = True) -> str:
        try:
            return prpm_stack.run(["restic", "--quiet", *args], env=self.env, capture=capture)
        except Failure as exc:
            raise Failure(f"[{self.name}] {exc}") from None

    def exists(self) -> bool:
        proc = prpm_stack.attempt(["restic", "cat", "config"], env=self.env)
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
        for attempt in range(1, 4):
            before = b.db.counts()
            tags = ["db"] + [f"{ROW_TAG}{t}={n}" for t, n in sorted(before.items())]
            tag_args = [a for t in tags for a in ("--tag", t)]
            out = repo.restic(
                "backup", "--json", "--host", repo.host, *tag_args,
                "--stdin-filename", DUMP_NAME, "--stdin-from-command", "--", *b.db.dump_cmd(),
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
            log(f"[{repo.name}] rows changed during the dump (attempt {attempt}); again")
            repo.restic("forget", snap_id)
        else:
            raise Failure(f"[{repo.name}] the database kept changing during three dumps")
        try:
            _backup_packages(b, repo, snap_id)
        except Failure:
            # A database snapshot without its package files would restore rows without files.
            repo.restic("forget", snap_id)
            raise


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
        "--tag", f"objects={objects}", path,
    )  # fmt: skip
    log(f"[{repo.name}] package files snapshot: {objects} objects in {path}")


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
        repo.restic("backup", "--host", repo.host, "--tag", "files", *paths)
        log(f"[{repo.name}] files snapshot of {', '.join(paths)}")


def cmd_forget(b: Backup, args: argparse.Namespace) -> None:
    keep = b.cfg["retention"]
    keep_args = []
    for key in ("hourly", "daily", "weekly", "monthly"):
        keep_args += [f"--keep-{key}", str(keep[key])]
    for repo in repos(b.cfg, args.repo):
        repo.restic(
            "forget", "--host", repo.host, "--group-by", "host,paths", *keep_args, "--prune"
        )
        log(f"[{repo.name}] retention applied and pruned")


def cmd_check(b: Backup, args: argparse.Namespace) -> None:
    subset = b.cfg["check_subset"]
    for repo in repos(b.cfg, args.repo):
        repo.restic("check", f"--read-data-subset={subset}")
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
        prpm_stack.pipe(
            repo.dump_cmd(snap),
            [*target, *b.db.restore_args(clean)],
            producer_env=repo.env,
            producer_name="restic dump",
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
    compose, run = b.stack.compose, prpm_stack.run
    registry = b.contract["registry_service"]
    repo = repos(b.cfg, args.repo)[0]
    snap = repo.snapshot("db", args.snapshot)
    expected = recorded_counts(snap)
    path = b.packages_path
    # Found before anything stops: a database snapshot without its package files is refused.
    packages = _packages_snapshot(repo, snap) if path else None
    log(f"[{repo.name}] restoring database snapshot {snap['short_id']} of {snap['time']}")
    run(compose("stop", registry))
    # `up` brings back the database's volume (empty) when it was lost.
    run(compose("up", "-d", "--wait", b.db.service))
    _restore_into(b, repo, snap, b.db.exec(), clean=True)
    _verify(expected, b.db.counts(), "the live database")
    log(
        f"[{repo.name}] restored {len(expected)} tables, {sum(expected.values())} rows; "
        "row counts match the snapshot"
    )
    if packages is not None:
        storage = b.storage_service
        run(compose("stop", storage))
        # `create` brings back the volume (and container) when they were removed.
        run(compose("create", "--no-recreate", storage))
        repo.restic("restore", packages["id"], "--target", "/", "--include", path)
        want, got = _recorded_objects(packages), count_objects(path)
        if got < want:
            raise Failure(
                f"[{repo.name}] {got} package files after the restore, the snapshot recorded {want}"
            )
        run(compose("up", "-d", "--wait", "--no-deps", storage))
        log(f"[{repo.name}] restored package files snapshot {packages['short_id']}: {got} objects")
    run(compose("up", "-d", "--wait", "--no-deps", registry))
    log(f"{registry} started")


def drill_container_cmd(b: Backup, name: str) -> list[str]:
    """docker run argv of the drill's throwaway database: the stack's image and server program,
    small and without fsync, no network. Its password comes from the environment, never argv."""
    service = b.stack.service_config(b.db.service)
    # The server program as the stack runs it (the command's first word), with the drill's
    # settings; a service without a command runs the image's own.
    command = service.get("command") or []
    server = [command[0], "-c", "shared_buffers=32MB", "-c", "fsync=off"] if command else []
    return [
        "docker", "run", "-d", "--name", name, "--network", "none", "--memory", "256m",
        "-e", f"POSTGRES_USER={b.db.user}", "-e", f"POSTGRES_DB={b.db.name}",
        "-e", "POSTGRES_HOST_AUTH_METHOD=trust", "-e", "POSTGRES_PASSWORD",
        service["image"], *server,
    ]  # fmt: skip


def _wait_ready(b: Backup, name: str, target: Sequence[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    ready = [*target, "pg_isready", "-U", b.db.user, "-d", b.db.name, "-h", "127.0.0.1"]
    while prpm_stack.attempt(ready).returncode != 0:
        state = prpm_stack.attempt(["docker", "inspect", "-f", "{{.State.Running}}", name])
        if state.stdout.strip() != "true":
            logs = prpm_stack.attempt(["docker", "logs", "--tail", "20", name])
            raise Failure(
                "the drill's database exited: " + (logs.stdout + logs.stderr).strip()[-1000:]
            )
        if time.monotonic() > deadline:
            raise Failure(f"the drill's database did not become ready in {timeout:.0f} s")
        time.sleep(1)


def cmd_drill(b: Backup, args: argparse.Namespace) -> None:
    repo = repos(b.cfg, args.repo)[0]
    started = time.monotonic()
    snap = repo.snapshot("db", args.snapshot)
    expected = recorded_counts(snap)
    remove = ["docker", "rm", "-f", DRILL_CONTAINER]
    prpm_stack.attempt(remove)
    prpm_stack.run(
        drill_container_cmd(b, DRILL_CONTAINER), env={"POSTGRES_PASSWORD": os.urandom(16).hex()}
    )
    target = ["docker", "exec", "-i", DRILL_CONTAINER]
    try:
        _wait_ready(b, DRILL_CONTAINER, target)
        _restore_into(b, repo, snap, target, clean=False)
        _verify(expected, b.db.counts(target), "the drill database")
        objects = _drill_packages(b, repo, snap)
    finally:
        prpm_stack.attempt(remove)
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
        repo.restic("restore", packages["id"], "--target", scratch, "--include", path)
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
    args = parser.parse_args(argv)
    try:
        cfg = prpm_stack.load_config(config_path, CONFIG_SPEC)
    except Failure as exc:
        print(f"{PROG} {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        return 1
    ping_url = cfg["ping_urls"].get(args.command) or ""
    try:
        COMMANDS[args.command](Backup(cfg, contract_path, state_dir), args)
    except Failure as exc:
        print(f"{PROG} {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        prpm_stack.ping(ping_url, False, str(exc), prog=PROG)
        return 1
    prpm_stack.ping(ping_url, True, prog=PROG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
