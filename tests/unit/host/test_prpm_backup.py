# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm_backup: the commands it runs for backups, restores and drills, with a fake host."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import prpm_backup
import pytest
from host_fakes import FakeHost, write_json
from prpm_stack import Failure

COMPOSE = ["docker", "compose", "-f", "/opt/prpm/compose.yaml", "-p", "prpm"]
DB_ID = "1111aaaa" + "0" * 56
PKG_ID = "2222bbbb" + "0" * 56
COUNTS = "public.packages\t3\npublic.users\t2\n"


def config(**change: Any) -> dict[str, Any]:
    cfg = {
        "host_tag": "host1",
        "password_file": "/etc/prpm-backup/restic-password",
        "repositories": [{"name": "local", "url": "/var/backups/prpm/restic"}],
        "extra_paths": ["/etc/extra"],
        "retention": {"hourly": 24, "daily": 7, "weekly": 4, "monthly": 6},
        "check_subset": "5%",
        "rpo_minutes": 120,
        "ping_urls": {},
    }
    return dict(cfg, **change)


def args(**given: Any) -> argparse.Namespace:
    return argparse.Namespace(**dict({"repo": None, "snapshot": "latest"}, **given))


def objects_in(path: Path, count: int) -> None:
    data = path / "packages" / "data"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (data / f"object{i}").write_bytes(b"x")


@pytest.fixture
def backup(tmp_path: Path, contract: dict[str, Any]) -> prpm_backup.Backup:
    """A run against the default contract, with the package files in tmp_path/volume."""
    contract["package_files"]["path"] = str(tmp_path / "volume")
    path = write_json(tmp_path / "stack.json", contract)
    return prpm_backup.Backup(config(), path, tmp_path / "state")


@pytest.fixture
def limits(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """The time limit of every command run, by command (argv joined, as in messages)."""
    seen: dict[str, float] = {}
    limited = prpm_backup.limited

    def record(what: str, timeout: float, call: Any) -> Any:
        seen[what] = timeout
        return limited(what, timeout, call)

    monkeypatch.setattr(prpm_backup, "limited", record)
    return seen


def snapshots(fake: FakeHost, objects: int = 2) -> None:
    db = {"id": DB_ID, "short_id": DB_ID[:8], "time": "2025-01-01T03:00:00Z"}
    db["tags"] = ["db", "rows:public.packages=3", "rows:public.users=2"]
    pkg = {"id": PKG_ID, "short_id": PKG_ID[:8], "time": "2025-01-01T03:00:05Z"}
    pkg["tags"] = ["packages", f"db={DB_ID}", f"objects={objects}"]
    fake.on("snapshots", "db", out=json.dumps([db]))
    fake.on("snapshots", "packages", out=json.dumps([pkg]))


def test_db_dumps_through_restic_then_backs_up_the_package_files(
    fake: FakeHost, backup: prpm_backup.Backup, limits: dict[str, float]
) -> None:
    objects_in(Path(backup.packages_path), 2)
    fake.on("psql", out=COUNTS)
    summary = {"message_type": "summary", "snapshot_id": DB_ID, "total_bytes_processed": 9}
    fake.on("backup", "--stdin-from-command", out=json.dumps(summary) + "\n")
    prpm_backup.cmd_db(backup, args())
    dump, files = fake.find("restic", "backup")
    assert dump == [
        "restic", "--quiet", "backup", "--json", "--host", "host1", "--tag", "db",
        "--tag", "rows:public.packages=3", "--tag", "rows:public.users=2",
        "--stdin-filename", "prpm.dump", "--stdin-from-command", "--",
        *COMPOSE, "exec", "-T", "postgres", "pg_dump", "-U", "prpm", "-d", "prpm_registry", "-Fc",
    ]  # fmt: skip
    assert files == [
        "restic", "--quiet", "backup", "--host", "host1", "--tag", "packages",
        "--tag", f"db={DB_ID}", "--tag", "objects=2", backup.packages_path,
    ]  # fmt: skip
    psql = fake.find("psql")[0]
    assert psql[:-1] == [
        *COMPOSE, "exec", "-T", "postgres", "psql", "-v", "ON_ERROR_STOP=1",
        "-U", "prpm", "-d", "prpm_registry", "-At", "-F", "\t", "-c",
    ]  # fmt: skip
    assert psql[-1] == prpm_backup.COUNT_SQL
    env = next(e for _kind, argv, e in fake.calls if argv == dump)
    assert env["RESTIC_REPOSITORY"] == "/var/backups/prpm/restic"
    assert env["RESTIC_PASSWORD_FILE"] == config()["password_file"]
    # Data moves under the long limit; the row counts under the short one.
    assert [limits[prpm_backup.describe(a)] for a in (dump, files, psql)] == [21600, 21600, 900]


def dump_while_rows_change_once(fake: FakeHost, backup: prpm_backup.Backup) -> None:
    """A database backup whose first dump sees the rows change: it dumps twice."""
    objects_in(Path(backup.packages_path), 1)
    counts = iter(["t\t1\n", "t\t2\n", "t\t2\n", "t\t2\n"])
    fake.on("psql", out=lambda _argv: next(counts))
    fake.on("--stdin-from-command", out='{"message_type":"summary","snapshot_id":"abc"}')
    prpm_backup.cmd_db(backup, args())
    assert len(fake.find("--stdin-from-command")) == 2


def test_db_dumps_again_when_rows_change_and_forgets_the_moving_snapshot(
    fake: FakeHost, backup: prpm_backup.Backup
) -> None:
    dump_while_rows_change_once(fake, backup)
    assert fake.find("forget") == [["restic", "--quiet", "forget", "abc"]]


def test_db_snapshot_is_forgotten_when_the_package_files_are_missing(
    fake: FakeHost, backup: prpm_backup.Backup
) -> None:
    fake.on("psql", out=COUNTS)
    fake.on("--stdin-from-command", out='{"message_type":"summary","snapshot_id":"abc"}')
    with pytest.raises(Failure, match=r"the package files directory .* is missing"):
        prpm_backup.cmd_db(backup, args())
    assert fake.find("forget") == [["restic", "--quiet", "forget", "abc"]]


def test_files_backs_up_the_contract_paths_and_the_extra_ones(
    fake: FakeHost, tmp_path: Path, contract: dict[str, Any]
) -> None:
    stack_dir, caddy, extra = (tmp_path / n for n in ("stack", "caddy", "extra"))
    for path in (stack_dir, caddy, extra):
        path.mkdir()
    contract["backup_paths"] = [str(stack_dir), str(caddy)]
    path = write_json(tmp_path / "stack.json", contract)
    run = prpm_backup.Backup(config(extra_paths=[str(extra)]), path)
    prpm_backup.cmd_files(run, args())
    assert fake.argvs() == [
        [
            "restic",
            "--quiet",
            "backup",
            "--host",
            "host1",
            "--tag",
            "files",
            str(stack_dir),
            str(caddy),
            str(extra),
        ]
    ]
    extra.rmdir()
    with pytest.raises(Failure, match=f"paths to back up are missing: {extra}"):
        prpm_backup.cmd_files(run, args())


def test_forget_check_and_init(fake: FakeHost, tmp_path: Path, limits: dict[str, float]) -> None:
    # None of them needs the stack: they work before the stack contract exists.
    cfg = config(command_timeout_seconds=7200, short_command_timeout_seconds=60)
    run = prpm_backup.Backup(cfg, tmp_path / "no-contract.json")
    prpm_backup.cmd_forget(run, args())
    prpm_backup.cmd_check(run, args())
    fake.on("cat", "config", rc=10)
    prpm_backup.cmd_init(run, args())
    assert fake.argvs() == [
        ["restic", "--quiet", "forget", "--host", "host1", "--group-by", "host,paths",
         "--keep-hourly", "24", "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6",
         "--prune"],
        ["restic", "--quiet", "check", "--read-data-subset=5%"],
        ["restic", "cat", "config"],
        ["restic", "--quiet", "init"],
    ]  # fmt: skip
    # The limits come from the configuration: prune and check long, the others short.
    assert [limits[prpm_backup.describe(a)] for a in fake.argvs()] == [7200, 7200, 60, 60]


def test_restore_stops_the_registry_restores_both_and_starts_it(
    fake: FakeHost, backup: prpm_backup.Backup, limits: dict[str, float]
) -> None:
    objects_in(Path(backup.packages_path), 2)
    snapshots(fake)
    fake.on("psql", out=COUNTS)
    prpm_backup.cmd_restore(backup, args())
    assert fake.argvs()[2:] == [
        [*COMPOSE, "stop", "registry"],
        [*COMPOSE, "up", "-d", "--wait", "postgres"],
        ["restic", "--quiet", "dump", DB_ID, "/prpm.dump", "|",
         *COMPOSE, "exec", "-T", "postgres", "pg_restore", "-U", "prpm", "-d", "prpm_registry",
         "--no-owner", "--exit-on-error", "--single-transaction", "--clean", "--if-exists"],
        fake.find("psql")[0],
        [*COMPOSE, "stop", "storage"],
        [*COMPOSE, "create", "--no-recreate", "storage"],
        ["restic", "--quiet", "restore", PKG_ID, "--target", "/",
         "--include", backup.packages_path],
        [*COMPOSE, "up", "-d", "--wait", "--no-deps", "storage"],
        [*COMPOSE, "up", "-d", "--wait", "--no-deps", "registry"],
    ]  # fmt: skip
    (pipe,) = fake.argvs("pipe")
    long = {what for what, timeout in limits.items() if timeout == 21600}
    assert long == {
        "restic dump | " + prpm_backup.describe(pipe[pipe.index("|") + 1 :]),
        prpm_backup.describe(fake.find("restore", "--target")[0]),
    }
    assert set(limits.values()) == {21600, 900}


def test_restore_without_the_package_snapshot_is_refused_before_anything_stops(
    fake: FakeHost, backup: prpm_backup.Backup
) -> None:
    snapshots(fake)
    fake.on("snapshots", "packages", out="[]")
    with pytest.raises(
        Failure, match="no package files snapshot goes with database snapshot 1111aaaa"
    ):
        prpm_backup.cmd_restore(backup, args())
    assert fake.find("stop") == []


def test_restore_with_wrong_row_counts_leaves_the_registry_stopped(
    fake: FakeHost, backup: prpm_backup.Backup
) -> None:
    snapshots(fake)
    fake.on("psql", out="public.packages\t3\n")
    with pytest.raises(Failure, match=r"public\.users: expected 2, found None"):
        prpm_backup.cmd_restore(backup, args())
    assert fake.find("up", "registry") == []


def test_drill_restores_into_a_throwaway_database(
    fake: FakeHost, backup: prpm_backup.Backup, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshots(fake, objects=2)
    service = {"image": "localhost/prpm-hobby/postgres:17", "command": ["postgres", "-c", "x=1"]}
    fake.on("config", "--format", out=json.dumps({"services": {"postgres": service}}))
    fake.on("psql", out=COUNTS)

    def restore(argv: list[str]) -> str:
        objects_in(Path(argv[argv.index("--target") + 1] + backup.packages_path), 2)
        return ""

    fake.on("restore", "--target", out=restore)
    prpm_backup.cmd_drill(backup, args())
    (start,) = fake.find("docker", "run")
    assert start == [
        "docker", "run", "-d", "--rm", "--name", "prpm-backup-drill", "--network", "none",
        "--memory", "256m", "-e", "POSTGRES_USER=prpm", "-e", "POSTGRES_DB=prpm_registry",
        "-e", "POSTGRES_HOST_AUTH_METHOD=trust", "-e", "POSTGRES_PASSWORD",
        "localhost/prpm-hobby/postgres:17",
        "postgres", "-c", "shared_buffers=32MB", "-c", "fsync=off",
    ]  # fmt: skip
    env = next(e for _kind, argv, e in fake.calls if argv == start)
    assert len(env["POSTGRES_PASSWORD"]) == 32
    assert env["POSTGRES_PASSWORD"] not in " ".join(a for argv in fake.argvs() for a in argv)
    target = ["docker", "exec", "-i", "prpm-backup-drill"]
    assert fake.find("pg_isready")[0][:5] == [*target, "pg_isready"]
    (restore_cmd,) = fake.find("pg_restore")
    assert restore_cmd[restore_cmd.index("|") + 1 :] == [
        *target, "pg_restore", "-U", "prpm", "-d", "prpm_registry", "--no-owner",
        "--exit-on-error", "--single-transaction",
    ]  # fmt: skip
    assert fake.find("psql")[0][:5] == [*target, "psql"]
    # Removed before and after, with its anonymous volume (the restored copy of the database).
    remove = ["docker", "rm", "-f", "-v", "prpm-backup-drill"]
    assert fake.argvs().index(remove) < fake.argvs().index(start)
    assert fake.argvs()[-1] == remove
    assert fake.find("rm") == [remove, remove]
    report = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert (report["tables"], report["rows"], report["package_objects"]) == (2, 5, 2)
    recorded = json.loads(backup.last_drill.read_text(encoding="utf-8"))
    assert recorded["snapshot"] == "1111aaaa"
    assert list(backup.scratch.iterdir()) == []


def test_drill_fails_when_its_database_exits(fake: FakeHost, backup: prpm_backup.Backup) -> None:
    snapshots(fake)
    fake.on("config", "--format", out='{"services": {"postgres": {"image": "pg"}}}')
    fake.on("pg_isready", rc=2)
    fake.on("inspect", out="false\n")
    fake.on("logs", out="FATAL: out of memory")
    with pytest.raises(Failure, match="the drill's database exited: FATAL: out of memory"):
        prpm_backup.cmd_drill(backup, args())
    # No command in the compose file: the image's own.
    assert fake.find("docker", "run")[0][-1] == "pg"
    assert fake.argvs()[-1] == ["docker", "rm", "-f", "-v", "prpm-backup-drill"]


@pytest.mark.parametrize(("minutes_old", "fails"), [(30, False), (300, True)])
def test_freshness(fake: FakeHost, tmp_path: Path, minutes_old: int, fails: bool) -> None:
    when = datetime.now(UTC) - timedelta(minutes=minutes_old)
    snap = {"id": "x", "short_id": "x", "time": when.isoformat().replace("+00:00", "Z")}
    fake.on("snapshots", out=json.dumps([snap]))
    run = prpm_backup.Backup(config(), tmp_path / "no-contract.json")
    if fails:
        with pytest.raises(Failure, match="older than the RPO of 120 min"):
            prpm_backup.cmd_freshness(run, args())
    else:
        prpm_backup.cmd_freshness(run, args())


def test_main_checks_its_config_and_pings(
    fake: FakeHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pings: list[tuple[str, bool, str]] = []
    monkeypatch.setattr(
        prpm_backup.prpm_stack, "ping", lambda url, ok, msg="", **_kw: pings.append((url, ok, msg))
    )
    bad = write_json(tmp_path / "bad.json", {k: v for k, v in config().items() if k != "retention"})
    assert prpm_backup.main(["forget"], str(bad)) == 1
    assert (
        f"prpm-backup forget FAILED: the configuration {bad} is not valid: 'retention' is missing"
        in (capsys.readouterr().err)
    )
    good = write_json(tmp_path / "good.json", config(ping_urls={"db": "https://hc/db"}))
    missing = str(tmp_path / "stack.json")
    assert prpm_backup.main(["db"], str(good), missing) == 1
    err = capsys.readouterr().err
    assert "prpm-backup db FAILED: the stack contract" in err
    assert pings == [("https://hc/db", False, err.split("FAILED: ", 1)[1].strip())]
    assert prpm_backup.main(["check"], str(good), missing) == 0
    assert pings[-1] == ("", True, "")


# --- append-only repositories (a host that may add to its S3 repository, not delete there) -----

S3 = {"name": "s3", "url": "s3:https://s3.example/b/prpm", "append_only": True}


def append_only(tmp_path: Path, contract: dict[str, Any]) -> prpm_backup.Backup:
    contract["package_files"]["path"] = str(tmp_path / "volume")
    path = write_json(tmp_path / "stack.json", contract)
    return prpm_backup.Backup(config(repositories=[S3]), path, tmp_path / "state")


def test_forget_leaves_an_append_only_repository_unless_given_credentials(
    fake: FakeHost, tmp_path: Path
) -> None:
    local = {"name": "local", "url": "/var/backups/prpm/restic"}
    run = prpm_backup.Backup(config(repositories=[local, S3]), tmp_path / "no-contract.json")
    prpm_backup.cmd_forget(run, args())
    (pruned,) = fake.find("forget")
    assert next(e for _k, a, e in fake.calls if a == pruned)["RESTIC_REPOSITORY"] == local["url"]
    # Named, but with the host's own credentials: still left alone (they cannot delete there).
    prpm_backup.cmd_forget(run, args(repo="s3"))
    assert len(fake.find("forget")) == 1
    prpm_backup.cmd_forget(run, args(repo="s3", credentials_stdin=True))
    assert len(fake.find("forget", "--prune")) == 2
    assert fake.calls[-1][2]["RESTIC_REPOSITORY"] == S3["url"]


def test_db_on_an_append_only_repository_never_forgets(
    fake: FakeHost, tmp_path: Path, contract: dict[str, Any]
) -> None:
    backup = append_only(tmp_path, contract)
    dump_while_rows_change_once(fake, backup)
    # Package files missing: the run fails, the database snapshot stays (not forgotten).
    fake.on("psql", out=COUNTS)
    Path(backup.packages_path, "packages", "data", "object0").unlink()
    Path(backup.packages_path, "packages", "data").rmdir()
    Path(backup.packages_path, "packages").rmdir()
    Path(backup.packages_path).rmdir()
    with pytest.raises(Failure, match="package files directory"):
        prpm_backup.cmd_db(backup, args())
    assert fake.find("forget") == []


def test_restore_of_an_append_only_repository_takes_the_newest_complete_snapshot(
    fake: FakeHost, tmp_path: Path, contract: dict[str, Any]
) -> None:
    backup = append_only(tmp_path, contract)
    snapshots(fake)
    newer = {"id": "3333cccc" + "0" * 56, "short_id": "3333cccc", "time": "2025-01-01T04:00:00Z"}
    newer["tags"] = ["db", "rows:public.packages=3"]
    fake.on("snapshots", "db", out=json.dumps([{"id": DB_ID, "short_id": DB_ID[:8],
            "time": "2025-01-01T03:00:00Z", "tags": ["db"]}, newer]))  # fmt: skip
    assert prpm_backup.db_snapshot(backup, backup_repo(backup), "latest")["id"] == DB_ID
    fake.on("snapshots", "packages", out="[]")
    with pytest.raises(Failure, match="no db snapshot with its package files"):
        prpm_backup.db_snapshot(backup, backup_repo(backup), "latest")


def backup_repo(backup: prpm_backup.Backup) -> prpm_backup.Repo:
    return prpm_backup.repos(backup.cfg)[0]


@pytest.mark.parametrize(
    "case",
    [
        (["forget"], "{}", "goes with forget --repo NAME only"),
        (["check", "--repo", "s3"], "{}", "goes with forget --repo NAME only"),
        (["forget", "--repo", "s3"], "not json", "is not a JSON object"),
        (["forget", "--repo", "s3"], "[1]", "not a JSON object with credentials"),
        (["forget", "--repo", "s3"], '{"AWS_REGION": "x"}', "got AWS_REGION"),
        (["forget", "--repo", "s3"], '{"AWS_ACCESS_KEY_ID": ""}', "got an empty value"),
    ],
)
def test_credentials_on_stdin_are_refused_unless_well_formed(
    fake: FakeHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: tuple[list[str], str, str],
) -> None:
    argv, stdin, message = case
    cfg_path = write_json(tmp_path / "config.json", config(repositories=[S3]))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(stdin))
    rc = prpm_backup.main([*argv, "--credentials-stdin"], config_path=str(cfg_path))
    assert rc == prpm_backup.FAILED
    assert message in capsys.readouterr().err
    assert fake.calls == []


def test_credentials_on_stdin_reach_the_named_repository_only_and_win_over_its_file(
    fake: FakeHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_file = tmp_path / "s3.env"
    env_file.write_text("AWS_ACCESS_KEY_ID=host-key\nAWS_SECRET_ACCESS_KEY=host-secret\n")
    local = {"name": "local", "url": "/var/backups/prpm/restic"}
    s3 = dict(S3, env_file=str(env_file))
    cfg_path = write_json(tmp_path / "config.json", config(repositories=[local, s3]))
    creds = {"AWS_ACCESS_KEY_ID": "prune-key", "AWS_SECRET_ACCESS_KEY": "prune-secret-value",
             "AWS_SESSION_TOKEN": "prune-session-token"}  # fmt: skip
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO(json.dumps(creds)))
    rc = prpm_backup.main(
        ["forget", "--repo", "s3", "--credentials-stdin"],
        config_path=str(cfg_path),
        state_dir=str(tmp_path / "state"),
    )
    assert rc == 0
    ((_kind, argv, env),) = fake.calls
    assert "--prune" in argv and env["RESTIC_REPOSITORY"] == s3["url"]
    assert {k: env[k] for k in creds} == creds
    # Any output that carries them (a failure's message) has them taken out.
    assert "prune-secret-value" not in prpm_backup.redact("restic said prune-secret-value")
    assert "prune-session-token" not in prpm_backup.redact("restic said prune-session-token")
