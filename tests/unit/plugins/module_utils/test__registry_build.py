# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils import _registry_build as rb

ROOT = Path(__file__).resolve().parents[4]
RECIPE = ROOT / "roles" / "registry_stack" / "files" / "registry-image"


def make_checkout(
    root: Path, registry_name: str = "@pr-pm/registry", version: str = "0.1.0"
) -> Path:
    (root / "package.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(
        json.dumps({"name": "prpm-monorepo", "workspaces": ["packages/*"]})
    )
    (root / "package-lock.json").write_text("{}")
    (root / "tsconfig.json").write_text("{}")
    for name in ("types", "converters", "registry", "cli"):
        pkg = root / "packages" / name
        (pkg / "src").mkdir(parents=True)
        manifest = {"name": f"@pr-pm/{name}", "version": "1.0.0"}
        if name == "registry":
            manifest = {
                "name": registry_name,
                "version": version,
                "scripts": {"build": "tsc", "start": "node dist/index.js", "migrate": "node m.js"},
            }
            (pkg / "migrations").mkdir()
            (pkg / "migrations" / "001.sql").write_text("SELECT 1;")
        (pkg / "package.json").write_text(json.dumps(manifest))
        (pkg / "src" / "index.ts").write_text(f"export const name = '{name}';\n")
    return root


def test_valid_checkout_is_described(tmp_path: Path) -> None:
    checkout = rb.read_checkout(str(make_checkout(tmp_path / "prpm")))
    assert checkout.version == "0.1.0"
    assert checkout.commit is None
    assert checkout.source_id.startswith("src.") and len(checkout.source_id) == 16
    assert checkout.tag("abcdef0123") == f"0.1.0-{checkout.source_id}-rabcdef"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: (r / "package.json").write_text("{}"), "declares no workspaces"),
        (lambda r: (r / "package-lock.json").unlink(), "package-lock.json is missing"),
        (
            lambda r: (r / "packages/registry/package.json").write_text('{"name": "other"}'),
            "not a PRPM checkout",
        ),
        (
            lambda r: (r / "packages/registry/package.json").write_text("not json"),
            "not readable JSON",
        ),
        (lambda r: (r / "packages/types/package.json").unlink(), "types/package.json is missing"),
        (
            lambda r: (r / "packages/registry/package.json").write_text(
                json.dumps(
                    {
                        "name": "@pr-pm/registry",
                        "version": "0.1.0",
                        "scripts": {"build": "x", "start": "y"},
                    }
                )
            ),
            "no 'migrate' script",
        ),
    ],
)
def test_bad_checkouts_are_refused_with_the_reason(tmp_path: Path, mutate, message: str) -> None:
    root = make_checkout(tmp_path / "prpm")
    mutate(root)
    with pytest.raises(rb.CheckoutError, match=message):
        rb.read_checkout(str(root))


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(rb.CheckoutError, match="is not a directory"):
        rb.read_checkout(str(tmp_path / "nowhere"))


def test_source_change_changes_the_tag_and_build_output_does_not(tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "prpm")
    first = rb.read_checkout(str(root))
    (root / "packages/registry/node_modules/x").mkdir(parents=True)
    (root / "packages/registry/node_modules/x/index.js").write_text("junk")
    (root / "packages/registry/dist").mkdir()
    (root / "packages/registry/dist/index.js").write_text("built")
    assert rb.read_checkout(str(root)).source_id == first.source_id
    (root / "packages/registry/src/index.ts").write_text("export const name = 'v2';\n")
    assert rb.read_checkout(str(root)).source_id != first.source_id


def test_staged_context_splits_manifests_from_sources(tmp_path: Path) -> None:
    checkout = rb.read_checkout(str(make_checkout(tmp_path / "prpm")))
    dest = rb.stage_context(checkout, RECIPE, b"", tmp_path / "staging")
    assert dest == tmp_path / "staging" / "context"
    assert (dest / "Dockerfile").is_file() and (dest / "prpm-registry").is_file()
    assert (dest / "extra-ca.pem").read_bytes() == b""
    assert (dest / "manifests/package-lock.json").is_file()
    assert (dest / "manifests/packages/cli/package.json").is_file()
    assert (dest / "sources/packages/registry/src/index.ts").is_file()
    assert (dest / "sources/packages/registry/migrations/001.sql").is_file()
    assert not (dest / "sources/packages/cli").exists()
    assert not (dest / "sources/packages/registry/package.json").exists()


def test_recipe_hash_follows_recipe_and_base(tmp_path: Path) -> None:
    base = rb.recipe_hash(RECIPE, "debian:trixie-slim")
    assert base == rb.recipe_hash(RECIPE, "debian:trixie-slim")
    assert base != rb.recipe_hash(RECIPE, "localhost/prpm-hobby/host:debian13")
    changed = tmp_path / "recipe"
    shutil.copytree(RECIPE, changed)
    (changed / "Dockerfile").write_text((changed / "Dockerfile").read_text() + "\n# changed\n")
    assert base != rb.recipe_hash(changed, "debian:trixie-slim")


def test_staging_refuses_a_directory_it_does_not_own(tmp_path: Path) -> None:
    checkout = rb.read_checkout(str(make_checkout(tmp_path / "prpm")))
    foreign = tmp_path / "src"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(rb.CheckoutError, match=r"not empty and was not made by prpm\.hobby"):
        rb.stage_context(checkout, RECIPE, b"", foreign)
    assert (foreign / "precious.txt").read_text() == "keep me"
    owned = tmp_path / "owned"
    rb.stage_context(checkout, RECIPE, b"", owned)
    rb.stage_context(checkout, RECIPE, b"", owned)  # again: its own directory, recreated
    assert (owned / "context" / "Dockerfile").is_file()


def test_env_files_never_reach_the_context_and_plus_is_not_in_tags(tmp_path: Path) -> None:
    root = make_checkout(tmp_path / "prpm", version="1.2.3+build.7")
    (root / "packages/registry/.env.production.local").write_text("SECRET=1")
    checkout = rb.read_checkout(str(root))
    dest = rb.stage_context(checkout, RECIPE, b"", tmp_path / "staging")
    assert not list(dest.rglob(".env*"))
    assert checkout.tag("abcdef").startswith("1.2.3_build.7-")


def test_failing_build_reports_its_last_lines(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho step 1; echo 'npm ERR! tsc failed' >&2; exit 7\n")
    fake.chmod(0o755)
    with pytest.raises(rb.CheckoutError, match=r"(?s)failed \(exit 7\).*npm ERR! tsc failed"):
        rb.build_image(str(fake), tmp_path, "localhost/x:1", "r", {})


def test_extra_ca_must_hold_a_certificate(tmp_path: Path) -> None:
    assert rb.read_extra_ca("") == b""
    bad = tmp_path / "ca.pem"
    bad.write_text("not a cert")
    with pytest.raises(rb.CheckoutError, match="holds no PEM certificate"):
        rb.read_extra_ca(str(bad))
    with pytest.raises(rb.CheckoutError, match="not readable"):
        rb.read_extra_ca(str(tmp_path / "missing.pem"))
