# SPDX-License-Identifier: GPL-3.0-or-later
# Copyright (c) prpm.hobby maintainers
"""SSH host keys of an EC2 instance, read from what cloud-init writes to its console, and the
known_hosts lines that pin them (prpm.hobby.ec2_host_keys).

cloud-init's keys-to-console module prints the host's public keys once per instance, between
``-----BEGIN SSH HOST KEY KEYS-----`` and ``-----END SSH HOST KEY KEYS-----``; depending on the
image each line may carry a prefix (``[   12.3] cloud-init[812]: ``, ``ec2: ``). The console
output comes from the hypervisor, not from the network path to the host, so keys read there
are not the ones a man in the middle would offer.

The lines of one instance end with its instance ID as the comment; a file may hold other
hosts' lines, which are kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct

BEGIN = "-----BEGIN SSH HOST KEY KEYS-----"
END = "-----END SSH HOST KEY KEYS-----"
KEY_TYPES = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)
_KEY = re.compile(
    r"(?:^|\s)(" + "|".join(map(re.escape, KEY_TYPES)) + r") ([A-Za-z0-9+/]+={0,3})(?=\s|$)"
)
_INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")


def key_is_valid(key_type: str, blob: str) -> bool:
    """The base64 blob decodes and names the same key type in its first field (SSH wire
    format: a 4-byte length, then the type)."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return False
    if len(raw) < 4:
        return False
    (length,) = struct.unpack(">I", raw[:4])
    return raw[4 : 4 + length] == key_type.encode() and len(raw) > 4 + length


def fingerprint(blob: str) -> str:
    """The SHA256 fingerprint as ssh-keygen -l prints it."""
    digest = hashlib.sha256(base64.b64decode(blob)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def parse_console(text: str) -> list[tuple[str, str]]:
    """The keys of the last complete block in the console output, in their order; [] when no
    complete block is there yet (cloud-init has not reached that stage, or the image does not
    print keys). A line in the block that is not a valid key is ignored."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    keys: list[tuple[str, str]] | None = None
    found: list[tuple[str, str]] = []
    for line in lines:
        if BEGIN in line:
            keys = []
        elif END in line:
            if keys:
                found = keys
            keys = None
        elif keys is not None:
            match = _KEY.search(line)
            if match and key_is_valid(match.group(1), match.group(2)):
                keys.append((match.group(1), match.group(2)))
    return found


def instance_id_is_valid(instance_id: str) -> bool:
    return bool(_INSTANCE_ID.match(instance_id))


def _fields(line: str) -> list[str]:
    return line.split()


def lines_of(text: str, instance_id: str) -> list[str]:
    """The lines pinned for this instance (their comment is its ID)."""
    return [
        line
        for line in text.splitlines()
        if len(_fields(line)) >= 4 and _fields(line)[3] == instance_id
    ]


def render(names: list[str], keys: list[tuple[str, str]], instance_id: str) -> list[str]:
    hosts = ",".join(names)
    return [f"{hosts} {key_type} {blob} {instance_id}" for key_type, blob in keys]


def merged(text: str, names: list[str], instance_id: str, new_lines: list[str]) -> str:
    """The file with this instance's lines replaced by new_lines. Lines of other instances or
    hosts that name one of these names are dropped too: an address or a name now belongs to
    this instance, and a stale key for it would make ssh refuse the host (or trust the old
    one)."""
    wanted = set(names)
    kept = []
    for line in text.splitlines():
        fields = _fields(line)
        if line.startswith("#") or len(fields) < 3:
            kept.append(line)
            continue
        if len(fields) >= 4 and fields[3] == instance_id:
            continue
        if wanted & set(fields[0].split(",")):
            continue
        kept.append(line)
    body = "\n".join(kept + new_lines)
    return body + "\n" if body else ""


def keys_of_lines(lines: list[str]) -> list[tuple[str, str]]:
    return [(_fields(line)[1], _fields(line)[2]) for line in lines]


def names_of_lines(lines: list[str]) -> list[str]:
    return _fields(lines[0])[0].split(",") if lines else []
