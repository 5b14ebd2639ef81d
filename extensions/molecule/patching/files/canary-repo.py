# SPDX-License-Identifier: GPL-3.0-or-later
"""Test fixture: publish version V of the prpm-canary package in a local apt repository.

    python3 canary-repo.py 1.0                     # a plain package
    python3 canary-repo.py 3.0 --reboot-required   # its postinst asks for a reboot, as kernels do

The repository (/srv/prpm-test-repo, a flat repository with Packages and Release) is what an
upgrade pending on a real host looks like to apt: an installed package with a newer candidate.
"""

import argparse
import email.utils
import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO = Path("/srv/prpm-test-repo")
NAME = "prpm-canary"
POSTINST_REBOOT = """#!/bin/sh
set -e
if [ "$1" = configure ]; then
    touch /run/reboot-required
    echo prpm-canary >> /run/reboot-required.pkgs
fi
"""


def build(version: str, reboot_required: bool) -> Path:
    work = Path(tempfile.mkdtemp())
    try:
        (work / "DEBIAN").mkdir(parents=True)
        share = work / "usr" / "share" / NAME
        share.mkdir(parents=True)
        (share / "version").write_text(version + "\n")
        (work / "DEBIAN" / "control").write_text(
            f"Package: {NAME}\nVersion: {version}\nArchitecture: all\n"
            "Maintainer: prpm.hobby tests <tests@prpm-hobby.invalid>\n"
            "Description: canary package of the prpm.hobby patching tests\n"
        )
        if reboot_required:
            postinst = work / "DEBIAN" / "postinst"
            postinst.write_text(POSTINST_REBOOT)
            postinst.chmod(0o755)
        REPO.mkdir(parents=True, exist_ok=True)
        deb = REPO / f"{NAME}_{version}_all.deb"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(work), str(deb)],
            check=True,
            capture_output=True,
        )
        return deb
    finally:
        shutil.rmtree(work)


def index() -> None:
    """Packages (apt picks the highest version) and an unsigned Release (Trusted: yes)."""
    stanzas = []
    for deb in sorted(REPO.glob("*.deb")):
        control = subprocess.run(
            ["dpkg-deb", "-f", str(deb)], check=True, capture_output=True, text=True
        ).stdout.strip()
        data = deb.read_bytes()
        stanzas.append(
            f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
            f"MD5sum: {hashlib.md5(data).hexdigest()}\n"  # noqa: S324 - apt's index field
            f"SHA256: {hashlib.sha256(data).hexdigest()}\n"
        )
    packages = "\n".join(stanzas).encode()
    (REPO / "Packages").write_bytes(packages)
    (REPO / "Packages.gz").write_bytes(gzip.compress(packages))
    lines = [
        "Origin: prpm-test",
        "Label: prpm-test",
        "Suite: prpm-test",
        "Codename: prpm-test",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "Architectures: all amd64 arm64",
        "SHA256:",
    ]
    for name in ("Packages", "Packages.gz"):
        data = (REPO / name).read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {name}")
    (REPO / "Release").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("version")
    parser.add_argument("--reboot-required", action="store_true")
    args = parser.parse_args()
    # A package and an apt repository need world-readable files whatever the session's umask
    # (prpm.hobby.base sets 027 for login sessions, Ansible's become included).
    os.umask(0o022)
    print(build(args.version, args.reboot_required))
    index()


if __name__ == "__main__":
    main()
