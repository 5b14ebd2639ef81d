# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's own least-privilege policy (roles/aws_host/files/controller-policy.json),
with moto's IAM enforcement on: provision, the patch run's snapshot, the backup prune role and
teardown succeed under it; without one of its actions provisioning stops there; what it does
not name is refused."""

from __future__ import annotations

import json
import os

import boto3
import pytest
from ansible_recap import PlaybookRun, ansible_playbook
from botocore.exceptions import ClientError
from conftest import ACCOUNT, REGION, ROOT
from moto_iam import iam_enforced

POLICY = ROOT / "roles" / "aws_host" / "files" / "controller-policy.json"
BOUNDARY = ROOT / "roles" / "aws_host" / "files" / "permissions-boundary.json"
BOUNDARY_ARN = f"arn:aws:iam::{ACCOUNT}:policy/prpm-hobby-boundary"
NAME = "prpm-hobby-lp"  # a host of its own: the earlier modules' hosts are gone or untouched
HERE = ROOT / "tests" / "aws"


def _user(client, name: str, document: dict) -> dict[str, str]:
    iam = client("iam")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="controller", PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }


def _client(moto, keys: dict[str, str], service: str):
    """A boto3 client signing with the controller user's keys."""
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
    )


def _without(document: dict, action: str) -> dict:
    """The policy with one action taken out of every statement that names it."""
    statements = []
    for statement in document["Statement"]:
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        kept = [a for a in actions if a != action]
        if kept:
            statements.append({**statement, "Action": kept})
    assert statements != document["Statement"], action
    return {**document, "Statement": statements}


@pytest.fixture(scope="module")
def run_as(moto, settings, cloud_init_log):
    """ansible-playbook with the given credentials instead of the account's own."""

    def run(keys: dict[str, str], name: str, *extra: str) -> PlaybookRun:
        env = {
            **moto.env(),
            **keys,
            "PATH": f"{HERE / 'bin'}:{os.environ['PATH']}",
            "PRPM_TEST_CLOUD_INIT_LOG": str(cloud_init_log),
        }
        inventories = ["-i", str(ROOT / "inventories" / "aws"), "-i", str(HERE / "hosts.yml")]
        path = HERE / name if name == "snapshot.yml" else ROOT / "playbooks" / name
        args = [
            *inventories,
            str(path),
            "-e",
            f"@{settings}",
            "-e",
            f"aws_host_name={NAME}",
            "-e",
            f"aws_host_permissions_boundary={BOUNDARY_ARN}",
            *extra,
        ]
        return ansible_playbook(args, env=env, cwd=ROOT)

    return run


@pytest.fixture(scope="module")
def policy() -> dict:
    return json.loads(POLICY.read_text())


@pytest.fixture(scope="module")
def lifecycle(client, moto, run_as, policy):
    """Provision, snapshot, assume the prune role and tear down, all as the controller user."""
    # The boundary an administrator creates once (docs/aws.md).
    client("iam").create_policy(
        PolicyName="prpm-hobby-boundary", PolicyDocument=BOUNDARY.read_text()
    )
    keys = _user(client, "prpm-controller", policy)
    runs = {}
    with iam_enforced():
        runs["provision"] = run_as(keys, "provision.yml")
        assert runs["provision"].rc == 0, runs["provision"].output
        iam = _client(moto, keys, "iam")
        runs["boundaries"] = {
            role: iam.get_role(RoleName=role)["Role"].get("PermissionsBoundary", {})
            for role in (NAME, f"{NAME}-backup-prune")
        }
        runs["snapshot"] = run_as(
            keys, "snapshot.yml", "--limit", NAME, "-e", "patching_ebs_snapshot_retention_days=0"
        )
        assert runs["snapshot"].rc == 0, runs["snapshot"].output
        runs["prune"] = _client(moto, keys, "sts").assume_role(
            RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{NAME}-backup-prune", RoleSessionName="prune"
        )["Credentials"]
        runs["teardown"] = run_as(
            keys,
            "teardown.yml",
            "-e",
            json.dumps(
                {"aws_host_teardown_confirm": NAME, "aws_host_teardown_delete_bucket": True}
            ),
        )
        assert runs["teardown"].rc == 0, runs["teardown"].output
    return keys, runs


def test_provision_snapshot_prune_and_teardown_succeed_under_the_policy(lifecycle, client):
    _keys, runs = lifecycle
    assert runs["provision"].changed() > 0
    # Both roles it created carry the boundary (the policy lets it create roles only so; moto
    # does not evaluate that condition, docs/aws.md).
    assert {role: b.get("PermissionsBoundaryArn") for role, b in runs["boundaries"].items()} == {
        NAME: BOUNDARY_ARN,
        f"{NAME}-backup-prune": BOUNDARY_ARN,
    }
    assert "snapshot=snap-" in runs["snapshot"].output
    assert runs["prune"]["AccessKeyId"]
    assert "backup and packages buckets: deleted" in runs["teardown"].output
    names = [r["RoleName"] for r in client("iam").list_roles()["Roles"]]
    assert not [n for n in names if n.startswith(NAME)]


def test_what_the_policy_does_not_name_is_refused(lifecycle, client, moto):
    """Another bucket, another role (moto resolves the resource of both), a new IAM user."""
    keys, _runs = lifecycle
    client("s3").create_bucket(Bucket="someone-elses-bucket")
    client("iam").create_role(RoleName="someone-elses-role", AssumeRolePolicyDocument="{}")
    s3, iam = _client(moto, keys, "s3"), _client(moto, keys, "iam")
    refused = []
    with iam_enforced():
        for call, kwargs in [
            (s3.delete_bucket, {"Bucket": "someone-elses-bucket"}),
            (iam.put_role_policy, {"RoleName": "someone-elses-role", "PolicyName": "x",
                                   "PolicyDocument": json.dumps(json.loads(POLICY.read_text()))}),
            (iam.delete_role, {"RoleName": "someone-elses-role"}),
            (iam.create_user, {"UserName": "backdoor"}),
        ]:  # fmt: skip
            with pytest.raises(ClientError) as caught:
                call(**kwargs)
            refused.append(caught.value.response["Error"]["Code"])
    assert set(refused) <= {"AccessDenied", "403"}, refused
    assert client("iam").get_role(RoleName="someone-elses-role")["Role"]
    client("iam").delete_role(RoleName="someone-elses-role")
    client("s3").delete_bucket(Bucket="someone-elses-bucket")


def test_provisioning_stops_at_the_first_action_the_policy_lacks(
    lifecycle, client, run_as, policy, playbook
):
    keys = _user(client, "prpm-controller-short", _without(policy, "ec2:RunInstances"))
    with iam_enforced():
        run = run_as(keys, "provision.yml")
    assert run.rc != 0
    assert "not authorized to perform: ec2:RunInstances" in run.output
    # What came before that step is removed with the account's own keys.
    cleanup = playbook(
        "teardown.yml",
        "-e",
        json.dumps(
            {
                "aws_host_name": NAME,
                "aws_host_teardown_confirm": NAME,
                "aws_host_teardown_delete_bucket": True,
            }
        ),
    )
    assert cleanup.rc == 0, cleanup.output
