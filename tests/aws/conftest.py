# SPDX-License-Identifier: GPL-3.0-or-later
"""moto in server mode, started by the tests, with Debian/Ubuntu images and their SSM parameters.

The playbooks under test are pointed at it only through environment variables (AWS_URL,
AWS_ENDPOINT_URL, keys, region): nothing in the collection knows about moto.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import boto3
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
DEBIAN_OWNER = "136693071363"
CANONICAL_OWNER = "099720109477"

# moto reads these when it is imported: validation on, every request recorded (the recording
# proves request fields moto accepts but does not model, such as the CPU credit specification).
_RECORDING = Path(tempfile.gettempdir()) / f"prpm-moto-{os.getpid()}.jsonl"
os.environ.update(
    MOTO_ENABLE_AMI_VALIDATION="true",
    MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true",
    MOTO_ENABLE_KEYPAIR_VALIDATION="true",
    MOTO_IAM_LOAD_MANAGED_POLICIES="true",
    MOTO_ENABLE_RECORDING="true",
    MOTO_RECORDER_FILEPATH=str(_RECORDING),
)

from ansible_recap import PlaybookRun, ansible_playbook  # noqa: E402 (tools/, on sys.path)
from moto.budgets.exceptions import DuplicateRecordException, NotFoundException  # noqa: E402
from moto.budgets.responses import BudgetsResponse  # noqa: E402
from moto.core.responses import ActionResult  # noqa: E402
from moto.ec2.models import ec2_backends  # noqa: E402
from moto.ec2.models.amis import Ami  # noqa: E402
from moto.ec2.responses.general import SAMPLE_CONSOLE_OUTPUT, General  # noqa: E402
from moto.ec2.utils import Base64EncodedString  # noqa: E402
from moto.iam.access_control import (  # noqa: E402
    IAMPolicy,
    IAMPolicyStatement,
    IAMRequestBase,
    PermissionResult,
)
from moto.moto_server.threaded_moto_server import ThreadedMotoServer  # noqa: E402
from moto.s3.models import FakeBucket  # noqa: E402
from moto.s3.responses import S3Response  # noqa: E402
from moto.ssm.models import Parameter, ssm_backends  # noqa: E402
from moto_iam import trust_the_account_root  # noqa: E402

logging.getLogger("werkzeug").setLevel(logging.ERROR)


# moto 5.2 stores each budget notification with its subscribers but answers none of the
# subscriber calls (a 500). These three follow the AWS API reference, on moto's own model, so
# that prpm.hobby.aws_budget can read and change who receives an alert.
def _subscribed(response: BudgetsResponse):
    """The stored notification the request names, with its subscribers."""
    budgets = response.backend.budgets[response._get_param("AccountId")]
    name = response._get_param("BudgetName")
    if name not in budgets:
        raise NotFoundException(f"Unable to get budget: {name} - the budget doesn't exist.")
    wanted = response._get_param("Notification")
    for notification in budgets[name].notifications:
        if notification.details == wanted:
            return notification
    raise NotFoundException(f"Unable to find the notification {wanted} of budget {name}.")


def _describe_subscribers_for_notification(self: BudgetsResponse) -> str:
    return json.dumps({"Subscribers": list(_subscribed(self).subscribers)})


def _create_subscriber(self: BudgetsResponse) -> str:
    notification, subscriber = _subscribed(self), self._get_param("Subscriber")
    if subscriber in notification.subscribers:
        raise DuplicateRecordException("subscriber", subscriber["Address"])
    notification.subscribers = [*notification.subscribers, subscriber]
    return json.dumps({})


def _delete_subscriber(self: BudgetsResponse) -> str:
    notification, subscriber = _subscribed(self), self._get_param("Subscriber")
    if subscriber not in notification.subscribers:
        raise NotFoundException(f"Unable to find the subscriber {subscriber['Address']}.")
    notification.subscribers = [s for s in notification.subscribers if s != subscriber]
    return json.dumps({})


BudgetsResponse.describe_subscribers_for_notification = _describe_subscribers_for_notification
BudgetsResponse.create_subscriber = _create_subscriber
BudgetsResponse.delete_subscriber = _delete_subscriber


# moto 5.2 answers GetObjectLockConfiguration with both Days and Years, one of them 0; S3 gives
# the one that was set (the API reference: "Days or Years, not both"). As S3 does, on moto's
# model, so that amazon.aws.s3_bucket reads back the retention it set and changes nothing.
def _get_object_lock_configuration(self: S3Response):
    enabled, mode, days, years = self.backend.get_object_lock_configuration(self.bucket_name)
    config: dict = {"ObjectLockEnabled": "Enabled" if enabled else "Disabled"}
    if mode:
        retention = {"Mode": mode, **({"Days": days} if days else {"Years": years})}
        config["Rule"] = {"DefaultRetention": retention}
    self.data["Action"] = "GetObjectLockConfiguration"
    return self.serialized(ActionResult({"ObjectLockConfiguration": config}))


S3Response.get_object_lock_configuration = _get_object_lock_configuration


# --- IAM enforcement --------------------------------------------------------------------------
# moto can check each request against the signer's IAM policies (INITIAL_NO_AUTH_ACTION_COUNT).
# It names some actions by API operation where AWS authorizes them under another IAM action
# (the Service Authorization Reference): these are translated before moto's own check. moto
# knows the resource of S3 and IAM requests only; for the others it passes "*", which is taken
# to match a statement's resource here (their scoping is read from the policy documents, not
# enforced), and it does not evaluate conditions.
_S3_BUCKET_ACTIONS = {
    "GET": {
        "accelerate": "GetAccelerateConfiguration",
        "acl": "GetBucketAcl",
        "encryption": "GetEncryptionConfiguration",
        "inventory": "GetInventoryConfiguration",
        "lifecycle": "GetLifecycleConfiguration",
        "location": "GetBucketLocation",
        "object-lock": "GetBucketObjectLockConfiguration",
        "ownershipControls": "GetBucketOwnershipControls",
        "policy": "GetBucketPolicy",
        "publicAccessBlock": "GetBucketPublicAccessBlock",
        "requestPayment": "GetBucketRequestPayment",
        "tagging": "GetBucketTagging",
        "versioning": "GetBucketVersioning",
        "versions": "ListBucketVersions",
        "": "ListBucket",
    },
    "HEAD": {"": "ListBucket"},
    "PUT": {
        "acl": "PutBucketAcl",
        "encryption": "PutEncryptionConfiguration",
        "lifecycle": "PutLifecycleConfiguration",
        "object-lock": "PutBucketObjectLockConfiguration",
        "ownershipControls": "PutBucketOwnershipControls",
        "policy": "PutBucketPolicy",
        "publicAccessBlock": "PutBucketPublicAccessBlock",
        "tagging": "PutBucketTagging",
        "versioning": "PutBucketVersioning",
        "": "CreateBucket",
    },
    "DELETE": {
        "encryption": "PutEncryptionConfiguration",
        "lifecycle": "PutLifecycleConfiguration",
        "ownershipControls": "PutBucketOwnershipControls",
        "policy": "DeleteBucketPolicy",
        "publicAccessBlock": "PutBucketPublicAccessBlock",
        "tagging": "PutBucketTagging",
        "": "DeleteBucket",
    },
}
_S3_OBJECT_ACTIONS = {
    "GET": {"versionId": "GetObjectVersion", "": "GetObject"},
    "HEAD": {"versionId": "GetObjectVersion", "": "GetObject"},
    "PUT": {
        "retention": "PutObjectRetention",
        "legal-hold": "PutObjectLegalHold",
        "tagging": "PutObjectTagging",
        "acl": "PutObjectAcl",
        "": "PutObject",
    },
    "DELETE": {
        "versionId": "DeleteObjectVersion",
        "uploadId": "AbortMultipartUpload",
        "": "DeleteObject",
    },
    "POST": {"uploads": "PutObject", "uploadId": "PutObject", "": "PutObject"},
}
_BUDGETS_VIEW = {"DescribeBudget", "DescribeBudgets", "DescribeNotificationsForBudget",
                 "DescribeSubscribersForNotification"}  # fmt: skip


def iam_actions(request: IAMRequestBase) -> list[str]:
    """The IAM actions AWS authorizes a request under (moto's name where they agree)."""
    service, _colon, action = request._action.partition(":")
    method, path, body = request._method, request._path, request._body or b""
    headers = {k.lower(): v for k, v in request._headers.items()}
    if service == "s3":
        url = urlparse(path)
        query = parse_qs(url.query, keep_blank_values=True)
        bucket, _slash, key = url.path.lstrip("/").partition("/")
        if not bucket:
            return ["s3:ListAllMyBuckets"]
        if method == "POST" and "delete" in query:  # DeleteObjects: each key, each version
            return ["s3:DeleteObjectVersion" if b"<VersionId>" in body else "s3:DeleteObject"]
        table = (_S3_OBJECT_ACTIONS if key else _S3_BUCKET_ACTIONS).get(method, {})
        name = next((v for k, v in table.items() if k and k in query), table.get("", action))
        found = [f"s3:{name}"]
        if headers.get("x-amz-bypass-governance-retention", "").lower() == "true":
            found.append("s3:BypassGovernanceRetention")
        return found
    if service == "monitoring":
        return [f"cloudwatch:{action}"]
    if service == "budgets":
        return ["budgets:ViewBudget" if action in _BUDGETS_VIEW else "budgets:ModifyBudget"]
    return [f"{service}:{action}"]


def _check_iam_actions(check):
    def checked(self: IAMRequestBase, resource: str) -> None:
        for name in iam_actions(self):
            self._action = name
            check(self, resource)

    return checked


def _unknown_resource_matches(match):
    def matches(self: IAMPolicyStatement, element: str, value: str) -> bool:
        return (element == "Resource" and value == "*") or match(self, element, value)

    return matches


_TLS_ONLY = {"Bool": {"aws:SecureTransport": "false"}}


def _bucket_permission_over_tls(self: FakeBucket, action: str, resource: str):
    """moto checks a bucket's policy on object requests without the request's context, so the
    buckets' TLS-only Deny (aws:SecureTransport false) refuses every request to this plain-HTTP
    moto; the clients on AWS use HTTPS. Here it is left out of that check (the statement itself
    is read back by test_bucket_is_private_encrypted_versioned_tls_only)."""
    if self.policy is None:
        return PermissionResult.NEUTRAL
    document = json.loads(self.policy.decode())
    document["Statement"] = [s for s in document["Statement"] if s.get("Condition") != _TLS_ONLY]
    return IAMPolicy(json.dumps(document)).is_action_permitted(action, resource)


FakeBucket.get_permission = _bucket_permission_over_tls


# moto answers GetConsoleOutput with one fixed kernel log for every instance. On EC2, cloud-init
# writes the host's SSH public keys there at the first boot (keys-to-console): that is emulated
# here, with keys generated for each instance (CONSOLE_KEYS, instance ID -> known_hosts-style
# "type base64" lines), so that provisioning can pin them. Instances in KEYLESS_CONSOLES show no
# keys (an image that does not print them, or one still booting).
CONSOLE_KEYS: dict[str, list[str]] = {}
KEYLESS_CONSOLES: set[str] = set()


def _generated_host_keys() -> list[str]:
    keys = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("ecdsa", "ed25519"):
            path = Path(tmp) / kind
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    kind,
                    "-N",
                    "",
                    "-C",
                    "root@ip-10-0-0-5",
                    "-f",
                    str(path),
                ],
                check=True,
            )
            keys.append(" ".join(path.with_suffix(".pub").read_text().split()[:2]))
    return keys


def _console_output(self: General) -> ActionResult:
    instance = self.ec2_backend.get_instance(self._get_param("InstanceId"))
    text = SAMPLE_CONSOLE_OUTPUT
    if instance.id not in KEYLESS_CONSOLES:
        keys = CONSOLE_KEYS.setdefault(instance.id, _generated_host_keys())
        text += (
            "[   21.503817] cloud-init[790]: Cloud-init v. 25.1.4 running 'modules:final'\n"
            "<14>Nov 27 21:00:03 cloud-init: ###########################################\n"
            "<14>Nov 27 21:00:03 cloud-init: -----BEGIN SSH HOST KEY FINGERPRINTS-----\n"
            "<14>Nov 27 21:00:03 cloud-init: 256 SHA256:n7Zr0kq root@ip-10-0-0-5 (ECDSA)\n"
            "<14>Nov 27 21:00:03 cloud-init: -----END SSH HOST KEY FINGERPRINTS-----\n"
            "-----BEGIN SSH HOST KEY KEYS-----\n"
            + "".join(f"{key} root@ip-10-0-0-5\n" for key in keys)
            + "-----END SSH HOST KEY KEYS-----\n"
        )
    return ActionResult(
        {
            "InstanceId": instance.id,
            "Timestamp": datetime.now(UTC),
            "Output": Base64EncodedString.from_raw_string(text),
        }
    )


General.get_console_output = _console_output
IAMRequestBase.check_action_permitted = _check_iam_actions(IAMRequestBase.check_action_permitted)
IAMPolicyStatement._check_element_matches = _unknown_resource_matches(
    IAMPolicyStatement._check_element_matches
)
trust_the_account_root()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seed_image(
    ssm_path: str, name: str, owner: str, arch: str = "x86_64", root: str = "/dev/xvda"
) -> str:
    """Register an official-looking image and point the public SSM parameter at it."""
    ec2 = ec2_backends[ACCOUNT][REGION]
    ami_id = f"ami-{os.urandom(8).hex()[:17]}"
    ec2.amis[ami_id] = Ami(
        ec2,
        ami_id,
        name=name,
        description=name,
        owner_id=owner,
        public=True,
        virtualization_type="hvm",
        architecture=arch,
        root_device_type="ebs",
        root_device_name=root,
        hypervisor="xen",
        region_name=REGION,
        creation_date=datetime.now(UTC),
    )
    params = ssm_backends[ACCOUNT][REGION]._parameters
    versions = params[ssm_path]
    versions.append(
        Parameter(
            account_id=ACCOUNT,
            name=ssm_path,
            value=ami_id,
            parameter_type="String",
            description=None,
            allowed_pattern=None,
            keyid=None,
            last_modified_date=datetime.now(UTC),
            version=len(versions) + 1,
            data_type="aws:ec2:image",
        )
    )
    return ami_id


@dataclass
class Moto:
    url: str
    recording: Path

    def env(self) -> dict[str, str]:
        return {
            "AWS_URL": self.url,
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
        }

    def requests(self, action: str) -> list[str]:
        """Decoded bodies of the recorded requests of one EC2/IAM-style Action."""
        bodies = []
        for line in self.recording.read_text().splitlines():
            entry = json.loads(line)
            body = entry.get("body") or ""
            if entry.get("body_encoded"):
                body = base64.b64decode(body).decode("utf-8", "replace")
            if f"Action={action}&" in body or body.endswith(f"Action={action}"):
                bodies.append(body)
        return bodies


@pytest.fixture(scope="session")
def moto() -> Moto:
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    seed_image(
        "/aws/service/debian/release/13/latest/amd64", "debian-13-amd64-20261101-1", DEBIAN_OWNER
    )
    seed_image(
        "/aws/service/debian/release/13/latest/arm64",
        "debian-13-arm64-20261101-1",
        DEBIAN_OWNER,
        arch="arm64",
    )
    seed_image(
        "/aws/service/debian/release/12/latest/amd64", "debian-12-amd64-20261101-1", DEBIAN_OWNER
    )
    seed_image(
        "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id",
        "ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-20261101",
        CANONICAL_OWNER,
        root="/dev/sda1",
    )
    yield Moto(url=f"http://127.0.0.1:{port}", recording=_RECORDING)
    server.stop()
    _RECORDING.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def ec2(moto):
    return boto3.client("ec2", region_name=REGION, **_client_kwargs(moto))


def _client_kwargs(moto: Moto) -> dict:
    return {
        "endpoint_url": moto.url,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }


@pytest.fixture(scope="session")
def client(moto):
    def make(service: str):
        return boto3.client(service, region_name=REGION, **_client_kwargs(moto))

    return make


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> Path:
    """A vars file as a user would write it, with a real key pair."""
    tmp = tmp_path_factory.mktemp("aws")
    key = tmp / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)], check=True
    )
    path = tmp / "settings.json"
    path.write_text(
        json.dumps(
            {
                "aws_host_ssh_public_key_file": f"{key}.pub",
                "aws_host_known_hosts_file": str(tmp / "known_hosts"),
                "aws_host_admin_cidrs": ["198.51.100.7/32", "2001:db8:7::/48"],
                "aws_host_alert_emails": ["ops@example.org"],
                "registry_stack_domain": "registry.example.org",
                "registry_stack_registry_image": "ghcr.io/example/prpm-registry:1.0.0",
            }
        )
    )
    return path


@pytest.fixture(scope="session")
def cloud_init_log(tmp_path_factory) -> Path:
    """Every call of tests/aws/bin/cloud-init, one line each (its arguments)."""
    return tmp_path_factory.mktemp("cloud-init") / "calls.log"


@pytest.fixture(scope="session")
def playbook(moto, settings, cloud_init_log):
    # moto runs no instance: tests/aws/hosts.yml reaches its hosts on this machine, where
    # tests/aws/bin/cloud-init stands in for cloud-init. The playbooks know nothing of it.
    here = Path(__file__).resolve().parent
    env = {
        **moto.env(),
        "PATH": f"{here / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "PRPM_TEST_CLOUD_INIT_LOG": str(cloud_init_log),
    }

    def run(name: str, *extra: str) -> PlaybookRun:
        """The run's recap raises, never reads as changed=0, when the output has none."""
        inventory, path = ROOT / "inventories" / "aws", ROOT / "playbooks" / name
        inventories = ["-i", str(inventory), "-i", str(here / "hosts.yml")]
        args = [*inventories, str(path), "-e", f"@{settings}", *extra]
        return ansible_playbook(args, env=env, cwd=ROOT)

    return run
