# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: cold converge vs a bare baseline, warm re-run, footprint, request path.

Runs beside the user's stand-in (its own containers and ports, bench/inventory) and writes
bench/results.json and docs/performance.md from what it measured. Benchmarks, not tests:
nothing here fails on a slow figure; the targets are compared and reported.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shlex
import ssl
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import registry
import yaml

ROOT = Path(__file__).resolve().parents[1]
INVENTORY = ROOT / "bench" / "inventory"
RESULTS = ROOT / "bench" / "results.json"
REPORT = ROOT / "docs" / "performance.md"
HOST_IMAGE = "localhost/prpm-hobby/host:debian13"
WRK_IMAGE = "localhost/prpm-hobby/wrk:4"
BENCH = "prpm-bench-standin"
BASELINE = "prpm-bench-baseline"
BENCH_HTTPS = 18543
BASELINE_HTTPS = 18743
IDLE_SECONDS = int(os.environ.get("PRPM_BENCH_IDLE_SECONDS", "120"))
WRK_SECONDS = int(os.environ.get("PRPM_BENCH_WRK_SECONDS", "10"))
# Few connections: the fixture registry answers /health with 503 when overloaded, and Caddy
# then marks it down; a run with error responses measures errors, not the path.
WRK_CONNECTIONS = int(os.environ.get("PRPM_BENCH_WRK_CONNECTIONS", "4"))
# Images make images builds; the bench stand-in's registry image is read from its deployed.json.
STACK_IMAGES = [
    "localhost/prpm-hobby/postgres:17",
    "localhost/prpm-hobby/redis:8",
    "localhost/prpm-hobby/caddy:2",
    "localhost/prpm-hobby/storage:1",
]


def deployed_images() -> list[str]:
    """The images the bench stand-in runs (its deployed.json), for the bare baseline."""
    state = json.loads(sh(["docker", "exec", BENCH, "cat", "/opt/prpm/deployed.json"]).stdout)
    return sorted(state["current"]["images"].values())


_RECAP = re.compile(
    r"^(?P<host>\S+)\s+:\s+ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+"
    r"unreachable=(?P<unreachable>\d+)\s+failed=(?P<failed>\d+)\s+skipped=(?P<skipped>\d+)",
    re.M,
)
# ansible.posix.profile_roles: "registry_stack ------ 12.34s"
_ROLE_TIME = re.compile(r"^(?P<role>[\w.]+) -+ (?P<secs>[\d.]+)s$", re.M)


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def sh(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    check = kwargs.pop("check", True)
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    return subprocess.run(cmd, check=check, **kwargs)


def remove_container(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
    subprocess.run(["docker", "volume", "rm", f"{name}-docker"], capture_output=True, check=False)


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


def playbook(name: str, profile: bool = False) -> dict:
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    if profile:
        env["ANSIBLE_CALLBACKS_ENABLED"] = "ansible.posix.profile_roles"
        env["PROFILE_ROLES_SORT_ORDER"] = "descending"
    start = time.monotonic()
    proc = subprocess.run(
        ["ansible-playbook", "-i", str(INVENTORY), name],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - start
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.stderr.write(out[-6000:])
        raise SystemExit(f"bench: {name} failed (rc={proc.returncode})")
    recap = {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "skipped")}
        for m in _RECAP.finditer(out)
    }
    roles = {m["role"]: float(m["secs"]) for m in _ROLE_TIME.finditer(out)}
    return {
        "wall_s": round(wall, 1),
        "tasks": sum(h["ok"] + h["skipped"] for h in recap.values()),
        "changed": sum(h["changed"] for h in recap.values()),
        "recap": recap,
        "roles_s": roles,
    }


# --- 1. cold converge, and the bare baseline ---------------------------------------------


def cold_converge() -> dict:
    remove_container(BENCH)
    log("cold converge: site.yml on a fresh stand-in")
    return playbook("site.yml", profile=True)


def _capabilities() -> list[str]:
    data = yaml.safe_load((ROOT / "roles" / "standin" / "vars" / "main.yml").read_text())
    return data["__standin_capabilities"]


def _packages() -> list[str]:
    """The packages the roles install, read from their variables."""
    base = ["openssh-server", "sudo", "nftables", "tzdata", "util-linux", "chrony"]
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
        archive = (
            ROOT / ".ansible" / "images" / (image.replace("/", "_").replace(":", "_") + ".tar")
        )
        with archive.open("rb") as fh:
            sh(["docker", "exec", "-i", BASELINE, "docker", "load", "-q"], stdin=fh)
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


# --- 3. footprint -------------------------------------------------------------------------


def _mib(text: str) -> float:
    value, unit = re.match(r"([\d.]+)\s*([KMG]i?B|B)", text).groups()
    factor = {
        "B": 1 / 2**20,
        "KiB": 1 / 1024,
        "KB": 1 / 1024,
        "MiB": 1,
        "MB": 1,
        "GiB": 1024,
        "GB": 1024,
    }[unit]
    return round(float(value) * factor, 1)


_PSS_SCRIPT = """
import glob
total = 0
for path in glob.glob('/proc/[0-9]*/smaps_rollup'):
    try:
        with open(path) as fh:
            total += sum(int(ln.split()[1]) for ln in fh if ln.startswith('Pss:'))
    except OSError:
        pass
print(total)
"""


def footprint() -> dict:
    log(f"footprint: {IDLE_SECONDS} s idle")
    time.sleep(IDLE_SECONDS)
    inner = sh(
        ["docker", "exec", BENCH, "docker", "stats", "--no-stream", "--format", "{{json .}}"]
    ).stdout
    containers = {}
    for line in inner.splitlines():
        row = json.loads(line)
        containers[row["Name"]] = _mib(row["MemUsage"].split("/")[0].strip())
    # Every process of the host (systemd, sshd, dockerd, containerd, the stack...), as PSS so
    # shared pages count once; the stand-in's own cgroup is empty on cgroup v1 (systemd inside
    # moves its processes), and its `free` shows the machine's memory.
    pss_kib = sh(["docker", "exec", BENCH, "python3", "-c", _PSS_SCRIPT]).stdout.strip()
    host_used = round(int(pss_kib) / 1024, 1)
    swaps = sh(["docker", "exec", BENCH, "cat", "/proc/swaps"]).stdout.strip().splitlines()[1:]
    stack = round(sum(containers.values()), 1)
    return {
        "containers_mib": containers,
        "stack_mib": stack,
        "host_system_mib": round(host_used - stack, 1),
        "host_used_mib": host_used,
        "swap_devices": swaps,
        "idle_s": IDLE_SECONDS,
    }


# --- 4. request path ----------------------------------------------------------------------


def _wrk(url: str, header: str | None = None) -> dict:
    caddy = sh(
        [
            "docker",
            "exec",
            BENCH,
            "docker",
            "ps",
            "-q",
            "-f",
            "label=com.docker.compose.service=caddy",
        ]
    ).stdout.strip()
    cmd = [
        "docker",
        "exec",
        BENCH,
        "docker",
        "run",
        "--rm",
        "--network",
        f"container:{caddy}",
        WRK_IMAGE,
        "-t2",
        f"-c{WRK_CONNECTIONS}",
        f"-d{WRK_SECONDS}s",
        "--latency",
    ]
    if header:
        cmd += ["-H", header]
    out = sh([*cmd, url]).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))

    def ms(v: str) -> float:
        num, unit = re.match(r"([\d.]+)(\w+)", v).groups()
        return round(float(num) * {"us": 0.001, "ms": 1, "s": 1000}[unit], 2)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": round(rps),
        "p50_ms": ms(lat["50"]),
        "p99_ms": ms(lat["99"]),
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "non_2xx": int(errors.group(1)) if errors else 0,
    }


def request_path(real_user: str | None = None) -> dict:
    log("request path: wrk through Caddy (HTTPS) and straight to the registry")
    with subprocess.Popen(["docker", "save", WRK_IMAGE], stdout=subprocess.PIPE) as save:
        sh(["docker", "exec", "-i", BENCH, "docker", "load", "-q"], stdin=save.stdout)
    if real_user:
        results = {}
        header = f"User-Agent: {registry.EXEMPT_UA}"
        for path in registry.paths(real_user):
            caddy = _wrk(f"https://localhost{path}", header)
            direct = _wrk(f"http://registry:3111{path}", header)
            results[path] = {
                "caddy_https": caddy,
                "direct": direct,
                "rps_ratio": round(caddy["rps"] / direct["rps"], 2),
            }
        return results
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    body = json.dumps({"name": "bench-pkg", "version": "1.0.0", "description": "x" * 512})
    req = urllib.request.Request(
        f"https://localhost:{BENCH_HTTPS}/api/v1/packages/bench-pkg",
        data=body.encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=10):  # noqa: S310 (local URL)
        pass
    results = {}
    for path in ("/health", "/api/v1/packages/bench-pkg"):
        caddy = _wrk(f"https://localhost{path}")
        direct = _wrk(f"http://registry:3111{path}")
        results[path] = {
            "caddy_https": caddy,
            "direct": direct,
            "rps_ratio": round(caddy["rps"] / direct["rps"], 2),
        }
    return results


# --- 5. backups of a ~200 MB database (issue: backups) -----------------------------------

BACKUP_ROWS = int(os.environ.get("PRPM_BENCH_BACKUP_ROWS", "200000"))


def backup_restore(container: str) -> dict:
    """prpm-backup db + restore of a generated ~200 MB database, vs bare pg_dump | pg_restore."""
    compose = "docker compose -f /opt/prpm/compose.yaml -p prpm"

    def on_host(script: str) -> float:
        start = time.monotonic()
        sh(["docker", "exec", container, "sh", "-c", script])
        return round(time.monotonic() - start, 1)

    psql = f"{compose} exec -T postgres psql -v ON_ERROR_STOP=1 -U prpm -d prpm_registry -Atc"
    log(f"backups: generating {BACKUP_ROWS} rows of 1 KiB of random hex")
    on_host(
        f"{psql} 'DROP TABLE IF EXISTS bench_blob' && {psql} "  # noqa: S608 (fixed SQL)
        "'CREATE TABLE bench_blob AS SELECT g AS id, (SELECT string_agg(md5(random()::text "
        f"|| g::text || i::text), $$$$) FROM generate_series(1, 32) i) AS body FROM "
        f"generate_series(1, {BACKUP_ROWS}) g'"
    )
    size = sh(
        [
            "docker",
            "exec",
            container,
            "sh",
            "-c",
            f"{psql} \"SELECT pg_database_size('prpm_registry')\"",
        ]
    ).stdout.strip()
    backup_s = on_host("/usr/local/sbin/prpm-backup db --repo local")
    restore_s = on_host("/usr/local/sbin/prpm-backup restore --repo local")
    bare_s = on_host(
        f"{compose} exec -T postgres sh -c 'dropdb -U prpm --if-exists bench_scratch && "
        "createdb -U prpm bench_scratch && "
        "pg_dump -U prpm -Fc prpm_registry | pg_restore -U prpm -d bench_scratch --no-owner && "
        "dropdb -U prpm bench_scratch'"
    )
    # Leave the host as it was: no bench table, no 200 MB snapshot.
    on_host(f"{psql} 'DROP TABLE bench_blob' && /usr/local/sbin/prpm-backup db --repo local")

    def restic(args: str) -> str:
        return sh(
            [
                "docker",
                "exec",
                container,
                "sh",
                "-c",
                "RESTIC_PASSWORD_FILE=/etc/prpm-backup/restic-password restic -q "
                f"-r /var/backups/prpm/restic {args}",
            ]
        ).stdout

    snaps = json.loads(restic("snapshots --json --tag db"))
    big = [s["id"] for s in snaps if "rows:public.bench_blob=" + str(BACKUP_ROWS) in s["tags"]]
    if big:
        restic("forget --prune " + " ".join(big))
    return {
        "rows": BACKUP_ROWS,
        "database_mib": round(int(size) / 2**20, 1),
        "backup_s": backup_s,
        "restore_s": restore_s,
        "bare_dump_restore_s": bare_s,
    }


# --- report -------------------------------------------------------------------------------


def machine() -> dict:
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    cpu = [
        ln.split(":", 1)[1].strip()
        for ln in Path("/proc/cpuinfo").read_text().splitlines()
        if ln.startswith("model name")
    ]
    docker = sh(["docker", "version", "--format", "{{.Server.Version}}"]).stdout.strip()
    ansible = sh(["ansible", "--version"]).stdout.splitlines()[0]
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu[0] if cpu else platform.processor(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "kernel": platform.release(),
        "docker": docker,
        "ansible": ansible,
        "python": platform.python_version(),
    }


def render(r: dict) -> str:
    cold, base, warm, fp, rq = r["cold"], r["baseline"], r["warm"], r["footprint"], r["requests"]
    ratio = round(cold["wall_s"] / base["wall_s"], 2)
    m = r["machine"]
    lines = [
        "# Performance",
        "",
        "<!-- Written by `make bench` (bench/run.py) from its own measurements; do not edit by",
        "hand: edit bench/levers.md, which is appended as is. -->",
        "",
        f"Measured {r['date']} on {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB, kernel "
        f"{m['kernel']}, Docker {m['docker']}, {m['ansible']}, Python {m['python']}. The host is "
        "the local stand-in (a 1 GiB / 2 CPU systemd container); images prebuilt by "
        "`make images`. Raw figures: `bench/results.json`.",
        "",
        "## Summary against the targets",
        "",
        "| Measure | Result | Target | Met |",
        "|---|---|---|---|",
        f"| Cold converge / bare baseline | {cold['wall_s']} s / {base['wall_s']} s = "
        f"**{ratio}** | <= 1.5 | {'yes' if ratio <= 1.5 else 'no'} |",
        f"| Warm re-run of site.yml | **{warm['wall_s']} s**, {warm['tasks']} tasks, "
        f"changed={warm['changed']} | <= 20 s, changed=0 | "
        f"{'yes' if warm['wall_s'] <= 20 and warm['changed'] == 0 else 'no'} |",
        f"| Host memory used after {fp['idle_s']} s idle | **{fp['host_used_mib']} MiB** "
        f"(swap devices: {len(fp['swap_devices'])}) | <= 600 MiB, swap unused | "
        f"{'yes' if fp['host_used_mib'] <= 600 and not fp['swap_devices'] else 'no'} |",
        "",
        "## 1. Cold converge vs the bare baseline",
        "",
        f"`site.yml` on a fresh stand-in: **{cold['wall_s']} s** ({cold['tasks']} tasks, "
        f"changed={cold['changed']}). The baseline does only the irreducible work on another "
        "fresh stand-in, by hand: create and boot the container, one `apt-get install` of "
        f"the same packages ({', '.join(base['packages'])}), `docker load` of the four stack "
        "images, the same /opt/prpm (copied), `docker compose up -d --wait`, then poll /health "
        f"through Caddy: **{base['wall_s']} s** "
        + ", ".join(f"{k[:-2]} {v} s" for k, v in base["steps"].items())
        + ".",
        "",
        "Per role, cold (ansible.posix.profile_roles):",
        "",
        "| Role | Seconds |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in cold["roles_s"].items()],
        "",
        "## 2. Warm re-run",
        "",
        f"`site.yml` again on the converged host: **{warm['wall_s']} s**, {warm['tasks']} tasks, "
        f"changed={warm['changed']}.",
        "",
        "| Role | Seconds |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in warm["roles_s"].items()],
        "",
        f"## 3. Footprint after {fp['idle_s']} s idle",
        "",
        "| Container | MiB |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(fp["containers_mib"].items())],
        f"| **stack sum** | **{fp['stack_mib']}** |",
        f"| the rest of the host (systemd, sshd, dockerd, containerd, journald...), by difference "
        f"| {fp['host_system_mib']} |",
        f"| **host used**: PSS of every process on the host | **{fp['host_used_mib']}** |",
        "",
        "Container figures are their cgroups' usage (`docker stats`, page cache included); the "
        "host figure is the proportional set size of every process in the stand-in, stack "
        "included (read from /proc/*/smaps_rollup), because on this machine's cgroup v1 the "
        "stand-in's own cgroup is empty and its `free` shows the machine's memory, not 1 GiB. "
        f"Swap devices in the stand-in: {fp['swap_devices'] or 'none'} (containers cannot "
        "enable swap; on EC2 the base role's swap file is active and should stay unused at "
        "this footprint).",
        "",
        f"## 4. Request path ({WRK_SECONDS} s per run, wrk -t2 -c{WRK_CONNECTIONS}, "
        "from inside Caddy's network namespace)",
        "",
        "| Path | Through Caddy (HTTPS): req/s, p50, p99, errors | Straight to the registry: "
        "req/s, p50, p99, errors | Ratio (req/s) |",
        "|---|---|---|---|",
    ]
    for path, v in rq.items():
        c, d = v["caddy_https"], v["direct"]
        lines.append(
            f"| `GET {path}` | {c['rps']}, {c['p50_ms']} ms, {c['p99_ms']} ms, "
            f"{c['non_2xx']}/{c['requests']} | {d['rps']}, {d['p50_ms']} ms, {d['p99_ms']} ms, "
            f"{d['non_2xx']}/{d['requests']} | {v['rps_ratio']} |"
        )
    reg = r.get("registry", {})
    if reg.get("real"):
        lines += [
            "",
            "The registry here is PRPM's, built from the checkout in PRPM_SOURCE. The load "
            f"generator sends `User-Agent: {registry.EXEMPT_UA}`: the registry exempts prpm-cli/ "
            "clients from its 100 requests/minute limit, which would otherwise turn these runs "
            "into measurements of the limiter (429s). Errors are non-2xx responses out of all "
            "requests.",
            "",
        ]
    else:
        lines += [
            "",
            "The registry here is the fixture (a threaded Python HTTP server with the PRPM "
            "registry's contract; its /health queries Postgres and Redis on every call), so the "
            "absolute figures say more about the proxy than about PRPM; `make bench "
            "PRPM_SOURCE=...` measures the real registry. Errors are non-2xx responses out of "
            "all requests; a run with errors measures the errors, not the path.",
            "",
        ]
    if reg.get("real"):
        bld, wl = reg["build"], reg["workload"]
        registry_mib = next((v for k, v in fp["containers_mib"].items() if "registry" in k), None)
        lines += [
            "## 6. The real PRPM registry",
            "",
            f"Registry {bld['version']} ({bld['source_id']}), built by the collection's "
            "Dockerfile on the controller:",
            "",
            "| Measure | Result |",
            "|---|---|",
            f"| Image build, no layer cache (npm ci, bcrypt compiled, three builds, runtime stage) "
            f"| {bld['cold_build_s']} s |",
            f"| Rebuild after a source change (dependency layer reused) | "
            f"{bld['source_change_rebuild_s']} s |",
            f"| Image size (on the {HOST_IMAGE} base) | {bld['image_mib']} MiB |",
            f"| Cold converge with the image already built (section 1) | {cold['wall_s']} s |",
            f"| Cold `make up PRPM_SOURCE=...` on a new machine, about: build + converge | "
            f"{round(bld['cold_build_s'] + cold['wall_s'], 1)} s |",
            f"| Workload before the footprint: publishes with the prpm CLI | {wl['published']} of "
            f"{registry.PACKAGES}, {wl['publish_s_each']} s each (CLI start included) |",
            f"| then searches and package infos through Caddy | {wl['reads']} requests, "
            f"{wl['read_errors']} errors, {wl['reads_per_s']} req/s sequential |",
            f"| Registry container memory after the workload and {fp['idle_s']} s idle | "
            f"{registry_mib} MiB (limit: registry_stack_memory_limits.registry) |",
            f"| Host memory used (PSS of every process) | {fp['host_used_mib']} MiB, target "
            f"<= 600 MiB: {'met' if fp['host_used_mib'] <= 600 else 'MISSED'} |",
            "",
        ]
    if "backups" in r:
        b = r["backups"]
        lines += [
            "## 5. Backup and restore of a ~200 MB database",
            "",
            f"{b['rows']} rows of 1 KiB random hex in one table, database "
            f"{b['database_mib']} MiB (`pg_database_size`), local repository:",
            "",
            "| Work | Seconds |",
            "|---|---|",
            f"| `prpm-backup db` (pg_dump -Fc through restic, row counts before and after) | "
            f"{b['backup_s']} |",
            f"| `prpm-backup restore` (stop registry, pg_restore --clean --single-transaction, "
            f"verify counts, start registry) | {b['restore_s']} |",
            f"| prpm-backup, both | {round(b['backup_s'] + b['restore_s'], 1)} |",
            f"| bare `pg_dump -Fc \\| pg_restore` into a scratch database | "
            f"{b['bare_dump_restore_s']} |",
            "",
        ]
    levers = ROOT / "bench" / "levers.md"
    if levers.exists():
        lines.append(levers.read_text())
    return "\n".join(lines)


def main() -> int:
    if sys.argv[1:2] == ["--backups-only"]:
        # Re-measure section 5 on an existing converged host (default: the make up stand-in).
        container = sys.argv[2] if len(sys.argv) > 2 else "prpm-hobby-standin"
        results = json.loads(RESULTS.read_text())
        results["backups"] = backup_restore(container)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        REPORT.write_text(render(results))
        log(f"backups: {results['backups']}")
        return 0
    for image in [HOST_IMAGE, WRK_IMAGE, *STACK_IMAGES]:
        if sh(["docker", "image", "inspect", image], check=False).returncode != 0:
            raise SystemExit(f"bench: image {image} is missing: run `make images`")
    started = time.monotonic()
    results = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine()}
    real = registry.enabled()
    results["registry"] = {"real": real}
    if real:
        log("registry image: cold build (no layer cache) and a rebuild after a source change")
        results["registry"]["build"] = registry.build()
        log(f"registry build {results['registry']['build']}")
    results["cold"] = cold_converge()
    log(f"cold converge {results['cold']['wall_s']} s")
    results["baseline"] = baseline()
    log(f"baseline {results['baseline']['wall_s']} s")
    remove_container(BASELINE)
    results["warm"] = playbook("site.yml", profile=True)
    log(f"warm re-run {results['warm']['wall_s']} s, changed={results['warm']['changed']}")
    if real:
        log("workload: publish with the prpm CLI, then searches and package infos")
        results["registry"]["workload"] = registry.workload(BENCH, BENCH_HTTPS)
        log(f"workload {results['registry']['workload']}")
    # Kept as it goes: a later failure leaves what was measured in bench/results.json.
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    results["footprint"] = footprint()
    log(f"host used {results['footprint']['host_used_mib']} MiB")
    results["requests"] = request_path(results["registry"]["workload"]["user"] if real else None)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    results["backups"] = backup_restore(BENCH)
    results["bench_wall_s"] = round(time.monotonic() - started, 1)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    REPORT.write_text(render(results))
    remove_container(BENCH)
    log(
        f"wrote {RESULTS.relative_to(ROOT)} and {REPORT.relative_to(ROOT)} "
        f"in {results['bench_wall_s']} s"
    )
    print(shlex.join(["cat", str(REPORT.relative_to(ROOT))]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
