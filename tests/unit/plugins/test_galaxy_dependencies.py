# SPDX-License-Identifier: GPL-3.0-or-later
"""galaxy.yml names exactly the collections the code uses, with the ranges of requirements.yml.

A collection missing there installs without its dependency and fails at run time; one listed
but unused is installed for nothing.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]
# namespace.collection.name as modules, filters, lookups, connections and inventory plugins
# are called, or ansible_collections.namespace.collection in Python imports.
FQCN = re.compile(r"(?<![\w.])(?:ansible_collections\.)?([a-z0-9_]+)\.([a-z0-9_]+)\.[a-z0-9_]+")
# ansible-core itself, and its Python packages (ansible.module_utils.basic, ansible.errors...).
CORE = {"ansible.builtin", "ansible.module_utils", "ansible.errors", "ansible.plugins"}
CORE |= {"ansible.parsing", "ansible.template", "ansible.utils", "ansible.playbook"}
NAMESPACES = {"amazon", "ansible", "community", "containers", "kubernetes"}


def _used() -> set[str]:
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    code = [
        ROOT / f
        for f in files
        if f.endswith((".yml", ".yaml", ".py", ".j2"))
        and not f.startswith(("changelogs/", "tests/", "galaxy.yml", "requirements.yml"))
        and (ROOT / f).is_file()
    ]
    found = set()
    for path in code:
        for namespace, name in FQCN.findall(path.read_text(encoding="utf-8")):
            if namespace in NAMESPACES:
                found.add(f"{namespace}.{name}")
    return found - CORE


def test_galaxy_dependencies_are_what_the_code_uses() -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))
    assert set(galaxy["dependencies"]) == _used()


def test_galaxy_ranges_match_requirements_yml() -> None:
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text(encoding="utf-8"))["dependencies"]
    wanted = yaml.safe_load((ROOT / "requirements.yml").read_text(encoding="utf-8"))
    ranges = {c["name"]: c["version"] for c in wanted["collections"]}
    assert {name: ranges.get(name) for name in galaxy} == galaxy
