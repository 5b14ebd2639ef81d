# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm_patch: apt plan parsing, reboot detection, the scheduled run and the post-boot check."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import prpm_patch
import pytest
from host_fakes import FakeHost, healthy_rows, ps_rows, write_json
from prpm_stack import Failure, Stack

COMPOSE = ["docker", "compose", "-f", "/opt/prpm/compose.yaml", "-p", "prpm"]
CONFIG = {
    "health_timeout": 300,
    "lock_timeout": 600,
    "autoremove": True,
    "backup": False,
    "reboot": True,
    "ping_url": "",
}

SIMULATION = """NOTE: This is only a simulation!
Reading package lists...
The following packages will be upgraded:
  libzstd1 runc
Inst libzstd1 [1.5.7+dfsg-1] (1.5.7+dfsg-1+deb13u1 Debian-Security:13/stable-security [amd64])
Inst runc [1.1.15+ds1-2+b4] (1.1.15+ds1-2+deb13u1 Debian-Security:13/stable-security [amd64])
Inst linux-image-6.12.9-amd64 (6.12.9-1 Debian-Security:13/stable-security [amd64])
Conf libzstd1 (1.5.7+dfsg-1+deb13u1 Debian-Security:13/stable-security [amd64])
"""
PLAN = [
    {"name": "libzstd1", "from": "1.5.7+dfsg-1", "to": "1.5.7+dfsg-1+deb13u1"},
    {"name": "runc", "from": "1.1.15+ds1-2+b4", "to": "1.1.15+ds1-2+deb13u1"},
    {"name": "linux-image-6.12.9-amd64", "from": "", "to": "6.12.9-1"},
]


def test_parse_plan() -> None:
    assert prpm_patch.parse_plan(SIMULATION) == PLAN
    assert prpm_patch.parse_plan("0 upgraded, 0 newly installed") == []


def test_reboot_required_by_file_and_by_kernel(tmp_path: Path) -> None:
    flag, boot = tmp_path / "reboot-required", tmp_path / "boot"
    boot.mkdir()
    assert prpm_patch.reboot_required(flag, boot) == {"required": False, "reasons": []}
    flag.touch()
    (tmp_path / "reboot-required.pkgs").write_text("libc6\nlibc6\nlinux-image-amd64\n")
    got = prpm_patch.reboot_required(flag, boot)
    assert got == {"required": True, "reasons": [f"{flag} exists (libc6 linux-image-amd64)"]}
    flag.unlink()
    (boot / "vmlinuz-99.0.0-1-amd64").touch()
    got = prpm_patch.reboot_required(flag, boot)
    assert got["required"] is True
    assert got["reasons"] == [f"kernel 99.0.0-1-amd64 installed, {os.uname().release} running"]


def test_newest_kernel_sorts_versions(tmp_path: Path) -> None:
    assert prpm_patch.newest_kernel(tmp_path) == ""
    for release in ("6.12.9-amd64", "6.12.10-amd64", "6.1.0-30-amd64"):
        (tmp_path / f"vmlinuz-{release}").touch()
    assert prpm_patch.newest_kernel(tmp_path) == "6.12.10-amd64"


def test_upgrade_runs_apt_with_lock_waits_and_checks_versions(
    fake: FakeHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prpm_patch, "reboot_required", lambda: {"required": False, "reasons": []})
    fake.on("-s", "dist-upgrade", out=SIMULATION)
    fake.on("-s", "autoremove", out="Purg old-lib [1.0]\n")
    versions = {p["name"]: p["to"] for p in PLAN}
    fake.on("dpkg-query", out=lambda argv: versions[argv[-1]])
    fake.on("is-active", rc=0)
    report = prpm_patch.upgrade(CONFIG)
    assert (report["upgraded"], report["removed"], report["docker_started"]) == (
        PLAN,
        ["old-lib"],
        [],
    )
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    assert fake.find("apt-get", "-y") == [
        ["apt-get", "-y", "-q", *lock, "-o", "Dpkg::Options::=--force-confdef",
         "-o", "Dpkg::Options::=--force-confold", "dist-upgrade"],
        ["apt-get", "-y", "-q", *lock, "autoremove", "--purge"],
    ]  # fmt: skip
    assert all(e["DEBIAN_FRONTEND"] == "noninteractive" for k, a, e in fake.calls if "apt-get" in a)
    versions["runc"] = "1.1.15+ds1-2+b4"
    with pytest.raises(Failure, match=r"not at the planned version: \['runc'\]"):
        prpm_patch.upgrade(CONFIG)


@pytest.fixture
def patch(tmp_path: Path, contract: dict[str, Any]) -> prpm_patch.Patch:
    path = write_json(tmp_path / "stack.json", contract)
    return prpm_patch.Patch(dict(CONFIG), path, tmp_path / "state")


def test_run_refuses_an_unhealthy_stack_and_changes_nothing(
    fake: FakeHost, patch: prpm_patch.Patch
) -> None:
    fake.on("ps", out=ps_rows(healthy_rows(patch.contract)[1:]))
    with pytest.raises(
        Failure, match=r"stack unhealthy before patching, nothing changed: .*postgres=missing"
    ):
        prpm_patch.cmd_run(patch, argparse.Namespace(no_reboot=False))
    assert json.loads(patch.last_run.read_text(encoding="utf-8"))["result"] == "refused"
    assert fake.find("apt-get") == []


def test_run_backs_up_upgrades_and_reboots_with_the_stack_stopped(
    fake: FakeHost, patch: prpm_patch.Patch, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    backup = tmp_path / "prpm-backup"
    backup.write_text("#!/bin/sh\n")
    backup.chmod(0o755)
    monkeypatch.setattr(prpm_patch, "BACKUP", str(backup))
    monkeypatch.setattr(Stack, "http_health", lambda _self: (True, "ok"))
    reboot = {"required": True, "reasons": ["kernel"]}
    monkeypatch.setattr(prpm_patch, "upgrade", lambda _cfg: {"upgraded": PLAN, "reboot": reboot})
    fake.on("ps", out=ps_rows(healthy_rows(patch.contract)))
    patch.cfg["backup"] = True

    def shutdown(_seconds: float) -> None:
        raise SystemExit(143)  # what the shutdown does to this process: SIGTERM

    monkeypatch.setattr(prpm_patch, "await_shutdown", shutdown)
    with pytest.raises(SystemExit):
        prpm_patch.cmd_run(patch, argparse.Namespace(no_reboot=False))
    assert fake.argvs() == [
        [*COMPOSE, "ps", "--all", "--format", "json"],
        [str(backup), "run"],
        [*COMPOSE, "ps", "--all", "--format", "json"],
        [*COMPOSE, "stop", "--timeout", "5", "registry", "caddy"],
        [*COMPOSE, "stop", "--timeout", "60", "postgres", "redis", "storage"],
        ["systemctl", "reboot"],
    ]
    assert json.loads(patch.last_run.read_text(encoding="utf-8"))["result"] == "rebooting"
    assert json.loads(patch.reboot_marker.read_text(encoding="utf-8"))["reasons"] == ["kernel"]


@pytest.mark.parametrize(
    ("reboot_rc", "error"),
    [
        (1, r"reboot failed: systemctl exited 1; the stack was started again$"),
        (0, r"reboot failed: the host was still up 0 s after `systemctl reboot`; the stack was"),
    ],
)
def test_a_reboot_that_does_not_happen_starts_the_stack_again(
    fake: FakeHost,
    patch: prpm_patch.Patch,
    monkeypatch: pytest.MonkeyPatch,
    reboot_rc: int,
    error: str,
) -> None:
    monkeypatch.setattr(Stack, "http_health", lambda _self: (True, "ok"))
    reboot = {"required": True, "reasons": ["kernel"]}
    monkeypatch.setattr(prpm_patch, "upgrade", lambda _cfg: {"upgraded": PLAN, "reboot": reboot})
    monkeypatch.setattr(prpm_patch, "REBOOT_GRACE_SECONDS", 0)
    fake.on("ps", out=ps_rows(healthy_rows(patch.contract)))
    fake.on("systemctl", "reboot", out="Failed to reboot", rc=reboot_rc)
    with pytest.raises(Failure, match=error):
        prpm_patch.cmd_run(patch, argparse.Namespace(no_reboot=False))
    argvs = fake.argvs()
    up = [*COMPOSE, "up", "--detach", "--no-recreate", "--no-deps"]
    at = argvs.index(["systemctl", "reboot"])
    assert argvs[at - 1] == [*COMPOSE, "stop", "--timeout", "60", "postgres", "redis", "storage"]
    assert argvs[at + 1 : at + 3] == [
        [*up, "--wait", "--wait-timeout", "300", "postgres", "redis", "storage"],
        [*up, "registry", "caddy"],
    ]
    last = json.loads(patch.last_run.read_text(encoding="utf-8"))
    assert (last["result"], last["rebooted"]) == ("failed", False)
    assert last["health_after_failed_reboot"]["ok"] is True
    # No patch reboot is pending any more: the next boot's check has nothing to do.
    assert not patch.reboot_marker.exists()


def test_post_boot_starts_the_stack_and_records_the_outcome(
    fake: FakeHost, patch: prpm_patch.Patch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Stack, "http_health", lambda _self: (True, "ok"))
    fake.on("ps", out=ps_rows(healthy_rows(patch.contract)))
    timeout = argparse.Namespace(timeout=0)
    assert prpm_patch.cmd_post_boot(patch, timeout) == 0
    assert fake.argvs() == []  # no reboot pending: nothing to check
    prpm_patch.prpm_stack.write_json(patch.reboot_marker, {"since": 0, "reasons": ["x"]})
    prpm_patch.prpm_stack.write_json(patch.last_run, {"result": "rebooting"})
    assert prpm_patch.cmd_post_boot(patch, timeout) == 0
    up = [*COMPOSE, "up", "--detach", "--no-recreate", "--no-deps"]
    assert fake.argvs()[:2] == [
        [*up, "--wait", "--wait-timeout", "300", "postgres", "redis", "storage"],
        [*up, "registry", "caddy"],
    ]
    assert json.loads(patch.last_run.read_text(encoding="utf-8"))["result"] == "ok"
    assert not patch.reboot_marker.exists()


@pytest.fixture
def files(tmp_path: Path, contract: dict[str, Any]) -> dict[str, str]:
    return {
        "config_path": str(write_json(tmp_path / "config.json", CONFIG)),
        "contract_path": str(write_json(tmp_path / "stack.json", contract)),
        "state_dir": str(tmp_path / "state"),
        "lock_path": str(tmp_path / "prpm-patch.lock"),
    }


def test_main_exit_codes_and_pings(
    fake: FakeHost,
    files: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pings: list[tuple[str, bool]] = []
    monkeypatch.setattr(
        prpm_patch.prpm_stack, "ping", lambda url, ok, _msg="", **_kw: pings.append((url, ok))
    )
    write_json(Path(files["config_path"]), dict(CONFIG, ping_url="https://hc/patch"))
    fake.on("ps", rc=1)
    assert prpm_patch.main(["run"], **files) == prpm_patch.EXIT_UNHEALTHY_BEFORE
    assert "prpm-patch: run FAILED: stack unhealthy before patching, nothing changed" in (
        capsys.readouterr().err
    )
    assert prpm_patch.main(["health"], **files) == prpm_patch.EXIT_FAILED
    assert json.loads(capsys.readouterr().out)["services"] == {"docker": "docker exited 1"}
    assert pings == [("https://hc/patch", False), ("", True)]


def test_main_needs_no_contract_for_apt_commands(
    fake: FakeHost, files: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files["contract_path"] = str(tmp_path / "none.json")
    fake.on("-s", "dist-upgrade", out=SIMULATION)
    assert prpm_patch.main(["plan"], **files) == 0
    assert json.loads(capsys.readouterr().out)["upgrades"] == PLAN
    assert prpm_patch.main(["stop-stack"], **files) == prpm_patch.EXIT_FAILED
    assert "run prpm.hobby.registry_stack first" in capsys.readouterr().err


def test_main_refuses_a_config_without_its_keys(
    files: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_json(Path(files["config_path"]), {"health_timeout": "300"})
    assert prpm_patch.main(["reboot-required"], **files) == prpm_patch.EXIT_FAILED
    err = capsys.readouterr().err
    assert "'health_timeout' must be an integer; 'lock_timeout' is missing" in err


def test_a_second_run_waits_for_nobody(fake: FakeHost, files: dict[str, str]) -> None:
    import fcntl  # noqa: PLC0415 - only this test holds the lock

    with Path(files["lock_path"]).open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert prpm_patch.main(["upgrade"], **files) == prpm_patch.EXIT_FAILED
    assert fake.argvs() == []
