# SPDX-License-Identifier: GPL-3.0-or-later
"""tools/ansible_recap.py: PLAY RECAP parsing, on outputs ansible-core 2.19 really printed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from ansible_recap import (  # tools/ is not a package: on sys.path above
    COUNTS,
    PlaybookRun,
    RecapMissingError,
    ansible_playbook,
    parse_recap,
)

# Three hosts: one changed and failed, one with a rescue and an ignored error, one unreachable.
# The host lines end in spaces, as the default callback prints them.
PLAIN = "\n".join(
    [
        "TASK [Fail web] ****************************************************************",
        'fatal: [web-1.example.org]: FAILED! => {"changed": false, "msg": "web fails"}',
        "skipping: [db_2]",
        "",
        "PLAY RECAP *********************************************************************",
        "db_2                       : ok=3    changed=1    unreachable=0    failed=0    "
        "skipped=2    rescued=1    ignored=1   ",
        "unreachable-host           : ok=0    changed=0    unreachable=1    failed=0    "
        "skipped=0    rescued=0    ignored=0   ",
        "web-1.example.org          : ok=2    changed=1    unreachable=0    failed=1    "
        "skipped=2    rescued=0    ignored=0   ",
        "",
    ]
)

# The same run with ANSIBLE_FORCE_COLOR=1: host names and non-zero counts wrapped in SGR codes.
COLOUR = (
    "PLAY RECAP *********************************************************************\n"
    "\x1b[0;33mdb_2\x1b[0m                       : \x1b[0;32mok=3   \x1b[0m "
    "\x1b[0;33mchanged=1   \x1b[0m unreachable=0    failed=0    \x1b[0;36mskipped=2   \x1b[0m "
    "\x1b[0;32mrescued=1   \x1b[0m \x1b[1;35mignored=1   \x1b[0m\n"
    "\x1b[0;31munreachable-host\x1b[0m           : ok=0    changed=0    "
    "\x1b[1;31munreachable=1   \x1b[0m failed=0    skipped=0    rescued=0    ignored=0   \n"
    "\x1b[0;31mweb-1.example.org\x1b[0m          : \x1b[0;32mok=2   \x1b[0m "
    "\x1b[0;33mchanged=1   \x1b[0m unreachable=0    \x1b[0;31mfailed=1   \x1b[0m "
    "\x1b[0;36mskipped=2   \x1b[0m rescued=0    ignored=0   \n\n"
)


def _counts(**nonzero: int) -> dict[str, int]:
    return dict.fromkeys(COUNTS, 0) | nonzero


EXPECTED = {
    "db_2": _counts(ok=3, changed=1, skipped=2, rescued=1, ignored=1),
    "unreachable-host": _counts(unreachable=1),
    "web-1.example.org": _counts(ok=2, changed=1, failed=1, skipped=2),
}

# What make bench reads: the recap, then ansible.posix.profile_roles' table, then stderr.
PROFILED = "\n".join(
    [
        "PLAY RECAP *********************************************************************",
        "prpm-bench-standin         : ok=150  changed=0    unreachable=0    failed=0    "
        "skipped=5    rescued=0    ignored=0   ",
        "localhost                  : ok=4    changed=0    unreachable=0    failed=0    "
        "skipped=1    rescued=0    ignored=0   ",
        "",
        "",
        "ROLES RECAP ********************************************************************",
        "Friday 27 November 2026  04:42:31 +0000 (0:00:00.365)       0:01:07.700 ******* ",
        "=============================================================================== ",
        "registry_stack --------------------------------------------------------- 19.67s",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~ ",
        "total ------------------------------------------------------------------ 66.74s",
        "[WARNING]: a warning on stderr",
        "",
    ]
)

# A recap printed by an inner run (a task's output) before the run's own: the last one counts.
NESTED = "\n".join(
    [
        "PLAY RECAP *********************************************************************",
        "inner                      : ok=9    changed=9    unreachable=0    failed=0    "
        "skipped=0    rescued=0    ignored=0   ",
        "",
        "PLAY RECAP *********************************************************************",
        "outer                      : ok=1    changed=0    unreachable=0    failed=0    "
        "skipped=0    rescued=0    ignored=0   ",
        "",
    ]
)

# Outputs with no recap to read: what ansible-core 2.19 printed for each case.
MISSING_PLAYBOOK = "[ERROR]: the playbook: missing.yml could not be found\n"
NO_HOSTS = "\n".join(
    [
        "[WARNING]: Could not match supplied host pattern, ignoring: nogroup",
        "",
        "PLAY [None] ********************************************************************",
        "skipping: no hosts matched",
        "",
        "PLAY RECAP *********************************************************************",
        "",
    ]
)
# The recap's header and a host line cut short (an interrupted or mangled output).
TRUNCATED = "PLAY RECAP ****\nhost-a                     : ok=3    changed=1    unreachable=0\n"


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        pytest.param(PLAIN, EXPECTED, id="plain"),
        pytest.param(COLOUR, EXPECTED, id="colour"),
        pytest.param(
            PROFILED,
            {
                "prpm-bench-standin": _counts(ok=150, skipped=5),
                "localhost": _counts(ok=4, skipped=1),
            },
            id="profile_roles-after",
        ),
        pytest.param(NESTED, {"outer": _counts(ok=1)}, id="last-wins"),
    ],
)
def test_parse_recap(output: str, expected: dict[str, dict[str, int]]) -> None:
    assert parse_recap(output) == expected


def test_every_count_is_read() -> None:
    assert set(COUNTS) == set(parse_recap(PLAIN)["db_2"])


@pytest.mark.parametrize(
    ("output", "reason", "shown"),
    [
        pytest.param(MISSING_PLAYBOOK, "no PLAY RECAP", "missing.yml could not", id="no-playbook"),
        pytest.param("", "no PLAY RECAP", "", id="empty"),
        pytest.param(NO_HOSTS, "lists no host", "skipping: no hosts matched", id="no-host"),
        pytest.param(TRUNCATED, "lists no host", "changed=1    unreachable=0", id="cut-short"),
    ],
)
def test_missing_recap_is_an_error(output: str, reason: str, shown: str) -> None:
    with pytest.raises(RecapMissingError, match=reason) as err:
        parse_recap(output)
    assert shown in str(err.value)  # the message shows what the output said instead


@pytest.mark.parametrize(
    ("counts", "total"),
    [
        pytest.param(("changed",), 2, id="changed"),
        pytest.param(("ok", "skipped"), 9, id="tasks"),
        pytest.param(("failed", "unreachable"), 2, id="failed"),
        pytest.param(("rescued", "ignored"), 2, id="rescued-ignored"),
    ],
)
def test_run_totals(counts: tuple[str, ...], total: int) -> None:
    assert PlaybookRun(2, PLAIN).total(*counts) == total


def test_run_changed_and_failed() -> None:
    run = PlaybookRun(2, COLOUR)
    assert (run.changed(), run.failed()) == (2, 2)
    assert run.recap == EXPECTED


def test_unknown_count_is_refused() -> None:
    with pytest.raises(ValueError, match="not a recap count"):
        PlaybookRun(0, PLAIN).total("chnaged")


@pytest.mark.parametrize("output", [MISSING_PLAYBOOK, NO_HOSTS])
def test_run_without_recap_never_reads_as_unchanged(output: str) -> None:
    """The old parsers summed an empty recap: changed() == 0 passed for a run that did nothing."""
    run = PlaybookRun(1, output)
    with pytest.raises(RecapMissingError, match="ansible-playbook exited 1"):
        run.changed()
    with pytest.raises(RecapMissingError):
        run.total("ok", "skipped")


def test_ansible_playbook_runs_without_colour(tmp_path: Path) -> None:
    """A real run on the local connection (no network), colour asked for and turned off."""
    (tmp_path / "inventory.yml").write_text(
        "all:\n  hosts:\n    here-1:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    (tmp_path / "play.yml").write_text(
        "- name: Local\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Ping\n      ansible.builtin.ping:\n"
    )
    bin_dir = str(Path(sys.executable).parent)
    run = ansible_playbook(
        ["-i", "inventory.yml", "play.yml"],
        env={
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "ANSIBLE_FORCE_COLOR": "1",
        },
        cwd=tmp_path,
    )
    assert run.rc == 0, run.output
    assert "\x1b[" not in run.output
    assert run.recap == {"here-1": dict.fromkeys(COUNTS, 0) | {"ok": 1}}
