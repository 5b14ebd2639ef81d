# SPDX-License-Identifier: GPL-3.0-or-later
"""Teardown: confirmation required, final snapshot first, buckets kept unless asked, nothing
tagged left, idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from conftest import CONSOLE_KEYS

NAME = "prpm-hobby"
BUCKETS = [f"{NAME}-backups-123456789012-us-east-1", f"{NAME}-packages-123456789012-us-east-1"]
CONFIRM = json.dumps({"aws_host_teardown_confirm": NAME})
CONFIRM_DELETE = json.dumps(
    {"aws_host_teardown_confirm": NAME, "aws_host_teardown_delete_bucket": True}
)


def _tagged(client) -> list[str]:
    """Every resource still tagged Project=prpm-hobby, through the tagging API and EC2."""
    ec2 = client("ec2")
    found = [
        r["ResourceARN"]
        for r in client("resourcegroupstaggingapi").get_resources(
            TagFilters=[{"Key": "Project", "Values": [NAME]}]
        )["ResourceTagMappingList"]
        # Terminated instances stay listed for a while, as on AWS: live ones are counted below.
        if ":instance/" not in r["ResourceARN"]
    ]
    live = ["pending", "running", "stopping", "stopped"]
    for res in ec2.describe_instances(
        Filters=[
            {"Name": "tag:Project", "Values": [NAME]},
            {"Name": "instance-state-name", "Values": live},
        ]
    )["Reservations"]:
        found += [i["InstanceId"] for i in res["Instances"]]
    by_tag = [{"Name": "tag:Project", "Values": [NAME]}]
    found += [g["GroupId"] for g in ec2.describe_security_groups(Filters=by_tag)["SecurityGroups"]]
    found += [k["KeyName"] for k in ec2.describe_key_pairs(Filters=by_tag)["KeyPairs"]]
    found += [a["PublicIp"] for a in ec2.describe_addresses(Filters=by_tag)["Addresses"]]
    found += [
        s["SnapshotId"]
        for s in ec2.describe_snapshots(OwnerIds=["self"], Filters=by_tag)["Snapshots"]
    ]
    return sorted(set(found))


@pytest.fixture(scope="module")
def provisioned(playbook):
    run = playbook("provision.yml")
    assert run.rc == 0, run.output
    return run


def test_teardown_refuses_without_confirmation(provisioned, playbook, client):
    before = _tagged(client)
    run = playbook("teardown.yml")
    assert run.rc != 0
    assert f"-e aws_host_teardown_confirm={NAME}" in run.output
    assert _tagged(client) == before


def _buckets(client) -> list[str]:
    return sorted(b["Name"] for b in client("s3").list_buckets()["Buckets"] if b["Name"] in BUCKETS)


@pytest.fixture(scope="module")
def kept(provisioned, playbook, client):
    """The default teardown: everything but the final snapshot and the two buckets goes."""
    ec2 = client("ec2")
    (instance,) = [
        i
        for r in ec2.describe_instances(Filters=[{"Name": "tag:Project", "Values": [NAME]}])[
            "Reservations"
        ]
        for i in r["Instances"]
        if i["State"]["Name"] == "running"
    ]
    assert _buckets(client) == BUCKETS
    run = playbook("teardown.yml", "-e", CONFIRM)
    assert run.rc == 0, run.output
    return instance, run


def test_default_teardown_keeps_the_backup_and_packages_buckets(kept, client):
    assert _buckets(client) == BUCKETS
    assert "backup and packages buckets: kept" in kept[1].output


def test_teardown_unpins_the_host_keys_of_the_host(kept, settings):
    """Provisioning pinned the host's keys; after teardown its address may go to someone else."""
    path = Path(json.loads(settings.read_text())["aws_host_known_hosts_file"])
    assert kept[0]["InstanceId"] in CONSOLE_KEYS  # provisioning read them from the console
    assert kept[0]["InstanceId"] not in path.read_text()


@pytest.fixture(scope="module")
def torn_down(kept, playbook):
    """Then the delete switch removes both buckets; once more changes nothing."""
    first = playbook("teardown.yml", "-e", CONFIRM_DELETE)
    assert first.rc == 0, first.output
    second = playbook("teardown.yml", "-e", CONFIRM_DELETE)
    assert second.rc == 0, second.output
    return kept[0], first, second


def test_final_snapshot_of_the_root_volume_first(torn_down, client):
    instance = torn_down[0]
    root = next(
        m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == instance["RootDeviceName"]
    )
    snaps = client("ec2").describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:Purpose", "Values": ["final-snapshot"]}]
    )["Snapshots"]
    assert [s["VolumeId"] for s in snaps] == [root["Ebs"]["VolumeId"]]
    tags = {t["Key"]: t["Value"] for t in snaps[0]["Tags"]}
    assert tags["Instance"] == instance["InstanceId"] and tags["Project"] == NAME


def test_nothing_tagged_is_left_but_the_final_snapshot(torn_down, client):
    left = _tagged(client)
    snaps = [x for x in left if x.startswith("snap-") or ":snapshot/" in x]
    assert len({s.rsplit("/", 1)[-1] for s in snaps}) == 1
    assert [x for x in left if x not in snaps] == []


def test_untagged_resources_are_gone_too(torn_down, client):
    iam = client("iam")
    with pytest.raises(ClientError):
        iam.get_role(RoleName=NAME)
    with pytest.raises(ClientError):
        iam.get_instance_profile(InstanceProfileName=NAME)
    assert client("cloudwatch").describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"] == []
    topics = [t["TopicArn"] for t in client("sns").list_topics()["Topics"]]
    assert not [t for t in topics if t.endswith(f":{NAME}-alarms")]
    budgets = client("budgets").describe_budgets(AccountId="123456789012").get("Budgets", [])
    assert [b["BudgetName"] for b in budgets] == []
    assert _buckets(client) == []


def test_second_teardown_changes_nothing(kept, torn_down):
    first, second = torn_down[1:]
    assert kept[1].changed() > 0
    assert first.changed() > 0  # the two buckets
    assert "backup and packages buckets: deleted" in first.output
    assert second.changed() == 0, second.output
