# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the images the local stand-in host and the tests run on.

    python3 tools/images.py build host            # the Debian 13 systemd host image
    python3 tools/images.py build all             # host + every image under images/
    python3 tools/images.py refresh all           # rebuild from the current Debian packages
    python3 tools/images.py list

An image is skipped when its tag exists with the same recipe hash (label
`io.prpm-hobby.recipe`), so a second run builds nothing. The host image comes from
`debian:trixie` when a registry is reachable and from debootstrap otherwise
(PRPM_HOST_IMAGE_SOURCE=auto|registry|debootstrap). Stack images under images/<name>/ are
built with Debian's packages FROM the stack base (images/stack-base: the host image with
Debian's security and updates suites, upgraded).

`refresh` rebuilds the stack base and the stack images from the current Debian packages
(security fixes included) without the build cache, and keeps a rebuild only when its installed
packages differ from the image it would replace: an identical rebuild is dropped, so the tag
keeps its image ID and the next deploy changes nothing. It prints what changed. Run it before
the patch window (`make patch` does); the stack role deploys the images whose ID changed.

Standard library only, so that it runs before the virtualenv exists.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = ROOT / "images"
PREFIX = "localhost/prpm-hobby"
HOST_TAG = f"{PREFIX}/host:debian13"
STACK_BASE_TAG = f"{PREFIX}/stack-base:debian13"
LABEL = "io.prpm-hobby.recipe"
HOST_PACKAGES = ("systemd", "systemd-sysv", "python3", "sudo", "ca-certificates", "iproute2")
MIRROR = os.environ.get("PRPM_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get(
    "PRPM_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security"
)
# Where a rebuild waits before it replaces an image: "<tag>-refresh".
CANDIDATE = "-refresh"
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


def stack_base() -> Image:
    """The base of every stack image: the host image with the security suite, upgraded."""
    return Image(
        name="stack-base",
        tags=(STACK_BASE_TAG,),
        build_args=(
            ("BASE_IMAGE", HOST_TAG),
            ("DEBIAN_MIRROR", MIRROR),
            ("SECURITY_MIRROR", SECURITY_MIRROR),
            ("SUITE", SUITE),
        ),
    )


def image_recipe(image: Image) -> str:
    """The recipe hash: the context, the build arguments and the recipe of the image below."""
    args = " ".join(f"{k}={v}" for k, v in image.build_args) + (image.target or "")
    below = HOST_TAG if image.name == "stack-base" else STACK_BASE_TAG
    return recipe_hash([image.context], extra=args + (current_label(below) or ""))


def build_argv(image: Image, recipe: str, tags: tuple[str, ...], extra: tuple = ()) -> list[str]:
    argv = ["docker", "build", "--label", f"{LABEL}={recipe}"]
    build_args = image.build_args
    if image.name != "stack-base":
        build_args = (("BASE_IMAGE", STACK_BASE_TAG), *build_args)
    for key, value in (*build_args, *extra):
        argv += ["--build-arg", f"{key}={value}"]
    if image.target:
        argv += ["--target", image.target]
    for tag in tags:
        argv += ["-t", tag]
    return [*argv, str(image.context)]


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def fresh_build_argv(image: Image, recipe: str, tags: tuple[str, ...]) -> list[str]:
    """A build that installs the current Debian packages, never a cached layer of an older
    build: the stack base with a new PACKAGES_REFRESH, the others without the cache."""
    if image.name == "stack-base":
        return build_argv(image, recipe, tags, (("PACKAGES_REFRESH", stamp()),))
    argv = build_argv(image, recipe, tags)
    return [*argv[:2], "--no-cache", *argv[2:]]


def build_stack_image(image: Image, force: bool) -> None:
    recipe = image_recipe(image)
    if not force and all(current_label(tag) == recipe for tag in image.tags):
        print(f"images: {', '.join(image.tags)} up to date, skipped", flush=True)
        return
    run(fresh_build_argv(image, recipe, image.tags))


def _packages_module():
    """plugins/module_utils/_packages.py (standard library only), loaded by path."""
    path = ROOT / "plugins" / "module_utils" / "_packages.py"
    spec = importlib.util.spec_from_file_location("prpm_hobby_packages", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def image_id(tag: str) -> str:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def refresh_image(image: Image) -> list[str]:
    """Rebuild image from the current Debian packages beside it and keep the rebuild only when
    its installed packages differ. Returns what changed (empty: dropped). An image never built,
    or whose recipe changed, is built as `build` does."""
    recipe = image_recipe(image)
    label = current_label(image.tags[0])
    replaced = image_id(image.tags[0])
    if label != recipe:
        build_stack_image(image, force=True)
        _remove(replaced)
        return ["(new image)" if label is None else "(recipe changed: rebuilt)"]
    packages = _packages_module()
    candidates = tuple(tag + CANDIDATE for tag in image.tags)
    run(fresh_build_argv(image, recipe, candidates), stdout=subprocess.DEVNULL)
    try:
        changed = packages.changes(
            packages.image_packages("docker", image.tags[0]),
            packages.image_packages("docker", candidates[0]),
        )
        if changed:
            for candidate, tag in zip(candidates, image.tags, strict=True):
                run(["docker", "tag", candidate, tag])
    finally:
        # Only the names: an identical rebuild goes with them, an adopted one keeps its tags.
        subprocess.run(["docker", "image", "rm", *candidates], capture_output=True, check=False)
    if changed:
        _remove(replaced)
    return changed


def _remove(image: str) -> None:
    """The image a rebuild replaced, unless something still holds it (no force)."""
    if image:
        subprocess.run(["docker", "image", "rm", image], capture_output=True, check=False)


def refresh(selected: list[Image]) -> int:
    """refresh: the stack base, then the selected stack images; prints what changed."""
    changed_images = 0
    for image in [stack_base(), *selected]:
        changed = refresh_image(image)
        name = ", ".join(image.tags)
        if changed:
            changed_images += 1
            print(f"images: {name} rebuilt, {len(changed)} package(s) changed:", flush=True)
            for line in changed:
                print(f"  {line}", flush=True)
        else:
            print(f"images: {name} unchanged (same packages; the rebuild was dropped)", flush=True)
    print(f"images: refresh done, {changed_images} image(s) changed", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    build = sub.add_parser("build", help="build images that are missing or stale")
    build.add_argument("names", nargs="+", help="host, all, or stack image names")
    build.add_argument("--force", action="store_true", help="rebuild even when up to date")
    refresh_cmd = sub.add_parser(
        "refresh", help="rebuild the stack images from the current Debian packages"
    )
    refresh_cmd.add_argument("names", nargs="+", help="all, or stack image names")
    sub.add_parser("list", help="list the images this script builds")
    opts = parser.parse_args(argv)

    stack = stack_images()
    if opts.cmd == "list":
        print(HOST_TAG)
        print(STACK_BASE_TAG)
        for image in stack:
            print("\n".join(image.tags))
        return 0
    names = set(opts.names)
    known = {"all"} | {i.name for i in stack} | ({"host"} if opts.cmd == "build" else set())
    unknown = names - known
    if unknown:
        parser.error(f"unknown image(s): {', '.join(sorted(unknown))}; known: {sorted(known)}")
    selected = [image for image in stack if "all" in names or image.name in names]
    build_host(opts.cmd == "build" and opts.force and ("host" in names or "all" in names))
    if selected:
        build_stack_image(stack_base(), opts.cmd == "build" and opts.force)
    if opts.cmd == "refresh":
        return refresh(selected)
    for image in selected:
        build_stack_image(image, opts.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
