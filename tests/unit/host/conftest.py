# SPDX-License-Identifier: GPL-3.0-or-later
"""The host programs importable as on the host, where prpm_stack.py, prpm_backup.py and
prpm_patch.py share /usr/local/lib/prpm-hobby/; and the fixtures of their tests (helpers in
host_fakes)."""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROLES = Path(__file__).resolve().parents[3] / "roles"
for _role in ("registry_stack", "backups", "patching"):
    if str(ROLES / _role / "files") not in sys.path:
        sys.path.insert(0, str(ROLES / _role / "files"))

import prpm_stack  # noqa: E402 - importable once the roles' files/ are on sys.path
from host_fakes import CONTRACT, FakeHost  # noqa: E402 - it imports prpm_stack too


@pytest.fixture
def contract() -> dict[str, Any]:
    """A fresh copy of the default contract, for a test to change."""
    return copy.deepcopy(CONTRACT)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHost]:
    """Every process the host programs start goes to a FakeHost; waits do not wait."""
    host = FakeHost()
    monkeypatch.setattr(prpm_stack, "run", host.run)
    monkeypatch.setattr(prpm_stack, "attempt", host.attempt)
    monkeypatch.setattr(prpm_stack, "pipe", host.pipe)
    monkeypatch.setattr(prpm_stack.time, "sleep", lambda _s: None)
    yield host
