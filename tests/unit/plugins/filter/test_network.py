# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.prpm.hobby.plugins.filter.network import FilterModule

FILTERS = FilterModule().filters()


@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("cidr_overlaps", ("172.31.0.0/16", "172.31.9.0/24"), True),
        ("cidr_overlaps", ("10.200.0.0/16", "172.31.0.0/16"), False),
        ("cidr_version", ("::/0",), 6),
        ("cidr_is_anywhere", ("0.0.0.0/0",), True),
        ("cidr_is_anywhere", ("198.51.100.0/24",), False),
        ("cidr_is_valid", ("198.51.100.0/24",), True),
        ("cidr_is_valid", ("198.51.100.777/32",), False),
        ("cidr_is_valid", (7,), False),
    ],
)
def test_filters(name: str, args: tuple, expected: object) -> None:
    assert FILTERS[name](*args) == expected


def test_bad_cidr_is_a_filter_error() -> None:
    with pytest.raises(AnsibleFilterError, match="not a CIDR"):
        FILTERS["cidr_version"]("nope")


@pytest.mark.parametrize(
    "cidrs",
    [
        ["0.0.0.0/0"],
        ["::/0"],
        ["203.0.113.7/0"],  # host bits tolerated: still the whole family
        ["0.0.0.0/1", "128.0.0.0/1"],
        ["128.0.0.0/1", "0.0.0.0/1"],
        ["::/1", "8000::/1"],
        ["0.0.0.0/2", "64.0.0.0/2", "128.0.0.0/1"],
        # overlapping and redundant pieces still add up
        ["0.0.0.0/1", "10.0.0.0/8", "128.0.0.0/2", "192.0.0.0/2", "198.51.100.7/32"],
        # one family covered is enough, whatever the other holds
        ["2001:db8::/32", "0.0.0.0/1", "128.0.0.0/1"],
        ["198.51.100.7/32", "::/1", "8000::/1"],
        # a tuple, or an Ansible list subclass, is a list too
        ("0.0.0.0/1", "128.0.0.0/1"),
        [" 0.0.0.0/1", "128.0.0.0/1 "],
    ],
)
def test_cidrs_cover_anywhere(cidrs: list[str]) -> None:
    assert FILTERS["cidrs_cover_anywhere"](cidrs) is True


@pytest.mark.parametrize(
    "cidrs",
    [
        [],
        ["198.51.100.7/32"],
        ["198.51.100.7/32", "2001:db8:7::/48"],
        ["0.0.0.0/1"],  # half the IPv4 Internet is not all of it
        ["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"],  # 224.0.0.0/3 missing
        ["0.0.0.0/1", "128.0.0.0/2"],
        ["::/1", "8000::/2"],
        # the two families never add up: half of each is not a whole one
        ["0.0.0.0/1", "8000::/1"],
        ["::/1", "128.0.0.0/1"],
        # IPv4-mapped IPv6 is not IPv4
        ["::ffff:0:0/96", "0.0.0.0/1"],
    ],
)
def test_cidrs_not_covering_anywhere(cidrs: list[str]) -> None:
    assert FILTERS["cidrs_cover_anywhere"](cidrs) is False


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (["0.0.0.0/1", "nope"], "not a CIDR: 'nope'"),
        (["0.0.0.0/1", 7], "not a CIDR: 7"),
        ("0.0.0.0/0", "expects a list of CIDRs, got str"),
        ({"0.0.0.0/0": 1}, "expects a list of CIDRs, got dict"),
        (7, "expects a list of CIDRs, got int"),
        (None, "expects a list of CIDRs, got NoneType"),
    ],
)
def test_cidrs_cover_anywhere_refuses_non_cidr_lists(value: object, match: str) -> None:
    with pytest.raises(AnsibleFilterError, match=match):
        FILTERS["cidrs_cover_anywhere"](value)


def test_cidrs_cover_anywhere_takes_ansible_lists() -> None:
    """Lists from a template or an inventory arrive as Ansible's own list types."""
    assert FILTERS["cidrs_cover_anywhere"](wrap_var(["0.0.0.0/1", "128.0.0.0/1"])) is True
    assert FILTERS["cidrs_cover_anywhere"](wrap_var(["198.51.100.7/32"])) is False
