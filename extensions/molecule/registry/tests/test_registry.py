# SPDX-License-Identifier: GPL-3.0-or-later
"""The real PRPM registry on the converged host, driven by PRPM's own `prpm` CLI.

The CLI is built from the same checkout (PRPM_SOURCE) on this machine and talks to the
registry through Caddy over HTTPS, trusting Caddy's local CA. The tests run in file order:
each builds on the state the previous one left (a user, a published package, a backup).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import HTTPS_PORT, run_playbook

PROJECT_ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
sys.path.insert(0, str(PROJECT_ROOT / "tools"))
import prpm_cli  # noqa: E402 (tools/ is not a package)

SOURCE = Path(os.environ.get("PRPM_SOURCE", ""))
URL = f"https://localhost:{HTTPS_PORT}"
WORK = PROJECT_ROOT / ".ansible" / "registry-scenario"
COMPOSE = "docker compose --project-directory /opt/prpm"
USER = "molecule-user"
PACKAGE = "hobby-rules"
CONTENT = "# Hobby rules\n\nKeep the registry small, patched and backed up. Ünïcödé stays intact.\n"


@pytest.fixture(scope="module", autouse=True)
def _checkout() -> None:
    """Never skipped: `make test` leaves this scenario out (and says so) without a checkout."""
    assert (SOURCE / "packages" / "cli").is_dir(), f"PRPM_SOURCE={SOURCE} is not a PRPM checkout"


def sh(host, command: str) -> str:
    result = host.run(command)
    assert result.rc == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def ca_bundle(host) -> Path:
    """This machine's CA bundle plus Caddy's local root CA, for the CLI (Node) and urllib."""
    root = sh(host, f"{COMPOSE} exec -T caddy cat {prpm_cli.CADDY_ROOT}")
    return prpm_cli.ca_bundle(root, WORK / "ca-bundle.pem")


@pytest.fixture(scope="module")
def cli(ca_bundle, tmp_path_factory) -> prpm_cli.Client:
    """PRPM's CLI built from the same checkout, run as a user on this machine."""
    entry = prpm_cli.build(SOURCE, WORK)
    return prpm_cli.Client(entry, URL, tmp_path_factory.mktemp("prpm-home"), ca_bundle)


def ok(proc) -> str:
    assert proc.returncode == 0, f"rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def install_and_read(cli, tmp_path: Path) -> bytes:
    tmp_path.mkdir(parents=True, exist_ok=True)
    ok(cli.run("install", f"@{USER}/{PACKAGE}", cwd=tmp_path))
    found = list(tmp_path.rglob(f"{PACKAGE}*.md"))
    assert found, (
        f"prpm install wrote no {PACKAGE}*.md under {tmp_path}: {list(tmp_path.rglob('*'))}"
    )
    return found[0].read_bytes()


def test_check_mode_on_the_converged_host_reports_nothing():
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == 0, run.output[-3000:]


def test_health_reports_database_and_redis(ca_bundle):
    status, body = prpm_cli.api(URL, "/health", ca_bundle)
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


def test_register_publish_search_info_install(cli, tmp_path):
    cli.register(USER, "hobby-pass-123")
    package = tmp_path / "pkg"
    ok(cli.publish(package, PACKAGE, "1.0.0", {f"{PACKAGE}.md": CONTENT}))
    found = ok(cli.run("search", PACKAGE))
    assert f"@{USER}/{PACKAGE}" in found and "no packages found" not in found.lower(), found
    assert "1.0.0" in ok(cli.run("info", f"@{USER}/{PACKAGE}"))
    assert install_and_read(cli, tmp_path / "install") == CONTENT.encode()
    again = cli.run("publish", cwd=package)
    assert again.returncode != 0
    assert "already exists" in (again.stdout + again.stderr).lower()


def test_package_file_is_in_local_storage_and_downloads_need_a_signature(host, ca_bundle):
    files = sh(host, "find /var/lib/docker/volumes/prpm_packages/_data -type f -path '*/data/*'")
    assert PACKAGE in files, files
    ctx = ssl.create_default_context(cafile=str(ca_bundle))
    key = f"prpm-packages/packages/%40{USER}/{PACKAGE}/1.0.0/package.tar.gz"
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{URL}/_storage/{key}", context=ctx, timeout=10)  # noqa: S310
    assert err.value.code == 403  # unsigned: the storage service refuses it
    put = urllib.request.Request(f"{URL}/_storage/{key}", data=b"x", method="PUT")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(put, context=ctx, timeout=10)  # noqa: S310
    assert err.value.code == 405  # Caddy lets reads through only


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


def test_refresh_rebuilds_what_runs_from_current_packages_and_refuses_another_checkout(host):
    """The patch run's refresh: the inventory's checkout (PRPM_SOURCE) is not the version that
    runs (source-v2 is), so it is refused before any build; with the running version's checkout
    the registry's runtime stage is rebuilt from the current Debian packages and kept, and
    deployed, only when they changed."""
    running = _deployed_image(host)
    assert re.search(r"-id[0-9a-f]{12}$", running), running
    refused = run_playbook("refresh.yml")
    assert refused.rc != 0
    text = " ".join(refused.output.split())
    assert "the inventory names other versions than the host runs: registry (" in text, text[-3000:]
    assert refused.changed() == 0
    assert _deployed_image(host) == running

    run = run_playbook(
        "refresh.yml", "-v", extra_vars={"registry_stack_build_context": str(WORK / "source-v2")}
    )
    assert run.rc == 0, run.output[-3000:]
    # The rebuild task's own result (the check-mode probe before it reports package_changes too).
    rebuild = run.output.split("Rebuild the registry from its checkout with the current Debian")[1]
    rebuild = rebuild.split("TASK [")[0]
    assert "package_changes:" in rebuild, rebuild[-2000:]
    if re.search(r"package_changes: \[\]", rebuild):
        # Debian published nothing for these packages since the converge: the rebuild was
        # dropped and nothing was deployed.
        assert run.changed() == 0, run.output[-3000:]
        assert _deployed_image(host) == running
    else:
        after = _deployed_image(host)
        assert after != running and re.sub(r"-id[0-9a-f]{12}$", "", after) == re.sub(
            r"-id[0-9a-f]{12}$", "", running
        )
    print(f"refresh: {running} -> {_deployed_image(host)}")


def test_registry_that_fails_at_start_never_serves_and_package_still_installs(cli, host, tmp_path):
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
    text = " ".join(run.output.split())
    # It exits at start: the switch removes it before Caddy ever points at it.
    assert "NEVER RECEIVED A REQUEST" in text, run.output[-3000:]
    assert "did not turn healthy (exited" in text, run.output[-3000:]
    assert _deployed_image(host) == before
    assert install_and_read(cli, tmp_path / "after-rollback") == CONTENT.encode()


def test_presigned_signatures_stay_out_of_caddys_log(host):
    logs = sh(host, f"{COMPOSE} logs --no-color caddy")
    assert "X-Amz-Signature=REDACTED" in logs or "X-Amz-Signature" not in logs
    assert not re.search(r"X-Amz-Signature=[0-9a-f]{64}", logs)


def test_checkout_that_fails_to_build_changes_nothing(host):
    before = _deployed_image(host)
    broken = _source_copy(
        "source-syntax-error",
        lambda index: index.write_text(index.read_text() + "\nconst = ;\n"),
    )
    run = run_playbook("deploy.yml", extra_vars={"registry_stack_build_context": str(broken)})
    assert run.rc != 0
    assert "docker build of localhost/prpm/registry:" in run.output, run.output[-3000:]
    assert run.changed() == 0
    assert _deployed_image(host) == before


def test_postgres_image_without_pgvector_is_refused_and_rolled_back(cli, host, tmp_path):
    before = sh(host, f"{COMPOSE} ps --format '{{{{.Image}}}}' postgres").strip()
    run = run_playbook(
        "deploy.yml",
        extra_vars={
            "registry_stack_postgres_image": "localhost/prpm-hobby/postgres:17-no-pgvector"
        },
    )
    assert run.rc != 0
    text = " ".join(run.output.split())
    assert "has no pgvector" in text and "ROLLED BACK" in text, run.output[-3000:]
    assert "NEVER RECEIVED A REQUEST" not in text, run.output[-3000:]
    # The reason is in the failure message itself, not only in the failed task's output.
    assert "FAILED at Ensure the registry's database exists with pgvector" in text
    assert re.search(r"must ship pgvector\): .{0,300}has no pgvector", text), text[-3000:]
    assert sh(host, f"{COMPOSE} ps --format '{{{{.Image}}}}' postgres").strip() == before
    assert install_and_read(cli, tmp_path / "after-pgvector") == CONTENT.encode()


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
        f"find /var/lib/docker/volumes/prpm_packages/_data -type f -path '*/data/*' "
        f"-name '*{PACKAGE}*1.0.0*'",
    )
    blob = host.file(path.strip().splitlines()[0]).content
    archive = tmp_path / "package.tar.gz"
    archive.write_bytes(blob)
    with tarfile.open(archive) as tar:
        names = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
        member = next(m for n, m in names.items() if n.endswith(f"{PACKAGE}.md"))
        assert tar.extractfile(member).read() == CONTENT.encode()
