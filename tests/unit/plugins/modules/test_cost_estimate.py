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
    assert result["total"] == pytest.approx(12.95)
    assert result["changed"] is False
    assert "Total per month" in result["table"]
    assert result["tiers"]["hobby (t3.micro + compose)"] == result["total"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        ({"budget_usd": 10}, 1, "exceeds the budget of 10.00 USD/month"),
        ({"budget_usd": 10, "allow_over_budget": True}, 0, None),
        ({"region": "mars-1"}, 1, "no prices for region 'mars-1'"),
        ({"instance_type": "m9.huge"}, 1, "no price for instance type 'm9.huge'"),
    ],
)
def test_guard_and_errors(capsys, args: dict, code: int, message: str | None) -> None:
    got_code, result = run(args, capsys)
    assert got_code == code
    if message:
        assert message in result["msg"]
