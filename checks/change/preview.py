"""Previews of plans: what a person reads before saying yes.

Unified diffs per file with secrets masked (unless revealed), a table of mode
changes, and the media tree as counts. The same text serves ``fix`` and
``undo``. Every line shows its control characters escaped (checks.core.textio.shown),
masked first: a ``\r`` or an ESC in a file cannot hide or fake a line of a plan.
"""

from __future__ import annotations

import difflib
import os
import stat
from collections.abc import Iterator

from checks.change.handlers import for_change
from checks.change.plan import FileEdit, Plan, TreeChmod
from checks.core.secrets import MASK, Masker
from checks.core.textio import shown


def _display(path: str, root: str) -> str:
    rel = os.path.relpath(path, root)
    return shown(path if rel.startswith("..") else rel)


def _lines(data: bytes | None) -> list[str]:
    if data is None:
        return []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    # Lines end at "\n" only (str.splitlines would also break at \x0c or U+2028
    # inside a value). A last line without its newline is the same line once
    # something is added after it: the diff shows only what was added.
    lines = [line + "\n" for line in text.split("\n")]
    if text.endswith("\n") or not text:
        lines.pop()
    return lines


def file_diff(change: FileEdit, root: str, masker: Masker | None) -> list[str]:
    name = _display(change.path, root)
    before = _lines(change.before)
    after = _lines(change.after)
    head_a = "/dev/null" if change.before is None else f"a/{name}"
    head_b = "/dev/null" if change.after is None else f"b/{name}"
    # Diff the real text (a changed password is a changed line), then mask what is shown.
    out = [ln.rstrip("\n") for ln in difflib.unified_diff(before, after, head_a, head_b, n=2)]
    if masker is not None:
        out = [ln[:1] + masker.line(ln[1:]) if ln[:1] in " +-" and not ln.startswith(("--- ", "+++ ")) else ln
               for ln in out]
    out = [shown(ln) for ln in out]
    if change.before is None:
        owner = f", owner {_owner_name(change.owner)}" if change.owner is not None else ""
        out.insert(0, f"new file {name} (mode {oct(change.mode or 0o600)[2:].zfill(4)}{owner})")
    elif change.after is None:
        out.insert(0, f"delete {name}")
    elif change.before is not None and change.after is not None and change.before != change.after and not out:
        out.append(f"{name}: only line endings or encoding change")
    return out


def _owner_name(owner: tuple[int, int]) -> str:
    """``root:www-data`` (numbers where the host has no name for them)."""
    import grp
    import pwd

    try:
        user = pwd.getpwuid(owner[0]).pw_name
    except KeyError:
        user = str(owner[0])
    try:
        group = grp.getgrgid(owner[1]).gr_name
    except KeyError:
        group = str(owner[1])
    return shown(f"{user}:{group}")


def tree_summary(tree: TreeChmod, root: str) -> str:
    parts = []
    for (kind, before, after), n in sorted(tree.transitions.items(), key=lambda kv: (-kv[1], kv[0])):
        noun = ("dir" if n == 1 else "dirs") if kind == "dir" else ("file" if n == 1 else "files")
        parts.append(f"{n:,} {noun} {before:04o}->{after:04o}")
    # The absolute, resolved root first: the directory judged and walked, whatever the compose file wrote.
    return f"FS-005: {tree.root}: {tree.entries:,} entries; " + "; ".join(parts)


def render(plan: Plan, root: str, reveal: bool = False, mask: str = MASK) -> str:
    masker = None if reveal else Masker(plan.secrets, mask)
    out: list[str] = []
    from checks.change.handlers import handlers

    groups = [(h, [c for c in plan.changes if for_change(c) is h]) for h in handlers()]
    if plan.empty:
        out.append("Nothing to change." + (" (See the refusals below.)" if plan.refusals else ""))
    else:
        parts = [p for h, cs in groups if (p := h.headline(cs))]
        out.append(f"Plan for {', '.join(plan.checks)}: " + ", ".join(parts) + ".")
    for handler, changes in groups:
        out += handler.describe(changes, root, masker)
    if plan.refusals:
        out.append("")
        out.append("Not changed (do these by hand):")
        for r in plan.refusals:
            out.append(f"  {r.check}: {shown(r.reason)}")
            out.append(f"    By hand: {shown(r.manual)}")
    if plan.notes:
        out.append("")
        for note in plan.notes:
            out.append("Note: " + shown(note))
    text = "\n".join(out) + "\n"
    return masker.text(text) if masker is not None else text


def list_tree(tree: TreeChmod) -> Iterator[str]:
    """Every entry the media rule would change, as ``before -> after path``."""
    from checks.change import walk
    from checks.core import mediarule

    primary = mediarule.primary_gids()
    shared: dict[tuple[int, int], int] = {}  # shared library directory (dev, inode) -> its group
    for e in walk.walk(tree.root):
        st = e.st
        if stat.S_ISDIR(st.st_mode):
            ok = mediarule.shared_dir(st, primary)
            if ok:
                shared[(st.st_dev, st.st_ino)] = st.st_gid
        else:
            ok = shared.get(e.parent, -1) == st.st_gid
        new = mediarule.target_mode(st.st_mode, ok)
        if new is not None:
            kind = "d" if stat.S_ISDIR(st.st_mode) else "f"
            where = os.path.join(tree.root, e.rel) if e.rel else tree.root
            yield f"{kind} {stat.S_IMODE(st.st_mode):04o} -> {new:04o}  {shown(where)}"
