# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

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
