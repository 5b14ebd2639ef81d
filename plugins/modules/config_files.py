#!/usr/bin/python
# Copyright (c) prpm.hobby maintainers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations

DOCUMENTATION = r"""
module: config_files
short_description: Ensure a set of files, directories and links on the host in one step
version_added: 0.3.0
author: prpm.hobby maintainers (@prpm-hobby)
description:
  - Ensures every entry of O(files) (a file with given content, a directory, a symbolic link,
    or nothing) with one module run on the host instead of one task, and one or two
    connection round trips, per file. The roles use it for their configuration files, the
    templates rendered on the controller by the action plugin of the same name.
  - Each file is written atomically (a temporary file beside it gets its owner and mode first,
    is validated, then renamed over the old one), so a secret is never readable by others, not
    even for an instant, and a file that fails O(files[].validate) never replaces the old one.
  - The entries are processed in order; the first one that fails stops the run with a message
    naming it (the ones before it stay done, as with separate tasks).
  - Reports per entry what changed (RV(files), RV(changed_files)) and, with C(--diff), one diff
    per changed file (none for a O(files[].secret) one).
  - Use the action plugin's O(files[].template) (a template of the role, rendered with the
    task's variables), O(files[].src) (a file of the role) or O(files[].content); the module
    itself receives the content base64-encoded.
options:
  files:
    description: What to ensure, in order.
    type: list
    elements: dict
    required: true
    suboptions:
      dest:
        description: Absolute path on the host.
        type: path
        required: true
      state:
        description:
          - V(file) writes the content; V(directory) creates the directory (and missing
            parents); V(link) makes O(files[].dest) a symbolic link to O(files[].src);
            V(absent) removes a file or link (never a directory).
        type: str
        choices: [file, directory, link, absent]
        default: file
      template:
        description:
          - (action plugin) A template of the role's C(templates/), rendered on the controller.
        type: str
      src:
        description:
          - (action plugin) For V(file), a file of the role's C(files/).
          - For V(link), the link target.
        type: str
      content:
        description: (action plugin) The content, as text.
        type: str
      content_b64:
        description:
          - The content, base64-encoded.
          - The action plugin sets it from one of the three above.
        type: str
      mode:
        description:
          - Octal mode (V(0644)).
          - A new file gets V(0644) (V(0600) when O(files[].secret)), a new directory V(0755);
            an existing one keeps its mode.
        type: raw
      owner:
        description: Owner (name or number). Default V(root) for a new entry.
        type: str
      group:
        description: Group (name or number). Default V(root) for a new entry.
        type: str
      force:
        description:
          - V(false) writes a file only when it does not exist yet.
          - Its content then belongs to someone else.
        type: bool
        default: true
      validate:
        description:
          - A command run on the new content before it replaces the file; C(%s) is the
            temporary file's path. A non-zero exit fails the run and leaves the file as it was.
          - Not run in check mode.
        type: str
      secret:
        description: The content is secret; no diff is shown and it is never returned.
        type: bool
        default: false
attributes:
  check_mode:
    description: Reports what would change; changes nothing and runs no validation.
    support: full
  diff_mode:
    description: One diff per changed file, none for secrets.
    support: full
"""

EXAMPLES = r"""
- name: Ensure the stack's configuration is written
  prpm.hobby.config_files:
    files:
      - dest: /opt/prpm
        state: directory
        mode: "0750"
      - dest: /opt/prpm/compose.yaml
        template: compose.yaml.j2
        validate: docker compose -f %s config --quiet
      - dest: /usr/local/sbin/prpm-stack
        state: link
        src: /usr/local/lib/prpm-hobby/prpm_stack.py
  register: config
  notify: Restart the stack

- name: Reload Caddy when its Caddyfile changed
  ansible.builtin.command: docker exec prpm-caddy-1 caddy reload --config /etc/caddy/Caddyfile
  when: "'/opt/prpm/caddy/Caddyfile' in config.changed_files"
  changed_when: true
"""

RETURN = r"""
changed_files:
  description: The O(files[].dest) of every entry that changed (or would, in check mode).
  type: list
  elements: str
  returned: always
  sample: [/opt/prpm/compose.yaml]
files:
  description: One result per entry, in order.
  type: list
  elements: dict
  returned: always
  sample:
    - {dest: /opt/prpm/compose.yaml, state: file, changed: true, changes: [content]}
"""

import base64
import grp
import os
import pwd
import shlex
import stat
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule

_DEFAULT_MODES = {"file": 0o644, "directory": 0o755}
_DIFF_LIMIT = 256 * 1024


class EntryError(Exception):
    """An entry that cannot be ensured, with the reason (the run stops there)."""


def parse_mode(value):
    """An octal mode from '0644', '644', 0o644 or 420; None when not given."""
    if value is None or value == "":
        return None
    if isinstance(value, int):
        mode = value
    else:
        text = str(value).strip()
        if not text or any(ch not in "01234567" for ch in text):
            raise EntryError(f"mode {value!r} is not an octal mode such as '0644'")
        mode = int(text, 8)
    if mode < 0 or mode > 0o7777:
        raise EntryError(f"mode {value!r} is out of range")
    return mode


# In check mode an owner or group that an earlier task of the same run would create is not
# there yet: it counts as a change (-1 never equals a real id) instead of an error.
_NOT_YET = -1


def _resolve(kind, lookup, name, check_mode):
    """A user or group id from a name or number; None when not given."""
    if name is None:
        return None
    text = str(name)
    if text.isdigit():
        return int(text)
    try:
        return lookup(text)
    except KeyError:
        if check_mode:
            return _NOT_YET
        raise EntryError(f"{kind} {text!r} does not exist on the host") from None


def resolve_user(name, check_mode=False):
    return _resolve("user", lambda text: pwd.getpwnam(text).pw_uid, name, check_mode)


def resolve_group(name, check_mode=False):
    return _resolve("group", lambda text: grp.getgrnam(text).gr_gid, name, check_mode)


def attribute_changes(current, mode, uid, gid):
    """What differs between an existing entry's stat and the wanted mode/owner/group."""
    changes = []
    if mode is not None and stat.S_IMODE(current.st_mode) != mode:
        changes.append("mode")
    if uid is not None and current.st_uid != uid:
        changes.append("owner")
    if gid is not None and current.st_gid != gid:
        changes.append("group")
    return changes


def _text_for_diff(data):
    if data is None:
        return ""
    if len(data) > _DIFF_LIMIT or b"\0" in data:
        return "(binary or large content, not shown)\n"
    return data.decode("utf-8", errors="replace")


class FileSet:
    """Ensures the entries; `run` returns (results, diffs)."""

    def __init__(self, module):
        self.module = module
        self.check_mode = module.check_mode

    def run(self, entries):
        results, diffs = [], []
        for entry in entries:
            dest = entry["dest"]
            try:
                if not Path(dest).is_absolute():
                    raise EntryError("the path is not absolute")
                handler = getattr(self, "_ensure_" + entry["state"])
                changes, diff = handler(entry)
            except (EntryError, OSError) as err:
                self.module.fail_json(
                    msg=f"{dest}: {err}",
                    files=results,
                    changed_files=[r["dest"] for r in results if r["changed"]],
                    changed=any(r["changed"] for r in results),
                )
            results.append(
                {
                    "dest": dest,
                    "state": entry["state"],
                    "changed": bool(changes),
                    "changes": changes,
                }
            )
            if diff is not None:
                diffs.append(diff)
        return results, diffs

    # --- one method per state ---------------------------------------------------------------

    def _ensure_directory(self, entry):
        dest = entry["dest"]
        mode = parse_mode(entry.get("mode"))
        uid = resolve_user(entry.get("owner"), self.check_mode)
        gid = resolve_group(entry.get("group"), self.check_mode)
        try:
            current = Path(dest).stat()  # a link to a directory is that directory
        except FileNotFoundError:
            current = None
        if current is not None and not stat.S_ISDIR(current.st_mode):
            raise EntryError("exists and is not a directory")
        if current is None:
            if not self.check_mode:
                Path(dest).mkdir(parents=True, exist_ok=True)
                self._apply(
                    dest,
                    _DEFAULT_MODES["directory"] if mode is None else mode,
                    0 if uid is None else uid,
                    0 if gid is None else gid,
                )
            diff = {
                "before_header": dest,
                "after_header": dest,
                "before": "(absent)\n",
                "after": "(directory)\n",
            }
            return ["created"], diff
        changes = attribute_changes(current, mode, uid, gid)
        if changes and not self.check_mode:
            self._apply(dest, mode, uid, gid)
        return changes, self._attribute_diff(dest, current, mode, uid, gid) if changes else None

    def _ensure_link(self, entry):
        dest, target = entry["dest"], entry.get("src")
        if not target:
            raise EntryError("state=link needs src (the link target)")
        try:
            current = os.lstat(dest)
        except FileNotFoundError:
            current = None
        if current is not None and stat.S_ISDIR(current.st_mode):
            raise EntryError("exists and is a directory, not a link")
        # The target as written, not normalised (Path.readlink would drop a "./" or "//").
        is_link = current is not None and stat.S_ISLNK(current.st_mode)
        if is_link and os.readlink(dest) == target:  # noqa: PTH115
            return [], None
        before = (
            "(absent)\n"
            if current is None
            else (
                f"-> {Path(dest).readlink()!s}\n"
                if stat.S_ISLNK(current.st_mode)
                else "(a regular file)\n"
            )
        )
        if not self.check_mode:
            tmp = Path(dest).with_name(f".{Path(dest).name}.prpm-link")
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target)
            tmp.replace(dest)
        diff = {
            "before_header": dest,
            "after_header": dest,
            "before": before,
            "after": f"-> {target}\n",
        }
        return ["link"], diff

    def _ensure_absent(self, entry):
        dest = entry["dest"]
        try:
            current = os.lstat(dest)
        except FileNotFoundError:
            return [], None
        if stat.S_ISDIR(current.st_mode):
            raise EntryError("is a directory; state=absent removes files and links only")
        if not self.check_mode:
            Path(dest).unlink()
        return ["removed"], {
            "before_header": dest,
            "after_header": dest,
            "before": "(present)\n",
            "after": "(absent)\n",
        }

    def _ensure_file(self, entry):
        dest = entry["dest"]
        if entry.get("content_b64") is None:
            raise EntryError(
                "state=file needs content (template, src or content through the action plugin)"
            )
        try:
            wanted = base64.b64decode(entry["content_b64"], validate=True)
        except (ValueError, TypeError) as err:
            raise EntryError(f"content_b64 is not base64: {err}") from None
        validate = entry.get("validate")
        if validate and "%s" not in validate:
            raise EntryError(f"validate must contain %s (the file to check): {validate!r}")
        mode = parse_mode(entry.get("mode"))
        uid = resolve_user(entry.get("owner"), self.check_mode)
        gid = resolve_group(entry.get("group"), self.check_mode)
        current, old = self._current_file(dest)
        if current is not None and not entry["force"]:
            return [], None
        if old is None:
            current = None  # missing, or a link the file replaces: written as a new file
        if not Path(dest).parent.is_dir():
            if self.check_mode:
                return ["created"], self._content_diff(entry, dest, None, wanted)
            raise EntryError(f"its directory {Path(dest).parent} does not exist")
        if old == wanted:
            changes = attribute_changes(current, mode, uid, gid)
            if changes and not self.check_mode:
                self._apply(dest, mode, uid, gid)
            return changes, self._attribute_diff(dest, current, mode, uid, gid) if changes else None

        if current is None:
            new_mode = (
                (0o600 if entry.get("secret") else _DEFAULT_MODES["file"]) if mode is None else mode
            )
            new_uid, new_gid = (0 if uid is None else uid), (0 if gid is None else gid)
        else:
            new_mode = stat.S_IMODE(current.st_mode) if mode is None else mode
            new_uid = current.st_uid if uid is None else uid
            new_gid = current.st_gid if gid is None else gid
        changes = (
            ["created"]
            if current is None
            else ["content", *attribute_changes(current, mode, uid, gid)]
        )
        if not self.check_mode:
            self._write(dest, wanted, (new_mode, new_uid, new_gid), entry)
        return changes, self._content_diff(entry, dest, old, wanted)

    # --- helpers ---

    @staticmethod
    def _current_file(dest):
        """The stat and content of an existing regular file, or (None, None); a symbolic link
        counts as missing: the file replaces it, as ansible.builtin.copy does (unless force is
        false: the caller sees the link as an existing file then)."""
        try:
            current = os.lstat(dest)
        except FileNotFoundError:
            return None, None
        if stat.S_ISLNK(current.st_mode):
            return current, None
        if not stat.S_ISREG(current.st_mode):
            raise EntryError("exists and is not a regular file")
        return current, Path(dest).read_bytes()

    def _write(self, dest, data, attrs, entry):
        mode, uid, gid = attrs
        fd, name = tempfile.mkstemp(dir=Path(dest).parent, prefix=f".{Path(dest).name}.")
        tmp = Path(name)
        try:
            # Owner and mode before the content: a secret is never readable by others.
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if entry.get("validate"):
                self._validate(tmp, entry["validate"], secret=entry.get("secret"))
            tmp.replace(dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _validate(self, tmp, validate, secret=False):
        rc, out, err = self.module.run_command(
            validate.replace("%s", shlex.quote(str(tmp))), use_unsafe_shell=False
        )
        if rc != 0:
            # A validator may print the content: not for a secret.
            detail = "(output not shown: the content is secret)" if secret else (err or out).strip()
            raise EntryError(
                f"the new content failed validation ({validate.split()[0]} ... exited {rc}), "
                f"the file was left as it was: {detail}"
            )

    def _apply(self, path, mode, uid, gid):
        if uid is not None or gid is not None:
            os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)
        if mode is not None:
            Path(path).chmod(mode)

    @staticmethod
    def _attribute_diff(dest, current, mode, uid, gid):
        before = {"path": dest}
        after = {"path": dest}
        if mode is not None and stat.S_IMODE(current.st_mode) != mode:
            before["mode"], after["mode"] = f"{stat.S_IMODE(current.st_mode):04o}", f"{mode:04o}"
        if uid is not None and current.st_uid != uid:
            before["owner"], after["owner"] = current.st_uid, uid
        if gid is not None and current.st_gid != gid:
            before["group"], after["group"] = current.st_gid, gid
        return {"before": before, "after": after}

    @staticmethod
    def _content_diff(entry, dest, old, new):
        if entry.get("secret"):
            return {
                "before_header": dest,
                "after_header": dest,
                "before": "(secret content not shown)\n" if old is not None else "(absent)\n",
                "after": "(secret content not shown)\n",
            }
        return {
            "before_header": dest,
            "after_header": dest,
            "before": _text_for_diff(old),
            "after": _text_for_diff(new),
        }


def main():
    entry_spec = {
        "dest": {"type": "path", "required": True},
        "state": {
            "type": "str",
            "default": "file",
            "choices": ["file", "directory", "link", "absent"],
        },
        "template": {"type": "str"},
        "src": {"type": "str"},
        "content": {"type": "str", "no_log": True},
        "content_b64": {"type": "str", "no_log": True},
        "mode": {"type": "raw"},
        "owner": {"type": "str"},
        "group": {"type": "str"},
        "force": {"type": "bool", "default": True},
        "validate": {"type": "str"},
        "secret": {"type": "bool", "default": False},
    }
    module = AnsibleModule(
        argument_spec={
            "files": {"type": "list", "elements": "dict", "required": True, "options": entry_spec}
        },
        supports_check_mode=True,
    )
    results, diffs = FileSet(module).run(module.params["files"])
    changed_files = [r["dest"] for r in results if r["changed"]]
    output = {"changed": bool(changed_files), "changed_files": changed_files, "files": results}
    if module._diff and diffs:
        output["diff"] = diffs
    module.exit_json(**output)


if __name__ == "__main__":
    main()
