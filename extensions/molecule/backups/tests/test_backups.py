# SPDX-License-Identifier: GPL-3.0-or-later
"""Backups that are proven: restic, off-host, restored, drilled, and loud when they fail."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import jinja2
import pytest
import requests
import urllib3
import yaml
from ansible_recap import ansible_playbook
from conftest import HTTPS_PORT, run_playbook
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto_iam import iam_enforced, trust_the_account_root

urllib3.disable_warnings()
BASE = f"https://localhost:{HTTPS_PORT}"
# This scenario deploys the stack under other service and volume names (converge.yml): the
# backups must find everything through the stack contract, and so do these tests.
RENAMED = {"database": "db", "storage": "blobs", "volume": "pg_main", "packages": "package_files"}
_STACK: dict = {}


def _stack(host) -> dict:
    """The stack contract registry_stack published on the host."""
    if not _STACK:
        _STACK.update(json.loads(host.file("/etc/prpm-hobby/stack.json").content_string))
    return _STACK


def _compose(host) -> str:
    stack = _stack(host)
    return f"docker compose -f {stack['compose_file']} -p {stack['project']}"


def _psql(host, sql: str) -> str:
    db = _stack(host)["database"]
    return host.check_output(
        f"{_compose(host)} exec -T {db['service']} psql -U {db['user']} -d {db['name']} -Atc {sql}"
    )


TIMERS = ["db", "run", "check", "drill", "freshness"]
REPO = "/var/backups/prpm/restic"


def _get(path: str) -> requests.Response:
    return requests.get(BASE + path, verify=False, timeout=10)  # noqa: S501


def _snapshots(host, tag: str = "db") -> list[dict]:
    """Snapshots of the local repository, read with restic itself."""
    cmd = host.run(
        f"RESTIC_PASSWORD_FILE=/etc/prpm-backup/restic-password restic -r {REPO} "
        f"snapshots --json --tag {tag}"
    )
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout or "[]")


def _live_count(host) -> str:
    """Rows of the live packages table."""
    return _psql(host, "'select count(*) from packages'")


def _backup_cli(host, *args: str):
    return host.run("/usr/local/sbin/prpm-backup " + " ".join(args))


@pytest.fixture(scope="module")
def packages() -> dict[str, bytes]:
    """Packages written through the API (through Caddy), as the registry serves them back."""
    written = {}
    for i in range(12):
        name = f"backup-pkg-{i}-{uuid.uuid4().hex[:6]}"
        body = {"name": name, "version": f"1.{i}.0", "blob": os.urandom(64).hex(), "n": i}
        resp = requests.put(
            f"{BASE}/api/v1/packages/{name}",
            json=body,
            verify=False,  # noqa: S501
            timeout=10,
        )
        assert resp.status_code in (200, 201), resp.text
        written[name] = _get(f"/api/v1/packages/{name}").content
    return written


def test_the_stack_runs_under_the_renamed_names(host):
    """The renamed names reached compose and the contract (so the tests below prove something)."""
    stack = _stack(host)
    assert stack["database"]["service"] == RENAMED["database"]
    assert stack["database"]["volume"] == RENAMED["volume"]
    assert stack["package_files"]["service"] == RENAMED["storage"]
    assert stack["package_files"]["volume"] == RENAMED["packages"]
    services = host.check_output(f"{_compose(host)} ps --services").split()
    assert {RENAMED["database"], RENAMED["storage"]} <= set(services)
    assert "postgres" not in services
    volumes = host.check_output("docker volume ls --format '{{.Name}}'").split()
    assert f"prpm_{RENAMED['volume']}" in volumes and "prpm_pgdata" not in volumes


def test_check_diff_on_the_converged_host_reports_no_change():
    run = run_playbook("converge.yml", "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() == 0, run.output[-3000:]


def test_timers_active_with_a_next_run(host):
    for name in TIMERS:
        timer = host.service(f"prpm-backup-{name}.timer")
        assert timer.is_enabled and timer.is_running, name
    listed = host.check_output("systemctl list-timers --all --no-pager 'prpm-backup-*'")
    assert listed.count("prpm-backup-") >= len(TIMERS)


def test_password_root_only_and_escrowed_encrypted(host):
    pw_file = host.file("/etc/prpm-backup/restic-password")
    assert (pw_file.user, pw_file.group, pw_file.mode) == ("root", "root", 0o600)
    escrow_dir = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "escrow"
    (escrow,) = escrow_dir.glob("*.restic-password.vault")
    text = escrow.read_text()
    assert text.startswith("$ANSIBLE_VAULT;") and ";AES256" in text.splitlines()[0]
    secret = pw_file.content_string
    leaked = secret in text
    assert not leaked
    plain = subprocess.run(
        [
            "ansible-vault",
            "view",
            "--vault-password-file",
            str(escrow_dir / "vault-password"),
            str(escrow),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Compared as digests: a failing assertion must not print the password.
    digest = hashlib.sha256
    assert digest(plain.rstrip("\n").encode()).hexdigest() == digest(secret.encode()).hexdigest()


def test_backup_then_lost_volume_then_restore_brings_every_package_back(host, packages):
    before = len(_snapshots(host))
    live = int(_live_count(host))
    assert live >= len(packages)
    run = run_playbook("backup.yml")
    assert run.rc == 0, run.output
    snaps = _snapshots(host)
    assert len(snaps) == before + 1
    assert f"rows:public.packages={live}" in snaps[-1]["tags"]
    assert "rows:public.schema_migrations=1" in snaps[-1]["tags"]
    stack = _stack(host)
    files = _snapshots(host, "files")
    assert files and set(stack["backup_paths"]) <= set(files[-1]["paths"])
    # The local package storage's files follow every database snapshot.
    stored = _snapshots(host, "packages")
    assert stored and stored[-1]["paths"] == [stack["package_files"]["path"]]
    assert f"db={snaps[-1]['id']}" in stored[-1]["tags"]

    # Disaster: the database volume is gone.
    compose, db = _compose(host), stack["database"]["service"]
    host.check_output(f"{compose} stop {stack['registry_service']} {db}")
    host.check_output(f"{compose} rm -f {db}")
    host.check_output(f"docker volume rm {stack['project']}_{stack['database']['volume']}")
    host.check_output(f"{compose} up -d --wait {db}")
    empty = _psql(host, "\"select coalesce(to_regclass('public.packages')::text, 'none')\"")
    assert empty == "none"

    run = run_playbook("restore.yml")
    assert run.rc == 0, run.output
    assert "row counts match the snapshot" in run.output
    assert _get("/health").json()["status"] == "ok"
    for name, content in packages.items():
        assert _get(f"/api/v1/packages/{name}").content == content, name


def test_backup_with_postgres_stopped_fails_and_records_nothing(host):
    before = len(_snapshots(host))
    stack = _stack(host)
    db, registry = stack["database"]["service"], stack["registry_service"]
    host.check_output(f"{_compose(host)} stop {db}")
    try:
        result = _backup_cli(host, "db")
    finally:
        host.check_output(f"{_compose(host)} up -d --wait {db} {registry}")
    assert result.rc != 0
    assert "prpm-backup db FAILED" in result.stderr
    assert len(_snapshots(host)) == before


def test_freshness_check_fails_when_the_newest_snapshot_is_too_old(host):
    assert _backup_cli(host, "freshness").rc == 0
    config = host.file("/etc/prpm-backup/config.json").content_string
    strict = json.dumps(dict(json.loads(config), rpo_minutes=1))
    newest = _snapshots(host)[-1]["time"]
    host.check_output(
        f"cp /etc/prpm-backup/config.json /root/config.json.saved && "
        f"echo '{strict}' > /etc/prpm-backup/config.json"
    )
    try:
        # The newest snapshot must be over a minute old for an RPO of 1 minute.
        deadline = time.time() + 90
        while time.time() < deadline:
            result = _backup_cli(host, "freshness")
            if result.rc != 0:
                break
            time.sleep(5)
    finally:
        host.check_output("cp /root/config.json.saved /etc/prpm-backup/config.json")
    assert result.rc != 0, newest
    assert "older than the RPO of 1 min" in result.stderr
    unit = host.run("systemctl start prpm-backup@freshness.service")
    assert unit.rc == 0


def test_drill_restores_into_a_throwaway_postgres_and_reports_rto(host):
    live_before = _live_count(host)
    run = run_playbook("drill.yml")
    assert run.rc == 0, run.output
    result = json.loads(host.file("/var/lib/prpm-backup/last-drill.json").content_string)
    assert result["rows"] >= 12 and result["rto_seconds"] > 0
    assert f"RTO {result['rto_seconds']} s" in run.output
    assert "prpm-backup-drill" not in host.check_output("docker ps -a --format '{{.Names}}'")
    live_after = _live_count(host)
    assert live_after == live_before


def test_drill_fails_on_a_corrupted_repository(host):
    host.check_output(f"cp -a {REPO} /root/restic-pristine")
    try:
        packs = host.check_output(f"find {REPO}/data -type f").split()
        assert packs
        for pack in packs:
            host.check_output(
                f"dd if=/dev/urandom of={pack} bs=64 count=4 seek=1 conv=notrunc 2>/dev/null"
            )
        result = _backup_cli(host, "drill")
        assert result.rc != 0
        assert "prpm-backup drill FAILED" in result.stderr
        assert "restic dump exited" in result.stderr, result.stderr
        unit = host.run("systemctl start prpm-backup@drill.service")
        assert unit.rc != 0
        journal = host.check_output(
            "journalctl -u prpm-backup@drill.service -n 30 --no-pager -o cat"
        )
        assert "FAILED" in journal
    finally:
        host.check_output(f"rm -rf {REPO} && mv /root/restic-pristine {REPO}")
        host.run("systemctl reset-failed prpm-backup@drill.service")
    assert _backup_cli(host, "check").rc == 0


ROOT = Path(os.environ["MOLECULE_PROJECT_DIRECTORY"])
BUCKET = "prpm-backups-test"
ACCOUNT = "123456789012"  # moto's
PRUNE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/prpm-hobby-backup-prune"


def _policy(template: str) -> str:
    """A policy of prpm.hobby.aws_host, rendered for the test bucket: the one the AWS tier gives
    the host (role-policy) or the controller's prune role (prune-policy)."""
    role = ROOT / "roles" / "aws_host"
    guard = yaml.safe_load((role / "vars" / "main.yml").read_text())[
        "__aws_host_backup_history_guard"
    ]
    env = jinja2.Environment(autoescape=False)  # noqa: S701 (JSON, not HTML)
    env.filters["to_json"] = json.dumps
    return env.from_string((role / "templates" / template).read_text()).render(
        __aws_host_bucket=BUCKET,
        aws_host_backup_prefix="prpm/",
        __aws_host_backup_history_guard=guard,
    )


@pytest.fixture(scope="module")
def moto_s3(host):
    """moto in server mode on this machine, reachable from the instance through its gateway:
    the AWS tier's backup bucket (Object Lock) with its two identities, the host's (an IAM user
    with the instance role's policy) and the prune role, which a controller user may assume."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))  # noqa: S104 (the instance must reach it)
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=port, verbose=False)  # noqa: S104
    server.start()
    trust_the_account_root()
    gateway = host.check_output("ip route show default").split()[2]
    admin = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    s3, iam = boto3.client("s3", **admin), boto3.client("iam", **admin)
    s3.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    s3.put_object_lock_configuration(
        Bucket=BUCKET,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    iam.create_user(UserName="prpm-host")
    iam.put_user_policy(
        UserName="prpm-host",
        PolicyName="backup-bucket",
        PolicyDocument=_policy("role-policy.json.j2"),
    )
    trust = (ROOT / "roles/aws_host/templates/prune-trust-policy.json.j2").read_text()
    iam.create_role(
        RoleName="prpm-hobby-backup-prune",
        AssumeRolePolicyDocument=jinja2.Template(trust).render(
            __aws_host_caller={"account": ACCOUNT}
        ),
    )
    iam.put_role_policy(
        RoleName="prpm-hobby-backup-prune",
        PolicyName="backup-prune",
        PolicyDocument=_policy("prune-policy.json.j2"),
    )
    iam.create_user(UserName="controller")
    iam.put_user_policy(
        UserName="controller",
        PolicyName="assume-prune",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": PRUNE_ROLE}
                ],
            }
        ),
    )
    keys = {
        user: iam.create_access_key(UserName=user)["AccessKey"]
        for user in ("prpm-host", "controller")
    }
    yield s3, f"s3:http://{gateway}:{port}/{BUCKET}/prpm", keys, admin["endpoint_url"]
    server.stop()


def _s3_snapshots(host, url: str, tag: str) -> list[dict]:
    """Snapshots of the S3 repository, read on the host with its own credentials."""
    cmd = host.run(
        "set -a && . /etc/prpm-backup/s3.env && "
        f"RESTIC_PASSWORD_FILE=/etc/prpm-backup/restic-password restic -r {url} "
        f"snapshots --json --tag {tag}"
    )
    assert cmd.rc == 0, cmd.stderr
    return json.loads(cmd.stdout or "[]")


def test_s3_repository_is_append_only_for_the_host_and_pruned_from_the_controller(host, moto_s3):
    """The AWS tier's backups, end to end with restic, with moto enforcing each identity's
    policy: the host backs up and drills with its own, never prunes; the controller's
    backup-prune playbook prunes with the prune role's; Object Lock keeps what was pruned."""
    s3, url, keys, endpoint = moto_s3
    host_key = keys["prpm-host"]
    with iam_enforced():
        run = run_playbook(
            "s3.yml",
            extra_vars={
                "backups_s3_repository": url,
                "backups_s3_access_key_id": host_key["AccessKeyId"],
                "backups_s3_secret_access_key": host_key["SecretAccessKey"],
                "backups_s3_append_only": True,
            },
        )
        assert run.rc == 0, run.output
        assert host_key["SecretAccessKey"] not in run.output
        assert host.file("/etc/prpm-backup/s3.env").mode == 0o600
        # Four database snapshots within minutes, so the retention forgets one whatever the
        # hour: restic keeps the newest of each hour and the oldest one.
        for attempt in range(4):
            result = _backup_cli(host, "db", "--repo", "s3")
            assert result.rc == 0, (attempt, result.stderr)
        drill = _backup_cli(host, "drill", "--repo", "s3")
        assert drill.rc == 0, drill.stderr
        assert '"rto_seconds"' in drill.stdout
        # The daily retention leaves the S3 repository alone.
        forget = _backup_cli(host, "forget")
        assert forget.rc == 0, forget.stderr
        assert "[s3] append-only on this host" in forget.stdout
        before = _s3_snapshots(host, url, "db")
        controller = keys["controller"]
        inventory = Path(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"]) / "prpm-hosts.yml"
        name = f"prpm-{os.environ['MOLECULE_SCENARIO_NAME']}"
        inventory.write_text(json.dumps({"prpm_hosts": {"hosts": {name: {}}}}))
        prune = ansible_playbook(
            [
                "-i",
                os.environ["MOLECULE_INVENTORY_FILE"],
                "-i",
                str(inventory),
                str(ROOT / "playbooks" / "backup-prune.yml"),
                "-e",
                json.dumps({"prpm_backup_prune_role": PRUNE_ROLE, "backups_s3_repository": url}),
            ],
            env={
                "AWS_URL": endpoint,
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": controller["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": controller["SecretAccessKey"],
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
        )
        assert prune.rc == 0, prune.output
        assert "[s3] retention applied and pruned" in prune.output
        # Neither the assumed role's credentials nor the host's stdin is shown.
        assert controller["SecretAccessKey"] not in prune.output
        for word in ("secret_key", "session_token", "AWS_SECRET_ACCESS_KEY"):
            assert word not in prune.output
        after = _s3_snapshots(host, url, "db")
        assert len(after) < len(before), prune.output
        assert before[-1]["id"] in {snap["id"] for snap in after}
        assert _backup_cli(host, "drill", "--repo", "s3").rc == 0
    # What the prune forgot is hidden behind delete markers; its versions are all still there.
    forgotten = {snap["id"] for snap in before} - {snap["id"] for snap in after}
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix="prpm/snapshots/")
    kept = {v["Key"].rsplit("/", 1)[1] for v in listing["Versions"]}
    hidden = {m["Key"].rsplit("/", 1)[1] for m in listing.get("DeleteMarkers", [])}
    assert forgotten <= kept and forgotten <= hidden


def test_a_failure_is_published_to_the_alarms_topic_from_the_host(host, moto_s3):
    """The AWS tier's alerts path on the real host: Debian's botocore publishes a failure to the
    topic (pointed at moto through the command's environment only), a queue subscribed to it
    receives it."""
    _s3, url, keys, endpoint = moto_s3
    host_endpoint = url[len("s3:") :].rsplit(f"/{BUCKET}/", 1)[0]
    admin = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sns, sqs = boto3.client("sns", **admin), boto3.client("sqs", **admin)
    topic = sns.create_topic(Name="prpm-hobby-alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName="alert-mails")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    run = run_playbook(
        "s3.yml",
        extra_vars={
            "backups_s3_repository": url,
            "backups_s3_access_key_id": keys["prpm-host"]["AccessKeyId"],
            "backups_s3_secret_access_key": keys["prpm-host"]["SecretAccessKey"],
            "backups_s3_append_only": True,
            "backups_alert_sns_topic": topic,
        },
    )
    assert run.rc == 0, run.output
    assert host.package("python3-botocore").is_installed
    failed = host.run(
        f"AWS_ENDPOINT_URL={host_endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
        "/usr/local/sbin/prpm-backup drill --repo s3 --snapshot 00000000"
    )
    assert failed.rc != 0
    assert "alert to" not in failed.stderr, failed.stderr
    got = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5).get("Messages", [])
    (message,) = [json.loads(m["Body"]) for m in got]
    assert message["Subject"] == "prpm-backup drill failed on prpm-backups"
    assert "no db snapshot 00000000" in message["Message"]


def test_secrets_never_reach_output(host):
    run = run_playbook("converge.yml", "-v")
    assert run.rc == 0, run.output
    leaked = host.file("/etc/prpm-backup/restic-password").content_string in run.output
    assert not leaked
