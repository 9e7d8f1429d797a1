"""Which fixer serves which check, and in what order they run.

A fixer is a function of the :class:`checks.fix.planner.Planner` in its area's module
(checks/fix/net.py, sec.py, ...); this registry is the one list the planner runs,
the assistant reads (which checks it can fix) and the layout test checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from checks.fix import dkr, firewall, fs, net, ops, sec, secmove, securl, tls

if TYPE_CHECKING:  # pragma: no cover - the planner imports the registry, not the other way round
    from checks.fix.planner import Planner


@dataclass(frozen=True, slots=True)
class Fixer:
    """One check's fixer: ``run`` plans its fix on the planner's overlay."""

    id: str
    default: bool
    """Part of ``dester-harden fix`` without ``--only`` (else offered: only when asked for)."""
    run: Callable[[Planner], None]


#: In the order they run: secrets move before they are rotated; modes come last,
#: when it is known which files still hold secrets.
FIXERS: tuple[Fixer, ...] = (
    Fixer("SEC-003", True, secmove.fix_sec_003),
    Fixer("SEC-001", True, sec.fix_sec_001),
    Fixer("SEC-002", True, sec.fix_sec_002),
    Fixer("OPS-002", True, ops.fix_ops_002),
    Fixer("SEC-004", True, securl.fix_sec_004),
    Fixer("SEC-005", True, securl.fix_sec_005),
    Fixer("SEC-006", True, sec.fix_sec_006),
    Fixer("SEC-007", True, sec.fix_sec_007),
    Fixer("NET-002", False, net.fix_net_002),
    Fixer("NET-001", True, net.fix_net_001),
    Fixer("NET-003", True, net.fix_net_003),
    Fixer("NET-004", True, net.fix_net_004),
    Fixer("NET-005", True, net.fix_net_005),
    Fixer("TLS-001", True, tls.fix_tls),
    Fixer("TLS-002", True, tls.fix_tls),
    Fixer("TLS-003", True, tls.fix_tls),
    # Offered only: the host firewall can cut every remote access (checks/fix/firewall.py says why).
    Fixer("FW-001", False, firewall.fix_firewall),
    Fixer("FW-002", False, firewall.fix_firewall),
    Fixer("NET-007", False, firewall.fix_firewall),
    Fixer("FW-004", False, firewall.fix_firewall),
    Fixer("FS-004", True, fs.fix_fs_004),
    Fixer("DKR-001", False, dkr.fix_dkr_001),
    Fixer("DKR-002", True, dkr.fix_dkr_002),
    Fixer("DKR-003", True, dkr.fix_dkr_003),
    Fixer("DKR-006", True, dkr.fix_dkr_006),
    Fixer("DKR-008", True, dkr.fix_dkr_008),
    Fixer("FS-001", True, fs.fix_fs_001),
    Fixer("FS-002", True, fs.fix_fs_002),
    Fixer("FS-003", True, fs.fix_fs_003),
    Fixer("FS-006", True, fs.fix_fs_006),
    Fixer("FS-007", True, fs.fix_fs_007),
    Fixer("FS-005", True, fs.fix_fs_005),
    Fixer("NET-006", True, net.fix_net_006),
    Fixer("DKR-009", True, dkr.fix_dkr_009),
)
