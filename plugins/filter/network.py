# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""CIDR filters: prpm.hobby.cidr_overlaps, cidr_version, cidr_is_anywhere, cidr_is_valid and
cidrs_cover_anywhere.

One file provides several filters, so each is documented in its own file beside this one
(cidr_overlaps.yml, ...): ansible-doc reads a DOCUMENTATION in this file for all of them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.module_utils._net import (
    InvalidCidr,
    cidr_overlaps,
    cidr_version,
    is_anywhere,
    is_cidr,
    parse_cidr,
)


def cidrs_cover_anywhere(cidrs: object) -> bool:
    """True when the networks, taken together, cover a whole address family.

    ``0.0.0.0/0`` alone does, and so do ``0.0.0.0/1`` + ``128.0.0.0/1`` or any other set whose
    union is every IPv4 (or every IPv6) address: each IP version is collapsed on its own
    (networks of different versions never add up) and checked for a prefix length of 0.
    """
    if isinstance(cidrs, (str, bytes, Mapping)) or not isinstance(cidrs, Iterable):
        raise InvalidCidr(
            f"cidrs_cover_anywhere expects a list of CIDRs, got {type(cidrs).__name__}"
        )
    by_version: dict[int, list] = {4: [], 6: []}
    for value in cidrs:
        network = parse_cidr(value)
        by_version[network.version].append(network)
    return any(
        collapsed.prefixlen == 0
        for networks in by_version.values()
        for collapsed in ipaddress.collapse_addresses(networks)
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
            "cidrs_cover_anywhere": _wrap(cidrs_cover_anywhere),
        }
