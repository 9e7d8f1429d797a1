"""Reusable widgets of the assistant (each with its DEFAULT_CSS)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from checks.audit import Report
from checks.findings import FAIL

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}

TOO_SMALL = ("This terminal is smaller than 80x24: some of dester-harden is cut off. "
             "Enlarge the window (or zoom out) to see everything.")


class TooSmallNotice(Static):
    """Shown at the top of every screen while the terminal is below 80x24."""

    DEFAULT_CSS = """
    TooSmallNotice { display: none; dock: top; height: auto; background: $warning; color: $text; padding: 0 1; }
    Screen.-too-narrow TooSmallNotice, Screen.-too-short TooSmallNotice { display: block; }
    """

    def __init__(self) -> None:
        super().__init__(TOO_SMALL, id="too-small")


def score_text(report: Report | None, label: str = "Score") -> Text:
    """``Score 5/100 · 3 critical, 4 high, ...`` (counts of failing checks)."""
    if report is None:
        return Text(f"{label}: auditing…")
    counts: dict[str, int] = {}
    for f in report.findings:
        if f.status == FAIL:
            counts[f.severity] = counts.get(f.severity, 0) + 1
    t = Text()
    t.append(f"{label} {report.score}/100", style="bold")
    parts = [(f"{counts[s]} {s}", SEVERITY_STYLE[s]) for s in ("critical", "high", "medium", "low", "info") if counts.get(s)]
    if parts:
        t.append("  ·  failing: ")
        for i, (txt, style) in enumerate(parts):
            if i:
                t.append(", ")
            t.append(txt, style=style)
    else:
        t.append("  ·  nothing fails", style="green")
    return t


def diff_text(preview: str) -> Text:
    """A rendered plan preview (checks.preview.render) with diff lines coloured."""
    out = Text()
    for line in preview.rstrip("\n").split("\n"):
        style = ""
        if line.startswith(("+++ ", "--- ")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith(("Plan for", "new file", "Not changed", "Note:", "FS-005:")):
            style = "bold"
        out.append(line + "\n", style=style)
    return out


class DiffView(VerticalScroll, can_focus=True):
    """A scrollable preview of a plan (keyboard: arrows, PgUp/PgDn)."""

    DEFAULT_CSS = """
    DiffView { height: 1fr; border: round $primary; padding: 0 1; }
    DiffView:focus { border: round $accent; }
    """

    def __init__(self, preview: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self._preview = preview

    def compose(self):
        yield Static(diff_text(self._preview), id="diff-body")

    def update(self, preview: str) -> None:
        self._preview = preview
        self.query_one("#diff-body", Static).update(diff_text(preview))
