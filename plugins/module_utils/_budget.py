# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Idempotent AWS Budgets (cost budget with e-mail alerts) on a boto3 `budgets` client."""

from __future__ import annotations

import re
from decimal import Decimal

__all__ = [
    "EMAIL_PATTERN",
    "MAX_EMAILS",
    "BudgetSpec",
    "ensure_absent",
    "ensure_present",
    "notifications_for",
    "spec_errors",
]

# One address: no blanks, commas, semicolons or angle brackets, one @, a dot in the domain.
# AWS Budgets accepts any string, so a typo would send the alerts nowhere.
EMAIL_PATTERN = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+\.[^@\s,;<>]+$")
MAX_EMAILS = 10  # e-mail subscribers per notification (AWS Budgets quota)


class BudgetSpec:
    """What the budget should be."""

    def __init__(
        self, name: str, limit_usd: float, emails: list[str], thresholds: list[tuple[str, float]]
    ) -> None:
        self.name = name
        self.limit_usd = Decimal(str(limit_usd)).normalize()
        self.emails = sorted(set(emails))
        self.thresholds = sorted(thresholds)  # (ACTUAL|FORECASTED, percent)

    def budget(self) -> dict:
        return {
            "BudgetName": self.name,
            # Fixed-point: str() of a normalized Decimal writes 20 as "2E+1".
            "BudgetLimit": {"Amount": f"{self.limit_usd:f}", "Unit": "USD"},
            "TimeUnit": "MONTHLY",
            "BudgetType": "COST",
        }


def spec_errors(spec: BudgetSpec) -> list[str]:
    """What AWS would refuse or silently misroute, found before any call."""
    errors = []
    bad = [e for e in spec.emails if not EMAIL_PATTERN.match(e)]
    if bad:
        errors.append("not an e-mail address: " + ", ".join(repr(e) for e in bad))
    if spec.thresholds and not spec.emails:
        errors.append("the alerts need at least one e-mail address")
    if len(spec.emails) > MAX_EMAILS:
        errors.append(
            f"at most {MAX_EMAILS} e-mail addresses receive an alert, got {len(spec.emails)}"
        )
    errors += [
        f"threshold percent must be above 0: {kind} {percent:g}"
        for kind, percent in spec.thresholds
        if percent <= 0
    ]
    return errors


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
    return [_email(email) for email in spec.emails]


def _email(address: str) -> dict:
    return {"SubscriptionType": "EMAIL", "Address": address}


def _emails_of(client, account_id: str, name: str, notification: dict) -> set[str]:
    """The e-mail recipients of one notification, all pages (other kinds are not ours)."""
    found: set[str] = set()
    kwargs = {"AccountId": account_id, "BudgetName": name, "Notification": notification}
    while True:
        page = client.describe_subscribers_for_notification(**kwargs, MaxResults=100)
        found |= {
            s["Address"] for s in page.get("Subscribers", []) if s["SubscriptionType"] == "EMAIL"
        }
        if not page.get("NextToken"):
            return found
        kwargs["NextToken"] = page["NextToken"]


def _sync_recipients(
    client, account_id: str, spec: BudgetSpec, notification: dict, check_mode: bool
) -> list[str]:
    """Make the e-mail recipients of one existing notification exactly spec.emails."""
    key = _key(notification)
    have = _emails_of(client, account_id, spec.name, notification)
    want = set(spec.emails)
    actions = []
    call = {"AccountId": account_id, "BudgetName": spec.name, "Notification": notification}
    # Added first: AWS keeps at least one subscriber on a notification.
    for address in sorted(want - have):
        actions.append(f"add recipient {address} to {key}")
        if not check_mode:
            client.create_subscriber(**call, Subscriber=_email(address))
    for address in sorted(have - want):
        actions.append(f"remove recipient {address} from {key}")
        if not check_mode:
            client.delete_subscriber(**call, Subscriber=_email(address))
    return actions


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
    """Create or update the budget, its notifications and their e-mail recipients.

    Returns (changed, actions). Subscribers of other kinds (SNS topics added by hand) are kept.
    """
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
        actions.append(f"update limit {amount:f} -> {spec.limit_usd:f} USD")
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
    for key in sorted(set(want) & set(have)):
        actions += _sync_recipients(client, account_id, spec, have[key], check_mode)
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
