#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: ec2_host_keys
short_description: Pin an EC2 instance's SSH host keys in a known_hosts file, from its console
version_added: 0.1.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - Reads the SSH host keys cloud-init writes to the instance's console at its first boot
    (between C(-----BEGIN SSH HOST KEY KEYS-----) and C(-----END SSH HOST KEY KEYS-----)) with
    GetConsoleOutput, and writes them to O(path) for O(names), so that the first SSH connection
    is already checked (C(StrictHostKeyChecking=yes)) instead of trusting whatever key answers.
  - The console output comes from the hypervisor, not over the network, so a man in the middle
    of the first connection cannot change it.
  - Waits up to O(timeout) seconds for the keys (the console shows them a minute or two after a
    launch). A file that already pins this instance's keys is not read from the console again;
    when only O(names) changed (an Elastic IP, a DNS name), the pinned keys get the new names.
  - The lines of this instance end with its ID. Lines of other hosts are kept, except those for
    one of O(names), whose stale keys would make C(ssh) refuse the new host.
options:
  instance_id:
    description: The instance.
    type: str
    required: true
  names:
    description:
      - Host names and addresses the keys are pinned for (the public IP, a DNS name).
      - Required with O(state=present).
    type: list
    elements: str
    default: []
  path:
    description: The known_hosts file (created with its directory when missing).
    type: path
    required: true
  state:
    description: Whether the instance's keys are pinned in O(path).
    type: str
    choices: [present, absent]
    default: present
  timeout:
    description: Seconds to wait for the keys to appear in the console output.
    type: int
    default: 600
  poll_interval:
    description: Seconds between two reads of the console output.
    type: int
    default: 10
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
attributes:
  check_mode:
    description: Reports whether the file would change; reads no console output.
    support: full
  diff_mode:
    description: The file's lines before and after.
    support: full
  idempotent:
    description: A second run with the same arguments reports no change and reads no console.
    support: full
"""

EXAMPLES = r"""
- name: Pin the host keys of the new instance for its address
  prpm.hobby.ec2_host_keys:
    instance_id: i-0123456789abcdef0
    names: [203.0.113.10, registry.example.org]
    path: inventories/aws/known_hosts
"""

RETURN = r"""
keys:
  description: The pinned keys, with their fingerprints as C(ssh-keygen -l) prints them.
  returned: state=present, unless a check-mode run would read the console
  type: list
  elements: dict
  sample:
    - type: ssh-ed25519
      key: AAAAC3Nza...
      fingerprint: "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"
path:
  description: The known_hosts file.
  returned: always
  type: str
source:
  description: Where the keys came from - C(file) (pinned before) or C(console).
  returned: state=present
  type: str
"""

import base64
import binascii
import tempfile
import time
from pathlib import Path

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

from ansible_collections.prpm.hobby.plugins.module_utils._host_keys import (
    fingerprint,
    instance_id_is_valid,
    keys_of_lines,
    lines_of,
    merged,
    name_is_valid,
    names_of_lines,
    parse_console,
    render,
)


def _console(client, instance_id: str) -> str:
    """The console output; Latest (the newest, not the boot-time snapshot) where the instance
    type supports it (Nitro)."""
    try:
        out = client.get_console_output(InstanceId=instance_id, Latest=True, aws_retry=True)
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "UnsupportedOperation":
            raise
        out = client.get_console_output(InstanceId=instance_id, aws_retry=True)
    text = out.get("Output") or ""
    # The API gives the output base64-encoded; some endpoints hand it over decoded.
    try:
        return base64.b64decode(text, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return text


def _write(module, path: Path, content: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".known_hosts.", delete=False
    ) as tmp:
        tmp.write(content)
    Path(tmp.name).chmod(0o644)
    module.atomic_move(tmp.name, str(path))


def _errors(p: dict) -> list[str]:
    errors = []
    if not instance_id_is_valid(p["instance_id"]):
        errors.append(f"instance_id {p['instance_id']!r} is not an EC2 instance ID (i-...)")
    bad = [n for n in p["names"] if not name_is_valid(n)]
    if bad:
        errors.append(f"names must be host names or IP addresses (no patterns or ports): {bad}")
    if p["state"] == "present" and not p["names"]:
        errors.append("names is empty: give the addresses and names the keys are pinned for")
    if p["timeout"] < 0 or p["poll_interval"] < 1:
        errors.append("timeout must be 0 or more and poll_interval 1 or more seconds")
    return errors


def _keys_from_console(module, instance_id: str, path: Path) -> list[tuple[str, str]]:
    """Reads the console until it shows the keys, or fails after the timeout."""
    p = module.params
    client = module.client("ec2", retry_decorator=AWSRetry.jittered_backoff())
    deadline = time.monotonic() + p["timeout"]
    try:
        while True:
            keys = parse_console(_console(client, instance_id))
            if keys or time.monotonic() >= deadline:
                break
            time.sleep(min(p["poll_interval"], max(deadline - time.monotonic(), 0) + 0.1))
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        module.fail_json_aws(exc, msg=f"Could not read the console output of {instance_id}")
    if not keys:
        module.fail_json(
            msg=(
                f"No SSH host keys in the console output of {instance_id} after "
                f"{p['timeout']} s. cloud-init writes them there at the first boot "
                "(keys-to-console), unless the image or its user data turns that off "
                "(ssh: emit_keys_to_console: false). Nothing was "
                f"written to {path}, so no connection to the host is trusted yet: run again once "
                "the console shows them (aws ec2 get-console-output --latest --instance-id "
                f"{instance_id}), or pin the keys by hand after checking their fingerprints "
                "through another channel (docs/aws.md, 'SSH host keys')."
            )
        )
    return keys


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "instance_id": {"type": "str", "required": True},
            "names": {"type": "list", "elements": "str", "default": []},
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "timeout": {"type": "int", "default": 600},
            "poll_interval": {"type": "int", "default": 10},
        },
        supports_check_mode=True,
    )
    p = module.params
    errors = _errors(p)
    if errors:
        module.fail_json(msg="; ".join(errors) + ". Nothing was changed.")
    instance_id, names, path = p["instance_id"], p["names"], Path(p["path"])
    before = path.read_text() if path.exists() else ""
    pinned = lines_of(before, instance_id)
    result = {"changed": False, "path": str(path)}

    if p["state"] == "absent":
        after = merged(before, [], instance_id, [])
    elif pinned:
        # Pinned before: never read again (the console may have moved on); new names get them.
        result["source"], keys = "file", keys_of_lines(pinned)
        after = before
        if names_of_lines(pinned) != names:
            after = merged(before, names, instance_id, render(names, keys, instance_id))
    elif module.check_mode:
        module.exit_json(
            changed=True,
            source="console",
            path=str(path),
            msg=f"{instance_id}'s host keys would be read from its console and pinned in {path}",
        )
    else:
        result["source"] = "console"
        keys = _keys_from_console(module, instance_id, path)
        after = merged(before, names, instance_id, render(names, keys, instance_id))

    if p["state"] == "present":
        result["keys"] = [
            {"type": kind, "key": blob, "fingerprint": fingerprint(blob)} for kind, blob in keys
        ]
    if after != before:
        result["changed"] = True
        if module._diff:
            result["diff"] = {
                "before": before,
                "after": after,
                "before_header": str(path),
                "after_header": str(path),
            }
        if not module.check_mode:
            _write(module, path, after)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
