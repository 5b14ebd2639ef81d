# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.prpm.hobby.plugins.modules import cost_estimate


def run(args: dict, capsys) -> tuple[int, dict]:
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        cost_estimate.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def test_within_budget(capsys) -> None:
    code, result = run({"budget_usd": 15}, capsys)
    assert code == 0
    assert result["total"] == pytest.approx(14.27)
    assert result["changed"] is False
    assert "Total per month" in result["table"]
    assert result["tiers"]["hobby (t3.micro + compose)"] == result["total"]


@pytest.mark.parametrize(
    ("args", "line", "total"),
    [
        # packages_gb defaults to 1 GB of S3 Standard (0.023 -> 0.02).
        ({}, {"item": "S3 packages 1 GB", "usd": 0.02}, 14.27),
        # 40 GB: 0.92 instead of 0.02, in the line and in the total.
        ({"packages_gb": 40}, {"item": "S3 packages 40 GB", "usd": 0.92}, 15.17),
        ({"packages_gb": 0}, {"item": "S3 packages 0 GB", "usd": 0.0}, 14.25),
    ],
)
def test_packages_storage(capsys, args: dict, line: dict, total: float) -> None:
    code, result = run(args, capsys)
    assert code == 0
    assert line in result["lines"]
    assert result["total"] == pytest.approx(total)
    assert line["item"] in result["table"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ({"budget_usd": 10}, 1, "exceeds the budget of 10.00 USD/month"),
        ({"budget_usd": 10, "allow_over_budget": True}, 0, None),
        # 14.25 without packages fits 14.3; 10 GB of packages (0.23) push it to 14.48.
        ({"budget_usd": 14.3, "packages_gb": 10}, 1, "estimate of 14.48 USD/month exceeds"),
        ({"budget_usd": 14.48, "packages_gb": 10}, 0, None),
        ({"region": "mars-1"}, 1, "no prices for region 'mars-1'"),
        ({"instance_type": "m9.huge"}, 1, "no price for instance type 'm9.huge'"),
    ],
)
def test_guard_and_errors(capsys, args: dict, code: int, message: str | None) -> None:
    got_code, result = run(args, capsys)
    assert got_code == code
    if message:
        assert message in result["msg"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        # 12.97 without snapshots fits 14; the 3 pre-patch snapshots and the final one (1.30)
        # do not.
        ({"budget_usd": 14}, 1, "estimate of 14.27 USD/month exceeds the budget of 14.00"),
        ({"budget_usd": 14, "patch_snapshots": 0, "final_snapshot": False}, 0, None),
        ({"budget_usd": 14.27}, 0, None),
    ],
)
def test_snapshots_are_held_against_the_budget(capsys, args, code, message) -> None:
    got_code, result = run(args, capsys)
    assert got_code == code, result
    if message:
        assert message in result["msg"]
    else:
        assert any("snapshot" in line["item"] for line in result["lines"]) == (
            args.get("patch_snapshots", 3) > 0
        )
