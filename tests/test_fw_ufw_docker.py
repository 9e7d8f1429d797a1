"""The ufw plan against a real Docker publish (the firewall lab with dockerd, tests/fwdocker.py).

Before: ``ufw deny 5432`` is active, yet the LAN client reaches the Docker-published 5432 (DNAT goes
through FORWARD, not INPUT). The fixer's plan (local profile) is applied the way the engine applies
it, inside the sandbox: the planned files written into the private /etc copies, then the plan's
last command, the sync. After: 5432 is closed to the LAN over IPv4 and IPv6, 3001 still answers the
LAN network, loopback reaches both. Undo (the old files back, then the first command's inverse: the
sync again) gives the LAN exactly what it had before. The same through ``dester-harden fix --only
FW-001,NET-007 --yes --root`` and ``undo`` run inside the sandbox, where the live firewall read
(checks.live.firewall, another part of issue 12) is in the tree. Marked ``firewall``; skips with the reason
where the lab cannot run (fails under CI=true).
"""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import pytest

from checks.change.plan import Command, FileEdit
from checks.live.fwmodel import FirewallState, SshSession
from checks.live.model import LiveState

pytestmark = pytest.mark.firewall
REPO = Path(__file__).resolve().parent.parent
LAN = "10.78.0.1"
LAN6 = "fd78::1"


def _run_cmd(lab, argv) -> None:
    done = lab.run(["env", f"PYTHONPATH={REPO}", *argv], timeout=60)
    assert done.returncode == 0, done.stderr


def _audit(lab, root: str, env: dict[str, str]) -> dict[str, str]:
    """``dester-harden audit --format json`` of the firewall checks in the lab: check id -> status.

    Without ``--root`` (an audit under --root reads no running system): inside the sandbox /etc/ufw is
    ``root``'s copy, bound over it, so the audit reads the files the fix wrote."""
    import json

    done = lab.tool(["audit", "--dir", str(lab.install), "--only", "FW-001,FW-002,FW-004,NET-007",
                     "--format", "json"], env=env)
    assert done.stdout, done.stderr[-2000:]
    return {f["id"]: f["status"] if f["status"] != "skipped" else f"skipped: {f.get('reason')}"
            for f in json.loads(done.stdout)["findings"]}


def _reach(lab) -> dict[str, str]:
    return {"5432": lab.lan_probe(LAN, 5432), "5432v6": lab.lan_probe(LAN6, 5432), "3001": lab.lan_probe(LAN, 3001),
            "lo5432": lab.server_probe("127.0.0.1", 5432), "lo3001": lab.server_probe("127.0.0.1", 3001)}


def test_the_ufw_plan_closes_the_published_database_to_the_lan_and_undo_reopens_it(fw_lab):
    from checks.fix.firewall import fix_firewall
    from checks.fix.planner import Planner

    lab = fw_lab
    lab.run(["ufw", "--force", "enable"], check=True)
    lab.run(["ufw", "deny", "5432"], check=True)
    before = _reach(lab)
    assert before["5432"] == "open"  # the bypass is real: ufw's deny does not see DNAT'ed traffic
    assert before["3001"] == "open"
    fw = FirewallState("ufw", True, ufw_installed=True, lan_networks=("10.78.0.0/24", "fd78::/64"),
                       ssh_ports=(22,), ssh_session=SshSession("10.78.0.2", 40000, LAN, 22))
    t0 = time.perf_counter()
    p = Planner(str(lab.install), "local", host_root=str(lab.root / "private"),
                live=LiveState(project=lab.install.project, firewall=fw))
    fix_firewall(p)
    plan = p._assemble(["FW-001", "NET-007"])
    print(f"\nplanning the firewall step (Planner + fixer): {(time.perf_counter() - t0) * 1000:.0f} ms")
    assert plan.revert_after == 60.0 and not plan.refusals
    edits = [c for c in plan.changes if isinstance(c, FileEdit)]
    first, last = plan.changes[0], plan.changes[-1]
    assert isinstance(first, Command) and isinstance(last, Command)
    t0 = time.perf_counter()
    for e in edits:
        Path(e.path).write_bytes(e.after)
    _run_cmd(lab, last.argv)
    print(f"apply+verify (files + sync): {time.perf_counter() - t0:.2f} s")
    after = _reach(lab)
    assert after["5432"] != "open" and after["5432v6"] != "open", after
    assert after["3001"] == "open" and after["lo5432"] == "open" and after["lo3001"] == "open", after
    for e in edits:  # undo: the files back, then the re-sync (the first command's inverse)
        assert e.before is not None
        Path(e.path).write_bytes(e.before)
    _run_cmd(lab, first.inverse)
    assert _reach(lab) == before


#: The tests turn the live layer and the firewall read off (tests/conftest.py); inside the sandbox they are the point.
ON = {"DESTER_HARDEN_NO_LIVE": "0", "DESTER_HARDEN_NO_FIREWALL": "0"}


@pytest.mark.skipif(importlib.util.find_spec("checks.live.firewall") is None,
                    reason="the live firewall read (checks.live.firewall, issue 12's detection) is not in this tree")
def test_fix_only_fw_001_net_007_through_the_cli_closes_5432_to_the_lan_and_undo_reopens_it(fw_lab):
    lab = fw_lab
    lab.run(["ufw", "--force", "enable"], check=True)
    lab.run(["ufw", "deny", "5432"], check=True)
    before = _reach(lab)
    assert before["5432"] == "open"
    root = str(lab.root / "private")
    env = {**lab.env, **ON}
    assert _audit(lab, root, env)["NET-007"] == "fail"  # the bypass is real, and the audit says so
    done = lab.tool(["fix", "--dir", str(lab.install), "--only", "FW-001,NET-007", "--yes", "--root", root], env=env)
    m = re.search(r"Applied as transaction (\S+) ", done.stdout)
    assert m, (done.stdout[-2000:], done.stderr[-2000:])
    assert "Firewall (ufw, local profile), in this order: allow 22/tcp;" in done.stdout
    after = _reach(lab)
    assert after["5432"] != "open" and after["5432v6"] != "open", after
    assert after["3001"] == "open" and after["lo5432"] == "open" and after["lo3001"] == "open", after
    rows = [ln for ln in lab.run(["ufw", "status", "numbered"], check=True).stdout.splitlines() if ln.startswith("[")]
    assert rows[0].startswith("[ 1] 22/tcp")
    found = _audit(lab, root, env)
    assert (found["NET-007"], found["FW-001"], found["FW-002"], found["FW-004"]) == ("pass",) * 4, found
    undo = lab.tool(["undo", "--dir", str(lab.install), "--root", root, "--yes", m.group(1)], env=env)
    assert undo.returncode == 0, (undo.stdout[-2000:], undo.stderr[-2000:])
    assert _reach(lab) == before
    assert lab.run(["iptables", "-S", "DH-DOCKER"]).returncode != 0
    assert _audit(lab, root, env)["NET-007"] == "fail"
