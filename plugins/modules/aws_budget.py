#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: aws_budget
short_description: Manage a monthly AWS cost budget with e-mail alerts
version_added: 0.1.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - Creates, updates or deletes a monthly COST budget in AWS Budgets, with a notification per
    threshold (percent of the limit, on actual or forecasted spend) sent to the given e-mail
    addresses. No amazon.aws or community.aws module manages budgets.
  - Idempotent, by budget name. A changed limit is applied with UpdateBudget; notifications
    are added and removed to match O(thresholds), and the e-mail recipients of each notification
    to match O(emails) (a new address is subscribed before a removed one is unsubscribed, since
    a notification keeps at least one). Subscribers of other kinds (an SNS topic added by hand)
    are left alone.
  - Bad input fails before any AWS call, with every problem named - an address that does not
    look like one (AWS accepts any string), no address while thresholds are set, more than 10
    addresses, a percent not above 0.
options:
  name:
    description: Budget name.
    type: str
    required: true
  state:
    description: Whether the budget exists.
    type: str
    choices: [present, absent]
    default: present
  limit_usd:
    description: Monthly limit in USD. Required with O(state=present).
    type: float
  emails:
    description:
      - E-mail addresses that receive the alerts, at most 10; exactly these receive them.
      - Required (one or more) with O(state=present) unless O(thresholds) is empty.
    type: list
    elements: str
    default: []
  thresholds:
    description: Alerts as percent of the limit, on actual or forecasted spend.
    type: list
    elements: dict
    default: [{type: ACTUAL, percent: 80}, {type: FORECASTED, percent: 100}]
    suboptions:
      type:
        description: Spend the threshold applies to.
        type: str
        choices: [ACTUAL, FORECASTED]
        required: true
      percent:
        description: Percent of the limit.
        type: float
        required: true
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    description: Reports what would change without changing it.
    support: full
  diff_mode:
    description: No diff is returned.
    support: none
  idempotent:
    description: A second run with the same arguments reports no change.
    support: full
"""

EXAMPLES = r"""
- name: Alert at 80 % of a 15 USD monthly budget, and when the forecast passes it
  prpm.hobby.aws_budget:
    name: prpm-hobby
    limit_usd: 15
    emails: [ops@example.com]
"""

RETURN = r"""
actions:
  description: What was done (or would be done in check mode).
  returned: always
  type: list
  elements: str
  sample: ["create budget", "add recipient ops@example.org to ('ACTUAL', 80.0)"]
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

from ansible_collections.prpm.hobby.plugins.module_utils._budget import (
    BudgetSpec,
    ensure_absent,
    ensure_present,
    spec_errors,
)


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "limit_usd": {"type": "float"},
            "emails": {"type": "list", "elements": "str", "default": []},
            "thresholds": {
                "type": "list",
                "elements": "dict",
                "default": [
                    {"type": "ACTUAL", "percent": 80},
                    {"type": "FORECASTED", "percent": 100},
                ],
                "options": {
                    "type": {"type": "str", "choices": ["ACTUAL", "FORECASTED"], "required": True},
                    "percent": {"type": "float", "required": True},
                },
            },
        },
        required_if=[("state", "present", ["limit_usd"])],
        supports_check_mode=True,
    )
    p = module.params
    spec = None
    if p["state"] == "present":
        if p["limit_usd"] <= 0:
            module.fail_json(msg="limit_usd must be greater than 0")
        spec = BudgetSpec(
            p["name"],
            p["limit_usd"],
            p["emails"],
            [(t["type"], t["percent"]) for t in p["thresholds"]],
        )
        errors = spec_errors(spec)
        if errors:
            module.fail_json(msg=f"Budget {p['name']}: " + "; ".join(errors))
    try:
        account = module.client("sts").get_caller_identity()["Account"]
        client = module.client("budgets")
        if spec is None:
            changed, actions = ensure_absent(client, account, p["name"], module.check_mode)
        else:
            changed, actions = ensure_present(client, account, spec, module.check_mode)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        module.fail_json_aws(exc, msg=f"Could not manage budget {p['name']}")
    module.exit_json(changed=changed, actions=actions)


if __name__ == "__main__":
    main()
