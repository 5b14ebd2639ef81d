# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""CIDR filters: prpm.hobby.cidr_overlaps, prpm.hobby.cidr_version, prpm.hobby.cidr_is_anywhere."""

from __future__ import annotations

DOCUMENTATION = r"""
name: cidr_overlaps
author: prpm.hobby maintainers
version_added: 0.1.0
short_description: Whether two networks overlap
description:
  - True when the two CIDRs share at least one address. Networks of different IP versions
    never overlap. Host bits are tolerated. Fails on a value that is not a CIDR.
  - The same file provides C(prpm.hobby.cidr_version) (4 or 6) and
    C(prpm.hobby.cidr_is_anywhere) (true for C(0.0.0.0/0) and C(::/0)).
  - Standard library only (no netaddr).
options:
  _input:
    description: A CIDR.
    type: str
    required: true
  other:
    description: Another CIDR.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Refuse Docker address pools inside the AWS default VPC
  ansible.builtin.assert:
    that: not ('172.31.0.0/16' | prpm.hobby.cidr_overlaps('172.31.5.0/24'))
"""

RETURN = r"""
_value:
  description: Whether the networks overlap.
  type: bool
"""

from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.module_utils._net import (
    InvalidCidr,
    cidr_overlaps,
    cidr_version,
    is_anywhere,
)


def _wrap(func):
    def filter_(*args):
        try:
            return func(*args)
        except InvalidCidr as exc:
            raise AnsibleFilterError(str(exc)) from exc

    filter_.__name__ = func.__name__
    return filter_


class FilterModule:
    """CIDR filters."""

    def filters(self) -> dict:
        return {
            "cidr_overlaps": _wrap(cidr_overlaps),
            "cidr_version": _wrap(cidr_version),
            "cidr_is_anywhere": _wrap(is_anywhere),
        }
