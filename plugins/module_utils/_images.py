# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""Image references pinned by digest or image ID (prpm.hobby.registry_stack, filters in images.py).

A pulled image is deployed as ``name:tag@sha256:...``: the tag says what it is, the digest is
exactly what runs. The pin is recorded in the stack's deployed state, so a later run deploys
the same image whatever the tag points at by then, until a refresh pulls the tag again.

An archive or build image has no registry digest: it is deployed as ``name:tag-id<12 hex>``, a
tag the role gives it on the host after its image ID. A rebuild under the same tag (new Debian
packages) is then a new version like any other: deployed health-gated, recorded as current with
the old one as previous, and rolled back to by name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
ID_SUFFIX = re.compile(r"-id([0-9a-f]{12})$")


class NoDigest(ValueError):
    """A pulled image without a digest from the registry of its name."""


class IdMismatch(ValueError):
    """An image pinned by ID whose name now names another image."""


def repository(ref: str) -> str:
    """The name without tag or digest: ``127.0.0.1:5000/x/redis:8@sha256:..`` gives
    ``127.0.0.1:5000/x/redis``."""
    name = ref.split("@", 1)[0]
    head, _sep, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def tag(ref: str) -> str:
    """The tag (``latest`` when none is given)."""
    name = ref.split("@", 1)[0]
    last = name.rpartition("/")[2]
    return last.split(":", 1)[1] if ":" in last else "latest"


def normalized(repo: str) -> str:
    """Docker Hub's short names in full (``redis`` is ``docker.io/library/redis``)."""
    parts = repo.split("/")
    if len(parts) == 1:
        return f"docker.io/library/{repo}"
    if "." not in parts[0] and ":" not in parts[0] and parts[0] != "localhost":
        return f"docker.io/{repo}"
    return repo


def full_ref(ref: str) -> str:
    """The reference with Docker Hub's short names in full, so that ``redis:8`` (as Docker reports
    it) and ``docker.io/library/redis:8`` compare equal; no tag is ``latest``."""
    name, sep, digest = ref.partition("@")
    return f"{normalized(repository(name))}:{tag(name)}" + (f"@{digest}" if sep else "")


def pull_ref(ref: str) -> str:
    """What to pull: ``name@digest`` for a pinned reference (the tag is only a label then),
    the reference itself otherwise."""
    if "@" not in ref:
        return ref
    return f"{repository(ref)}@{ref.split('@', 1)[1]}"


def unpinned(ref: str) -> str:
    """``name:tag`` as given in the inventory: without a digest or the role's ID suffix."""
    name = ref.split("@", 1)[0]
    return ID_SUFFIX.sub("", name) if ":" in name.rpartition("/")[2] else name


def pin_id(ref: str, image_id: str) -> str:
    """``name:tag-id<12 hex>`` for an archive or build image whose image ID is image_id
    (``sha256:<64 hex>``). A reference already pinned must name that ID; a reference with a
    digest stays as given."""
    if "@" in ref:
        return ref
    if not DIGEST.match(image_id or ""):
        raise IdMismatch(f"{ref}: no image ID to pin it to (got {image_id!r})")
    short = image_id[7:19]
    found = ID_SUFFIX.search(ref)
    if found:
        if found.group(1) != short:
            raise IdMismatch(
                f"{ref} is no longer on the host, and {unpinned(ref)} now names another image "
                f"({image_id[:19]}): the image that ran is gone. Deploy a version on purpose "
                "(playbooks/deploy.yml), or rebuild or load that image first."
            )
        return ref
    return f"{ref if ':' in ref.rpartition('/')[2] else ref + ':latest'}-id{short}"


def pin_id_in(ref: str, images: list[Mapping[str, Any]] | None, missing_ok: bool = False) -> str:
    """pin_id with the ID of the image tagged ref among images (as docker_image_info returns
    them, from the controller's Docker); '' when none is, with missing_ok."""
    want = (normalized(repository(ref)), tag(ref))
    for image in images or []:
        if any((normalized(repository(t)), tag(t)) == want for t in image.get("RepoTags") or []):
            return pin_id(ref, image.get("Id", ""))
    if missing_ok:
        return ""
    raise IdMismatch(
        f"{ref} is not in the controller's Docker, so it cannot be deployed: build it again "
        "(make images, or the registry from its checkout), or deploy another version."
    )


def pinned(
    refs: Mapping[str, str],
    sources: Mapping[str, str],
    deployed: Mapping[str, str],
    refresh: bool = False,
) -> dict[str, str]:
    """The references to deploy: a pulled image whose tag is the one deployed keeps the digest
    it was deployed with, unless refresh; a reference given with a digest, or from another
    source, stays as given."""
    wanted = {}
    for key, ref in refs.items():
        before = deployed.get(key, "")
        keep = (
            sources.get(key) == "pull"
            and "@" not in ref
            and not refresh
            and isinstance(before, str)
            and before.startswith(f"{ref}@")
            and DIGEST.match(before.split("@", 1)[1]) is not None
        )
        wanted[key] = before if keep else ref
    return wanted


def pin(ref: str, images: list[Mapping[str, Any]] | None) -> str:
    """``name:tag@digest`` with the digest the image's registry gave: of the images (as
    docker_image_info returns them), the one tagged ref (``redis:8`` and
    ``docker.io/library/redis:8`` are one), and its RepoDigests entry for the same repository."""
    if "@" in ref:
        return ref
    want = (normalized(repository(ref)), tag(ref))
    repo_digests: list[str] = []
    for image in images or []:
        tags = image.get("RepoTags") or []
        if any((normalized(repository(t)), tag(t)) == want for t in tags):
            repo_digests = image.get("RepoDigests") or []
            break
    for entry in repo_digests:
        repo, _sep, digest = entry.partition("@")
        if normalized(repo) == want[0] and DIGEST.match(digest):
            return f"{ref}@{digest}"
    known = ", ".join(repo_digests) or "none"
    raise NoDigest(
        f"{ref} has no digest from its registry (RepoDigests: {known}): "
        "an image built or loaded on the host cannot be pulled. Push it to a registry the host "
        "can reach, or give it with source archive or build (registry_stack_image_sources)."
    )


def changes(
    before: Mapping[str, str], after: Mapping[str, str], digests: bool = True
) -> list[dict[str, str]]:
    """The services whose image changed, as {service, from, to}, by service name; with digests
    false, only those whose name or tag changed (a new digest or image ID of the same tag is no
    change)."""

    def same(a: str, b: str) -> bool:
        return a == b if digests else unpinned(a) == unpinned(b)

    return [
        {"service": key, "from": before.get(key, ""), "to": after[key]}
        for key in sorted(after)
        if not same(before.get(key, ""), after[key])
    ]
