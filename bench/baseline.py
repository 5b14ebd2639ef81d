# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench, section 1: the bare baseline the cold converge is compared with.

The irreducible work, by hand, on another fresh stand-in: create and boot the container, one
`apt-get install` of the packages the roles install, `docker load` of the images the bench
stand-in runs, its /opt/prpm copied, `docker compose up --wait`, then /health through Caddy.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import time
import urllib.request

import yaml
from common import BENCH, HOST_IMAGE, ROOT, remove_container, sh

BASELINE = "prpm-bench-baseline"
BASELINE_HTTPS = 18743
# The stack role deploys archive images under a name pinned to their image ID (name:tag-id...);
# the archives on the controller are named after the tag.
PIN = re.compile(r"-id[0-9a-f]{12}$")


def deployed_images() -> list[str]:
    """The images the bench stand-in runs (its deployed.json), for the bare baseline."""
    state = json.loads(sh(["docker", "exec", BENCH, "cat", "/opt/prpm/deployed.json"]).stdout)
    return sorted(state["current"]["images"].values())


def health_ok(port: int) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        url = f"https://localhost:{port}/health"
        with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
            return json.load(resp).get("status") == "ok"
    except (OSError, ValueError):
        return False


def _capabilities() -> list[str]:
    data = yaml.safe_load((ROOT / "roles" / "standin" / "vars" / "main.yml").read_text())
    return data["__standin_capabilities"]


def _packages() -> list[str]:
    """The packages the roles install, read from their variables."""
    base = ["openssh-server", "sudo", "nftables", "tzdata", "util-linux", "chrony"]
    base_defaults = yaml.safe_load((ROOT / "roles" / "base" / "defaults" / "main.yml").read_text())
    base += base_defaults["base_hardening_packages"]
    docker_vars = yaml.safe_load((ROOT / "roles" / "docker" / "vars" / "main.yml").read_text())
    docker = docker_vars["__docker_packages"]
    if isinstance(docker, dict):
        docker = docker.get("distro", [])
    return sorted(set(base + list(docker) + ["restic"]))


def baseline() -> dict:
    """The irreducible work, by hand: container, packages, images, compose up, healthy."""
    remove_container(BASELINE)
    steps = {}
    start = time.monotonic()
    caps = [a for c in _capabilities() for a in ("--cap-add", c)]
    sh(
        [
            "docker",
            "run",
            "-d",
            "--name",
            BASELINE,
            "--hostname",
            "baseline",
            "--cgroupns",
            "host",
            "--memory",
            "1g",
            "--cpus",
            "2",
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            *caps,
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp:exec",  # noqa: S108 (a tmpfs inside the container)
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "-v",
            f"{BASELINE}-docker:/var/lib/docker",
            "-p",
            f"127.0.0.1:{BASELINE_HTTPS}:443",
            "--stop-signal",
            "SIGRTMIN+3",
            HOST_IMAGE,
            "/lib/systemd/systemd",
        ]
    )
    while sh(
        ["docker", "exec", BASELINE, "systemctl", "is-system-running"], check=False
    ).stdout.strip() in ("", "initializing", "starting"):
        time.sleep(0.5)
    sh(["docker", "exec", BASELINE, "mount", "-o", "remount,rw", "/proc/sys"])
    steps["host_s"] = time.monotonic() - start
    t = time.monotonic()
    sh(
        [
            "docker",
            "exec",
            "-e",
            "DEBIAN_FRONTEND=noninteractive",
            BASELINE,
            "sh",
            "-c",
            "apt-get update -qq && apt-get install -y -qq " + " ".join(_packages()),
        ]
    )
    sh(["docker", "exec", BASELINE, "systemctl", "start", "docker"])
    steps["packages_s"] = time.monotonic() - t
    t = time.monotonic()
    for image in deployed_images():
        tag = PIN.sub("", image)
        archive = ROOT / ".ansible" / "images" / (tag.replace("/", "_").replace(":", "_") + ".tar")
        with archive.open("rb") as fh:
            sh(["docker", "exec", "-i", BASELINE, "docker", "load", "-q"], stdin=fh)
        if tag != image:
            sh(["docker", "exec", BASELINE, "docker", "tag", tag, image])
    steps["images_s"] = time.monotonic() - t
    t = time.monotonic()
    tar = subprocess.Popen(
        ["docker", "exec", BENCH, "tar", "-C", "/", "-cf", "-", "opt/prpm"], stdout=subprocess.PIPE
    )
    sh(["docker", "exec", "-i", BASELINE, "tar", "-C", "/", "-xf", "-"], stdin=tar.stdout)
    tar.wait()
    sh(
        [
            "docker",
            "exec",
            BASELINE,
            "docker",
            "compose",
            "-f",
            "/opt/prpm/compose.yaml",
            "up",
            "-d",
            "--wait",
        ]
    )
    while not health_ok(BASELINE_HTTPS):
        time.sleep(0.5)
    steps["up_s"] = time.monotonic() - t
    wall = time.monotonic() - start
    return {
        "wall_s": round(wall, 1),
        "steps": {k: round(v, 1) for k, v in steps.items()},
        "packages": _packages(),
    }
