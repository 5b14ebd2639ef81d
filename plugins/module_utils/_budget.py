# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Idempotent AWS Budgets (cost budget with e-mail alerts) on a boto3 `budgets` client."""

from __future__ import annotations

from decimal import Decimal

__all__ = ["BudgetSpec", "ensure_absent", "ensure_present", "notifications_for"]


class BudgetSpec:
    """What the budget should be."""

    def __init__(
        self, name: str, limit_usd: float, emails: list[str], thresholds: list[tuple[str, float]]
    ) -> None:
        self.name = name
        self.limit_usd = Decimal(str(limit_usd)).normalize()
        self.emails = sorted(emails)
        self.thresholds = sorted(thresholds)  # (ACTUAL|FORECASTED, percent)

    def budget(self) -> dict:
        return {
            "BudgetName": self.name,
            "BudgetLimit": {"Amount": str(self.limit_usd), "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        }


def notifications_for(spec: BudgetSpec) -> list[dict]:
    return [
        {
            "NotificationType": kind,
            "ComparisonOperator": "GREATER_THAN",
            "Threshold": float(percent),
            "ThresholdType": "PERCENTAGE",
        }
        for kind, percent in spec.thresholds
    ]


def _subscribers(spec: BudgetSpec) -> list[dict]:
    return [{"SubscriptionType": "EMAIL", "Address": email} for email in spec.emails]


def _key(notification: dict) -> tuple[str, float]:
    return (notification["NotificationType"], float(notification["Threshold"]))


def _describe(client, account_id: str, name: str) -> dict | None:
    try:
        return client.describe_budget(AccountId=account_id, BudgetName=name)["Budget"]
    except client.exceptions.NotFoundException:
        return None


def ensure_present(
    client, account_id: str, spec: BudgetSpec, check_mode: bool
) -> tuple[bool, list[str]]:
    """Create or update the budget and its notifications. Returns (changed, actions)."""
    current = _describe(client, account_id, spec.name)
    actions: list[str] = []
    if current is None:
        actions.append("create budget")
        if not check_mode:
            client.create_budget(
                AccountId=account_id,
                Budget=spec.budget(),
                NotificationsWithSubscribers=[
                    {"Notification": n, "Subscribers": _subscribers(spec)}
                    for n in notifications_for(spec)
                ],
            )
        return True, actions

    amount = Decimal(current["BudgetLimit"]["Amount"]).normalize()
    if amount != spec.limit_usd or current.get("TimeUnit") != "MONTHLY":
        actions.append(f"update limit {amount} -> {spec.limit_usd} USD")
        if not check_mode:
            client.update_budget(AccountId=account_id, NewBudget=spec.budget())

    existing = client.describe_notifications_for_budget(AccountId=account_id, BudgetName=spec.name)
    have = {_key(n): n for n in existing.get("Notifications", [])}
    want = {_key(n): n for n in notifications_for(spec)}
    for key in sorted(set(have) - set(want)):
        actions.append(f"delete notification {key}")
        if not check_mode:
            client.delete_notification(
                AccountId=account_id, BudgetName=spec.name, Notification=have[key]
            )
    for key in sorted(set(want) - set(have)):
        actions.append(f"create notification {key}")
        if not check_mode:
            client.create_notification(
                AccountId=account_id,
                BudgetName=spec.name,
                Notification=want[key],
                Subscribers=_subscribers(spec),
            )
    return bool(actions), actions


def ensure_absent(client, account_id: str, name: str, check_mode: bool) -> tuple[bool, list[str]]:
    if _describe(client, account_id, name) is None:
        return False, []
    if not check_mode:
        client.delete_budget(AccountId=account_id, BudgetName=name)
    return True, ["delete budget"]
