# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm.hobby.stack_info: what makes a stack contract readable."""

from __future__ import annotations

import pytest

from ansible_collections.prpm.hobby.plugins.modules.stack_info import REQUIRED, check

GOOD = {"schema": 1, **dict.fromkeys(REQUIRED, "x")}


def test_a_complete_schema_1_contract_passes() -> None:
    assert check(GOOD) == ""


@pytest.mark.parametrize(
    ("contract", "problem"),
    [
        ([], "not a JSON object"),
        ({**GOOD, "schema": 2}, "schema 2, this collection reads schema 1"),
        ({k: v for k, v in GOOD.items() if k != "schema"}, "schema None"),
        ({k: v for k, v in GOOD.items() if k != "database"}, "missing database"),
    ],
)
def test_what_is_wrong_is_named(contract: object, problem: str) -> None:
    assert problem in check(contract)
