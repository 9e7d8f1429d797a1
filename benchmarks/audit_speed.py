#!/usr/bin/env python3
"""Audit speed: prints the figures issue 2 asks for.

1. `dester-harden audit --format json` on a typical install (the bundled demo:
   CLI layout, 3 services, a small media tree) against the wall time of
   `python3 -c "import yaml, dotenv"` with the same interpreter. Target: <= 3x.
2. Cost against compose file size: generated compose files with more and more
   services, audited in-process (parse + discovery + all checks); the time per
   KB should stay flat (linear growth).

Usage: .venv/bin/python benchmarks/audit_speed.py [--runs N]
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


def wall(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def console_script() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "dester-harden")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "tui"]


def compose_with(n: int) -> str:
    parts = ["services:\n"]
    for i in range(n):
        parts.append(
            f"  svc{i}:\n"
            f"    image: example/app{i}:1.{i}\n"
            f"    environment:\n"
            f"      DATABASE_URL: postgresql://user{i}:${{DB_PASSWORD}}@postgres:5432/db{i}\n"
            f"      NODE_ENV: production\n"
            f"    ports:\n"
            f"      - \"127.0.0.1:{10000 + i}:{3000 + i % 1000}\"\n"
            f"    volumes:\n"
            f"      - ./data{i}:/data:ro\n"
            f"    security_opt: [\"no-new-privileges:true\"]\n"
            f"    logging: {{driver: json-file, options: {{max-size: 10m}}}}\n"
        )
    return "".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    args = ap.parse_args()

    # Byte-compile first, as pip does when it installs a wheel: with
    # PYTHONDONTWRITEBYTECODE set (as on CI machines) an editable checkout
    # would otherwise recompile every changed module on every run, and the
    # figure would measure the compiler, not the audit.
    import compileall

    from checks.demo import materialize

    for pkg in ("checks", "tui"):
        compileall.compile_dir(os.path.join(os.path.dirname(HERE), pkg), quiet=1)

    tmp = tempfile.mkdtemp(prefix="dh-bench-")
    try:
        install = materialize(tmp)
        base = wall([sys.executable, "-c", "import yaml, dotenv"], args.runs)
        audit = wall(console_script() + ["audit", "--dir", install, "--format", "json"], args.runs)
        print(f"baseline  python3 -c 'import yaml, dotenv'      median {base * 1000:7.1f} ms ({args.runs} runs)")
        print(f"audit     dester-harden audit --format json     median {audit * 1000:7.1f} ms ({args.runs} runs)")
        print(f"ratio     {audit / base:.2f}x   (target <= 3.0x)")
        print()

        from checks.audit.run import run_audit
        from checks.install.discovery import discover

        host_root = os.path.join(tmp, "host")
        os.makedirs(host_root)
        print("size scaling (in-process parse + discovery + every check):")
        print(f"{'services':>9} {'KB':>8} {'ms':>9} {'us/KB':>8}")
        for n in (25, 100, 400, 1600, 3200):
            d = os.path.join(tmp, f"scale{n}")
            os.makedirs(d)
            text = compose_with(n)
            with open(os.path.join(d, "docker-compose.yml"), "w") as fh:
                fh.write(text)
            with open(os.path.join(d, ".env"), "w") as fh:
                fh.write("DB_PASSWORD=" + "x" * 40 + "\n")
            os.chmod(os.path.join(d, ".env"), 0o600)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                run_audit(discover(d, host_root=host_root), "local")
                best = min(best, time.perf_counter() - t0)
            kb = len(text) / 1024
            print(f"{n:>9} {kb:>8.1f} {best * 1000:>9.1f} {best * 1e6 / kb:>8.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
