"""pytest plugin: the proxy lab (real Caddy and nginx from Debian in a private network namespace).

* A network namespace of our own, held by one ``sleep infinity`` (``unshare --net``, loopback up, no
  other interface and no route): the servers, the API stand-in (tests/proxyupstream.py) and the client
  (tests/proxyclient.py) run in it through ``nsenter --net``, so nothing listens in the host's network
  namespace, whatever port a test picks. Session-scoped (``_proxy_netns``).
* ``proxy_lab`` (function): a :class:`ProxyLab` whose :meth:`~ProxyLab.caddy` and :meth:`~ProxyLab.nginx`
  start a real server in front of the stand-in; every server is stopped at the test's end (its own pid,
  from the Popen handle: nsenter execs the server, it does not fork).
* Without caddy, nginx, openssl, unshare or nsenter, or when the namespace cannot be made, the tests
  that need it skip with the reason; under ``CI=true`` they fail, since .ci/run installs them.

Caddy runs with ``skip_install_trust`` (``tls internal`` would otherwise put its root CA in the system
trust store), its storage and XDG directories in the test's tmp dir, and its admin endpoint on the
namespace's loopback. nginx runs with its pid, logs and temp paths in tmp, ``daemon off``.

Registered from tests/conftest.py (``pytest_plugins``); the marker is ``proxy``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
API_PORT = 3001
HTTP_PORT = 8080
HTTPS_PORT = 8443
ADMIN_PORT = 2019
DOMAIN = "desterlib.lab.test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "proxy: a real Caddy or nginx test in the proxy lab's network namespace")


class ProxyLabUnavailable(Exception):
    """Why the proxy lab cannot run here (one line)."""


def _unavailable(why: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"the proxy lab cannot run: {why} (.ci/run installs what it needs)")
    pytest.skip(f"the proxy lab cannot run: {why}")


@dataclass
class Netns:
    """The lab's network namespace, held by ``holder`` (a ``sleep infinity`` of our own)."""

    holder: subprocess.Popen[bytes]
    dir: Path
    upstream: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        return self.holder.pid

    def argv(self, *cmd: str) -> list[str]:
        """``cmd`` run in the namespace (network only: files and pids are the host's)."""
        return ["nsenter", f"--net=/proc/{self.pid}/ns/net", "--", *cmd]

    def run(self, *cmd: str, stdin: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*cmd), input=stdin, capture_output=True, text=True, timeout=timeout)


def _wait_port(ns: Netns, port: int, proc: subprocess.Popen[bytes], log: Path, seconds: float = 15) -> None:
    """Until something listens on 127.0.0.1:port in the namespace (or ``proc`` died: its log says why)."""
    probe = ("import socket,sys\ntry:\n socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()\n"
             "except OSError:\n sys.exit(1)\n")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        if ns.run(sys.executable, "-c", probe, str(port)).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port} after {seconds} s: {log.read_text(errors='replace')[-2000:]}")


def _stop(proc: subprocess.Popen[bytes], seconds: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _start_netns(base: Path) -> Netns:
    for tool in ("unshare", "nsenter", "ip"):
        if shutil.which(tool) is None:
            raise ProxyLabUnavailable(f"{tool} is not installed (util-linux, iproute2)")
    if os.geteuid() != 0:
        raise ProxyLabUnavailable("a network namespace needs root here")
    ready = base / "holder.ready"
    holder = subprocess.Popen(
        ["unshare", "--net", "--", "sh", "-c", f'ip link set lo up && : > "{ready}" && exec sleep infinity'],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 10
    while not ready.exists():
        if holder.poll() is not None or time.monotonic() > deadline:
            err = holder.stderr.read().decode(errors="replace").strip() if holder.stderr else ""
            _stop(holder)
            raise ProxyLabUnavailable(f"unshare --net failed: {err.splitlines()[-1] if err else 'no namespace'}")
        time.sleep(0.02)
    if os.readlink(f"/proc/{holder.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
        _stop(holder)
        raise ProxyLabUnavailable("the holder is in the host's network namespace")
    ns = Netns(holder, base)
    log = base / "upstream.log"
    with log.open("wb") as out:
        ns.upstream = subprocess.Popen(ns.argv(sys.executable, str(HERE / "proxyupstream.py"), str(API_PORT)),
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_port(ns, API_PORT, ns.upstream, log)
    except AssertionError as exc:
        _stop_netns(ns)
        raise ProxyLabUnavailable(f"the API stand-in did not start: {exc}") from None
    return ns


def _stop_netns(ns: Netns) -> None:
    if ns.upstream is not None:
        _stop(ns.upstream)
    _stop(ns.holder)


@pytest.fixture(scope="session")
def _proxy_netns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Netns | str]:
    try:
        ns: Netns | str = _start_netns(tmp_path_factory.mktemp("proxylab"))
    except ProxyLabUnavailable as exc:
        ns = str(exc)
    yield ns
    if isinstance(ns, Netns):
        _stop_netns(ns)


def self_signed(dir: Path, name: str, days: int = 7) -> tuple[Path, Path]:
    """A self-signed certificate and key for ``name`` (openssl; subjectAltName=DNS:name)."""
    if shutil.which("openssl") is None:
        _unavailable("openssl is not installed")
    dir.mkdir(parents=True, exist_ok=True)
    cert, key = dir / "fullchain.pem", dir / "privkey.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", str(days), "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Served:
    """A server running in the lab: where to reach it and which CA to trust."""

    kind: str
    proc: subprocess.Popen[bytes]
    ca: Path
    log: Path


@dataclass
class ProxyLab:
    """The lab for one test: start servers in front of the API stand-in, ask them things."""

    ns: Netns
    tmp: Path
    domain: str = DOMAIN
    api_port: int = API_PORT
    http_port: int = HTTP_PORT
    https_port: int = HTTPS_PORT
    running: list[Served] = field(default_factory=list)

    @staticmethod
    def require(kind: str) -> str:
        """The server's binary, or skip (fail under CI) when it is not installed."""
        found = shutil.which(kind)
        if found is None:
            _unavailable(f"{kind} is not installed (apt install {kind})")
        return str(found)

    def caddy_config(self, site: str) -> str:
        """The lab's main Caddyfile: its global options, then ``site``."""
        storage = self.tmp / "caddy" / "storage"
        return ("{\n"
                f"\tadmin 127.0.0.1:{ADMIN_PORT}\n"
                "\tskip_install_trust\n"
                f"\tstorage file_system {storage}\n"
                f"\thttp_port {self.http_port}\n"
                f"\thttps_port {self.https_port}\n"
                "}\n\n" + site)

    def caddy(self, site: str, conf_dir: Path | None = None) -> Served:
        """``caddy run`` with the generated ``site`` behind the lab's global options (the main Caddyfile in
        ``conf_dir`` when given, as DIR/etc/caddy under ``--root DIR``)."""
        binary = self.require("caddy")
        d = self.tmp / "caddy"
        (d / "xdg").mkdir(parents=True, exist_ok=True)
        storage = d / "storage"
        conf = (conf_dir or d) / "Caddyfile"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text(self.caddy_config(site))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(d / "xdg"),
               "XDG_DATA_HOME": str(d / "xdg" / "data"), "XDG_CONFIG_HOME": str(d / "xdg" / "config")}
        log = d / "caddy.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(self.ns.argv(binary, "run", "--adapter", "caddyfile", "--config", str(conf)),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                                    cwd=d)
        served = Served("caddy", proc, storage / "pki" / "authorities" / "local" / "root.crt", log)
        self.running.append(served)
        _wait_port(self.ns, self.https_port, proc, log)
        deadline = time.monotonic() + 15
        while not served.ca.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        # The site's certificate is issued just after the listener opens: wait until a handshake works.
        deadline = time.monotonic() + 15
        while "error" in self.get(served, "/health") and time.monotonic() < deadline:
            time.sleep(0.1)
        return served

    def nginx(self, site: str, cert: Path, conf_dir: Path | None = None) -> Served:
        """``nginx -g 'daemon off;'`` with the generated ``site`` (``site.conf``) in a lab main configuration
        (both in ``conf_dir`` when given, as DIR/etc/nginx under ``--root DIR``)."""
        binary = self.require("nginx")
        d = self.tmp / "nginx"
        d.mkdir(parents=True, exist_ok=True)
        c = conf_dir or d
        c.mkdir(parents=True, exist_ok=True)
        (c / "site.conf").write_text(site)
        temps = "\n".join(f"\t{name}_temp_path {d / name};" for name in ("client_body", "proxy", "fastcgi",
                                                                            "uwsgi", "scgi"))
        # user root: the workers read the htpasswd file in the test's tmp dir (0700, root's).
        (c / "nginx.conf").write_text(f"user root;\nworker_processes 1;\npid {d / 'nginx.pid'};\n"
                                      f"error_log {d / 'error.log'};\nevents {{ worker_connections 64; }}\n"
                                      f"http {{\n\taccess_log {d / 'access.log'};\n{temps}\n"
                                      f"\tinclude {c / 'site.conf'};\n}}\n")
        log = d / "nginx.out"
        with log.open("wb") as out:
            proc = subprocess.Popen(self.ns.argv(binary, "-c", str(c / "nginx.conf"), "-e", str(d / "error.log"),
                                                 "-g", "daemon off;"),
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=d)
        served = Served("nginx", proc, cert, d / "error.log")
        self.running.append(served)
        _wait_port(self.ns, self.https_port, proc, log)
        return served

    def get(self, served: Served, path: str, *, user: str | None = None, password: str | None = None,
            tls: bool = True, upgrade: bool = False, method: str = "GET") -> dict[str, Any]:
        """One request through the server, from inside the namespace (the client's JSON answer)."""
        req = {"port": self.https_port if tls else self.http_port, "path": path, "tls": tls, "host": self.domain,
               "ca": str(served.ca), "user": user, "password": password, "upgrade": upgrade, "method": method}
        done = self.ns.run(sys.executable, str(HERE / "proxyclient.py"), stdin=json.dumps(req))
        if done.returncode != 0:
            raise AssertionError(f"the lab's client failed: {done.stderr[-2000:]}")
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def stop(self) -> None:
        for served in self.running:
            _stop(served.proc)
        self.running.clear()


@pytest.fixture
def proxy_lab(_proxy_netns: Netns | str, tmp_path: Path) -> Iterator[ProxyLab]:
    if isinstance(_proxy_netns, str):
        _unavailable(_proxy_netns)
    assert isinstance(_proxy_netns, Netns)
    lab = ProxyLab(_proxy_netns, tmp_path / "lab")
    lab.tmp.mkdir()
    try:
        yield lab
    finally:
        with contextlib.suppress(Exception):
            lab.stop()
