"""FS-*: fixes of file modes, the media mount and the media tree."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from checks.audit.rules.fs import media_mounts, stray_copies
from checks.audit.rules.sec import literal_secrets
from checks.change import walk
from checks.change.plan import Refusal, TreeChmod
from checks.core.mediaroot import manual_step, media_root_problem
from checks.fix import edit
from checks.fix.edit import EditRefused
from checks.fix.svcedit import bound
from checks.install.model import Installation, Mount

if TYPE_CHECKING:  # pragma: no cover - the planner imports the fixers, not the other way round
    from checks.fix.planner import Planner, Targets


def fix_fs_001(p: Planner) -> None:
    inst = p.inst()
    for ef in inst.env_files:
        if ef.source is None or ef.path not in {e.path for e in inst.env_files}:
            continue
        if os.path.lexists(ef.path) and p.mode(ef.path) & 0o077:
            p.chmod(ef.path, p.mode(ef.path) & 0o700)


def fix_fs_002(p: Planner) -> None:
    inst = p.inst()
    holding = {where.file for _, where, _ in literal_secrets(inst)}
    for src in inst.compose_files:
        mode = p.mode(src.path)
        new = mode & ~0o022
        if src.display in holding:
            new &= 0o700
        if new != mode:
            p.chmod(src.path, new)


def fix_fs_003(p: Planner) -> None:
    inst = p.inst()
    for d in sorted({inst.root} | {os.path.dirname(s.path) for s in inst.compose_files}):
        mode = p.mode(d)
        if mode & 0o022:
            p.chmod(d, mode & ~0o022)


def fix_fs_004(p: Planner) -> None:
    def targets(inst: Installation) -> Targets:
        for svc, m in p.targets("FS-004", inst, Mount):
            yield (("FS-004", svc, m.where.line), bound(_make_ro, p, m))
    p.each("FS-004", targets, batch=True)


def _make_ro(p: Planner, inst: Installation, m: Mount) -> None:
    node = p.own(inst, m.node)
    edit.ensure_editable(node, "the media mount")
    if m.long:
        ro = node.get("read_only")
        if ro is not None:
            p.edit_node(inst, ro, lambda t: edit.replace_bool(t, ro, True))
        else:
            p.edit_node(inst, node, lambda t: edit.insert_lines(t, node, ["read_only: true"]))
        return
    raw = str(node.value)
    parts = _split_outside_refs(raw, ":")
    # ${HOST_MEDIA_PATH}:/media gets :ro like any other; a container side or
    # options that come from a variable are the variable's to change.
    if parts is None or any("$" in part.replace("$$", "") for part in parts[1:]):
        raise EditRefused(f"the media mount at {m.where.file}:{m.where.line} takes its container path or options from "
                          "${...} interpolation; add :ro to it by hand (or to the variable)")
    if len(parts) == 2:
        new = raw + ":ro"
    elif len(parts) == 3:
        opts = [o for o in parts[2].split(",") if o and o != "rw"]
        new = ":".join(parts[:2]) + ":" + ",".join(["ro"] + [o for o in opts if o != "ro"])
    else:
        raise EditRefused(f"cannot read the media mount at {m.where.file}:{m.where.line}; add :ro by hand")
    p.edit_node(inst, node, lambda t: edit.replace_scalar(t, node, new))


def _split_outside_refs(text: str, sep: str) -> list[str] | None:
    """``text`` split at ``sep`` outside ``${...}`` (None when a ``${`` is not closed)."""
    parts, depth, cur, i = [], 0, "", 0
    while i < len(text):
        if text.startswith("$$", i):
            cur += "$$"
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            cur += "${"
            i += 2
            continue
        ch = text[i]
        if ch == "}" and depth:
            depth -= 1
        if ch == sep and not depth:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if depth:
        return None
    return parts + [cur]


def fix_fs_005(p: Planner) -> None:
    """The media rule on each media bind mount's tree, once its root is judged a library (checks.core.mediaroot).

    The tree is named by its resolved path, the one judged and walked.
    Mount points inside it are not entered (a note says how many).
    """

    roots = sorted({m.host_path for _, m in media_mounts(p.inst()) if m.host_path})
    for root in roots:
        if not os.path.lexists(root):
            continue  # FS-005 reports it not found
        problem = media_root_problem(root, p.root)
        if problem is not None:
            p.refusals.append(Refusal("FS-005", problem, manual_step(root)))
            continue
        real = os.path.realpath(root)
        mounts: list[str] = []
        try:
            entries, transitions = walk.preview(real, mounts)
        except walk.TreeError as exc:
            p.refuse("FS-005", str(exc))
            continue
        if transitions:
            p.trees.append(TreeChmod(real, entries, transitions))
        if mounts:
            shown = ", ".join(mounts[:3]) + (", ..." if len(mounts) > 3 else "")
            p.notes.append(f"FS-005: {len(mounts):,} mount point{'s' if len(mounts) != 1 else ''} inside {real} "
                           f"not entered ({shown}): another filesystem's modes are changed by hand, or by "
                           "mounting that library as its own media path")


def fix_fs_006(p: Planner) -> None:
    for path in stray_copies(p.inst()):
        mode = p.mode(path)
        if mode & 0o077:
            p.chmod(path, mode & 0o700)


def fix_fs_007(p: Planner) -> None:
    """The SQLite database (and its ``-wal``/``-shm``) 0600, its directory 0700: what FS-007's evidence names.

    A target is the database file's host path (or its directory's); the others beside it
    are found here, so one finding fixes the set.
    """
    done: set[str] = set()
    for _svc, target in p.targets("FS-007", p.inst(), object):
        where = target if isinstance(target, str) else getattr(target, "host_path", None) or getattr(
            target, "path", None)
        if not isinstance(where, str):
            continue
        path = os.path.abspath(where)
        if os.path.isdir(path) and not os.path.islink(path):
            directory, files = path, []
        else:
            directory, files = os.path.dirname(path), [path, path + "-wal", path + "-shm"]
        for f in files:
            if f in done or not os.path.isfile(f) or os.path.islink(f):
                continue
            done.add(f)
            mode = p.mode(f)
            if mode & 0o077:
                p.chmod(f, mode & 0o700 & ~0o111)
        if directory not in done and os.path.isdir(directory) and not os.path.islink(directory):
            done.add(directory)
            mode = p.mode(directory)
            if mode & 0o077:
                p.chmod(directory, (mode & 0o700) | 0o700)
