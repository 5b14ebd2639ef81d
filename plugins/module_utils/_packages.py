# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""The Debian packages inside an image, and what changed between two images.

A rebuild of an offline image (``tools/images.py refresh``, or the registry rebuilt with
``prpm.hobby.registry_image``'s ``refresh_packages``) is kept only when its packages differ from
the image it would replace: an identical rebuild differs by its image ID alone, and deploying it
would restart a service for nothing. Standard library only (tools/images.py loads this file
before any virtualenv exists).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

QUERY = "${Package}:${Architecture}\t${Version}\t${db:Status-Abbrev}\n"


class PackagesError(RuntimeError):
    """The package list of an image could not be read."""


def parse(output: str) -> dict[str, str]:
    """``dpkg-query -W -f QUERY`` output as {package:arch: version}, installed packages only
    (``ii``; removed packages that left their configuration are not in the image's code)."""
    packages = {}
    for line in output.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise PackagesError(f"unexpected dpkg-query line: {line!r}")
        name, version, status = fields
        if status.strip() == "ii":
            packages[name] = version
    return packages


def image_packages(docker: str, ref: str) -> dict[str, str]:
    """The installed Debian packages of a local image, read by running dpkg-query in it."""
    argv = [docker, "run", "--rm", "--network", "none", "--entrypoint", "dpkg-query", ref]
    result = subprocess.run([*argv, "-W", "-f", QUERY], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagesError(
            f"cannot list the Debian packages of {ref} (exit {result.returncode}): "
            f"{result.stderr.strip()[-400:]}"
        )
    packages = parse(result.stdout)
    if not packages:
        raise PackagesError(f"{ref} has no installed Debian package: not a Debian image")
    return packages


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """What differs, one line per package, sorted: ``name old -> new``, ``name (new) -> v``,
    ``name old -> (removed)``. Empty when the two images have the same packages."""
    lines = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            lines.append(f"{name} {old or '(new)'} -> {new or '(removed)'}")
    return lines
