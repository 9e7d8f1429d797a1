"""File permissions: who may read the secrets and write the compose files, and the media tree."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from checks.change.plan import FileEdit, ModeChange, TreeChmod
from checks.core.textio import shown

from ._base import FixStepScreen


def _rwx(mode: int) -> str:
    out = ""
    for shift in (6, 3, 0):
        bits = (mode >> shift) & 7
        out += ("r" if bits & 4 else "-") + ("w" if bits & 2 else "-") + ("x" if bits & 1 else "-")
    return out


class PermissionsScreen(FixStepScreen):
    """Modes of the env and compose files, stray secret copies, the media mount and tree."""

    STEP = "permissions"
    NAME = "File permissions"
    CSS_PATH = "permissions.tcss"
    INTRO = "Files that hold secrets become readable by their owner only; media becomes read-only."
    HELP = ("The table shows each file's mode now and after the change. Owners and groups never change.\n\n"
            "- **FS-001** `.env` to 0600: it holds the database password.\n"
            "- **FS-002** compose files: no write for others; 0600 while they still hold a secret.\n"
            "- **FS-003** the install directory: no write for group or others.\n"
            "- **FS-004** media mounted `:ro`, so a compromised API cannot delete your library.\n"
            "- **FS-005** the media tree: group/other write off everywhere, exec off files "
            "(0777 folders become 0755, `chmod -R 755` videos 0644). Shown as counts: the tree can hold millions.\n"
            "- **FS-006** stray copies such as `.env.bak` become 0600.")

    def effect_text(self, step_plan):
        plan = step_plan.plan
        session = self.session
        parts: list = []
        if plan.empty:
            parts.append(Text("No change selected." if not plan.refusals else "Nothing can be changed automatically."))
        else:
            parts.append(Text(f"This step alone: score {step_plan.score_before} -> {step_plan.score_after}",
                              style="bold"))
        modes = [c for c in plan.changes if isinstance(c, ModeChange)]
        if modes:
            table = Table(box=None, padding=(0, 2, 0, 0), show_edge=False, header_style="bold")
            table.add_column("file")
            table.add_column("now")
            table.add_column("after")
            for m in modes:
                # Text, not str: a Rich table reads a str cell as markup ("[x]" in a file name).
                table.add_row(Text(session.display(m.path)), f"{m.before:04o} {_rwx(m.before)}",
                              f"{m.after:04o} {_rwx(m.after)}")
            parts.append(table)
        if any(isinstance(c, FileEdit) for c in plan.changes):
            parts.append(self.edit_lines(plan))
        for tree in (c for c in plan.changes if isinstance(c, TreeChmod)):
            t = Text(f"Media {session.display(tree.root)}: {tree.entries:,} entries, {tree.changes:,} to change\n",
                     style="bold")
            for (kind, before, after), n in sorted(tree.transitions.items(), key=lambda kv: (-kv[1], kv[0])):
                noun = ("folder" if n == 1 else "folders") if kind == "dir" else ("file" if n == 1 else "files")
                t.append(f"  {n:>9,} {noun:<7} {before:04o} -> {after:04o}\n")
            parts.append(t)
        for r in plan.refusals:
            parts.append(Text(f"Not changed: {r.check}: {shown(r.reason)}", style="yellow"))
        return Group(*parts)
