# SPDX-License-Identifier: GPL-3.0-or-later
"""files/Caddyfile is the role's Caddyfile template rendered for an example domain.

It is what users read; this test keeps it equal to what the role deploys. Refresh it with
`.venv/bin/python tests/unit/test_caddyfile_example.py`.
"""

from __future__ import annotations

import posixpath
import sys
import urllib.parse
from pathlib import Path

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "roles" / "registry_stack" / "templates" / "Caddyfile.j2"
EXAMPLE = ROOT / "files" / "Caddyfile"
# The stack's names come from the role's one place for them.
SERVICE = yaml.safe_load(
    (ROOT / "roles" / "registry_stack" / "vars" / "main.yml").read_text(encoding="utf-8")
)["__registry_stack_service"]
EXAMPLE_VARS = {
    "ansible_managed": "Example rendering of roles/registry_stack/templates/Caddyfile.j2",
    "registry_stack_domain": "registry.example.com",
    "registry_stack_acme_email": "ops@example.com",
    "registry_stack_registry_port": 3111,
    "__registry_stack_local_storage": True,
    "__registry_stack_service": SERVICE,
    "__registry_stack_storage_address": f"{SERVICE['storage']}:9000",
    "__registry_stack_storage_endpoint": f"http://{SERVICE['storage']}:9000",
    "__registry_stack_upstream_file": "/opt/prpm/caddy/registry-upstream.caddy",
    "registry_stack_proxy_hold_seconds": 15,
    "registry_stack_maintenance": False,
    "registry_stack_maintenance_retry_after": 300,
    "registry_stack_health_url": "https://registry.example.com/health",
}


def render(variables: dict) -> str:
    # The same whitespace rules as ansible.builtin.template (trim_blocks on).
    env = jinja2.Environment(  # noqa: S701 - a Caddyfile, not HTML: no autoescape
        keep_trailing_newline=True, trim_blocks=True, undefined=jinja2.StrictUndefined
    )
    env.filters["comment"] = lambda text: f"#\n# {text}\n#"
    # Ansible's bool: "false", "no", "0" are false (extra vars arrive as strings).
    env.filters["bool"] = lambda v: (
        v.strip().lower() in ("1", "true", "yes", "on") if isinstance(v, str) else bool(v)
    )
    env.filters["basename"] = posixpath.basename
    env.filters["urlsplit"] = lambda url, part: getattr(urllib.parse.urlsplit(url), part)
    return env.from_string(TEMPLATE.read_text(encoding="utf-8")).render(**variables)


def test_example_matches_template() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == render(EXAMPLE_VARS)


def test_localhost_uses_internal_ca_and_domain_uses_acme() -> None:
    local = render(
        {**EXAMPLE_VARS, "registry_stack_domain": "localhost", "registry_stack_acme_email": ""}
    )
    assert "tls internal" in local
    assert "email" not in local
    public = render(EXAMPLE_VARS)
    assert "tls internal" not in public
    assert "email ops@example.com" in public
    assert "registry.example.com {" in public


def test_local_storage_downloads_go_through_caddy_read_only() -> None:
    local = render(EXAMPLE_VARS)
    assert "handle_path /_storage/*" in local
    assert "@write not method GET HEAD" in local
    assert "respond @write 405" in local
    assert "header_down Location http://storage:9000/ https://{hostport}/_storage/" in local
    s3 = render({**EXAMPLE_VARS, "__registry_stack_local_storage": False})
    assert "_storage" not in s3


def test_the_registry_upstream_is_the_imported_file_with_requests_held() -> None:
    text = render(EXAMPLE_VARS)
    assert "import registry-upstream.caddy" in text
    assert "lb_try_duration 15s" in text
    assert "health_timeout 5s" in text
    assert "Retry-After" not in text
    # -e registry_stack_maintenance=false arrives as a string.
    assert "Retry-After" not in render({**EXAMPLE_VARS, "registry_stack_maintenance": "false"})


def test_maintenance_answers_503_with_retry_after_except_the_health_check() -> None:
    text = render({**EXAMPLE_VARS, "registry_stack_maintenance": True})
    assert "@maintenance not path /health" in text
    assert 'header Retry-After "300"' in text
    assert "503" in text
    # Before the registry's handle: Caddy orders the named matcher's handle first.
    assert text.index("handle @maintenance") < text.index("reverse_proxy {")


if __name__ == "__main__":
    EXAMPLE.write_text(render(EXAMPLE_VARS), encoding="utf-8")
    sys.exit(0)
