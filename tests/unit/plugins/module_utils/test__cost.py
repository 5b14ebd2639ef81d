# SPDX-License-Identifier: GPL-3.0-or-later
"""Cost arithmetic against hand-computed values (prices of PRICES_DATE)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils._cost import (
    CostError,
    HobbyConfig,
    estimate_hobby,
    estimate_tiers,
    render_table,
)


@pytest.mark.parametrize(
    ("cfg", "expected_total"),
    [
        # 0.0104*730=7.592 -> 7.59; 20*0.08=1.60; 0.005*730=3.65; 5*0.023=0.115 -> 0.11
        # (0.115 is 0.11499... in binary); packages 1*0.023 -> 0.02;
        # 20 GB out is inside the free 100 GB -> 0; snapshots 1.20 + 0.10 (test_snapshot_lines).
        (HobbyConfig(), 7.59 + 1.60 + 1.20 + 0.10 + 3.65 + 0.11 + 0.02 + 0.0),
        # no public IPv4, 30 GB disk, 150 GB out: 7.59 + 2.40 + 0.11 + 0.02 + (150-100)*0.09=4.50;
        # snapshots of 30 GB: (30 + 2*3) * 0.05 = 1.80 and 3 * 0.05 = 0.15
        (
            HobbyConfig(root_volume_gb=30, public_ipv4=False, transfer_out_gb=150),
            7.59 + 2.40 + 1.80 + 0.15 + 0.11 + 0.02 + 4.50,
        ),
        # eu-central-1 t4g.micro: 0.0096*730=7.008 -> 7.01; 20*0.0952=1.904 -> 1.90; 3.65;
        # 5*0.0245=0.1225 -> 0.12; packages 1*0.0245 -> 0.02; other snapshots 10*0.054=0.54
        # beside the pre-patch (1.30) and final (0.11) ones
        (
            HobbyConfig(region="eu-central-1", instance_type="t4g.micro", snapshot_gb=10),
            7.01 + 1.90 + 1.30 + 0.11 + 0.54 + 3.65 + 0.12 + 0.02,
        ),
        # 50 GB of packages: 50*0.023=1.15 on top of the defaults' other lines
        (HobbyConfig(packages_gb=50), 7.59 + 1.60 + 1.30 + 3.65 + 0.11 + 1.15),
        # no packages at all: the line prices 0
        (HobbyConfig(packages_gb=0), 7.59 + 1.60 + 1.30 + 3.65 + 0.11),
    ],
)
def test_hobby_total(cfg: HobbyConfig, expected_total: float) -> None:
    assert estimate_hobby(cfg).total == pytest.approx(expected_total, abs=0.005)


@pytest.mark.parametrize(
    ("cfg", "item", "usd"),
    [
        # Package files are priced like backups: S3 Standard of the region's table.
        (HobbyConfig(), "S3 packages 1 GB", 0.02),
        (HobbyConfig(packages_gb=50), "S3 packages 50 GB", 1.15),
        (HobbyConfig(packages_gb=2.5), "S3 packages 2.5 GB", 0.06),  # 0.0575 -> 0.06
        (HobbyConfig(region="eu-central-1", packages_gb=100), "S3 packages 100 GB", 2.45),
        (HobbyConfig(packages_gb=0), "S3 packages 0 GB", 0.0),
    ],
)
def test_packages_storage_line(cfg: HobbyConfig, item: str, usd: float) -> None:
    lines = dict(estimate_hobby(cfg).lines)
    assert lines[item] == pytest.approx(usd)
    # Backups keep their own line beside it.
    assert any(name.startswith("S3 backups ") for name in lines)


def test_hobby_lines_name_what_they_price() -> None:
    items = [line[0] for line in estimate_hobby(HobbyConfig()).lines]
    assert items[0] == "EC2 t3.micro (730 h)"
    assert "Public IPv4 address" in items


def test_seed_hobby_figure_is_the_instance_line() -> None:
    # The seed's "$7.50/month" is the t3.micro's 730 hours; the IPv4 charge comes on top.
    lines = dict(estimate_hobby(HobbyConfig()).lines)
    assert lines["EC2 t3.micro (730 h)"] == pytest.approx(7.59)
    assert lines["Public IPv4 address"] == pytest.approx(3.65)


def test_tiers_order_and_ecs_by_hand() -> None:
    tiers = estimate_tiers("us-east-1", 20)
    hobby, beanstalk, ecs = tiers.values()
    assert hobby < beanstalk < ecs
    # ECS by hand: 2 Fargate tasks (0.25*0.04048+0.5*0.004445)*730*2 = 18.02;
    # ALB (0.0225+0.008)*730 = 22.27; NAT 0.045*730 + 20*0.045 = 33.75;
    # RDS 0.016*730 + 20*0.115 = 13.98; ElastiCache 0.016*730 = 11.68; 3 IPv4 = 10.95
    assert ecs == pytest.approx(18.02 + 22.27 + 33.75 + 13.98 + 11.68 + 10.95, abs=0.02)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (HobbyConfig(region="ap-south-9"), "no prices for region 'ap-south-9'"),
        (HobbyConfig(instance_type="x9.mega"), "no price for instance type 'x9.mega'"),
    ],
)
def test_unpriced_configuration(cfg: HobbyConfig, message: str) -> None:
    with pytest.raises(CostError, match=message):
        estimate_hobby(cfg)


def test_table_has_total() -> None:
    table = render_table(estimate_hobby(HobbyConfig()))
    assert table.splitlines()[-2].startswith("Total per month")
    assert "14.27 USD" in table
    assert "EBS pre-patch snapshots (3 kept, 24 GB)" in table
    assert "S3 packages 1 GB" in table


def test_hobby_tier_comparison_includes_packages() -> None:
    tiers = estimate_tiers("us-east-1", 20)
    assert tiers["hobby (t3.micro + compose)"] == estimate_hobby(HobbyConfig()).total == 14.27


# Snapshots: the oldest one of a volume holds its data (at most the volume's size, taken as
# the size: an upper bound), each later one the blocks changed since the one before
# (snapshot_change_percent of the volume, 10 % by default). Pre-patch snapshots: 14 days of
# retention / weekly runs + 1 = 3 kept; teardown's final snapshot is incremental to them.
@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        # 20 + 2*2 = 24 GB * 0.05 = 1.20; the final one adds 2 GB = 0.10
        (
            HobbyConfig(),
            {
                "EBS pre-patch snapshots (3 kept, 24 GB)": 1.20,
                "EBS final snapshot, kept by teardown (2 GB)": 0.10,
            },
        ),
        # no pre-patch snapshots: the final one holds the whole volume, 20 GB = 1.00
        (
            HobbyConfig(patch_snapshots=0),
            {"EBS final snapshot, kept by teardown (20 GB)": 1.00},
        ),
        # 30 GB volume, 1 kept, 20 % change: 30 GB = 1.50; final 6 GB = 0.30
        (
            HobbyConfig(root_volume_gb=30, patch_snapshots=1, snapshot_change_percent=20),
            {
                "EBS pre-patch snapshots (1 kept, 30 GB)": 1.50,
                "EBS final snapshot, kept by teardown (6 GB)": 0.30,
            },
        ),
        # eu-central-1 at 0.054/GB-month: 24 GB = 1.296 -> 1.30; 2 GB = 0.108 -> 0.11
        (
            HobbyConfig(region="eu-central-1"),
            {
                "EBS pre-patch snapshots (3 kept, 24 GB)": 1.30,
                "EBS final snapshot, kept by teardown (2 GB)": 0.11,
            },
        ),
        (HobbyConfig(patch_snapshots=0, final_snapshot=False), {}),
    ],
)
def test_snapshot_lines(cfg: HobbyConfig, expected: dict[str, float]) -> None:
    lines = dict(estimate_hobby(cfg).lines)
    snapshots = {item: usd for item, usd in lines.items() if "snapshot" in item}
    assert snapshots == pytest.approx(expected)


def test_snapshots_count_in_the_total() -> None:
    without = estimate_hobby(HobbyConfig(patch_snapshots=0, final_snapshot=False)).total
    assert without == pytest.approx(12.97)
    assert estimate_hobby(HobbyConfig()).total == pytest.approx(without + 1.20 + 0.10)


@pytest.mark.parametrize(
    ("cfg", "message"),
    [
        (HobbyConfig(patch_snapshots=-1), "patch_snapshots must be 0 or more"),
        (
            HobbyConfig(snapshot_change_percent=120),
            "snapshot_change_percent must be between 0 and 100",
        ),
    ],
)
def test_snapshot_settings_are_checked(cfg: HobbyConfig, message: str) -> None:
    with pytest.raises(CostError, match=message):
        estimate_hobby(cfg)


def test_readme_and_aws_docs_quote_the_estimate() -> None:
    """The figures people read are the ones the collection computes (us-east-1 defaults)."""
    root = Path(__file__).resolve().parents[4]
    tiers = estimate_tiers("us-east-1", 20)
    hobby = tiers["hobby (t3.micro + compose)"]
    ecs = tiers["ecs (Fargate + ALB + NAT + RDS + ElastiCache)"]
    beanstalk = tiers["beanstalk (t3.micro + ALB + RDS)"]
    readme = " ".join((root / "README.md").read_text(encoding="utf-8").split())
    assert f"about ${round(ecs)}/month of ECS Fargate" in readme
    assert f"about ${round(hobby)}/month in all" in readme
    docs = " ".join((root / "docs" / "aws.md").read_text(encoding="utf-8").split())
    assert f"hobby {hobby:.2f} USD" in docs
    assert f"Beanstalk {beanstalk:.2f}, ECS {ecs:.2f}" in docs
