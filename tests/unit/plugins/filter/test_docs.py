# SPDX-License-Identifier: GPL-3.0-or-later
"""Every filter has its own documentation, as ansible-doc shows it.

A filter file that provides several filters and carries one DOCUMENTATION gives that text to all
of them (ansible-doc printed cidr_overlaps' docs for cidr_version). So each filter is documented
in `<name>.yml` beside its file, and this test asks ansible-doc itself.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
FILTER_DIR = ROOT / "plugins" / "filter"


def _filters() -> dict[str, str]:
    """Every filter the collection provides, by name, with the file providing it."""
    found = {}
    for path in sorted(FILTER_DIR.glob("*.py")):
        module = importlib.import_module(
            f"ansible_collections.prpm.hobby.plugins.filter.{path.stem}"
        )
        for name in module.FilterModule().filters():
            found[name] = path.name
    return found


FILTERS = _filters()


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    ansible_doc = Path(sys.executable).with_name("ansible-doc")
    proc = subprocess.run(
        [str(ansible_doc), "-t", "filter", "--json", *(f"prpm.hobby.{n}" for n in FILTERS)],
        capture_output=True,
        text=True,
        cwd=ROOT,  # ansible.cfg: collections_path finds this checkout
        env=dict(os.environ, ANSIBLE_NOCOLOR="1"),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_collection_has_filters() -> None:
    assert {
        "cidr_overlaps",
        "cidr_version",
        "cidr_is_anywhere",
        "cidr_is_valid",
        "cidrs_cover_anywhere",
        "to_mib",
    } <= set(FILTERS)


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_each_filter_has_its_own_documentation(name: str, docs: dict[str, dict]) -> None:
    entry = docs.get(f"prpm.hobby.{name}")
    assert entry, f"ansible-doc shows nothing for prpm.hobby.{name}"
    doc = entry["doc"]
    assert doc["name"] == name, f"prpm.hobby.{name} is documented as {doc['name']}"
    assert Path(doc["filename"]).name == f"{name}.yml"
    assert doc["short_description"]
    assert f"prpm.hobby.{name}" in entry["examples"]
    assert "_value" in entry["return"]


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_no_filter_is_documented_in_its_python_file(name: str) -> None:
    """A DOCUMENTATION in a file with several filters would win over the YAML files."""
    source = (FILTER_DIR / FILTERS[name]).read_text(encoding="utf-8")
    assert not re.search(r"^(DOCUMENTATION|EXAMPLES|RETURN)\s*=", source, re.M)
