# SPDX-License-Identifier: GPL-3.0-or-later
"""The host command of prpm.hobby.patching: apt plan parsing, reboot detection, health rules."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "roles" / "patching" / "files" / "prpm_patch.py"


@pytest.fixture(scope="module")
def patch():
    loader = importlib.machinery.SourceFileLoader("prpm_patch", str(SCRIPT))
    spec = importlib.util.spec_from_loader("prpm_patch", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


SIMULATION = """NOTE: This is only a simulation!
Reading package lists...
The following packages will be upgraded:
  libzstd1 runc
Inst libzstd1 [1.5.7+dfsg-1] (1.5.7+dfsg-1+deb13u1 Debian-Security:13/stable-security [amd64])
Inst runc [1.1.15+ds1-2+b4] (1.1.15+ds1-2+deb13u1 Debian-Security:13/stable-security [amd64])
Inst linux-image-6.12.9-amd64 (6.12.9-1 Debian-Security:13/stable-security [amd64])
Conf libzstd1 (1.5.7+dfsg-1+deb13u1 Debian-Security:13/stable-security [amd64])
"""


def test_parse_plan(patch) -> None:
    assert patch.parse_plan(SIMULATION) == [
        {"name": "libzstd1", "from": "1.5.7+dfsg-1", "to": "1.5.7+dfsg-1+deb13u1"},
        {"name": "runc", "from": "1.1.15+ds1-2+b4", "to": "1.1.15+ds1-2+deb13u1"},
        {"name": "linux-image-6.12.9-amd64", "from": "", "to": "6.12.9-1"},
    ]
    assert patch.parse_plan("0 upgraded, 0 newly installed") == []


def test_reboot_required_by_file_and_by_kernel(patch, tmp_path, monkeypatch) -> None:
    flag = tmp_path / "reboot-required"
    monkeypatch.setattr(patch, "REBOOT_REQUIRED", str(flag))
    monkeypatch.setattr(patch, "newest_kernel", lambda: "")
    assert patch.reboot_required() == {"required": False, "reasons": []}
    flag.touch()
    (tmp_path / "reboot-required.pkgs").write_text("libc6\nlibc6\nlinux-image-amd64\n")
    got = patch.reboot_required()
    assert got["required"] is True
    assert got["reasons"] == [f"{flag} exists (libc6 linux-image-amd64)"]
    flag.unlink()
    monkeypatch.setattr(patch, "newest_kernel", lambda: "99.0.0-1-amd64")
    got = patch.reboot_required()
    assert got["required"] is True
    assert got["reasons"][0].startswith("kernel 99.0.0-1-amd64 installed")


def test_newest_kernel_sorts_versions(patch, monkeypatch) -> None:
    monkeypatch.setattr(
        patch.glob,
        "glob",
        lambda _p: [
            "/boot/vmlinuz-6.12.9-amd64",
            "/boot/vmlinuz-6.12.10-amd64",
            "/boot/vmlinuz-6.1.0-30-amd64",
        ],
    )
    assert patch.newest_kernel() == "6.12.10-amd64"
    monkeypatch.setattr(patch.glob, "glob", lambda _p: [])
    assert patch.newest_kernel() == ""


CFG = {
    "compose_file": "/opt/prpm/compose.yaml",
    "project": "prpm",
    "required_services": ["postgres", "redis", "registry", "caddy"],
    "oneshot_services": ["migrate"],
}


def _ps(rows):
    return "\n".join(json.dumps(r) for r in rows)


@pytest.mark.parametrize(
    ("rows", "ok", "states"),
    [
        (
            [
                {"Service": "postgres", "State": "running", "Health": "healthy"},
                {"Service": "redis", "State": "running", "Health": "healthy"},
                {"Service": "registry", "State": "running", "Health": "healthy"},
                {"Service": "caddy", "State": "running", "Health": ""},
                {"Service": "migrate", "State": "exited", "Health": "", "ExitCode": 0},
            ],
            True,
            None,
        ),
        (
            [
                {"Service": "postgres", "State": "running", "Health": "healthy"},
                {"Service": "redis", "State": "running", "Health": "healthy"},
                {"Service": "registry", "State": "running", "Health": "starting"},
                {"Service": "caddy", "State": "running", "Health": "healthy"},
            ],
            False,
            {"registry": "running starting"},
        ),
        (
            [
                {"Service": "postgres", "State": "running", "Health": "healthy"},
                {"Service": "registry", "State": "exited", "Health": "", "ExitCode": 137},
                {"Service": "caddy", "State": "running", "Health": "healthy"},
                {"Service": "migrate", "State": "exited", "Health": "", "ExitCode": 1},
            ],
            False,
            {"redis": "missing", "registry": "exited", "migrate": "exited (1)"},
        ),
    ],
)
def test_compose_services(patch, monkeypatch, rows, ok, states) -> None:
    monkeypatch.setattr(patch, "run", lambda *_a, **_k: _ps(rows))
    got_ok, got_states = patch.compose_services(CFG)
    assert got_ok is ok
    for name, state in (states or {}).items():
        assert got_states[name] == state


def test_compose_ps_as_a_json_array(patch, monkeypatch) -> None:
    rows = [
        {"Service": s, "State": "running", "Health": "healthy"}
        for s in ("postgres", "redis", "registry", "caddy")
    ]
    monkeypatch.setattr(patch, "run", lambda *_a, **_k: json.dumps(rows))
    assert patch.compose_services(CFG)[0] is True
