# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Controller side of prpm.hobby.config_files: render every entry's content here, then ensure
them all with one run of the module on the host (see the module's documentation)."""

from __future__ import annotations

import base64
import datetime
import os
import pwd
import time
from pathlib import Path

from ansible import constants as C
from ansible.errors import AnsibleActionFail, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_text
from ansible.plugins.action import ActionBase
from ansible.template import trust_as_template
from jinja2.defaults import (
    BLOCK_END_STRING,
    BLOCK_START_STRING,
    COMMENT_END_STRING,
    COMMENT_START_STRING,
    VARIABLE_END_STRING,
    VARIABLE_START_STRING,
)

_SOURCES = ("template", "src", "content")
# What ansible.builtin.template renders with by default, so that a file it wrote is unchanged.
_TEMPLATE_OVERRIDES = {
    "block_start_string": BLOCK_START_STRING,
    "block_end_string": BLOCK_END_STRING,
    "variable_start_string": VARIABLE_START_STRING,
    "variable_end_string": VARIABLE_END_STRING,
    "comment_start_string": COMMENT_START_STRING,
    "comment_end_string": COMMENT_END_STRING,
    "trim_blocks": True,
    "lstrip_blocks": False,
    "newline_sequence": "\n",
}


def content_source(entry, index):
    """Which of template/src/content an entry of state=file names (exactly one), or None."""
    state = entry.get("state") or "file"
    given = [key for key in _SOURCES if entry.get(key) is not None]
    if state == "link":
        if given != ["src"]:
            raise AnsibleActionFail(
                f"files[{index}] ({entry.get('dest')}): state=link needs src (the link "
                "target) and nothing else"
            )
        return None
    if state in ("directory", "absent"):
        if given:
            raise AnsibleActionFail(
                f"files[{index}] ({entry.get('dest')}): state={state} takes no {'/'.join(given)}"
            )
        return None
    if state != "file":
        return None  # the module rejects it with its list of choices
    if len(given) != 1:
        raise AnsibleActionFail(
            f"files[{index}] ({entry.get('dest')}): state=file needs exactly one of "
            f"template, src or content (got {', '.join(given) or 'none'})"
        )
    return given[0]


def template_vars(name, path, dest, include_ansible_managed):
    """The variables ansible.builtin.template gives a template (template_*, ansible_managed
    unless the inventory sets it), so that both render a file the same."""
    template_stat = Path(path).stat()
    try:
        template_uid = pwd.getpwuid(template_stat.st_uid).pw_name
    except KeyError:
        template_uid = template_stat.st_uid
    result = {
        "template_host": os.uname()[1],
        "template_path": name,
        "template_mtime": datetime.datetime.fromtimestamp(template_stat.st_mtime),
        "template_uid": template_uid,
        "template_run_date": datetime.datetime.now(),
        "template_destpath": dest,
        "template_fullpath": path,
    }
    if include_ansible_managed:
        # As core does: constant placeholders (no template injection), then strftime.
        managed = C.config.get_config_value("DEFAULT_MANAGED_STR").format(
            host="{{ template_host }}", uid="{{ template_uid }}", file="{{ template_path }}"
        )
        result["ansible_managed"] = trust_as_template(
            time.strftime(managed, time.localtime(template_stat.st_mtime))
        )
    return result


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = True

    def run(self, tmp=None, task_vars=None):
        task_vars = task_vars or {}
        result = super().run(tmp, task_vars)
        del tmp

        files = self._task.args.get("files")
        if not isinstance(files, list) or not all(isinstance(entry, dict) for entry in files):
            raise AnsibleActionFail(
                "files must be a list of dicts (dest, and template, src, content or state)"
            )
        unknown = set(self._task.args) - {"files"}
        if unknown:
            raise AnsibleActionFail(f"unsupported parameters: {', '.join(sorted(unknown))}")

        # Everything is rendered before the host is touched: a template error changes nothing.
        module_files = []
        for index, given in enumerate(files):
            entry = dict(given)
            if not entry.get("dest"):
                raise AnsibleActionFail(f"files[{index}] has no dest")
            source = content_source(entry, index)
            if source == "template":
                data = self._render(entry.pop("template"), entry["dest"], task_vars)
            elif source == "src":
                data = self._read_file(entry.pop("src"))
            elif source == "content":
                data = to_bytes(entry.pop("content"), errors="surrogate_or_strict")
            else:
                data = None
            if data is not None:
                entry["content_b64"] = to_text(base64.b64encode(data))
            module_files.append(entry)

        result.update(
            self._execute_module(
                module_name="prpm.hobby.config_files",
                module_args={"files": module_files},
                task_vars=task_vars,
            )
        )
        return result

    def _read_file(self, name):
        try:
            path = self._find_needle("files", name)
        except AnsibleError as err:
            raise AnsibleActionFail(to_text(err)) from err
        return Path(path).read_bytes()

    def _render(self, name, dest, task_vars):
        try:
            path = self._find_needle("templates", name)
        except AnsibleError as err:
            raise AnsibleActionFail(to_text(err)) from err
        template_data = trust_as_template(self._loader.get_text_file_contents(path))
        bases = [
            *task_vars.get("ansible_search_path", []),
            self._loader._basedir,
            Path(path).parent,
        ]
        searchpath = [
            str(candidate) for base in bases for candidate in (Path(base) / "templates", base)
        ]
        variables = dict(task_vars)
        variables.update(template_vars(name, path, dest, "ansible_managed" not in task_vars))
        templar = self._templar.copy_with_new_env(
            searchpath=searchpath, available_variables=variables
        )
        try:
            rendered = templar.template(
                template_data, escape_backslashes=False, overrides=_TEMPLATE_OVERRIDES
            )
        except AnsibleError as err:
            raise AnsibleActionFail(f"{dest}: rendering {name} failed: {to_text(err)}") from err
        return to_bytes("" if rendered is None else rendered, errors="surrogate_or_strict")
