# SPDX-License-Identifier: GPL-3.0-or-later
"""Provision the hobby tier on moto twice, then read every promise back with boto3."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.exceptions import ClientError
from conftest import ACCOUNT, CONSOLE_KEYS, KEYLESS_CONSOLES, REGION, ROOT, seed_image
from moto_iam import iam_enforced

NAME = "prpm-hobby"
LIVE = ["pending", "running", "stopping", "stopped"]
BACKUPS = f"{NAME}-backups-123456789012-{REGION}"
PACKAGES = f"{NAME}-packages-123456789012-{REGION}"


def _instances(ec2) -> list[dict]:
    res = ec2.describe_instances(
        Filters=[
            {"Name": "tag:Project", "Values": [NAME]},
            {"Name": "instance-state-name", "Values": LIVE},
        ]
    )["Reservations"]
    return [i for r in res for i in r["Instances"]]


@pytest.fixture(scope="module")
def zone(client) -> str:
    """A public hosted zone the user already has (the record is optional)."""
    client("route53").create_hosted_zone(Name="example.org", CallerReference="prpm-test")
    return "example.org"


@pytest.fixture(scope="module")
def provisioned(playbook, zone):
    extra = json.dumps({"aws_host_route53_zone": zone})
    first = playbook("provision.yml", "-e", extra)
    assert first.rc == 0, first.output
    second = playbook("provision.yml", "-e", extra)
    assert second.rc == 0, second.output
    return first, second, extra


@pytest.fixture(scope="module")
def instance(provisioned, ec2) -> dict:
    found = _instances(ec2)
    assert len(found) == 1
    return found[0]


def test_first_run_changes_second_run_does_not(provisioned):
    first, second = provisioned[:2]
    assert first.changed() > 0
    assert second.changed() == 0, second.output


def test_first_run_waits_for_the_new_host(provisioned, cloud_init_log):
    """The host did not exist when the run started: the wait runs against the refreshed
    inventory, for the connection and for cloud-init."""
    first = provisioned[0]
    assert first.recap[NAME]["ok"] == 2, first.output
    assert first.recap[NAME]["failed"] == 0
    assert "status --wait" in cloud_init_log.read_text().splitlines()


def test_check_diff_on_the_provisioned_tier_reports_no_change(provisioned, playbook):
    """--check --diff against what provisioning made: nothing would change, nothing fails."""
    run = playbook("provision.yml", "-e", provisioned[2], "--check", "--diff")
    assert run.rc == 0, run.output[-3000:]
    tasks = run.output.split("\nTASK [")
    changed = [t[:2000] for t in tasks if "\nchanged: [" in t]
    assert run.changed() == 0, "\n\n".join(changed)


@pytest.mark.parametrize("tag", ["aws_host_alerts", "aws_host_instance", "aws_host_host_keys"])
def test_each_part_runs_alone_by_its_tag(provisioned, playbook, tag):
    """A part finds what it needs of the others by name; on a provisioned host it changes
    nothing."""
    run = playbook("provision.yml", "-e", provisioned[2], "--tags", tag)
    assert run.rc == 0, run.output
    assert run.changed() == 0, run.output
    assert "aws_host : Read the account" in run.output  # discovery runs with every part


def _known_hosts(settings) -> Path:
    return Path(json.loads(settings.read_text())["aws_host_known_hosts_file"])


def test_host_keys_from_the_console_are_pinned_for_the_address_and_name(instance, settings, moto):
    """cloud-init's keys from the console output, for the Elastic IP and the registry's name,
    found by ssh's own lookup; the inventory's hosts trust that file only, strictly."""
    path, iid = _known_hosts(settings), instance["InstanceId"]
    keys = CONSOLE_KEYS[iid]
    names = f"{instance['PublicIpAddress']},registry.example.org"
    pinned = [line for line in path.read_text().splitlines() if line.endswith(f" {iid}")]
    assert sorted(pinned) == sorted(f"{names} {key} {iid}" for key in keys)
    for name in (instance["PublicIpAddress"], "registry.example.org"):
        found = subprocess.run(
            ["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True, check=False
        )
        assert found.returncode == 0, found.stderr
        assert {key.split()[1] for key in keys} <= set(found.stdout.split())
    # The inventory's hosts trust that file only, strictly: with the settings' path, and with
    # the inventory's own default (inventories/aws/known_hosts, absolute).
    for extra, expected_path in (
        (["-e", f"aws_host_known_hosts_file={path}"], str(path)),
        ([], str(ROOT / "inventories" / "aws" / "known_hosts")),
    ):
        proc = subprocess.run(
            ["ansible", "-i", str(ROOT / "inventories" / "aws"), "prpm_hosts", "-m", "debug",
             "-a", "var=ansible_ssh_common_args", *extra],
            capture_output=True, text=True, cwd=ROOT, check=False,
            env={**os.environ, **moto.env(), "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"},
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        args = json.loads(proc.stdout.split("=>", 1)[1])["ansible_ssh_common_args"]
        # The argv the ssh connection gets (it splits the string like a shell); ssh then reads
        # the quoted value as one file even with spaces in it.
        assert shlex.split(args) == [
            "-o", f'UserKnownHostsFile="{expected_path}"',
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes",
        ]  # fmt: skip


def test_a_console_without_host_keys_stops_the_run_and_trusts_nothing(
    provisioned, instance, playbook, settings
):
    """No keys in the console (yet): the run fails saying so and pins nothing; once they show,
    the same run pins them."""
    path, iid = _known_hosts(settings), instance["InstanceId"]
    saved = path.read_text()
    path.write_text("".join(f"{line}\n" for line in saved.splitlines() if iid not in line))
    KEYLESS_CONSOLES.add(iid)
    try:
        run = playbook(
            "provision.yml",
            "-e",
            provisioned[2],
            "--tags",
            "aws_host_host_keys",
            "-e",
            "aws_host_host_keys_timeout=2",
        )
    finally:
        KEYLESS_CONSOLES.discard(iid)
    assert run.rc != 0
    assert f"No SSH host keys in the console output of {iid} after 2 s" in run.output
    assert iid not in path.read_text()
    again = playbook("provision.yml", "-e", provisioned[2], "--tags", "aws_host_host_keys")
    assert again.rc == 0, again.output
    assert again.changed() == 1
    assert sorted(path.read_text().splitlines()) == sorted(saved.splitlines())


def test_exactly_one_instance_of_the_configured_type(instance, ec2):
    assert instance["InstanceType"] == "t3.micro"
    assert {t["Key"]: t["Value"] for t in instance["Tags"]} == {
        "Name": NAME,
        "Project": NAME,
        "AlertsTopic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{NAME}-alarms",
        "BackupBucket": BACKUPS,
        "BackupPruneRole": f"arn:aws:iam::{ACCOUNT}:role/{NAME}-backup-prune",
        "PackagesBucket": PACKAGES,
    }


def test_debian_13_image_from_the_ssm_parameter(instance, client):
    param = client("ssm").get_parameter(Name="/aws/service/debian/release/13/latest/amd64")
    assert instance["ImageId"] == param["Parameter"]["Value"]


def test_imdsv2_required_with_hop_limit_2(instance, moto):
    """Hop limit 2: the registry container (one hop further) reaches IMDSv2, tokens only."""
    options = instance["MetadataOptions"]
    assert options["HttpTokens"] == "required"
    assert options["HttpPutResponseHopLimit"] == 2
    assert options["HttpEndpoint"] == "enabled"
    (launch,) = moto.requests("RunInstances")
    body = parse_qs(launch)
    assert body["MetadataOptions.HttpPutResponseHopLimit"] == ["2"]
    assert body["MetadataOptions.HttpTokens"] == ["required"]


def test_root_volume_is_encrypted_gp3_of_20_gib(instance, ec2):
    root = next(
        m for m in instance["BlockDeviceMappings"] if m["DeviceName"] == instance["RootDeviceName"]
    )
    volume = ec2.describe_volumes(VolumeIds=[root["Ebs"]["VolumeId"]])["Volumes"][0]
    assert (volume["VolumeType"], volume["Encrypted"], volume["Size"]) == ("gp3", True, 20)
    assert root["Ebs"]["DeleteOnTermination"] is True


def test_credit_specification_standard_was_requested(instance, moto):
    """moto answers 'standard' for every instance, so read the launch request itself."""
    launches = moto.requests("RunInstances")
    assert len(launches) == 1
    body = parse_qs(launches[0])
    assert body["CreditSpecification.CpuCredits"] == ["standard"]
    assert body["MetadataOptions.HttpTokens"] == ["required"]


def test_instance_runs_with_the_role_not_keys(instance, client):
    profile = client("iam").get_instance_profile(InstanceProfileName=NAME)["InstanceProfile"]
    assert instance["IamInstanceProfile"]["Arn"] == profile["Arn"]
    assert [r["RoleName"] for r in profile["Roles"]] == [NAME]
    # No IAM user, hence no access key, is created for the host.
    assert client("iam").list_users()["Users"] == []


def test_security_group_rules_are_exact(instance, ec2):
    group_id = instance["SecurityGroups"][0]["GroupId"]
    group = ec2.describe_security_groups(GroupIds=[group_id])["SecurityGroups"][0]
    rules = set()
    for perm in group["IpPermissions"]:
        key = (perm["IpProtocol"], perm["FromPort"], perm["ToPort"])
        rules |= {(*key, r["CidrIp"]) for r in perm.get("IpRanges", [])}
        rules |= {(*key, r["CidrIpv6"]) for r in perm.get("Ipv6Ranges", [])}
    assert rules == {
        ("tcp", 22, 22, "198.51.100.7/32"),
        ("tcp", 22, 22, "2001:db8:7::/48"),
        ("tcp", 80, 80, "0.0.0.0/0"),
        ("tcp", 80, 80, "::/0"),
        ("tcp", 443, 443, "0.0.0.0/0"),
        ("tcp", 443, 443, "::/0"),
        ("udp", 443, 443, "0.0.0.0/0"),
        ("udp", 443, 443, "::/0"),
    }


def _statements(doc: dict) -> list[dict]:
    statements = doc["Statement"]
    return [statements] if isinstance(statements, dict) else statements


def _as_set(value) -> set[str]:
    return {value} if isinstance(value, str) else set(value)


def test_role_policy_is_the_backup_prefix_only(client):
    iam = client("iam")
    assume = iam.get_role(RoleName=NAME)["Role"]["AssumeRolePolicyDocument"]
    assert assume["Statement"][0]["Principal"] == {"Service": "ec2.amazonaws.com"}
    # No managed policy: AmazonSSMManagedInstanceCore would read every SSM parameter.
    assert iam.list_attached_role_policies(RoleName=NAME)["AttachedPolicies"] == []
    assert sorted(iam.list_role_policies(RoleName=NAME)["PolicyNames"]) == [
        "alerts-topic",
        "backup-bucket",
        "packages-bucket",
        "ssm-session-manager",
    ]
    ssm = iam.get_role_policy(RoleName=NAME, PolicyName="ssm-session-manager")["PolicyDocument"]
    (only,) = _statements(ssm)
    assert set(only["Action"]) == {
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
    doc = iam.get_role_policy(RoleName=NAME, PolicyName="backup-bucket")["PolicyDocument"]
    bucket = f"arn:aws:s3:::{BACKUPS}"
    allowed = {
        (frozenset(_as_set(st["Action"])), frozenset(_as_set(st["Resource"])))
        for st in _statements(doc)
        if st["Effect"] == "Allow"
    }
    # Add to the prefix, remove restic's lock files: no other delete.
    assert allowed == {
        (frozenset({"s3:ListBucket", "s3:GetBucketLocation"}), frozenset({bucket})),
        (frozenset({"s3:GetObject", "s3:PutObject"}), frozenset({f"{bucket}/prpm/*"})),
        (frozenset({"s3:DeleteObject"}), frozenset({f"{bucket}/prpm/locks/*"})),
    }
    (deny,) = [st for st in _statements(doc) if st["Effect"] == "Deny"]
    assert {
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutObjectRetention",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutLifecycleConfiguration",
    } <= _as_set(deny["Action"])
    assert _as_set(deny["Resource"]) == {bucket, f"{bucket}/*"}
    listing = next(s for s in doc["Statement"] if "s3:ListBucket" in s["Action"])
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["prpm/*"]}}


def test_role_policy_allows_the_packages_prefix_only(client):
    """Objects under packages/ (get, put, delete) and listing that prefix; nothing else there."""
    iam = client("iam")
    doc = iam.get_role_policy(RoleName=NAME, PolicyName="packages-bucket")["PolicyDocument"]
    bucket = f"arn:aws:s3:::{PACKAGES}"
    grants = {
        (frozenset(_as_set(s["Action"])), frozenset(_as_set(s["Resource"]))): s.get("Condition")
        for s in _statements(doc)
    }
    assert all(s["Effect"] == "Allow" for s in _statements(doc))
    assert all("NotAction" not in s and "NotResource" not in s for s in _statements(doc))
    assert grants == {
        (frozenset({"s3:ListBucket"}), frozenset({bucket})): {
            "StringLike": {"s3:prefix": ["packages/*"]}
        },
        (
            frozenset({"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}),
            frozenset({f"{bucket}/packages/*"}),
        ): None,
    }
    # No other policy of the role reaches the packages bucket or grants S3 broadly.
    backup = iam.get_role_policy(RoleName=NAME, PolicyName="backup-bucket")["PolicyDocument"]
    assert PACKAGES not in json.dumps(backup)
    for attached in iam.list_attached_role_policies(RoleName=NAME)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(
            PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
        )["PolicyVersion"]["Document"]
        version = json.loads(version) if isinstance(version, str) else version
        for statement in _statements(version):
            actions = _as_set(statement.get("Action", []))
            assert not [a for a in actions if a == "*" or a.lower().startswith("s3:")], statement


@pytest.mark.parametrize(
    ("bucket", "noncurrent_days"),
    [(BACKUPS, 30), (PACKAGES, 90)],
    ids=["backups", "packages"],
)
def test_bucket_is_private_encrypted_versioned_tls_only(
    provisioned, client, bucket, noncurrent_days
):
    s3 = client("s3")
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ["BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"], True
    )
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    sse = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert sse["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    policy = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert _as_set(deny["Resource"]) == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    rules = {r["ID"]: r for r in s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}
    assert set(rules) == {"expire-noncurrent-versions", "abort-incomplete-uploads"}
    assert rules["expire-noncurrent-versions"]["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": noncurrent_days
    }
    # Delete markers whose versions have all expired go too (restic's lock files, pruned objects).
    assert rules["expire-noncurrent-versions"]["Expiration"] == {"ExpiredObjectDeleteMarker": True}
    assert rules["abort-incomplete-uploads"]["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == {"Project": NAME}


def test_elastic_ip_and_dns_point_at_the_host(instance, ec2, client, zone):
    (address,) = ec2.describe_addresses(Filters=[{"Name": "tag:Project", "Values": [NAME]}])[
        "Addresses"
    ]
    assert address["InstanceId"] == instance["InstanceId"]
    zone_id = client("route53").list_hosted_zones_by_name(DNSName=zone)["HostedZones"][0]["Id"]
    records = client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    a_records = [
        r
        for r in records["ResourceRecordSets"]
        if r["Type"] == "A" and r["Name"].startswith("registry.")
    ]
    assert [[v["Value"] for v in r["ResourceRecords"]] for r in a_records] == [
        [address["PublicIp"]]
    ]


def test_budget_alerts_by_email(client):
    budgets = client("budgets")
    budget = budgets.describe_budget(AccountId="123456789012", BudgetName=NAME)["Budget"]
    assert float(budget["BudgetLimit"]["Amount"]) == 15.0
    assert budget["TimeUnit"] == "MONTHLY"
    notes = budgets.describe_notifications_for_budget(AccountId="123456789012", BudgetName=NAME)
    assert {(n["NotificationType"], n["Threshold"]) for n in notes["Notifications"]} == {
        ("ACTUAL", 80.0),
        ("FORECASTED", 100.0),
    }


def test_alarms_recover_and_warn_on_credits(instance, client):
    alarms = {
        a["AlarmName"]: a
        for a in client("cloudwatch").describe_alarms(AlarmNamePrefix=NAME)["MetricAlarms"]
    }
    assert set(alarms) == {f"{NAME}-auto-recover", f"{NAME}-cpu-credits-low"}
    recover = alarms[f"{NAME}-auto-recover"]
    assert recover["MetricName"] == "StatusCheckFailed_System"
    assert f"arn:aws:automate:{REGION}:ec2:recover" in recover["AlarmActions"]
    assert recover["Dimensions"] == [{"Name": "InstanceId", "Value": instance["InstanceId"]}]
    credits = alarms[f"{NAME}-cpu-credits-low"]
    assert (credits["MetricName"], credits["ComparisonOperator"]) == (
        "CPUCreditBalance",
        "LessThanThreshold",
    )
    topic = [a for a in credits["AlarmActions"] if a.startswith("arn:aws:sns:")]
    subs = client("sns").list_subscriptions_by_topic(TopicArn=topic[0])["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subs] == [("email", "ops@example.org")]


def test_newer_image_never_replaces_or_adds_a_host(provisioned, instance, playbook, ec2):
    extra = provisioned[2]
    newer = seed_image(
        "/aws/service/debian/release/13/latest/amd64",
        "debian-13-amd64-20261201-1",
        "136693071363",
    )
    run = playbook("provision.yml", "-e", extra)
    assert run.rc == 0, run.output
    assert run.changed() == 0, run.output
    (still,) = _instances(ec2)
    assert still["InstanceId"] == instance["InstanceId"]
    assert still["ImageId"] != newer


def test_dynamic_inventory_finds_the_host(instance, moto):
    env = dict(os.environ, **moto.env())
    proc = subprocess.run(
        ["ansible-inventory", "-i", str(ROOT / "inventories" / "aws"), "--list"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=True,
    )
    inventory = json.loads(proc.stdout)
    assert inventory["prpm_hosts"]["hosts"] == [NAME]
    hostvars = inventory["_meta"]["hostvars"][NAME]
    host = hostvars["ansible_host"]
    host = host if isinstance(host, str) else host["__ansible_unsafe"]
    assert host == instance["PublicIpAddress"]
    buckets = {
        key: value if isinstance(value, str) else value["__ansible_unsafe"]
        for key in ("prpm_backup_bucket", "prpm_packages_bucket")
        for value in [hostvars[key]]
    }
    assert buckets == {"prpm_backup_bucket": BACKUPS, "prpm_packages_bucket": PACKAGES}
    assert "aws_controller" in inventory and "localhost" in inventory["aws_controller"]["hosts"]


def test_registry_stores_packages_in_the_packages_bucket(instance, moto, settings):
    """group_vars/prpm_hosts.yml: S3 storage, the tagged bucket, the region, no keys."""
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_CALLBACK_RESULT_FORMAT="json", **moto.env())
    wanted = [
        "registry_stack_storage",
        "registry_stack_s3_bucket",
        "registry_stack_s3_region",
        "registry_stack_s3_endpoint",
        "registry_stack_s3_access_key_id",
        "registry_stack_s3_secret_access_key",
    ]
    msg = "{{ {" + ", ".join(f"'{v}': {v}" for v in wanted) + "} }}"
    cmd = ["ansible", NAME, "-i", str(ROOT / "inventories" / "aws"), "-e", f"@{settings}"]
    proc = subprocess.run(
        [*cmd, "-o", "-m", "ansible.builtin.debug", "-a", f"msg={msg}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # One line per host: "<host> | SUCCESS => {...}"
    got = json.loads(proc.stdout.split("=>", 1)[1])["msg"]
    assert got == {
        "registry_stack_storage": "s3",
        "registry_stack_s3_bucket": PACKAGES,
        "registry_stack_s3_region": REGION,
        "registry_stack_s3_endpoint": "",
        "registry_stack_s3_access_key_id": "",
        "registry_stack_s3_secret_access_key": "",
    }


def _pre_patch_snapshots(ec2) -> list[dict]:
    found = ec2.describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:Purpose", "Values": ["pre-patch"]}]
    )["Snapshots"]
    return sorted(found, key=lambda s: s["StartTime"])


def test_pre_patch_snapshot_of_the_root_volume_with_retention(instance, playbook, ec2):
    """patch.yml's AWS safety step: tagged snapshot of the root volume, old ones expire."""
    root = next(
        m["Ebs"]["VolumeId"]
        for m in instance["BlockDeviceMappings"]
        if m["DeviceName"] == instance["RootDeviceName"]
    )
    ids = []
    for _run in range(2):
        run = playbook("../tests/aws/snapshot.yml")
        assert run.rc == 0, run.output
        ids.append(re.search(r"snapshot=(snap-[0-9a-f]+)", run.output).group(1))
    snaps = _pre_patch_snapshots(ec2)
    assert [s["SnapshotId"] for s in snaps] == ids
    tags = {t["Key"]: t["Value"] for t in snaps[0]["Tags"]}
    assert tags == {
        "Project": "prpm-hobby",
        "Purpose": "pre-patch",
        "Host": NAME,
        "Name": f"{NAME}-pre-patch",
        "CreatedBy": "prpm.hobby",
    }
    assert {s["VolumeId"] for s in snaps} == {root}
    # Retention 0 days: every earlier pre-patch snapshot is deleted, the new one is kept.
    run = playbook("../tests/aws/snapshot.yml", "-e", "patching_ebs_snapshot_retention_days=0")
    assert run.rc == 0, run.output
    newest = re.search(r"snapshot=(snap-[0-9a-f]+)", run.output).group(1)
    assert [s["SnapshotId"] for s in _pre_patch_snapshots(ec2)] == [newest]
    for snap in _pre_patch_snapshots(ec2):
        ec2.delete_snapshot(SnapshotId=snap["SnapshotId"])


# --- backups a compromised host cannot erase ------------------------------------------------


def _s3_as(client, moto, role: str):
    """An S3 client with the credentials of one of the roles provisioning created."""
    creds = client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{role}", RoleSessionName="test"
    )["Credentials"]
    return boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=moto.url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _denied(call, *args, **kwargs) -> str:
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    return caught.value.response["Error"]["Code"]


def test_backup_bucket_keeps_every_version_under_object_lock(provisioned, client):
    lock = client("s3").get_object_lock_configuration(Bucket=BACKUPS)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert lock["Rule"]["DefaultRetention"] == {"Mode": "GOVERNANCE", "Days": 30}
    # The packages are the registry's to delete: no lock there.
    assert _denied(client("s3").get_object_lock_configuration, Bucket=PACKAGES) == (
        "ObjectLockConfigurationNotFoundError"
    )


def test_prune_role_is_for_the_controller_and_on_the_instance_tag(instance, client):
    iam = client("iam")
    role = iam.get_role(RoleName=f"{NAME}-backup-prune")["Role"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert role["MaxSessionDuration"] == 3600
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["BackupPruneRole"] == role["Arn"]
    # The same explicit Deny as the host's role: no version erased, no lock, versioning,
    # lifecycle or policy changed, the bucket not deleted.
    prune = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="backup-prune")
    host = iam.get_role_policy(RoleName=NAME, PolicyName="backup-bucket")
    (prune_deny,) = [s for s in _statements(prune["PolicyDocument"]) if s["Effect"] == "Deny"]
    (host_deny,) = [s for s in _statements(host["PolicyDocument"]) if s["Effect"] == "Deny"]
    assert _as_set(prune_deny["Action"]) == _as_set(host_deny["Action"])
    assert {"s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:DeleteBucket"} <= _as_set(
        prune_deny["Action"]
    )


def test_host_role_adds_snapshots_but_cannot_delete_them_and_a_rewrite_keeps_the_original(
    provisioned, client, moto
):
    admin = client("s3")
    host = _s3_as(client, moto, NAME)
    pruner = _s3_as(client, moto, f"{NAME}-backup-prune")
    pack, lock = "prpm/data/ab/abcdef", "prpm/locks/0123"
    with iam_enforced():
        first = host.put_object(Bucket=BACKUPS, Key=pack, Body=b"snapshot data")["VersionId"]
        host.put_object(Bucket=BACKUPS, Key=lock, Body=b"lock")
        assert host.get_object(Bucket=BACKUPS, Key=pack)["Body"].read() == b"snapshot data"
        host.delete_object(Bucket=BACKUPS, Key=lock)  # restic removes its own locks
        # A compromised host: delete the pack, delete its version, write outside the prefix.
        assert _denied(host.delete_object, Bucket=BACKUPS, Key=pack) == "AccessDenied"
        assert (
            _denied(host.delete_object, Bucket=BACKUPS, Key=pack, VersionId=first) == "AccessDenied"
        )
        assert _denied(host.put_object, Bucket=BACKUPS, Key="other/x", Body=b"") == "AccessDenied"
        shorter = {"Mode": "GOVERNANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=1)}
        assert (
            _denied(
                host.put_object_retention,
                Bucket=BACKUPS,
                Key=pack,
                VersionId=first,
                Retention=shorter,
                BypassGovernanceRetention=True,
            )
            == "AccessDenied"
        )
        # Rewriting the pack adds a version; the first one stays, locked.
        host.put_object(Bucket=BACKUPS, Key=pack, Body=b"garbage")
        # The prune role may hide it behind a delete marker, never delete a version.
        marker = pruner.delete_object(Bucket=BACKUPS, Key=pack)
        assert marker["DeleteMarker"] is True
        assert (
            _denied(pruner.delete_object, Bucket=BACKUPS, Key=pack, VersionId=first)
            == "AccessDenied"
        )
    versions = admin.list_object_versions(Bucket=BACKUPS, Prefix=pack)["Versions"]
    assert len(versions) == 2
    kept = admin.get_object(Bucket=BACKUPS, Key=pack, VersionId=first)
    assert kept["Body"].read() == b"snapshot data"
    assert kept["ObjectLockMode"] == "GOVERNANCE"
    assert kept["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=29)
    # Even the account's own keys cannot delete a locked version without bypassing governance.
    assert _denied(admin.delete_object, Bucket=BACKUPS, Key=pack, VersionId=first) == (
        "AccessDenied"
    )
    # Leave the bucket empty for the teardown tests, bypassing governance as only an
    # administrator may.
    listing = admin.list_object_versions(Bucket=BACKUPS)
    for v in listing.get("Versions", []) + listing.get("DeleteMarkers", []):
        admin.delete_object(
            Bucket=BACKUPS, Key=v["Key"], VersionId=v["VersionId"], BypassGovernanceRetention=True
        )
    assert "Versions" not in admin.list_object_versions(Bucket=BACKUPS)


def test_host_role_publishes_to_the_alarms_topic_only(instance, client):
    doc = client("iam").get_role_policy(RoleName=NAME, PolicyName="alerts-topic")["PolicyDocument"]
    (only,) = _statements(doc)
    assert (only["Effect"], _as_set(only["Action"])) == ("Allow", {"sns:Publish"})
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:{NAME}-alarms"
    assert only["Resource"] == topic
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["AlertsTopic"] == topic
    assert topic in [t["TopicArn"] for t in client("sns").list_topics()["Topics"]]
