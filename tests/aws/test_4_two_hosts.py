# SPDX-License-Identifier: GPL-3.0-or-later
"""Two hosts of one project, side by side: inputs given on the command line as strings, alert
recipients that change, and a teardown that removes the named host only."""

from __future__ import annotations

import json

import pytest
from conftest import ACCOUNT

PROJECT = "prpm-hobby"
FIRST = "prpm-hobby"  # the host of the settings file
SECOND = "prpm-hobby-b"  # a second host with the same Project tag
LIVE = ["pending", "running", "stopping", "stopped"]


def _live(ec2, name: str) -> list[dict]:
    res = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Name", "Values": [name]},
            {"Name": "tag:Project", "Values": [PROJECT]},
            {"Name": "instance-state-name", "Values": LIVE},
        ]
    )["Reservations"]
    return [i for r in res for i in r["Instances"]]


def _ssh_sources(ec2, name: str) -> set[str]:
    (group,) = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": [name]}])[
        "SecurityGroups"
    ]
    return {
        r.get("CidrIp") or r.get("CidrIpv6")
        for perm in group["IpPermissions"]
        if perm.get("FromPort") == 22
        for r in perm.get("IpRanges", []) + perm.get("Ipv6Ranges", [])
    }


def _topic_recipients(client, name: str) -> list[str]:
    sns = client("sns")
    (arn,) = [
        t["TopicArn"]
        for t in sns.list_topics()["Topics"]
        if t["TopicArn"].endswith(f":{name}-alarms")
    ]
    subs = sns.list_subscriptions_by_topic(TopicArn=arn)["Subscriptions"]
    return sorted(f"{s['Protocol']}:{s['Endpoint']}" for s in subs)


def _budget_recipients(client, name: str) -> dict[str, list[str]]:
    """Recipients of each budget notification, e.g. {"ACTUAL 80.0": ["EMAIL:ops@..."]}."""
    budgets = client("budgets")
    found = {}
    notes = budgets.describe_notifications_for_budget(AccountId=ACCOUNT, BudgetName=name)
    for note in notes["Notifications"]:
        subs = budgets.describe_subscribers_for_notification(
            AccountId=ACCOUNT, BudgetName=name, Notification=note
        )["Subscribers"]
        key = f"{note['NotificationType']} {note['Threshold']}"
        found[key] = sorted(f"{s['SubscriptionType']}:{s['Address']}" for s in subs)
    return found


def _both_notifications(*recipients: str) -> dict[str, list[str]]:
    return {"ACTUAL 80.0": sorted(recipients), "FORECASTED 100.0": sorted(recipients)}


@pytest.fixture(scope="module")
def two_hosts(playbook):
    """The first host from the settings file; the second from -e key=value strings, as a user
    types them (a single CIDR, comma-separated addresses)."""
    first = playbook("provision.yml")
    assert first.rc == 0, first.output
    second = playbook(
        "provision.yml",
        "-e",
        f"aws_host_name={SECOND}",
        "-e",
        "aws_host_admin_cidrs=203.0.113.7/32",
        "-e",
        "aws_host_alert_emails=ops@example.org,dev@example.org",
    )
    assert second.rc == 0, second.output
    return first, second


def test_string_inputs_become_lists(two_hosts, ec2, client):
    assert _ssh_sources(ec2, SECOND) == {"203.0.113.7/32"}
    assert _topic_recipients(client, SECOND) == ["email:dev@example.org", "email:ops@example.org"]
    assert _budget_recipients(client, SECOND) == _both_notifications(
        "EMAIL:dev@example.org", "EMAIL:ops@example.org"
    )


@pytest.fixture(scope="module")
def recipients_changed(two_hosts, playbook):
    """ops@ leaves: the budget and the alarm topic must stop writing to it."""
    extra = json.dumps({"aws_host_name": SECOND, "aws_host_admin_cidrs": ["203.0.113.7/32"]})
    runs = [
        playbook("provision.yml", "-e", extra, "-e", "aws_host_alert_emails=dev@example.org")
        for _run in range(2)
    ]
    for run in runs:
        assert run.rc == 0, run.output
    return runs


def test_removed_recipients_get_no_more_alerts(recipients_changed, client):
    assert _topic_recipients(client, SECOND) == ["email:dev@example.org"]
    assert _budget_recipients(client, SECOND) == _both_notifications("EMAIL:dev@example.org")


def test_recipient_change_then_no_change(recipients_changed):
    first, second = recipients_changed
    assert first.changed() > 0, first.output
    assert second.changed() == 0, second.output


def _footprint(ec2, client, name: str) -> dict:
    """What provisioning created for one host, by its name."""
    by_name = [{"Name": "tag:Name", "Values": [name]}]
    return {
        "instances": [i["InstanceId"] for i in _live(ec2, name)],
        "group": [
            g["GroupId"]
            for g in ec2.describe_security_groups(
                Filters=[{"Name": "group-name", "Values": [name]}]
            )["SecurityGroups"]
        ],
        "key": [k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"] if k["KeyName"] == name],
        "address": [a["PublicIp"] for a in ec2.describe_addresses(Filters=by_name)["Addresses"]],
        "alarms": sorted(
            a["AlarmName"]
            for a in client("cloudwatch").describe_alarms(AlarmNamePrefix=f"{name}-")[
                "MetricAlarms"
            ]
            if a["AlarmName"] in (f"{name}-auto-recover", f"{name}-cpu-credits-low")
        ),
        "budget": [
            b["BudgetName"]
            for b in client("budgets").describe_budgets(AccountId=ACCOUNT).get("Budgets", [])
            if b["BudgetName"] == name
        ],
        "role": [
            r["RoleName"] for r in client("iam").list_roles()["Roles"] if r["RoleName"] == name
        ],
    }


@pytest.fixture(scope="module")
def second_torn_down(recipients_changed, playbook, ec2, client):
    first_before = _footprint(ec2, client, FIRST)
    (second,) = _live(ec2, SECOND)
    run = playbook(
        "teardown.yml",
        "-e",
        json.dumps(
            {
                "aws_host_name": SECOND,
                "aws_host_teardown_confirm": SECOND,
                "aws_host_teardown_delete_bucket": True,
            }
        ),
    )
    assert run.rc == 0, run.output
    return first_before, second, run


def test_teardown_removes_the_named_host_only(second_torn_down, ec2, client):
    first_before, second, _run = second_torn_down
    assert _footprint(ec2, client, FIRST) == first_before
    assert len(first_before["instances"]) == 1
    assert all(first_before.values()), first_before
    assert not any(_footprint(ec2, client, SECOND).values())
    (state,) = [
        i["State"]["Name"]
        for r in ec2.describe_instances(InstanceIds=[second["InstanceId"]])["Reservations"]
        for i in r["Instances"]
    ]
    assert state == "terminated"


def test_teardown_snapshots_the_named_host_only(second_torn_down, ec2):
    second = second_torn_down[1]
    root = next(
        m["Ebs"]["VolumeId"]
        for m in second["BlockDeviceMappings"]
        if m["DeviceName"] == second["RootDeviceName"]
    )
    snaps = ec2.describe_snapshots(
        OwnerIds=["self"],
        Filters=[
            {"Name": "tag:Purpose", "Values": ["final-snapshot"]},
            {"Name": "tag:Name", "Values": [f"{SECOND}-final"]},
        ],
    )["Snapshots"]
    assert [s["VolumeId"] for s in snaps] == [root]
    for snap in snaps:
        ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])


def test_teardown_refuses_an_ambiguous_name(second_torn_down, playbook, ec2, client):
    """A second instance with the same Name and Project tags: teardown cannot tell which host
    was meant, so it removes nothing."""
    (first,) = _live(ec2, FIRST)
    tags = [{"Key": "Name", "Value": FIRST}, {"Key": "Project", "Value": PROJECT}]
    (twin,) = ec2.run_instances(
        ImageId=first["ImageId"],
        InstanceType="t3.micro",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[{"ResourceType": "instance", "Tags": tags}],
    )["Instances"]
    try:
        before = (_footprint(ec2, client, FIRST), _final_snapshots(ec2, FIRST))
        run = playbook("teardown.yml", "-e", json.dumps({"aws_host_teardown_confirm": FIRST}))
        assert run.rc != 0, run.output
        flat = " ".join(run.output.split())
        assert f"2 instances carry Name={FIRST} and Project={PROJECT}" in flat, run.output
        assert (_footprint(ec2, client, FIRST), _final_snapshots(ec2, FIRST)) == before
        assert len(_live(ec2, FIRST)) == 2
    finally:
        ec2.terminate_instances(InstanceIds=[twin["InstanceId"]])


def _final_snapshots(ec2, name: str) -> list[str]:
    return sorted(
        s["SnapshotId"]
        for s in ec2.describe_snapshots(
            OwnerIds=["self"], Filters=[{"Name": "tag:Name", "Values": [f"{name}-final"]}]
        )["Snapshots"]
    )


def test_then_the_first_host_tears_down_alone(second_torn_down, playbook, ec2, client):
    """Once the name is unambiguous again, the first host goes the same way (and leaves this
    module's moto state clean: buckets and final snapshots removed)."""
    assert len(_live(ec2, FIRST)) == 1
    earlier = _final_snapshots(ec2, FIRST)  # test_3's teardown of the same name left one
    run = playbook(
        "teardown.yml",
        "-e",
        json.dumps({"aws_host_teardown_confirm": FIRST, "aws_host_teardown_delete_bucket": True}),
    )
    assert run.rc == 0, run.output
    assert not any(_footprint(ec2, client, FIRST).values())
    finals = _final_snapshots(ec2, FIRST)
    assert len(set(finals) - set(earlier)) == 1
    for snap in finals:
        ec2.delete_snapshot(SnapshotId=snap)
