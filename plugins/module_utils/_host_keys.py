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
import ipaddress
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
_HOST_NAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)
# Fields after the type in the SSH wire format of each public key type (RFC 4253, 5656, 8709).
_FIELDS = {"ssh-ed25519": 1, "ssh-rsa": 2}


def _wire_fields(raw: bytes) -> list[bytes] | None:
    """The length-prefixed fields of a public key blob, or None when it does not split into
    whole fields (a key cut short on the console)."""
    fields, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            return None
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        pos += 4
        if pos + length > len(raw):
            return None
        fields.append(raw[pos : pos + length])
        pos += length
    return fields


def key_is_valid(key_type: str, blob: str) -> bool:
    """The base64 blob decodes to a whole public key of that type: its first field names the
    type and the rest is exactly the key material (ed25519: 32 bytes; ECDSA: the curve and a
    point; RSA: exponent and modulus)."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError):
        return False
    fields = _wire_fields(raw)
    if not fields or fields[0] != key_type.encode():
        return False
    if key_type == "ssh-ed25519":
        return len(fields) == 2 and len(fields[1]) == 32
    if key_type.startswith("ecdsa-sha2-"):
        curve = key_type.removeprefix("ecdsa-sha2-").encode()
        return len(fields) == 3 and fields[1] == curve and len(fields[2]) > 0
    return len(fields) == 1 + _FIELDS.get(key_type, 0) and all(fields[1:])


def name_is_valid(name: str) -> bool:
    """A host name or an IP address, as known_hosts names hosts (no patterns, markers, hashes
    or ports)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return bool(_HOST_NAME.match(name))
    return True


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
    """The lines pinned for this instance (their comment is its ID), each a whole valid key.
    Comments and marked lines (@cert-authority, @revoked) are never this instance's."""
    found = []
    for line in text.splitlines():
        fields = _fields(line)
        if len(fields) < 4 or fields[3] != instance_id or line.lstrip()[:1] in ("#", "@"):
            continue
        if fields[1] in KEY_TYPES and key_is_valid(fields[1], fields[2]):
            found.append(line)
    return found


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
