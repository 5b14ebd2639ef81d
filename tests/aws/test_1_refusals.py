# SPDX-License-Identifier: GPL-3.0-or-later
"""Bad input stops provisioning with a clear message before any AWS resource exists."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError


def _inventory(client) -> dict:
    """Everything provisioning could create, as counts and names."""
    ec2 = client("ec2")
    live = ["pending", "running", "stopping", "stopped"]
    reservations = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": live}]
    )["Reservations"]
    return {
        "instances": sum(len(r["Instances"]) for r in reservations),
        "groups": sorted(g["GroupName"] for g in ec2.describe_security_groups()["SecurityGroups"]),
        "keys": sorted(k["KeyName"] for k in ec2.describe_key_pairs()["KeyPairs"]),
        "buckets": sorted(b["Name"] for b in client("s3").list_buckets()["Buckets"]),
        "roles": sorted(r["RoleName"] for r in client("iam").list_roles()["Roles"]),
        "addresses": len(ec2.describe_addresses()["Addresses"]),
    }


CASES = {
    "unknown instance type": (
        {"aws_host_instance_type": "t3.mega"},
        "no price for instance type 't3.mega'",
    ),
    "region without prices": (
        {"aws_host_region": "ap-south-2"},
        "no prices for region 'ap-south-2'",
    ),
    "ssh open to the world": (
        {"aws_host_admin_cidrs": ["198.51.100.7/32", "0.0.0.0/0"]},
        "opens SSH to the whole Internet",
    ),
    "ssh open to the world (IPv6)": (
        {"aws_host_admin_cidrs": ["::/0"]},
        "opens SSH to the whole Internet",
    ),
    "ssh open to the world in two halves": (
        {"aws_host_admin_cidrs": ["0.0.0.0/1", "128.0.0.0/1"]},
        "opens SSH to the whole Internet",
    ),
    "not a network": (
        {"aws_host_admin_cidrs": ["198.51.100.777/32"]},
        "198.51.100.777/32",
    ),
    "missing key": (
        {"aws_host_ssh_public_key_file": "/nonexistent/id_ed25519.pub"},
        "No SSH public key at aws_host_ssh_public_key_file=/nonexistent/id_ed25519.pub",
    ),
    "object lock longer than the version expiry": (
        {"aws_host_backup_lock_days": 60, "aws_host_backup_noncurrent_days": 30},
        "aws_host_backup_lock_days=60 must be between 0 (Object Lock off) and",
    ),
    "budget too low": (
        {"aws_host_monthly_budget_usd": 5},
        "exceeds the budget of 5.00 USD/month",
    ),
    "no alert address": (
        {"aws_host_alert_emails": []},
        "aws_host_alert_emails",
    ),
    "alert address that is not one": (
        {"aws_host_alert_emails": ["ops@example.org", "not-an-address"]},
        "aws_host_alert_emails: not an e-mail address: not-an-address",
    ),
    "comma-separated alert addresses, one bad": (
        {"aws_host_alert_emails": "ops@example.org,ops"},
        "aws_host_alert_emails: not an e-mail address: ops",
    ),
    "admin CIDRs as a number": (
        {"aws_host_admin_cidrs": 5},
        "aws_host_admin_cidrs must be a list or a comma-separated string, got int",
    ),
    "extra tags that are not a mapping": (
        {"aws_host_extra_tags": "Owner=me"},
        "aws_host_extra_tags must be a mapping",
    ),
    "budget threshold of 0 percent": (
        {"aws_host_budget_thresholds": [{"type": "ACTUAL", "percent": 0}]},
        "aws_host_budget_thresholds: each percent must be above 0",
    ),
    # 12.97 USD without the snapshots that patch runs and teardown keep.
    "budget below the estimate with its snapshots": (
        {"aws_host_monthly_budget_usd": 13.5},
        "exceeds the budget of 13.50 USD/month",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_fails_before_anything_exists(case, playbook, client):
    overrides, message = CASES[case]
    before = _inventory(client)
    run = playbook("provision.yml", "-e", json.dumps(overrides))
    assert run.rc != 0, run.output
    assert message in run.output.replace("\n    ", " ").replace("\n", " "), run.output
    assert _inventory(client) == before


def test_ssh_from_anywhere_needs_the_override_only(playbook):
    """The override lifts the refusal (checked in check mode: nothing is created)."""
    run = playbook(
        "provision.yml",
        "--check",
        "-e",
        json.dumps(
            {"aws_host_admin_cidrs": ["0.0.0.0/0"], "aws_host_allow_ssh_from_anywhere": True}
        ),
    )
    assert "opens SSH to the whole Internet" not in run.output
    assert "aws_host : Read the account" in run.output, run.output


def test_an_unlocked_backup_bucket_stops_the_run_before_anything_else(playbook, client):
    """A backup bucket from before Object Lock: provisioning says how to lock it and changes
    nothing else (the buckets come first)."""
    s3 = client("s3")
    bucket = "prpm-hobby-backups-123456789012-us-east-1"
    s3.create_bucket(Bucket=bucket)
    try:
        before = _inventory(client)
        run = playbook("provision.yml")
        assert run.rc != 0, run.output
        flat = " ".join(run.output.split())
        assert f"The backup bucket {bucket} exists without S3 Object Lock" in flat, run.output
        assert "put-object-lock-configuration" in flat
        assert _inventory(client) == before
        with pytest.raises(ClientError):
            s3.get_object_lock_configuration(Bucket=bucket)
    finally:
        s3.delete_bucket(Bucket=bucket)
