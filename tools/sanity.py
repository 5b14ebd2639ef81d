# SPDX-License-Identifier: GPL-3.0-or-later
"""Run `ansible-test sanity` on this collection, offline.

ansible-test needs the collection at .../ansible_collections/prpm/hobby, so the files git
knows (tracked and untracked-but-not-ignored) are copied into a temporary tree. With
--requirements it bootstraps pip in each test venv from a get-pip script it downloads from a
host that may be unreachable; when that cached script is missing, a small stand-in is written
that bootstraps pip with the standard library's ensurepip instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# ansible-core 2.19's ansible-test bootstraps pip 24.2 (python_requirements.get_venv_packages).
PIP_VERSIONS = ("24.2",)
# Namespaces whose collections our plugins import; ansible-test finds them only beside ours.
DEPENDENCY_NAMESPACES = ("amazon",)
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"

GET_PIP_STANDIN = '''\
"""Stand-in for get-pip.py written by prpm.hobby tools/sanity.py (offline machines)."""
import ensurepip
import os
import subprocess
import sys

ensurepip.bootstrap(upgrade=True)
# ensurepip leaves these behind; with them pip ignores the machine's pip.conf (its CA).
for name in ("PIP_CONFIG_FILE", "ENSUREPIP_OPTIONS"):
    os.environ.pop(name, None)
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "pip", "install", *args])
'''


def ensure_get_pip_cache() -> None:
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for version in PIP_VERSIONS:
        path = cache / f"get_pip_{version.replace('.', '_')}.py"
        if not path.exists():
            path.write_text(GET_PIP_STANDIN, encoding="utf-8")


def collection_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


def main() -> int:
    ensure_get_pip_cache()
    with tempfile.TemporaryDirectory(prefix="prpm-sanity-") as tmp:
        dest = Path(tmp) / "ansible_collections" / "prpm" / "hobby"
        for rel in collection_files():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target)
        import ansible_collections  # noqa: PLC0415 - the bundle's collections, inside the venv

        bundle = Path(next(iter(ansible_collections.__path__)))
        for namespace in DEPENDENCY_NAMESPACES:
            (Path(tmp) / "ansible_collections" / namespace).symlink_to(bundle / namespace)
        env = dict(os.environ)
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        cmd = [
            "ansible-test",
            "sanity",
            "--python",
            PYTHON,
            "--requirements",
            "--color",
            "no",
            *sys.argv[1:],
        ]
        print("+ " + " ".join(cmd), flush=True)
        return subprocess.run(cmd, cwd=dest, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
