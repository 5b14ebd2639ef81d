# SPDX-License-Identifier: GPL-3.0-or-later
"""The contract and the config files as the roles render them (with ansible-playbook, from the
roles' own defaults and vars) are what the host programs accept.

The other host tests use hand-written contracts; this one closes the gap between the roles'
templates and the programs' validation (types included: ints, bools, null package files).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import prpm_backup
import prpm_patch
import prpm_stack
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
PLAY = """
- hosts: all
  gather_facts: false
  vars_files:
    - {root}/roles/registry_stack/defaults/main.yml
    - {root}/roles/registry_stack/vars/main.yml
    - {root}/roles/backups/defaults/main.yml
    - {root}/roles/backups/vars/main.yml
    - {root}/roles/patching/defaults/main.yml
    - {root}/roles/patching/vars/main.yml
  tasks:
    - ansible.builtin.copy:
        content: "{{{{ __registry_stack_contract_data | to_nice_json }}}}"
        dest: "{out}/stack.json"
        mode: "0600"
    - ansible.builtin.copy:
        content: "{{{{ __backups_config | to_nice_json }}}}"
        dest: "{out}/backup.json"
        mode: "0600"
      vars:
        __backups_stack_info: {{contract: {{lib_dir: /usr/local/lib/prpm-hobby}}}}
    - ansible.builtin.copy:
        content: "{{{{ __patching_config | to_nice_json }}}}"
        dest: "{out}/patch.json"
        mode: "0600"
"""


def _render(tmp_path: Path, **extra: object) -> Path:
    playbook = tmp_path / "render.yml"
    playbook.write_text(PLAY.format(root=ROOT, out=tmp_path), encoding="utf-8")
    ansible = Path(sys.executable).with_name("ansible-playbook")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".collections"))
    variables = {
        "ansible_python_interpreter": sys.executable,
        "registry_stack_domain": "registry.example.org",
    }
    proc = subprocess.run(
        [str(ansible), "-i", "prpm-test,", "-c", "local", str(playbook), "-e",
         json.dumps({**variables, **extra})],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp_path


@pytest.mark.parametrize("storage", ["local", "s3"])
def test_the_contract_the_role_writes_is_valid(tmp_path: Path, storage: str) -> None:
    out = _render(tmp_path, registry_stack_storage=storage)
    contract = prpm_stack.load_contract(out / "stack.json")
    defaults = yaml.safe_load((ROOT / "roles/registry_stack/vars/main.yml").read_text())
    names = defaults["__registry_stack_service"]
    assert contract["database"]["service"] == names["database"]
    assert contract["oneshot_services"] == [names["migrate"]]
    assert contract["health"]["server_name"] == "registry.example.org"
    assert contract["health"]["validate_certs"] is True
    if storage == "local":
        assert contract["package_files"]["service"] == names["storage"]
        assert names["storage"] in contract["data_services"]
    else:
        assert contract["package_files"] is None
        assert names["storage"] not in contract["services"]


def test_the_config_files_the_roles_write_are_valid(tmp_path: Path) -> None:
    out = _render(tmp_path)
    backup = prpm_stack.load_config(out / "backup.json", prpm_backup.CONFIG_SPEC)
    assert backup["host_tag"] == "prpm-test"
    assert isinstance(backup["rpo_minutes"], int)
    patch = prpm_stack.load_config(out / "patch.json", prpm_patch.CONFIG_SPEC)
    assert isinstance(patch["health_timeout"], int) and isinstance(patch["backup"], bool)
