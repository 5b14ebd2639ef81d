#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: health_gate
short_description: Wait until the registry's health URL answers healthy, or fail saying why not
version_added: 0.2.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - The one health gate of the collection's roles, run on the controller against the public
    health URL, through the reverse proxy (the path users take).
  - Probes O(url) every O(interval) seconds until it is healthy or O(wait) seconds pass. Healthy
    is HTTP 200 with a JSON body whose C(status) is C(ok) (the PRPM registry's C(GET /health));
    any other answer, a 200 without that status included, is not.
  - Fails when the URL is not healthy in time, with the last status seen. O(wait=0) probes once
    (a preflight).
options:
  url:
    description: The health URL.
    type: str
    required: true
  wait:
    description: Seconds to wait for a healthy answer; V(0) probes once.
    type: float
    default: 300
  interval:
    description: Seconds between two probes.
    type: float
    default: 3
  timeout:
    description: Seconds one probe may take.
    type: float
    default: 10
  validate_certs:
    description: Verify the TLS certificate.
    type: bool
    default: true
attributes:
  check_mode:
    description: Probes in check mode too (it changes nothing).
    support: full
  diff_mode:
    description: No diff.
    support: none
"""

EXAMPLES = r"""
- name: Ensure the registry answers healthy through Caddy
  prpm.hobby.health_gate:
    url: https://registry.example.org/health
    wait: 300
  delegate_to: localhost
"""

RETURN = r"""
healthy:
  description: Whether the last probe was healthy (always true when the module succeeds).
  type: bool
  returned: always
detail:
  description: What the last probe saw (V(ok), C(HTTP 502), C(status degraded), an error).
  type: str
  returned: always
probes:
  description: Number of probes.
  type: int
  returned: always
waited_seconds:
  description: Seconds from the first probe to the last.
  type: float
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prpm.hobby.plugins.module_utils._probe import wait_healthy


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "wait": {"type": "float", "default": 300},
            "interval": {"type": "float", "default": 3},
            "timeout": {"type": "float", "default": 10},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["wait"] < 0 or p["interval"] <= 0 or p["timeout"] <= 0:
        module.fail_json(msg="wait must be >= 0; interval and timeout must be positive")
    result = wait_healthy(
        p["url"],
        wait_seconds=p["wait"],
        interval=p["interval"],
        validate_certs=p["validate_certs"],
        timeout=p["timeout"],
    )
    if not result["healthy"]:
        module.fail_json(
            msg=(
                f"{p['url']} is not healthy after {result['waited_seconds']} s "
                f"({result['probes']} probes): {result['detail']}"
            ),
            **result,
        )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
