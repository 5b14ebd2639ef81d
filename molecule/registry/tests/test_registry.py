# SPDX-License-Identifier: GPL-3.0-or-later
"""The real PRPM registry on the converged host, driven by PRPM's own `prpm` CLI.

The CLI is built from the same checkout (PRPM_SOURCE) on this machine and talks to the
registry through Caddy over HTTPS, trusting Caddy's local CA. The tests run in file order:
each builds on the state the previous one left (a user, a published package, a backup).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import ssl
import subprocess
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import HTTPS_PORT, run_playbook

SOURCE = Path(os.environ.get("PRPM_SOURCE", ""))
URL = f"https://localhost:{HTTPS_PORT}"
PROJECT_ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
WORK = PROJECT_ROOT / ".ansible" / "registry-scenario"
COMPOSE = "docker compose --project-directory /opt/prpm"
USER = "molecule-user"
PACKAGE = "hobby-rules"
CONTENT = "# Hobby rules\n\nKeep the registry small, patched and backed up. Ünïcödé stays intact.\n"

pytestmark = pytest.mark.skipif(
    not (SOURCE / "packages" / "cli").is_dir(), reason="PRPM_SOURCE is not set"
)


def sh(host, command: str) -> str:
    result = host.run(command)
    assert result.rc == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def ca_bundle(host) -> Path:
    """This machine's CA bundle plus Caddy's local root CA, for the CLI (Node) and urllib."""
    root = sh(host, f"{COMPOSE} exec -T caddy cat /data/caddy/pki/authorities/local/root.crt")
    WORK.mkdir(parents=True, exist_ok=True)
    bundle = WORK / "ca-bundle.pem"
    system = Path("/etc/ssl/certs/ca-certificates.crt")
    bundle.write_text(
        (system.read_text() if system.exists() else "") + "\n" + root, encoding="utf-8"
    )
    return bundle


def cli_build_dir() -> Path:
    """The CLI built from a copy of the checkout, reused while the checkout is unchanged."""
    digest = hashlib.sha256()
    for rel in ("package-lock.json", "packages/cli/package.json", "packages/cli/src"):
        path = SOURCE / rel
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(SOURCE)).encode() + file.read_bytes())
    target = WORK / f"cli-{digest.hexdigest()[:12]}"
    entry = target / "packages" / "cli" / "dist" / "index.js"
    if entry.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        SOURCE, target, ignore=shutil.ignore_patterns("node_modules", "dist", ".git"), symlinks=True
    )
    workspaces = [
        "packages/types",
        "packages/converters",
        "packages/registry-client",
        "packages/cli",
    ]
    npm = ["npm", "--no-audit", "--no-fund", "--no-update-notifier"]
    flags = [arg for ws in workspaces for arg in ("-w", ws)]
    subprocess.run([*npm, "ci", *flags], cwd=target, check=True, capture_output=True)
    for ws in workspaces:
        subprocess.run(
            [*npm, "run", "build", "-w", ws], cwd=target, check=True, capture_output=True
        )
    assert entry.exists()
    return target


@pytest.fixture(scope="module")
def cli(ca_bundle, tmp_path_factory):
    """Run `prpm` as a user on this machine: its own HOME (~/.prpmrc), the registry URL."""
    build = cli_build_dir()
    home = tmp_path_factory.mktemp("prpm-home")

    def run(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(
            os.environ,
            HOME=str(home),
            PRPM_REGISTRY_URL=URL,
            NODE_EXTRA_CA_CERTS=str(ca_bundle),
            PRPM_TELEMETRY_DISABLED="1",
            NO_COLOR="1",
        )
        proc = subprocess.run(
            ["node", str(build / "packages" / "cli" / "dist" / "index.js"), *args],
            cwd=cwd or home,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        if check:
            assert proc.returncode == 0, (
                f"prpm {' '.join(args)}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    run.home = home  # type: ignore[attr-defined]
    return run


def api(ca_bundle: Path, path: str, body: dict | None = None, token: str = "") -> tuple[int, dict]:
    # Only the scenario's own https://localhost URL.
    req = urllib.request.Request(f"{URL}{path}", method="POST" if body is not None else "GET")  # noqa: S310
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = json.dumps(body).encode() if body is not None else None
    ctx = ssl.create_default_context(cafile=str(ca_bundle))
    try:
        with urllib.request.urlopen(req, data=data, context=ctx, timeout=30) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def install_and_read(cli, tmp_path: Path) -> bytes:
    tmp_path.mkdir(parents=True, exist_ok=True)
    cli("install", f"@{USER}/{PACKAGE}", cwd=tmp_path)
    found = list(tmp_path.rglob(f"{PACKAGE}*.md"))
    assert found, (
        f"prpm install wrote no {PACKAGE}*.md under {tmp_path}: {list(tmp_path.rglob('*'))}"
    )
    return found[0].read_bytes()


def test_health_reports_database_and_redis(ca_bundle):
    status, body = api(ca_bundle, "/health")
    assert status == 200, body
    assert body["status"] == "ok"
    assert body["services"]["database"] == "ok" and body["services"]["redis"] == "ok", body


def test_runs_the_image_built_from_the_checkout(host):
    image = sh(host, f"{COMPOSE} ps --format '{{{{.Image}}}}' registry").strip()
    assert image.startswith("localhost/prpm/registry:0."), image
    labels = json.loads(
        sh(host, f"docker image inspect --format '{{{{json .Config.Labels}}}}' {image}")
    )
    assert labels["org.opencontainers.image.title"] == "PRPM registry"
    user = sh(host, f"{COMPOSE} exec -T registry id -u").strip()
    assert user != "0", "the registry runs as root"
    assert (
        sh(
            host,
            f"{COMPOSE} exec -T postgres psql -U prpm -d prpm_registry -Atc "  # noqa: S608
            "\"SELECT extname FROM pg_extension WHERE extname = 'vector'\"",
        ).strip()
        == "vector"
    )


def test_register_publish_search_info_install(cli, ca_bundle, tmp_path):
    status, body = api(
        ca_bundle,
        "/api/v1/auth/register",
        {"username": USER, "email": f"{USER}@example.org", "password": "hobby-pass-123"},
    )
    assert status in (200, 201), body
    rc = {"registryUrl": URL, "token": body["token"], "username": USER, "telemetryEnabled": False}
    (cli.home / ".prpmrc").write_text(json.dumps(rc), encoding="utf-8")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / f"{PACKAGE}.md").write_text(CONTENT, encoding="utf-8")
    manifest = {
        "name": PACKAGE,
        "version": "1.0.0",
        "description": "Rules for running a hobby registry.",
        "format": "generic",
        "files": [f"{PACKAGE}.md"],
    }
    (package / "prpm.json").write_text(json.dumps(manifest), encoding="utf-8")
    cli("publish", cwd=package)
    search = cli("search", PACKAGE)
    assert PACKAGE in search.stdout, search.stdout
    info = cli("info", f"@{USER}/{PACKAGE}")
    assert "1.0.0" in info.stdout, info.stdout
    assert install_and_read(cli, tmp_path / "install") == CONTENT.encode()
    again = cli("publish", cwd=package, check=False)
    assert again.returncode != 0 and "already exists" in (again.stdout + again.stderr).lower()


def test_package_file_is_in_local_storage_and_downloads_need_a_signature(host, ca_bundle):
    files = sh(
        host, "find /var/lib/docker/volumes/prpm_packages/_data -type f ! -name '*.meta.json'"
    )
    assert PACKAGE in files, files
    ctx = ssl.create_default_context(cafile=str(ca_bundle))
    key = f"prpm-packages/packages/%40{USER}/{PACKAGE}/1.0.0/package.tar.gz"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{URL}/_storage/{key}", context=ctx, timeout=10)  # noqa: S310
    assert err.value.code == 403


def _source_copy(name: str, edit) -> Path:
    """A copy of the checkout with one change: a new version of the registry's sources."""
    target = WORK / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(
        SOURCE,
        target,
        ignore=shutil.ignore_patterns("node_modules", "dist", ".git", "webapp"),
        symlinks=True,
    )
    edit(target / "packages" / "registry" / "src" / "index.ts")
    return target


def _deployed_image(host) -> str:
    return sh(host, f"{COMPOSE} ps --format '{{{{.Image}}}}' registry").strip()


def test_second_version_deploys_and_keeps_the_package(cli, host, tmp_path):
    before = _deployed_image(host)
    v2 = _source_copy(
        "source-v2",
        lambda index: index.write_text(index.read_text() + "\n// prpm.hobby test: v2\n"),
    )
    run = run_playbook("deploy.yml", extra_vars={"registry_stack_build_context": str(v2)})
    assert run.rc == 0, run.output[-3000:]
    after = _deployed_image(host)
    assert after != before and after.startswith("localhost/prpm/registry:0.")
    assert install_and_read(cli, tmp_path / "v2") == CONTENT.encode()


def test_registry_that_fails_at_start_rolls_back_and_package_still_installs(cli, host, tmp_path):
    before = _deployed_image(host)
    broken = _source_copy(
        "source-broken", lambda index: index.write_text(index.read_text() + "\nprocess.exit(3);\n")
    )
    run = run_playbook(
        "deploy.yml",
        extra_vars={
            "registry_stack_build_context": str(broken),
            "registry_stack_health_timeout": 45,
        },
    )
    assert run.rc != 0
    assert "ROLLED BACK" in run.output, run.output[-3000:]
    assert _deployed_image(host) == before
    assert install_and_read(cli, tmp_path / "after-rollback") == CONTENT.encode()


def test_backup_destroy_restore_installs_the_same_bytes(cli, host, tmp_path):
    backup = run_playbook("backup.yml")
    assert backup.rc == 0, backup.output[-3000:]
    sh(host, f"{COMPOSE} stop registry storage postgres")
    sh(host, f"{COMPOSE} rm -f storage postgres")
    sh(host, "docker volume rm prpm_pgdata prpm_packages")
    restore = run_playbook("restore.yml")
    assert restore.rc == 0, restore.output[-3000:]
    assert "package files snapshot" in restore.output
    assert install_and_read(cli, tmp_path / "restored") == CONTENT.encode()


def test_drill_restores_database_and_package_files(host):
    out = sh(host, "/usr/local/sbin/prpm-backup drill")
    result = json.loads(out.strip().splitlines()[-1])
    assert result["rows"] > 0
    assert result["package_objects"] >= 1


def test_package_tarball_holds_the_published_file(host, tmp_path):
    """The object in storage is the CLI's tarball with the file as published."""
    path = sh(
        host,
        f"find /var/lib/docker/volumes/prpm_packages/_data -type f -name '*{PACKAGE}*1.0.0*' "
        "! -name '*.meta.json'",
    )
    blob = host.file(path.strip().splitlines()[0]).content
    archive = tmp_path / "package.tar.gz"
    archive.write_bytes(blob)
    with tarfile.open(archive) as tar:
        names = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        member = next(m for n, m in names.items() if n.endswith(f"{PACKAGE}.md"))
        assert tar.extractfile(member).read() == CONTENT.encode()
