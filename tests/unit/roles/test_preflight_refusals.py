# SPDX-License-Identifier: GPL-3.0-or-later
"""The roles' preflight checks refuse bad input before any change, each with its message.

Each case is one inventory host (connection local) whose host variables, in a JSON inventory,
are a role's valid baseline plus the one bad value (extra variables, -e @extra.json, would reach
every host: they only name the marker directory). A play per role includes the role's
`tasks/preflight.yml` (include_role tasks_from: preflight, so from the role's own defaults and
vars) and then writes a marker file for the host into a temporary directory: a refused host never
gets there. Without Docker, a stack or root-only paths: the checks that would inspect the host
are skipped by the baseline (no swap file for base, the host's memory given for registry_stack,
no SSH_CLIENT in the environment).

Two ansible-playbook runs for the whole module (an inventory host per case keeps it fast):
- the baselines alone, which must pass (rc 0, a marker each), so the harness is shown able to
  pass and a broken one cannot make every refusal "pass";
- every case plus the baselines again (rc 2): each case's host fails in the recap with nothing
  changed, the messages of its failed results (read from the YAML the default callback prints)
  name the refusal, and it has no marker; each baseline host passes in the same run.

patching checks the distribution from ansible_facts: the play sets that one fact (Debian for
the baseline), so the module passes on any controller. The preflight duplicates of patching's
argument-spec choices are reached here only because tasks_from skips the main entry point's spec.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tools"))
from ansible_recap import PlaybookRun  # tools/ is not a package: on sys.path above

ROOT = Path(__file__).resolve().parents[3]
ROLES = ("base", "registry_stack", "backups", "patching")
# Valid input for each role's preflight; each case changes it in one respect.
BASELINES: dict[str, dict[str, Any]] = {
    "base": {
        "base_admin_ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrpmHobbyTestKeyOnly admin"],
        "base_admin_cidrs": ["203.0.113.7/32"],
        # No swap file: its check reads the free space where /swapfile would go.
        "base_swap_size_mib": 0,
    },
    "registry_stack": {
        "registry_stack_domain": "registry.example.org",
        "registry_stack_acme_email": "ops@example.org",
        "registry_stack_registry_image": "localhost/prpm/registry:0.1.0",
        "registry_stack_storage_image": "localhost/prpm-hobby/storage:1",
        # Instead of this host's memory (ansible_facts): the same verdict on any controller.
        "registry_stack_host_memory_mib": 4096,
    },
    "backups": {
        "backups_local_repository": "/var/backups/prpm/restic",
        "backups_s3_repository": "s3:https://s3.example.org/prpm-backups",
        "backups_s3_access_key_id": "AKIAEXAMPLE",
        "backups_s3_secret_access_key": "secret-example",
        "backups_ping_urls": {"run": "https://hc-ping.example.org/run"},
    },
    # prpm_test_distribution: the distribution fact the play sets (see PLAY).
    "patching": {"prpm_test_distribution": "Debian", "patching_mail": "ops@example.org"},
}
PIDS = {"postgres": 128, "redis": 64, "registry": 128, "migrate": 128, "caddy": 128, "storage": 128}
MEMORY = {"postgres": "192m", "redis": "64m", "registry": "192m", "migrate": "128m", "caddy": "64m"}
BUILD = {"registry_stack_archive_dir": "/srv/prpm-archives", "registry_stack_build_context": "/src"}
# Parts of messages that several cases share.
CADDY = "It is written into the Caddyfile, where a space, line break, brace or quote"
ENV_FILE = "It is written into the registry's env file, where a line break would add a variable."
KEY_REFUSED = (
    "holds a line break (LF or CR) or a NUL byte, or starts with a quote: in the registry's env"
)
STORAGE = "the bucket name 'prpm-packages' must be a valid S3 bucket name"
PIDS_REFUSED = "needs one whole number of at least 16 for each of caddy, migrate, postgres, redis,"
UMASK = 'base_login_umask must be three or four octal digits in quotes (e.g. "027"), got'
BACKUPS = "Backups need at least one repository (backups_local_repository or backups_s3_repository"
PATCHING = "prpm.hobby.patching supports Debian and Ubuntu (this is"
CALENDAR = "is refused: give a systemd OnCalendar expression on one line"
TIMESPAN = "is refused: give a systemd time span on one line, e.g. 30min or 1h 30min."
APT_QUOTES = "Each entry is written between double quotes into apt's configuration"

# role -> case -> (the variables over the baseline, then what the host's messages say). Values
# shown by a message are shown as JSON: r"" strings hold their \n.
REFUSALS: dict[str, dict[str, tuple[Any, ...]]] = {
    # Values written into login.defs and modprobe.d.
    "base": {
        "umask-not-octal": (
            {"base_login_umask": "0999"},
            f'{UMASK} "0999"',
        ),
        "umask-not-a-string": (
            {"base_login_umask": 27},
            f'{UMASK} "27"',
        ),
        "kernel-module-with-a-command": (
            {"base_disabled_kernel_modules": ["dccp", "sctp /bin/sh"]},
            "base_disabled_kernel_modules must be module names (letters, digits, - and _):"
            ' refused ["sctp /bin/sh"].',
        ),
        "kernel-module-with-a-line-break": (
            {"base_disabled_kernel_modules": ["usb-storage\ninstall usb-storage /bin/sh"]},
            r'refused ["usb-storage\ninstall usb-storage /bin/sh"].',
        ),
        # `$` in a regular expression matches before a trailing line break: refused all the same.
        "umask-with-a-trailing-line-break": (
            {"base_login_umask": "027\n"},
            f'{UMASK} "027\\n"',
        ),
        "kernel-module-with-a-trailing-line-break": (
            {"base_disabled_kernel_modules": ["dccp\n"]},
            r'refused ["dccp\n"].',
        ),
        "kernel-module-empty": (
            {"base_disabled_kernel_modules": [""]},
            'refused [""].',
        ),
    },
    "registry_stack": {
        # Values written into the Caddyfile.
        "acme-email-line-break": (
            {"registry_stack_acme_email": "ops@example.org\n}"},
            r'registry_stack_acme_email "ops@example.org\n}" is not a plain e-mail address',
        ),
        "acme-email-not-an-address": (
            {"registry_stack_acme_email": "ops at example"},
            'registry_stack_acme_email "ops at example" is not a plain e-mail address',
            "it is written into the Caddyfile. Nothing was changed.",
        ),
        "health-url-space": (
            {"registry_stack_health_url": "https://registry.example.org/health respond 200"},
            'registry_stack_health_url "https://registry.example.org/health respond 200" is'
            " refused: give an http(s) URL with a path",
            CADDY,
        ),
        "health-url-brace": (
            {"registry_stack_health_url": "https://registry.example.org/health{"},
            'registry_stack_health_url "https://registry.example.org/health{" is refused',
        ),
        "health-url-no-path": (
            {"registry_stack_health_url": "https://registry.example.org"},
            'registry_stack_health_url "https://registry.example.org" is refused',
        ),
        "proxy-hold-not-digits": (
            {"registry_stack_proxy_hold_seconds": "15s"},
            'registry_stack_proxy_hold_seconds "15s" is refused: give a whole number of seconds.',
        ),
        "retry-after-line-break": (
            {"registry_stack_maintenance_retry_after": "300\n"},
            r'registry_stack_maintenance_retry_after "300\n" is refused: give a whole number',
        ),
        # Values written into the registry's env file.
        "frontend-url-line-break": (
            {"registry_stack_frontend_url": "https://registry.example.org\nJWT_SECRET=x"},
            r'registry_stack_frontend_url "https://registry.example.org\nJWT_SECRET=x" is'
            " refused: give an http(s) URL without spaces, line breaks or quotes",
            ENV_FILE,
        ),
        "frontend-url-not-http": (
            {"registry_stack_frontend_url": "ftp://registry.example.org"},
            'registry_stack_frontend_url "ftp://registry.example.org" is refused',
        ),
        "callback-url-quote": (
            {"registry_stack_github_callback_url": 'https://registry.example.org/cb"x'},
            r'registry_stack_github_callback_url "https://registry.example.org/cb\"x" is refused',
        ),
        "s3-endpoint-space": (
            {"registry_stack_s3_endpoint": "https://s3.example.org x"},
            'registry_stack_s3_endpoint "https://s3.example.org x" is refused',
        ),
        "s3-region-line-break": (
            {"registry_stack_s3_region": "us-east-1\nX=1"},
            r'registry_stack_s3_region "us-east-1\nX=1" is refused: give a region name such as',
        ),
        "github-client-id-space": (
            {"registry_stack_github_client_id": "Iv1 abc"},
            'registry_stack_github_client_id "Iv1 abc" is refused: give a GitHub OAuth client id',
        ),
        "registry-port-not-digits": (
            {"registry_stack_registry_port": "3111/tcp"},
            'registry_stack_registry_port "3111/tcp" is refused: give a port number.',
        ),
        "rate-limit-not-digits": (
            {"registry_stack_rate_limit_per_minute": "100/min"},
            'registry_stack_rate_limit_per_minute "100/min" is refused: give a whole number.',
            ENV_FILE,
        ),
        # Keys, named but never shown (NOT_SHOWN), and the extra environment.
        "stripe-key-line-break": (
            {"registry_stack_stripe_secret_key": "sk_test_Stripe1\n"},
            f"registry_stack_stripe_secret_key {KEY_REFUSED}",
            "The value is not shown.",
        ),
        "openai-key-leading-quote": (
            {"registry_stack_openai_api_key": "'sk-OpenAi2"},
            f"registry_stack_openai_api_key {KEY_REFUSED}",
        ),
        "github-secret-carriage-return": (
            {
                "registry_stack_github_client_id": "Iv1.abc",
                "registry_stack_github_client_secret": "gh3Secret\rX",
            },
            f"registry_stack_github_client_secret {KEY_REFUSED}",
        ),
        "s3-access-key-nul": (
            {"registry_stack_s3_access_key_id": "AKIAKey4\x00"},
            f"registry_stack_s3_access_key_id {KEY_REFUSED}",
        ),
        "s3-secret-line-break": (
            {"registry_stack_s3_secret_access_key": "S3cret5\nAWS_REGION=x"},
            f"registry_stack_s3_secret_access_key {KEY_REFUSED}",
        ),
        "extra-env-bad-name": (
            {"registry_stack_registry_env": {"GOOD_NAME": "1", "1BAD": "x", "A-B": "y"}},
            "registry_stack_registry_env: not environment variable names (letters, digits and _,"
            ' not starting with a digit): "1BAD", "A-B".',
        ),
        "extra-env-value-line-break": (
            {"registry_stack_registry_env": {"FEATURE_X": "on\nDATABASE_URL=postgres://evil6"}},
            "registry_stack_registry_env: the values of FEATURE_X hold a line break (LF or CR)",
            "(values not shown)",
        ),
        # Image sources.
        "built-image-with-a-tag": (
            {"registry_stack_image_sources": {"registry": "build"}, **BUILD},
            "With the build source, registry_stack_registry_image"
            " ('localhost/prpm/registry:0.1.0') names the repository only",
        ),
        "archive-without-dir": (
            {"registry_stack_image_source": "archive"},
            "archive and build sources need registry_stack_archive_dir (a controller directory);",
        ),
        "build-without-context": (
            {
                "registry_stack_image_sources": {"registry": "build"},
                "registry_stack_registry_image": "localhost/prpm/registry",
                "registry_stack_archive_dir": "/srv/prpm-archives",
            },
            "build needs registry_stack_build_context (the root of a PRPM checkout)",
        ),
        "build-for-postgres": (
            {"registry_stack_image_sources": {"postgres": "build"}, **BUILD},
            "and applies to the registry image only.",
        ),
        # Limits.
        "memory-limits-without-storage": (
            {"registry_stack_memory_limits": MEMORY},
            "Lower registry_stack_memory_limits (one entry for each of caddy, migrate, postgres,"
            " redis, registry, storage) or use a bigger host.",
        ),
        "pids-limits-without-storage": (
            {"registry_stack_pids_limits": {k: v for k, v in PIDS.items() if k != "storage"}},
            PIDS_REFUSED,
        ),
        "pids-limit-not-a-number": (
            {"registry_stack_pids_limits": PIDS | {"redis": "64k"}},
            PIDS_REFUSED,
        ),
        "pids-limit-below-16": (
            {"registry_stack_pids_limits": PIDS | {"caddy": 8}},
            PIDS_REFUSED,
        ),
        "pids-postgres-below-connections": (
            {"registry_stack_postgres_max_connections": 200},
            "and for postgres at least registry_stack_postgres_max_connections + 20 (220):"
            " PostgreSQL runs one process per connection",
        ),
        # Features and package storage.
        "github-id-without-secret": (
            {"registry_stack_github_client_id": "Iv1.abc"},
            "registry_stack_github_client_id and registry_stack_github_client_secret go together",
        ),
        "github-secret-without-id": (
            {"registry_stack_github_client_secret": "gh-secret7"},
            "registry_stack_github_client_id and registry_stack_github_client_secret go together",
        ),
        # Listed under the storage check ("local storage needs registry_stack_storage_image"),
        # but the pinning check before it refuses the empty storage image first.
        "local-storage-without-image": (
            {"registry_stack_storage_image": ""},
            "The storage image '' must be pinned by tag",
        ),
        "s3-storage-with-one-key": (
            {"registry_stack_storage": "s3", "registry_stack_s3_access_key_id": "AKIAKey8"},
            f"Package storage 's3': {STORAGE}",
            "s3 keys go together",
        ),
        "local-storage-with-s3-endpoint": (
            {"registry_stack_s3_endpoint": "https://s3.example.org"},
            f"Package storage 'local': {STORAGE}",
            "an S3 endpoint or keys with local storage would be ignored",
        ),
    },
    # One message for every setting: each case checks the part that names its setting.
    "backups": {
        "no-repository": (
            {"backups_local_repository": "", "backups_s3_repository": ""},
            BACKUPS,
        ),
        "s3-repository-without-s3-prefix": (
            {"backups_s3_repository": "https://s3.example.org/prpm-backups"},
            BACKUPS,
            "which starts with s3:)",
        ),
        "one-s3-key": (
            {"backups_s3_secret_access_key": ""},
            BACKUPS,
            "both or neither S3 key",
        ),
        "alert-topic-not-an-arn": (
            {"backups_alert_sns_topic": "prpm-hobby-alarms\nExecStart=/bin/sh"},
            BACKUPS,
            "backups_alert_sns_topic empty or an SNS topic ARN",
        ),
        "retention-without-monthly": (
            {"backups_retention": {"hourly": 24, "daily": 7, "weekly": 4}},
            BACKUPS,
            "retention with hourly/daily/weekly/monthly of at least 1",
        ),
        "retention-of-zero": (
            {"backups_retention": {"hourly": 24, "daily": 7, "weekly": 4, "monthly": 0}},
            BACKUPS,
        ),
        "rpo-of-zero": (
            {"backups_rpo_minutes": 0},
            BACKUPS,
            "a positive RPO",
        ),
        "check-subset-in-words": (
            {"backups_check_subset": "5 percent"},
            BACKUPS,
            "a check subset like 5% or 1/10",
        ),
        "ping-url-for-an-unknown-command": (
            {"backups_ping_urls": {"backup": "https://hc-ping.example.org/x"}},
            BACKUPS,
            "ping URLs only for db, run, check, drill, freshness",
        ),
        "command-timeout-of-zero": (
            {"backups_command_timeout_seconds": 0},
            BACKUPS,
            "backups_command_timeout_seconds and backups_short_command_timeout_seconds of at"
            " least 1",
        ),
        "negative-lock-wait": (
            {"backups_lock_wait_seconds": -1},
            BACKUPS,
            "backups_lock_wait_seconds of at least 0,",
        ),
    },
    "patching": {
        "other-distribution": (
            {"prpm_test_distribution": "Fedora"},
            f"{PATCHING} Fedora);",
        ),
        "health-timeout-of-zero": ({"patching_health_timeout": 0}, PATCHING),
        "negative-apt-lock-timeout": ({"patching_apt_lock_timeout": -1}, PATCHING),
        # The main entry point's argument spec refuses these three first; tasks_from skips it.
        "mail-report-unknown": ({"patching_mail_report": "never"}, PATCHING),
        "needrestart-mode-unknown": ({"patching_needrestart_mode": "i"}, PATCHING),
        "reboot-method-unknown": ({"patching_reboot_method": "kexec"}, PATCHING),
        "schedule-line-break": (
            {"patching_schedule": "Sun *-*-* 04:00:00\nPersistent=false"},
            rf'patching_schedule "Sun *-*-* 04:00:00\nPersistent=false" {CALENDAR}',
            "It is written into prpm-patch.timer, where a line break would add systemd directives.",
        ),
        "apt-update-schedule-semicolon": (
            {"patching_apt_update_schedule": "daily; reboot"},
            f'patching_apt_update_schedule "daily; reboot" {CALENDAR}',
            "It is written into apt-daily.timer's drop-in",
        ),
        "apt-upgrade-schedule-specifier": (
            {"patching_apt_upgrade_schedule": "*-*-* %H:00:00"},
            f'patching_apt_upgrade_schedule "*-*-* %H:00:00" {CALENDAR}',
            "It is written into apt-daily-upgrade.timer's drop-in",
        ),
        "schedule-delay-line-break": (
            {"patching_schedule_randomized_delay": "30min\nPersistent=false"},
            rf'patching_schedule_randomized_delay "30min\nPersistent=false" {TIMESPAN}',
        ),
        "apt-delay-empty": (
            {"patching_apt_randomized_delay": ""},
            f'patching_apt_randomized_delay "" {TIMESPAN}',
            "It is written into the drop-ins of apt-daily.timer and apt-daily-upgrade.timer",
        ),
        "mail-with-a-semicolon": (
            {"patching_mail": "root; reboot"},
            'patching_mail "root; reboot" is refused: give an address or a local user, or nothing',
        ),
        "reboot-time-in-words": (
            {"patching_unattended_automatic_reboot_time": "4:30am"},
            'patching_unattended_automatic_reboot_time "4:30am" is refused: give a time as'
            " shutdown takes it (HH:MM, +minutes or now).",
        ),
        "mirror-line-break": (
            {"patching_debian_security_mirror": "http://deb.example.org/sec\nTrusted: yes"},
            r'patching_debian_security_mirror "http://deb.example.org/sec\nTrusted: yes" is'
            " refused: give one http(s) URL",
        ),
        "origin-with-a-quote": (
            {"patching_unattended_origins": ['origin=Debian";\nUnattended-Upgrade::X "1']},
            "patching_unattended_origins: entries with a double quote, a line break (LF or CR) or"
            r' a NUL byte: "origin=Debian\";\nUnattended-Upgrade::X \"1".',
            APT_QUOTES,
        ),
        "blocklist-line-break": (
            {"patching_package_blocklist": ["linux-", "docker\r"]},
            "patching_package_blocklist: entries with a double quote, a line break (LF or CR) or"
            r' a NUL byte: "docker\r".',
        ),
    },
}
# Secret values that no output may show, by case.
NOT_SHOWN = {
    "registry_stack-stripe-key-line-break": "sk_test_Stripe1",
    "registry_stack-openai-key-leading-quote": "sk-OpenAi2",
    "registry_stack-github-secret-carriage-return": "gh3Secret",
    "registry_stack-s3-access-key-nul": "AKIAKey4",
    "registry_stack-s3-secret-line-break": "S3cret5",
    "registry_stack-extra-env-value-line-break": "evil6",
    "registry_stack-github-secret-without-id": "gh-secret7",
}


@dataclass(frozen=True)
class Case:
    """One bad input: its host (role-name), the role, the variables over the role's baseline,
    and what the host's messages say (whitespace normalised)."""

    host: str
    role: str
    bad: dict[str, Any]
    says: tuple[str, ...]


CASES = [
    Case(f"{role}-{name}", role, bad, tuple(says))
    for role, cases in REFUSALS.items()
    for name, (bad, *says) in cases.items()
]

PLAY = """
- name: Preflight of prpm.hobby.{role}
  hosts: {role}
  gather_facts: false
  tasks:
{facts}    - name: Run the preflight of prpm.hobby.{role}
      ansible.builtin.include_role:
        name: prpm.hobby.{role}
        tasks_from: preflight
    - name: Mark the host as past the preflight
      ansible.builtin.copy:
        content: "passed\\n"
        dest: "{{{{ prpm_test_markers }}}}/{{{{ inventory_hostname }}}}"
        mode: "0600"
"""
# ansible_facts['distribution'] for patching, the same on any controller.
DISTRIBUTION = """    - name: Set the distribution fact
      ansible.builtin.set_fact:
        distribution: "{{ prpm_test_distribution }}"
        cacheable: true
"""
CONFIG = """[defaults]
collections_path = {collections}
local_tmp = {tmp}/local_tmp
remote_tmp = {tmp}/remote_tmp
callback_result_format = yaml
stdout_callback = ansible.builtin.default
forks = 10
retry_files_enabled = false
nocows = true
localhost_warning = false
"""
# A host's result starts "fatal: [host]: FAILED! =>" or "failed: [host] (item=...) =>" at the
# start of a line; its YAML (callback_result_format) follows, indented.
RESULT = re.compile(r"^[a-z]+: \[(?P<host>[^\]]+)\].*=>\s*$")


def normalise(text: str) -> str:
    return " ".join(text.split())


@dataclass(frozen=True)
class Run:
    """One ansible-playbook run, each host's messages and its marker."""

    run: PlaybookRun
    stdout: str
    markers: Path

    def messages(self, host: str) -> str:
        """The `msg` of every result the default callback printed for this host (read from its
        YAML), whitespace normalised."""
        blocks: list[list[str]] = []
        current: list[str] | None = None
        for line in self.stdout.splitlines():
            if line[:1].strip():
                match = RESULT.match(line)
                current = [] if match and match["host"] == host else None
                if current is not None:
                    blocks.append(current)
            elif current is not None:
                current.append(line)
        msgs = []
        for block in blocks:
            result = yaml.safe_load(textwrap.dedent("\n".join(block)))
            if isinstance(result, dict) and "msg" in result:
                msgs.append(str(result["msg"]))
        return normalise(" ".join(msgs))

    def passed(self, host: str) -> bool:
        return (self.markers / host).exists()


def play(tmp: Path, name: str, hosts: dict[str, dict[str, dict[str, Any]]]) -> Run:
    """Run the roles' preflights, each on its hosts ({role: {host: variables}})."""
    work = tmp / name
    markers = work / "markers"
    markers.mkdir(parents=True)
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "children": {role: {"hosts": by_host} for role, by_host in hosts.items()},
        }
    }
    (work / "inventory.json").write_text(json.dumps(inventory), encoding="utf-8")
    (work / "extra.json").write_text(json.dumps({"prpm_test_markers": str(markers)}), "utf-8")
    plays = "".join(
        PLAY.format(role=role, facts=DISTRIBUTION if role == "patching" else "") for role in hosts
    )
    (work / "play.yml").write_text(plays, encoding="utf-8")
    (work / "ansible.cfg").write_text(
        CONFIG.format(collections=tmp / "collections", tmp=work), encoding="utf-8"
    )
    # The developer's Ansible settings and SSH session stay out (SSH_CLIENT feeds base's lockout
    # check); the configuration above is the whole of it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "SSH_"))}
    env |= {"ANSIBLE_CONFIG": str(work / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1"}
    ansible = Path(sys.executable).with_name("ansible-playbook")
    proc = subprocess.run(
        [str(ansible), "-i", "inventory.json", "-e", "@extra.json", "play.yml"],
        capture_output=True, text=True, env=env, cwd=work, check=False, timeout=600,
    )  # fmt: skip
    (work / "output.txt").write_text(proc.stdout + proc.stderr, encoding="utf-8")
    return Run(PlaybookRun(proc.returncode, proc.stdout + proc.stderr), proc.stdout, markers)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    tmp = tmp_path_factory.mktemp("preflight_refusals")
    # The collection as prpm.hobby, whether or not `make setup` linked .collections.
    (tmp / "collections" / "ansible_collections" / "prpm").mkdir(parents=True)
    (tmp / "collections" / "ansible_collections" / "prpm" / "hobby").symlink_to(ROOT)
    baselines = {role: {f"{role}-baseline": BASELINES[role]} for role in ROLES}
    refusals = {role: dict(hosts) for role, hosts in baselines.items()}
    for c in CASES:
        refusals[c.role][c.host] = BASELINES[c.role] | c.bad
    return {
        "baseline": play(tmp, "baseline", baselines),
        "refusals": play(tmp, "refusals", refusals),
    }


@pytest.mark.parametrize("role", ROLES)
def test_the_baseline_passes_the_preflight(runs: dict[str, Run], role: str) -> None:
    """The harness can pass: the valid baseline gets past the preflight, alone (rc 0) and beside
    the refused cases."""
    host = f"{role}-baseline"
    alone = runs["baseline"]
    assert alone.run.rc == 0, alone.run.output[-4000:]
    assert alone.run.recap[host]["failed"] == 0
    assert alone.passed(host)
    beside = runs["refusals"]
    assert beside.run.recap[host]["failed"] == 0, beside.messages(host)
    assert beside.passed(host)


@pytest.mark.parametrize("c", CASES, ids=[c.host for c in CASES])
def test_bad_input_is_refused_before_any_change(runs: dict[str, Run], c: Case) -> None:
    run = runs["refusals"]
    assert run.run.rc == 2, run.run.output[-4000:]  # 2: some host failed (not a crash: 1, 250)
    messages = run.messages(c.host)
    assert run.run.recap[c.host]["failed"] == 1, messages
    assert run.run.recap[c.host]["changed"] == 0, messages
    assert not run.passed(c.host), messages
    for says in c.says:
        assert normalise(says) in messages
    if c.host in NOT_SHOWN:
        assert NOT_SHOWN[c.host] not in run.run.output
