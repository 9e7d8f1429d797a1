"""The host firewall: the rules it should hold, and why they are not applied from here yet."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from ._base import InfoStepScreen

PLANNED_RULES = {
    "local": ["allow 22/tcp (SSH) before anything else, so this session is never cut off",
              "allow 3001/tcp (the API) from your LAN only",
              "deny 5432/tcp (PostgreSQL) and 6379/tcp (Redis) from everywhere",
              "default: deny incoming, allow outgoing"],
    "tailscale": ["allow 22/tcp (SSH) before anything else, so this session is never cut off",
                  "allow everything on tailscale0, nothing else to the API",
                  "deny 5432/tcp and 6379/tcp from everywhere",
                  "default: deny incoming, allow outgoing"],
    "internet": ["allow 22/tcp (SSH) before anything else, so this session is never cut off",
                 "allow 80/tcp and 443/tcp (the HTTPS proxy)",
                 "deny 3001/tcp, 5432/tcp and 6379/tcp from everywhere",
                 "default: deny incoming, allow outgoing"],
}


class FirewallScreen(InfoStepScreen):
    """The firewall rules for the chosen profile (applied by the live-system step)."""

    STEP = "firewall"
    NAME = "Firewall"
    CSS_PATH = "firewall.tcss"
    INTRO = ("A host firewall (ufw or firewalld) is the second wall behind the port bindings. Reading and changing "
             "the live firewall arrives with the live-system step of dester-harden, which applies these rules "
             "with an undo and never cuts off your SSH session. Not available here yet: the checks below could not "
             "read the running system.")
    HELP = ("Docker writes its own iptables rules, so a port Docker publishes on 0.0.0.0 is reachable even when ufw "
            "says deny: that is why the network step binds ports to 127.0.0.1 first. The firewall then closes "
            "everything else.\n\nThe rules shown follow the exposure profile you chose on the network step.")

    def setup(self) -> None:
        super().setup()
        profile = self.session.choices.profile
        t = Text(f"Planned rules for the {profile} profile:\n", style="bold")
        for rule in PLANNED_RULES[profile]:
            t.append(f"  • {rule}\n")
        body = self.query_one("#step-body")
        body.mount(Static(t, id="firewall-rules"), after=self.query_one(".step-intro"))
