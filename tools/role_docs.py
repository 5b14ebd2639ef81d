# SPDX-License-Identifier: GPL-3.0-or-later
"""Keep each role README's variables table equal to its meta/argument_specs.yml.

    python tools/role_docs.py --write   # rewrite the tables
    python tools/role_docs.py --check   # exit 1 when a README is out of date (make lint)

The table sits between `<!-- BEGIN VARIABLES -->` and `<!-- END VARIABLES -->`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- BEGIN VARIABLES -->", "<!-- END VARIABLES -->"


def _cell(value: object) -> str:
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _default(spec: dict) -> str:
    if "default" not in spec:
        return "**required**" if spec.get("required") else "(none)"
    value = spec["default"]
    if isinstance(value, (dict, list)):
        return "`" + _cell(yaml.safe_dump(value, default_flow_style=True).strip()) + "`"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{_cell(value)}`"


def render(specs: dict) -> str:
    lines = []
    for entry, body in specs["argument_specs"].items():
        options = body.get("options") or {}
        if entry != "main":
            lines += ["", f"Entry point `{entry}`: {_cell(body.get('short_description', ''))}"]
        lines += [
            "",
            "| Variable | Type | Default | Description |",
            "|---|---|---|---|",
        ]
        for name, spec in options.items():
            kind = spec.get("type", "str")
            if kind == "list" and "elements" in spec:
                kind = f"list of {spec['elements']}"
            desc = spec.get("description", "")
            if isinstance(desc, list):
                desc = " ".join(desc)
            if spec.get("choices"):
                desc += " Choices: " + ", ".join(f"`{c}`" for c in spec["choices"]) + "."
            lines.append(f"| `{name}` | {kind} | {_default(spec)} | {_cell(desc)} |")
    return "\n".join(lines).strip("\n")


def sync(readme: Path, specs_file: Path, write: bool) -> bool:
    """Return True when README is in sync (after writing, when write is set)."""
    specs = yaml.safe_load(specs_file.read_text(encoding="utf-8"))
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if BEGIN not in text or END not in text:
        print(f"{readme}: missing {BEGIN} / {END} markers", file=sys.stderr)
        return False
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    new = f"{head}{BEGIN}\n{render(specs)}\n{END}{tail}"
    if new == text:
        return True
    if write:
        readme.write_text(new, encoding="utf-8")
        print(f"{readme}: variables table rewritten")
        return True
    print(f"{readme}: variables table differs from {specs_file}; run tools/role_docs.py --write")
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", action="store_true")
    group.add_argument("--check", action="store_true")
    opts = parser.parse_args()
    ok = True
    for specs_file in sorted(ROOT.glob("roles/*/meta/argument_specs.yml")):
        role = specs_file.parent.parent
        ok = sync(role / "README.md", specs_file, opts.write) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
