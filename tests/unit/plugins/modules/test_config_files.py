# SPDX-License-Identifier: GPL-3.0-or-later
"""prpm.hobby.config_files (host side): what a run leaves on disk and what it reports.

The module runs in-process; every entry names the current uid/gid as owner/group so that the
tests pass as root (CI) and as any other user.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from ansible.module_utils.testing import patch_module_args

from ansible_collections.prpm.hobby.plugins.modules import config_files

UID = os.getuid()
GID = os.getgid()
HIDDEN = "hidden-value-7f3a-never-returned"


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def file_entry(dest: Path, text: str, **extra) -> dict:
    return {
        "dest": str(dest),
        "content_b64": b64(text),
        "owner": str(UID),
        "group": str(GID),
        **extra,
    }


def run(capsys, files: list[dict], check: bool = False, diff: bool = True) -> tuple[int, dict]:
    """Runs the module; returns its exit code and its JSON result."""
    args = {"files": files, "_ansible_check_mode": check, "_ansible_diff": diff}
    with patch_module_args(args), pytest.raises(SystemExit) as exc:
        config_files.main()
    return exc.value.code, json.loads(capsys.readouterr().out)


def ok(capsys, files: list[dict], **kwargs) -> dict:
    code, result = run(capsys, files, **kwargs)
    assert code == 0, result
    assert not result.get("failed"), result
    return result


def failed(capsys, files: list[dict], **kwargs) -> dict:
    code, result = run(capsys, files, **kwargs)
    assert code == 1, result
    assert result["failed"] is True
    return result


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def leftovers(directory: Path, name: str) -> list[str]:
    """Temporary files the module may have left beside `name`."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(f".{name}."))


# --- state=file -------------------------------------------------------------------------------


def test_a_new_file_gets_content_mode_and_owner_and_a_rerun_changes_nothing(
    capsys, tmp_path: Path
) -> None:
    dest = tmp_path / "app.conf"
    entry = file_entry(dest, "key = value\nüñí\n", mode="0640")

    first = ok(capsys, [entry])
    assert first["changed"] is True
    assert first["changed_files"] == [str(dest)]
    assert first["files"] == [
        {"dest": str(dest), "state": "file", "changed": True, "changes": ["created"]}
    ]
    assert first["diff"] == [
        {
            "before_header": str(dest),
            "after_header": str(dest),
            "before": "",
            "after": "key = value\nüñí\n",
        }
    ]
    assert dest.read_bytes() == "key = value\nüñí\n".encode()
    assert mode_of(dest) == 0o640
    assert (dest.stat().st_uid, dest.stat().st_gid) == (UID, GID)
    assert leftovers(tmp_path, "app.conf") == []

    inode = dest.stat().st_ino
    second = ok(capsys, [entry])
    assert second["changed"] is False
    assert second["changed_files"] == []
    assert second["files"] == [
        {"dest": str(dest), "state": "file", "changed": False, "changes": []}
    ]
    assert "diff" not in second
    assert dest.stat().st_ino == inode  # not rewritten


def test_a_new_file_without_mode_gets_0644(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "plain"
    ok(capsys, [file_entry(dest, "x\n")])
    assert mode_of(dest) == 0o644


def test_an_empty_content_makes_an_empty_file(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "empty"
    result = ok(capsys, [file_entry(dest, "")])
    assert result["files"][0]["changes"] == ["created"]
    assert dest.read_bytes() == b""


def test_a_content_change_is_reported_with_a_text_diff(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "app.conf"
    dest.write_text("old line\n")
    dest.chmod(0o600)

    result = ok(capsys, [file_entry(dest, "new line\n")])
    assert result["changed"] is True
    assert result["changed_files"] == [str(dest)]
    assert result["files"][0]["changes"] == ["content"]
    assert result["diff"] == [
        {
            "before_header": str(dest),
            "after_header": str(dest),
            "before": "old line\n",
            "after": "new line\n",
        }
    ]
    assert dest.read_text() == "new line\n"
    assert mode_of(dest) == 0o600  # no mode given: the existing one is kept
    assert leftovers(tmp_path, "app.conf") == []


def test_content_and_mode_change_together(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "app.conf"
    dest.write_text("old\n")
    dest.chmod(0o600)

    result = ok(capsys, [file_entry(dest, "new\n", mode="0644")])
    assert result["files"][0]["changes"] == ["content", "mode"]
    assert dest.read_text() == "new\n"
    assert mode_of(dest) == 0o644


def test_a_mode_only_change_leaves_the_content_alone(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "app.conf"
    dest.write_text("same\n")
    dest.chmod(0o644)
    inode = dest.stat().st_ino

    result = ok(capsys, [file_entry(dest, "same\n", mode="0600")])
    assert result["changed"] is True
    assert result["changed_files"] == [str(dest)]
    assert result["files"][0]["changes"] == ["mode"]
    assert result["diff"] == [
        {
            "before": {"path": str(dest), "mode": "0644"},
            "after": {"path": str(dest), "mode": "0600"},
        }
    ]
    assert mode_of(dest) == 0o600
    assert dest.read_text() == "same\n"
    assert dest.stat().st_ino == inode  # chmod in place, no rewrite


@pytest.mark.parametrize("mode", ["0640", "640", 0o640])
def test_the_mode_forms_are_octal(capsys, tmp_path: Path, mode: object) -> None:
    dest = tmp_path / "f"
    ok(capsys, [file_entry(dest, "x", mode=mode)])
    assert mode_of(dest) == 0o640


# --- secrets ----------------------------------------------------------------------------------


def test_a_secret_is_never_diffed_nor_returned(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "db.env"
    dest.write_text(f"PASSWORD=old-{HIDDEN}\n")

    result = ok(capsys, [file_entry(dest, f"PASSWORD={HIDDEN}\n", secret=True)])
    assert result["files"][0]["changes"] == ["content"]
    assert result["diff"] == [
        {
            "before_header": str(dest),
            "after_header": str(dest),
            "before": "(secret content not shown)\n",
            "after": "(secret content not shown)\n",
        }
    ]
    text = json.dumps(result)
    assert HIDDEN not in text
    assert b64(f"PASSWORD={HIDDEN}\n") not in text
    assert dest.read_text() == f"PASSWORD={HIDDEN}\n"


def test_a_new_secret_says_absent_before(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "token"
    result = ok(capsys, [file_entry(dest, HIDDEN, secret=True, mode="0600")])
    assert result["diff"][0]["before"] == "(absent)\n"
    assert result["diff"][0]["after"] == "(secret content not shown)\n"
    assert HIDDEN not in json.dumps(result)


def test_a_new_secret_is_never_readable_by_others(
    capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Owner and mode are set on the empty temporary file; it is 0600 when renamed."""
    dest = tmp_path / "token"
    seen: dict[str, object] = {}
    real_fchmod, real_fchown, real_replace = os.fchmod, os.fchown, Path.replace

    def fchown(fd: int, uid: int, gid: int) -> None:
        seen["size at fchown"] = os.fstat(fd).st_size
        real_fchown(fd, uid, gid)

    def fchmod(fd: int, mode: int) -> None:
        seen["size at fchmod"] = os.fstat(fd).st_size
        seen["mode at creation"] = stat.S_IMODE(os.fstat(fd).st_mode)
        real_fchmod(fd, mode)

    def replace(self: Path, target):
        if Path(target) == dest:
            seen["temp"] = self
            seen["mode at rename"] = mode_of(self)
            seen["content at rename"] = self.read_text()
        return real_replace(self, target)

    monkeypatch.setattr(os, "fchown", fchown)
    monkeypatch.setattr(os, "fchmod", fchmod)
    monkeypatch.setattr(Path, "replace", replace)

    ok(capsys, [file_entry(dest, HIDDEN, secret=True, mode="0600")])

    assert seen["size at fchown"] == 0
    assert seen["size at fchmod"] == 0
    assert seen["mode at creation"] & 0o077 == 0
    assert seen["mode at rename"] == 0o600
    assert seen["content at rename"] == HIDDEN
    temp = seen["temp"]
    assert isinstance(temp, Path)
    assert temp.parent == tmp_path  # beside the file: the rename is atomic
    assert temp.name.startswith(".token.")
    assert mode_of(dest) == 0o600
    assert dest.read_text() == HIDDEN
    assert leftovers(tmp_path, "token") == []


# --- validate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("validate", ["false %s", "grep -q nomatch %s"])
def test_a_failing_validation_keeps_the_old_file(capsys, tmp_path: Path, validate: str) -> None:
    dest = tmp_path / "Caddyfile"
    dest.write_text("old\n")
    dest.chmod(0o644)
    inode = dest.stat().st_ino

    result = failed(capsys, [file_entry(dest, "new\n", validate=validate, mode="0600")])
    assert result["msg"].startswith(f"{dest}: the new content failed validation")
    assert f"({validate.split(maxsplit=1)[0]} ... exited 1)" in result["msg"]
    assert result["files"] == []
    assert result["changed_files"] == []
    assert result["changed"] is False
    assert dest.read_text() == "old\n"
    assert mode_of(dest) == 0o644
    assert dest.stat().st_ino == inode
    assert leftovers(tmp_path, "Caddyfile") == []


def test_a_failing_validation_of_a_new_file_creates_nothing(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "new.conf"
    failed(capsys, [file_entry(dest, "x\n", validate="false %s")])
    assert sorted(tmp_path.iterdir()) == []


def test_a_passing_validation_sees_the_new_content_and_writes(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "app.conf"
    dest.write_text("old\n")

    result = ok(capsys, [file_entry(dest, "listen 80\n", validate="grep -q 'listen 80' %s")])
    assert result["files"][0]["changes"] == ["content"]
    assert dest.read_text() == "listen 80\n"
    assert leftovers(tmp_path, "app.conf") == []


def test_validate_without_the_placeholder_fails_and_writes_nothing(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "app.conf"
    dest.write_text("old\n")

    result = failed(capsys, [file_entry(dest, "new\n", validate="true")])
    assert result["msg"] == f"{dest}: validate must contain %s (the file to check): 'true'"
    assert dest.read_text() == "old\n"
    assert leftovers(tmp_path, "app.conf") == []


def test_a_failing_validation_of_a_secret_does_not_return_it(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "db.env"
    # diff prints every line of the temporary file and exits 1.
    result = failed(
        capsys, [file_entry(dest, f"{HIDDEN}\n", validate="diff %s /dev/null", secret=True)]
    )
    assert HIDDEN not in json.dumps(result)


# --- force ------------------------------------------------------------------------------------


def test_force_false_keeps_an_existing_file_and_creates_a_missing_one(
    capsys, tmp_path: Path
) -> None:
    kept, created = tmp_path / "kept", tmp_path / "created"
    kept.write_text("theirs\n")
    inode = kept.stat().st_ino

    result = ok(
        capsys,
        [
            file_entry(kept, "ours\n", force=False),
            file_entry(created, "ours\n", force=False, mode="0600"),
        ],
    )
    assert result["changed_files"] == [str(created)]
    assert [f["changes"] for f in result["files"]] == [[], ["created"]]
    assert kept.read_text() == "theirs\n"
    assert kept.stat().st_ino == inode
    assert created.read_text() == "ours\n"
    assert mode_of(created) == 0o600


# --- state=directory --------------------------------------------------------------------------


def test_a_directory_is_created_with_its_parents_and_mode(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "c"
    entry = {"dest": str(dest), "state": "directory", "mode": "0750", "owner": str(UID)}
    entry["group"] = str(GID)

    result = ok(capsys, [entry])
    assert result["changed_files"] == [str(dest)]
    assert result["files"] == [
        {"dest": str(dest), "state": "directory", "changed": True, "changes": ["created"]}
    ]
    assert result["diff"][0]["before"] == "(absent)\n"
    assert result["diff"][0]["after"] == "(directory)\n"
    assert dest.is_dir()
    assert (tmp_path / "a" / "b").is_dir()
    assert mode_of(dest) == 0o750
    assert (dest.stat().st_uid, dest.stat().st_gid) == (UID, GID)

    again = ok(capsys, [entry])
    assert again["changed"] is False
    assert again["files"][0]["changes"] == []
    assert "diff" not in again


def test_an_existing_directory_gets_its_mode(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir(mode=0o755)
    dest.chmod(0o755)
    (dest / "inside").write_text("kept\n")

    result = ok(capsys, [{"dest": str(dest), "state": "directory", "mode": "0700"}])
    assert result["files"][0]["changes"] == ["mode"]
    assert mode_of(dest) == 0o700
    assert (dest / "inside").read_text() == "kept\n"


def test_a_directory_where_a_file_is_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.write_text("a file\n")

    result = failed(capsys, [{"dest": str(dest), "state": "directory"}])
    assert result["msg"] == f"{dest}: exists and is not a directory"
    assert dest.read_text() == "a file\n"


# --- state=link -------------------------------------------------------------------------------


def test_a_link_is_created_kept_and_retargeted(capsys, tmp_path: Path) -> None:
    old_target, new_target = tmp_path / "v1", tmp_path / "v2"
    old_target.write_text("1\n")
    new_target.write_text("2\n")
    dest = tmp_path / "current"
    entry = {"dest": str(dest), "state": "link", "src": str(old_target)}

    first = ok(capsys, [entry])
    assert first["files"] == [
        {"dest": str(dest), "state": "link", "changed": True, "changes": ["link"]}
    ]
    assert first["diff"][0]["before"] == "(absent)\n"
    assert first["diff"][0]["after"] == f"-> {old_target}\n"
    assert dest.is_symlink()
    assert str(dest.readlink()) == str(old_target)

    second = ok(capsys, [entry])
    assert second["changed"] is False
    assert second["files"][0]["changes"] == []
    assert "diff" not in second

    third = ok(capsys, [{**entry, "src": str(new_target)}])
    assert third["changed_files"] == [str(dest)]
    assert third["files"][0]["changes"] == ["link"]
    assert third["diff"][0]["before"] == f"-> {old_target}\n"
    assert third["diff"][0]["after"] == f"-> {new_target}\n"
    assert str(dest.readlink()) == str(new_target)
    assert dest.read_text() == "2\n"
    assert old_target.read_text() == "1\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_link_replaces_a_regular_file(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "tool"
    dest.write_text("old copy\n")

    result = ok(capsys, [{"dest": str(dest), "state": "link", "src": "/usr/bin/env"}])
    assert result["diff"][0]["before"] == "(a regular file)\n"
    assert str(dest.readlink()) == "/usr/bin/env"


def test_a_link_where_a_directory_is_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()

    result = failed(capsys, [{"dest": str(dest), "state": "link", "src": "/usr/bin/env"}])
    assert result["msg"] == f"{dest}: exists and is a directory, not a link"
    assert dest.is_dir()
    assert not dest.is_symlink()


def test_a_link_without_src_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "l"
    result = failed(capsys, [{"dest": str(dest), "state": "link"}])
    assert result["msg"] == f"{dest}: state=link needs src (the link target)"


# --- state=absent -----------------------------------------------------------------------------


def test_absent_removes_a_file_and_a_missing_one_is_unchanged(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "old.conf"
    dest.write_text("x\n")
    entry = {"dest": str(dest), "state": "absent"}

    first = ok(capsys, [entry])
    assert first["changed_files"] == [str(dest)]
    assert first["files"] == [
        {"dest": str(dest), "state": "absent", "changed": True, "changes": ["removed"]}
    ]
    assert first["diff"][0]["before"] == "(present)\n"
    assert first["diff"][0]["after"] == "(absent)\n"
    assert not dest.exists()

    second = ok(capsys, [entry])
    assert second["changed"] is False
    assert second["files"][0]["changes"] == []
    assert "diff" not in second


def test_absent_removes_a_link_not_its_target(capsys, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("kept\n")
    dest = tmp_path / "link"
    dest.symlink_to(target)

    ok(capsys, [{"dest": str(dest), "state": "absent"}])
    assert not dest.is_symlink()
    assert target.read_text() == "kept\n"


def test_absent_on_a_directory_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "f").write_text("kept\n")

    result = failed(capsys, [{"dest": str(dest), "state": "absent"}])
    assert result["msg"] == f"{dest}: is a directory; state=absent removes files and links only"
    assert (dest / "f").read_text() == "kept\n"


# --- check mode and diff mode -----------------------------------------------------------------


def test_check_mode_reports_and_changes_nothing(capsys, tmp_path: Path) -> None:
    changed, same, gone = tmp_path / "changed", tmp_path / "same", tmp_path / "gone"
    changed.write_text("old\n")
    same.write_text("same\n")
    same.chmod(0o644)
    gone.write_text("x\n")
    new_dir = tmp_path / "newdir"
    link = tmp_path / "link"
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    result = ok(
        capsys,
        [
            # validate would fail: check mode must not run it
            file_entry(changed, "new\n", validate="false %s"),
            file_entry(same, "same\n", mode="0600"),
            {"dest": str(new_dir), "state": "directory", "owner": str(UID)},
            file_entry(new_dir / "inside", "x\n"),
            {"dest": str(link), "state": "link", "src": str(same)},
            {"dest": str(gone), "state": "absent"},
        ],
        check=True,
    )
    assert result["changed"] is True
    assert result["changed_files"] == [
        str(changed),
        str(same),
        str(new_dir),
        str(new_dir / "inside"),
        str(link),
        str(gone),
    ]
    assert [f["changes"] for f in result["files"]] == [
        ["content"],
        ["mode"],
        ["created"],
        ["created"],
        ["link"],
        ["removed"],
    ]
    assert result["diff"][0]["before"] == "old\n"
    assert result["diff"][0]["after"] == "new\n"
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert mode_of(same) == 0o644
    assert not new_dir.exists()
    assert not link.is_symlink()


def test_without_diff_mode_no_diff_is_returned(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "f"
    result = ok(capsys, [file_entry(dest, "x\n")], diff=False)
    assert result["changed"] is True
    assert "diff" not in result


# --- failures ---------------------------------------------------------------------------------


def test_the_first_failing_entry_stops_the_run(capsys, tmp_path: Path) -> None:
    done_dir = tmp_path / "etc"
    done_file = done_dir / "a.conf"
    unchanged = tmp_path / "unchanged"
    unchanged.write_text("u\n")
    never = tmp_path / "never"

    result = failed(
        capsys,
        [
            {"dest": str(done_dir), "state": "directory", "owner": str(UID), "group": str(GID)},
            file_entry(done_file, "a\n"),
            file_entry(unchanged, "u\n"),
            file_entry(Path("relative/b.conf"), "b\n"),
            file_entry(never, "n\n"),
        ],
    )
    assert result["msg"] == "relative/b.conf: the path is not absolute"
    assert result["changed"] is True
    assert result["changed_files"] == [str(done_dir), str(done_file)]
    assert [(f["dest"], f["changes"]) for f in result["files"]] == [
        (str(done_dir), ["created"]),
        (str(done_file), ["created"]),
        (str(unchanged), []),
    ]
    assert done_file.read_text() == "a\n"
    assert not never.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"mode": "u+rw"}, "mode 'u+rw' is not an octal mode such as '0644'"),
        ({"mode": "0999"}, "mode '0999' is not an octal mode such as '0644'"),
        ({"mode": "17777"}, "mode '17777' is out of range"),
        ({"owner": "no-such-user-prpm"}, "user 'no-such-user-prpm' does not exist on the host"),
        ({"group": "no-such-group-prpm"}, "group 'no-such-group-prpm' does not exist on the host"),
    ],
)
def test_bad_attributes_fail_clearly_and_write_nothing(
    capsys, tmp_path: Path, extra: dict, message: str
) -> None:
    dest = tmp_path / "f"
    result = failed(capsys, [file_entry(dest, "x\n", **extra)])
    assert result["msg"] == f"{dest}: {message}"
    assert result["files"] == []
    assert sorted(tmp_path.iterdir()) == []


def test_a_relative_dest_fails(capsys, tmp_path: Path) -> None:
    result = failed(capsys, [{"dest": "etc/x", "state": "directory"}])
    assert result["msg"] == "etc/x: the path is not absolute"


def test_an_os_error_fails_naming_the_entry(capsys, tmp_path: Path) -> None:
    done = tmp_path / "done"
    dest = tmp_path / "missing" / "link"
    result = failed(
        capsys,
        [file_entry(done, "d\n"), {"dest": str(dest), "state": "link", "src": "/usr/bin/env"}],
    )
    assert result["msg"].startswith(f"{dest}: ")
    assert result["changed_files"] == [str(done)]


def test_a_file_in_a_missing_directory_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "missing" / "f"
    result = failed(capsys, [file_entry(dest, "x\n")])
    assert result["msg"] == f"{dest}: its directory {dest.parent} does not exist"
    assert not dest.parent.exists()


def test_a_file_where_a_directory_is_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    result = failed(capsys, [file_entry(dest, "x\n")])
    assert result["msg"] == f"{dest}: exists and is not a regular file"
    assert dest.is_dir()


def test_a_file_without_content_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "f"
    result = failed(capsys, [{"dest": str(dest)}])
    assert result["msg"] == (
        f"{dest}: state=file needs content (template, src or content through the action plugin)"
    )
    assert not dest.exists()


def test_content_that_is_not_base64_fails(capsys, tmp_path: Path) -> None:
    dest = tmp_path / "f"
    result = failed(capsys, [{"dest": str(dest), "content_b64": "not base64!"}])
    assert result["msg"].startswith(f"{dest}: content_b64 is not base64")
    assert not dest.exists()


# --- symbolic links met on the way (review fixes) ----------------------------------------------


def test_a_directory_that_is_a_link_to_a_directory_is_accepted(capsys, tmp_path: Path) -> None:
    real = tmp_path / "data"
    real.mkdir(mode=0o755)
    link = tmp_path / "opt-prpm"
    link.symlink_to(real)
    entry = {"dest": str(link), "state": "directory", "mode": "0750", "owner": str(UID)}
    first = ok(capsys, [entry])
    assert first["changed_files"] == [str(link)]
    assert link.is_symlink()
    assert mode_of(real) == 0o750
    assert ok(capsys, [entry])["changed"] is False


def test_a_file_replaces_a_link_at_its_path_unless_force_is_false(capsys, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("elsewhere\n")
    dest = tmp_path / "conf"
    dest.symlink_to(target)
    kept = ok(capsys, [file_entry(dest, "mine\n", force=False)])
    assert kept["changed"] is False
    assert dest.is_symlink()
    result = ok(capsys, [file_entry(dest, "mine\n", mode="0640")])
    assert result["files"][0]["changes"] == ["created"]
    assert not dest.is_symlink()
    assert dest.read_text() == "mine\n"
    assert mode_of(dest) == 0o640
    assert target.read_text() == "elsewhere\n"


def test_a_link_target_is_compared_as_written(capsys, tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x\n")
    dest = tmp_path / "link"
    entry = {"dest": str(dest), "state": "link", "src": "./x"}
    assert ok(capsys, [entry])["changed"] is True
    assert os.readlink(dest) == "./x"  # noqa: PTH115 (Path.readlink drops the "./")
    assert ok(capsys, [entry])["changed"] is False
