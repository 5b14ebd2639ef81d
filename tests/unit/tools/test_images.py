# SPDX-License-Identifier: GPL-3.0-or-later
"""tools/images.py refresh: a rebuild from the current Debian packages replaces an image only
when its packages changed; the stack images are built on the stack base."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
import images  # tools/ is not a package: on sys.path above

REDIS = images.Image(name="redis", tags=("localhost/prpm-hobby/redis:8",))
POSTGRES = images.Image(
    name="postgres",
    tags=("localhost/prpm-hobby/postgres:17", "localhost/prpm-hobby/postgres:latest"),
)


class FakePackages:
    def __init__(self, lists):
        self.lists = lists

    def image_packages(self, docker, ref):
        return self.lists[ref]

    @staticmethod
    def changes(before, after):
        return [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]


@pytest.fixture
def docker(monkeypatch):
    state = {"run": [], "quiet": [], "labels": {}, "lists": {}}
    monkeypatch.setattr(images, "run", lambda argv, **kw: state["run"].append(argv))
    monkeypatch.setattr(images, "current_label", state["labels"].get)
    monkeypatch.setattr(images, "image_recipe", lambda image: "r1")
    monkeypatch.setattr(images, "image_id", lambda tag: "sha256:old")
    monkeypatch.setattr(images, "_packages_module", lambda: FakePackages(state["lists"]))

    def quiet(argv, **kwargs):
        state["quiet"].append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")

    monkeypatch.setattr(images.subprocess, "run", quiet)
    return state


def test_an_identical_rebuild_is_dropped(docker):
    docker["labels"].update({REDIS.tags[0]: "r1", images.STACK_BASE_TAG: "b1"})
    docker["lists"].update(
        {
            REDIS.tags[0]: {"redis": "8.0"},
            REDIS.tags[0] + "-refresh": {"redis": "8.0"},
        }
    )
    assert images.refresh_image(REDIS) == []
    (build,) = docker["run"]
    assert build[:3] == ["docker", "build", "--no-cache"]
    assert f"BASE_IMAGE={images.STACK_BASE_TAG}" in build
    assert build[build.index("-t") + 1] == REDIS.tags[0] + "-refresh"
    assert docker["quiet"] == [["docker", "image", "rm", REDIS.tags[0] + "-refresh"]]


def test_a_rebuild_with_new_packages_takes_every_tag(docker):
    docker["labels"].update({POSTGRES.tags[0]: "r1"})
    docker["lists"].update(
        {
            POSTGRES.tags[0]: {"libssl3t64": "3.5.1-1"},
            POSTGRES.tags[0] + "-refresh": {"libssl3t64": "3.5.1-1+deb13u1"},
        }
    )
    assert images.refresh_image(POSTGRES) == ["libssl3t64"]
    assert docker["run"][1:] == [
        ["docker", "tag", POSTGRES.tags[0] + "-refresh", POSTGRES.tags[0]],
        ["docker", "tag", POSTGRES.tags[1] + "-refresh", POSTGRES.tags[1]],
    ]
    assert docker["quiet"] == [
        ["docker", "image", "rm", *(t + "-refresh" for t in POSTGRES.tags)],
        ["docker", "image", "rm", "sha256:old"],
    ]


@pytest.mark.parametrize(
    ("label", "said"), [(None, "(new image)"), ("r0", "(recipe changed: rebuilt)")]
)
def test_an_image_never_built_or_with_a_new_recipe_is_built(docker, label, said):
    if label:
        docker["labels"][REDIS.tags[0]] = label
    assert images.refresh_image(REDIS) == [said]
    (build,) = docker["run"]
    assert build[:3] == ["docker", "build", "--no-cache"]
    assert build[build.index("-t") + 1] == REDIS.tags[0]


def test_the_stack_base_is_built_with_a_new_packages_stamp(docker):
    docker["labels"][images.STACK_BASE_TAG] = "r0"
    images.build_stack_image(images.stack_base(), force=False)
    (build,) = docker["run"]
    assert "--no-cache" not in build
    assert any(arg.startswith("PACKAGES_REFRESH=20") for arg in build)


def test_the_stack_base_is_built_on_the_host_image_with_the_security_suite():
    base = images.stack_base()
    argv = images.build_argv(base, "r", base.tags)
    assert f"BASE_IMAGE={images.HOST_TAG}" in argv
    assert f"SECURITY_MIRROR={images.SECURITY_MIRROR}" in argv
    dockerfile = (base.context / "Dockerfile").read_text()
    assert "Suites: %s-security" in dockerfile and "apt-get upgrade -y" in dockerfile


def test_refresh_accepts_stack_images_only(capsys):
    with pytest.raises(SystemExit):
        images.main(["refresh", "host"])
    assert "unknown image(s): host" in capsys.readouterr().err
