#!/usr/bin/env python3
"""firewalld and nft backend speed: planning (target 300 ms) and the sync that applies and verifies (target 2 s).

1. ``checks.firewall.firewalld.plan`` for the local profile on a copy of this machine's
   /etc/firewalld (a temp --root), firewalld's own parser validating the zone; and the same plan
   again on the written zone (unchanged: no validation).
2. ``checks.firewall.nft.plan`` with ``nft -c`` in an empty network namespace.
3. With ``--sync`` (root, ufw/firewalld/nft installed): the syncs in the firewall lab's sandbox
   (tests/fwlab.py: a private network + mount namespace, private /etc/firewalld and dbus; the
   host's firewall is never touched): ``firewalld.sync`` (reload + verify) and ``nft.sync`` (load +
   verify), each in the process ``python -m checks.firewall.sync`` would be.

Each figure is the median of --runs (default 5). Usage:
``.venv/bin/python benchmarks/firewall_backends.py [--runs N] [--sync]``
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
sys.path.insert(0, os.path.dirname(HERE))

from checks.core.sysroot import SystemRoot  # noqa: E402
from checks.firewall import firewalld, nft  # noqa: E402
from checks.firewall.wants import Want  # noqa: E402
from checks.live.fwmodel import FirewallState  # noqa: E402

WANTS = [Want("allow", 22, why="SSH"), Want("allow", 3001, source="192.168.1.0/24", forwarded=True),
         Want("allow", 3001, source="fd00:1::/64", forwarded=True), Want("deny", 5432, forwarded=True),
         Want("deny", 6379, forwarded=True), Want("deny", None)]


def median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def show(name: str, seconds: float, target: float | None = None) -> None:
    mark = "" if target is None else ("  ok" if seconds <= target else f"  OVER the {target:g} s target")
    print(f"{name:>46}: {seconds * 1000:8.1f} ms{mark}")


_SYNC = """
import sys, time
from checks.core.sysroot import SystemRoot
from checks.firewall import firewalld, nft
from checks.firewall.sysfiles import run
mod = {"firewalld": firewalld, "nft": nft}[sys.argv[1]]
t0 = time.perf_counter()
mod.sync(SystemRoot(sys.argv[2]), run)
print(time.perf_counter() - t0)
"""


def syncs(runs: int) -> None:
    from tests.fwlab import REPO, FwLabUnavailable, FwSandbox

    try:
        sb = FwSandbox.start()
    except FwLabUnavailable as exc:
        print(f"{'sync':>46}: not measured ({exc})")
        return
    try:
        sb.start_firewalld()
        host = SystemRoot(str(sb.root / "private"))
        bp = firewalld.plan(WANTS, FirewallState("firewalld", True, version="1.3.3", zone="public"), host, None)
        for path, _b, after, _m, _o in bp.edits:
            Path(path).write_bytes(after)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "etc").mkdir()
            (Path(tmp) / "etc/nftables.conf").write_text("flush ruleset\n")
            for path, _b, after, _m, _o in nft.plan(WANTS, FirewallState("none", False), SystemRoot(tmp), None).edits:
                Path(path).write_bytes(after)
            for backend, root in (("firewalld", "/"), ("nft", tmp)):
                inner, outer = [], []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    done = sb.run([sys.executable, "-c", _SYNC, backend, root], env={"PYTHONPATH": str(REPO)})
                    outer.append(time.perf_counter() - t0)
                    if done.returncode:
                        raise SystemExit(f"{backend} sync failed: {done.stderr.strip()[-300:]}")
                    inner.append(float(done.stdout.strip()))
                show(f"{backend}.sync (apply + verify)", statistics.median(inner), 2.0)
                show(f"{backend} sync process (with its imports)", statistics.median(outer), 2.0)
    finally:
        sb.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sync", action="store_true", help="also the syncs, in the firewall lab's sandbox (root)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if os.path.isdir("/etc/firewalld"):
            shutil.copytree("/etc/firewalld", os.path.join(tmp, "etc/firewalld"), symlinks=True)
            os.makedirs(os.path.join(tmp, "etc/firewalld/zones"), exist_ok=True)
            root = SystemRoot(tmp)
            fw = FirewallState("firewalld", True, version="1.3.3", zone="public")
            zone = os.path.join(tmp, "etc/firewalld/zones/public.xml")

            def fresh() -> None:
                if os.path.exists(zone):
                    os.unlink(zone)
                firewalld.plan(WANTS, fw, root, None)

            show("firewalld.plan (zone validated)", median(fresh, args.runs), 0.3)
            Path(zone).write_bytes(firewalld.plan(WANTS, fw, root, None).edits[0][2])
            show("firewalld.plan again (zone unchanged)", median(lambda: firewalld.plan(WANTS, fw, root, None),
                                                                  args.runs), 0.3)
        else:
            print(f"{'firewalld.plan':>46}: not measured (firewalld is not installed)")
        os.makedirs(os.path.join(tmp, "etc"), exist_ok=True)
        Path(tmp, "etc/nftables.conf").write_text("flush ruleset\n")
        show("nft.plan (nft -c)", median(lambda: nft.plan(WANTS, FirewallState("none", False), SystemRoot(tmp),
                                                          None), args.runs), 0.3)
    if args.sync:
        syncs(args.runs)


if __name__ == "__main__":
    main()
