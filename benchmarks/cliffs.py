#!/usr/bin/env python3
"""Cliffs: prints the figures issue 8 asks for (item 9, "no cliffs").

1. `dester-harden audit --format json` in a fresh process (median of --runs) of
   a compose file with one 2 MB value (a run of letters and digits: the URL
   scan used to try its scheme pattern at every character of it, scanning to
   the end of the run each time), and of one with a 0.5 MB value: the
   ratio is the growth from a quarter of the size (linear: about 4, less while
   start-up dominates).
2. `dester-harden fix --dry-run` of 200 services and of 50 services (each
   service needs two fixes: no-new-privileges and log rotation): the ratio is
   the growth from a quarter of the services.

Each run has a --timeout (seconds); a run that hits it prints as "> N s".

Usage: .venv/bin/python benchmarks/cliffs.py [--runs N] [--timeout S] [--source DIR]

--source runs another checkout's code (e.g. `git archive main | tar -x -C DIR`)
with this interpreter, for before/after figures.
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


def console_script(source: str | None = None) -> list[str]:
    if source:
        return [sys.executable, "-m", "tui"]
    exe = os.path.join(os.path.dirname(sys.executable), "dester-harden")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "tui"]


def wall(cmd: list[str], runs: int, timeout: float, cwd: str | None = None) -> float | None:
    """Median wall time of ``cmd``, or None when a run exceeds ``timeout``.

    Exit 2 or 3 (bad input, internal error) is not a measurement: it stops the benchmark."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
                                  timeout=timeout, cwd=cwd)
        except subprocess.TimeoutExpired:
            return None
        times.append(time.perf_counter() - t0)
        if proc.returncode not in (0, 1):
            sys.exit(f"{' '.join(cmd[-6:])}: exit {proc.returncode}: {proc.stderr.strip()[:300]}")
    return statistics.median(times)


def big_value_install(root: str, size: int) -> str:
    """DesterLib's API service with one ``size``-character value: a blob of letters and
    digits (a hex or base62 dump pasted into an env var), beside an ordinary database URL."""
    os.makedirs(root)
    blob = ("0123456789abcdefABCDEF" * (size // 22 + 1))[:size]
    with open(os.path.join(root, "docker-compose.yml"), "w") as fh:
        fh.write("services:\n  api:\n    image: desterlib/api:1\n    environment:\n"
                 f"      LICENSE_BLOB: {blob}\n"
                 '      DATABASE_URL: "postgresql://dester:p@ss/word@postgres:5432/desterlib"\n')
    return root


def many_services_install(root: str, n: int) -> str:
    """``n`` services, each missing no-new-privileges (DKR-003) and log rotation (DKR-008)."""
    os.makedirs(root)
    parts = ["services:\n"]
    for i in range(n):
        parts.append(f"  svc{i}:\n    image: example/app{i}:1.{i}\n    restart: unless-stopped\n"
                     f"    environment:\n      NODE_ENV: production\n")
    with open(os.path.join(root, "docker-compose.yml"), "w") as fh:
        fh.write("".join(parts))
    return root


def fmt(t: float | None, timeout: float) -> str:
    return f"> {timeout:.0f} s" if t is None else f"{t * 1000:9.1f} ms"


def ratio(big: float | None, small: float | None) -> str:
    if big is None or small is None:
        return "n/a (a run timed out)"
    return f"{big / small:.2f}x"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--source", help="the checkout whose code runs (default: the installed one)")
    args = ap.parse_args()
    if args.source:
        os.environ["PYTHONPATH"] = os.path.abspath(args.source)
        print(f"code from {os.path.abspath(args.source)}")
    cli = console_script(args.source)
    cwd = os.path.abspath(args.source) if args.source else None  # python -m puts the cwd first on sys.path
    tmp = tempfile.mkdtemp(prefix="dh-cliffs-")
    try:
        host = os.path.join(tmp, "host")
        os.makedirs(host)
        print("audit of one long value (dester-harden audit --format json, fresh process):")
        by_size = {}
        for label, size in (("0.5 MB", 512 * 1024), ("2 MB", 2 * 1024 * 1024)):
            root = big_value_install(os.path.join(tmp, f"value{size}"), size)
            by_size[label] = wall(cli + ["audit", "--dir", root, "--format", "json", "--fail-on", "never"],
                                  args.runs, args.timeout, cwd)
            print(f"  {label:>7}  median {fmt(by_size[label], args.timeout)}  ({args.runs} runs)")
        print(f"  growth 0.5 MB -> 2 MB: {ratio(by_size['2 MB'], by_size['0.5 MB'])}  (linear: <= 4x)")
        print()
        print("fix --dry-run (fresh process):")
        by_count = {}
        for n in (50, 200):
            root = many_services_install(os.path.join(tmp, f"svc{n}"), n)
            by_count[n] = wall(cli + ["fix", "--dry-run", "--dir", root], args.runs, args.timeout, cwd)
            print(f"  {n:>4} services  median {fmt(by_count[n], args.timeout)}  ({args.runs} runs)")
        print(f"  growth 50 -> 200 services: {ratio(by_count[200], by_count[50])}  (linear: <= 4x)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
