"""The TLS fix end to end, with the real servers: `dester-harden fix --root DIR --domain D --proxy P`
installs a front door that the running Caddy or nginx serves (401 / 200 / 403, websockets, HSTS, the
redirect), `undo --root DIR` leaves DIR byte-identical and the server back on its old configuration,
and a reload that fails rolls everything back.

The commands run inside the proxy lab's network namespace (tests/proxylab.py), as a user's would on
the server: the reload reaches the lab's Caddy admin endpoint or signals the lab's nginx, and the
server's process is seen as running. The installation is the demo one, on the internet profile.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import pytest

from checks.demo import materialize
from tests.proxylab import DOMAIN, ProxyLab, Served, _stop, _wait_port
from tests.treesnap import snapshot

pytestmark = pytest.mark.proxy
DESTER = os.path.join(sys.prefix, "bin", "dester-harden")
BLOCKED = ("/api/v1/logs", "/api/v1/settings", "/api/v1/settings/providers", "/api/docs", "/api/docs/swagger.json")


def dester(lab: ProxyLab, *args: str) -> subprocess.CompletedProcess[str]:
    return lab.ns.run(DESTER, *args, timeout=120)


def _install(tmp_path: Path) -> str:
    return materialize(str(tmp_path / "srv"))


def _etc(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "group").write_text("root:x:0:\nwww-data:x:33:\ncaddy:x:995:\n")
    return root


def _password() -> str:
    pw = keyring.get_password("dester-harden", f"proxy:{DOMAIN}")
    assert pw, "the login was not kept in the keyring"
    return pw


def _serves_front_door(lab: ProxyLab, served: Served, password: str) -> None:
    assert lab.get(served, "/api/v1/library")["status"] == 401
    assert lab.get(served, "/api/v1/library", user="desterlib", password="wrong")["status"] == 401
    ok = lab.get(served, "/api/v1/library", user="desterlib", password=password)
    assert ok["status"] == 200, ok
    assert "strict-transport-security" in ok["headers"], ok["headers"]
    for path in BLOCKED:
        assert lab.get(served, path, user="desterlib", password=password)["status"] == 403, path
    ws = lab.get(served, "/ws", user="desterlib", password=password, upgrade=True)
    assert ws["status"] == 101, ws


def test_caddy_front_door_installed_served_and_undone(proxy_lab: ProxyLab, tmp_path: Path) -> None:
    install, root = _install(tmp_path), _etc(tmp_path)
    conf = root / "etc" / "caddy"
    # A Caddyfile of the user's own (global options, another site): the front door is a file of its own,
    # imported at the end. local_certs: the lab's CA instead of ACME, for every site.
    orig = proxy_lab.caddy_config

    def with_local_certs(site: str) -> str:
        return orig(site).replace("\tskip_install_trust\n", "\tskip_install_trust\n\tlocal_certs\n")

    proxy_lab.caddy_config = with_local_certs  # type: ignore[method-assign]
    proxy_lab.domain = "other.lab.test"
    served = proxy_lab.caddy('other.lab.test {\n\trespond "the other site"\n}\n', conf_dir=conf)
    proxy_lab.domain = DOMAIN
    before = snapshot(root)

    done = dester(proxy_lab, "fix", "--dir", install, "--root", str(root), "--profile", "internet", "--fail-on",
                  "never", "--domain", DOMAIN, "--proxy", "caddy", "--only", "TLS-001,TLS-002,TLS-003", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    password = _password()
    assert password not in done.stdout + done.stderr  # not a terminal: never printed
    site = conf / "desterlib.caddy"
    st = site.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, 995)
    assert f"import {site}" in (conf / "Caddyfile").read_text()
    assert password not in site.read_text()
    _serves_front_door(proxy_lab, served, password)
    plain = proxy_lab.get(served, "/x", tls=False)
    assert plain["status"] in (301, 308) and plain["headers"]["location"].startswith(f"https://{DOMAIN}")
    assert proxy_lab.get(served, "/", user="desterlib", password=password) is not None
    assert "127.0.0.1:3001" in (Path(install) / "docker-compose.yml").read_text()

    undone = dester(proxy_lab, "undo", "--dir", install, "--root", str(root), "--yes")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert snapshot(root) == before
    # Reloaded with the old configuration: the front door's name is no longer served.
    gone = proxy_lab.get(served, "/api/v1/library", user="desterlib", password=password)
    assert gone.get("status") != 200, gone  # no certificate for it any more: the handshake fails


def _nginx_conf(root: Path, run: Path) -> Path:
    conf = root / "etc" / "nginx"
    (conf / "sites-available").mkdir(parents=True)
    (conf / "sites-enabled").mkdir()
    (conf / "conf.d").mkdir()
    temps = "".join(f"\t{n}_temp_path {run / n};\n" for n in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # Debian's layout with the lab's paths; user root: the workers read files in the test's 0700 tmp dir
    # (group www-data: the password file is made for the workers' group).
    (conf / "nginx.conf").write_text(
        f"user root www-data;\nworker_processes 1;\npid {run / 'nginx.pid'};\nerror_log {run / 'error.log'};\n"
        f"events {{ worker_connections 64; }}\nhttp {{\n\taccess_log {run / 'access.log'};\n{temps}"
        f"\tinclude {conf / 'conf.d'}/*.conf;\n\tinclude {conf / 'sites-enabled'}/*;\n}}\n")
    (conf / "sites-available" / "default").write_text(
        "server {\n\tlisten 80 default_server;\n\treturn 404;\n}\n")
    os.symlink(conf / "sites-available" / "default", conf / "sites-enabled" / "default")
    return conf


def _start_nginx(lab: ProxyLab, conf: Path, run: Path) -> subprocess.Popen[bytes]:
    log = run / "nginx.out"
    with log.open("wb") as out:
        proc = subprocess.Popen(lab.ns.argv(lab.require("nginx"), "-c", str(conf / "nginx.conf"), "-e",
                                            str(run / "error.log"), "-g", "daemon off;"),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=run)
    _wait_port(lab.ns, 80, proc, log)
    return proc


@pytest.fixture
def nginx_tree(proxy_lab: ProxyLab, tmp_path: Path) -> Iterator[tuple[str, Path, Path, Path, subprocess.Popen[bytes]]]:
    """The demo install, a --root tree with Debian's nginx layout, and that nginx running from it:
    (install, root, conf dir, run dir, the server)."""
    install, root = _install(tmp_path), _etc(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    conf = _nginx_conf(root, run)
    proc = _start_nginx(proxy_lab, conf, run)
    try:
        yield install, root, conf, run, proc
    finally:
        _stop(proc)


def test_nginx_front_door_installed_served_and_undone(proxy_lab: ProxyLab, nginx_tree) -> None:
    install, root, conf, run, proc = nginx_tree
    before = snapshot(root)
    done = dester(proxy_lab, "fix", "--dir", install, "--root", str(root), "--profile", "internet",
                  "--fail-on", "never", "--domain", DOMAIN, "--proxy", "nginx", "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "certbot certonly --webroot" in done.stdout
    password = _password()
    link = conf / "sites-enabled" / "desterlib"
    assert os.readlink(link) == "../sites-available/desterlib"
    pw = os.stat(conf / "desterlib.htpasswd")
    assert (stat.S_IMODE(pw.st_mode), pw.st_uid, pw.st_gid) == (0o640, 0, 33)
    key = os.stat(conf / "desterlib-selfsigned.key")
    assert (stat.S_IMODE(key.st_mode), key.st_uid, key.st_gid) == (0o600, 0, 0)
    proxy_lab.http_port, proxy_lab.https_port = 80, 443
    served = Served("nginx", proc, conf / "desterlib-selfsigned.crt", run / "error.log")
    _serves_front_door(proxy_lab, served, password)
    plain = proxy_lab.get(served, "/x", tls=False)
    assert plain["status"] == 301 and plain["headers"]["location"] == f"https://{DOMAIN}/x"

    undone = dester(proxy_lab, "undo", "--dir", install, "--root", str(root), "--yes")
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert snapshot(root) == before
    # Reloaded with the old configuration: plain HTTP is the default site's 404 again.
    assert proxy_lab.get(served, "/x", tls=False)["status"] == 404


def test_a_failing_reload_rolls_everything_back(proxy_lab: ProxyLab, nginx_tree) -> None:
    install, root, conf, run, proc = nginx_tree
    compose = (Path(install) / "docker-compose.yml").read_bytes()
    before = snapshot(root)
    os.unlink(run / "nginx.pid")  # nginx runs, but `nginx -s reload` cannot find it
    done = dester(proxy_lab, "fix", "--dir", install, "--root", str(root), "--profile", "internet",
                  "--fail-on", "never", "--domain", DOMAIN, "--proxy", "nginx", "--yes")
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert snapshot(root) == before
    assert (Path(install) / "docker-compose.yml").read_bytes() == compose
    proxy_lab.http_port = 80
    assert proxy_lab.get(Served("nginx", proc, run / "x", run / "error.log"), "/x", tls=False)["status"] == 404
