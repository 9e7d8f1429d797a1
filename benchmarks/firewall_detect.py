#!/usr/bin/env python3
"""Firewall read speed: prints how long :func:`checks.live.firewall.firewall_state` takes (issue 12: the
whole read well under 300 ms).

The host's own firewall is never touched: the script re-runs itself in a private network and mount
namespace (``unshare --net --mount``, root needed) with private copies of /etc/ufw and /etc/default/ufw
bind-mounted over them and a private /run, enables ufw there with a few rules and a DOCKER-USER drop
(or, with ``--firewalld``, starts a private system bus and firewalld on a copy of /etc/firewalld),
then reads the state ``--runs`` times.

Usage: sudo .venv/bin/python benchmarks/firewall_detect.py [--runs N] [--firewalld]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
INSIDE = "DESTER_HARDEN_BENCH_NS"


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _firewalld(work: str) -> list[subprocess.Popen[bytes]]:
    """A private system bus and firewalld on the private /run and /etc/firewalld copy; waits for RUNNING."""
    _sh("mount", "--bind", os.path.join(work, "firewalld"), "/etc/firewalld")
    os.makedirs("/run/dbus", exist_ok=True)
    bus = subprocess.Popen(["dbus-daemon", "--system", "--nofork", "--nopidfile"], stderr=subprocess.DEVNULL)
    while not os.path.exists("/run/dbus/system_bus_socket"):
        time.sleep(0.02)
    daemon = subprocess.Popen(["firewalld", "--nofork", "--log-target", "file", "--log-file",
                               os.path.join(work, "firewalld.log")], stderr=subprocess.DEVNULL)
    probe = ["busctl", "--system", "get-property", "org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1",
             "org.fedoraproject.FirewallD1", "state"]
    for _ in range(600):
        if "RUNNING" in subprocess.run(probe, capture_output=True, text=True).stdout:
            break
        time.sleep(0.05)
    return [daemon, bus]


def inside(runs: int, work: str, firewalld: bool) -> None:
    for src, dst in ((os.path.join(work, "ufw"), "/etc/ufw"), (os.path.join(work, "default-ufw"), "/etc/default/ufw")):
        _sh("mount", "--bind", src, dst)
    _sh("mount", "-t", "tmpfs", "bench-run", "/run")
    _sh("ip", "link", "set", "lo", "up")
    if firewalld:
        children = _firewalld(work)
        try:
            _measure(runs, "firewalld running, default zone")
        finally:
            for child in children:  # firewalld first: stopped after its bus it would leave its table
                child.terminate()
                child.wait(10)
        return
    _sh("ufw", "--force", "enable")
    for rule in (["allow", "22/tcp"], ["allow", "from", "10.0.0.0/8", "to", "any", "port", "3001"], ["deny", "5432"]):
        _sh("ufw", *rule)
    _sh("iptables", "-N", "DOCKER-USER")
    _sh("iptables", "-A", "DOCKER-USER", "-p", "tcp", "-m", "conntrack", "--ctorigdstport", "5432", "-j", "DROP")

    _measure(runs, "ufw active, DOCKER-USER")


def _measure(runs: int, what: str) -> None:
    from checks.live.firewall import firewall_state

    state = firewall_state()
    assert state.active, state
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        firewall_state()
        times.append((time.perf_counter() - started) * 1000)
    print(f"firewall_state ({state.frontend} {state.version}: {what}, {len(state.rules)} rules): "
          f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms over {runs} runs (target < 300 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--firewalld", action="store_true", help="measure with firewalld running instead of ufw")
    args = parser.parse_args()
    if os.environ.get(INSIDE):
        inside(args.runs, os.environ[INSIDE], args.firewalld)
        return
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ufw"):
        sys.exit("needs root, unshare and ufw (it runs ufw in a private namespace, never on the host)")
    with tempfile.TemporaryDirectory(prefix="fw-bench-") as work:
        shutil.copytree("/etc/ufw", os.path.join(work, "ufw"), symlinks=True)
        shutil.copy2("/etc/default/ufw", os.path.join(work, "default-ufw"))
        if args.firewalld:
            shutil.copytree("/etc/firewalld", os.path.join(work, "firewalld"), symlinks=True)
        env = dict(os.environ, **{INSIDE: work})
        extra = ["--firewalld"] if args.firewalld else []
        code = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", sys.executable,
                               os.path.abspath(__file__), "--runs", str(args.runs), *extra], env=env).returncode
    sys.exit(code)


if __name__ == "__main__":
    main()
