# SPDX-License-Identifier: GPL-3.0-or-later
"""Host keys from console output as cloud-init writes it, and the known_hosts lines pinning them.
Keys are real ones from ssh-keygen; fingerprints are checked against ssh-keygen -l."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from ansible_collections.prpm.hobby.plugins.module_utils._host_keys import (
    fingerprint,
    key_is_valid,
    lines_of,
    merged,
    name_is_valid,
    parse_console,
    render,
)

IID = "i-0123456789abcdef0"


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> list[tuple[str, str]]:
    tmp = tmp_path_factory.mktemp("keys")
    found = []
    for kind in ("ecdsa", "ed25519", "rsa"):
        path = tmp / kind
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
        kind_name, blob = path.with_suffix(".pub").read_text().split()[:2]
        found.append((kind_name, blob))
    return found


def _block(keys, prefix: str = "") -> str:
    body = "".join(f"{prefix}{kind} {blob} root@ip-10-0-0-5\n" for kind, blob in keys)
    begin, end = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
    return f"{prefix}{begin}\n{body}{prefix}{end}\n"


@pytest.mark.parametrize(
    "prefix",
    ["", "[   25.104122] cloud-init[812]: ", "ec2: ", "<14>Nov 27 21:00:03 cloud-init: "],
    ids=["plain", "kernel timestamp", "ec2 tag", "syslog"],
)
def test_keys_are_read_from_the_block_whatever_the_line_prefix(keys, prefix):
    text = "Linux version 6.12\nfoo\n" + _block(keys, prefix) + "login: "
    assert parse_console(text) == keys


def test_crlf_output_and_fingerprint_block_are_handled(keys):
    fingerprints = (
        "-----BEGIN SSH HOST KEY FINGERPRINTS-----\n256 SHA256:abc root@h (ED25519)\n"
        "-----END SSH HOST KEY FINGERPRINTS-----\n"
    )
    text = (fingerprints + _block(keys)).replace("\n", "\r\n")
    assert parse_console(text) == keys


def test_no_block_or_an_unfinished_one_gives_no_keys(keys):
    assert parse_console("Linux version 6.12\n") == []
    assert parse_console(_block(keys).rsplit("-----END", 1)[0]) == []


def test_the_last_block_wins(keys):
    """A later boot of the same instance prints again; the newest block counts."""
    assert parse_console(_block(keys[:1]) + "reboot\n" + _block(keys[1:])) == keys[1:]


def test_lines_that_are_not_valid_keys_are_ignored(keys):
    kind, blob = keys[1]
    wrong_type = f"ssh-rsa {blob}"  # an ed25519 blob announced as RSA
    text = (
        "-----BEGIN SSH HOST KEY KEYS-----\n"
        f"{wrong_type}\nssh-ed25519 AAAA!!notbase64\nssh-ed25519 QUJD\nsome noise\n"
        f"{kind} {blob} root@h\n-----END SSH HOST KEY KEYS-----\n"
    )
    assert parse_console(text) == [(kind, blob)]
    assert not key_is_valid("ssh-rsa", blob)


def test_fingerprint_is_ssh_keygens(keys, tmp_path):
    for kind, blob in keys:
        pub = tmp_path / "k.pub"
        pub.write_text(f"{kind} {blob}\n")
        out = subprocess.run(
            ["ssh-keygen", "-l", "-E", "sha256", "-f", str(pub)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert out.split()[1] == fingerprint(blob)


def test_merge_replaces_this_instance_and_stale_keys_for_its_names_keeps_others(keys):
    other = f"198.51.100.9 {keys[0][0]} {keys[0][1]} i-0fedcba9876543210"
    stale = f"203.0.113.10 {keys[2][0]} {keys[2][1]}"  # an earlier host at this address
    old_self = f"192.0.2.1 {keys[0][0]} {keys[0][1]} {IID}"
    text = "\n".join(["# my comment", other, stale, old_self]) + "\n"
    new = render(["203.0.113.10", "registry.example.org"], keys[:2], IID)
    result = merged(text, ["203.0.113.10", "registry.example.org"], IID, new)
    assert result.splitlines() == ["# my comment", other, *new]
    assert lines_of(result, IID) == new
    assert merged(result, [], IID, []).splitlines() == ["# my comment", other]


def test_ssh_reads_the_rendered_lines(keys, tmp_path):
    path: Path = tmp_path / "known_hosts"
    path.write_text(
        merged(
            "",
            ["203.0.113.10", "reg.example.org"],
            IID,
            render(["203.0.113.10", "reg.example.org"], keys, IID),
        )
    )
    for name in ("203.0.113.10", "reg.example.org"):
        out = subprocess.run(
            ["ssh-keygen", "-F", name, "-f", str(path)], capture_output=True, text=True, check=False
        )
        assert out.returncode == 0
        assert {key[1] for key in keys} <= set(out.stdout.split())
    missing = subprocess.run(["ssh-keygen", "-F", "203.0.113.11", "-f", str(path)], check=False)
    assert missing.returncode != 0


def test_a_key_cut_short_or_padded_is_not_a_key(keys):
    """A console line cut short (or with bytes after the key) must not be pinned for good."""
    for kind, blob in keys:
        raw = base64.b64decode(blob)
        assert key_is_valid(kind, blob)
        assert not key_is_valid(kind, base64.b64encode(raw[:-1]).decode()), kind
        assert not key_is_valid(kind, base64.b64encode(raw + b"\0").decode()), kind
    assert not key_is_valid("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAA")


def test_comments_markers_and_broken_lines_are_not_pinned_keys(keys):
    kind, blob = keys[1]
    text = "\n".join(
        [
            f"# pinned for {IID}",
            f"@revoked 203.0.113.10 {kind} {blob} {IID}",
            f"203.0.113.10 {kind} AAAAC3NzaC1lZDI1NTE5AAAA {IID}",
            f"203.0.113.10 {kind} {blob} {IID}",
        ]
    )
    assert lines_of(text, IID) == [f"203.0.113.10 {kind} {blob} {IID}"]


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("203.0.113.10", True),
        ("2001:db8::5", True),
        ("registry.example.org", True),
        ("registry.example.org.", True),
        ("@cert-authority", False),
        ("|1|hash", False),
        ("*.example.org", False),
        ("[203.0.113.10]:2222", False),
        ("a b", False),
        ("", False),
        ("-leading.example.org", False),
    ],
)
def test_names_are_host_names_or_addresses(name, valid):
    assert name_is_valid(name) is valid
