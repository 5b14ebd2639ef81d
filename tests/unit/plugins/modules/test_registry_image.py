# SPDX-License-Identifier: GPL-3.0-or-later
"""registry_image's refresh: a rebuild from current Debian packages takes the tag only when its
packages differ."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ansible_collections.prpm.hobby.plugins.modules import registry_image

REF = "localhost/prpm/registry:0.1.0-src.abc-r123"


@pytest.fixture
def docker(monkeypatch):
    """Records builds and docker calls; image_packages answers from `packages` by reference."""
    state = {"builds": [], "calls": [], "packages": {}}

    def build_image(docker, context, ref, recipe, build_args):
        state["builds"].append((ref, build_args))
        return ""

    def run(argv, **kwargs):
        state["calls"].append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(registry_image, "build_image", build_image)
    monkeypatch.setattr(registry_image, "image_packages", lambda d, ref: state["packages"][ref])
    monkeypatch.setattr(registry_image, "image_id", lambda d, ref: "sha256:old")
    monkeypatch.setattr(registry_image.subprocess, "run", run)
    return state


def test_an_identical_rebuild_is_dropped_and_the_tag_keeps_its_image(docker):
    docker["packages"] = {REF: {"nodejs": "20.19.2"}, f"{REF}-refresh": {"nodejs": "20.19.2"}}
    args = {"BASE_IMAGE": "b", "PACKAGES_REFRESH": "20261128T000000Z"}
    assert registry_image.refresh("docker", Path("/ctx"), REF, "r123", args) == []
    ((ref, built_with),) = docker["builds"]
    assert ref == f"{REF}-refresh"
    assert built_with == args
    # Only the candidate's name is removed: the image the tag names stays.
    assert docker["calls"] == [["docker", "image", "rm", f"{REF}-refresh"]]


def test_a_rebuild_with_new_packages_takes_the_tag(docker):
    docker["packages"] = {
        REF: {"nodejs": "20.19.2", "libssl3t64": "3.5.1-1"},
        f"{REF}-refresh": {"nodejs": "20.19.2", "libssl3t64": "3.5.1-1+deb13u1"},
    }
    changed = registry_image.refresh("docker", Path("/ctx"), REF, "r123", {})
    assert changed == ["libssl3t64 3.5.1-1 -> 3.5.1-1+deb13u1"]
    # The candidate's name goes, then the image it replaced (without force).
    assert docker["calls"] == [
        ["docker", "tag", f"{REF}-refresh", REF],
        ["docker", "image", "rm", f"{REF}-refresh"],
        ["docker", "image", "rm", "sha256:old"],
    ]


def test_a_failed_package_read_still_drops_the_candidate(docker):
    docker["packages"] = {REF: {"nodejs": "20.19.2"}}  # the candidate cannot be read
    with pytest.raises(KeyError):
        registry_image.refresh("docker", Path("/ctx"), REF, "r123", {})
    assert docker["calls"] == [["docker", "image", "rm", f"{REF}-refresh"]]


def test_a_failed_tag_says_so_and_drops_the_candidate(docker, monkeypatch):
    docker["packages"] = {REF: {"a": "1"}, f"{REF}-refresh": {"a": "2"}}

    def run(argv, **kwargs):
        docker["calls"].append(argv)
        return subprocess.CompletedProcess(argv, 1 if argv[1] == "tag" else 0, "", "no space")

    monkeypatch.setattr(registry_image.subprocess, "run", run)
    with pytest.raises(registry_image.CheckoutError, match=r"docker tag .* failed: no space"):
        registry_image.refresh("docker", Path("/ctx"), REF, "r123", {})
    assert docker["calls"][-1] == ["docker", "image", "rm", f"{REF}-refresh"]
