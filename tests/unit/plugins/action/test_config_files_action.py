# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm.hobby.config_files (controller side): which sources an entry may name, and what the one
module run receives (templates rendered with the task's variables, content base64-encoded).

The action runs with a real DataLoader and Templar over a role in tmp_path; only the task, the
connection and _execute_module are mocks.
"""

from __future__ import annotations

import base64
import copy
import os
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from ansible import constants as C
from ansible.errors import AnsibleActionFail
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

from ansible_collections.prpm.hobby.plugins.action import config_files as action
from ansible_collections.prpm.hobby.plugins.action.config_files import content_source

MODULE_RESULT = {"changed": True, "changed_files": ["/etc/x"], "files": []}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.fixture
def role(tmp_path: Path) -> Path:
    """A role with templates/ and files/."""
    root = tmp_path / "roles" / "demo"
    (root / "templates").mkdir(parents=True)
    (root / "files").mkdir()
    (root / "tasks").mkdir()
    return root


def make_action(role: Path, args: dict) -> action.ActionModule:
    task = MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = False
    task.action = "prpm.hobby.config_files"
    task.get_search_path.return_value = [str(role), str(role / "tasks")]
    connection = MagicMock()
    connection._shell.tmpdir = None
    loader = DataLoader()
    loader.set_basedir(str(role / "tasks"))
    plugin = action.ActionModule(
        task=task,
        connection=connection,
        play_context=MagicMock(),
        loader=loader,
        templar=Templar(loader=loader),
        shared_loader_obj=None,
    )
    plugin._execute_module = MagicMock(return_value=dict(MODULE_RESULT))
    return plugin


def sent_files(plugin: action.ActionModule) -> list[dict]:
    """The `files` of the one module run."""
    plugin._execute_module.assert_called_once()
    kwargs = plugin._execute_module.call_args.kwargs
    assert kwargs["module_name"] == "prpm.hobby.config_files"
    assert set(kwargs["module_args"]) == {"files"}
    return kwargs["module_args"]["files"]


# --- content_source ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "source"),
    [
        ({"dest": "/a", "template": "a.j2"}, "template"),
        ({"dest": "/a", "state": "file", "src": "a"}, "src"),
        ({"dest": "/a", "content": ""}, "content"),
        ({"dest": "/a", "content": "x", "template": None}, "content"),
        ({"dest": "/a", "state": "link", "src": "/b"}, None),
        ({"dest": "/a", "state": "directory"}, None),
        ({"dest": "/a", "state": "absent"}, None),
    ],
)
def test_the_source_of_an_entry(entry: dict, source: str | None) -> None:
    assert content_source(entry, 0) == source


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"dest": "/a"},
            "files[3] (/a): state=file needs exactly one of template, src or content (got none)",
        ),
        (
            {"dest": "/a", "src": "a", "content": "b"},
            "files[3] (/a): state=file needs exactly one of template, src or content "
            "(got src, content)",
        ),
        (
            {"dest": "/a", "template": "a.j2", "src": "a", "content": "b"},
            "(got template, src, content)",
        ),
        (
            {"dest": "/a", "state": "link"},
            "files[3] (/a): state=link needs src (the link target) and nothing else",
        ),
        (
            {"dest": "/a", "state": "link", "src": "/b", "template": "b.j2"},
            "files[3] (/a): state=link needs src (the link target) and nothing else",
        ),
        (
            {"dest": "/a", "state": "link", "content": "/b"},
            "state=link needs src (the link target) and nothing else",
        ),
        (
            {"dest": "/a", "state": "directory", "content": "x"},
            "files[3] (/a): state=directory takes no content",
        ),
        (
            {"dest": "/a", "state": "absent", "template": "a.j2", "src": "a"},
            "files[3] (/a): state=absent takes no template/src",
        ),
    ],
)
def test_a_wrong_set_of_sources_is_named(entry: dict, message: str) -> None:
    with pytest.raises(AnsibleActionFail) as exc:
        content_source(entry, 3)
    assert message in str(exc.value)


# --- run --------------------------------------------------------------------------------------


def test_content_becomes_base64_and_the_sources_are_dropped(role: Path) -> None:
    args = {
        "files": [
            {"dest": "/etc/app.conf", "content": "clé = ü\n", "mode": "0640", "secret": True},
            {"dest": "/etc/empty", "content": ""},
            {"dest": "/opt/app", "state": "directory", "mode": "0750"},
            {"dest": "/usr/local/bin/app", "state": "link", "src": "/opt/app/bin/app"},
            {"dest": "/etc/old", "state": "absent"},
        ]
    }
    original = copy.deepcopy(args)
    plugin = make_action(role, args)
    task_vars = {"inventory_hostname": "h1"}

    result = plugin.run(task_vars=task_vars)

    assert result["changed"] is True
    assert result["changed_files"] == ["/etc/x"]
    assert plugin._execute_module.call_args.kwargs["task_vars"] is task_vars
    assert sent_files(plugin) == [
        {
            "dest": "/etc/app.conf",
            "content_b64": b64("clé = ü\n".encode()),
            "mode": "0640",
            "secret": True,
        },
        {"dest": "/etc/empty", "content_b64": ""},
        {"dest": "/opt/app", "state": "directory", "mode": "0750"},
        {"dest": "/usr/local/bin/app", "state": "link", "src": "/opt/app/bin/app"},
        {"dest": "/etc/old", "state": "absent"},
    ]
    assert args == original  # the task's own args are not modified


def test_a_template_is_rendered_with_the_task_vars(role: Path) -> None:
    (role / "templates" / "app.conf.j2").write_text(
        "{% from 'macros.j2' import listen %}\n"
        "# {{ ansible_managed }}\n"
        "{% for port in ports %}\n"
        "{{ listen(port) }}\n"
        "{% endfor %}\n"
        "dest={{ template_destpath }} name={{ template_path }}\n"
        "host={{ inventory_hostname }}\n"
    )
    # Found through the search path the plugin gives the templar (the role's templates/).
    (role / "templates" / "macros.j2").write_text(
        "{% macro listen(port) %}listen {{ port }}{% endmacro %}"
    )
    plugin = make_action(
        role,
        {"files": [{"dest": "/etc/app.conf", "template": "app.conf.j2", "validate": "true %s"}]},
    )

    plugin.run(task_vars={"ports": [80, 443], "inventory_hostname": "h1"})

    managed = C.config.get_config_value("DEFAULT_MANAGED_STR")
    expected = f"# {managed}\nlisten 80\nlisten 443\ndest=/etc/app.conf name=app.conf.j2\nhost=h1\n"
    assert sent_files(plugin) == [
        {"dest": "/etc/app.conf", "content_b64": b64(expected.encode()), "validate": "true %s"}
    ]


def test_a_given_ansible_managed_wins(role: Path) -> None:
    (role / "templates" / "m.j2").write_text("{{ ansible_managed }}")
    plugin = make_action(role, {"files": [{"dest": "/m", "template": "m.j2"}]})
    plugin.run(task_vars={"ansible_managed": "by prpm"})
    assert sent_files(plugin)[0]["content_b64"] == b64(b"by prpm")


def test_a_configured_ansible_managed_is_formatted_as_the_template_module_does(
    role: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = C.config.get_config_value
    monkeypatch.setattr(
        C.config,
        "get_config_value",
        lambda key, *args, **kwargs: (
            "Managed: {file} on {host} %%Y"
            if key == "DEFAULT_MANAGED_STR"
            else real(key, *args, **kwargs)
        ),
    )
    (role / "templates" / "m.j2").write_text("{{ ansible_managed }}")
    plugin = make_action(role, {"files": [{"dest": "/m", "template": "m.j2"}]})
    plugin.run(task_vars={})
    sent = base64.b64decode(sent_files(plugin)[0]["content_b64"]).decode()
    assert sent == f"Managed: m.j2 on {os.uname()[1]} %Y"


def test_a_src_file_of_the_role_is_sent_byte_for_byte(role: Path) -> None:
    data = b"\x00\xff binary {{ not_a_template }}\n"
    (role / "files" / "blob.bin").write_bytes(data)
    plugin = make_action(role, {"files": [{"dest": "/opt/blob.bin", "src": "blob.bin"}]})

    plugin.run(task_vars={})

    assert sent_files(plugin) == [{"dest": "/opt/blob.bin", "content_b64": b64(data)}]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"dest": "/a", "template": "missing.j2"}, "missing.j2"),
        ({"dest": "/a", "src": "missing.bin"}, "missing.bin"),
        ({"dest": "/a", "template": "undefined.j2"}, "/a: rendering undefined.j2 failed"),
    ],
)
def test_a_missing_or_broken_source_fails_before_the_host_is_touched(
    role: Path, entry: dict, message: str
) -> None:
    (role / "templates" / "undefined.j2").write_text("{{ no_such_variable }}\n")
    (role / "templates" / "ok.j2").write_text("ok\n")
    plugin = make_action(role, {"files": [{"dest": "/ok", "template": "ok.j2"}, entry]})

    with pytest.raises(AnsibleActionFail) as exc:
        plugin.run(task_vars={})

    assert message in str(exc.value)
    plugin._execute_module.assert_not_called()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            {"files": [{"dest": "/a", "content": "x"}], "mode": "0644"},
            "unsupported parameters: mode",
        ),
        (
            {"files": [], "force": False, "backup": True},
            "unsupported parameters: backup, force",
        ),
        ({}, "files must be a list of dicts"),
        ({"files": {"dest": "/a"}}, "files must be a list of dicts"),
        ({"files": ["/a"]}, "files must be a list of dicts"),
        ({"files": [{"dest": "/a", "content": "x"}, {"content": "y"}]}, "files[1] has no dest"),
        (
            {"files": [{"dest": "/a", "content": "x"}, {"dest": "/b"}]},
            "files[1] (/b): state=file needs exactly one of template, src or content (got none)",
        ),
    ],
)
def test_bad_arguments_fail_without_a_module_run(role: Path, args: dict, message: str) -> None:
    plugin = make_action(role, args)
    with pytest.raises(AnsibleActionFail) as exc:
        plugin.run(task_vars={})
    assert message in str(exc.value)
    plugin._execute_module.assert_not_called()
