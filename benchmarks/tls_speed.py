#!/usr/bin/env python3
"""TLS front door speed: the parts of planning a Caddy or nginx site that issue 11 times.

1. bcrypt hash of the proxy login at BCRYPT_COST (target: under 0.5 s).
2. Generating the Caddy site and the nginx server blocks.
3. ``checks.proxy.servers.validate()`` with the installed server: a scratch copy of a Debian
   /etc/caddy or /etc/nginx (copied from this machine into a temp --root) with the site in place,
   then the real ``caddy validate`` / ``nginx -t``.
4. The whole planning figure (target: 1.5 s for Caddy, validation included): ``usecases.plan`` of
   TLS-001..003 on the demo installation with ``--root`` a copy of /etc/caddy (and /etc/nginx), in
   this process, and ``dester-harden fix --dry-run --root ... --proxy caddy`` as a user runs it
   (imports included).

Each figure is the median of --runs (default 5). A server that is not installed is reported as such.

Usage: .venv/bin/python benchmarks/tls_speed.py [--runs N]
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
from collections.abc import Callable
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from checks.core.sysroot import SystemRoot  # noqa: E402
from checks.proxy.generate import (  # noqa: E402
    BCRYPT_COST,
    Cert,
    SiteRequest,
    caddy_site,
    hash_password,
    htpasswd,
    nginx_site,
)
from checks.proxy.servers import find_server, validate  # noqa: E402

DOMAIN = "desterlib.example.com"


def median(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    runs = ap.parse_args().runs

    h = hash_password("benchmark password")
    t = median(lambda: hash_password("benchmark password"), runs)
    print(f"bcrypt hash at cost {BCRYPT_COST}: {t:.3f} s (target < 0.5 s)")

    caddy_req = SiteRequest(DOMAIN, "caddy", 3001, h)
    with tempfile.TemporaryDirectory(prefix="tls-speed-") as tmp:
        root = Path(tmp)
        cert_dir = root / "etc" / "ssl" / "desterlib"
        cert_dir.mkdir(parents=True)
        nginx_req = SiteRequest(DOMAIN, "nginx", 3001, h, cert=Cert("/etc/ssl/desterlib/fullchain.pem",
                                                                    "/etc/ssl/desterlib/privkey.pem", False))
        t_c = median(lambda: caddy_site(caddy_req), runs)
        t_n = median(lambda: nginx_site(nginx_req), runs)
        print(f"generate: caddy site {t_c * 1000:.3f} ms, nginx site {t_n * 1000:.3f} ms")

        sysroot = SystemRoot(tmp)
        for kind in ("caddy", "nginx"):
            server = find_server(kind, sysroot)
            if server.binary is None:
                print(f"validate() {kind}: not installed ({server.install_hint})")
                continue
            if Path("/etc", kind).is_dir():
                shutil.copytree(Path("/etc", kind), root / "etc" / kind, symlinks=True)
            if kind == "caddy":
                req = SiteRequest(DOMAIN, "caddy", 3001, h, caddy_directive=server.caddy_directive)
                changes: dict[str, bytes | None] = {str(root / "etc/caddy/Caddyfile"): caddy_site(req).encode()}
                links: dict[str, str] = {}
            else:
                subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                                str(cert_dir / "privkey.pem"), "-out", str(cert_dir / "fullchain.pem"), "-days", "2",
                                "-subj", f"/CN={DOMAIN}"], check=True, capture_output=True)
                changes = {str(root / "etc/nginx/sites-available/desterlib"): nginx_site(nginx_req).encode(),
                           str(root / "etc/nginx/desterlib.htpasswd"): htpasswd("desterlib", h).encode()}
                links = {str(root / "etc/nginx/sites-enabled/desterlib"): "/etc/nginx/sites-available/desterlib"}
            result = validate(server, sysroot, changes, links)
            t_v = median(lambda s=server, c=changes, ln=links: validate(s, sysroot, c, ln), runs)  # type: ignore[misc]
            print(f"validate() {kind} {server.version}: {t_v:.3f} s ({'valid' if result.ok else result.message})")
        whole_plan(tmp, runs)
    return 0


def whole_plan(tmp: str, runs: int) -> None:
    from checks.assistant import usecases
    from checks.demo import materialize
    from checks.proxy.model import Choice

    os.environ["DESTER_HARDEN_NO_LIVE"] = "1"
    os.environ["DESTER_HARDEN_STATE_DIR"] = os.path.join(tmp, "state")
    install = materialize(os.path.join(tmp, "srv"))
    only = {"TLS-001", "TLS-002", "TLS-003"}
    for kind in ("caddy", "nginx"):
        if find_server(kind, SystemRoot(tmp)).binary is None or not Path(tmp, "etc", kind).is_dir():
            print(f"whole plan {kind}: not installed")
            continue
        choice = Choice(DOMAIN, kind)

        def one(c: Choice = choice) -> None:
            planned = usecases.plan(install, "internet", only=only, host_root=tmp, front_door=c)
            assert planned.plan.system and not planned.plan.refusals, planned.plan.refusals

        t = median(one, runs)
        cli = os.path.join(os.path.dirname(sys.executable), "dester-harden")
        argv = [cli, "fix", "--dry-run", "--dir", install, "--root", tmp, "--profile", "internet", "--domain",
                DOMAIN, "--proxy", kind, "--only", ",".join(sorted(only)), "--fail-on", "never"]
        t_cli = median(lambda a=argv: subprocess.run(a, check=True, capture_output=True), runs)  # type: ignore[misc]
        print(f"whole plan {kind} (bcrypt + generate + validate + re-audit): {t:.3f} s in process, "
              f"{t_cli:.3f} s as `dester-harden fix --dry-run` (target < 1.5 s)")


if __name__ == "__main__":
    raise SystemExit(main())
