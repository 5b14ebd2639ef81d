# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm_backup: a failure is published to the SNS topic (the AWS tier's alarms topic), through
botocore against moto in server mode, and read back from a queue subscribed to the topic."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import prpm_backup
import pytest
from host_fakes import FakeHost, write_json
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from test_prpm_backup import config

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def topic(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> tuple[str, object, str]:
    """A topic with a queue subscribed to it; botocore on the "host" pointed at moto through
    the environment only."""
    for key, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(key, value)
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    arn = sns.create_topic(Name="prpm-hobby-alarms")["TopicArn"]
    queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
    return arn, sqs, queue


def _config(tmp_path: Path, **change: object) -> Path:
    return write_json(tmp_path / "config.json", config(**change))


def _received(sqs, queue: str) -> list[dict]:
    got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]


def test_a_failure_is_published_to_the_topic(
    fake: FakeHost, tmp_path: Path, topic: tuple[str, object, str]
) -> None:
    arn, sqs, queue = topic
    fake.on("check", rc=1, out="Fatal: pack 1234 is damaged")
    rc = prpm_backup.main(
        ["check"],
        config_path=str(_config(tmp_path, alert_sns_topic=arn)),
        state_dir=str(tmp_path / "state"),
    )
    assert rc == prpm_backup.FAILED
    (message,) = _received(sqs, queue)
    assert message["Subject"] == "prpm-backup check failed on host1"
    assert "prpm-backup check failed on host1:" in message["Message"]
    assert "journalctl -u prpm-backup@check" in message["Message"]


def test_success_and_no_topic_publish_nothing(
    fake: FakeHost, tmp_path: Path, topic: tuple[str, object, str]
) -> None:
    arn, sqs, queue = topic
    state = str(tmp_path / "state")
    assert prpm_backup.main(["check"], config_path=str(_config(tmp_path, alert_sns_topic=arn)),
                            state_dir=state) == 0  # fmt: skip
    fake.on("check", rc=1)
    assert prpm_backup.main(["check"], config_path=str(_config(tmp_path)), state_dir=state) != 0
    assert _received(sqs, queue) == []


def test_an_alert_that_cannot_be_sent_is_said_not_raised(
    fake: FakeHost, tmp_path: Path, capsys: pytest.CaptureFixture[str], topic: tuple
) -> None:
    fake.on("check", rc=1)
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    rc = prpm_backup.main(
        ["check"],
        config_path=str(_config(tmp_path, alert_sns_topic=missing)),
        state_dir=str(tmp_path / "state"),
    )
    assert rc == prpm_backup.FAILED
    assert f"alert to {missing} failed" in capsys.readouterr().err


def test_one_alert_per_failure_and_one_when_it_recovers(
    fake: FakeHost, tmp_path: Path, topic: tuple[str, object, str]
) -> None:
    """An hourly command failing again and again alerts once; its first success after that
    says it recovered, once."""
    arn, sqs, queue = topic
    cfg, state = str(_config(tmp_path, alert_sns_topic=arn)), str(tmp_path / "state")
    fake.on("check", rc=1, out="Fatal: pack 1234 is damaged")
    for _attempt in range(3):
        assert prpm_backup.main(["check"], config_path=cfg, state_dir=state) == prpm_backup.FAILED
    (failed,) = _received(sqs, queue)
    assert failed["Subject"] == "prpm-backup check failed on host1"
    reason = failed["Message"].split("failed on host1: ", 1)[1].splitlines()[0]
    fake.on("check", rc=0)
    for _attempt in range(2):
        assert prpm_backup.main(["check"], config_path=cfg, state_dir=state) == 0
    (recovered,) = _received(sqs, queue)
    assert recovered["Subject"] == "prpm-backup check recovered on host1"
    assert recovered["Message"].startswith("prpm-backup check succeeded on host1 again.")
    assert recovered["Message"].endswith(f" UTC: {reason}")
    fake.on("check", rc=1)
    assert prpm_backup.main(["check"], config_path=cfg, state_dir=state) == prpm_backup.FAILED
    assert [m["Subject"] for m in _received(sqs, queue)] == ["prpm-backup check failed on host1"]


def test_an_alert_that_could_not_be_sent_is_sent_by_the_next_failure(
    fake: FakeHost, tmp_path: Path, topic: tuple[str, object, str]
) -> None:
    arn, sqs, queue = topic
    state = str(tmp_path / "state")
    fake.on("check", rc=1)
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    bad = str(_config(tmp_path, alert_sns_topic=missing))
    assert prpm_backup.main(["check"], config_path=bad, state_dir=state) == prpm_backup.FAILED
    good = str(_config(tmp_path, alert_sns_topic=arn))
    assert prpm_backup.main(["check"], config_path=good, state_dir=state) == prpm_backup.FAILED
    assert [m["Subject"] for m in _received(sqs, queue)] == ["prpm-backup check failed on host1"]
