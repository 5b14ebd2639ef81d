# SPDX-License-Identifier: GPL-3.0-or-later
"""The package lists that decide whether a rebuilt offline image is kept."""

from __future__ import annotations

import subprocess

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils import _packages
from ansible_collections.prpm.hobby.plugins.module_utils._packages import (
    PackagesError,
    changes,
    image_packages,
    parse,
)

LIST = (
    "libssl3t64:amd64\t3.5.1-1\tii \n"
    "redis-server:amd64\t5:8.0.2-3\tii \n"
    "oldconf:amd64\t1.0\trc \n"
    "\n"
)


def test_parse_keeps_installed_packages_only():
    assert parse(LIST) == {"libssl3t64:amd64": "3.5.1-1", "redis-server:amd64": "5:8.0.2-3"}


def test_parse_refuses_what_is_not_dpkg_query_output():
    with pytest.raises(PackagesError, match="unexpected dpkg-query line"):
        parse("Error: no such thing\n")


def test_changes_name_each_package_that_differs():
    before = parse(LIST)
    after = {**before, "libssl3t64:amd64": "3.5.1-1+deb13u1", "tzdata:all": "2025b-4"}
    del after["redis-server:amd64"]
    assert changes(before, after) == [
        "libssl3t64:amd64 3.5.1-1 -> 3.5.1-1+deb13u1",
        "redis-server:amd64 5:8.0.2-3 -> (removed)",
        "tzdata:all (new) -> 2025b-4",
    ]
    assert changes(before, dict(before)) == []


def _fake_run(returncode, stdout="", stderr=""):
    calls = []

    def run(argv, **kwargs):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

    return run, calls


def test_image_packages_runs_dpkg_query_in_the_image_without_network(monkeypatch):
    run, calls = _fake_run(0, LIST)
    monkeypatch.setattr(_packages.subprocess, "run", run)
    assert image_packages("docker", "localhost/x/redis:8")["libssl3t64:amd64"] == "3.5.1-1"
    argv = calls[0]
    assert argv[:4] == ["docker", "run", "--rm", "--network"]
    assert "none" in argv and "localhost/x/redis:8" in argv and "dpkg-query" in argv


@pytest.mark.parametrize(
    ("returncode", "stdout", "message"),
    [
        (127, "", r"cannot list the Debian packages of img \(exit 127\): boom"),
        (0, "", "has no installed Debian package"),
    ],
)
def test_image_packages_says_why_it_cannot(monkeypatch, returncode, stdout, message):
    run, _calls = _fake_run(returncode, stdout, "boom")
    monkeypatch.setattr(_packages.subprocess, "run", run)
    with pytest.raises(PackagesError, match=message):
        image_packages("docker", "img")
