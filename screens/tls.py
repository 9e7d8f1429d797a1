"""HTTPS with a login: a Caddy or nginx front door for the user's domain (the internet profile only).

The screen asks for the domain (checked as a host name, the error inline), the server, and which of
the API's dangerous paths to serve behind the login after all (none by default); it shows the front
doors already in place, then the generated configuration as a diff and the login's password, masked,
with reveal and copy as on the password screen. Planning, validation, keeping the password and saving
the choice are the session's (the use cases the CLI calls too); the screen only asks and shows.
"""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Checkbox, Input, RadioButton, RadioSet, Static

from checks.core.secrets import MASK
from checks.core.textio import shown
from tui.widgets import EffectView, plain

from ._base import FixStepScreen

#: The paths a user may opt in to serve behind the login, and what each would expose.
OPEN_PATHS = (
    ("logs", "/api/v1/logs: the API's log lines (they hold the database password)"),
    ("settings", "/api/v1/settings: the TMDB key and every provider's key"),
    ("docs", "/api/docs: the Swagger UI, which drives the whole API from a browser"),
)
SERVERS = (("caddy", "Caddy"), ("nginx", "nginx"))


class TLSScreen(FixStepScreen):
    """Set up an HTTPS front door with a login; the generated site is previewed before review."""

    STEP = "tls"
    NAME = "HTTPS (TLS)"
    CSS_PATH = "tls.tcss"
    SHOWS_SECRET = True
    INTRO = ("Only an HTTPS proxy with a login may face the internet: DesterLib's API has none. "
             "The domain must point at this server. Tab moves between the fields.")
    HELP = ("DesterLib has no authentication, so the proxy's login is what keeps strangers out; HTTPS keeps the "
            "password and your library's names off the wire.\n\n"
            "- **Domain**: the name that points at this server (`media.example.com`).\n"
            "- **Proxy**: Caddy gets its certificate by itself; nginx needs certbot (the plan shows the command). "
            "The configuration is checked by the installed server (`caddy validate`, `nginx -t`) before it is "
            "installed, and again before the reload.\n"
            "- **Paths**: /api/v1/logs, /api/v1/settings and /api/docs are refused from outside even with the "
            "login, unless you tick them here.\n\n"
            "The login is `desterlib` with a generated password (bcrypt in the files). It is masked: **v** reveals "
            "or hides it, **c** copies it (OSC 52). After applying it is kept in the system keyring when one works, "
            "else in a 0600 file of dester-harden's state directory; the screen says which.\n\n"
            "- **TLS-001** an HTTPS proxy; **TLS-002** it asks for a login; **TLS-003** it refuses the logs, "
            "settings and docs.")
    BINDINGS = [
        Binding("v", "reveal", "Reveal", id="tls.reveal", tooltip="Show or hide the proxy login's password"),
        Binding("c", "copy", "Copy", id="tls.copy", tooltip="Copy the proxy login's password (OSC 52)"),
    ]

    revealed: bool = False
    login: str | None = None
    """The password of the login the last plan made (None: no plan yet, it failed, or it keeps an older login)."""

    def compose(self):
        from textual.containers import Horizontal

        yield from self.compose_header()
        with VerticalScroll(id="step-body", classes="step-body", can_focus=False):
            yield Static(self.INTRO, classes="step-intro")
            with Horizontal(classes="tls-row"):
                yield Static("Domain", classes="tls-label")
                domain = Input(placeholder="media.example.com", id="tls-domain")
                # no blink when the app says so: a snapshot must not catch the cursor half-way
                domain.cursor_blink = self.dester_app.cursor_blink
                yield domain
            yield Static("", id="tls-domain-error")
            with Horizontal(classes="tls-row"):
                yield Static("Proxy", classes="tls-label")
                with RadioSet(id="tls-proxy"):
                    for key, title in SERVERS:
                        yield RadioButton(title, id=f"tls-proxy-{key}")
            yield Static("Also serve behind the login (refused from outside unless ticked):", classes="tls-heading")
            for key, what in OPEN_PATHS:
                yield Checkbox(what, id=f"tls-open-{key}")
            yield Static("", id="tls-password")
            with EffectView(classes="step-effect-box"):
                yield Static("", classes="step-effect", id="step-effect")
            yield Static("", id="tls-existing")
            yield Static("", id="tls-findings")
        yield from self.compose_footer()

    def setup(self) -> None:
        self.sub_title = self.NAME
        self.options = None
        self.query_one("#tls-domain", Input).focus()
        self.query_one("#tls-existing", Static).update(Text("Looking for Caddy and nginx…", style="dim"))
        self.query_one("#tls-password").display = False
        self.query_one("#tls-domain-error").display = False
        self.query_one("#step-effect", Static).update(Text("Enter a domain to see the configuration.", style="dim"))
        self.show_findings()
        self.run_worker(self._load_options, thread=True, exclusive=True, group="tls-options", exit_on_error=False)

    def show_findings(self) -> None:
        """Where the step's checks stand now, one line each."""
        from checks.assistant.steps import STEP_BY_ID
        from checks.audit.findings import FAIL, PASS

        report = self.session.report
        t = Text()
        for cid in STEP_BY_ID[self.STEP].checks:
            f = next((x for x in (report.findings if report else []) if x.id == cid), None)
            if f is None:
                continue
            word, style = {FAIL: ("✗", "red"), PASS: ("✓", "green")}.get(f.status, ("?", "yellow"))
            t.append(f"{word} ", style=style)
            t.append(f"{cid} ", style="bold")
            t.append(f"{f.check.title}\n")
        t.rstrip()
        self.query_one("#tls-findings", Static).update(t)

    # -- what this machine offers ------------------------------------------------------------------
    def _load_options(self) -> None:
        try:
            found = self.session.front_door_options()
        except Exception as exc:  # noqa: BLE001 - one line on the screen, never a traceback
            from tui.errors import one_line

            self.app.call_from_thread(self._options_failed, one_line(exc))
            return
        self.app.call_from_thread(self._show_options, found)

    def _options_failed(self, why: str) -> None:
        if self.is_attached:
            self.query_one("#tls-existing", Static).update(plain("Cannot look for the servers: " + why, "red"))

    def _show_options(self, found) -> None:
        if not self.is_attached:
            return
        self.options = found
        for key, title in SERVERS:
            server = found.servers.get(key)
            button = self.query_one(f"#tls-proxy-{key}", RadioButton)
            if server is not None and server.binary:
                button.label = f"{title}  (installed {server.version or 'version unknown'})"
            else:
                hint = server.install_hint if server is not None else f"apt install {key}"
                button.label = f"{title}  (not installed: {hint})"
        choice = self.session.choices.front_door or found.saved
        chosen = choice.server if choice is not None else found.preselected
        self.query_one(f"#tls-proxy-{chosen}", RadioButton).value = True
        if choice is not None:
            for key, _ in OPEN_PATHS:
                self.query_one(f"#tls-open-{key}", Checkbox).value = key in choice.open_paths
            domain = self.query_one("#tls-domain", Input)
            if not domain.value:
                domain.value = choice.domain  # the Changed event plans it
        t = Text()
        if found.existing:
            t.append("Front doors already here:\n", style="bold")
            for door in found.existing:  # wrapped, not cut: what it leaves open is the point
                risky = bool(door.open_paths) or not door.auth
                t.append("• " + shown(door.summary()) + "\n", style="yellow" if risky else "")
        else:
            t.append("No front door is set up here yet.", style="dim")
        t.rstrip()
        self.query_one("#tls-existing", Static).update(t)

    # -- the choice ----------------------------------------------------------------------------------
    def choice(self):
        """The front door the fields describe, or None (and the error shown inline) when the domain is not valid."""
        from checks.core.errors import InputError
        from checks.proxy.generate import validate_domain
        from checks.proxy.model import Choice

        text = self.query_one("#tls-domain", Input).value.strip()
        error = self.query_one("#tls-domain-error", Static)
        error.display = False
        error.update("")
        if not text:
            return None
        try:
            domain = validate_domain(text)
        except InputError as exc:
            error.update(plain(" ".join(str(exc).split()), "red"))
            error.display = True
            return None
        server = next((key for key, _ in SERVERS if self.query_one(f"#tls-proxy-{key}", RadioButton).value),
                      self.options.preselected if self.options is not None else "caddy")
        opened = frozenset(key for key, _ in OPEN_PATHS if self.query_one(f"#tls-open-{key}", Checkbox).value)
        return Choice(domain, server, opened)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "tls-domain":
            self.choice_changed()

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.choice_changed()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self.choice_changed()

    def choice_changed(self) -> None:
        choice = self.choice()
        if choice == self.session.choices.front_door and self.session.choices.selected.get(self.STEP):
            return
        self.session.choose_front_door(choice)
        if choice is None:
            self.query_one("#step-effect", Static).update(Text("Enter a domain to see the configuration.",
                                                               style="dim"))
            self.query_one("#tls-password").display = False
            return
        self.refresh_effect()

    # -- the generated configuration and its login -----------------------------------------------------------
    @work(thread=True, exclusive=True, group="step-effect", exit_on_error=False)
    def plan_effect(self, checks: set[str]) -> None:
        """Plan the front door the fields describe now; what a slower, older plan finds is dropped (a
        cancelled thread still finishes: typing a domain starts one plan per key)."""
        choice = self.session.choices.front_door
        login = None
        try:
            if choice is None:
                return
            step_plan = self.session.front_door_plan(choice, preview=True)
            login = next(iter(step_plan.plan.shown_secrets.values()), None)
            text = self.effect_text(step_plan)
        except Exception as exc:  # noqa: BLE001 - shown as one line, never a traceback
            from tui.errors import one_line

            text = "Cannot plan this step: " + one_line(exc)
        self.app.call_from_thread(self._show_plan, choice, text, login)

    def _show_plan(self, choice, text, login: str | None) -> None:
        if not self.is_attached or choice != self.session.choices.front_door:
            return  # the plan of a choice since changed: the current one's is on its way
        self.login = login  # the login is shown with the plan that made it (a failed plan has none)
        self._show_effect(text)
        self.show_password()

    def effect_text(self, step_plan):
        from checks.change.plan import Command, Link

        t = super().effect_text(step_plan)
        for c in step_plan.plan.changes:
            if isinstance(c, Link):
                t.append(f"\nlink {shown(c.path)} -> {shown(c.target)}")
            elif isinstance(c, Command) and c.description:
                t.append(f"\nthen: {shown(c.description)}", style="dim")
        return t

    def refresh_effect(self) -> None:
        self.login = None  # until the new plan says which
        self.query_one("#tls-password").display = False
        super().refresh_effect()

    def show_password(self) -> None:
        from checks.proxy.generate import LOGIN_USER

        pw = self.login
        panel = self.query_one("#tls-password", Static)
        if not pw or self.session.choices.front_door is None:
            panel.display = False
            return
        t = Text()
        t.append("Login: ", style="bold")
        t.append(f"{LOGIN_USER} / ")
        t.append(pw if self.revealed else MASK[0] * len(pw), style="bold green" if self.revealed else "bold")
        t.append("\n       v reveal · c copy · kept in the keyring once applied", style="dim")
        panel.update(t)
        panel.display = True

    def action_reveal(self) -> None:
        if not self.login:
            return
        self.revealed = not self.revealed
        self.show_password()

    def action_copy(self) -> None:
        pw = self.login
        if not pw or self.session.choices.front_door is None:
            self.notify("Enter a domain first: the login is made with the configuration.", severity="warning")
            return
        self.app.copy_to_clipboard(pw)
        self.notify("Copied the proxy login's password to the clipboard (through the terminal, OSC 52).")
