#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: registry_image
short_description: Build the PRPM registry image from a PRPM checkout
version_added: 0.2.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - Validates that O(checkout) is the root of the PRPM monorepo (workspaces, lockfile,
    C(packages/registry) named C(@pr-pm/registry) with build, start and migrate scripts) and
    refuses anything else before building.
  - Names the image C(<repository>:<version>-<source>-r<recipe>) after the registry's package
    version, the upstream git commit (or C(src.<hash>) of the sources when the checkout is not a
    clean git tree, such as an unpacked archive) and a hash of the build recipe. Deploys and
    rollbacks therefore name real versions, and changed sources build a new tag.
  - Builds with the collection's own Dockerfile (Debian base, Node 20 and npm from Debian,
    C(npm ci) of the types, converters and registry workspaces, a runtime stage without
    compilers, non-root, tini as init) from a staged context, with the controller's Docker
    engine. Skips the build when the tag exists with the same recipe label.
  - Runs on the controller (delegated to localhost).
options:
  checkout:
    description: Root of a PRPM checkout (the monorepo, not C(packages/registry)).
    type: path
    required: true
  repository:
    description: Image repository; the module chooses the tag.
    type: str
    required: true
  recipe_dir:
    description: The Dockerfile and entry script (the role's C(files/registry-image)).
    type: path
    required: true
  staging_dir:
    description:
      - Where the build context is staged, in a C(context) subdirectory recreated on every build.
      - Must be empty or made by this module (it holds a marker file); anything else is refused.
    type: path
    required: true
  base_image:
    description: Debian trixie image both stages start from.
    type: str
    default: debian:trixie-slim
  extra_ca_file:
    description:
      - PEM bundle trusted by npm during the build, besides Debian's (a TLS-intercepting proxy).
      - Empty for none.
    type: path
    default: ""
  refresh_packages:
    description:
      - Rebuild the image's runtime stage from the current Debian packages (security fixes
        included) even when the tag exists with the same recipe; the build stage and its npm
        layers stay cached.
      - The rebuild replaces the tag only when its installed packages differ from the image's
        (RV(package_changes) lists them); an identical rebuild is dropped, so the tag keeps
        its image ID and nothing is redeployed.
      - prpm.hobby.registry_stack's entry point C(refresh) (each patch run) sets it.
    type: bool
    default: false
  docker:
    description: Docker CLI on the controller.
    type: str
    default: docker
attributes:
  check_mode:
    description: Reports the tag and whether it would build, and builds nothing.
    support: full
  diff_mode:
    description: No diff.
    support: none
  idempotent:
    description: A second run with the same checkout and recipe builds nothing.
    support: full
"""

EXAMPLES = r"""
- name: Ensure the registry image is built from the PRPM checkout
  prpm.hobby.registry_image:
    checkout: ~/src/prpm
    repository: localhost/prpm/registry
    recipe_dir: "{{ role_path }}/files/registry-image"
    staging_dir: ~/.cache/prpm-hobby/registry-build
  delegate_to: localhost
  register: registry_build
"""

RETURN = r"""
image:
  description: The image reference built (or found).
  returned: success
  type: str
  sample: localhost/prpm/registry:0.1.0-d31b34dc44bc-r1a2b3c
version:
  description: The registry package's version.
  returned: success
  type: str
  sample: 0.1.0
source_id:
  description: Upstream commit (12 hex) or C(src.<hash>) of the sources.
  returned: success
  type: str
  sample: src.5d1e0f3a9b2c
built:
  description: Whether the image was built by this run (or would be, in check mode).
  returned: success
  type: bool
build_seconds:
  description: Wall time of the build (0 when skipped).
  returned: success
  type: float
package_changes:
  description:
    - With O(refresh_packages), the packages the rebuild changed (C(name old -> new)); empty when
      it changed none and was dropped.
  returned: success
  type: list
  elements: str
  sample: ["libssl3t64:amd64 3.5.1-1 -> 3.5.1-1+deb13u1"]
"""

import subprocess
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.prpm.hobby.plugins.module_utils._packages import (
    PackagesError,
    changes,
    image_packages,
)
from ansible_collections.prpm.hobby.plugins.module_utils._registry_build import (
    CheckoutError,
    build_image,
    image_recipe,
    read_checkout,
    read_extra_ca,
    recipe_hash,
    stage_context,
)


def refresh(docker: str, context: Path, ref: str, recipe: str, build_args: dict) -> list[str]:
    """Rebuild ref's runtime stage from the current Debian packages beside it; the rebuild takes
    the tag only when its packages differ. Returns what changed (empty: dropped)."""
    candidate = f"{ref}-refresh"
    replaced = image_id(docker, ref)
    build_image(docker, context, candidate, recipe, build_args)
    try:
        changed = changes(image_packages(docker, ref), image_packages(docker, candidate))
        if changed:
            tagged = subprocess.run(
                [docker, "tag", candidate, ref], capture_output=True, text=True, check=False
            )
            if tagged.returncode != 0:
                raise CheckoutError(f"docker tag {candidate} {ref} failed: {tagged.stderr.strip()}")
    finally:
        # Only the name: an identical rebuild goes with it, an adopted one keeps ref.
        subprocess.run([docker, "image", "rm", candidate], check=False, capture_output=True)
    if changed and replaced:
        # The image it replaced, unless something else still holds it (no force).
        subprocess.run([docker, "image", "rm", replaced], check=False, capture_output=True)
    return changed


def image_id(docker: str, ref: str) -> str:
    """The ID of a local image, '' when there is none."""
    result = subprocess.run(
        [docker, "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "checkout": {"type": "path", "required": True},
            "repository": {"type": "str", "required": True},
            "recipe_dir": {"type": "path", "required": True},
            "staging_dir": {"type": "path", "required": True},
            "base_image": {"type": "str", "default": "debian:trixie-slim"},
            "extra_ca_file": {"type": "path", "default": ""},
            "refresh_packages": {"type": "bool", "default": False},
            "docker": {"type": "str", "default": "docker"},
        },
        supports_check_mode=True,
    )
    p = module.params
    docker = module.get_bin_path(p["docker"], required=True)
    try:
        checkout = read_checkout(p["checkout"])
        extra_ca = read_extra_ca(p["extra_ca_file"])
        recipe_dir = Path(p["recipe_dir"])
        recipe = recipe_hash(recipe_dir, p["base_image"])
        ref = f"{p['repository']}:{checkout.tag(recipe)}"
        result = {
            "image": ref,
            "version": checkout.version,
            "source_id": checkout.source_id,
            "built": False,
            "build_seconds": 0.0,
            "package_changes": [],
        }
        build_args = {
            "BASE_IMAGE": p["base_image"],
            "PRPM_VERSION": checkout.version,
            "PRPM_SOURCE_ID": checkout.source_id,
            # A new value on every build: the runtime stage installs the current Debian packages,
            # never a cached layer of an older build on the same base.
            "PACKAGES_REFRESH": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        }
        if image_recipe(docker, ref) == recipe:
            # Check mode cannot know what a rebuild would install: it reports no change.
            if not p["refresh_packages"] or module.check_mode:
                module.exit_json(changed=False, **result)
            started = time.monotonic()
            context = stage_context(checkout, recipe_dir, extra_ca, Path(p["staging_dir"]))
            result["package_changes"] = refresh(docker, context, ref, recipe, build_args)
            result["built"] = bool(result["package_changes"])
            result["build_seconds"] = round(time.monotonic() - started, 1)
            module.exit_json(changed=result["built"], **result)
        result["built"] = True
        if module.check_mode:
            module.exit_json(changed=True, **result)
        started = time.monotonic()
        context = stage_context(checkout, recipe_dir, extra_ca, Path(p["staging_dir"]))
        build_image(docker, context, ref, recipe, build_args)
        result["build_seconds"] = round(time.monotonic() - started, 1)
    except (CheckoutError, PackagesError) as exc:
        module.fail_json(msg=f"Cannot build the PRPM registry from '{p['checkout']}': {exc}")
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
