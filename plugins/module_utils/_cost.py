# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Monthly AWS cost of the hobby tier (and of the tiers it replaces), from a dated price table.

Prices are on-demand USD list prices (Linux, shared tenancy) as published by AWS on PRICES_DATE.
Refresh them from the AWS Pricing API when they change; the arithmetic does not depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "HOURS_PER_MONTH",
    "PRICES",
    "PRICES_DATE",
    "CostError",
    "HobbyConfig",
    "estimate_hobby",
    "estimate_tiers",
    "render_table",
]

PRICES_DATE = "2025-06-01"
HOURS_PER_MONTH = 730
PUBLIC_IPV4_PER_HOUR = 0.005
FREE_TRANSFER_GB = 100  # AWS free tier: 100 GB/month out to the Internet, all services
TRANSFER_OUT_PER_GB = 0.09

PRICES: dict[str, dict] = {
    "us-east-1": {
        "ec2": {
            "t3.nano": 0.0052,
            "t3.micro": 0.0104,
            "t3.small": 0.0208,
            "t3.medium": 0.0416,
            "t4g.nano": 0.0042,
            "t4g.micro": 0.0084,
            "t4g.small": 0.0168,
            "t4g.medium": 0.0336,
        },
        "gp3_gb_month": 0.08,
        "snapshot_gb_month": 0.05,
        "s3_gb_month": 0.023,
        "alb_hour": 0.0225,
        "alb_lcu_hour": 0.008,
        "nat_hour": 0.045,
        "nat_gb": 0.045,
        "fargate_vcpu_hour": 0.04048,
        "fargate_gb_hour": 0.004445,
        "rds_t4g_micro_hour": 0.016,
        "rds_gp2_gb_month": 0.115,
        "elasticache_t4g_micro_hour": 0.016,
    },
    "us-west-2": {
        "ec2": {
            "t3.nano": 0.0052,
            "t3.micro": 0.0104,
            "t3.small": 0.0208,
            "t3.medium": 0.0416,
            "t4g.nano": 0.0042,
            "t4g.micro": 0.0084,
            "t4g.small": 0.0168,
            "t4g.medium": 0.0336,
        },
        "gp3_gb_month": 0.08,
        "snapshot_gb_month": 0.05,
        "s3_gb_month": 0.023,
        "alb_hour": 0.0225,
        "alb_lcu_hour": 0.008,
        "nat_hour": 0.045,
        "nat_gb": 0.045,
        "fargate_vcpu_hour": 0.04048,
        "fargate_gb_hour": 0.004445,
        "rds_t4g_micro_hour": 0.016,
        "rds_gp2_gb_month": 0.115,
        "elasticache_t4g_micro_hour": 0.016,
    },
    "eu-west-1": {
        "ec2": {
            "t3.nano": 0.0057,
            "t3.micro": 0.0114,
            "t3.small": 0.0228,
            "t3.medium": 0.0456,
            "t4g.nano": 0.0046,
            "t4g.micro": 0.0092,
            "t4g.small": 0.0184,
            "t4g.medium": 0.0368,
        },
        "gp3_gb_month": 0.088,
        "snapshot_gb_month": 0.05,
        "s3_gb_month": 0.023,
        "alb_hour": 0.0252,
        "alb_lcu_hour": 0.008,
        "nat_hour": 0.048,
        "nat_gb": 0.048,
        "fargate_vcpu_hour": 0.04048,
        "fargate_gb_hour": 0.004445,
        "rds_t4g_micro_hour": 0.018,
        "rds_gp2_gb_month": 0.127,
        "elasticache_t4g_micro_hour": 0.018,
    },
    "eu-central-1": {
        "ec2": {
            "t3.nano": 0.006,
            "t3.micro": 0.012,
            "t3.small": 0.024,
            "t3.medium": 0.048,
            "t4g.nano": 0.0048,
            "t4g.micro": 0.0096,
            "t4g.small": 0.0192,
            "t4g.medium": 0.0384,
        },
        "gp3_gb_month": 0.0952,
        "snapshot_gb_month": 0.054,
        "s3_gb_month": 0.0245,
        "alb_hour": 0.027,
        "alb_lcu_hour": 0.008,
        "nat_hour": 0.052,
        "nat_gb": 0.052,
        "fargate_vcpu_hour": 0.04656,
        "fargate_gb_hour": 0.00511,
        "rds_t4g_micro_hour": 0.019,
        "rds_gp2_gb_month": 0.133,
        "elasticache_t4g_micro_hour": 0.019,
    },
}


class CostError(ValueError):
    """A configuration the price table cannot price (unknown region or instance type)."""


@dataclass(frozen=True)
class HobbyConfig:
    region: str = "us-east-1"
    instance_type: str = "t3.micro"
    root_volume_gb: int = 20
    public_ipv4: bool = True
    snapshot_gb: float = 0.0
    backup_gb: float = 5.0
    packages_gb: float = 1.0
    transfer_out_gb: float = 20.0
    # Pre-patch snapshots kept at once: retention 14 days / weekly patch runs + 1.
    patch_snapshots: int = 3
    # Teardown's final snapshot of the root volume, kept until deleted by hand.
    final_snapshot: bool = True
    # Blocks changed between two snapshots of the volume, in percent of its size.
    snapshot_change_percent: float = 10.0


@dataclass
class Estimate:
    lines: list[tuple[str, float]] = field(default_factory=list)

    def add(self, item: str, usd: float) -> None:
        self.lines.append((item, round(usd, 2)))

    @property
    def total(self) -> float:
        return round(sum(line[1] for line in self.lines), 2)

    def as_dict(self) -> dict:
        return {
            "lines": [{"item": i, "usd": u} for i, u in self.lines],
            "total": self.total,
            "prices_date": PRICES_DATE,
        }


def _prices(region: str) -> dict:
    if region not in PRICES:
        raise CostError(f"no prices for region {region!r}; known: {', '.join(sorted(PRICES))}")
    return PRICES[region]


def _transfer(gb: float) -> float:
    return max(0.0, gb - FREE_TRANSFER_GB) * TRANSFER_OUT_PER_GB


def _snapshot_lines(cfg: HobbyConfig) -> list[tuple[str, float]]:
    """(item, GB) of the root volume's snapshots that patch runs and teardown keep.

    EBS snapshots of one volume are incremental: the oldest holds the volume's data (taken as
    the whole volume, an upper bound: only written blocks are stored), each later one the
    blocks changed since the one before (snapshot_change_percent of the volume).
    """
    if cfg.patch_snapshots < 0:
        raise CostError(f"patch_snapshots must be 0 or more, got {cfg.patch_snapshots}")
    if not 0 <= cfg.snapshot_change_percent <= 100:
        raise CostError(
            "snapshot_change_percent must be between 0 and 100, "
            f"got {cfg.snapshot_change_percent:g}"
        )
    full = float(cfg.root_volume_gb)
    change = full * cfg.snapshot_change_percent / 100
    lines = []
    if cfg.patch_snapshots:
        gb = full + (cfg.patch_snapshots - 1) * change
        lines.append((f"EBS pre-patch snapshots ({cfg.patch_snapshots} kept, {gb:g} GB)", gb))
    if cfg.final_snapshot:
        gb = change if cfg.patch_snapshots else full
        lines.append((f"EBS final snapshot, kept by teardown ({gb:g} GB)", gb))
    return lines


def estimate_hobby(cfg: HobbyConfig) -> Estimate:
    """Monthly cost of one EC2 instance running the whole stack."""
    prices = _prices(cfg.region)
    if cfg.instance_type not in prices["ec2"]:
        raise CostError(
            f"no price for instance type {cfg.instance_type!r} in {cfg.region}; "
            f"known: {', '.join(sorted(prices['ec2']))}"
        )
    est = Estimate()
    est.add(
        f"EC2 {cfg.instance_type} ({HOURS_PER_MONTH} h)",
        prices["ec2"][cfg.instance_type] * HOURS_PER_MONTH,
    )
    est.add(f"EBS gp3 {cfg.root_volume_gb} GB", cfg.root_volume_gb * prices["gp3_gb_month"])
    for item, gb in _snapshot_lines(cfg):
        est.add(item, gb * prices["snapshot_gb_month"])
    if cfg.snapshot_gb:
        est.add(
            f"EBS snapshots {cfg.snapshot_gb:g} GB", cfg.snapshot_gb * prices["snapshot_gb_month"]
        )
    if cfg.public_ipv4:
        est.add("Public IPv4 address", PUBLIC_IPV4_PER_HOUR * HOURS_PER_MONTH)
    est.add(f"S3 backups {cfg.backup_gb:g} GB", cfg.backup_gb * prices["s3_gb_month"])
    est.add(f"S3 packages {cfg.packages_gb:g} GB", cfg.packages_gb * prices["s3_gb_month"])
    est.add(f"Data transfer out {cfg.transfer_out_gb:g} GB", _transfer(cfg.transfer_out_gb))
    return est


def estimate_tiers(region: str = "us-east-1", transfer_out_gb: float = 20.0) -> dict[str, float]:
    """The seed analysis' tiers priced with the same table, for comparison."""
    p = _prices(region)
    h = HOURS_PER_MONTH
    alb = (p["alb_hour"] + p["alb_lcu_hour"]) * h
    rds = p["rds_t4g_micro_hour"] * h + 20 * p["rds_gp2_gb_month"]
    cache = p["elasticache_t4g_micro_hour"] * h
    ipv4 = PUBLIC_IPV4_PER_HOUR * h
    fargate_task = (0.25 * p["fargate_vcpu_hour"] + 0.5 * p["fargate_gb_hour"]) * h
    hobby = estimate_hobby(HobbyConfig(region=region, transfer_out_gb=transfer_out_gb)).total
    beanstalk = (
        p["ec2"]["t3.micro"] * h
        + 8 * p["gp3_gb_month"]
        + alb
        + rds
        + 2 * ipv4
        + _transfer(transfer_out_gb)
    )
    ecs = (
        2 * fargate_task
        + alb
        + p["nat_hour"] * h
        + transfer_out_gb * p["nat_gb"]
        + rds
        + cache
        + 3 * ipv4
        + _transfer(transfer_out_gb)
    )
    return {
        "hobby (t3.micro + compose)": round(hobby, 2),
        "beanstalk (t3.micro + ALB + RDS)": round(beanstalk, 2),
        "ecs (Fargate + ALB + NAT + RDS + ElastiCache)": round(ecs, 2),
    }


def render_table(est: Estimate) -> str:
    """The estimate as aligned text, for playbook output."""
    width = max(len(line[0]) for line in [*est.lines, ("Total per month", 0.0)])
    rows = [f"{item:<{width}}  {usd:>8.2f} USD" for item, usd in est.lines]
    rows.append(f"{'Total per month':<{width}}  {est.total:>8.2f} USD")
    rows.append(f"(list prices of {PRICES_DATE})")
    return "\n".join(rows)
