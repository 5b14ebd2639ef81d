# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils._net import (
    InvalidCidr,
    cidr_overlaps,
    cidr_version,
    is_anywhere,
    is_cidr,
    parse_cidr,
)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("172.31.0.0/16", "172.31.5.0/24", True),
        ("172.31.0.0/16", "172.30.0.0/16", False),
        ("10.200.0.0/16", "10.0.0.0/8", True),
        ("10.200.0.0/16", "172.31.0.0/16", False),
        ("0.0.0.0/0", "192.0.2.1/32", True),
        ("2001:db8::/32", "2001:db8:1::/48", True),
        ("2001:db8::/32", "10.0.0.0/8", False),
        ("10.0.0.1/8", "10.1.0.0/16", True),
    ],
)
def test_cidr_overlaps(a: str, b: str, expected: bool) -> None:
    assert cidr_overlaps(a, b) is expected


@pytest.mark.parametrize(
    ("cidr", "version", "anywhere"),
    [
        ("0.0.0.0/0", 4, True),
        ("::/0", 6, True),
        ("203.0.113.7/32", 4, False),
        ("203.0.113.7", 4, False),
        ("2001:db8::/64", 6, False),
    ],
)
def test_version_and_anywhere(cidr: str, version: int, anywhere: bool) -> None:
    assert cidr_version(cidr) == version
    assert is_anywhere(cidr) is anywhere


@pytest.mark.parametrize(
    "value", ["", "   ", "300.1.1.1/8", "10.0.0.0/33", "example.com", None, 42]
)
def test_invalid(value: object) -> None:
    with pytest.raises(InvalidCidr, match="not a CIDR"):
        parse_cidr(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("203.0.113.7/32", True),
        ("203.0.113.7", True),
        (" 2001:db8:7::/48 ", True),
        ("10.0.0.1/8", True),
        ("198.51.100.777/32", False),
        ("2", False),
        ("", False),
        (5, False),
        (None, False),
        (["203.0.113.7/32"], False),
    ],
)
def test_is_cidr_never_raises(value: object, expected: bool) -> None:
    assert is_cidr(value) is expected
