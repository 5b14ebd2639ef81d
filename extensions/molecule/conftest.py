# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the molecule scenarios' testinfra tests.

They run inside `molecule verify`, whose environment carries MOLECULE_* and ANSIBLE_CONFIG.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

# Ports published on this machine's loopback by .config/molecule/config.yml.
SSH_PORT = int(os.environ.get("PRPM_MOLECULE_SSH_PORT", "18022"))
HTTP_PORT = int(os.environ.get("PRPM_MOLECULE_HTTP_PORT", "18080"))
HTTPS_PORT = int(os.environ.get("PRPM_MOLECULE_HTTPS_PORT", "18443"))
PROBE_PORT = int(os.environ.get("PRPM_MOLECULE_PROBE_PORT", "15432"))

_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)",
    re.M,
)


@dataclass
class PlaybookRun:
    rc: int
    output: str
    recap: dict[str, dict[str, int]]

    def changed(self) -> int:
        return sum(h["changed"] for h in self.recap.values())


def run_playbook(playbook: str, *args: str, extra_vars: dict | None = None) -> PlaybookRun:
    """Run a playbook of the current scenario against its instances."""
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    cmd = [
        "ansible-playbook",
        "-i",
        os.environ["MOLECULE_INVENTORY_FILE"],
        str(scenario / playbook),
    ]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    env = dict(os.environ, ANSIBLE_FORCE_COLOR="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    output = proc.stdout + proc.stderr
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in _RECAP.finditer(output)
    }
    return PlaybookRun(proc.returncode, output, recap)


@pytest.fixture(scope="session")
def ssh_key() -> Path:
    """The private key the scenario's prepare step generated for the admin user."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "id_ed25519"
