# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""CIDR filters: prpm.hobby.cidr_overlaps, cidr_version, cidr_is_anywhere and cidr_is_valid.

One file provides four filters, so each is documented in its own file beside this one
(cidr_overlaps.yml, ...): ansible-doc reads a DOCUMENTATION in this file for all four.
"""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.module_utils._net import (
    InvalidCidr,
    cidr_overlaps,
    cidr_version,
    is_anywhere,
    is_cidr,
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
            "cidr_is_valid": is_cidr,
        }
