# SPDX-License-Identifier: GPL-3.0-or-later
"""site.yml works with an inventory that knows only its own tier: no empty groups of the other
tier, no warning about host patterns that match nothing."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import ROOT

# The local tier as a user might write it from scratch: its controller and its host, nothing of
# the AWS tier.
LOCAL_ONLY = {
    "all": {
        "children": {
            "standin_controller": {
                "hosts": {"localhost": {"ansible_connection": "local"}},
            },
            "prpm_hosts": {"hosts": {"prpm-standin": {"ansible_connection": "local"}}},
        }
    }
}


def _list_hosts(inventory: str, env: dict[str, str]) -> str:
    proc = subprocess.run(
        ["ansible-playbook", "-i", inventory, "site.yml", "--list-hosts"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env, "ANSIBLE_NOCOLOR": "1"},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def _plays(output: str) -> dict[str, list[str]]:
    """`--list-hosts` output as {play name: hosts}."""
    plays, current = {}, None
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("play #"):
            current = text.split(": ", 1)[1].split("\tTAGS", 1)[0].strip()
            plays[current] = []
        elif current and text and not text.startswith(("pattern:", "hosts (")):
            plays[current].append(text)
    return plays


@pytest.mark.parametrize("tier", ["local only", "aws"])
def test_site_needs_no_groups_of_the_other_tier(tier, tmp_path, moto):
    if tier == "aws":
        inventory, env = str(ROOT / "inventories" / "aws"), moto.env()
    else:
        path = tmp_path / "hosts.yml"
        path.write_text(json.dumps(LOCAL_ONLY))
        inventory, env = str(path), {}
    output = _list_hosts(inventory, env)
    assert "Could not match supplied host pattern" not in output, output
    assert "No inventory was parsed" not in output, output
    plays = _plays(output)
    assert plays["Ensure the registry host exists"] == ["localhost"], plays


def test_the_tier_comes_from_the_controller_group_alone():
    """The shipped inventories declare no group of the other tier."""
    local = (ROOT / "inventories" / "local" / "hosts.yml").read_text()
    aws = (ROOT / "inventories" / "aws" / "01-controller.yml").read_text()
    assert "aws_controller" not in local and "aws_ec2" not in local
    assert "standin_controller" not in aws
