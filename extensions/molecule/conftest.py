# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the molecule scenarios' testinfra tests.

They run inside `molecule verify`, whose environment carries MOLECULE_* and ANSIBLE_CONFIG.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from ansible_recap import PlaybookRun, ansible_playbook  # tools/ is not a package

# Ports published on this machine's loopback by extensions/molecule/config.yml.
SSH_PORT = int(os.environ.get("PRPM_MOLECULE_SSH_PORT", "18022"))
HTTP_PORT = int(os.environ.get("PRPM_MOLECULE_HTTP_PORT", "18080"))
HTTPS_PORT = int(os.environ.get("PRPM_MOLECULE_HTTPS_PORT", "18443"))
PROBE_PORT = int(os.environ.get("PRPM_MOLECULE_PROBE_PORT", "15432"))


def run_playbook(playbook: str, *args: str, extra_vars: dict | None = None) -> PlaybookRun:
    """Run a playbook of the current scenario against its instances.

    The run's recap (and changed()) raises, never reads as changed=0, when the output has none.
    """
    scenario = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
    cmd = ["-i", os.environ["MOLECULE_INVENTORY_FILE"], str(scenario / playbook)]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    return ansible_playbook([*cmd, *args])


@pytest.fixture(scope="session")
def ssh_key() -> Path:
    """The private key the scenario's prepare step generated for the admin user."""
    return Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "id_ed25519"
