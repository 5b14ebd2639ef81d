# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Filters for image references pinned by digest or image ID: prpm.hobby.pinned_images,
pin_digest, pin_image_id, pin_image_id_in, unpinned_image, image_full_ref, image_pull_ref and
image_changes
(documented in <name>.yml beside this file)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.prpm.hobby.plugins.module_utils._images import (
    IdMismatch,
    NoDigest,
    changes,
    full_ref,
    pin,
    pin_id,
    pin_id_in,
    pinned,
    pull_ref,
    unpinned,
)


def _pin_digest(ref: str, images: list[dict] | None) -> str:
    try:
        return pin(ref, images)
    except NoDigest as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _pin_image_id(ref: str, image_id: str) -> str:
    try:
        return pin_id(ref, image_id)
    except IdMismatch as exc:
        raise AnsibleFilterError(str(exc)) from exc


def _pin_image_id_in(ref: str, images: list[dict] | None, missing_ok: bool = False) -> str:
    try:
        return pin_id_in(ref, images, missing_ok)
    except IdMismatch as exc:
        raise AnsibleFilterError(str(exc)) from exc


class FilterModule:
    """Image reference filters."""

    def filters(self) -> dict:
        return {
            "pinned_images": pinned,
            "pin_digest": _pin_digest,
            "pin_image_id": _pin_image_id,
            "pin_image_id_in": _pin_image_id_in,
            "unpinned_image": unpinned,
            "image_full_ref": full_ref,
            "image_pull_ref": pull_ref,
            "image_changes": changes,
        }
