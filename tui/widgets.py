"""Reusable widgets of the assistant (each with its DEFAULT_CSS)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from checks.audit.findings import FAIL
from checks.audit.run import Report
from checks.core.textio import shown

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


def plain(text: str, style: str = "") -> Text:
    """Text from input as the screens show it: never markup (``[b]`` stays as written), controls escaped."""
    return Text(shown(text), style=style)


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis (tables fit 80 columns)."""
    return text if len(text) <= width else text[: width - 1] + "…"


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
    parts = [(f"{counts[s]} {s}", SEVERITY_STYLE[s]) for s in ("critical", "high", "medium", "low", "info")
             if counts.get(s)]
    if parts:
        t.append("  ·  failing: ")
        for i, (txt, style) in enumerate(parts):
            if i:
                t.append(", ")
            t.append(txt, style=style)
    else:
        t.append("  ·  nothing fails", style="green")
    return t


def diff_style(line: str) -> str:
    """The style of one line of a rendered plan preview (checks.change.preview.render)."""
    if line.startswith(("+++ ", "--- ")):
        return "bold"
    if line.startswith("+"):
        return "green"
    if line.startswith("-"):
        return "red"
    if line.startswith("@@"):
        return "cyan"
    if line.startswith(("Plan for", "new file", "Not changed", "Note:", "FS-005")):
        return "bold"
    return ""


def diff_text(preview: str) -> Text:
    """A rendered plan preview with its lines styled."""
    out = Text()
    for line in preview.rstrip("\n").split("\n"):
        out.append(line + "\n", style=diff_style(line))
    return out


class EffectView(VerticalScroll, can_focus=True):
    """The effect of a step's choices: focusable so the keyboard can scroll it."""

    DEFAULT_CSS = """
    EffectView { height: auto; max-height: 14; margin-top: 1; }
    EffectView:focus { background: $boost; }
    """


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


class ChoiceList(OptionList):
    """A keyboard list of choices whose state is in the text: ``[x]``/``[ ]`` or ``(•)``/``( )``.

    Unlike a colour-only checkbox it reads the same under NO_COLOR, in a
    screen reader and in ``tmux capture-pane``. Space or Enter toggles
    (``multiple``) or picks (single choice).
    """

    DEFAULT_CSS = """
    ChoiceList { height: auto; max-height: 12; border: round $primary; padding: 0; }
    ChoiceList:focus { border: round $accent; }
    """
    BINDINGS = [Binding("space,enter", "toggle_choice", "Toggle", id="choice.toggle",
                        tooltip="Choose or un-choose this item")]

    class Changed(Message):
        def __init__(self, choice_list: ChoiceList) -> None:
            super().__init__()
            self.choice_list = choice_list

        @property
        def control(self) -> ChoiceList:
            return self.choice_list

    def __init__(self, items: Sequence[tuple[str, Text, str | None]] | None = None, *, multiple: bool = True,
                 chosen: set[str] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.multiple = multiple
        self.chosen: set[str] = set(chosen or ())
        self._items: list[tuple[str, Text, str | None]] = []
        if items:
            self.set_items(items, self.chosen)

    def set_items(self, items: Sequence[tuple[str, Text, str | None]], chosen: set[str]) -> None:
        """(key, label, detail line or None) per item."""
        highlighted = self.highlighted
        self._items = list(items)
        self.chosen = set(chosen)
        self.clear_options()
        self.add_options([Option(self._prompt(k, label, detail), id=k) for k, label, detail in self._items])
        if self._items:
            self.highlighted = min(highlighted or 0, len(self._items) - 1)

    def _prompt(self, key: str, label: Text, detail: str | None) -> Text:
        on = key in self.chosen
        mark = ("[x] " if on else "[ ] ") if self.multiple else ("(•) " if on else "( ) ")
        t = Text(mark, style="bold" if on else "")
        t.append_text(label)
        if detail:
            t.append("\n    " + detail, style="dim")
        return t

    def _refresh_prompts(self) -> None:
        for i, (k, label, detail) in enumerate(self._items):
            self.replace_option_prompt_at_index(i, self._prompt(k, label, detail))

    def action_toggle_choice(self) -> None:
        if self.highlighted is None or not self._items:
            return
        key = self._items[self.highlighted][0]
        if self.multiple:
            self.chosen ^= {key}
        else:
            if self.chosen == {key}:
                return
            self.chosen = {key}
        self._refresh_prompts()
        self.post_message(self.Changed(self))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()  # a click or Enter: the same as Space
        self.action_toggle_choice()


#: The frames of the progress indicator: characters, not colour, so it reads under NO_COLOR too.
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class ProgressLine(Static):
    """One line while a change is applied to the running stack: ``⠙ waiting for api to be healthy… 5.4 s``.

    Driven by the engine's reporter (``report(what, elapsed)``, from the worker
    thread through ``call_from_thread``). Between two reports an animated line
    turns its indicator and counts the seconds on from the last elapsed time
    (``clock``: injected); a still one (``moving=False``: snapshots, tests)
    shows exactly what was reported, so its frames do not depend on timing.
    """

    DEFAULT_CSS = """
    ProgressLine { height: auto; display: none; }
    ProgressLine.-active { display: block; }
    """

    def __init__(self, *, moving: bool = True, clock=None, **kwargs) -> None:
        super().__init__("", **kwargs)
        import time

        self.moving = moving
        self.clock = clock or time.monotonic
        self.what: str | None = None
        self.elapsed: float | None = None
        self.frame = 0
        self._at = 0.0
        self.services: list[str] = []
        """The services the reports named as being recreated, in order (for the outcome)."""

    def on_mount(self) -> None:
        if self.moving:
            self.set_interval(0.1, self._tick)

    def report(self, what: str, elapsed: float | None) -> None:
        """One report of the engine: what it is doing now, and the seconds since it began (or None)."""
        self.what = " ".join(str(what).split())
        self.elapsed = elapsed
        self._at = self.clock()
        self.frame += 1
        words = self.what.split()
        if len(words) >= 2 and words[0] == "recreating":
            for name in words[1:]:
                name = name.strip(",")
                if name and name not in self.services:
                    self.services.append(name)
        self.add_class("-active")
        self._show()

    def stop(self) -> None:
        """The apply is over: the line goes (the outcome is told elsewhere)."""
        self.what = None
        self.remove_class("-active")
        self.update("")

    def _tick(self) -> None:
        if self.what is None:
            return
        self.frame += 1
        self._show(self.clock() - self._at)

    def _show(self, since: float = 0.0) -> None:
        t = Text()
        t.append(SPINNER[self.frame % len(SPINNER)] + " ", style="bold")
        t.append(shown(self.what or "") + "…")
        if self.elapsed is not None:
            t.append(f" {self.elapsed + since:.1f} s", style="dim")
        self.update(t)
