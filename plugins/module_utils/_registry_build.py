# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Build the PRPM registry image from a user's PRPM checkout (private to the collection).

A checkout is the root of the PRPM monorepo: ``package.json`` with workspaces, a
``package-lock.json`` and ``packages/{types,converters,registry}``. The build context is staged
from it (manifests apart from sources, so the dependency layer is reused while the lockfile is
unchanged), never the whole checkout: a developer's tree holds node_modules and dist of
hundreds of MB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

# The workspaces the registry is built from, in build order.
WORKSPACES = ("types", "converters", "registry")
REGISTRY_PACKAGE = "@pr-pm/registry"
ROOT_FILES = ("package.json", "package-lock.json", "tsconfig.json")
# Never part of a context: build output, dependencies, local environments, VCS data.
SKIP_DIRS = frozenset({"node_modules", "dist", ".git", ".turbo", "coverage", ".next"})
SKIP_FILES = frozenset({".DS_Store", ".npmrc"})
# Local settings and secrets (.env, .env.production.local, ...) never go into a context.
SKIP_PREFIXES = (".env",)
# Marks a staging directory as the module's own: only such a directory is ever emptied.
STAGING_MARKER = ".prpm-hobby-registry-build"
RECIPE_LABEL = "io.prpm-hobby.recipe"
SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+([-+][0-9A-Za-z.-]+)?$")


class CheckoutError(Exception):
    """The path is not a PRPM checkout the registry can be built from."""


@dataclass(frozen=True)
class Checkout:
    root: Path
    version: str
    commit: str | None
    source_hash: str

    @property
    def source_id(self) -> str:
        """The upstream commit (12 hex) when known, else a hash of the sources."""
        return self.commit[:12] if self.commit else f"src.{self.source_hash[:12]}"

    def tag(self, recipe: str) -> str:
        # The build recipe (this collection's Dockerfile) is part of the tag: a new recipe
        # builds a new image instead of silently reusing one built by the old recipe. Docker
        # tags take no '+' (semver build metadata).
        return f"{self.version.replace('+', '_')}-{self.source_id}-r{recipe[:6]}"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise CheckoutError(f"{path} is missing") from exc
    except (OSError, ValueError) as exc:
        raise CheckoutError(f"{path} is not readable JSON: {exc}") from exc


def source_files(root: Path) -> list[Path]:
    """Every file of the checkout that goes into the image, relative to root, sorted."""
    files = [Path(name) for name in ROOT_FILES]
    for name in WORKSPACES:
        base = root / "packages" / name
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
            for filename in sorted(filenames):
                if filename in SKIP_FILES or filename.startswith(SKIP_PREFIXES):
                    continue
                files.append((Path(dirpath) / filename).relative_to(root))
    # Manifests of the other workspaces: npm ci checks the lockfile against every workspace.
    for manifest in sorted((root / "packages").glob("*/package.json")):
        rel = manifest.relative_to(root)
        if rel not in files:
            files.append(rel)
    return sorted(files)


def _git_commit(root: Path) -> str | None:
    if not (root / ".git").exists() or shutil.which("git") is None:
        return None
    result = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    commit = result.stdout.strip()
    if result.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}", commit):
        return None
    # A tree with local changes is not that commit: name it by its sources instead.
    dirty = subprocess.run(
        [
            "git",
            "-C",
            str(root),
            "status",
            "--porcelain",
            "--",
            "package.json",
            "package-lock.json",
            "packages",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if dirty.returncode != 0 or dirty.stdout.strip():
        return None
    return commit


def read_checkout(path: str) -> Checkout:
    """Validate a PRPM checkout and describe it; raises CheckoutError saying what is wrong."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise CheckoutError(f"'{path}' is not a directory")
    root = root.resolve()
    top = _read_json(root / "package.json")
    workspaces = top.get("workspaces")
    if not isinstance(workspaces, list) or not workspaces:
        raise CheckoutError(
            f"{root}/package.json declares no workspaces: not the root of the PRPM monorepo"
        )
    if not (root / "package-lock.json").is_file():
        raise CheckoutError(
            f"{root}/package-lock.json is missing: the build installs exactly what it locks"
        )
    registry = _read_json(root / "packages" / "registry" / "package.json")
    if registry.get("name") != REGISTRY_PACKAGE:
        raise CheckoutError(
            f"{root}/packages/registry/package.json names '{registry.get('name')}', "
            f"not {REGISTRY_PACKAGE}:"
            " not a PRPM checkout"
        )
    scripts = registry.get("scripts") or {}
    for script in ("build", "start", "migrate"):
        if script not in scripts:
            raise CheckoutError(
                f"{REGISTRY_PACKAGE} has no '{script}' script: "
                "this registry version is not supported"
            )
    for name in WORKSPACES[:2]:
        _read_json(root / "packages" / name / "package.json")
    if not (root / "packages" / "registry" / "migrations").is_dir():
        raise CheckoutError(f"{root}/packages/registry/migrations is missing")
    version = str(registry.get("version", ""))
    if not SEMVER_RE.match(version):
        raise CheckoutError(f"{REGISTRY_PACKAGE} version '{version}' is not semver")
    digest = hashlib.sha256()
    for rel in source_files(root):
        digest.update(str(rel).encode() + b"\0")
        digest.update((root / rel).read_bytes() + b"\0")
    return Checkout(
        root=root, version=version, commit=_git_commit(root), source_hash=digest.hexdigest()
    )


def recipe_hash(recipe_dir: Path, base_image: str) -> str:
    """Hash of this collection's build recipe and base image (not the sources, not the extra
    CA: it only lets npm reach its registry and changes nothing in the image)."""
    digest = hashlib.sha256(base_image.encode() + b"\0")
    for path in sorted(p for p in recipe_dir.rglob("*") if p.is_file()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stage_context(checkout: Checkout, recipe_dir: Path, extra_ca: bytes, staging: Path) -> Path:
    """Write the build context under staging/context: recipe files, extra-ca.pem, manifests/
    and sources/. Returns the context. Refuses a staging directory that holds anything but a
    context this module staged before (it never empties a directory it does not own)."""
    staging.mkdir(parents=True, exist_ok=True)
    marker = staging / STAGING_MARKER
    if not marker.exists():
        if any(staging.iterdir()):
            raise CheckoutError(
                f"staging directory {staging} is not empty and was not made by prpm.hobby: "
                "choose an empty or new directory (registry_stack_build_staging_dir)"
            )
        marker.write_text("build contexts of prpm.hobby.registry_image\n", encoding="utf-8")
    dest = staging / "context"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir()
    for path in recipe_dir.iterdir():
        if path.is_file():
            shutil.copy2(path, dest / path.name)
    (dest / "extra-ca.pem").write_bytes(extra_ca)
    manifests = {Path(n) for n in ROOT_FILES} | {
        rel for rel in source_files(checkout.root) if rel.name == "package.json"
    }
    for rel in source_files(checkout.root):
        part = "manifests" if rel in manifests else "sources"
        target = dest / part / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(checkout.root / rel, target)
    return dest


def read_extra_ca(path: str) -> bytes:
    """The extra CA bundle for the build ('' = none); refuses files that hold no certificate."""
    if not path:
        return b""
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise CheckoutError(f"extra CA file '{path}' is not readable: {exc}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CheckoutError(f"extra CA file '{path}' holds no PEM certificate")
    return data


def image_recipe(docker: str, ref: str) -> str | None:
    """The recipe label of a local image, '' when it has none, None when it is absent."""
    result = subprocess.run(
        [docker, "image", "inspect", "--format", "{{json .Config.Labels}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    labels = json.loads(result.stdout.strip() or "null") or {}
    return labels.get(RECIPE_LABEL, "")


def build_image(
    docker: str, context: Path, ref: str, recipe: str, build_args: dict[str, str]
) -> str:
    """docker build; returns its output (the last lines carry the error when it fails)."""
    # --force-rm: a failed build leaves no stopped build container behind.
    argv = [docker, "build", "--force-rm", "--label", f"{RECIPE_LABEL}={recipe}", "-t", ref]
    for key, value in sorted(build_args.items()):
        argv += ["--build-arg", f"{key}={value}"]
    argv.append(str(context))
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise CheckoutError(f"docker build of {ref} failed (exit {result.returncode}):\n{tail}")
    return output
