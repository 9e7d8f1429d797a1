"""The guided setup's steps and exposure profiles: which step takes care of which check."""

from __future__ import annotations

from dataclasses import dataclass

from checks.audit.catalog import CATALOG

#: The exposure profiles, each in one sentence.
PROFILES: dict[str, tuple[str, str]] = {
    "local": ("Local network only",
              "devices at home reach the API; database and Redis stay on this host."),
    "tailscale": ("Through Tailscale",
                  "your devices over your tailnet; the API listens on 127.0.0.1."),
    "internet": ("On the internet",
                 "anyone, via an HTTPS proxy with a login; the rest stays on 127.0.0.1."),
}


@dataclass(frozen=True, slots=True)
class Step:
    """One screen of the guided setup and the checks it takes care of."""

    id: str
    title: str
    checks: tuple[str, ...]
    default_off: tuple[str, ...] = ()
    """Fixes offered on this step that the user must ask for."""
    short: str = ""
    """A short name for narrow tables."""


#: The guided setup, in order. Each check belongs to exactly one step, so a
#: finding in the re-audit can jump to the screen that fixes it.
STEPS: tuple[Step, ...] = (
    Step("network", "Network exposure", ("NET-001", "NET-002", "NET-003", "NET-004", "NET-005", "NET-006", "NET-008",
                                        "NET-009"),
         default_off=("NET-002",), short="Network"),
    Step("password", "Database password and secrets",
         ("SEC-001", "SEC-002", "SEC-003", "SEC-004", "SEC-005", "SEC-006", "SEC-007"), short="Password, secrets"),
    Step("permissions", "File permissions", ("FS-001", "FS-002", "FS-003", "FS-004", "FS-005", "FS-006", "FS-007"),
         short="Permissions"),
    Step("containers", "Container hardening",
         ("DKR-001", "DKR-002", "DKR-003", "DKR-004", "DKR-005", "DKR-006", "DKR-007", "DKR-008", "DKR-009"),
         default_off=("DKR-001",), short="Containers"),
    Step("tls", "HTTPS (TLS)", ("TLS-001", "TLS-002", "TLS-003"), short="HTTPS"),
    Step("firewall", "Firewall", ("FW-001", "FW-002", "FW-003", "FW-004", "NET-007"), short="Firewall"),
    Step("backups", "Backups and monitoring", ("OPS-001", "OPS-002"), short="Backups"),
)
STEP_BY_ID = {s.id: s for s in STEPS}
STEP_OF_CHECK = {cid: s.id for s in STEPS for cid in s.checks}
#: Steps whose changes are planned and applied (the others explain and hand over).
APPLY_STEPS = ("network", "password", "permissions", "containers")

assert set(STEP_OF_CHECK) == {c.id for c in CATALOG}, "every check belongs to one step"
