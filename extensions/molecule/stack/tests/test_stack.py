# SPDX-License-Identifier: GPL-3.0-or-later
"""The registry stack on a hardened host, checked from this machine through Caddy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid

import pytest
import requests
import urllib3
from conftest import HTTP_PORT, HTTPS_PORT, run_playbook
from loadgen import LoadGenerator  # tools/, on the path through conftest

urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
BASE = f"https://localhost:{HTTPS_PORT}"
PROJECT = "prpm"
# What PostgreSQL's entrypoint needs to own its data directory and drop to the postgres user.
POSTGRES_CAPS = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"]


def get(path: str, **kwargs) -> requests.Response:
    # Caddy's local CA (tls internal) is not trusted by this machine.
    return requests.get(BASE + path, verify=False, timeout=10, **kwargs)  # noqa: S501


def put_package(name: str, body: dict) -> requests.Response:
    return requests.put(f"{BASE}/api/v1/packages/{name}", json=body, verify=False, timeout=10)  # noqa: S501


def wait_healthy(timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if get("/health").json().get("status") == "ok":
                return time.monotonic() - start
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    pytest.fail(f"/health not ok through Caddy within {timeout}s")


def test_health_ok_through_caddy():
    response = get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["services"] == {"database": "ok", "redis": "ok"}


def test_http_redirects_to_https():
    response = requests.get(
        f"http://localhost:{HTTP_PORT}/health", allow_redirects=False, timeout=10
    )
    assert response.status_code in (301, 308)
    assert response.headers["Location"].startswith("https://")


def test_security_headers():
    headers = get("/health").headers
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "Server" not in headers


def test_package_written_through_caddy_reads_back():
    name = f"pkg-{uuid.uuid4().hex[:8]}"
    body = {"name": name, "version": "1.2.3", "files": ["a.md"], "nested": {"k": [1, 2]}}
    assert put_package(name, body).status_code == 201
    assert put_package(name, body).status_code == 200
    response = get(f"/api/v1/packages/{name}")
    assert response.status_code == 200
    assert response.json() == body
    assert name in get("/api/v1/packages").json()["names"]
    assert get("/api/v1/packages/absent-package").status_code == 404


def test_only_ssh_http_https_listen_outside(host):
    ports = set()
    for line in host.check_output("ss -Htln").splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        if address.startswith("127.") or address in ("[::1]", "::1"):
            continue
        ports.add(int(port))
    assert ports == {22, 80, 443}


def test_only_caddy_publishes_ports(host):
    out = host.check_output(
        f"docker ps --filter label=com.docker.compose.project={PROJECT} "
        "--format '{{.Label \"com.docker.compose.service\"}} {{.Ports}}'"
    )
    published = {
        line.split(" ", 1)[0]: line.split(" ", 1)[1] if " " in line else ""
        for line in out.splitlines()
    }
    assert set(published) == {"caddy", "registry", "postgres", "redis", "storage"}
    assert "0.0.0.0:443->443/tcp" in published["caddy"]
    for service in ("registry", "postgres", "redis", "storage"):
        assert "->" not in published[service], f"{service} publishes {published[service]}"
    for network in ("backend", "downloads"):
        inspected = json.loads(host.check_output(f"docker network inspect {PROJECT}_{network}"))
        assert inspected[0]["Internal"] is True, network


def test_secret_files_root_only(host):
    for path in (
        "/opt/prpm/secrets/postgres_password",
        "/opt/prpm/secrets/jwt_secret",
        "/opt/prpm/secrets/storage_secret_key",
        "/opt/prpm/secrets/redis_password",
        "/opt/prpm/registry.env",
        "/opt/prpm/storage.env",
    ):
        secret = host.file(path)
        assert secret.user == "root" and secret.mode == 0o600, path
    # Redis's password file: root and the group Redis runs as (no group of the host).
    conf = host.file("/opt/prpm/secrets/redis.conf")
    assert (conf.uid, conf.gid, conf.mode) == (0, 6379, 0o640)
    assert len(host.file("/opt/prpm/secrets/jwt_secret").content_string.strip()) >= 43


def test_every_container_has_a_memory_limit(host):
    ids = host.check_output(
        f"docker ps -q --filter label=com.docker.compose.project={PROJECT}"
    ).split()
    assert len(ids) == 5  # postgres, redis, storage, registry, caddy
    for cid in ids:
        limit = int(host.check_output(f"docker inspect -f '{{{{.HostConfig.Memory}}}}' {cid}"))
        assert 0 < limit <= 256 * 1024 * 1024


def _containers(host) -> dict[str, dict]:
    """service -> `docker inspect` of its running container."""
    ids = host.check_output(
        f"docker ps -q --filter label=com.docker.compose.project={PROJECT}"
    ).split()
    inspected = json.loads(host.check_output("docker inspect " + " ".join(ids)))
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in inspected}


def test_every_container_runs_with_least_privilege(host):
    containers = _containers(host)
    assert set(containers) == {"caddy", "registry", "postgres", "redis", "storage"}
    for service, c in containers.items():
        hc = c["HostConfig"]
        assert hc["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in hc["SecurityOpt"], service
        assert hc["ReadonlyRootfs"] is True, service
        assert hc["Init"] is True, service
        assert 16 <= hc["PidsLimit"] <= 128, service
        caps = {"postgres": POSTGRES_CAPS, "caddy": ["NET_BIND_SERVICE"]}.get(service, [])
        assert sorted(hc["CapAdd"] or []) == caps, service
    # Not root: the registry and storage as their images' users, Redis as its own uid:gid.
    assert containers["redis"]["Config"]["User"] == "6379:6379"
    for service in ("registry", "storage"):
        assert containers[service]["Config"]["User"] not in ("", "root", "0"), service
    # PostgreSQL's entrypoint starts as root and runs the server as postgres.
    pid_user = host.check_output(
        "docker exec %s-postgres-1 sh -c "
        "'stat -c %%U /proc/$(head -1 /var/lib/postgresql/data/postmaster.pid)'",
        PROJECT,
    )
    assert pid_user == "postgres"


@pytest.mark.parametrize(
    ("service", "command", "error"),
    [
        # No capability but binding ports: root in Caddy's container cannot chown or mount.
        ("caddy", "chown 1 /data", "Operation not permitted"),
        ("caddy", "mount -t tmpfs none /mnt", "permission denied"),
        # A read-only root filesystem; /tmp (tmpfs) is writable but nothing runs from it.
        ("caddy", "touch /usr/local/bin/evil", "Read-only file system"),
        ("postgres", "mount -t tmpfs none /mnt", "permission denied"),
        ("postgres", "cp /bin/true /tmp/t && /tmp/t", "Permission denied"),
    ],
)
def test_containers_refuse_privileged_operations(host, service, command, error):
    run = host.run("docker exec %s-%s-1 sh -c %s", PROJECT, service, command)
    assert run.rc != 0, f"{service}: {command} succeeded"
    assert error.lower() in (run.stdout + run.stderr).lower(), run.stderr


def test_redis_refuses_clients_without_its_password(host):
    run = host.run("docker exec %s-redis-1 redis-cli ping", PROJECT)
    assert "NOAUTH" in run.stdout + run.stderr
    # ... while the registry, which has it in REDIS_URL, reports Redis healthy.
    assert get("/health").json()["services"]["redis"] == "ok"


def test_secrets_never_reach_output(host):
    secrets = [
        host.file(f"/opt/prpm/secrets/{n}").content_string.strip()
        for n in ("postgres_password", "jwt_secret", "storage_secret_key", "redis_password")
    ]
    run = run_playbook("converge.yml", "-v")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == 0
    for secret in secrets:
        assert secret not in run.output


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"registry_stack_domain": "not a domain!"}, "is not a valid host name"),
        ({"registry_stack_image_source": "ftp"}, "must be one of: pull, archive, build, got: ftp"),
        ({"registry_stack_image_sources": {"registry": "ftp"}}, "Unknown image source"),
        (
            {"registry_stack_registry_image": "localhost/prpm-hobby/registry"},
            "must be pinned by tag",
        ),
        (
            {
                "registry_stack_memory_limits": {
                    "postgres": "512m",
                    "redis": "64m",
                    "registry": "256m",
                    "migrate": "128m",
                    "caddy": "64m",
                    "storage": "48m",
                }
            },
            "exceeds the host's 1024 MiB",
        ),
        ({"registry_stack_payments_enabled": True}, "registry_stack_payments_enabled needs"),
        (
            {"registry_stack_ai_enabled": True},
            "registry_stack_ai_enabled needs registry_stack_openai_api_key",
        ),
        ({"registry_stack_s3_bucket": "Not_A_Bucket"}, "must be a valid S3 bucket name"),
        ({"registry_stack_database_sslmode": "sometimes"}, "must be one of: disable"),
    ],
)
def test_bad_input_fails_before_any_change(host, extra_vars, message):
    before = host.check_output(
        "md5sum /opt/prpm/compose.yaml /opt/prpm/caddy/Caddyfile /opt/prpm/deployed.json"
    )
    # The stack role's own playbook: base and docker before it would only add a converge's time.
    run = run_playbook("deploy.yml", extra_vars=extra_vars)
    assert run.rc != 0
    assert message in " ".join(run.output.split()), run.output[-3000:]
    assert run.changed() == 0
    assert (
        host.check_output(
            "md5sum /opt/prpm/compose.yaml /opt/prpm/caddy/Caddyfile /opt/prpm/deployed.json"
        )
        == before
    )


def test_check_diff_on_the_converged_host_reports_no_change():
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == 0, run.output[-3000:]


def test_check_diff_works_before_a_new_secret_exists(host):
    """A host converged by a version without the Redis password: --check --diff previews the
    upgrade (the secret would be generated; nothing is written, nothing secret is shown)."""
    path = "/opt/prpm/secrets/redis_password"
    host.run_expect([0], f"mv {path} {path}.aside")
    try:
        run = run_playbook("converge.yml", "--check", "--diff")
        assert run.rc == 0, run.output[-3000:]
        assert run.changed() > 0
        assert not host.file(path).exists
    finally:
        host.run_expect([0], f"mv {path}.aside {path}")
    assert host.file(path).content_string.strip() not in run.output


PIN = re.compile(r"-id[0-9a-f]{12}$")


def _pinned(host) -> dict:
    """The registry's current and previous references in the deployed state, as recorded."""
    state = json.loads(host.file("/opt/prpm/deployed.json").content_string)
    return {k: state[k].get("images", {}).get("registry") for k in ("current", "previous")}


def _deployed(host) -> dict:
    """The same, by tag: archive images are recorded pinned to their image ID (name:tag-id...)."""
    pinned = _pinned(host)
    for ref in pinned.values():
        assert PIN.search(ref), f"{ref} is not pinned to its image ID"
    return {k: PIN.sub("", ref) for k, ref in pinned.items()}


def under_load(*paths: str) -> LoadGenerator:
    """~20 requests/s through Caddy, as users send them, for at most 10 minutes (12,000)."""
    return LoadGenerator(BASE, paths=("/health", *paths), rate=20, max_seconds=600, verify=False)


def registry_containers(host) -> list[str]:
    out = host.check_output(
        "docker ps --all --filter label=com.docker.compose.project=%s "
        "--filter label=com.docker.compose.service=registry --format '{{.Names}}'",
        PROJECT,
    )
    return out.split()


def test_upgrade_then_rollback_twice_keeps_the_data_and_fails_no_request(host):
    """1.0.0 -> 1.1.0, then playbooks/rollback.yml twice: back to 1.0.0, then forward again
    (rollback goes to the other of the last two versions), every step health-gated; users
    sending ~20 requests/s through Caddy all the while see no failed request."""
    v100 = "localhost/prpm-hobby/registry:1.0.0"
    v110 = "localhost/prpm-hobby/registry:1.1.0"
    name = f"across-versions-{uuid.uuid4().hex[:8]}"
    assert put_package(name, {"v": 1}).status_code == 201
    try:
        with under_load(f"/api/v1/packages/{name}") as load:
            run = run_playbook("deploy.yml", extra_vars={"registry_stack_registry_image": v110})
            assert run.rc == 0, run.output[-3000:]
            assert get("/health").json()["version"] == "1.1.0"
            assert _deployed(host) == {"current": v110, "previous": v100}
            assert get(f"/api/v1/packages/{name}").json() == {"v": 1}

            for serving, other in (("1.0.0", v110), ("1.1.0", v100)):
                run = run_playbook("rollback.yml")
                assert run.rc == 0, run.output[-3000:]
                assert get("/health").json()["version"] == serving
                assert _deployed(host)["previous"] == other
                assert get(f"/api/v1/packages/{name}").json() == {"v": 1}
        print(f"three deploys under load: {load.result.summary()}")
        assert load.result.sent > 100, load.result.summary()
        assert load.result.failed == 0, load.result.summary()
        # One registry container serves; the ones it replaced are gone.
        assert len(registry_containers(host)) == 1
    finally:
        # Leave 1.0.0 deployed (1.1.0 previous) for the tests that follow.
        run = run_playbook("converge.yml", extra_vars={"registry_stack_registry_image": v100})
        assert run.rc == 0, run.output[-3000:]
    assert _deployed(host) == {"current": v100, "previous": v110}


def test_broken_deploy_never_receives_a_request_and_old_version_keeps_serving(host):
    name = f"before-broken-{uuid.uuid4().hex[:8]}"
    assert put_package(name, {"v": 1}).status_code == 201
    state_before = host.file("/opt/prpm/deployed.json").content_string
    serving_before = registry_containers(host)
    with under_load(f"/api/v1/packages/{name}") as load:
        run = run_playbook(
            "converge.yml",
            extra_vars={
                "registry_stack_registry_image": "localhost/prpm-hobby/registry:broken",
                "registry_stack_health_timeout": 60,
            },
        )
    assert run.rc != 0
    text = " ".join(run.output.split())
    assert re.search(r"Deploy of localhost/prpm-hobby/registry:broken-id[0-9a-f]{12} FAILED", text)
    assert "did not turn healthy" in text
    assert re.search(
        r"NEVER RECEIVED A REQUEST: localhost/prpm-hobby/registry:1\.0\.0-id[0-9a-f]{12} "
        r"kept serving",
        text,
    )
    print(f"broken deploy under load: {load.result.summary()}")
    assert load.result.sent > 100, load.result.summary()
    assert load.result.failed == 0, load.result.summary()
    assert get("/health").json()["version"] == "1.0.0"
    assert get(f"/api/v1/packages/{name}").json() == {"v": 1}
    assert host.file("/opt/prpm/deployed.json").content_string == state_before
    # The container that served before still does; the broken one is gone.
    assert registry_containers(host) == serving_before
    compose = host.file("/opt/prpm/compose.yaml").content_string
    assert "registry:broken" not in compose


def _controller_image_id(ref: str) -> str:
    return subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def _rebuild_on_controller(ref: str, dockerfile: str) -> str:
    """Build dockerfile as ref in the controller's Docker, as a rebuild under the same tag (new
    Debian packages, tools/images.py refresh) does; give the new image ID."""
    subprocess.run(
        ["docker", "build", "-q", "-t", ref, "-"],
        input=dockerfile,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
    )
    return _controller_image_id(ref)


def test_a_rebuild_under_the_same_tag_is_a_new_version_and_a_broken_one_is_rolled_back(host):
    """An offline image rebuilt under its tag is deployed pinned to its new image ID, with the
    image that ran as previous; rollback.yml goes back to that one by name and the refresh does
    not undo it; a broken rebuild of the same tag fails its gate and the pinned image that ran
    keeps serving (before pinning, both had one name and nothing to go back to)."""
    tag = "localhost/prpm-hobby/registry:1.0.0"
    original = _controller_image_id(tag)
    before = _pinned(host)["current"]
    assert before == f"{tag}-id{original[7:19]}"
    try:
        rebuilt = _rebuild_on_controller(
            tag, f"FROM {original}\nLABEL io.prpm-hobby.test=rebuilt\n"
        )
        # Check mode first: the host has no name pinned to the rebuild yet; the diff shows it,
        # nothing is written.
        state = host.file("/opt/prpm/deployed.json").content_string
        run = run_playbook("deploy.yml", "--check", "--diff")
        assert run.rc == 0, run.output[-3000:]
        assert run.changed() > 0
        assert f"{tag}-id{rebuilt[7:19]}" in run.output
        assert host.file("/opt/prpm/deployed.json").content_string == state
        run = run_playbook("deploy.yml")
        assert run.rc == 0, run.output[-3000:]
        assert _pinned(host) == {"current": f"{tag}-id{rebuilt[7:19]}", "previous": before}
        assert get("/health").json()["version"] == "1.0.0"

        # Back to the image that ran, by name; the patch run's refresh does not bring the rebuild
        # back while the controller still has it under the tag.
        run = run_playbook("rollback.yml")
        assert run.rc == 0, run.output[-3000:]
        assert _pinned(host) == {"current": before, "previous": f"{tag}-id{rebuilt[7:19]}"}
        run = run_playbook("refresh.yml")
        assert run.rc != 0
        assert "rolled back from " + f"{tag}-id{rebuilt[7:19]}" in " ".join(run.output.split())
        assert run.changed() == 0
        assert _pinned(host)["current"] == before

        _rebuild_on_controller(
            tag, f'FROM {original}\nLABEL io.prpm-hobby.test=broken\nENTRYPOINT ["/bin/false"]\n'
        )
        run = run_playbook("deploy.yml", extra_vars={"registry_stack_health_timeout": 60})
        assert run.rc != 0, run.output[-3000:]
        assert "FAILED" in run.output, run.output[-3000:]
        assert _pinned(host) == {"current": before, "previous": f"{tag}-id{rebuilt[7:19]}"}
        assert get("/health").json()["status"] == "ok"
    finally:
        subprocess.run(["docker", "tag", original, tag], check=True)
        # The test's images, untagged now, off the controller (the host drops its own below).
        subprocess.run(
            ["docker", "image", "prune", "-f", "--filter", "label=io.prpm-hobby.test"], check=True
        )
        run = run_playbook("deploy.yml")
        assert run.rc == 0, run.output[-3000:]
    assert _pinned(host)["current"] == before
    # Only the current and previous pinned names stay on the host.
    names = host.check_output(
        "docker image ls --format '{{.Repository}}:{{.Tag}}' localhost/prpm-hobby/registry"
    ).split()
    assert sorted(n for n in names if PIN.search(n)) == sorted(_pinned(host).values())


def test_maintenance_mode_answers_503_with_retry_after_until_a_run_without_it(host):
    name = f"maintenance-{uuid.uuid4().hex[:8]}"
    assert put_package(name, {"v": 1}).status_code == 201
    try:
        run = run_playbook("deploy.yml", extra_vars={"registry_stack_maintenance": True})
        assert run.rc == 0, run.output[-3000:]
        held = get(f"/api/v1/packages/{name}")
        assert held.status_code == 503
        assert held.headers["Retry-After"] == "300"
        # The health check still reaches the registry (the deploy's gate, monitors).
        assert get("/health").json()["status"] == "ok"
        assert put_package(name, {"v": 2}).status_code == 503
    finally:
        run = run_playbook("deploy.yml")
        assert run.rc == 0, run.output[-3000:]
    assert get(f"/api/v1/packages/{name}").json() == {"v": 1}


def test_stack_comes_back_after_host_restart(host):
    name = host.backend.host  # the molecule instance's container name
    subprocess.run(["docker", "restart", "-t", "30", name], check=True, capture_output=True)
    elapsed = wait_healthy(120)
    print(f"stack healthy {elapsed:.1f}s after the host container restarted")
    assert elapsed <= 60
