# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench, sections 1 and 2: site.yml on a fresh stand-in (cold), then again (warm).

Each run is timed as a whole and per role (ansible.posix.profile_roles); its task and changed
counts come from the PLAY RECAP (tools/ansible_recap.py). A run that fails, or prints no recap,
stops the bench: a missing recap never reads as changed=0.
"""

from __future__ import annotations

import re
import sys
import time

from common import BENCH, ROOT, log, remove_container

sys.path.insert(0, str(ROOT / "tools"))
import ansible_recap  # tools/ is not a package: on sys.path above

INVENTORY = ROOT / "bench" / "inventory"
# ansible.posix.profile_roles: "registry_stack ------ 12.34s"
_ROLE_TIME = re.compile(r"^(?P<role>[\w.]+) -+ (?P<secs>[\d.]+)s$", re.M)


def playbook(name: str, profile: bool = False) -> dict:
    env = {}
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_roles"
        env["PROFILE_ROLES_SORT_ORDER"] = "descending"
    start = time.monotonic()
    run = ansible_recap.ansible_playbook(["-i", str(INVENTORY), name], env=env, cwd=ROOT)
    wall = time.monotonic() - start
    if run.rc != 0:
        sys.stderr.write(run.output[-6000:])
        raise SystemExit(f"bench: {name} failed (rc={run.rc})")
    try:
        recap = run.recap
    except ansible_recap.RecapMissingError as exc:
        raise SystemExit(f"bench: {name}: {exc}") from None
    roles = {m["role"]: float(m["secs"]) for m in _ROLE_TIME.finditer(run.output)}
    return {
        "wall_s": round(wall, 1),
        "tasks": run.total("ok", "skipped"),
        "changed": run.changed(),
        "recap": {
            host: {k: c[k] for k in ("ok", "changed", "skipped")} for host, c in recap.items()
        },
        "roles_s": roles,
    }


def cold_converge() -> dict:
    remove_container(BENCH)
    log("cold converge: site.yml on a fresh stand-in")
    return playbook("site.yml", profile=True)


def warm_rerun() -> dict:
    """site.yml again on the converged bench stand-in."""
    return playbook("site.yml", profile=True)
