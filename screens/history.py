"""History: the undo journal; any transaction can be taken back after seeing its diff."""

from __future__ import annotations

import asyncio

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from checks.assistant.steps import STEP_BY_ID
from checks.assistant.usecases import ConflictKind
from checks.core.textio import shown
from tui.errors import one_line
from tui.widgets import ProgressLine, clip, plain

from ._base import DesterScreen
from .undo import UndoModal


class HistoryScreen(DesterScreen):
    """Every transaction dester-harden applied here, newest first; Enter previews its undo."""

    NAME = "History"
    CSS_PATH = "history.tcss"
    HELP = ("Each row is one transaction: the changes of one step (or of one `dester-harden fix`), applied all "
            "or nothing. Select one and press **Enter** (or **u**) to see the diff that would take it back; undo "
            "restores contents, modes and owners byte for byte. A file edited by hand since is shown first and "
            "only overwritten if you confirm.")
    BINDINGS = [
        Binding("u", "undo", "Undo…", id="history.undo", tooltip="Preview, then undo the selected transaction"),
        Binding("b,escape", "back", "Back", id="history.back", tooltip="Back to where you were"),
    ]

    def compose(self) -> ComposeResult:
        yield from self.compose_header()
        with VerticalScroll(id="history-body"):
            yield Static("", id="history-head")
            yield DataTable(id="history-table", cursor_type="row")
            yield ProgressLine(moving=self.dester_app.cursor_blink, id="history-progress")
            yield Static("", id="history-detail")
        yield from self.compose_footer()

    def on_mount(self) -> None:
        self.sub_title = self.NAME
        table = self.query_one(DataTable)
        for label, width in (("when", 16), ("what", 17), ("checks", 23), ("state", 9)):
            table.add_column(label, width=width)
        self.load()

    @work(thread=True, exclusive=True, group="history", exit_on_error=False)
    def load(self) -> None:
        self.session.recover()
        txns = self.session.transactions()
        self.app.call_from_thread(self.show, txns)

    def show(self, txns) -> None:
        self.txns = {t.id: t for t in txns}
        table = self.query_one(DataTable)
        table.clear()
        for t in reversed(txns):
            what = STEP_BY_ID[t.step].short if t.kind == "fix" and t.step else ("undo" if t.kind == "undo" else t.kind)
            style = "dim" if t.state != "applied" else ""
            table.add_row(plain(t.when), plain(clip(what, 17), style), plain(clip(", ".join(t.checks), 23), style),
                          plain(clip(t.state, 9), style), key=t.id)
        head = (f"{len(txns)} transaction(s) in {self.session.shown_root}/.dester-harden; "
                "Enter or u previews an undo.") if txns else \
            "No transactions yet: each change you apply is recorded here, ready to undo."
        self.query_one("#history-head", Static).update(plain(head))
        if txns:
            table.focus()
            self._detail(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail(event.row_key.value)

    def _detail(self, txn_id) -> None:
        t = getattr(self, "txns", {}).get(txn_id)
        if t is None:
            return
        d = plain(f"{t.id}  ({t.kind}, {t.state})", "bold")
        d.append("\n")
        if t.files:
            d.append("files: " + ", ".join(shown(f) for f in t.files) + "\n")
        for m in t.media:
            d.append(f"media tree: {shown(m)}\n")
        self.query_one("#history-detail", Static).update(d)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_undo()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_undo(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        txn_id = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        t = self.txns.get(txn_id)
        if t is None:
            return
        if not t.undoable:
            self.notify(f"{t.id} cannot be undone: it is {'an undo' if t.kind == 'undo' else t.state}.",
                        severity="warning")
            return
        self.undo_flow(t.id)

    @work(exclusive=True, group="history-undo", exit_on_error=False)
    async def undo_flow(self, txn_id: str) -> None:
        from checks.change.plan import FileEdit
        from checks.change.preview import file_diff, render
        from checks.core.secrets import Masker

        session = self.session
        try:
            preview = await asyncio.to_thread(session.undo_preview, txn_id)
        except Exception as exc:  # noqa: BLE001
            self.notify(one_line(exc), markup=False, title="Cannot undo", severity="error", timeout=10)
            return
        text = render(preview.plan, session.root)
        if preview.conflicts:
            masker = Masker(preview.plan.secrets)
            lines = ["Edited by hand since the transaction: undo would overwrite these changes.", ""]
            for c in preview.conflicts:
                if c.kind is ConflictKind.MODE_CHANGED:
                    lines.append(f"{session.display(c.path)}: mode changed since")
                    continue
                lines += file_diff(FileEdit(c.path, c.expected, c.current or b""), session.root, masker)
            text = "\n".join(lines) + "\n\n" + text
        ok = await self.app.push_screen_wait(UndoModal(txn_id, text, bool(preview.conflicts)))
        if not ok:
            return
        from .review import make_reporter

        progress = self.query_one("#history-progress", ProgressLine)
        try:
            done = await self.dester_app.apply_undo(preview, force=bool(preview.conflicts),
                                                    report=make_reporter(self.app, progress))
        except Exception as exc:  # noqa: BLE001
            self.notify(one_line(exc), markup=False, title="Nothing was changed", severity="error", timeout=10)
            return
        finally:
            progress.stop()
        if done.reverted is not None:  # the stack did not come up healthy: the undo was taken back by itself
            from screens._live import reverted_outcome

            told = reverted_outcome(done.reverted.message, done.reverted.last_logs, preview.plan.secrets)
            self.notify("\n".join([told.headline, *told.lines[-6:]]), markup=False, title="Not undone",
                        severity="error", timeout=20)
            self.load()
            return
        score = f" Score now {done.report.score}/100." if done.report is not None else ""
        from screens._live import recreated_outcome

        again = "".join(" " + recreated_outcome(r.services, r.elapsed).headline + "." for r in done.recreated)
        self.notify(f"Undone: {txn_id}.{score}{again}", markup=False)
        self.load()
