# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm_backup hardened (issue 16): every command it starts has a time limit past which it is
stopped with every process it started; one run at a time per host; every failure (an unexpected
error, SIGTERM and ^C too) exits non-zero and pings, secrets never in what it says; the drill's
container goes with its anonymous volume on every path."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import prpm_backup
import pytest
from host_fakes import FakeHost, write_json
from prpm_stack import Failure

DRILL = "prpm-backup-drill"
REMOVE = ["docker", "rm", "-f", "-v", DRILL]
DB_ID = "1111aaaa" + "0" * 56
PKG_ID = "2222bbbb" + "0" * 56
COUNTS = "public.packages\t3\npublic.users\t2\n"
PINGS = {c: f"https://hc/{c}" for c in ("db", "run", "check", "drill", "freshness")}


def config(**change: Any) -> dict[str, Any]:
    cfg = {
        "host_tag": "host1",
        "password_file": "/etc/prpm-backup/restic-password",
        "repositories": [{"name": "local", "url": "/var/backups/prpm/restic"}],
        "extra_paths": [],
        "retention": {"hourly": 24, "daily": 7, "weekly": 4, "monthly": 6},
        "check_subset": "5%",
        "rpo_minutes": 120,
        "ping_urls": PINGS,
        # A held lock fails at once here (the wait is tested on its own).
        "lock_wait_seconds": 0,
    }
    return dict(cfg, **change)


def gone(pid: int, within: float = 5) -> bool:
    """The process has exited (a zombie waiting for its parent has) within seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        stat = prpm_backup._proc_stat(pid)
        if stat is None or stat[2] in ("Z", "X"):
            return True
        threading.Event().wait(0.05)
    return False


@pytest.fixture
def pings(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool, str]]:
    sent: list[tuple[str, bool, str]] = []
    monkeypatch.setattr(
        prpm_backup.prpm_stack, "ping", lambda url, ok, msg="", **_kw: sent.append((url, ok, msg))
    )
    return sent


@pytest.fixture
def stack(tmp_path: Path, contract: dict[str, Any]) -> Path:
    """The default contract, the package files in tmp_path/volume (2 objects)."""
    contract["package_files"]["path"] = str(tmp_path / "volume")
    data = tmp_path / "volume" / "packages" / "data"
    data.mkdir(parents=True)
    for name in ("a", "b"):
        (data / name).write_bytes(b"x")
    return write_json(tmp_path / "stack.json", contract)


def run_main(tmp_path: Path, *argv: str, cfg: dict[str, Any] | None = None) -> int:
    path = write_json(tmp_path / "config.json", cfg or config())
    state = str(tmp_path / "state")
    return prpm_backup.main(list(argv), str(path), str(tmp_path / "stack.json"), state)


def drill_host(fake: FakeHost, volume: str) -> None:
    """Snapshots, the database service, row counts and a package files restore for a drill."""
    db = {"id": DB_ID, "short_id": DB_ID[:8], "time": "2025-01-01T03:00:00Z"}
    db["tags"] = ["db", "rows:public.packages=3", "rows:public.users=2"]
    pkg = {"id": PKG_ID, "short_id": PKG_ID[:8], "time": "2025-01-01T03:00:05Z"}
    pkg["tags"] = ["packages", f"db={DB_ID}", "objects=2"]
    fake.on("snapshots", "db", out=json.dumps([db]))
    fake.on("snapshots", "packages", out=json.dumps([pkg]))
    fake.on("config", "--format", out='{"services": {"postgres": {"image": "pg"}}}')
    fake.on("psql", out=COUNTS)

    def restore(argv: list[str]) -> str:
        data = Path(argv[argv.index("--target") + 1] + volume) / "packages" / "data"
        data.mkdir(parents=True)
        for name in ("a", "b"):
            (data / name).write_bytes(b"x")
        return ""

    fake.on("restore", "--target", out=restore)


def drill(tmp_path: Path, stack: Path) -> prpm_backup.Backup:
    return prpm_backup.Backup(config(), stack, tmp_path / "state")


ARGS = argparse.Namespace(repo=None, snapshot="latest")


# --- Time limits, with real processes -----------------------------------------------------------
SPAWNS = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "60"])
with open(sys.argv[1], "w") as fh:
    fh.write(str(child.pid))
time.sleep(60)
"""
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
with open(sys.argv[1], "w") as fh:
    fh.write("ready")
time.sleep(60)
"""


def test_a_command_past_its_limit_is_stopped_with_every_process_it_started(
    tmp_path: Path,
) -> None:
    pidfile = tmp_path / "grandchild"
    cmd = [sys.executable, "-c", SPAWNS, str(pidfile)]
    started = time.monotonic()
    with pytest.raises(Failure) as failed:
        prpm_backup.run(cmd, timeout=2)
    assert str(failed.value) == (
        f"{prpm_backup.describe(cmd)} did not finish within its time limit of 2 s: it was "
        "stopped, with every process it started"
    )
    assert time.monotonic() - started < 8
    # Its child too (restic's --stdin-from-command, the docker CLI's compose plugin).
    assert gone(int(pidfile.read_text(encoding="utf-8")))


def test_a_command_that_ignores_sigterm_gets_sigkill_after_the_grace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prpm_backup, "KILL_GRACE_SECONDS", 0.5)
    ready = tmp_path / "ready"
    started = time.monotonic()
    with pytest.raises(Failure, match=r"did not finish within its time limit of 1\.5 s"):
        prpm_backup.run([sys.executable, "-c", STUBBORN, str(ready)], timeout=1.5)
    assert ready.read_text(encoding="utf-8") == "ready"  # it was ignoring SIGTERM
    assert time.monotonic() - started < 6


def test_a_probe_past_its_limit_fails_and_one_that_exits_non_zero_does_not() -> None:
    with pytest.raises(Failure, match=r"^sleep 30 did not finish within its time limit of 0.5 s"):
        prpm_backup.attempt(["sleep", "30"], timeout=0.5)
    assert prpm_backup.attempt(["sh", "-c", "exit 3"], timeout=10).returncode == 3


def test_a_pipeline_has_one_limit_for_both_commands() -> None:
    producer = [sys.executable, "-c", "import time; print('x', flush=True); time.sleep(60)"]
    started = time.monotonic()
    with pytest.raises(Failure, match=r"^slow \| cat did not finish within its time limit of 1 s"):
        prpm_backup.pipe(producer, ["cat"], timeout=1, producer_name="slow")
    assert time.monotonic() - started < 8
    assert prpm_backup.pipe(["echo", "rows"], ["cat"], timeout=10) == "rows\n"


def test_a_command_within_its_limit_leaves_no_timer_behind() -> None:
    threads = threading.active_count()
    assert prpm_backup.run(["echo", "hello"], timeout=30) == "hello\n"
    assert threading.active_count() == threads
    with pytest.raises(Failure, match=r"^sh -c 'exit 4' exited 4"):
        prpm_backup.run(["sh", "-c", "exit 4"], timeout=30)


def test_an_interrupted_command_takes_what_it_started_with_it() -> None:
    started: list[subprocess.Popen[bytes]] = []

    def call() -> str:
        started.append(subprocess.Popen(["sleep", "60"]))
        raise prpm_backup.Terminated

    with pytest.raises(prpm_backup.Terminated):
        prpm_backup.limited("sleep 60", 60, call)
    assert gone(started[0].pid)
    assert started[0].wait(5) == -signal.SIGTERM


# --- One run at a time ------------------------------------------------------------------------
def test_a_run_holds_the_host_lock_and_a_second_one_does_not_start(
    fake: FakeHost,
    tmp_path: Path,
    pings: list[tuple[str, bool, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    lock = tmp_path / "state" / "prpm-backup.lock"
    held_during_the_run: list[bool] = []

    def check(_argv: list[str]) -> str:
        with lock.open("rb") as other:
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held_during_the_run.append(True)
        return ""

    fake.on("check", out=check)
    assert run_main(tmp_path, "check") == 0
    assert held_during_the_run == [True]
    assert lock.read_text(encoding="utf-8").startswith(f"pid {os.getpid()}, check since 20")
    assert oct(lock.stat().st_mode & 0o777) == "0o600"

    lock.write_text("pid 4242, run since 2025-01-01T03:15:00+00:00\n", encoding="utf-8")
    calls = len(fake.calls)
    with lock.open("rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_main(tmp_path, "db") == prpm_backup.LOCKED_OUT == 75
    err = capsys.readouterr().err
    why = (
        f"another prpm-backup run holds the lock {lock} (pid 4242, run since "
        "2025-01-01T03:15:00+00:00), still after 0 s; this db run did not start"
    )
    assert f"prpm-backup db FAILED: {why}\n" in err
    assert len(fake.calls) == calls  # nothing ran
    assert pings == [(PINGS["check"], True, ""), (PINGS["db"], False, why)]


def test_freshness_reads_while_another_run_holds_the_lock(
    fake: FakeHost, tmp_path: Path, pings: list[tuple[str, bool, str]]
) -> None:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    fake.on("snapshots", out=json.dumps([{"id": "x", "short_id": "x", "time": now}]))
    lock = tmp_path / "state" / "prpm-backup.lock"
    lock.parent.mkdir()
    with lock.open("wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert run_main(tmp_path, "freshness") == 0
        assert run_main(tmp_path, "check") == prpm_backup.LOCKED_OUT
    assert [ok for _url, ok, _msg in pings] == [True, False]


def test_a_run_waits_for_the_lock_and_starts_when_it_is_released(
    fake: FakeHost, tmp_path: Path, pings: list[tuple[str, bool, str]]
) -> None:
    lock = tmp_path / "state" / "prpm-backup.lock"
    lock.parent.mkdir()
    held = lock.open("wb")
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    release = threading.Timer(0.5, held.close)
    release.start()
    started = time.monotonic()
    with prpm_backup.host_lock(lock, "db", wait=30, poll=0.1):
        waited = time.monotonic() - started
    release.join()
    assert 0.4 < waited < 10


def test_a_run_gives_up_when_the_lock_stays_held_past_its_wait(tmp_path: Path) -> None:
    lock = tmp_path / "state" / "prpm-backup.lock"
    lock.parent.mkdir()
    with lock.open("wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        with pytest.raises(prpm_backup.Locked, match=r"still after 0.3 s; this db run"):
            with prpm_backup.host_lock(lock, "db", wait=0.3, poll=0.05):
                pytest.fail("the lock was taken while held")
        assert 0.25 < time.monotonic() - started < 5


def test_a_negative_lock_wait_is_refused(fake: FakeHost, tmp_path: Path) -> None:
    assert run_main(tmp_path, "db", cfg=config(lock_wait_seconds=-1)) == 1


def test_lock_wait_on_the_command_line_wins_over_the_configuration(
    fake: FakeHost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The prune's one-hour credentials must not be spent waiting an hour for the lock."""
    lock = tmp_path / "state" / "prpm-backup.lock"
    lock.parent.mkdir()
    with lock.open("wb") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        started = time.monotonic()
        code = run_main(tmp_path, "forget", "--lock-wait", "1", cfg=config(lock_wait_seconds=3600))
        assert code == prpm_backup.LOCKED_OUT
        assert 0.9 < time.monotonic() - started < 10
    assert "still after 1 s; this forget run did not start" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_main(tmp_path, "forget", "--lock-wait", "-1")


# --- Every failure reported -------------------------------------------------------------------
def test_an_unexpected_error_fails_logs_its_traceback_and_pings(
    fake: FakeHost,
    tmp_path: Path,
    pings: list[tuple[str, bool, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake.on("snapshots", out="not JSON")
    assert run_main(tmp_path, "freshness") == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err
    assert "in cmd_freshness" in err
    summary = (
        "unexpected error: JSONDecodeError: Expecting value: line 1 column 1 (char 0) "
        "(traceback in the log)"
    )
    assert err.endswith(f"prpm-backup freshness FAILED: {summary}\n")
    assert pings == [(PINGS["freshness"], False, summary)]


def test_secrets_never_reach_the_log_or_the_ping(
    fake: FakeHost,
    tmp_path: Path,
    pings: list[tuple[str, bool, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    key, token = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY", "session-token-1234"
    env_file = tmp_path / "s3.env"
    env_file.write_text(f"AWS_SECRET_ACCESS_KEY={key}\nAWS_DEFAULT_REGION=eu-west-1\n")
    repo = {"name": "s3", "url": "s3:https://s3/b", "env_file": str(env_file)}
    cfg = config(repositories=[dict(repo, env={"AWS_SESSION_TOKEN": token})])
    fake.on("check", out=RuntimeError(f"a library said {key} and {token}"))
    assert run_main(tmp_path, "check", cfg=cfg) == 1
    fake.on("forget", out=Failure(f"restic exited 1: bad key {key}"))
    assert run_main(tmp_path, "forget", cfg=cfg) == 1
    err = capsys.readouterr().err
    assert "RuntimeError: a library said *** and ***" in err
    assert "prpm-backup forget FAILED: [s3] restic exited 1: bad key ***" in err
    assert [msg for _url, _ok, msg in pings] == [
        "unexpected error: RuntimeError: a library said *** and *** (traceback in the log)",
        "[s3] restic exited 1: bad key ***",
    ]
    said = err + "".join(msg for _url, _ok, msg in pings)
    assert key not in said and token not in said


def sigterm() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0)  # the signal handler runs here at the latest


def interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(
    "case",
    [
        (sigterm, 143, "stopped by SIGTERM before it finished"),
        (interrupt, 130, "interrupted before it finished"),
    ],
    ids=["sigterm", "interrupt"],
)
def test_a_stopped_run_fails_and_pings(
    fake: FakeHost,
    tmp_path: Path,
    pings: list[tuple[str, bool, str]],
    case: tuple[Any, int, str],
) -> None:
    stop, status, why = case
    handler = signal.getsignal(signal.SIGTERM)

    def check(_argv: list[str]) -> str:
        stop()
        return ""

    fake.on("check", out=check)
    assert run_main(tmp_path, "check") == status
    assert pings == [(PINGS["check"], False, why)]
    assert signal.getsignal(signal.SIGTERM) is handler


def test_time_limits_must_be_positive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(tmp_path, "check", cfg=config(short_command_timeout_seconds=0)) == 1
    assert "'short_command_timeout_seconds' must be at least 1" in capsys.readouterr().err
    assert run_main(tmp_path, "check", cfg=config(command_timeout_seconds="6h")) == 1
    assert "'command_timeout_seconds' must be an integer" in capsys.readouterr().err


def test_a_database_snapshot_is_forgotten_whatever_fails_after_it(
    fake: FakeHost, tmp_path: Path, stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.on("psql", out=COUNTS)
    fake.on("--stdin-from-command", out='{"message_type":"summary","snapshot_id":"abc"}')

    def unreadable(_path: object) -> int:
        raise PermissionError("volume")

    monkeypatch.setattr(prpm_backup, "count_objects", unreadable)
    run = prpm_backup.Backup(config(), stack, tmp_path / "state")
    with pytest.raises(PermissionError):
        prpm_backup.cmd_db(run, ARGS)
    assert fake.find("forget") == [["restic", "--quiet", "forget", "abc"]]


# --- The drill's container --------------------------------------------------------------------
def test_a_failed_drill_removes_its_container_and_volume(
    fake: FakeHost, tmp_path: Path, stack: Path
) -> None:
    drill_host(fake, str(tmp_path / "volume"))
    fake.on("psql", out="public.packages\t3\n")
    with pytest.raises(Failure, match=r"public\.users: expected 2, found None"):
        prpm_backup.cmd_drill(drill(tmp_path, stack), ARGS)
    assert fake.find("rm") == [REMOVE, REMOVE]
    assert fake.argvs()[-1] == REMOVE


def test_a_drill_whose_container_did_not_start_still_removes_it(
    fake: FakeHost, tmp_path: Path, stack: Path
) -> None:
    drill_host(fake, str(tmp_path / "volume"))
    fake.on("docker", "run", rc=125)
    with pytest.raises(Failure, match="docker exited 125"):
        prpm_backup.cmd_drill(drill(tmp_path, stack), ARGS)
    argvs = fake.argvs()
    assert argvs[-2][:4] == ["docker", "run", "-d", "--rm"]
    assert argvs[-1] == REMOVE


def test_a_stopped_drill_removes_its_container_and_volume(
    fake: FakeHost, tmp_path: Path, stack: Path, pings: list[tuple[str, bool, str]]
) -> None:
    drill_host(fake, str(tmp_path / "volume"))

    def stop(_argv: list[str]) -> str:
        sigterm()
        return ""

    fake.on("pg_restore", out=stop)
    assert run_main(tmp_path, "drill") == 143
    assert fake.argvs()[-1] == REMOVE
    assert pings == [(PINGS["drill"], False, "stopped by SIGTERM before it finished")]


def test_a_drill_fails_when_its_container_stays(
    fake: FakeHost, tmp_path: Path, stack: Path
) -> None:
    drill_host(fake, str(tmp_path / "volume"))
    restore = fake.rules[-1][1]

    def restore_then_break_rm(argv: list[str]) -> str:
        fake.on("rm", "-v", rc=1)
        return restore(argv)  # type: ignore[operator]

    fake.on("restore", "--target", out=restore_then_break_rm)
    run = drill(tmp_path, stack)
    with pytest.raises(Failure) as failed:
        prpm_backup.cmd_drill(run, ARGS)
    assert str(failed.value) == (
        f"the drill container {DRILL} and its volume (a copy of the database) could not be "
        f"removed: docker rm exited 1; remove them with: docker rm -f -v {DRILL}"
    )
    assert not run.last_drill.exists()


def test_a_drill_does_not_start_over_a_container_it_cannot_remove(
    fake: FakeHost, tmp_path: Path, stack: Path
) -> None:
    drill_host(fake, str(tmp_path / "volume"))
    fake.on("rm", "-v", rc=1)
    with pytest.raises(
        Failure, match=r"docker rm -f -v prpm-backup-drill; the drill did not start"
    ):
        prpm_backup.cmd_drill(drill(tmp_path, stack), ARGS)
    assert fake.find("docker", "run") == []


def test_a_failed_drill_reports_its_failure_first_and_a_container_that_stays_next(
    fake: FakeHost, tmp_path: Path, stack: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drill_host(fake, str(tmp_path / "volume"))

    def fail(_argv: list[str]) -> str:
        fake.on("rm", "-v", rc=1)
        raise Failure("pg_restore exited 1: disk full")

    fake.on("pg_restore", out=fail)
    with pytest.raises(Failure, match="pg_restore exited 1: disk full"):
        prpm_backup.cmd_drill(drill(tmp_path, stack), ARGS)
    assert "could not be removed: docker rm exited 1" in capsys.readouterr().err


def test_a_container_docker_removes_meanwhile_is_removed(
    fake: FakeHost, tmp_path: Path, stack: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    drill_host(fake, str(tmp_path / "volume"))
    answers = iter(
        ["No such container: prpm-backup-drill", "removal of container is already in progress"]
    )

    def attempt(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        if cmd[:2] == ["docker", "rm"]:
            fake.calls.append(("attempt", list(cmd), {}))
            return subprocess.CompletedProcess(
                cmd, 1, "", f"Error response from daemon: {next(answers)}"
            )
        return fake.attempt(cmd, **kw)

    monkeypatch.setattr(prpm_backup.prpm_stack, "attempt", attempt)
    run = drill(tmp_path, stack)
    prpm_backup.cmd_drill(run, ARGS)
    assert fake.find("rm") == [REMOVE, REMOVE]
    assert json.loads(run.last_drill.read_text(encoding="utf-8"))["rows"] == 5


def test_a_drill_database_that_exits_and_is_gone_says_so(
    fake: FakeHost, tmp_path: Path, stack: Path
) -> None:
    drill_host(fake, str(tmp_path / "volume"))
    fake.on("pg_isready", rc=2)
    fake.on("inspect", rc=1)
    fake.on("logs", rc=1, out="")
    with pytest.raises(Failure) as failed:
        prpm_backup.cmd_drill(drill(tmp_path, stack), ARGS)
    assert str(failed.value) == (
        "the drill's database exited: its container was removed with its output (docker run --rm)"
    )
    assert fake.argvs()[-1] == REMOVE
