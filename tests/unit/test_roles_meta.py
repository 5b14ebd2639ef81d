# SPDX-License-Identifier: GPL-3.0-or-later
"""Every role documents exactly the variables it defaults (prometheus.prometheus' CI check)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8")) or {}


def test_every_role_has_specs() -> None:
    roles = {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()}
    assert roles, "no roles found"
    assert roles == {r.name for r in ROLES}


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_defaults_match_argument_specs(role: Path) -> None:
    defaults = set(_load(role / "defaults" / "main.yml"))
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    documented = set(specs["main"].get("options") or {})
    assert defaults == documented, (
        f"only in defaults: {sorted(defaults - documented)}; "
        f"only in argument_specs: {sorted(documented - defaults)}"
    )


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_options_are_fully_described(role: Path) -> None:
    specs = _load(role / "meta" / "argument_specs.yml")["argument_specs"]
    defaults = _load(role / "defaults" / "main.yml")
    for entry in specs.values():
        for name, spec in (entry.get("options") or {}).items():
            assert spec.get("type"), f"{name}: no type"
            assert spec.get("description"), f"{name}: no description"
            if name in defaults and not spec.get("required"):
                assert spec.get("default") == defaults[name], f"{name}: default differs"
            if "choices" in spec and name in defaults:
                assert defaults[name] in spec["choices"], f"{name}: default not in choices"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_inputs_are_prefixed(role: Path) -> None:
    prefix = role.name + "_"
    for name in _load(role / "defaults" / "main.yml"):
        assert name.startswith(prefix), f"{name} does not start with {prefix}"
