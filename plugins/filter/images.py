# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Filters for image references pinned by digest: prpm.hobby.pinned_images, pin_digest,
image_pull_ref and image_changes (documented in <name>.yml beside this file)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.module_utils._images import (
    NoDigest,
    changes,
    pin,
    pinned,
    pull_ref,
)


def _pin_digest(ref: str, images: list[dict] | None) -> str:
    try:
        return pin(ref, images)
    except NoDigest as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """Image reference filters."""

    def filters(self) -> dict:
        return {
            "pinned_images": pinned,
            "pin_digest": _pin_digest,
            "image_pull_ref": pull_ref,
            "image_changes": changes,
        }
