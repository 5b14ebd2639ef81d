# SPDX-License-Identifier: GPL-3.0-or-later
"""Smoke checks: the host image is a systemd Debian 13 host ansible can manage."""

# systemd-modules-load cannot load modules in a container; it is the only unit allowed to fail.
ALLOWED_FAILED_UNITS = {"systemd-modules-load.service"}


def test_systemd_is_pid1(host):
    assert host.file("/proc/1/comm").content_string.strip() == "systemd"


def test_system_is_up(host):
    state = host.run("systemctl is-system-running").stdout.strip()
    assert state in {"running", "degraded"}
    failed = host.run("systemctl list-units --failed --plain --no-legend").stdout
    units = {line.split()[0] for line in failed.splitlines() if line.strip()}
    assert units <= ALLOWED_FAILED_UNITS


def test_debian_13(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("13")


def test_python3_for_ansible(host):
    assert host.exists("python3")
