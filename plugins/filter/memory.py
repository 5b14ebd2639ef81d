# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Filters for memory sizes: prpm.hobby.to_mib."""

from __future__ import annotations

DOCUMENTATION = r"""
name: to_mib
author: prpm.hobby maintainers
version_added: 0.1.0
short_description: Convert a memory size to MiB
description:
  - Converts a memory size as Docker and Compose write it (C(512m), C(1g), C(256MiB)) or a
    byte count to a number of MiB, so that memory budgets can be added and compared.
  - Units are binary, as in Docker (C(1g) is 1024 MiB, so is C(1GB)).
options:
  _input:
    description: The memory size.
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Add up the stack's memory limits
  ansible.builtin.debug:
    msg: "{{ ['256m', '1g', '64MiB'] | map('prpm.hobby.to_mib') | sum }}"  # 1344.0
"""

RETURN = r"""
_value:
  description: The size in MiB.
  type: float
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.module_utils._memory import InvalidSize, to_mib


def _to_mib(value: object) -> float:
    try:
        return to_mib(value)
    except InvalidSize as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """Memory size filters."""

    def filters(self) -> dict:
        return {"to_mib": _to_mib}
