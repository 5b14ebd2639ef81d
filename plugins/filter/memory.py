# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Filters for memory sizes: prpm.hobby.to_mib (documented in to_mib.yml beside this file, like
every filter of the collection)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.module_utils._memory import InvalidSize, to_mib


def _to_mib(value: object) -> float:
    try:
        return to_mib(value)
    except InvalidSize as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """Memory size filters."""

    def filters(self) -> dict:
        return {"to_mib": _to_mib}
