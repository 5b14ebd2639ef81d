# SPDX-License-Identifier: GPL-3.0-or-later
"""The PLAY RECAP of ansible-playbook's output, read once for the tests and the bench.

Used by the molecule scenarios (extensions/molecule/conftest.py), the AWS tests on moto
(tests/aws/conftest.py) and `make bench` (bench/converge.py). They put tools/ on sys.path
(tools/ is a folder of scripts, not a package) and `import ansible_recap`.

An output without a recap is an error, never a recap of zeros: ansible-playbook prints one
only when its plays ran to the end (a missing playbook, a syntax error or a crash prints
none), and a recap that lists no host means that no play matched any host. Either way,
"changed=0" would be a claim about work that never happened.

Standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

# In the order ansible-core's default callback prints them.
COUNTS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")

_HEADER = re.compile(r"^PLAY RECAP\b.*$", re.M)
# "web-1   : ok=2    changed=1    unreachable=0    failed=0    skipped=2    rescued=0    ignored=0"
_HOST_LINE = re.compile(
    r"^(?P<host>\S+)\s+:\s+" + r"\s+".join(rf"{c}=(?P<{c}>\d+)" for c in COUNTS) + r"\s*$",
    re.M,
)
# SGR colour codes, present when ANSIBLE_FORCE_COLOR is on (host names and non-zero counts).
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_TAIL = 3000


class RecapMissingError(ValueError):
    """The output holds no PLAY RECAP naming at least one host."""


def parse_recap(output: str) -> dict[str, dict[str, int]]:
    """Counts per host from the last PLAY RECAP of an ansible-playbook output.

    Colour codes are ignored. Raises RecapMissingError when there is no PLAY RECAP, or when it
    lists no host; the message ends with the tail of the output, to show what happened instead.
    """
    text = _COLOUR.sub("", output)
    headers = list(_HEADER.finditer(text))
    if not headers:
        reason = "no PLAY RECAP in the output: the playbook did not run to its end"
    else:
        recap = {
            m["host"]: {c: int(m[c]) for c in COUNTS}
            for m in _HOST_LINE.finditer(text, headers[-1].end())
        }
        if recap:
            return recap
        reason = "the PLAY RECAP lists no host: no play matched any host"
    raise RecapMissingError(f"{reason}; the output ends with:\n{text[-_TAIL:]}")


@dataclass(frozen=True)
class PlaybookRun:
    """One ansible-playbook run: exit code, stdout and stderr together, and its recap."""

    rc: int
    output: str

    @cached_property
    def recap(self) -> dict[str, dict[str, int]]:
        """Counts per host; raises RecapMissingError when the output has none."""
        try:
            return parse_recap(self.output)
        except RecapMissingError as exc:
            raise RecapMissingError(f"ansible-playbook exited {self.rc}: {exc}") from None

    def total(self, *counts: str) -> int:
        """The sum of these counts over every host: total("ok", "skipped") is the task count."""
        unknown = set(counts) - set(COUNTS)
        if unknown:
            raise ValueError(f"not a recap count: {sorted(unknown)}; one of {COUNTS}")
        return sum(host[c] for host in self.recap.values() for c in counts)

    def changed(self) -> int:
        return self.total("changed")

    def failed(self) -> int:
        """Failed and unreachable, over every host."""
        return self.total("failed", "unreachable")


def ansible_playbook(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> PlaybookRun:
    """Run `ansible-playbook ARGS` without colour, this process's environment plus ENV."""
    full_env = {**os.environ, **(env or {}), "ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}
    proc = subprocess.run(
        ["ansible-playbook", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        check=False,
    )
    return PlaybookRun(proc.returncode, proc.stdout + proc.stderr)
