# SPDX-License-Identifier: GPL-3.0-or-later
"""bench/converge.py: what a site.yml run leaves in bench/results.json, and when it stops."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import converge  # bench/ is a folder of scripts: on sys.path above
from ansible_recap import PlaybookRun  # tools/, put on sys.path by converge

PROFILED = "\n".join(
    [
        "PLAY RECAP *********************************************************************",
        "localhost                  : ok=4    changed=0    unreachable=0    failed=0    "
        "skipped=1    rescued=0    ignored=0   ",
        "prpm-bench-standin         : ok=145  changed=2    unreachable=0    failed=0    "
        "skipped=5    rescued=0    ignored=0   ",
        "",
        "ROLES RECAP ********************************************************************",
        "=============================================================================== ",
        "registry_stack --------------------------------------------------------- 19.67s",
        "base ------------------------------------------------------------------- 13.63s",
        "~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~ ",
        "total ------------------------------------------------------------------ 33.30s",
        "",
    ]
)


def _fake_run(monkeypatch: pytest.MonkeyPatch, rc: int, output: str) -> list:
    calls = []

    def fake(args, *, env=None, cwd=None) -> PlaybookRun:
        calls.append((args, env, cwd))
        return PlaybookRun(rc, output)

    monkeypatch.setattr(converge.ansible_recap, "ansible_playbook", fake)
    return calls


def test_profiled_run_as_results_keep_it(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake_run(monkeypatch, 0, PROFILED)
    result = converge.playbook("site.yml", profile=True)
    assert calls == [
        (
            ["-i", str(converge.INVENTORY), "site.yml"],
            {
                "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_roles",
                "PROFILE_ROLES_SORT_ORDER": "descending",
            },
            converge.ROOT,
        )
    ]
    assert {k: v for k, v in result.items() if k != "wall_s"} == {
        "tasks": 155,
        "changed": 2,
        "recap": {
            "localhost": {"ok": 4, "changed": 0, "skipped": 1},
            "prpm-bench-standin": {"ok": 145, "changed": 2, "skipped": 5},
        },
        "roles_s": {"registry_stack": 19.67, "base": 13.63, "total": 33.3},
    }


@pytest.mark.parametrize(
    ("rc", "output", "message"),
    [
        pytest.param(
            0,
            "[ERROR]: the playbook: site.yml could not be found\n",
            "no PLAY RECAP",
            id="no-recap",
        ),
        pytest.param(0, "PLAY RECAP ****\n\n", "lists no host", id="no-host"),
        pytest.param(2, PROFILED, r"site.yml failed \(rc=2\)", id="failed"),
    ],
)
def test_run_without_a_recap_or_failed_stops_the_bench(
    monkeypatch: pytest.MonkeyPatch, rc: int, output: str, message: str
) -> None:
    """A run that printed no recap used to be recorded as 0 tasks, changed=0."""
    _fake_run(monkeypatch, rc, output)
    with pytest.raises(SystemExit, match=message):
        converge.playbook("site.yml")
