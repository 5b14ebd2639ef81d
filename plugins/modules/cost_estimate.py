#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: cost_estimate
short_description: Estimate the monthly AWS cost of the hobby tier, and guard a budget
version_added: 0.1.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - Turns the chosen configuration into a monthly cost table from a bundled, dated price table
    (on-demand list prices for us-east-1, us-west-2, eu-west-1 and eu-central-1)
    covering instance hours (730 h), EBS gp3, the root volume's snapshots that patch runs and
    teardown keep (each on its own line), the public IPv4 charge, S3 backup storage, S3 package
    storage (the registry's package files) and data transfer out.
  - Also prices the tiers the hobby tier replaces (Elastic Beanstalk with ALB and RDS; ECS
    Fargate with ALB, NAT, RDS and ElastiCache) with the same table, for comparison.
  - Fails when the estimate exceeds O(budget_usd), unless O(allow_over_budget) is set.
  - Runs on the controller and calls no AWS API.
options:
  region:
    description: AWS region.
    type: str
    default: us-east-1
  instance_type:
    description: EC2 instance type.
    type: str
    default: t3.micro
  root_volume_gb:
    description: Size of the gp3 root volume in GB.
    type: int
    default: 20
  public_ipv4:
    description: Whether the instance has a public IPv4 address (billed at 0.005 USD/h).
    type: bool
    default: true
  patch_snapshots:
    description:
      - Pre-patch snapshots of the root volume kept at once. C(playbooks/patch.yml) takes one per
        run and deletes those older than C(patching_ebs_snapshot_retention_days), so this is the
        retention / days between runs + 1 (3 for 14 days and weekly runs). V(0) when patch runs
        take none.
      - Priced as incremental snapshots, see O(snapshot_change_percent).
    type: int
    default: 3
  final_snapshot:
    description:
      - Count the final snapshot of the root volume that teardown keeps
        (C(aws_host_teardown_final_snapshot)). It outlives the host, and it overlaps with the next
        host's month when a host is rebuilt, so the budget covers it.
    type: bool
    default: true
  snapshot_change_percent:
    description:
      - Blocks changed between two snapshots of the root volume, in percent of its size. EBS
        snapshots are incremental, so the oldest kept snapshot is priced at the whole volume
        (an upper bound, as only written blocks are stored) and each later one at this share of it.
    type: float
    default: 10
  snapshot_gb:
    description: Other EBS snapshot storage in GB (on its own line), beyond the ones above.
    type: float
    default: 0
  backup_gb:
    description: Expected S3 backup storage in GB.
    type: float
    default: 5
  packages_gb:
    description: Expected S3 storage of the registry's package files in GB (S3 Standard).
    type: float
    default: 1
  transfer_out_gb:
    description: Expected data transfer out to the Internet in GB per month (100 GB are free).
    type: float
    default: 20
  budget_usd:
    description: Monthly budget in USD; V(0) means no guard.
    type: float
    default: 0
  allow_over_budget:
    description: Do not fail when the estimate exceeds O(budget_usd).
    type: bool
    default: false
attributes:
  check_mode:
    description: Can run in check_mode and return the same estimate.
    support: full
  diff_mode:
    description: Nothing to diff; it changes nothing.
    support: none
  idempotent:
    description: Reads only its arguments and the bundled price table.
    support: full
"""

EXAMPLES = r"""
- name: Estimate the hobby tier and refuse to go over 15 USD a month
  prpm.hobby.cost_estimate:
    region: eu-west-1
    instance_type: t3.micro
    budget_usd: 15
  register: cost
"""

RETURN = r"""
lines:
  description: Cost lines of the hobby tier.
  returned: always
  type: list
  elements: dict
  sample: [{"item": "EC2 t3.micro (730 h)", "usd": 7.59},
           {"item": "EBS pre-patch snapshots (3 kept, 24 GB)", "usd": 1.2}]
total:
  description: Monthly total in USD.
  returned: always
  type: float
  sample: 14.27
table:
  description: The same lines as printable text.
  returned: always
  type: str
tiers:
  description: The seed analysis' tiers priced with the same table.
  returned: always
  type: dict
  sample: {"hobby (t3.micro + compose)": 14.27}
prices_date:
  description: Date of the bundled price table.
  returned: always
  type: str
  sample: "2025-06-01"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prpm.hobby.plugins.module_utils._cost import (
    CostError,
    HobbyConfig,
    estimate_hobby,
    estimate_tiers,
    render_table,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "region": {"type": "str", "default": "us-east-1"},
            "instance_type": {"type": "str", "default": "t3.micro"},
            "root_volume_gb": {"type": "int", "default": 20},
            "public_ipv4": {"type": "bool", "default": True},
            "patch_snapshots": {"type": "int", "default": 3},
            "final_snapshot": {"type": "bool", "default": True},
            "snapshot_change_percent": {"type": "float", "default": 10},
            "snapshot_gb": {"type": "float", "default": 0},
            "backup_gb": {"type": "float", "default": 5},
            "packages_gb": {"type": "float", "default": 1},
            "transfer_out_gb": {"type": "float", "default": 20},
            "budget_usd": {"type": "float", "default": 0},
            "allow_over_budget": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    p = module.params
    cfg = HobbyConfig(
        region=p["region"],
        instance_type=p["instance_type"],
        root_volume_gb=p["root_volume_gb"],
        public_ipv4=p["public_ipv4"],
        snapshot_gb=p["snapshot_gb"],
        patch_snapshots=p["patch_snapshots"],
        final_snapshot=p["final_snapshot"],
        snapshot_change_percent=p["snapshot_change_percent"],
        backup_gb=p["backup_gb"],
        packages_gb=p["packages_gb"],
        transfer_out_gb=p["transfer_out_gb"],
    )
    try:
        estimate = estimate_hobby(cfg)
        tiers = estimate_tiers(p["region"], p["transfer_out_gb"])
    except CostError as exc:
        module.fail_json(msg=str(exc))
    result = dict(estimate.as_dict(), table=render_table(estimate), tiers=tiers, changed=False)
    budget = p["budget_usd"]
    if budget and estimate.total > budget and not p["allow_over_budget"]:
        module.fail_json(
            msg=(
                f"The estimate of {estimate.total:.2f} USD/month exceeds the budget of "
                f"{budget:.2f} USD/month. Choose a smaller configuration, raise the budget, "
                "or set allow_over_budget."
            ),
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
