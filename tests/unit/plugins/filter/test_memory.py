# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.filter.memory import FilterModule


@pytest.fixture
def to_mib():
    return FilterModule().filters()["to_mib"]


@pytest.mark.parametrize(("value", "expected"), [("1g", 1024.0), ("96m", 96.0)])
def test_filter_converts(to_mib, value: str, expected: float) -> None:
    assert to_mib(value) == expected


def test_filter_raises_ansible_error(to_mib) -> None:
    with pytest.raises(AnsibleFilterError, match="unknown unit"):
        to_mib("3 bananas")
