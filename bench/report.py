# SPDX-License-Identifier: GPL-3.0-or-later
"""make bench: the machine it ran on, and docs/performance.md rendered from the results.

render() measures nothing: it reads its results dict and bench/levers.md (appended as is), so
the report can be rewritten from bench/results.json: `python bench/run.py --report-only`. Three
figures are this process's settings, not the results': wrk's duration and connections
(PRPM_BENCH_WRK_SECONDS, PRPM_BENCH_WRK_CONNECTIONS) and the package count
(PRPM_BENCH_PACKAGES); render with the settings the bench ran with.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import registry
from common import HOST_IMAGE, ROOT, sh
from request_path import WRK_CONNECTIONS, WRK_SECONDS


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
        *_deploy_summary(r.get("deploys")),
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
    lines += _deploy_section(r.get("deploys"))
    levers = ROOT / "bench" / "levers.md"
    if levers.exists():
        lines.append(levers.read_text())
    return "\n".join(lines)


def _deploy_summary(d: dict | None) -> list[str]:
    if not d:
        return []
    load = d["load"]
    return [
        f"| Failed requests during {len(d['deploys'])} consecutive deploys (one of a broken "
        f"image) under {load['rate_achieved']} req/s through Caddy | **{load['failed']}** of "
        f"{load['sent']}, p99 {load['latency_ms']['p99']} ms | 0, p99 reported | "
        f"{'yes' if load['failed'] == 0 else 'no'} |",
        f"| Deploy of a new registry configuration, `playbooks/deploy.yml` wall time | median "
        f"**{d['good_median_s']} s**, max {d['good_max_s']} s | <= 20 s | "
        f"{'yes' if d['good_max_s'] <= 20 else 'no'} |",
    ]


def _deploy_section(d: dict | None) -> list[str]:
    if not d:
        return []
    load = d["load"]
    lat = load["latency_ms"]
    return [
        "## 7. Deploys under load",
        "",
        f"`playbooks/deploy.yml` {len(d['deploys'])} times in a row on the converged stand-in "
        f"({d['kind']}; deploy {next(x['deploy'] for x in d['deploys'] if x['broken'])} is the "
        "fixture's broken image, which never turns healthy), while `tools/loadgen.py` sends "
        f"GET /health through Caddy at {load['rate_achieved']} req/s over keep-alive "
        "connections. Each good deploy starts the new registry container beside the old one, "
        "switches Caddy to it when healthy (graceful reload), drains and stops the old one.",
        "",
        "| Deploy | Seconds | Result |",
        "|---|---|---|",
        *[
            f"| {x['deploy']} | {x['wall_s']} | "
            f"{'failed before the switch, as it must (broken image)' if x['broken'] else 'ok'} |"
            for x in d["deploys"]
        ],
        "",
        f"Requests: {load['sent']} sent, {load['ok']} ok, **{load['failed']} failed**; latency "
        f"p50 {lat['p50']} ms, p95 {lat['p95']} ms, p99 {lat['p99']} ms, max {lat['max']} ms. "
        f"{load['reconnects']} requests met a keep-alive connection Caddy had closed at a reload "
        "and were sent again on a new one, as HTTP clients do (RFC 9110, 9.2.2); they are "
        "counted as ok.",
        "",
    ]
