"""The host firewall: the situation as it is (what Docker lets past it), the rules the profile wants,
and the plan as file diffs and commands.

Applying the plan (on the review screen) arms confirm-or-revert: the rules are taken back by
themselves unless the user keeps them in time (:mod:`screens.countdown`). What is read, planned
and checked (FW-003, the SSH lockout guard) is the session's and the use cases'; the screen
shows it.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from checks.core.textio import shown
from tui.widgets import clip

from ._base import FixStepScreen


class FirewallScreen(FixStepScreen):
    """Rules for the chosen profile on ufw, firewalld or nft, that also hold on Docker's forward path."""

    STEP = "firewall"
    NAME = "Firewall"
    CSS_PATH = "firewall.tcss"
    INTRO = ("The firewall is the second wall behind the port bindings: Docker publishes ports past ufw's and "
             "firewalld's own rules, so the plan also closes Docker's forward path. SSH is always allowed "
             "first, and the rules are taken back by themselves unless you keep them within a minute.")
    HELP = ("Docker writes its own iptables rules, so a port Docker publishes on 0.0.0.0 is reachable even when "
            "`ufw status` says deny: the packets are forwarded to the container, never seen by ufw's input rules. "
            "The plan therefore adds rules on that forward path (DOCKER-USER, kept in /etc/ufw/after.rules; "
            "Docker's nftables backend: a table of dester-harden's own; firewalld 2.3+: StrictForwardPorts).\n\n"
            "- **FW-001** a host firewall is active; **FW-002** it allows no database or cache port; "
            "**FW-004** its rules survive a reboot and a container restart; **NET-007** Docker's published "
            "ports do not bypass it; **FW-003** no plan cuts off this SSH session (such a plan is refused).\n\n"
            "After applying, a countdown asks you to keep the rules: if this session is cut off, they are "
            "reverted by themselves (also after a reboot). `dester-harden confirm` keeps them from another "
            "terminal.")

    def compose_extra(self):
        yield Static("", id="firewall-now")

    def effect_text(self, step_plan):
        """The rules in words, one per line in their order, then which files change and how much; the
        exact diffs and commands are in the preview on review (80 columns cannot hold user.rules)."""
        from checks.change.plan import FileEdit, Link
        from checks.fix.firewall import BY_HAND, rules_note

        plan = step_plan.plan
        width = max(30, (self.size.width or 80) - 8)
        t = Text()
        if plan.empty:
            t.append("No change selected." if not plan.refusals else "Nothing can be changed automatically.")
        else:
            t.append(f"This step alone: score {step_plan.score_before} -> {step_plan.score_after}\n", style="bold")
        rules = rules_note(plan.notes)
        if rules is not None and not plan.empty:
            t.append(rules[0] + ", in this order:\n")
            for i, rule in enumerate(rules[1], 1):
                t.append(f"  {i}. " + clip(shown(rule), width - 5) + "\n", style="green" if i == 1 else "")
        for c in plan.changes:
            if isinstance(c, FileEdit):
                before = (c.before or b"").decode("utf-8", "replace").splitlines()
                after = (c.after or b"").decode("utf-8", "replace").splitlines()
                grown = "new file" if c.before is None else f"{len(after) - len(before):+d} lines"
                t.append(clip(f"{self.system_path(c.path)} ({grown})", width) + "\n", style="dim")
            elif isinstance(c, Link):
                t.append(clip(f"{self.system_path(c.path)} -> {c.target} (link)", width) + "\n", style="dim")
        if plan.revert_after and not plan.empty:
            t.append(f"On trial: taken back by itself after {plan.revert_after:g} s unless you keep it.\n",
                     style="yellow")
        for r in plan.refusals:
            t.append(f"\nNot changed: {r.check}: {shown(r.reason)}", style="yellow")
        for n in plan.notes:
            if (rules is None or not n.startswith(rules[0])) and not n.startswith(BY_HAND):
                t.append(f"\nNote: {shown(n)}", style="dim")
        t.rstrip()
        return t

    def system_path(self, path: str) -> str:
        """A system file by the name it has on the server (``/etc/ufw/user.rules``, also under ``--root``)."""
        from checks.core.sysroot import SystemRoot

        try:
            return shown(SystemRoot(self.session.host_root or "/").system(path))
        except ValueError:  # not under --root: a file of the installation
            return self.session.display(path)

    def compose_after(self):
        yield Static("", id="firewall-findings")

    def setup(self) -> None:
        super().setup()
        self.show_live(self.dester_app.live, pending=not self.dester_app.live_ready)
        self.show_findings()

    def show_findings(self) -> None:
        """Where each of the step's checks stands, one line each; why one was not checked."""
        from checks.assistant.steps import STEP_BY_ID
        from checks.audit.findings import FAIL, PASS, SKIPPED

        report = self.session.report
        width = max(30, (self.size.width or 80) - 6)
        t = Text()
        for cid in STEP_BY_ID[self.STEP].checks:
            f = next((x for x in (report.findings if report else []) if x.id == cid), None)
            if f is None:
                continue
            word, style = {FAIL: ("✗", "red"), PASS: ("✓", "green"), SKIPPED: ("?", "yellow")}.get(f.status,
                                                                                                 ("!", "red"))
            t.append(f"{word} ", style=style)
            t.append(f"{cid} ", style="bold")
            t.append(clip(f.check.title, width - 10) + "\n")
            if f.status not in (PASS, FAIL) and f.reason:
                t.append("  " + clip(shown(f.reason), width - 2) + "\n", style="dim")
        t.rstrip()
        self.query_one("#firewall-findings", Static).update(t)

    def show_live(self, live, pending: bool = False) -> None:
        """The detected situation, one line each ("ufw active, but 5432 reachable from the LAN through Docker")."""
        from checks.firewall.situation import situation_lines
        from screens._live import CHECKING, engine_line, hanging

        box = self.query_one("#firewall-now", Static)
        if pending:
            box.update(Text(CHECKING, style="dim"))
            return
        width = max(30, (self.size.width or 80) - 10)
        t = Text()
        t.append("Now: ", style="bold")
        if live is None:
            t.append("the running system was not checked, so nothing can be planned here.", style="yellow")
            box.update(t)
            return
        self.show_findings()  # the live state brings the audit's firewall checks with it
        lines = situation_lines(live.firewall, live, live.firewall_error)
        if not live.docker_reachable:
            lines.append(engine_line(live, self.dester_app.euid))
        for i, line in enumerate(lines):  # wrapped, not cut: the reason is the point of each line
            bad = line.startswith(("but ", "no host firewall", "iptables-legacy")) or "open to the network" in line
            t.append(("\n     " if i else "") + hanging("Now: ", shown(line), width + 5)[5:],
                     style="red" if bad else "")
        box.update(t)
