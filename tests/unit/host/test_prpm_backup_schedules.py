# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm.hobby.backups' preflight refuses schedules that are not OnCalendar expressions (and
delays that are not time spans) before anything changes: they are written as they are into the
systemd timers, where a line break would add directives. Run with ansible-playbook, from the
role's own defaults, vars and preflight tasks; one playbook for every case."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "backups"
SETTINGS = [
    "backups_db_schedule",
    "backups_daily_schedule",
    "backups_check_schedule",
    "backups_drill_schedule",
    "backups_freshness_schedule",
    "backups_randomized_delay",
    "backups_command_timeout_seconds",
    "backups_short_command_timeout_seconds",
]
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "calendar forms": {
        "backups_db_schedule": "*:0/15",
        "backups_daily_schedule": "Mon..Fri *-*-* 02:00:00 Europe/Berlin",
        "backups_check_schedule": "Sat,Sun 03:00 Etc/GMT+3",
        "backups_drill_schedule": "*-02~03 05:30",
        "backups_freshness_schedule": "America/New_York daily",
        "backups_randomized_delay": "1h 30min",
    },
    "a bare number of seconds": {"backups_randomized_delay": 90},
    "a line break and a directive": {"backups_db_schedule": "hourly\nExecStartPre=/bin/sh"},
    "a trailing line break": {"backups_drill_schedule": "Sun *-*-* 05:30:00\n"},
    "a systemd specifier": {"backups_daily_schedule": "*-*-* %H:15:00"},
    "a semicolon": {"backups_check_schedule": "daily; reboot"},
    "empty": {"backups_freshness_schedule": ""},
    "a delay with a directive": {"backups_randomized_delay": "5min\nPersistent=false"},
    "a zero time limit": {"backups_short_command_timeout_seconds": 0},
}
CASE_TASKS = """
- name: Set the case's settings over the defaults
  ansible.builtin.set_fact:
{facts}
- name: Run the preflight
  block:
    - name: Preflight
      ansible.builtin.include_tasks: {role}/tasks/preflight.yml
    - name: Passed
      ansible.builtin.set_fact:
        results: "{{{{ results | combine({{case.key: 'ok'}}) }}}}"
  rescue:
    - name: Refused
      ansible.builtin.set_fact:
        results: >-
          {{{{ results | combine({{case.key: ansible_failed_result.msg
               if 'results' not in ansible_failed_result
               else ansible_failed_result.results | selectattr('failed', 'defined')
                    | selectattr('failed') | map(attribute='msg') | join(' / ')}}) }}}}
"""
PLAY = """
- hosts: all
  gather_facts: false
  vars_files:
    - {role}/defaults/main.yml
    - {role}/vars/main.yml
  vars:
    results: {{}}
    defaults: {defaults}
    cases: {cases}
  tasks:
    - name: Each case
      ansible.builtin.include_tasks: {case_tasks}
      loop: "{{{{ cases | dict2items }}}}"
      loop_control:
        loop_var: case
    - name: Write the results
      ansible.builtin.copy:
        content: "{{{{ results | to_json }}}}"
        dest: {out}
        mode: "0600"
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("preflight")
    # The role's defaults as values (set_fact of a case outlives it: each case sets them all).
    role_defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    defaults = {k: role_defaults[k] for k in SETTINGS}
    facts = "\n".join(
        f"    {k}: \"{{{{ (defaults | combine(case.value))['{k}'] }}}}\"" for k in SETTINGS
    )
    (tmp / "case.yml").write_text(CASE_TASKS.format(facts=facts, role=ROLE), encoding="utf-8")
    play = PLAY.format(
        role=ROLE,
        defaults=json.dumps(defaults),
        cases=json.dumps(CASES),
        case_tasks=tmp / "case.yml",
        out=tmp / "results.json",
    )
    (tmp / "play.yml").write_text(play, encoding="utf-8")
    ansible = Path(sys.executable).with_name("ansible-playbook")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0")
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", str(ROOT / ".collections"))
    proc = subprocess.run(
        [str(ansible), "-i", "prpm-test,", "-c", "local", str(tmp / "play.yml"),
         "-e", json.dumps({"ansible_python_interpreter": sys.executable})],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((tmp / "results.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", ["defaults", "calendar forms", "a bare number of seconds"])
def test_calendar_events_and_time_spans_pass(results: dict[str, str], case: str) -> None:
    assert results[case] == "ok"


@pytest.mark.parametrize(
    ("case", "refused"),
    [
        ("a line break and a directive", '"hourly\\nExecStartPre=/bin/sh"'),
        ("a trailing line break", '"Sun *-*-* 05:30:00\\n"'),
        ("a systemd specifier", '"*-*-* %H:15:00"'),
        ("a semicolon", '"daily; reboot"'),
        ("empty", '""'),
    ],
)
def test_a_schedule_that_is_not_a_calendar_event_is_refused_by_name(
    results: dict[str, str], case: str, refused: str
) -> None:
    (name,) = CASES[case]
    assert results[case].startswith(f"{name} {refused} is refused: give a systemd OnCalendar")
    unit = {"backups_daily_schedule": "run", "backups_freshness_schedule": "freshness"}.get(
        name, name.split("_")[1]
    )
    assert f"It is written into prpm-backup-{unit}.timer" in results[case]
    assert results[case].endswith("Nothing was changed.")


def test_a_delay_that_is_not_a_time_span_is_refused_by_name(results: dict[str, str]) -> None:
    assert results["a delay with a directive"].startswith(
        'backups_randomized_delay "5min\\nPersistent=false" is refused: give a systemd time span'
    )


def test_a_time_limit_below_one_second_is_refused(results: dict[str, str]) -> None:
    assert "backups_short_command_timeout_seconds of at least 1" in results["a zero time limit"]
