# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench, section 5: prpm-backup db and restore of a ~200 MB database, vs bare pg_dump.

Also run alone on an existing converged host: `python bench/run.py --backups-only [container]`.
"""

from __future__ import annotations

import json
import os
import time

from common import log, sh

BACKUP_ROWS = int(os.environ.get("PRPM_BENCH_BACKUP_ROWS", "200000"))


def backup_restore(container: str) -> dict:
    """prpm-backup db + restore of a generated ~200 MB database, vs bare pg_dump | pg_restore."""
    compose = "docker compose -f /opt/prpm/compose.yaml -p prpm"

    def on_host(script: str) -> float:
        start = time.monotonic()
        sh(["docker", "exec", container, "sh", "-c", script])
        return round(time.monotonic() - start, 1)

    psql = f"{compose} exec -T postgres psql -v ON_ERROR_STOP=1 -U prpm -d prpm_registry -Atc"
    log(f"backups: generating {BACKUP_ROWS} rows of 1 KiB of random hex")
    on_host(
        f"{psql} 'DROP TABLE IF EXISTS bench_blob' && {psql} "  # noqa: S608 (fixed SQL)
        "'CREATE TABLE bench_blob AS SELECT g AS id, (SELECT string_agg(md5(random()::text "
        f"|| g::text || i::text), $$$$) FROM generate_series(1, 32) i) AS body FROM "
        f"generate_series(1, {BACKUP_ROWS}) g'"
    )
    size = sh(
        [
            "docker",
            "exec",
            container,
            "sh",
            "-c",
            f"{psql} \"SELECT pg_database_size('prpm_registry')\"",
        ]
    ).stdout.strip()
    backup_s = on_host("/usr/local/sbin/prpm-backup db --repo local")
    restore_s = on_host("/usr/local/sbin/prpm-backup restore --repo local")
    bare_s = on_host(
        f"{compose} exec -T postgres sh -c 'dropdb -U prpm --if-exists bench_scratch && "
        "createdb -U prpm bench_scratch && "
        "pg_dump -U prpm -Fc prpm_registry | pg_restore -U prpm -d bench_scratch --no-owner && "
        "dropdb -U prpm bench_scratch'"
    )
    # Leave the host as it was: no bench table, no 200 MB snapshot.
    on_host(f"{psql} 'DROP TABLE bench_blob' && /usr/local/sbin/prpm-backup db --repo local")

    def restic(args: str) -> str:
        return sh(
            [
                "docker",
                "exec",
                container,
                "sh",
                "-c",
                "RESTIC_PASSWORD_FILE=/etc/prpm-backup/restic-password restic -q "
                f"-r /var/backups/prpm/restic {args}",
            ]
        ).stdout

    snaps = json.loads(restic("snapshots --json --tag db"))
    big = [s["id"] for s in snaps if "rows:public.bench_blob=" + str(BACKUP_ROWS) in s["tags"]]
    if big:
        restic("forget --prune " + " ".join(big))
    return {
        "rows": BACKUP_ROWS,
        "database_mib": round(int(size) / 2**20, 1),
        "backup_s": backup_s,
        "restore_s": restore_s,
        "bare_dump_restore_s": bare_s,
    }
