# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm.hobby.base + prpm.hobby.docker on a Debian 13 host (a container: see notes per test)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import paramiko
import pytest
import requests
import yaml
from conftest import HTTP_PORT, PROBE_PORT, SSH_PORT, run_playbook

ADMIN = "admin"


# --- SSH ---------------------------------------------------------------------------------------
def test_sshd_effective_config_is_hardened(host):
    cfg = dict(
        line.split(" ", 1) for line in host.check_output("sshd -T").splitlines() if " " in line
    )
    assert cfg["permitrootlogin"] == "no"
    assert cfg["passwordauthentication"] == "no"
    assert cfg["kbdinteractiveauthentication"] == "no"
    assert cfg["pubkeyauthentication"] == "yes"
    assert cfg["authenticationmethods"] == "publickey"
    assert cfg["allowusers"] == ADMIN
    assert cfg["x11forwarding"] == "no"
    assert cfg["maxauthtries"] == "3"
    assert cfg["maxsessions"] == "2"
    assert cfg["tcpkeepalive"] == "no"


def _connect(**kwargs) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())  # noqa: S507 - throwaway test host
    client.connect(
        "127.0.0.1",
        port=SSH_PORT,
        timeout=10,
        banner_timeout=10,
        auth_timeout=10,
        allow_agent=False,
        look_for_keys=False,
        **kwargs,
    )
    return client


def test_admin_logs_in_with_key_and_has_sudo(ssh_key):
    client = _connect(username=ADMIN, key_filename=str(ssh_key))
    try:
        stdout = client.exec_command("id -un && sudo -n true && echo sudo-ok")[1]
        assert stdout.read().decode().split() == [ADMIN, "sudo-ok"]
    finally:
        client.close()


def test_root_login_refused_even_with_an_authorized_key(host, ssh_key):
    pub = ssh_key.with_suffix(".pub").read_text().strip()
    with host.sudo():
        host.run_expect(
            [0], f"install -d -m 700 /root/.ssh && echo '{pub}' > /root/.ssh/authorized_keys"
        )
    try:
        with pytest.raises(paramiko.AuthenticationException):
            _connect(username="root", key_filename=str(ssh_key))
    finally:
        with host.sudo():
            host.run("rm -f /root/.ssh/authorized_keys")


def test_password_login_refused():
    transport = paramiko.Transport(("127.0.0.1", SSH_PORT))
    try:
        transport.start_client(timeout=10)
        with pytest.raises(paramiko.BadAuthenticationType) as exc:
            transport.auth_password(ADMIN, "not-a-password")
        assert exc.value.allowed_types == ["publickey"]
    finally:
        transport.close()


def test_admin_authorized_keys_exact(host, ssh_key):
    keys = host.file(f"/home/{ADMIN}/.ssh/authorized_keys")
    assert keys.mode == 0o600
    assert keys.content_string.strip().splitlines() == [
        ssh_key.with_suffix(".pub").read_text().strip()
    ]


# --- Memory --------------------------------------------------------------------------------------
def test_swap_file_configured_but_not_active_in_a_container(host):
    swap = host.file("/swapfile")
    assert swap.exists and swap.mode == 0o600 and swap.user == "root"
    assert swap.size == 1024 * 1024 * 1024
    assert host.check_output("blkid -o value -s TYPE /swapfile") == "swap"
    assert any(
        line.split()[:3] == ["/swapfile", "none", "swap"]
        for line in host.file("/etc/fstab").content_string.splitlines()
        if line.strip()
    )
    # Swap is kernel-global: the role must not have activated it on the test machine's kernel.
    assert "/swapfile" not in host.file("/proc/swaps").content_string


def test_sysctls_written(host):
    conf = host.file("/etc/sysctl.d/60-prpm-hobby.conf").content_string
    for line in ("vm.swappiness = 10", "vm.overcommit_memory = 1", "net.ipv4.ip_forward = 1"):
        assert line in conf


def test_network_sysctls_live_in_the_hosts_namespace(host):
    # A container host applies the network sysctls (its own namespace), not the kernel-global ones.
    for key, value in (
        ("net.ipv4.conf.all.log_martians", "1"),
        ("net.ipv4.conf.default.log_martians", "1"),
        ("net.ipv4.conf.all.rp_filter", "1"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.default.accept_source_route", "0"),
        ("net.ipv6.conf.default.accept_redirects", "0"),
    ):
        assert host.check_output(f"sysctl -n {key}") == value, key
    conf = host.file("/etc/sysctl.d/60-prpm-hobby.conf").content_string
    for line in ("kernel.unprivileged_bpf_disabled = 1", "fs.protected_fifos = 2"):
        assert line in conf


# --- Hardening (what Lynis checks) ---------------------------------------------------------------
def test_kernel_modules_banners_accounting_and_umask(host):
    disabled = host.file("/etc/modprobe.d/60-prpm-hobby-disabled.conf").content_string
    for module in ("usb-storage", "firewire-core", "dccp", "sctp", "rds", "tipc"):
        assert f"install {module} /bin/false" in disabled, module
    for path in ("/etc/issue", "/etc/issue.net"):
        assert host.file(path).content_string.startswith("Authorized access only."), path
    assert 'ENABLED="true"' in host.file("/etc/default/sysstat").content_string
    for package in ("libpam-tmpdir", "libpam-passwdqc", "debsums", "sysstat"):
        assert host.package(package).is_installed, package
    umask = [
        line.split()
        for line in host.file("/etc/login.defs").content_string.splitlines()
        if line.startswith("UMASK")
    ]
    assert umask == [["UMASK", "027"]]
    for path, mode in (
        ("/etc/sudoers.d", 0o750),
        ("/etc/cron.d", 0o700),
        ("/etc/cron.daily", 0o700),
        ("/etc/cron.weekly", 0o700),
        ("/etc/cron.monthly", 0o700),
        ("/etc/ssh/sshd_config", 0o600),
    ):
        assert host.file(path).mode == mode, path


def test_login_sessions_dump_no_core_and_idle_shells_end(host, ssh_key):
    """Over SSH, the admin's sessions have a hard core limit of 0 from pam_limits (a plain
    command reads no profile) that cannot be raised; a login shell also gets TMOUT 900,
    read-only. The kernel hands any dump to /bin/false (written for the VM: the stand-in shares
    its machine's kernel, whose pattern stays), and systemd-coredump would store nothing."""
    client = _connect(username=ADMIN, key_filename=str(ssh_key))
    try:
        plain = client.exec_command("ulimit -Hc; ulimit -c 1024 2>&1; ulimit -c")[1].read().decode()
        login = client.exec_command("bash -lc 'echo $TMOUT; TMOUT=0' 2>&1")[1].read().decode()
    finally:
        client.close()
    assert plain.splitlines()[0] == "0", plain
    assert plain.splitlines()[-1] == "0", plain  # raising it failed
    assert login.splitlines()[0] == "900", login
    assert "TMOUT: readonly variable" in login, login
    sysctls = host.file("/etc/sysctl.d/60-prpm-hobby.conf").content_string
    assert "kernel.core_pattern = |/bin/false" in sysctls
    coredump = host.file("/etc/systemd/coredump.conf.d/60-prpm-hobby.conf").content_string
    assert "Storage=none" in coredump.splitlines() and "ProcessSizeMax=0" in coredump.splitlines()


# --- Time and logs -------------------------------------------------------------------------------
def test_utc_and_chrony_without_clock_control(host):
    utc = host.check_output("realpath /usr/share/zoneinfo/UTC")
    assert host.check_output("realpath /etc/localtime") == utc
    assert host.file("/etc/timezone").content_string == "UTC\n"
    assert (
        "pool 2.debian.pool.ntp.org iburst" in host.file("/etc/chrony/chrony.conf").content_string
    )
    assert host.service("chrony").is_running
    # In a container chronyd must not steer the (shared) clock.
    cmdline = host.file(f"/proc/{host.check_output('pidof chronyd').split()[0]}/cmdline").content
    assert b"-x" in cmdline.split(b"\0")


def test_journald_cap_in_effect(host):
    conf = host.file("/etc/systemd/journald.conf.d/60-prpm-hobby.conf").content_string
    assert "SystemMaxUse=500M" in conf
    # journald reports its limits when it (re)opens the journal with the new settings.
    out = host.check_output("journalctl -b -u systemd-journald --no-pager -o cat")
    assert "max 500M" in out


# --- Docker ---------------------------------------------------------------------------------------
def test_docker_and_compose_v2(host):
    assert host.service("docker").is_running
    assert host.service("docker").is_enabled
    version = host.check_output("docker compose version --short")
    assert version.lstrip("v").split(".")[0] == "2"


def test_docker_daemon_settings(host):
    info = json.loads(host.check_output("docker info --format '{{json .}}'"))
    assert info["LiveRestoreEnabled"] is True
    assert info["LoggingDriver"] == "json-file"
    daemon = json.loads(host.file("/etc/docker/daemon.json").content_string)
    assert daemon["log-opts"] == {"max-size": "10m", "max-file": "3"}
    assert daemon["default-address-pools"] == [{"base": "10.203.0.0/16", "size": 24}]
    assert daemon["no-new-privileges"] is True
    assert daemon["icc"] is False
    assert daemon["userland-proxy"] is False
    assert daemon["default-ulimits"] == {"core": {"Name": "core", "Hard": 0, "Soft": 0}}


@pytest.mark.usefixtures("published_probe")
def test_daemon_least_privilege_in_force(host):
    # No docker-proxy process forwards the probe's published ports: the kernel's NAT does, and
    # the host still reaches them on its loopback (test_published_non_public_port_blocked...).
    assert host.run("pgrep -x docker-proxy").rc == 1
    # A container started without any option of its own cannot gain privileges.
    status = host.check_output("docker run --rm prpm-probe /bin/busybox cat /proc/self/status")
    assert "NoNewPrivs:\t1" in status
    # ... nor write a core dump: soft and hard core limits 0 (dockerd's own unit allows them).
    limits = host.check_output("docker run --rm prpm-probe /bin/busybox cat /proc/self/limits")
    (core,) = [
        line.split() for line in limits.splitlines() if line.startswith("Max core file size")
    ]
    assert core[4:6] == ["0", "0"], limits


def test_compose_networks_come_from_the_safe_pool(host):
    host.run("docker network rm prpm-pool-probe")
    host.run_expect([0], "docker network create prpm-pool-probe")
    try:
        subnet = host.check_output(
            "docker network inspect prpm-pool-probe --format '{{(index .IPAM.Config 0).Subnet}}'"
        )
        assert subnet.startswith("10.203.")
    finally:
        host.run("docker network rm prpm-pool-probe")


def test_docker_packages_held_from_unattended_upgrades(host):
    conf = host.file("/etc/apt/apt.conf.d/51prpm-hobby-docker-hold").content_string
    for pattern in ("docker\\.io$", "docker-cli$", "containerd$", "docker-compose$"):
        assert pattern in conf


# --- Firewall -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def published_probe(host):
    """A container publishing 80 (public) and 5432 (not public) on the instance."""
    host.run_expect([0], "DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static")
    host.run_expect(
        [0],
        "docker image inspect prpm-probe >/dev/null 2>&1 || "
        "(rm -rf /tmp/bb && mkdir -p /tmp/bb/bin /tmp/bb/www && cp /bin/busybox /tmp/bb/bin/ "
        "&& echo probe-ok > /tmp/bb/www/index.html "
        "&& tar -C /tmp/bb -c . | docker import - prpm-probe)",
    )
    host.run("docker rm -f prpm-probe")
    host.run_expect(
        [0],
        "docker run -d --name prpm-probe -p 80:8000 -p 5432:8000 prpm-probe "
        "/bin/busybox httpd -f -p 8000 -h /www",
    )
    yield
    host.run("docker rm -f prpm-probe")


def test_firewall_ruleset_loaded(host):
    out = host.check_output("nft list table inet prpm_firewall")
    assert "policy drop" in out
    assert "ct original proto-dst { 80, 443 }" in out


@pytest.mark.usefixtures("published_probe")
def test_public_port_reachable_from_outside():
    response = requests.get(f"http://127.0.0.1:{HTTP_PORT}/", timeout=10)
    assert response.text.strip() == "probe-ok"


@pytest.mark.usefixtures("published_probe")
def test_published_non_public_port_blocked_from_outside(host):
    # Inside the host the container answers on 5432 ...
    assert host.check_output("busybox wget -qO- http://127.0.0.1:5432/") == "probe-ok"
    # ... but from outside the firewall drops it, although Docker published it.
    with pytest.raises((requests.ConnectionError, requests.Timeout)):
        requests.get(f"http://127.0.0.1:{PROBE_PORT}/", timeout=5)


def test_restarting_nftables_keeps_docker_rules(host):
    with host.sudo():
        host.run_expect([0], "systemctl restart nftables")
    assert host.run("nft list table ip nat").stdout.count("DOCKER") > 0


# --- Idempotence beyond molecule's own check, and preflight ---------------------------------------
def test_check_mode_on_converged_host_reports_no_change():
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == 0, run.output[-3000:]


def _role_tags(role: str) -> list[str]:
    """The tags a role's tasks/main.yml documents, each meant to run alone."""
    main = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"], "roles", role, "tasks", "main.yml")
    tags = {t for task in yaml.safe_load(main.read_text()) for t in task.get("tags", [])}
    return sorted(tags - {"always", role})


def test_every_documented_tag_runs_alone():
    """`--tags base_memory` once failed on a fact only the preflight set: each tag alone works."""
    tags = _role_tags("base") + _role_tags("docker")
    assert "base_memory" in tags and "docker_service" in tags
    for tag in tags:
        run = run_playbook("converge.yml", "--tags", tag)
        assert run.rc == 0, f"--tags {tag}: " + run.output[-3000:]
        assert run.changed() == 0, f"--tags {tag}: " + run.output[-3000:]


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"base_admin_ssh_keys": []}, "base_admin_ssh_keys is empty"),
        ({"base_admin_cidrs": ["0.0.0.0/0"]}, "covers a whole address family"),
        ({"base_admin_cidrs": ["::/0"]}, "covers a whole address family"),
        ({"base_admin_cidrs": []}, "base_admin_cidrs is empty"),
        (
            {"base_admin_cidrs": ["10.0.0.0/8", "203.0.113.7/33"]},
            "entries that are not CIDRs: 203.0.113.7/33",
        ),
        # A string is a comma-separated list, not characters ("not a CIDR: '2'" once).
        ({"base_admin_cidrs": "10.0.0.0/8, 203.0.113.7/33"}, "not CIDRs: 203.0.113.7/33 ("),
        ({"base_swap_size_mib": 1024 * 1024 * 1024}, "Lower base_swap_size_mib or grow the disk"),
        (
            {"docker_default_address_pools": [{"base": "172.31.128.0/17", "size": 24}]},
            "cuts the host off from the VPC DNS resolver",
        ),
        (
            {"base_login_umask": "0999"},
            'octal digits in quotes (e.g. "027"), got "0999"',
        ),
        (
            {"base_disabled_kernel_modules": ["dccp", "sctp /bin/sh"]},
            'must be module names (letters, digits, - and _): refused ["sctp /bin/sh"]',
        ),
    ],
)
def test_bad_input_fails_before_any_change(host, extra_vars, message):
    before = host.check_output(
        "md5sum /etc/nftables.conf /etc/ssh/sshd_config /etc/docker/daemon.json "
        f"/home/{ADMIN}/.ssh/authorized_keys /etc/fstab"
    )
    run = run_playbook("converge.yml", extra_vars=extra_vars)
    assert run.rc != 0
    assert message in " ".join(run.output.split()), run.output[-3000:]
    assert run.changed() == 0
    after = host.check_output(
        "md5sum /etc/nftables.conf /etc/ssh/sshd_config /etc/docker/daemon.json "
        f"/home/{ADMIN}/.ssh/authorized_keys /etc/fstab"
    )
    assert before == after


def test_ssh_port_is_the_only_admin_port():
    # Sanity of the probe itself: the SSH port answers with an SSH banner from outside.
    with socket.create_connection(("127.0.0.1", SSH_PORT), timeout=10) as sock:
        assert sock.recv(64).startswith(b"SSH-2.0-")
