# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Memory sizes as Docker, Compose and humans write them, in MiB.

Private to the collection (leading underscore): no compatibility promise to other collections.
"""

from __future__ import annotations

import re

__all__ = ["InvalidSize", "to_mib"]

_UNITS = {
    "": 1 / (1024 * 1024),
    "b": 1 / (1024 * 1024),
    "k": 1 / 1024,
    "kb": 1 / 1024,
    "kib": 1 / 1024,
    "m": 1,
    "mb": 1,
    "mib": 1,
    "g": 1024,
    "gb": 1024,
    "gib": 1024,
    "t": 1024 * 1024,
    "tb": 1024 * 1024,
    "tib": 1024 * 1024,
}
_SIZE = re.compile(r"^\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[a-zA-Z]*)\s*$")


class InvalidSize(ValueError):
    """Raised for a value that is not a memory size."""


def to_mib(value: object) -> float:
    """Return a memory size in MiB.

    Accepts Docker/Compose notation (``512m``, ``1g``, ``1.5G``), binary and decimal suffixes
    treated as binary as Docker does (``256MiB``, ``256MB``), and plain byte counts
    (``1073741824`` or an int). Raises InvalidSize for anything else, including negatives.
    """
    if isinstance(value, bool):
        raise InvalidSize(f"not a memory size: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise InvalidSize(f"negative memory size: {value!r}")
        return float(value) / (1024 * 1024)
    if not isinstance(value, str):
        raise InvalidSize(f"not a memory size: {value!r}")
    match = _SIZE.match(value)
    if match is None:
        raise InvalidSize(f"not a memory size: {value!r} (use e.g. 256m, 1g, 512MiB)")
    unit = match.group("unit").lower()
    if unit not in _UNITS:
        raise InvalidSize(f"unknown unit {match.group('unit')!r} in memory size {value!r}")
    return float(match.group("num")) * _UNITS[unit]
