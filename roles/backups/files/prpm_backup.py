#!/usr/bin/python3
# SPDX-License-Identifier: GPL-3.0-or-later
# Installed by prpm.hobby.backups. Backs up, checks, restores and drills the PRPM stack with
# restic. Configuration: /etc/prpm-backup/config.json. Every failure exits non-zero, says why
# on stderr (the journal) and pings <ping_url>/fail when a ping URL is set.
"""prpm-backup: restic backups of the PRPM registry stack that fail loudly."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

CONFIG = "/etc/prpm-backup/config.json"
DUMP_NAME = "prpm.dump"
DRILL_SCRATCH = "/var/lib/prpm-backup/scratch"
ROW_TAG = "rows:"
COUNT_SQL = (
    "SELECT table_schema || '.' || table_name, "
    "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', "
    "table_schema, table_name), false, true, '')))[1]::text "
    "FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
    "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)


class Failure(Exception):
    """A step failed; the message says which and why."""


def log(msg: str) -> None:
    print(f"prpm-backup: {msg}", flush=True)


def load_config() -> dict:
    with open(CONFIG, encoding="utf-8") as fh:
        return json.load(fh)


def run(cmd: list[str], *, env: dict | None = None, stdin=None, capture: bool = True) -> str:
    proc = subprocess.run(
        cmd,
        env=env,
        stdin=stdin,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise Failure(
            f"{cmd[0]} {cmd[1] if len(cmd) > 1 else ''} exited {proc.returncode}: "
            f"{proc.stderr.strip()[-2000:]}"
        )
    return proc.stdout if capture else ""


class Stack:
    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.compose = ["docker", "compose", "-f", cfg["compose_file"], "-p", cfg["project"]]

    def exec_pg(self, *args: str) -> list[str]:
        return [*self.compose, "exec", "-T", self.cfg["postgres_service"], *args]

    def psql(self, sql: str, container: list[str] | None = None) -> str:
        base = container or self.exec_pg()
        return run(
            [
                *base,
                "psql",
                "-v",
                "ON_ERROR_STOP=1",
                "-U",
                self.cfg["db_user"],
                "-d",
                self.cfg["db_name"],
                "-At",
                "-F",
                "\t",
                "-c",
                sql,
            ]
        )

    def counts(self, container: list[str] | None = None) -> dict[str, int]:
        out = self.psql(COUNT_SQL, container)
        rows = {}
        for line in out.splitlines():
            table, _, count = line.partition("\t")
            rows[table] = int(count)
        return rows

    def image(self, service: str) -> str:
        config = json.loads(run([*self.compose, "config", "--format", "json"]))
        return config["services"][service]["image"]

    def dump_cmd(self) -> list[str]:
        return self.exec_pg("pg_dump", "-U", self.cfg["db_user"], "-d", self.cfg["db_name"], "-Fc")


class Repo:
    def __init__(self, spec: dict, cfg: dict) -> None:
        self.name = spec["name"]
        self.env = dict(os.environ)
        self.env.update(spec.get("env", {}))
        env_file = spec.get("env_file")
        if env_file and os.path.exists(env_file):
            with open(env_file, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if line and not line.startswith("#") and "=" in line:
                        key, _, value = line.partition("=")
                        self.env[key] = value
        self.env["RESTIC_REPOSITORY"] = spec["url"]
        self.env["RESTIC_PASSWORD_FILE"] = cfg["password_file"]
        self.env.setdefault("RESTIC_CACHE_DIR", "/var/cache/prpm-backup/restic")
        self.host = cfg["host_tag"]

    def restic(self, *args: str, capture: bool = True, stdin=None) -> str:
        try:
            return run(["restic", "--quiet", *args], env=self.env, capture=capture, stdin=stdin)
        except Failure as exc:
            raise Failure(f"[{self.name}] {exc}") from None

    def exists(self) -> bool:
        proc = subprocess.run(
            ["restic", "cat", "config"], env=self.env, capture_output=True, text=True, check=False
        )
        if proc.returncode == 0:
            return True
        if (
            proc.returncode == 10
            or "does not exist" in proc.stderr
            or "Is there a repository" in proc.stderr
        ):
            return False
        raise Failure(f"[{self.name}] cannot open the repository: {proc.stderr.strip()[-1000:]}")

    def snapshots(self, tag: str) -> list[dict]:
        out = self.restic("snapshots", "--json", "--host", self.host, "--tag", tag)
        snaps = json.loads(out or "[]")
        return sorted(snaps, key=lambda s: s["time"])

    def snapshot(self, tag: str, ident: str) -> dict:
        snaps = self.snapshots(tag)
        if not snaps:
            raise Failure(f"[{self.name}] no {tag} snapshot in the repository")
        if ident == "latest":
            return snaps[-1]
        for snap in snaps:
            if snap["id"].startswith(ident) or snap["short_id"] == ident:
                return snap
        raise Failure(f"[{self.name}] no {tag} snapshot {ident}")


def recorded_counts(snap: dict) -> dict[str, int]:
    counts = {}
    for tag in snap.get("tags") or []:
        if tag.startswith(ROW_TAG):
            table, _, count = tag[len(ROW_TAG) :].rpartition("=")
            counts[table] = int(count)
    return counts


def ping(cfg: dict, ok: bool, what: str, message: str = "") -> None:
    """healthchecks.io style: <url> on success, <url>/fail on failure, one URL per command."""
    url = (cfg.get("ping_urls") or {}).get(what) or ""
    if not url:
        return
    target = url.rstrip("/") + ("" if ok else "/fail")
    try:
        req = urllib.request.Request(target, data=message.encode()[:10000], method="POST")
        with urllib.request.urlopen(req, timeout=10):  # noqa: S310 (configured URL)
            pass
    except OSError as exc:
        log(f"ping to {target} failed: {exc}")


def repos(cfg: dict, only: str | None = None) -> list[Repo]:
    found = [Repo(r, cfg) for r in cfg["repositories"] if only in (None, r["name"])]
    if not found:
        raise Failure(f"no repository named {only}")
    return found


# --- commands ---------------------------------------------------------------------------


def cmd_init(cfg: dict, args) -> None:
    for repo in repos(cfg, args.repo):
        if repo.exists():
            log(f"[{repo.name}] repository exists")
        else:
            repo.restic("init")
            log(f"[{repo.name}] repository initialized")


def cmd_db(cfg: dict, args) -> None:
    stack = Stack(cfg)
    for repo in repos(cfg, args.repo):
        for attempt in range(1, 4):
            before = stack.counts()
            tags = ["db"] + [f"{ROW_TAG}{t}={n}" for t, n in sorted(before.items())]
            tag_args = [a for t in tags for a in ("--tag", t)]
            out = repo.restic(
                "backup",
                "--json",
                "--host",
                repo.host,
                *tag_args,
                "--stdin-filename",
                DUMP_NAME,
                "--stdin-from-command",
                "--",
                *stack.dump_cmd(),
            )
            summary = [json.loads(x) for x in out.splitlines() if '"summary"' in x]
            snap_id = summary[-1]["snapshot_id"] if summary else "?"
            after = stack.counts()
            if after == before:
                total = sum(before.values())
                log(
                    f"[{repo.name}] database snapshot {snap_id[:8]}: {len(before)} tables, "
                    f"{total} rows, {summary[-1].get('total_bytes_processed', 0) if summary else 0} bytes"
                )
                break
            log(f"[{repo.name}] rows changed during the dump (attempt {attempt}); again")
            repo.restic("forget", snap_id)
        else:
            raise Failure(f"[{repo.name}] the database kept changing during three dumps")
        try:
            _backup_packages(cfg, repo, snap_id)
        except Failure:
            # A database snapshot without its package files would restore rows without files.
            repo.restic("forget", snap_id)
            raise


def _packages_path(cfg: dict) -> str:
    return cfg.get("package_files") or ""


def _backup_packages(cfg: dict, repo: Repo, db_snap_id: str) -> None:
    """Package files (local storage), right after the database: every file a row refers to is
    in it. Tagged with the database snapshot's id, which is how a restore finds it."""
    path = _packages_path(cfg)
    if not path:
        return
    if not os.path.isdir(path):
        raise Failure(f"the package files directory {path} is missing")
    objects = _count_objects(path)
    repo.restic(
        "backup",
        "--host",
        repo.host,
        "--tag",
        "packages",
        "--tag",
        f"db={db_snap_id}",
        "--tag",
        f"objects={objects}",
        path,
    )
    log(f"[{repo.name}] package files snapshot: {objects} objects in {path}")


def _packages_snapshot(repo: Repo, db_snap: dict) -> dict:
    """The package files snapshot taken with a database snapshot (tag db=<its id>)."""
    for snap in repo.snapshots("packages"):
        if f"db={db_snap['id']}" in (snap.get("tags") or []):
            return snap
    raise Failure(
        f"[{repo.name}] no package files snapshot goes with database snapshot "
        f"{db_snap['short_id']}: its rows would come back without their files"
    )


def _recorded_objects(snap: dict) -> int:
    for tag in snap.get("tags") or []:
        if tag.startswith("objects="):
            return int(tag.partition("=")[2])
    raise Failure(f"package files snapshot {snap['short_id']} records no object count")


def _count_objects(path: str) -> int:
    """Objects of the storage service: the files in each bucket's data/ directory."""
    return sum(1 for bucket in Path(path).glob("*/data") for f in bucket.iterdir() if f.is_file())


def cmd_files(cfg: dict, args) -> None:
    paths = [p for p in cfg["paths"] if os.path.exists(p)]
    missing = sorted(set(cfg["paths"]) - set(paths))
    if missing:
        raise Failure(f"paths to back up are missing: {', '.join(missing)}")
    for repo in repos(cfg, args.repo):
        repo.restic("backup", "--host", repo.host, "--tag", "files", *paths)
        log(f"[{repo.name}] files snapshot of {', '.join(paths)}")


def cmd_forget(cfg: dict, args) -> None:
    keep = cfg["retention"]
    keep_args = []
    for key in ("hourly", "daily", "weekly", "monthly"):
        keep_args += [f"--keep-{key}", str(keep[key])]
    for repo in repos(cfg, args.repo):
        repo.restic(
            "forget", "--host", repo.host, "--group-by", "host,paths", *keep_args, "--prune"
        )
        log(f"[{repo.name}] retention applied and pruned")


def cmd_check(cfg: dict, args) -> None:
    for repo in repos(cfg, args.repo):
        repo.restic("check", f"--read-data-subset={cfg['check_subset']}")
        log(f"[{repo.name}] check passed (read {cfg['check_subset']} of the data)")


def cmd_freshness(cfg: dict, args) -> None:
    limit = cfg["rpo_minutes"] * 60
    for repo in repos(cfg, args.repo):
        snaps = repo.snapshots("db")
        if not snaps:
            raise Failure(f"[{repo.name}] no database snapshot at all")
        newest = datetime.fromisoformat(snaps[-1]["time"].replace("Z", "+00:00"))
        age = (datetime.now(timezone.utc) - newest).total_seconds()
        if age > limit:
            raise Failure(
                f"[{repo.name}] newest database snapshot {snaps[-1]['short_id']} is "
                f"{age / 60:.0f} min old, older than the RPO of {cfg['rpo_minutes']} min"
            )
        log(
            f"[{repo.name}] newest database snapshot is {age / 60:.0f} min old "
            f"(RPO {cfg['rpo_minutes']} min)"
        )


def _restore_into(repo: Repo, snap: dict, target: list[str], cfg: dict, clean: bool) -> None:
    dump = subprocess.Popen(
        ["restic", "--quiet", "dump", snap["id"], f"/{DUMP_NAME}"],
        env=repo.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    args = [
        "pg_restore",
        "-U",
        cfg["db_user"],
        "-d",
        cfg["db_name"],
        "--no-owner",
        "--exit-on-error",
        "--single-transaction",
    ]
    if clean:
        args += ["--clean", "--if-exists"]
    restore_error = None
    try:
        run([*target, *args], stdin=dump.stdout)
    except Failure as exc:
        restore_error = exc
    finally:
        if dump.stdout:
            dump.stdout.close()
        err = dump.stderr.read().decode() if dump.stderr else ""
        rc = dump.wait()
    # A damaged repository is the cause to report, not the truncated input pg_restore saw.
    if rc != 0:
        raise Failure(f"[{repo.name}] restic dump exited {rc}: {err.strip()[-1000:]}")
    if restore_error:
        raise restore_error


def _verify(expected: dict[str, int], got: dict[str, int], where: str) -> None:
    if not expected:
        raise Failure("the snapshot records no row counts")
    diff = {t: (n, got.get(t)) for t, n in expected.items() if got.get(t) != n}
    if diff:
        raise Failure(
            f"row counts in {where} differ from the snapshot's record: "
            + ", ".join(f"{t}: expected {a}, found {b}" for t, (a, b) in diff.items())
        )


def cmd_restore(cfg: dict, args) -> None:
    stack = Stack(cfg)
    repo = repos(cfg, args.repo)[0]
    snap = repo.snapshot("db", args.snapshot)
    expected = recorded_counts(snap)
    path = _packages_path(cfg)
    # Found before anything stops: a database snapshot without its package files is refused.
    packages = _packages_snapshot(repo, snap) if path else None
    log(f"[{repo.name}] restoring database snapshot {snap['short_id']} of {snap['time']}")
    run([*stack.compose, "stop", cfg["registry_service"]])
    run([*stack.compose, "up", "-d", "--wait", cfg["postgres_service"]])
    _restore_into(repo, snap, stack.exec_pg(), cfg, clean=True)
    _verify(expected, stack.counts(), "the live database")
    log(
        f"[{repo.name}] restored {len(expected)} tables, {sum(expected.values())} rows; "
        "row counts match the snapshot"
    )
    if packages is not None:
        service = cfg["storage_service"]
        run([*stack.compose, "stop", service])
        # `create` brings back the volume (and container) when they were removed.
        run([*stack.compose, "create", "--no-recreate", service])
        repo.restic("restore", packages["id"], "--target", "/", "--include", path)
        want, got = _recorded_objects(packages), _count_objects(path)
        if got < want:
            raise Failure(
                f"[{repo.name}] {got} package files after the restore, the snapshot recorded {want}"
            )
        run([*stack.compose, "up", "-d", "--wait", "--no-deps", service])
        log(f"[{repo.name}] restored package files snapshot {packages['short_id']}: {got} objects")
    run([*stack.compose, "up", "-d", "--wait", "--no-deps", cfg["registry_service"]])
    log("registry started")


def cmd_drill(cfg: dict, args) -> None:
    repo = repos(cfg, args.repo)[0]
    name = "prpm-backup-drill"
    started = time.monotonic()
    snap = repo.snapshot("db", args.snapshot)
    expected = recorded_counts(snap)
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    run(
        [
            "docker",
            "run",
            "-d",
            "--name",
            name,
            "--network",
            "none",
            "--memory",
            "256m",
            "-e",
            f"POSTGRES_USER={cfg['db_user']}",
            "-e",
            f"POSTGRES_DB={cfg['db_name']}",
            "-e",
            "POSTGRES_HOST_AUTH_METHOD=trust",
            "-e",
            f"POSTGRES_PASSWORD={os.urandom(16).hex()}",
            cfg.get("drill_image") or Stack(cfg).image(cfg["postgres_service"]),
            "postgres",
            "-c",
            "shared_buffers=32MB",
            "-c",
            "fsync=off",
        ]
    )
    target = ["docker", "exec", "-i", name]
    try:
        deadline = time.monotonic() + 120
        while True:
            ready = subprocess.run(
                [
                    *target,
                    "pg_isready",
                    "-U",
                    cfg["db_user"],
                    "-d",
                    cfg["db_name"],
                    "-h",
                    "127.0.0.1",
                ],
                capture_output=True,
                check=False,
            )
            if ready.returncode == 0:
                break
            state = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Running}}", name],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if state != "true":
                logs = subprocess.run(
                    ["docker", "logs", "--tail", "20", name],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                raise Failure(
                    "the drill's Postgres exited: " + (logs.stdout + logs.stderr).strip()[-1000:]
                )
            if time.monotonic() > deadline:
                raise Failure("the drill's Postgres did not become ready in 120 s")
            time.sleep(1)
        _restore_into(repo, snap, target, cfg, clean=False)
        _verify(expected, Stack(cfg).counts(target), "the drill database")
        objects = _drill_packages(cfg, repo, snap)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False)
    rto = time.monotonic() - started
    result = {
        "snapshot": snap["short_id"],
        "snapshot_time": snap["time"],
        "tables": len(expected),
        "rows": sum(expected.values()),
        "package_objects": objects,
        "rto_seconds": round(rto, 1),
    }
    os.makedirs("/var/lib/prpm-backup", exist_ok=True)
    with open("/var/lib/prpm-backup/last-drill.json", "w", encoding="utf-8") as fh:
        json.dump(dict(result, finished=datetime.now(timezone.utc).isoformat()), fh)
    log(
        f"[{repo.name}] drill passed: snapshot {snap['short_id']} restored into a throwaway "
        f"Postgres, {result['tables']} tables, {result['rows']} rows match; RTO {rto:.1f} s"
    )
    print(json.dumps(result), flush=True)


def _drill_packages(cfg: dict, repo: Repo, db_snap: dict) -> int | None:
    """Restore the package files that go with the snapshot into a scratch directory and count them."""
    path = _packages_path(cfg)
    if not path:
        return None
    packages = _packages_snapshot(repo, db_snap)
    # On disk, not in /tmp (tmpfs: RAM on a 1 GiB host).
    os.makedirs(DRILL_SCRATCH, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="drill-", dir=DRILL_SCRATCH) as scratch:
        repo.restic("restore", packages["id"], "--target", scratch, "--include", path)
        want, got = _recorded_objects(packages), _count_objects(scratch + path)
    if got != want:
        raise Failure(
            f"[{repo.name}] the drill restored {got} package files, the snapshot recorded {want}"
        )
    log(
        f"[{repo.name}] drill: package files snapshot {packages['short_id']} restored, {got} objects"
    )
    return got


def cmd_run(cfg: dict, args) -> None:
    """The daily job: database, files, retention."""
    cmd_db(cfg, args)
    cmd_files(cfg, args)
    cmd_forget(cfg, args)


COMMANDS = {
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="prpm-backup", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--repo", help="only this repository (by name)")
    parser.add_argument("--snapshot", default="latest", help="restore/drill: snapshot id")
    args = parser.parse_args()
    cfg = load_config()
    try:
        COMMANDS[args.command](cfg, args)
    except Failure as exc:
        print(f"prpm-backup {args.command} FAILED: {exc}", file=sys.stderr, flush=True)
        ping(cfg, False, args.command, str(exc))
        return 1
    ping(cfg, True, args.command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
