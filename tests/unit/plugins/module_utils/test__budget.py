# SPDX-License-Identifier: GPL-3.0-or-later
"""Budgets against an in-memory AWS Budgets (no network).

moto 5.2 implements neither UpdateBudget nor the subscriber calls, so the client here is a small
model of the Budgets API as its reference describes it: budgets, their notifications, and the
subscribers of each notification, read page by page.
"""

from __future__ import annotations

import copy

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils._budget import (
    BudgetSpec,
    ensure_absent,
    ensure_present,
    spec_errors,
)

ACCOUNT = "123456789012"
THRESHOLDS = [("ACTUAL", 80), ("FORECASTED", 100)]
SPEC = BudgetSpec("prpm-hobby", 15, ["ops@example.com"], THRESHOLDS)


class NotFoundException(Exception):
    pass


class DuplicateRecordException(Exception):
    pass


class FakeBudgets:
    """The subset of a boto3 `budgets` client that _budget uses, with AWS's semantics."""

    class exceptions:  # boto3 clients spell it this way
        NotFoundException = NotFoundException

    def __init__(self) -> None:
        self.budgets: dict[str, dict] = {}
        self.writes: list[str] = []  # every call that changes something

    def _get(self, name: str) -> dict:
        if name not in self.budgets:
            raise NotFoundException(name)
        return self.budgets[name]

    def _notification(self, name: str, notification: dict) -> dict:
        for entry in self._get(name)["notifications"]:
            if entry["notification"] == notification:
                return entry
        raise NotFoundException(notification)

    def describe_budget(self, AccountId: str, BudgetName: str) -> dict:
        return {"Budget": copy.deepcopy(self._get(BudgetName)["budget"])}

    def describe_budgets(self, AccountId: str) -> dict:
        return {"Budgets": [copy.deepcopy(b["budget"]) for b in self.budgets.values()]}

    def create_budget(self, AccountId, Budget, NotificationsWithSubscribers=()) -> dict:
        self.writes.append("create_budget")
        if Budget["BudgetName"] in self.budgets:
            raise DuplicateRecordException(Budget["BudgetName"])
        self.budgets[Budget["BudgetName"]] = {
            "budget": copy.deepcopy(Budget),
            "notifications": [
                {"notification": dict(n["Notification"]), "subscribers": list(n["Subscribers"])}
                for n in NotificationsWithSubscribers
            ],
        }
        return {}

    def update_budget(self, AccountId, NewBudget) -> dict:
        self.writes.append("update_budget")
        self._get(NewBudget["BudgetName"])["budget"] = copy.deepcopy(NewBudget)
        return {}

    def delete_budget(self, AccountId, BudgetName) -> dict:
        self.writes.append("delete_budget")
        self._get(BudgetName)
        del self.budgets[BudgetName]
        return {}

    def describe_notifications_for_budget(self, AccountId, BudgetName) -> dict:
        entries = self._get(BudgetName)["notifications"]
        return {"Notifications": [dict(e["notification"]) for e in entries]}

    def create_notification(self, AccountId, BudgetName, Notification, Subscribers) -> dict:
        self.writes.append("create_notification")
        if not 1 <= len(Subscribers) <= 11:
            raise ValueError("a notification has 1 to 11 subscribers")
        self._get(BudgetName)["notifications"].append(
            {"notification": dict(Notification), "subscribers": list(Subscribers)}
        )
        return {}

    def delete_notification(self, AccountId, BudgetName, Notification) -> dict:
        self.writes.append("delete_notification")
        entry = self._notification(BudgetName, Notification)
        self._get(BudgetName)["notifications"].remove(entry)
        return {}

    def describe_subscribers_for_notification(
        self, AccountId, BudgetName, Notification, MaxResults=100, NextToken=None
    ) -> dict:
        """One subscriber a page, so that reading all of them needs the NextToken loop."""
        subscribers = self._notification(BudgetName, Notification)["subscribers"]
        start = int(NextToken or 0)
        page = {"Subscribers": [dict(s) for s in subscribers[start : start + 1]]}
        if start + 1 < len(subscribers):
            page["NextToken"] = str(start + 1)
        return page

    def create_subscriber(self, AccountId, BudgetName, Notification, Subscriber) -> dict:
        self.writes.append("create_subscriber")
        entry = self._notification(BudgetName, Notification)
        if Subscriber in entry["subscribers"]:
            raise DuplicateRecordException(Subscriber["Address"])
        entry["subscribers"].append(dict(Subscriber))
        return {}

    def delete_subscriber(self, AccountId, BudgetName, Notification, Subscriber) -> dict:
        self.writes.append("delete_subscriber")
        entry = self._notification(BudgetName, Notification)
        if len(entry["subscribers"]) == 1:
            raise ValueError("a notification keeps at least one subscriber")
        entry["subscribers"].remove(Subscriber)
        return {}

    def recipients(self, name: str) -> dict[tuple[str, float], list[str]]:
        return {
            (e["notification"]["NotificationType"], e["notification"]["Threshold"]): sorted(
                f"{s['SubscriptionType']}:{s['Address']}" for s in e["subscribers"]
            )
            for e in self._get(name)["notifications"]
        }


@pytest.fixture
def client() -> FakeBudgets:
    return FakeBudgets()


def test_create_then_no_change(client) -> None:
    assert ensure_present(client, ACCOUNT, SPEC, check_mode=False) == (True, ["create budget"])
    budget = client.describe_budget(AccountId=ACCOUNT, BudgetName="prpm-hobby")["Budget"]
    assert budget["BudgetLimit"] == {"Amount": "15", "Unit": "USD"}
    assert budget["TimeUnit"] == "MONTHLY"
    assert client.recipients("prpm-hobby") == {
        ("ACTUAL", 80.0): ["EMAIL:ops@example.com"],
        ("FORECASTED", 100.0): ["EMAIL:ops@example.com"],
    }
    writes = len(client.writes)
    assert ensure_present(client, ACCOUNT, SPEC, check_mode=False) == (False, [])
    assert len(client.writes) == writes


def test_check_mode_changes_nothing(client) -> None:
    assert ensure_present(client, ACCOUNT, SPEC, check_mode=True)[0] is True
    assert client.budgets == {} and client.writes == []


def test_notifications_follow_the_spec(client) -> None:
    ensure_present(client, ACCOUNT, SPEC, check_mode=False)
    fewer = BudgetSpec("prpm-hobby", 15, ["ops@example.com"], [("ACTUAL", 90)])
    changed, actions = ensure_present(client, ACCOUNT, fewer, check_mode=False)
    assert changed
    assert sorted(actions) == sorted(
        [
            "delete notification ('ACTUAL', 80.0)",
            "delete notification ('FORECASTED', 100.0)",
            "create notification ('ACTUAL', 90.0)",
        ]
    )
    assert ensure_present(client, ACCOUNT, fewer, check_mode=False) == (False, [])


def test_recipients_follow_the_spec(client) -> None:
    """A new address receives the alerts, a removed one no longer does, on every notification."""
    ensure_present(
        client,
        ACCOUNT,
        BudgetSpec("prpm-hobby", 15, ["a@example.org", "b@example.org"], THRESHOLDS),
        False,
    )
    moved = BudgetSpec("prpm-hobby", 15, ["b@example.org", "c@example.org"], THRESHOLDS)
    changed, actions = ensure_present(client, ACCOUNT, moved, check_mode=False)
    assert changed
    assert sorted(actions) == [
        "add recipient c@example.org to ('ACTUAL', 80.0)",
        "add recipient c@example.org to ('FORECASTED', 100.0)",
        "remove recipient a@example.org from ('ACTUAL', 80.0)",
        "remove recipient a@example.org from ('FORECASTED', 100.0)",
    ]
    want = ["EMAIL:b@example.org", "EMAIL:c@example.org"]
    assert client.recipients("prpm-hobby") == {("ACTUAL", 80.0): want, ("FORECASTED", 100.0): want}
    assert ensure_present(client, ACCOUNT, moved, check_mode=False) == (False, [])


def test_the_only_recipient_can_be_replaced(client) -> None:
    """AWS keeps at least one subscriber per notification: the new one is added first."""
    ensure_present(client, ACCOUNT, SPEC, check_mode=False)
    other = BudgetSpec("prpm-hobby", 15, ["new@example.org"], THRESHOLDS)
    assert ensure_present(client, ACCOUNT, other, check_mode=False)[0] is True
    assert set(map(tuple, client.recipients("prpm-hobby").values())) == {("EMAIL:new@example.org",)}


def test_recipient_change_in_check_mode_changes_nothing(client) -> None:
    ensure_present(client, ACCOUNT, SPEC, check_mode=False)
    before, writes = client.recipients("prpm-hobby"), list(client.writes)
    other = BudgetSpec("prpm-hobby", 15, ["new@example.org"], THRESHOLDS)
    changed, actions = ensure_present(client, ACCOUNT, other, check_mode=True)
    assert changed and len(actions) == 4
    assert client.recipients("prpm-hobby") == before and client.writes == writes


def test_other_kinds_of_subscriber_are_left_alone(client) -> None:
    """An SNS subscriber someone added by hand is not an e-mail recipient of this module."""
    ensure_present(client, ACCOUNT, SPEC, check_mode=False)
    sns = {"SubscriptionType": "SNS", "Address": "arn:aws:sns:us-east-1:123456789012:ops"}
    for entry in client.budgets["prpm-hobby"]["notifications"]:
        entry["subscribers"].append(sns)
    assert ensure_present(client, ACCOUNT, SPEC, check_mode=False) == (False, [])


def test_limit_change_is_applied(client) -> None:
    ensure_present(client, ACCOUNT, SPEC, check_mode=False)
    more = BudgetSpec("prpm-hobby", 20, ["ops@example.com"], THRESHOLDS)
    assert ensure_present(client, ACCOUNT, more, check_mode=False) == (
        True,
        ["update limit 15 -> 20 USD"],
    )
    assert client.describe_budget(AccountId=ACCOUNT, BudgetName="prpm-hobby")["Budget"][
        "BudgetLimit"
    ] == {
        "Amount": "20",
        "Unit": "USD",
    }
    assert ensure_present(client, ACCOUNT, more, check_mode=False) == (False, [])


def test_absent_twice(client) -> None:
    ensure_present(client, ACCOUNT, SPEC, check_mode=False)
    assert ensure_absent(client, ACCOUNT, "prpm-hobby", check_mode=False) == (
        True,
        ["delete budget"],
    )
    assert ensure_absent(client, ACCOUNT, "prpm-hobby", check_mode=False) == (False, [])


@pytest.mark.parametrize(
    ("emails", "thresholds", "errors"),
    [
        (["ops@example.org"], THRESHOLDS, []),
        (["ops@example.org", "o", "p@q"], THRESHOLDS, ["not an e-mail address: 'o', 'p@q'"]),
        (["ops@example.org "], THRESHOLDS, ["not an e-mail address: 'ops@example.org '"]),
        ([], THRESHOLDS, ["the alerts need at least one e-mail address"]),
        ([], [], []),
        (
            [f"u{i}@example.org" for i in range(11)],
            THRESHOLDS,
            ["at most 10 e-mail addresses receive an alert, got 11"],
        ),
        (["ops@example.org"], [("ACTUAL", 0)], ["threshold percent must be above 0: ACTUAL 0"]),
    ],
)
def test_spec_errors(emails: list[str], thresholds: list, errors: list[str]) -> None:
    assert spec_errors(BudgetSpec("prpm-hobby", 15, emails, thresholds)) == errors
