#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: http_probe
short_description: Measure how long a URL is unavailable while something else runs
version_added: 0.1.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - Probes O(url) every O(interval) seconds until O(stop_file) exists (or O(max_seconds) pass),
    and reports every outage window and the total unavailability in seconds.
  - A probe succeeds on HTTP 200 whose JSON body, when it has a C(status), says C(ok).
  - Meant to run in the background (C(async), with C(poll) set to 0), on the controller, while a
    patch run or a deploy goes on; create O(stop_file), then collect the result with
    M(ansible.builtin.async_status).
options:
  url:
    description: URL to probe (the public path, through the reverse proxy).
    type: str
    required: true
  stop_file:
    description: The probe stops once this file exists.
    type: path
    required: true
  interval:
    description: Seconds between two probes.
    type: float
    default: 0.5
  timeout:
    description: Seconds one probe may take.
    type: float
    default: 5
  max_seconds:
    description: Stop after this many seconds even without O(stop_file).
    type: float
    default: 7200
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
- name: Probe the registry while the host is patched
  prpm.hobby.http_probe:
    url: https://registry.example.org/health
    stop_file: /tmp/prpm-probe.stop
  delegate_to: localhost
  async: 7200
  poll: 0
  register: probe_job

# ... the work that may interrupt the service ...

- name: Stop the probe
  ansible.builtin.file:
    path: /tmp/prpm-probe.stop
    state: touch
    mode: "0600"
  delegate_to: localhost

- name: Collect the measurement
  ansible.builtin.async_status:
    jid: "{{ probe_job.ansible_job_id }}"
  delegate_to: localhost
  register: probe
  until: probe.finished
  retries: 30
  delay: 1
"""

RETURN = r"""
probes:
  description: Number of probes.
  type: int
  returned: always
failures:
  description: Number of failed probes.
  type: int
  returned: always
unavailable_seconds:
  description: Sum of the outage windows, from a first failed probe to the next successful one.
  type: float
  returned: always
longest_outage_seconds:
  description: Longest outage window.
  type: float
  returned: always
outages:
  description: Each outage window (epoch seconds), with the last error seen in it.
  type: list
  elements: dict
  returned: always
available_at_end:
  description: Whether the last probe succeeded.
  type: bool
  returned: always
duration_seconds:
  description: Time between the first and the last probe.
  type: float
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prpm.hobby.plugins.module_utils._probe import probe_until


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "stop_file": {"type": "path", "required": True},
            "interval": {"type": "float", "default": 0.5},
            "timeout": {"type": "float", "default": 5},
            "max_seconds": {"type": "float", "default": 7200},
            "validate_certs": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if p["interval"] <= 0 or p["timeout"] <= 0 or p["max_seconds"] <= 0:
        module.fail_json(msg="interval, timeout and max_seconds must be positive")
    result = probe_until(
        p["url"],
        p["stop_file"],
        interval=p["interval"],
        max_seconds=p["max_seconds"],
        validate_certs=p["validate_certs"],
        timeout=p["timeout"],
    )
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
