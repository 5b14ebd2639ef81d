# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils._memory import InvalidSize, to_mib


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("512m", 512.0),
        ("512M", 512.0),
        ("1g", 1024.0),
        ("1.5g", 1536.0),
        ("1GB", 1024.0),
        ("256MiB", 256.0),
        ("2048k", 2.0),
        ("1t", 1048576.0),
        (" 64m ", 64.0),
        ("1073741824", 1024.0),
        (1073741824, 1024.0),
        (0, 0.0),
        (524288.0, 0.5),
    ],
)
def test_to_mib(value: object, expected: float) -> None:
    assert to_mib(value) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "not a memory size"),
        ("lots", "not a memory size"),
        ("12 parsecs", "unknown unit"),
        ("-1g", "not a memory size"),
        (-5, "negative"),
        (True, "not a memory size"),
        (None, "not a memory size"),
        (["1g"], "not a memory size"),
    ],
)
def test_to_mib_rejects(value: object, message: str) -> None:
    with pytest.raises(InvalidSize, match=message):
        to_mib(value)
