# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""CIDR checks for firewall and Docker address-pool preflights (standard library only)."""

from __future__ import annotations

import ipaddress

__all__ = ["InvalidCidr", "cidr_overlaps", "cidr_version", "is_anywhere", "is_cidr", "parse_cidr"]


class InvalidCidr(ValueError):
    """Raised for a value that is not an IPv4/IPv6 network."""


def parse_cidr(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse ``value`` as a network; host bits are tolerated (``10.0.0.1/8`` -> ``10.0.0.0/8``)."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidCidr(f"not a CIDR: {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError as exc:
        raise InvalidCidr(f"not a CIDR: {value!r} ({exc})") from exc


def is_cidr(value: object) -> bool:
    """True when ``value`` parses as a network (host bits tolerated); never raises."""
    try:
        parse_cidr(value)
    except InvalidCidr:
        return False
    return True


def cidr_version(value: object) -> int:
    """Return 4 or 6."""
    return parse_cidr(value).version


def is_anywhere(value: object) -> bool:
    """True for a network that covers a whole address family (prefix length 0)."""
    return parse_cidr(value).prefixlen == 0


def cidr_overlaps(a: object, b: object) -> bool:
    """True when the two networks share an address; networks of different families never do."""
    net_a, net_b = parse_cidr(a), parse_cidr(b)
    if net_a.version != net_b.version:
        return False
    return net_a.overlaps(net_b)
