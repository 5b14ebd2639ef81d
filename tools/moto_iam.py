# SPDX-License-Identifier: GPL-3.0-or-later
"""moto's IAM enforcement for the tests (tests/aws, the molecule backups scenario): a switch,
and the one place where moto's trust evaluation is brought in line with AWS's.

moto checks each request against its signer's IAM policies once INITIAL_NO_AUTH_ACTION_COUNT
requests were served; `iam_enforced()` sets that to 0 while it is open. moto reads a trust
policy's principal `arn:aws:iam::ACCOUNT:root` as that one principal; AWS reads it as "the
account's identities, as their own policies allow" (the IAM User Guide, "Specifying a
principal"): `trust_the_account_root()` makes moto do the same.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from moto import settings as moto_settings
from moto.core.authorization import ActionAuthenticatorMixin
from moto.iam.access_control import IAMRequestBase

_CHECK_TRUST = IAMRequestBase._check_role_trust_relationship


def _trusted(self: IAMRequestBase, role_arn: str) -> bool:
    role = self.backend.get_role_by_arn(role_arn)
    statements = json.loads(role.assume_role_policy_document)["Statement"]
    roots = {s["Principal"].get("AWS") for s in statements if isinstance(s.get("Principal"), dict)}
    account = self._access_key.arn.split(":")[4]
    return f"arn:aws:iam::{account}:root" in roots or _CHECK_TRUST(self, role_arn)


def trust_the_account_root() -> None:
    """From now on in this process, an account-root trust lets the account's identities in."""
    IAMRequestBase._check_role_trust_relationship = _trusted


@contextlib.contextmanager
def iam_enforced() -> Iterator[None]:
    """While open, moto refuses each request its signer's IAM policies do not allow."""
    before = moto_settings.INITIAL_NO_AUTH_ACTION_COUNT
    moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    ActionAuthenticatorMixin.request_count = 0
    try:
        yield
    finally:
        moto_settings.INITIAL_NO_AUTH_ACTION_COUNT = before
