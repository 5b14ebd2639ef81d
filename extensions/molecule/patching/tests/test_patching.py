# SPDX-License-Identifier: GPL-3.0-or-later
"""OS patching: unattended security upgrades, and health-gated patch runs that are measured.

The instance has the whole stack (prepare) and prpm-canary 1.0 from a local apt repository; the
tests publish newer versions of it to make an upgrade pending, then run playbooks/patch.yml.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

import yaml
from conftest import run_playbook

PROJECT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
SCENARIO = Path(os.environ["MOLECULE_SCENARIO_DIRECTORY"])
INSTANCE = f"prpm-{os.environ['MOLECULE_SCENARIO_NAME']}"
COMPOSE = "docker compose -f /opt/prpm/compose.yaml -p prpm"
REPO = "/var/backups/prpm/restic"


def _canary(host) -> str:
    return host.check_output("dpkg-query -W -f '${Version}' prpm-canary")


def _publish(host, version: str, *flags: str) -> None:
    host.check_output(
        f"python3 /usr/local/lib/prpm-test/canary-repo.py {version} {' '.join(flags)}"
    )


def _snapshot_count(host) -> int:
    out = host.check_output(
        f"RESTIC_PASSWORD_FILE=/etc/prpm-backup/restic-password restic -r {REPO} "
        "snapshots --json --tag db"
    )
    return len(json.loads(out or "[]"))


def _healthy(host, wait: int = 0) -> dict:
    cmd = host.run(f"/usr/local/sbin/prpm-patch health --wait {wait}")
    return json.loads(cmd.stdout)


def _started_at() -> str:
    return subprocess.run(
        ["docker", "inspect", "-f", "{{.State.StartedAt}}", INSTANCE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _groups(tmp_path: Path) -> Path:
    """An inventory that puts the instance in prpm_hosts, as the playbooks expect."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    groups = tmp_path / "groups.yml"
    groups.write_text(yaml.safe_dump({"prpm_hosts": {"hosts": {INSTANCE: None}}}))
    return groups


def _patch(tmp_path: Path, **extra):
    """playbooks/patch.yml, as users run it, on the instance put in the prpm_hosts group. The
    image refresh is off unless asked (patch_refresh_images=True): the OS tests leave it out."""
    groups = _groups(tmp_path)
    reports = tmp_path / "reports"
    run = run_playbook(
        str(PROJECT / "playbooks" / "patch.yml"),
        "-i",
        str(groups),
        "-e",
        f"@{PROJECT / 'extensions' / 'molecule' / '_shared' / 'stack-vars.yml'}",
        "-e",
        f"@{SCENARIO / 'vars.yml'}",
        # After the files, so that a test's variables win over theirs.
        "-e",
        json.dumps({"patching_report_dir": str(reports), "patch_refresh_images": False, **extra}),
    )
    report_file = reports / f"{INSTANCE}.json"
    report = json.loads(report_file.read_text()) if report_file.exists() else None
    # Shown in the molecule log (verifier option -s): the figures of each run.
    print(f"\npatch.yml rc={run.rc} changed={run.changed()} report={json.dumps(report)}")
    return run, report


def test_unattended_upgrades_dry_run_with_security_origins_and_blocklist(host):
    """unattended-upgrade itself reads the configuration and passes a dry run."""
    cmd = host.run("unattended-upgrade --dry-run --debug")
    out = cmd.stdout + cmd.stderr
    assert cmd.rc == 0, out[-3000:]
    origins = re.search(r"^Allowed origins are: (.*)$", out, re.M)
    assert origins, out[-3000:]
    assert origins.group(1).split(", ") == [
        "origin=Debian,codename=trixie-security,label=Debian-Security",
        "origin=Debian,codename=trixie,label=Debian-Security",
    ]
    blocklist = re.search(r"^Initial blacklist: (.*)$", out, re.M)
    assert blocklist, out[-3000:]
    entries = blocklist.group(1).split()
    # Ours (vars.yml), then prpm.hobby.docker's: Docker is upgraded only in patch runs.
    for pattern in ["^prpm-canary$", "^postgresql-", "docker\\.io$", "containerd$", "runc$"]:
        assert pattern in entries, entries
    config = host.check_output("apt-config dump Unattended-Upgrade")
    assert 'Unattended-Upgrade::Automatic-Reboot "false";' in config
    assert 'Unattended-Upgrade::Remove-Unused-Kernel-Packages "true";' in config
    assert 'Unattended-Upgrade::MailReport "only-on-error";' in config
    # The package's own origins (the whole release, not only security) were cleared.
    assert 'label=Debian";' not in config
    periodic = host.check_output("apt-config dump APT::Periodic")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in periodic


def test_check_diff_on_the_converged_host_reports_no_change():
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == 0, run.output[-3000:]


def test_security_suite_is_an_apt_source(host):
    policy = host.check_output("apt-cache policy")
    assert "trixie-security" in policy


def test_timers_active_in_their_windows(host):
    for timer in ["apt-daily.timer", "apt-daily-upgrade.timer", "prpm-patch.timer"]:
        svc = host.service(timer)
        assert svc.is_enabled, timer
        assert svc.is_running, timer
    show = host.check_output(
        "systemctl show -p TimersCalendar -p RandomizedDelayUSec apt-daily-upgrade.timer"
    )
    assert "06:00:00" in show
    assert "RandomizedDelayUSec=1h" in show
    show = host.check_output(
        "systemctl show -p TimersCalendar -p RandomizedDelayUSec prpm-patch.timer"
    )
    assert "Sun *-*-* 04:00:00 UTC" in show
    assert "RandomizedDelayUSec=30min" in show
    assert host.service("prpm-patch-post-boot.service").is_enabled


def test_needrestart_restarts_without_asking_but_not_docker(host):
    conf = host.file("/etc/needrestart/conf.d/50-prpm-hobby.conf").content_string
    assert "$nrconf{restart} = 'a';" in conf
    assert "$nrconf{override_rc}{qr(^docker)} = 0;" in conf
    cmd = host.run("needrestart -r l -b")
    assert cmd.rc == 0, cmd.stderr


def test_unhealthy_stack_is_not_patched(host, tmp_path):
    """Registry down before the run: clear error, no backup, no upgrade."""
    assert _healthy(host, wait=180)["ok"], "the stack must be healthy before this test"
    _publish(host, "2.0")
    snapshots = _snapshot_count(host)
    host.check_output(f"{COMPOSE} stop registry")
    try:
        run, report = _patch(tmp_path)
        assert run.rc != 0, run.output[-3000:]
        assert "is not healthy, so it was not patched and nothing was changed" in run.output
        assert "'registry': 'exited'" in run.output
        assert report is None
        assert run.changed() == 0
        assert _canary(host) == "1.0"
        assert _snapshot_count(host) == snapshots
    finally:
        host.check_output(f"{COMPOSE} up --detach --no-recreate --no-deps registry")
    assert _healthy(host, wait=120)["ok"]


def test_patch_run_upgrades_the_pending_package(host, tmp_path):
    assert _healthy(host, wait=180)["ok"], "the stack must be healthy before this test"
    snapshots = _snapshot_count(host)
    run, report = _patch(tmp_path)
    assert run.rc == 0, run.output[-4000:]
    assert report["result"] == "ok"
    canary = [u for u in report["upgraded"] if u["name"] == "prpm-canary"]
    assert canary == [{"name": "prpm-canary", "from": "1.0", "to": "2.0"}]
    assert report["upgraded_count"] == len(report["upgraded"])
    assert report["rebooted"] is False
    assert report["probes"] > 0
    assert report["unavailable_seconds"] == 0, report
    assert _canary(host) == "2.0"
    assert _snapshot_count(host) == snapshots + 1
    assert _healthy(host)["ok"]
    # Nothing pending any more: a second run changes nothing and takes no backup.
    again, no_report = _patch(tmp_path / "again")
    assert again.rc == 0, again.output[-3000:]
    assert again.changed() == 0, again.output[-3000:]
    assert "nothing to do" in again.output
    assert no_report is None
    assert _snapshot_count(host) == snapshots + 1


def test_patch_run_reboots_when_required(host, tmp_path):
    """A package asks for a reboot: the host restarts, the stack comes back, downtime measured."""
    assert _healthy(host, wait=180)["ok"], "the stack must be healthy before this test"
    _publish(host, "3.0", "--reboot-required")
    before = _started_at()
    run, report = _patch(tmp_path)
    assert run.rc == 0, run.output[-4000:]
    assert report["rebooted"] is True
    assert any("reboot-required" in r and "prpm-canary" in r for r in report["reboot_reasons"])
    assert report["reboot_still_required"] is False
    assert _started_at() != before
    assert 0 < report["unavailable_seconds"] < 60, report
    assert report["failed_probes"] > 0
    assert _canary(host) == "3.0"
    assert not host.file("/run/reboot-required").exists
    assert _healthy(host)["ok"]


def test_scheduled_run_on_the_host(host):
    """The host's own patch window: the same sequence, started by its timer's service."""
    assert _healthy(host, wait=180)["ok"], "the stack must be healthy before this test"
    _publish(host, "4.0")
    cmd = host.run("systemctl start prpm-patch.service")
    assert cmd.rc == 0, host.run("journalctl -u prpm-patch.service -n 40 --no-pager").stdout
    last = json.loads(host.file("/var/lib/prpm-patch/last-run.json").content_string)
    assert last["result"] == "ok", last
    assert {"name": "prpm-canary", "from": "3.0", "to": "4.0"} in last["upgraded"]
    assert last["rebooted"] is False
    assert _canary(host) == "4.0"


def _container_state() -> dict:
    out = subprocess.run(
        ["docker", "inspect", "-f", "{{json .State}}", INSTANCE],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)


def test_scheduled_run_reboots_and_the_post_boot_check_passes(host):
    """The host's own run with a reboot required: stack stopped, reboot, post-boot check ok."""
    assert _healthy(host, wait=180)["ok"], "the stack must be healthy before this test"
    _publish(host, "5.0", "--reboot-required")
    before = _started_at()
    host.check_output("systemctl start --no-block prpm-patch.service")
    # `systemctl reboot` in the container ends it (its PID 1 exits); what brings a real host
    # back is its hypervisor, here this test: start the container again once it stopped.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = _container_state()
        if state["StartedAt"] != before and state["Running"]:
            break
        if not state["Running"]:
            subprocess.run(["docker", "start", INSTANCE], check=True, capture_output=True)
        time.sleep(2)
    assert _started_at() != before, "the scheduled run did not reboot the host"
    last = {}
    while time.monotonic() < deadline:
        cmd = host.run("cat /var/lib/prpm-patch/last-run.json")
        last = json.loads(cmd.stdout) if cmd.rc == 0 and cmd.stdout.strip() else {}
        if "post_boot" in last:
            break
        time.sleep(3)
    print(f"\nscheduled run with reboot: {json.dumps(last)}")
    assert last.get("result") == "ok", last
    assert last["rebooted"] is True
    assert {"name": "prpm-canary", "from": "4.0", "to": "5.0"} in last["upgraded"]
    assert last["post_boot"]["ok"] is True
    assert not host.file("/var/lib/prpm-patch/reboot-pending.json").exists
    assert not host.file("/run/reboot-required").exists
    assert _canary(host) == "5.0"
    assert _healthy(host)["ok"]


def test_post_boot_check_reports_an_unhealthy_stack(host):
    """After a patch reboot, a stack that does not come back fails the check, loudly."""
    host.check_output(
        'echo \'{"since": 0, "reasons": ["test"]}\' > /var/lib/prpm-patch/reboot-pending.json'
    )
    host.check_output(f"{COMPOSE} pause registry")
    try:
        cmd = host.run("/usr/local/sbin/prpm-patch post-boot --timeout 10")
    finally:
        host.check_output(f"{COMPOSE} unpause registry")
    assert cmd.rc == 1, cmd.stdout + cmd.stderr
    assert "stack unhealthy after the patch reboot" in cmd.stderr
    assert "registry=paused" in cmd.stderr
    last = json.loads(host.file("/var/lib/prpm-patch/last-run.json").content_string)
    assert last["result"] == "failed"
    assert not host.file("/var/lib/prpm-patch/reboot-pending.json").exists
    assert _healthy(host, wait=60)["ok"]


# --- Images pinned by digest, refreshed in the patch window ------------------------------------
# Redis comes from the registry on the host (prepare.yml); the tests move its tag to new images.
REDIS = "127.0.0.1:5000/prpm-hobby/redis:8"


def _push(host, dockerfile: str) -> str:
    """Build an image from dockerfile (FROM, LABEL, ENTRYPOINT: nothing runs) as the Redis tag the
    stack pulls, push it, and give its digest."""
    host.check_output(
        f"printf '%s' {shlex.quote(dockerfile)} | DOCKER_BUILDKIT=0 docker build -q -t {REDIS} -"
    )
    pushed = host.check_output(f"docker push {REDIS}")
    return re.search(r"digest: (sha256:[0-9a-f]{64})", pushed).group(1)


def _redis(host) -> tuple[str, str, str]:
    """The Redis reference in compose.yaml, in the deployed state, and of the running container."""
    compose = yaml.safe_load(host.file("/opt/prpm/compose.yaml").content_string)
    state = json.loads(host.file("/opt/prpm/deployed.json").content_string)
    running = host.check_output(f"{COMPOSE} ps --format '{{{{.Image}}}}' redis")
    return compose["services"]["redis"]["image"], state["current"]["images"]["redis"], running


def test_a_pulled_image_is_deployed_pinned_by_digest(host):
    inspect = f"docker image inspect {REDIS} --format '{{{{json .RepoDigests}}}}'"
    digests = json.loads(host.check_output(inspect))
    (digest,) = [
        d.split("@")[1] for d in digests if d.startswith("127.0.0.1:5000/prpm-hobby/redis@")
    ]
    assert _redis(host) == (f"{REDIS}@{digest}",) * 3


STORAGE = "localhost/prpm-hobby/storage:1"


def _controller_id(ref: str) -> str:
    out = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def _storage(host) -> str:
    state = json.loads(host.file("/opt/prpm/deployed.json").content_string)
    return state["current"]["images"]["storage"]


def _deploy(tmp_path: Path):
    """playbooks/deploy.yml on the instance, with the scenario's settings."""
    return run_playbook(
        str(PROJECT / "playbooks" / "deploy.yml"),
        "-i", str(_groups(tmp_path)),
        "-e", f"@{PROJECT / 'extensions' / 'molecule' / '_shared' / 'stack-vars.yml'}",
        "-e", f"@{SCENARIO / 'vars.yml'}",
    )  # fmt: skip


def test_a_moved_tag_waits_for_the_patch_window_which_deploys_it(host, tmp_path):
    """The tag points at a new image: a deploy keeps the pinned one (changed=0); the patch run
    pulls the tag, deploys the new digest health-gated and lists it in its report. An offline
    image rebuilt on the controller under its tag (tools/images.py refresh) is deployed by the
    same patch run, pinned to its new image ID."""
    assert _healthy(host, wait=180)["ok"], "the stack must be healthy before this test"
    old = _redis(host)[0]
    new = _push(host, f"FROM {old}\nLABEL io.prpm-hobby.test=refreshed\n")
    assert new not in old
    deploy = _deploy(tmp_path)
    assert deploy.rc == 0, deploy.output[-3000:]
    assert deploy.changed() == 0, deploy.output[-3000:]
    assert _redis(host) == (old,) * 3
    original = _controller_id(STORAGE)
    storage_before = _storage(host)
    assert storage_before == f"{STORAGE}-id{original[7:19]}"
    rebuild = ["docker", "build", "-q", "-t", STORAGE, "-"]
    subprocess.run(
        rebuild,
        input=f"FROM {original}\nLABEL io.prpm-hobby.test=refreshed\n",
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    rebuilt = _controller_id(STORAGE)
    try:
        run, report = _patch(tmp_path, patch_refresh_images=True)
        assert run.rc == 0, run.output[-4000:]
        assert report["images_changed"] == [
            {"service": "redis", "from": old, "to": f"{REDIS}@{new}"},
            {"service": "storage", "from": storage_before, "to": f"{STORAGE}-id{rebuilt[7:19]}"},
        ]
        assert _redis(host) == (f"{REDIS}@{new}",) * 3
        assert _storage(host) == f"{STORAGE}-id{rebuilt[7:19]}"
        assert _healthy(host)["ok"]
        # A second patch run finds nothing new: no deploy, no change, and (the OS has nothing to
        # do either) no report.
        run, report = _patch(tmp_path / "again", patch_refresh_images=True)
        assert run.rc == 0, run.output[-4000:]
        assert run.changed() == 0, run.output[-4000:]
        assert report is None
    finally:
        # The controller's tag back at the image the other scenarios use.
        subprocess.run(["docker", "tag", original, STORAGE], check=True)
        subprocess.run(
            ["docker", "image", "prune", "-f", "--filter", "label=io.prpm-hobby.test"], check=True
        )
        # And the host back at it, for the tests that follow.
        deploy = _deploy(tmp_path / "restore")
        assert deploy.rc == 0, deploy.output[-3000:]
    assert _storage(host) == storage_before


def test_a_refresh_never_deploys_another_version(host, tmp_path):
    """The inventory names another tag than runs (as after a rollback): the patch run's refresh
    stops before any change instead of deploying it."""
    before = _redis(host)
    run, report = _patch(
        tmp_path,
        patch_refresh_images=True,
        registry_stack_redis_image="127.0.0.1:5000/prpm-hobby/redis:7",
    )
    assert run.rc != 0, run.output[-3000:]
    assert "the inventory names other versions than the host runs: redis (" in run.output
    assert run.changed() == 0, run.output[-3000:]
    assert report is None
    assert _redis(host) == before


def test_a_broken_new_image_is_rolled_back_and_the_os_is_not_patched(host, tmp_path):
    """The tag moves to an image that never gets healthy: the patch run rolls Redis back to the
    digest that ran, fails, and never reaches the OS upgrade."""
    assert _healthy(host, wait=180)["ok"], "the stack must be healthy before this test"
    good = _redis(host)[0]
    _publish(host, "6.0")
    _push(host, f'FROM {good}\nENTRYPOINT ["/bin/false"]\n')
    try:
        run, report = _patch(tmp_path, patch_refresh_images=True, registry_stack_health_timeout=60)
        assert run.rc != 0, run.output[-3000:]
        assert "ROLLED BACK" in run.output, run.output[-3000:]
        assert report is None
        assert _redis(host) == (good,) * 3
        assert _canary(host) == "5.0"
        assert _healthy(host, wait=60)["ok"]
    finally:
        # The tag back at the good image, for whatever runs next.
        pinned = good.replace(":8@", "@")
        host.check_output(f"docker tag {pinned} {REDIS} && docker push -q {REDIS}")
