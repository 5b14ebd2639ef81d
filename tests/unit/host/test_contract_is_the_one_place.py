# SPDX-License-Identifier: GPL-3.0-or-later
"""The stack contract is the one place the host programs learn the stack's names from.

Renamed in the contract (the database service, its volume, the storage service, the project,
the registry and the proxy), backup, restore, drill and the patch run's stop, start and health
use the new names and never the default ones; and the programs' source holds none of them.
"""

from __future__ import annotations

import argparse
import io
import json
import tokenize
from pathlib import Path
from typing import Any

import prpm_backup
import prpm_patch
import pytest
from host_fakes import ROOT, FakeHost, healthy_rows, ps_rows, write_json

RENAMED: dict[str, Any] = {
    "schema": 1,
    "dir": "/srv/acme",
    "project": "acme",
    "compose_file": "/srv/acme/stack.yml",
    "services": ["db", "cache", "blobs", "api", "edge"],
    "data_services": ["db", "cache", "blobs"],
    "oneshot_services": ["schema-upgrade"],
    "registry_service": "api",
    "database": {
        "service": "db",
        "name": "acme_registry",
        "user": "acme",
        "volume": "pg_main",
        "path": "/var/lib/docker/volumes/acme_pg_main/_data",
    },
    "package_files": {"service": "blobs", "volume": "objects", "path": "<tmp>"},
    "backup_paths": ["/srv/acme", "/var/lib/docker/volumes/acme_edge_data/_data"],
    "health": {
        "url": "https://registry.acme.test/healthz",
        "validate_certs": True,
        "local_url": "https://127.0.0.1:8443/healthz",
        "server_name": "registry.acme.test",
    },
    "storage": "local",
}
COMPOSE = ["docker", "compose", "-f", "/srv/acme/stack.yml", "-p", "acme"]
# What the default stack calls its parts; none may reach a command when the contract renames them.
DEFAULT_NAMES = {"postgres", "redis", "storage", "registry", "caddy", "migrate", "pgdata", "prpm"}
DEFAULT_FRAGMENTS = ("/opt/prpm", "prpm_registry", "prpm_pgdata", "caddy_data", "prpm_packages")
DB_ID = "1111aaaa" + "0" * 56
PKG_ID = "2222bbbb" + "0" * 56


def assert_no_default_names(fake: FakeHost) -> None:
    for _kind, argv, _env in fake.calls:
        words = set(argv)
        assert not words & DEFAULT_NAMES, argv
        assert not [w for w in argv for f in DEFAULT_FRAGMENTS if f in w], argv


@pytest.fixture
def renamed(tmp_path: Path) -> dict[str, Any]:
    contract = json.loads(json.dumps(RENAMED))
    contract["package_files"]["path"] = str(tmp_path / "objects")
    write_json(tmp_path / "stack.json", contract)
    return contract


@pytest.fixture
def backup(tmp_path: Path, renamed: dict[str, Any], fake: FakeHost) -> prpm_backup.Backup:
    data = Path(renamed["package_files"]["path"]) / "bucket" / "data"
    data.mkdir(parents=True)
    (data / "object").write_bytes(b"x")
    db = {"id": DB_ID, "short_id": DB_ID[:8], "time": "2025-01-01T03:00:00Z"}
    db["tags"] = ["db", "rows:public.t=1"]
    pkg = {"id": PKG_ID, "short_id": PKG_ID[:8], "time": "2025-01-01T03:00:01Z"}
    pkg["tags"] = ["packages", f"db={DB_ID}", "objects=1"]
    fake.on("snapshots", "db", out=json.dumps([db]))
    fake.on("snapshots", "packages", out=json.dumps([pkg]))
    fake.on("psql", out="public.t\t1\n")
    fake.on(
        "--stdin-from-command", out=json.dumps({"message_type": "summary", "snapshot_id": DB_ID})
    )
    service = {"image": "acme/pg:17", "command": ["pg-server", "-c", "max_connections=9"]}
    fake.on("config", "--format", out=json.dumps({"services": {"db": service}}))

    def restore(argv: list[str]) -> str:
        target = argv[argv.index("--target") + 1]
        if target != "/":
            copy = Path(target + renamed["package_files"]["path"]) / "bucket" / "data"
            copy.mkdir(parents=True)
            (copy / "object").write_bytes(b"x")
        return ""

    fake.on("restore", "--target", out=restore)
    cfg = {
        "host_tag": "h",
        "password_file": "/etc/prpm-backup/restic-password",
        "repositories": [{"name": "local", "url": "/var/backups/acme"}],
        "extra_paths": [],
        "retention": {"hourly": 1, "daily": 1, "weekly": 1, "monthly": 1},
        "check_subset": "1%",
        "rpo_minutes": 60,
        "ping_urls": {},
    }
    return prpm_backup.Backup(cfg, tmp_path / "stack.json", tmp_path / "state")


def test_backup_db_dumps_the_renamed_database(fake: FakeHost, backup: prpm_backup.Backup) -> None:
    prpm_backup.cmd_db(backup, argparse.Namespace(repo=None))
    (dump,) = fake.find("--stdin-from-command")
    assert dump[dump.index("--") + 1 :] == [
        *COMPOSE, "exec", "-T", "db", "pg_dump", "-U", "acme", "-d", "acme_registry", "-Fc",
    ]  # fmt: skip
    assert fake.find("--tag", "packages")[0][-1] == backup.packages_path
    assert_no_default_names(fake)


def test_restore_uses_the_renamed_services(fake: FakeHost, backup: prpm_backup.Backup) -> None:
    prpm_backup.cmd_restore(backup, argparse.Namespace(repo=None, snapshot="latest"))
    compose = [a[len(COMPOSE) :] for a in fake.argvs("run") if a[: len(COMPOSE)] == COMPOSE]
    assert [c for c in compose if c[0] != "exec"] == [
        ["stop", "api"],
        ["up", "-d", "--wait", "db"],
        ["stop", "blobs"],
        ["create", "--no-recreate", "blobs"],
        ["up", "-d", "--wait", "--no-deps", "blobs"],
        ["up", "-d", "--wait", "--no-deps", "api"],
    ]
    (pipe,) = fake.argvs("pipe")
    assert pipe[pipe.index("|") + 1 :][:9] == [*COMPOSE, "exec", "-T", "db"]
    assert_no_default_names(fake)


def test_drill_uses_the_renamed_database_and_its_image(
    fake: FakeHost, backup: prpm_backup.Backup
) -> None:
    prpm_backup.cmd_drill(backup, argparse.Namespace(repo=None, snapshot="latest"))
    (start,) = fake.find("docker", "run")
    assert "POSTGRES_USER=acme" in start
    assert "POSTGRES_DB=acme_registry" in start
    # The stack's image and server program, from the compose file of the renamed service.
    assert start[-6:] == ["acme/pg:17", "pg-server", "-c", "shared_buffers=32MB", "-c", "fsync=off"]
    assert fake.find("config", "--format")[0] == [*COMPOSE, "config", "--format", "json"]
    assert_no_default_names(fake)


def test_patch_stops_starts_and_checks_the_renamed_stack(
    fake: FakeHost, renamed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patch = prpm_patch.Patch(
        {"health_timeout": 30, "lock_timeout": 1, "autoremove": False, "backup": False,
         "reboot": True, "ping_url": ""},
        tmp_path / "stack.json",
        tmp_path / "state",
    )  # fmt: skip
    prpm_patch.cmd_stop_stack(patch, argparse.Namespace())
    prpm_patch.cmd_start_stack(patch, argparse.Namespace())
    up = [*COMPOSE, "up", "--detach", "--no-recreate", "--no-deps"]
    assert fake.argvs() == [
        [*COMPOSE, "stop", "--timeout", "5", "api", "edge"],
        [*COMPOSE, "stop", "--timeout", "60", "db", "cache", "blobs"],
        [*up, "--wait", "--wait-timeout", "30", "db", "cache", "blobs"],
        [*up, "api", "edge"],
    ]
    probed: list[tuple[str, int, str, str]] = []

    class Connection:
        def __init__(self, address: str, port: int, server_name: str, **_kw: Any) -> None:
            probed.append((address, port, server_name))

        def request(self, _method: str, path: str, headers: dict[str, str]) -> None:
            probed.append((path, headers["Host"]))

        def getresponse(self) -> Any:
            return type("R", (), {"status": 200, "read": lambda _s, _n: b'{"status":"ok"}'})()

        def close(self) -> None:
            return None

    monkeypatch.setattr(prpm_patch.prpm_stack, "_LoopbackHTTPS", Connection)
    fake.on("ps", out=ps_rows(healthy_rows(renamed)))
    result = patch.stack.health()
    assert result["ok"] is True
    assert set(result["services"]) == {"db", "cache", "blobs", "api", "edge", "schema-upgrade"}
    assert probed == [("127.0.0.1", 8443, "registry.acme.test"), ("/healthz", "registry.acme.test")]
    fake.on("ps", out=ps_rows(healthy_rows(RENAMED | {"services": ["db", "api"]})))
    missing = patch.stack.health()
    assert (missing["ok"], missing["services"]["blobs"]) == (False, "missing")
    assert_no_default_names(fake)


# --- The source -------------------------------------------------------------------------------
PROGRAMS = [
    ROOT / "roles" / "backups" / "files" / "prpm_backup.py",
    ROOT / "roles" / "patching" / "files" / "prpm_patch.py",
    ROOT / "roles" / "registry_stack" / "files" / "prpm_stack.py",
]
# The default stack's names (case matters: POSTGRES_USER is the database image's interface,
# PostgreSQL the product, neither a name of this stack).
FORBIDDEN = ("postgres", "pgdata", "/opt/prpm", "caddy_data", "'registry'", '"registry"')


def code_without_comments(path: Path) -> str:
    tokens = tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline)
    return " ".join(t.string for t in tokens if t.type != tokenize.COMMENT)


@pytest.mark.parametrize("path", PROGRAMS, ids=lambda p: p.name)
def test_no_stack_name_in_the_programs(path: Path) -> None:
    code = code_without_comments(path)
    assert [name for name in FORBIDDEN if name in code] == []


def test_the_source_check_sees_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('# postgres in a comment is fine\nSERVICE = "registry"\n', encoding="utf-8")
    code = code_without_comments(sample)
    assert [name for name in FORBIDDEN if name in code] == ['"registry"']
