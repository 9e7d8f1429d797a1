"""``python -m checks.firewall.sync BACKEND [--root DIR]``: make the live firewall equal its files.

The command a firewall plan runs last on apply, and again after the files are restored on rollback
and undo (the reload pair of ADR 0008). BACKEND is ``ufw``, ``firewalld`` or ``nft``; each backend's
module has ``sync(sysroot, runner) -> None``, which loads the files, then verifies that the live rules
equal what they say, and raises a one-line error otherwise.

Exit codes: 0 the live firewall equals the files; 1 it could not be made so, or differs after the
sync (one line on stderr naming the difference; the engine then rolls the transaction back); 2 bad
usage (an unknown backend, a bad ``--root``). Never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from collections.abc import Sequence
from types import ModuleType

from checks.core.sysroot import SystemRoot
from checks.live.fwmodel import RunResult

BACKENDS = ("ufw", "firewalld", "nft")


def run(argv: Sequence[str], timeout: float) -> RunResult:
    """The real runner: no shell, a timeout, a missing program as 127 and a hung one as 124."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "DBUS_SYSTEM_BUS_ADDRESS")}
    env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
    try:
        p = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        return RunResult(127, "", f"{argv[0]}: not found")
    except subprocess.TimeoutExpired:
        return RunResult(124, "", f"{argv[0]}: no answer in {timeout:.0f} s")
    except OSError as exc:
        return RunResult(126, "", f"{argv[0]}: {exc.strerror}")
    return RunResult(p.returncode, p.stdout, p.stderr)


def backend_module(name: str) -> ModuleType:
    """``checks.firewall.ufw``, ``.firewalld`` or ``.nft`` (each has ``plan`` and ``sync``); ImportError when
    this version has no such backend. Spelled out so the architecture scan sees every import."""
    if name == "ufw":
        return importlib.import_module("checks.firewall.ufw")
    if name == "firewalld":
        return importlib.import_module("checks.firewall.firewalld")
    if name == "nft":
        return importlib.import_module("checks.firewall.nft")
    raise ImportError(f"no firewall backend {name!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"checks.firewall.sync: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    ap = _Parser(prog="python -m checks.firewall.sync", description="Make the live firewall equal its files.")
    ap.add_argument("backend", choices=BACKENDS)
    ap.add_argument("--root", default="/", help="system files under DIR (tests, a copy of /etc)")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.root):
        print(f"checks.firewall.sync: --root {args.root}: not a directory", file=sys.stderr)
        return 2
    sysroot = SystemRoot(args.root)
    try:
        module = backend_module(args.backend)
    except ImportError as exc:
        print(f"checks.firewall.sync: the {args.backend} backend is not available: {exc}", file=sys.stderr)
        return 2
    try:
        module.sync(sysroot, run)
    except Exception as exc:  # every backend's one-line error, and anything unforeseen: never a traceback
        text = str(exc).strip().splitlines()
        print(f"{args.backend} sync: {text[0] if text else type(exc).__name__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess in tests
    raise SystemExit(main())
