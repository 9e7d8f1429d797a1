#!/usr/bin/env python3
"""Firewall step speed (issue 12): planning it, and applying and verifying it with real ufw.

1. Planning (target: at most 300 ms): ``wanted()`` plus the ufw backend's ``plan()`` alone, and the
   whole fixer as ``dester-harden fix`` runs it (the Planner on the demo installation, then
   ``fix_firewall`` and the plan's assembly), with ``--root`` a temporary copy of this machine's
   /etc/ufw and /etc/default/ufw (copied, never run: ufw itself is not started for this part).
2. Apply and verify (target: at most 2 s, the confirmation wait excluded): the planned files written
   into the firewall sandbox's private /etc copies (tests/fwlab.py: its own network and mount
   namespace), then ``python -m checks.firewall.sync ufw`` inside it, alternately from ufw inactive
   (the first apply) and from ufw active (a re-apply after the old files came back). Skipped with the
   reason where the sandbox cannot run (not root, no ufw). The host's firewall files and rules are
   compared before and after, and a difference is printed loudly.

Each figure is the median of --runs (default 5).

Usage: .venv/bin/python benchmarks/firewall_plan.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from checks.core.sysroot import SystemRoot  # noqa: E402
from checks.firewall import ufw  # noqa: E402
from checks.firewall.wants import wanted  # noqa: E402
from checks.install.discovery import discover  # noqa: E402
from checks.live.fwmodel import FirewallState, SshSession  # noqa: E402
from checks.live.model import LiveState  # noqa: E402

COMPOSE = """services:
  api:
    image: desterlib/api:1.4.2
    ports:
      - "3001:3001"
  postgres:
    image: postgres:15-alpine
    ports:
      - "5432:5432"
  redis:
    image: redis:7-alpine
    ports:
      - "6379:6379"
"""
FW = FirewallState("ufw", False, ufw_installed=True, lan_networks=("10.78.0.0/24", "fd78::/64"), ssh_ports=(22,),
                   ssh_session=SshSession("10.78.0.2", 40000, "10.78.0.1", 22))


def median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def planning(runs: int) -> None:
    from checks.fix.firewall import fix_firewall
    from checks.fix.planner import Planner

    with tempfile.TemporaryDirectory() as tmp:
        inst_dir = Path(tmp) / "install"
        inst_dir.mkdir()
        (inst_dir / "docker-compose.yml").write_text(COMPOSE)
        root = Path(tmp) / "root"
        (root / "etc" / "default").mkdir(parents=True)
        shutil.copytree("/etc/ufw", root / "etc" / "ufw")
        shutil.copy2("/etc/default/ufw", root / "etc" / "default" / "ufw")
        sr = SystemRoot(str(root))
        inst = discover(str(inst_dir))

        def backend() -> None:
            ufw.plan(wanted("local", FW, inst, None), FW, sr, inst)

        def fixer() -> None:
            p = Planner(str(inst_dir), "local", host_root=str(root), live=LiveState(project="install", firewall=FW))
            fix_firewall(p)
            plan = p._assemble(["FW-001"])
            assert plan.revert_after and not plan.refusals, plan.refusals

        print(f"planning: wanted() + ufw.plan()          {median(backend, runs) * 1000:7.1f} ms")
        print(f"planning: Planner + fix_firewall + plan  {median(fixer, runs) * 1000:7.1f} ms   (target 300 ms)")


def apply_verify(runs: int) -> None:
    sys.path.insert(0, REPO)
    from tests.fwguard import host_snapshot, snapshot_diff
    from tests.fwlab import FwLabUnavailable, FwSandbox, preflight

    why = preflight()
    if why:
        print(f"apply+verify: skipped ({why})")
        return
    before_host = host_snapshot()
    try:
        sb = FwSandbox.start()
    except FwLabUnavailable as exc:
        print(f"apply+verify: skipped ({exc})")
        return
    try:
        sr = SystemRoot(str(sb.root / "private"))
        bp = ufw.plan(wanted("local", FW, discover_demo(sb.root), None), FW, sr)
        sync = ["env", f"PYTHONPATH={REPO}", sys.executable, "-m", "checks.firewall.sync", "ufw", "--root",
                str(sb.root / "private")]
        first: list[float] = []
        again: list[float] = []
        for i in range(runs):
            for path, _before, after, _m, _o in bp.edits:
                Path(path).write_bytes(after)
            t0 = time.perf_counter()
            done = sb.run(sync, timeout=60)
            (first if i == 0 else again).append(time.perf_counter() - t0)
            if done.returncode:
                print(f"apply+verify: the sync failed: {done.stderr.strip()}")
                return
            if i < runs - 1:  # back to the old files: the next apply starts from an active ufw with them loaded
                for path, before, _after, _m, _o in bp.edits:
                    assert before is not None
                    Path(path).write_bytes(before)
                sb.run(["/lib/ufw/ufw-init", "force-reload"])
        print(f"apply+verify: first apply (ufw inactive)  {first[0]:7.2f} s   (target 2 s)")
        if again:
            print(f"apply+verify: re-apply (ufw active)       {statistics.median(again):7.2f} s   (target 2 s)")
        print(f"  (load average now: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; turning ufw on is "
              "ufw-init's own force-reload)")
    finally:
        sb.close()
    diff = snapshot_diff(before_host, host_snapshot())
    print("host firewall unchanged" if not diff else "THE HOST'S FIREWALL CHANGED:\n  " + "\n  ".join(diff))


def discover_demo(where: Path):  # type: ignore[no-untyped-def]
    d = where / "bench-install"
    d.mkdir(exist_ok=True)
    (d / "docker-compose.yml").write_text(COMPOSE)
    return discover(str(d))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    planning(args.runs)
    apply_verify(max(2, args.runs))


if __name__ == "__main__":
    main()
