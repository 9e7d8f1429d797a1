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

    def setup(self) -> None:
        super().setup()
        self.show_live(self.dester_app.live, pending=not self.dester_app.live_ready)

    def show_live(self, live, pending: bool = False) -> None:
        """The detected situation, one line each ("ufw active, but 5432 reachable from the LAN through Docker")."""
        from checks.firewall.situation import situation_lines
        from screens._live import CHECKING, engine_line

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
        lines = situation_lines(live.firewall, live, live.firewall_error)
        if not live.docker_reachable:
            lines.append(engine_line(live, self.dester_app.euid))
        for i, line in enumerate(lines):
            bad = line.startswith(("but ", "no host firewall", "iptables-legacy")) or "open to the network" in line
            t.append(("\n     " if i else "") + clip(shown(line), width), style="red" if bad else "")
        box.update(t)
