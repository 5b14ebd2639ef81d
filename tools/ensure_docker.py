# SPDX-License-Identifier: GPL-3.0-or-later
"""Make sure a Docker engine answers on this machine.

Used by `make up` and `make test`. When no engine answers:
- on Debian/Ubuntu as root: install `docker.io` from the distribution and start `dockerd`
  (under systemd when PID 1 is systemd, otherwise in the background with a log file);
- elsewhere: print what to install and exit non-zero.

Standard library only: it runs before the project's virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

DOCKERD_LOG = Path("/var/log/dockerd.log")
WAIT_SECONDS = 60


def engine_answers() -> bool:
    """Return True when `docker info` reaches a running daemon."""
    if shutil.which("docker") is None:
        return False
    result = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    return result.returncode == 0 and bool(result.stdout.strip())


def is_debian_like() -> bool:
    try:
        text = Path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        return False
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    ids = {fields.get("ID", "").strip('"')} | set(fields.get("ID_LIKE", "").strip('"').split())
    return bool(ids & {"debian", "ubuntu"})


def install_docker() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print("ensure_docker: installing docker.io from the distribution (apt-get)", flush=True)
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker.io"],
        check=True,
        env=env,
    )


def start_dockerd() -> None:
    systemd_is_pid1 = Path("/run/systemd/system").is_dir()
    if systemd_is_pid1 and shutil.which("systemctl"):
        print("ensure_docker: starting docker.service", flush=True)
        subprocess.run(["systemctl", "start", "docker"], check=True)
        return
    print(f"ensure_docker: starting dockerd in the background (log: {DOCKERD_LOG})", flush=True)
    log = DOCKERD_LOG.open("ab")
    subprocess.Popen(
        ["dockerd"],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def main() -> int:
    if engine_answers():
        return 0
    if os.geteuid() != 0 or not is_debian_like():
        print(
            "ensure_docker: no Docker engine answers. Install Docker Engine (20.10 or newer) "
            "and start it, e.g. on Debian/Ubuntu: `sudo apt-get install docker.io && "
            "sudo systemctl start docker`, then run this again.",
            file=sys.stderr,
        )
        return 1
    if shutil.which("dockerd") is None:
        install_docker()
    start_dockerd()
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        if engine_answers():
            print("ensure_docker: the Docker engine answers", flush=True)
            return 0
        time.sleep(1)
    print(
        f"ensure_docker: dockerd did not answer within {WAIT_SECONDS}s; see {DOCKERD_LOG}",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
