# SPDX-License-Identifier: GPL-3.0-or-later
"""Budgets against moto's in-process mock (no network)."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from ansible_collections.prpm.hobby.plugins.module_utils._budget import (
    BudgetSpec,
    ensure_absent,
    ensure_present,
)

SPEC = BudgetSpec("prpm-hobby", 15, ["ops@example.com"], [("ACTUAL", 80), ("FORECASTED", 100)])


@pytest.fixture
def aws(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        client = boto3.client("budgets", region_name="us-east-1")
        account = boto3.client("sts", region_name="us-east-1").get_caller_identity()["Account"]
        yield client, account


def test_create_then_no_change(aws) -> None:
    client, account = aws
    assert ensure_present(client, account, SPEC, check_mode=False) == (True, ["create budget"])
    budget = client.describe_budget(AccountId=account, BudgetName="prpm-hobby")["Budget"]
    assert budget["BudgetLimit"] == {"Amount": "15", "Unit": "USD"}
    assert budget["TimeUnit"] == "MONTHLY"
    notes = client.describe_notifications_for_budget(AccountId=account, BudgetName="prpm-hobby")
    assert sorted((n["NotificationType"], n["Threshold"]) for n in notes["Notifications"]) == [
        ("ACTUAL", 80.0),
        ("FORECASTED", 100.0),
    ]
    assert ensure_present(client, account, SPEC, check_mode=False) == (False, [])


def test_check_mode_changes_nothing(aws) -> None:
    client, account = aws
    assert ensure_present(client, account, SPEC, check_mode=True)[0] is True
    assert client.describe_budgets(AccountId=account).get("Budgets", []) == []


def test_notifications_follow_the_spec(aws) -> None:
    client, account = aws
    ensure_present(client, account, SPEC, check_mode=False)
    fewer = BudgetSpec("prpm-hobby", 15, ["ops@example.com"], [("ACTUAL", 90)])
    changed, actions = ensure_present(client, account, fewer, check_mode=False)
    assert changed
    assert sorted(actions) == sorted(
        [
            "delete notification ('ACTUAL', 80.0)",
            "delete notification ('FORECASTED', 100.0)",
            "create notification ('ACTUAL', 90.0)",
        ]
    )
    assert ensure_present(client, account, fewer, check_mode=False) == (False, [])


def test_absent_twice(aws) -> None:
    client, account = aws
    ensure_present(client, account, SPEC, check_mode=False)
    assert ensure_absent(client, account, "prpm-hobby", check_mode=False) == (
        True,
        ["delete budget"],
    )
    assert ensure_absent(client, account, "prpm-hobby", check_mode=False) == (False, [])
