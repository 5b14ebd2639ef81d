# SPDX-License-Identifier: GPL-3.0-or-later
"""Image references pinned by digest: what is kept, what is pulled, what a pin is."""

from __future__ import annotations

import pytest

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
    repository,
    unpinned,
)

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


@pytest.mark.parametrize(
    ("ref", "repo"),
    [
        ("redis:8", "redis"),
        (f"redis:8@{A}", "redis"),
        (f"redis@{A}", "redis"),
        ("127.0.0.1:5000/prpm-hobby/redis:8", "127.0.0.1:5000/prpm-hobby/redis"),
        ("127.0.0.1:5000/prpm-hobby/redis", "127.0.0.1:5000/prpm-hobby/redis"),
        ("ghcr.io/example/prpm-registry:1.0.0", "ghcr.io/example/prpm-registry"),
    ],
)
def test_repository_drops_tag_and_digest_not_the_registry_port(ref, repo):
    assert repository(ref) == repo


def test_a_pulled_tag_keeps_the_digest_it_was_deployed_with():
    refs = {"redis": "redis:8", "caddy": "caddy:2", "registry": "ghcr.io/x/registry:1"}
    sources = {"redis": "pull", "caddy": "archive", "registry": "pull"}
    deployed = {
        "redis": f"redis:8@{A}",
        "caddy": f"caddy:2@{A}",
        "registry": "ghcr.io/x/registry:0",
    }
    assert pinned(refs, sources, deployed) == {
        "redis": f"redis:8@{A}",  # same tag: the pin stays
        "caddy": "caddy:2",  # not pulled: as given
        "registry": "ghcr.io/x/registry:1",  # a new tag: pulled and pinned again
    }


def test_refresh_drops_the_pins_and_a_given_digest_always_wins():
    refs = {"redis": "redis:8", "postgres": f"pgvector/pgvector:pg17@{B}"}
    sources = {"redis": "pull", "postgres": "pull"}
    deployed = {"redis": f"redis:8@{A}", "postgres": f"pgvector/pgvector:pg17@{A}"}
    assert pinned(refs, sources, deployed, True) == {
        "redis": "redis:8",
        "postgres": f"pgvector/pgvector:pg17@{B}",
    }
    assert pinned(refs, sources, deployed)["postgres"] == f"pgvector/pgvector:pg17@{B}"


def test_a_deployed_reference_that_is_not_a_digest_pin_is_not_kept():
    sources = {"redis": "pull"}
    for before in ("redis:8", "redis:8@latest", "redis:8@sha256:abc", "redis:80@" + A):
        assert pinned({"redis": "redis:8"}, sources, {"redis": before}) == {"redis": "redis:8"}


def _image(tags: list[str], digests: list[str]) -> dict:
    return {"RepoTags": tags, "RepoDigests": digests}


@pytest.mark.parametrize(
    ("ref", "images"),
    [
        ("redis:8", [_image(["redis:8"], [f"redis@{A}"])]),
        ("docker.io/library/redis:8", [_image(["redis:8"], [f"redis@{A}"])]),
        ("redis", [_image(["redis:latest"], [f"docker.io/library/redis@{A}"])]),
        (
            "pgvector/pgvector:pg17",
            [_image(["pgvector/pgvector:pg17"], [f"pgvector/pgvector@{A}"])],
        ),
        (
            "127.0.0.1:5000/prpm-hobby/redis:8",
            [
                _image(
                    ["127.0.0.1:5000/prpm-hobby/redis:7"], [f"127.0.0.1:5000/prpm-hobby/redis@{B}"]
                ),
                _image(
                    ["127.0.0.1:5000/prpm-hobby/redis:8"],
                    [f"127.0.0.1:5000/other@{B}", f"127.0.0.1:5000/prpm-hobby/redis@{A}"],
                ),
            ],
        ),
    ],
)
def test_pin_takes_the_digest_of_the_image_with_that_tag_from_that_repository(ref, images):
    assert pin(ref, images) == f"{ref}@{A}"


def test_an_image_without_a_registry_digest_cannot_be_pinned():
    with pytest.raises(NoDigest, match="localhost/prpm/registry:1 has no digest from its registry"):
        pin("localhost/prpm/registry:1", [_image(["localhost/prpm/registry:1"], [])])
    with pytest.raises(NoDigest, match="RepoDigests: otherhost/redis@"):
        pin("redis:8", [_image(["redis:8"], [f"otherhost/redis@{A}"])])
    with pytest.raises(NoDigest, match="RepoDigests: none"):
        pin("redis:8", [_image(["redis:7"], [f"redis@{A}"])])
    assert pin(f"redis:8@{B}", []) == f"redis:8@{B}"


def test_pull_ref_pulls_a_pin_by_digest_alone():
    assert pull_ref(f"127.0.0.1:5000/x/redis:8@{A}") == f"127.0.0.1:5000/x/redis@{A}"
    assert pull_ref("redis:8") == "redis:8"


def test_changes_lists_the_services_whose_image_changed():
    before = {"redis": f"redis:8@{A}", "caddy": "caddy:2"}
    after = {"redis": f"redis:8@{B}", "caddy": "caddy:2", "storage": "s:1"}
    assert changes(before, after) == [
        {"service": "redis", "from": f"redis:8@{A}", "to": f"redis:8@{B}"},
        {"service": "storage", "from": "", "to": "s:1"},
    ]
    assert changes(after, after) == []
    # Without digests: the same tag at a new digest is no change of version.
    assert changes(before, after, digests=False) == [
        {"service": "storage", "from": "", "to": "s:1"}
    ]


# --- Archive and build images pinned by image ID ------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("localhost/prpm-hobby/redis:8", "localhost/prpm-hobby/redis:8-idaaaaaaaaaaaa"),
        ("127.0.0.1:5000/x/caddy", "127.0.0.1:5000/x/caddy:latest-idaaaaaaaaaaaa"),
        ("localhost/x/redis:8-idaaaaaaaaaaaa", "localhost/x/redis:8-idaaaaaaaaaaaa"),
        (f"redis:8@{B}", f"redis:8@{B}"),
    ],
)
def test_pin_id_names_the_image_after_its_id(ref, want):
    assert pin_id(ref, A) == want
    # No tag is latest.
    assert unpinned(want) in (unpinned(ref), f"{ref}:latest")


def test_a_pin_whose_tag_now_names_another_image_is_refused():
    with pytest.raises(
        IdMismatch,
        match=r"redis:8-idbbbbbbbbbbbb is no longer on the host, and "
        r"localhost/redis:8 now names another image \(sha256:aaaaaaaaaaaa\)",
    ):
        pin_id("localhost/redis:8-idbbbbbbbbbbbb", A)


@pytest.mark.parametrize("image_id", ["", "aaaa", "sha256:" + "A" * 64, None])
def test_no_image_id_no_pin(image_id):
    with pytest.raises(IdMismatch, match="no image ID to pin it to"):
        pin_id("localhost/redis:8", image_id)


@pytest.mark.parametrize(
    ("ref", "plain"),
    [
        ("localhost/redis:8-id0123456789ab", "localhost/redis:8"),
        (f"redis:8@{A}", "redis:8"),
        ("127.0.0.1:5000/redis-id0123456789ab", "127.0.0.1:5000/redis-id0123456789ab"),
        ("localhost/redis:8-id0123", "localhost/redis:8-id0123"),
        ("redis", "redis"),
    ],
)
def test_unpinned_drops_only_a_pin(ref, plain):
    """A repository name that happens to end like a pin is not a tag: it stays."""
    assert unpinned(ref) == plain


def test_a_new_image_id_of_the_same_tag_is_a_change_only_with_digests():
    before = {"redis": "localhost/redis:8-idaaaaaaaaaaaa"}
    after = {"redis": "localhost/redis:8-idbbbbbbbbbbbb"}
    assert changes(before, after) == [
        {"service": "redis", "from": before["redis"], "to": after["redis"]}
    ]
    assert changes(before, after, False) == []
    assert changes(before, {"redis": "localhost/redis:7-idbbbbbbbbbbbb"}, False) != []


def test_pin_id_in_takes_the_id_of_the_image_with_that_tag():
    images = [
        {"Id": B, "RepoTags": ["localhost/x/redis:7"]},
        {"Id": A, "RepoTags": ["localhost/x/other:8", "localhost/x/redis:8"]},
    ]
    assert pin_id_in("localhost/x/redis:8", images) == "localhost/x/redis:8-idaaaaaaaaaaaa"
    with pytest.raises(IdMismatch, match="localhost/x/redis:9 is not in the controller's Docker"):
        pin_id_in("localhost/x/redis:9", images)
    assert pin_id_in("localhost/x/redis:9", images, missing_ok=True) == ""


@pytest.mark.parametrize(
    ("ref", "full"),
    [
        ("redis:8-idaaaaaaaaaaaa", "docker.io/library/redis:8-idaaaaaaaaaaaa"),
        ("docker.io/library/redis:8", "docker.io/library/redis:8"),
        ("bitnami/redis", "docker.io/bitnami/redis:latest"),
        ("localhost/prpm-hobby/redis:8", "localhost/prpm-hobby/redis:8"),
        (f"127.0.0.1:5000/x/redis:8@{A}", f"127.0.0.1:5000/x/redis:8@{A}"),
    ],
)
def test_full_ref_spells_docker_hub_names_in_full(ref, full):
    assert full_ref(ref) == full
