# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm.hobby.aws_budget refuses bad input before it makes any AWS call."""

from __future__ import annotations

import json

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.prpm.hobby.plugins.modules import aws_budget


class NoAws:
    """Stands in for AnsibleAWSModule.client: any call to AWS fails the test."""

    def __call__(self, *args, **kwargs):
        raise AssertionError(f"AWS was called: client{args}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"emails": ["ops@example.org", "o", "p"]},
            "Budget prpm-hobby: not an e-mail address: 'o', 'p'",
        ),
        ({"emails": []}, "the alerts need at least one e-mail address"),
        (
            {"emails": ["ops@example.org"], "thresholds": [{"type": "ACTUAL", "percent": -1}]},
            "threshold percent must be above 0: ACTUAL -1",
        ),
        ({"emails": ["ops@example.org"], "limit_usd": 0}, "limit_usd must be greater than 0"),
    ],
)
def test_bad_input_fails_before_any_call(monkeypatch, capsys, args: dict, message: str) -> None:
    monkeypatch.setattr(aws_budget.AnsibleAWSModule, "client", NoAws())
    full = {"name": "prpm-hobby", "limit_usd": 15, "region": "us-east-1", **args}
    with patch_module_args(full), pytest.raises(SystemExit) as exc:
        aws_budget.main()
    result = json.loads(capsys.readouterr().out)
    assert exc.value.code == 1
    assert result["failed"] is True
    assert message in result["msg"]
