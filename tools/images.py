# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the images the local stand-in host and the tests run on.

    python3 tools/images.py build host            # the Debian 13 systemd host image
    python3 tools/images.py build all             # host + every image under images/
    python3 tools/images.py list

An image is skipped when its tag exists with the same recipe hash (label
`io.prpm-hobby.recipe`), so a second run builds nothing. The host image comes from
`debian:trixie` when a registry is reachable and from debootstrap otherwise
(PRPM_HOST_IMAGE_SOURCE=auto|registry|debootstrap). Stack images under images/<name>/ are
built FROM the host image with Debian's packages.

Standard library only, so that it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = ROOT / "images"
PREFIX = "localhost/prpm-hobby"
HOST_TAG = f"{PREFIX}/host:debian13"
LABEL = "io.prpm-hobby.recipe"
HOST_PACKAGES = ("systemd", "systemd-sysv", "python3", "sudo", "ca-certificates", "iproute2")
MIRROR = os.environ.get("PRPM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITE = "trixie"


@dataclass(frozen=True)
class Image:
    """One image: its name under images/, the tags it carries and its build args."""

    name: str
    tags: tuple[str, ...]
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None

    @property
    def context(self) -> Path:
        return IMAGES_DIR / self.name


def stack_images() -> list[Image]:
    """Read images/<name>/image.json for every stack image (not the host)."""
    found = []
    for meta in sorted(IMAGES_DIR.glob("*/image.json")):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for variant in data["variants"]:
            found.append(
                Image(
                    name=meta.parent.name,
                    tags=tuple(f"{PREFIX}/{t}" for t in variant["tags"]),
                    build_args=tuple(sorted(variant.get("build_args", {}).items())),
                    target=variant.get("target"),
                )
            )
    return found


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, **kwargs)


def recipe_hash(paths: list[Path], extra: str = "") -> str:
    digest = hashlib.sha256(extra.encode())
    for base in paths:
        files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
        for path in files:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def current_label(tag: str) -> str | None:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout.strip() or "null") or {}
    return labels.get(LABEL)


def registry_reachable() -> bool:
    source = os.environ.get("PRPM_HOST_IMAGE_SOURCE", "auto")
    if source in ("registry", "debootstrap"):
        return source == "registry"
    try:
        result = subprocess.run(
            ["docker", "pull", "-q", "debian:trixie"],
            capture_output=True,
            text=True,
            check=False,
            timeout=25,
        )
    except subprocess.TimeoutExpired:
        return False
    return result.returncode == 0


def ensure_debootstrap() -> None:
    if shutil.which("debootstrap"):
        return
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "debootstrap"], env=env)
        return
    sys.exit("images: debootstrap is needed to build the host image offline; install it")


def build_host(force: bool) -> None:
    recipe = recipe_hash([IMAGES_DIR / "host"], extra=" ".join(HOST_PACKAGES) + SUITE)
    if not force and current_label(HOST_TAG) == recipe:
        print(f"images: {HOST_TAG} is up to date, skipped", flush=True)
        return
    if registry_reachable():
        run(
            [
                "docker",
                "build",
                "--label",
                f"{LABEL}={recipe}",
                "-t",
                HOST_TAG,
                str(IMAGES_DIR / "host"),
            ]
        )
        return
    ensure_debootstrap()
    with tempfile.TemporaryDirectory(prefix="prpm-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=" + ",".join(HOST_PACKAGES),
                SUITE,
                str(rootfs),
                MIRROR,
            ],
            stdout=subprocess.DEVNULL,
        )
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        # An empty machine-id lets systemd generate one per container. (docker import takes
        # no STOPSIGNAL: containers set stop_signal SIGRTMIN+3 themselves.)
        (rootfs / "etc/machine-id").write_text("", encoding="utf-8")
        changes = [
            "ENV container=docker",
            'CMD ["/lib/systemd/systemd"]',
            f"LABEL {LABEL}={recipe}",
        ]
        argv = ["docker", "import"]
        for change in changes:
            argv += ["--change", change]
        argv += ["-", HOST_TAG]
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(argv, stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            sys.exit("images: tar of the host rootfs failed")


def build_stack_image(image: Image, force: bool) -> None:
    args = " ".join(f"{k}={v}" for k, v in image.build_args) + (image.target or "")
    recipe = recipe_hash([image.context], extra=args + (current_label(HOST_TAG) or ""))
    if not force and all(current_label(tag) == recipe for tag in image.tags):
        print(f"images: {', '.join(image.tags)} up to date, skipped", flush=True)
        return
    argv = [
        "docker",
        "build",
        "--label",
        f"{LABEL}={recipe}",
        "--build-arg",
        f"BASE_IMAGE={HOST_TAG}",
    ]
    for key, value in image.build_args:
        argv += ["--build-arg", f"{key}={value}"]
    if image.target:
        argv += ["--target", image.target]
    for tag in image.tags:
        argv += ["-t", tag]
    run([*argv, str(image.context)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build images that are missing or stale")
    build.add_argument("names", nargs="+", help="host, all, or stack image names")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    sub.add_parser("list", help="list the images this script builds")
    opts = parser.parse_args(argv)

    stack = stack_images()
    if opts.cmd == "list":
        print(HOST_TAG)
        for image in stack:
            print("\n".join(image.tags))
        return 0
    names = set(opts.names)
    known = {"host", "all"} | {i.name for i in stack}
    unknown = names - known
    if unknown:
        parser.error(f"unknown image(s): {', '.join(sorted(unknown))}; known: {sorted(known)}")
    build_host(opts.force and ("host" in names or "all" in names))
    for image in stack:
        if "all" in names or image.name in names:
            build_stack_image(image, opts.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
