"""The database password: a generated one, its strength, and everywhere it must be written."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.widgets import Static

from checks.assistant.passwords import DEFAULT_PASSWORD_BYTES, password_strength
from checks.core.secrets import MASK
from checks.core.textio import shown

from ._base import FixStepScreen

LIVE_SHORT = (
    "Docker is reachable: applying this step also changes the password inside the running PostgreSQL (ALTER "
    "ROLE), then recreates the API and checks that the new password works and the old one is refused; undo puts "
    "the old one back.")

FILES_ONLY_SHORT = (
    "PostgreSQL keeps the old password in its data volume. Without the Docker Engine this step changes the "
    "files only: then, before `docker compose up -d`, change it inside the database too (F1 says how).")

LIVE_ROTATION = (
    "PostgreSQL keeps the old password inside its data volume: changing the files alone does not change it. "
    "When the Docker Engine is reachable, dester-harden rotates it live, as one transaction: ALTER ROLE inside "
    "the running database (the statement on its standard input, never on a command line), then the files, "
    "then the API recreated and checked (healthy, the new password accepted, the old one refused); if that "
    "check fails, everything is put back by itself, and undo puts the old password back everywhere. Without "
    "Docker access it changes the files only: then, before `docker compose up -d`, run "
    "`docker compose exec postgres psql -U <user> -c '\\password <user>'` and type the new password (reveal it "
    "here with v, or copy it with c).")


class PasswordScreen(FixStepScreen):
    """Generate the new database password and the other secret fixes."""

    STEP = "password"
    NAME = "Database password"
    CSS_PATH = "password.tcss"
    SHOWS_SECRET = True
    INTRO = "A weak or default database password is one guess away from your whole library."
    HELP = ("The new password comes from Python's `secrets` module: 32 random bytes written as 43 characters of "
            "A-Z a-z 0-9 - _ (a URL-safe alphabet, so `DATABASE_URL` needs no percent-encoding). It goes to every "
            "place that must agree: POSTGRES_PASSWORD, DATABASE_URL, and the `.env` they read.\n\n"
            "It is masked by default. **v** reveals or hides it, **c** copies it to your clipboard through the "
            "terminal (OSC 52, works over SSH in most terminals), **r** generates another. It is never logged, "
            "never kept in the undo journal in plain text, and never in a screenshot.\n\n" + LIVE_ROTATION)
    BINDINGS = [
        Binding("v", "reveal", "Reveal", id="password.reveal", tooltip="Show or hide the new password"),
        Binding("c", "copy", "Copy", id="password.copy", tooltip="Copy the new password to the clipboard (OSC 52)"),
        Binding("r", "regenerate", "New", id="password.regenerate", tooltip="Generate a different password"),
    ]

    revealed: bool = False

    def compose_extra(self):
        yield Static("", id="password-panel")
        yield Static("", id="password-running")

    def compose_after(self):
        yield Static(Text(FILES_ONLY_SHORT, style="dim"), id="password-live")

    def setup(self) -> None:
        weak = any(f.id == "SEC-001" for f in self.session.failing(self.STEP))
        if weak and self.session.choices.db_password is None:
            self.session.generate_password()
        super().setup()
        self.show_password()
        self.show_live(self.dester_app.live, pending=not self.dester_app.live_ready)

    def show_live(self, live, pending: bool = False) -> None:
        """Whether the containers run with the files' password, and how the rotation will be done."""
        from screens._live import CHECKING, engine_line, hanging, stale_password_line

        running = self.query_one("#password-running", Static)
        how = self.query_one("#password-live", Static)
        if pending:
            running.display = True
            running.update(Text(CHECKING, style="dim"))
            return
        reachable = live is not None and live.docker_reachable
        how.update(Text(LIVE_SHORT if reachable else FILES_ONLY_SHORT, style="dim"))
        line = None
        if live is not None:
            line = (stale_password_line(self.session.inst, live) if reachable
                    else engine_line(live, self.dester_app.euid))
        if live is None:
            running.update("")
        width = max(40, self.size.width - 6)
        if reachable and line is None:
            running.update(Text(hanging("Live: ", "the running containers use the password the files give them.",
                                        width), style="dim"))
        running.display = live is not None
        if line is not None:
            running.update(Text(hanging("Live: ", line, width), style="yellow"))

    def show_password(self) -> None:
        session = self.session
        weak = [f for f in session.failing(self.STEP) if f.id == "SEC-001"]
        t = Text()
        if not weak:
            t.append("The database password is not weak: nothing to replace.", style="green")
            self.query_one("#password-live").display = False
        else:
            f = weak[0]
            notes = sorted({e.note for e in f.evidence if e.note})
            places = ", ".join(f"{e.file}:{e.line}" if e.line else f"{e.file}" for e in f.evidence[:4])
            t.append("Now:  ", style="bold")
            t.append("weak", style="bold red")
            t.append(f" ({shown(places)})\n")
            for n in notes[:2]:
                t.append(f"      {shown(n)}\n", style="red")
            pw = session.choices.db_password or ""
            s = password_strength(pw, DEFAULT_PASSWORD_BYTES)
            t.append("New:  ", style="bold")
            t.append(pw if self.revealed else MASK[0] * len(pw), style="bold green" if self.revealed else "bold")
            t.append(f"\n      {s.length} characters, URL-safe ({s.alphabet} symbols), {s.bits} random bits: {s.label}",
                     style="green" if s.bits >= 128 else "yellow")
            t.append("\n      v reveal · c copy · r generate another", style="dim")
        self.query_one("#password-panel", Static).update(t)

    def action_reveal(self) -> None:
        if not self.session.choices.db_password:
            return
        self.revealed = not self.revealed
        self.show_password()

    def action_copy(self) -> None:
        pw = self.session.choices.db_password
        if not pw:
            self.notify("There is no new password to copy on this installation.", severity="warning")
            return
        self.app.copy_to_clipboard(pw)
        self.notify("Copied the new password to the clipboard (through the terminal, OSC 52).")

    def action_regenerate(self) -> None:
        if not self.session.choices.db_password:
            return
        self.session.generate_password()
        self.show_password()
        self.refresh_effect()
