# SPDX-License-Identifier: GPL-3.0-or-later
"""Make `ansible_collections.prpm.hobby` importable from this checkout.

`make` links .collections/ansible_collections/prpm/hobby to the repository root; ansible-test
runs unit tests from its own ansible_collections tree, where this is a no-op.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = ROOT / ".collections"
if (LINK / "ansible_collections" / "prpm" / "hobby").exists() and str(LINK) not in sys.path:
    sys.path.insert(0, str(LINK))
