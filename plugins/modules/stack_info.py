#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: stack_info
short_description: Read the registry stack's contract on the host
version_added: 0.2.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - prpm.hobby.registry_stack publishes what other roles need to know about the deployed stack
    (directory, Compose project, service and volume names, database, package files, paths to
    back up, health URL, where the host programs live) once, as C(/etc/prpm-hobby/stack.json).
    This module reads it for the roles that work on the stack (prpm.hobby.backups,
    prpm.hobby.patching), so that none of them re-declares a name.
  - Fails with a clear message when the host has no contract (the stack was never deployed) or
    one of another schema.
options:
  path:
    description: The contract file.
    type: path
    default: /etc/prpm-hobby/stack.json
attributes:
  check_mode:
    description: Reads only.
    support: full
  diff_mode:
    description: No diff.
    support: none
"""

EXAMPLES = r"""
- name: Read the stack contract
  prpm.hobby.stack_info:
  register: stack

- name: Back up its database volume
  ansible.builtin.debug:
    msg: "{{ stack.contract.database.path }}"
"""

RETURN = r"""
contract:
  description: The contract, as registry_stack wrote it (schema 1).
  type: dict
  returned: success
  sample:
    schema: 1
    dir: /opt/prpm
    project: prpm
    services: [postgres, redis, storage, registry, caddy]
    database: {service: postgres, name: prpm_registry, user: prpm, volume: pgdata}
"""

import json
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

SCHEMA = 1
REQUIRED = (
    "dir",
    "project",
    "compose_file",
    "lib_dir",
    "services",
    "data_services",
    "oneshot_services",
    "registry_service",
    "database",
    "package_files",
    "backup_paths",
    "health",
)


def check(contract: object) -> str:
    """Return what is wrong with a contract, or an empty string."""
    if not isinstance(contract, dict):
        return "not a JSON object"
    if contract.get("schema") != SCHEMA:
        return f"schema {contract.get('schema')!r}, this collection reads schema {SCHEMA}"
    missing = [key for key in REQUIRED if key not in contract]
    if missing:
        return "missing " + ", ".join(missing)
    return ""


def main() -> None:
    module = AnsibleModule(
        argument_spec={"path": {"type": "path", "default": "/etc/prpm-hobby/stack.json"}},
        supports_check_mode=True,
    )
    path = module.params["path"]
    try:
        contract = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        module.fail_json(
            msg=(
                f"{path} is missing: the registry stack was never deployed on this host. Deploy it "
                "with prpm.hobby.registry_stack (playbooks/deploy.yml) first; nothing was changed."
            )
        )
    except (OSError, ValueError) as exc:
        module.fail_json(msg=f"{path} cannot be read as JSON: {exc}")
    problem = check(contract)
    if problem:
        module.fail_json(
            msg=(
                f"{path} is not a stack contract this collection reads ({problem}); deploy the "
                "stack again with this collection's prpm.hobby.registry_stack."
            )
        )
    module.exit_json(changed=False, contract=contract)


if __name__ == "__main__":
    main()
