"""The generated Caddy and nginx configurations, judged and served by the real servers (Debian's).

Validation goes through :func:`checks.proxy.servers.validate` (the real ``caddy validate`` / ``nginx -t``
on a scratch copy of a whole configuration tree under ``--root``); serving runs in the proxy lab's
private network namespace (tests/proxylab.py) in front of the API stand-in.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from itertools import combinations
from pathlib import Path

import pytest

from checks.core.sysroot import SystemRoot
from checks.proxy.generate import Cert, SiteRequest, caddy_site, hash_password, htpasswd, nginx_site
from checks.proxy.model import PROTECTED
from checks.proxy.servers import Server, find_server, reload_argv, validate, validate_argv
from tests.proxylab import DOMAIN, ProxyLab, self_signed

pytestmark = pytest.mark.proxy

PASSWORD = "correct horse battery"
#: Computed once (bcrypt at the real cost is the slow part; the servers read any cost).
HASH = hash_password(PASSWORD, cost=4)
#: Every form of the protected paths a client could send (case, dot segments, doubled slashes, percent
#: escapes), with the key that opens it; each is refused (403) unless that key is opted in.
REFUSED = [("/api/v1/logs", "logs"), ("/api/v1/logs/", "logs"), ("/API/V1/LOGS", "logs"), ("/api/v1/Logs", "logs"),
           ("//api/v1/logs", "logs"), ("/api/v1//logs", "logs"), ("/api/v1/./logs", "logs"),
           ("/api/v1/x/../logs", "logs"), ("/api/v1/%6cogs", "logs"), ("/api%2Fv1/logs", "logs"),
           ("/api/v1/logs?lines=500", "logs"), ("/api/v1/settings", "settings"),
           ("/api/v1/settings/providers", "settings"), ("/api/docs", "docs"), ("/api/docs/", "docs"),
           ("/api/docs/swagger.json", "docs"), ("/api/docs.json", "docs"), ("/api/docs%2Ejson", "docs")]
OPEN_SETS = [frozenset(c) for n in range(len(PROTECTED) + 1) for c in combinations(sorted(PROTECTED), n)]


def _server(kind: str) -> Server:
    server = find_server(kind, SystemRoot())
    if server.binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{kind} is not installed (.ci/run installs it)")
        pytest.skip(f"{kind} is not installed ({server.install_hint})")
    return server


def _etc_copy(root: Path, kind: str) -> Path:
    """DIR/etc/<kind>: a copy of the host's (Debian's defaults), links kept, as a --root test uses."""
    src = Path("/etc") / kind
    if not src.is_dir():
        pytest.skip(f"/etc/{kind} is absent: nothing to copy")
    dst = root / "etc" / kind
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _tree(root: Path) -> dict[str, tuple[int, int, int, str]]:
    """Every entry under root: mode, uid, gid and content hash (or link target)."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            what = os.readlink(p) if p.is_symlink() else (
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir")
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, what)
    return out


# ---------------------------------------------------------------------------------------- validation


def _caddy_changes(root: Path, site: str) -> dict[str, bytes | None]:
    return {str(root / "etc/caddy/Caddyfile"): site.encode()}


def _nginx_request(root: Path, open_paths: frozenset[str] = frozenset(), letsencrypt: bool = False) -> SiteRequest:
    if letsencrypt:
        live = root / "etc" / "letsencrypt" / "live" / DOMAIN
        self_signed(live, DOMAIN)
        le = f"/etc/letsencrypt/live/{DOMAIN}"
        cert = Cert(f"{le}/fullchain.pem", f"{le}/privkey.pem", True)
    else:
        self_signed(root / "etc" / "ssl" / "desterlib", DOMAIN)
        cert = Cert("/etc/ssl/desterlib/fullchain.pem", "/etc/ssl/desterlib/privkey.pem", False)
    (root / "var" / "www" / "html").mkdir(parents=True, exist_ok=True)
    return SiteRequest(DOMAIN, "nginx", 3001, HASH, open_paths=open_paths, cert=cert)


def _nginx_changes(root: Path, site: str) -> tuple[dict[str, bytes | None], dict[str, str]]:
    changes: dict[str, bytes | None] = {
        str(root / "etc/nginx/sites-available/desterlib"): site.encode(),
        str(root / "etc/nginx/desterlib.htpasswd"): htpasswd("desterlib", HASH).encode(),
    }
    return changes, {str(root / "etc/nginx/sites-enabled/desterlib"): "/etc/nginx/sites-available/desterlib"}


@pytest.mark.parametrize("open_paths", OPEN_SETS, ids=lambda s: "+".join(sorted(s)) or "none")
def test_every_caddy_variant_passes_caddy_validate(tmp_path, open_paths):
    server = _server("caddy")
    _etc_copy(tmp_path, "caddy")
    for tls_internal in (False, True):
        site = caddy_site(SiteRequest(DOMAIN, "caddy", 3001, HASH, open_paths=open_paths,
                                      caddy_directive=server.caddy_directive, tls_internal=tls_internal))
        before = _tree(tmp_path)
        result = validate(server, SystemRoot(str(tmp_path)), _caddy_changes(tmp_path, site))
        assert result.ok, result.message
        assert _tree(tmp_path) == before


def test_caddy_directive_spelling_follows_the_installed_version(tmp_path):
    server = _server("caddy")
    _etc_copy(tmp_path, "caddy")
    root = SystemRoot(str(tmp_path))
    results = {}
    for directive in ("basicauth", "basic_auth"):
        site = caddy_site(SiteRequest(DOMAIN, "caddy", 3001, HASH, caddy_directive=directive))
        results[directive] = validate(server, root, _caddy_changes(tmp_path, site))
    if server.caddy_directive == "basicauth":  # before 2.8 (Debian's 2.6.2): only the old spelling
        assert results["basicauth"].ok, results["basicauth"].message
        assert not results["basic_auth"].ok
        assert "basic_auth" in results["basic_auth"].message
        assert "/etc/caddy/Caddyfile" in results["basic_auth"].message  # the file as the user knows it
    else:  # 2.8+: both spellings (the old one deprecated)
        assert results["basic_auth"].ok, results["basic_auth"].message


def test_caddy_site_imported_from_the_main_caddyfile_validates(tmp_path):
    """The generated site in its own file, imported by absolute path: the import follows the copy."""
    server = _server("caddy")
    _etc_copy(tmp_path, "caddy")
    site = caddy_site(SiteRequest(DOMAIN, "caddy", 3001, HASH, caddy_directive=server.caddy_directive))
    main = (tmp_path / "etc/caddy/Caddyfile").read_text() + "\nimport /etc/caddy/sites/*.caddy\n"
    changes: dict[str, bytes | None] = {str(tmp_path / "etc/caddy/Caddyfile"): main.encode(),
                                        str(tmp_path / "etc/caddy/sites/desterlib.caddy"): site.encode()}
    assert validate(server, SystemRoot(str(tmp_path)), changes).ok
    # The imported file broken: the validator reads it, so the verdict changes.
    changes[str(tmp_path / "etc/caddy/sites/desterlib.caddy")] = site.replace("route {", "route {{").encode()
    assert not validate(server, SystemRoot(str(tmp_path)), changes).ok


def test_a_broken_caddy_site_fails_and_nothing_under_the_root_is_written(tmp_path):
    server = _server("caddy")
    _etc_copy(tmp_path, "caddy")
    before = _tree(tmp_path)
    site = caddy_site(SiteRequest(DOMAIN, "caddy", 3001, HASH)).replace("reverse_proxy", "reverse_proxx")
    result = validate(server, SystemRoot(str(tmp_path)), _caddy_changes(tmp_path, site))
    assert not result.ok
    assert "reverse_proxx" in result.message and "\n" not in result.message
    assert "$2" not in result.message
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("open_paths", OPEN_SETS, ids=lambda s: "+".join(sorted(s)) or "none")
def test_every_nginx_variant_passes_nginx_t(tmp_path, open_paths):
    server = _server("nginx")
    _etc_copy(tmp_path, "nginx")
    req = _nginx_request(tmp_path, open_paths)
    changes, links = _nginx_changes(tmp_path, nginx_site(req))
    before = _tree(tmp_path)
    result = validate(server, SystemRoot(str(tmp_path)), changes, links)
    assert result.ok, result.message
    assert _tree(tmp_path) == before


def test_nginx_validates_with_a_lets_encrypt_certificate(tmp_path):
    server = _server("nginx")
    _etc_copy(tmp_path, "nginx")
    req = _nginx_request(tmp_path, letsencrypt=True)
    changes, links = _nginx_changes(tmp_path, nginx_site(req))
    result = validate(server, SystemRoot(str(tmp_path)), changes, links)
    assert result.ok, result.message


def test_nginx_names_a_missing_certificate_and_is_not_valid(tmp_path):
    server = _server("nginx")
    _etc_copy(tmp_path, "nginx")
    req = _nginx_request(tmp_path, letsencrypt=True)
    shutil.rmtree(tmp_path / "etc" / "letsencrypt")
    changes, links = _nginx_changes(tmp_path, nginx_site(req))
    result = validate(server, SystemRoot(str(tmp_path)), changes, links)
    assert not result.ok
    assert "certificate" in result.message


def test_nginx_reads_the_new_site_only_through_its_enabled_link(tmp_path):
    """The site in sites-available is read by nginx -t only when the planned link enables it."""
    server = _server("nginx")
    _etc_copy(tmp_path, "nginx")
    req = _nginx_request(tmp_path)
    changes, links = _nginx_changes(tmp_path, nginx_site(req) + "bogus_directive on;\n")
    assert validate(server, SystemRoot(str(tmp_path)), changes, {}).ok
    result = validate(server, SystemRoot(str(tmp_path)), changes, links)
    assert not result.ok
    assert "bogus_directive" in result.message
    assert str(tmp_path / "etc/nginx/sites-enabled/desterlib") in result.message


def test_a_broken_nginx_site_fails_and_nothing_under_the_root_is_written(tmp_path):
    server = _server("nginx")
    _etc_copy(tmp_path, "nginx")
    req = _nginx_request(tmp_path)
    changes, links = _nginx_changes(tmp_path, nginx_site(req).replace("proxy_pass", "proxy_passs", 1))
    before = _tree(tmp_path)
    result = validate(server, SystemRoot(str(tmp_path)), changes, links)
    assert not result.ok
    assert "proxy_passs" in result.message and "\n" not in result.message
    assert _tree(tmp_path) == before
    assert not (tmp_path / "var" / "log").exists()


def test_a_missing_binary_is_never_valid(tmp_path):
    for kind in ("caddy", "nginx"):
        server = find_server(kind, SystemRoot(str(tmp_path)), {"PATH": str(tmp_path)})
        assert server.binary is None
        result = validate(server, SystemRoot(str(tmp_path)), {})
        assert not result.ok
        assert result.message == f"{kind} is not installed: {server.install_hint}"


def test_a_validator_that_hangs_is_a_failure(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "caddy"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexec sleep 30\n")
    fake.chmod(0o755)
    monkeypatch.setattr("checks.proxy.servers.VALIDATE_TIMEOUT", 0.5)
    result = validate(Server("caddy", str(fake), "2.6.2", False), SystemRoot(str(tmp_path)), {})
    assert not result.ok
    assert "did not answer" in result.message


# -------------------------------------------------------------------------------------------- serving


def _check_serving(lab: ProxyLab, served, open_paths: frozenset[str] = frozenset()) -> None:
    assert lab.get(served, "/api/v1/health")["status"] == 401
    assert lab.get(served, "/api/v1/health", user="desterlib", password="wrong")["status"] == 401
    ok = lab.get(served, "/api/v1/health", user="desterlib", password=PASSWORD)
    assert ok["status"] == 200, ok
    seen = json.loads(ok["body"])
    assert seen["headers"]["x-real-ip"] == "127.0.0.1"
    assert "127.0.0.1" in seen["headers"]["x-forwarded-for"]
    headers = ok["headers"]
    assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["content-security-policy"] == "frame-ancestors 'none'"
    assert headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert "upstream-standin" not in headers.get("server", "")
    for path, key in REFUSED:
        answer = lab.get(served, path, user="desterlib", password=PASSWORD)
        if key in open_paths:
            assert answer["status"] == 200, (path, answer)
            assert lab.get(served, path)["status"] == 401, path  # opened behind the login, not to everyone
        else:
            assert answer["status"] == 403, (path, answer)
            assert lab.get(served, path)["status"] == 403, path
    ws = lab.get(served, "/ws", user="desterlib", password=PASSWORD, upgrade=True)
    assert ws["status"] == 101, ws
    assert ws["headers"]["upgrade"].lower() == "websocket"
    plain = lab.get(served, "/api/v1/health?x=1", tls=False)
    assert plain["status"] in (301, 308), plain
    assert plain["headers"]["location"].startswith(f"https://{DOMAIN}")
    assert plain["headers"]["location"].endswith("/api/v1/health?x=1")


@pytest.mark.parametrize("open_paths", [frozenset(), frozenset({"logs", "docs"})], ids=["closed", "logs+docs"])
def test_caddy_serves_the_generated_site(proxy_lab, open_paths):
    server = _server("caddy")
    site = caddy_site(SiteRequest(DOMAIN, "caddy", proxy_lab.api_port, HASH, open_paths=open_paths,
                                  caddy_directive=server.caddy_directive, https_port=proxy_lab.https_port,
                                  tls_internal=True))
    served = proxy_lab.caddy(site)
    _check_serving(proxy_lab, served, open_paths)


@pytest.mark.parametrize("open_paths", [frozenset(), frozenset({"settings"})], ids=["closed", "settings"])
def test_nginx_serves_the_generated_site(proxy_lab, open_paths):
    _server("nginx")
    cert, key = self_signed(proxy_lab.tmp / "cert", DOMAIN)
    acme = proxy_lab.tmp / "acme"
    (acme / ".well-known" / "acme-challenge").mkdir(parents=True)
    (acme / ".well-known" / "acme-challenge" / "token1").write_text("challenge-answer")
    pw = proxy_lab.tmp / "desterlib.htpasswd"
    pw.write_text(htpasswd("desterlib", HASH))
    site = nginx_site(SiteRequest(DOMAIN, "nginx", proxy_lab.api_port, HASH, open_paths=open_paths,
                                  cert=Cert(str(cert), str(key), False), htpasswd=str(pw), acme_root=str(acme),
                                  http_port=proxy_lab.http_port, https_port=proxy_lab.https_port))
    served = proxy_lab.nginx(site, cert)
    _check_serving(proxy_lab, served, open_paths)
    # certbot's webroot challenge is served on plain HTTP without the login.
    challenge = proxy_lab.get(served, "/.well-known/acme-challenge/token1", tls=False)
    assert challenge["status"] == 200 and challenge["body"] == "challenge-answer"


def test_nginx_reads_a_bcrypt_htpasswd_made_by_the_real_hash(proxy_lab):
    """The real cost (BCRYPT_COST) and pyca's $2b$ prefix, read by nginx's crypt (libxcrypt)."""
    _server("nginx")
    real = hash_password(PASSWORD)
    assert real.startswith("$2b$")
    cert, key = self_signed(proxy_lab.tmp / "cert", DOMAIN)
    pw = proxy_lab.tmp / "desterlib.htpasswd"
    pw.write_text(htpasswd("desterlib", real))
    site = nginx_site(SiteRequest(DOMAIN, "nginx", proxy_lab.api_port, real, cert=Cert(str(cert), str(key), False),
                                  htpasswd=str(pw), acme_root=str(proxy_lab.tmp),
                                  http_port=proxy_lab.http_port, https_port=proxy_lab.https_port))
    served = proxy_lab.nginx(site, cert)
    assert proxy_lab.get(served, "/", user="desterlib", password=PASSWORD)["status"] == 200
    assert proxy_lab.get(served, "/", user="desterlib", password=PASSWORD + "x")["status"] == 401


def test_a_link_to_a_directory_in_the_tree_follows_the_copy(tmp_path):
    """sites-enabled as a link to the whole sites-available directory: the planned site is read there."""
    server = _server("nginx")
    conf = _etc_copy(tmp_path, "nginx")
    shutil.rmtree(conf / "sites-enabled")
    (conf / "sites-enabled").symlink_to("/etc/nginx/sites-available")
    req = _nginx_request(tmp_path)
    changes, _links = _nginx_changes(tmp_path, nginx_site(req) + "bogus_directive on;\n")
    result = validate(server, SystemRoot(str(tmp_path)), changes)
    assert not result.ok and "bogus_directive" in result.message


def test_the_hosts_own_configuration_validates_and_is_left_alone(tmp_path):
    """Without --root: the machine's /etc/<server> as it is (Debian's defaults here), nothing written."""
    for kind in ("caddy", "nginx"):
        server = _server(kind)
        etc = Path("/etc") / kind
        if not etc.is_dir():
            continue
        before = _tree(etc)
        logs = Path("/var/log") / kind
        logs_before = _tree(logs) if logs.is_dir() else None
        result = validate(server, SystemRoot(), {})
        assert result.ok, result.message
        assert _tree(etc) == before
        assert (_tree(logs) if logs.is_dir() else None) == logs_before


# ------------------------------------------------------------------------- after installing: argv


def _until(fn, seconds: float = 15) -> bool:
    """Poll ``fn`` until it is true or the deadline passes (a reload is applied asynchronously)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.1)
    return bool(fn())


def test_caddy_validate_and_reload_argv_work_on_the_installed_file(proxy_lab, tmp_path):
    """validate_argv and reload_argv under --root DIR, on a Caddy that runs from DIR/etc/caddy/Caddyfile
    (reload goes through the admin endpoint the Caddyfile names, inside the lab's namespace)."""
    server = _server("caddy")
    root = SystemRoot(str(tmp_path / "root"))
    conf = Path(root.path("/etc/caddy"))

    def site(open_paths: frozenset[str]) -> str:
        return caddy_site(SiteRequest(DOMAIN, "caddy", proxy_lab.api_port, HASH, open_paths=open_paths,
                                      caddy_directive=server.caddy_directive, https_port=proxy_lab.https_port,
                                      tls_internal=True))

    served = proxy_lab.caddy(site(frozenset()), conf_dir=conf)
    logs = {"user": "desterlib", "password": PASSWORD}
    assert proxy_lab.get(served, "/api/v1/logs", **logs)["status"] == 403
    (conf / "Caddyfile").write_text(proxy_lab.caddy_config(site(frozenset({"logs"}))))
    home = tmp_path / "home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env:
        # The validator provisions `tls internal` (a CA): none of it lands in the caller's home.
        for name, value in (("HOME", home), ("XDG_DATA_HOME", home / "d"), ("XDG_CONFIG_HOME", home / "c")):
            env.setenv(name, str(value))
        done = proxy_lab.ns.run(*validate_argv(server, root))
    assert done.returncode == 0, done.stderr[-1000:]
    assert list(home.iterdir()) == []
    done = proxy_lab.ns.run(*reload_argv(server, root))
    assert done.returncode == 0, done.stderr[-1000:]
    assert _until(lambda: proxy_lab.get(served, "/api/v1/logs", **logs).get("status") == 200)
    # A broken file: the validator says so, the reload fails, and the running config keeps serving.
    (conf / "Caddyfile").write_text(proxy_lab.caddy_config(site(frozenset())).replace("route {", "route {{"))
    assert proxy_lab.ns.run(*validate_argv(server, root)).returncode != 0
    assert proxy_lab.ns.run(*reload_argv(server, root)).returncode != 0
    assert proxy_lab.get(served, "/api/v1/logs", **logs)["status"] == 200


def test_nginx_validate_and_reload_argv_work_on_the_installed_file(proxy_lab, tmp_path):
    """validate_argv and reload_argv under --root DIR, on an nginx that runs from DIR/etc/nginx/nginx.conf.
    nginx -s reload only signals the master (its exit status says nothing of the new configuration):
    validate_argv is the gate before it."""
    server = _server("nginx")
    root = SystemRoot(str(tmp_path / "root"))
    conf = Path(root.path("/etc/nginx"))
    cert, key = self_signed(proxy_lab.tmp / "cert", DOMAIN)
    pw = proxy_lab.tmp / "desterlib.htpasswd"
    pw.write_text(htpasswd("desterlib", HASH))

    def site(open_paths: frozenset[str]) -> str:
        return nginx_site(SiteRequest(DOMAIN, "nginx", proxy_lab.api_port, HASH, open_paths=open_paths,
                                      cert=Cert(str(cert), str(key), False), htpasswd=str(pw),
                                      acme_root=str(proxy_lab.tmp), http_port=proxy_lab.http_port,
                                      https_port=proxy_lab.https_port))

    served = proxy_lab.nginx(site(frozenset()), cert, conf_dir=conf)
    logs = {"user": "desterlib", "password": PASSWORD}
    assert proxy_lab.get(served, "/api/v1/settings", **logs)["status"] == 403
    (conf / "site.conf").write_text(site(frozenset({"settings"})))
    done = proxy_lab.ns.run(*validate_argv(server, root))
    assert done.returncode == 0, done.stderr[-1000:]
    done = proxy_lab.ns.run(*reload_argv(server, root))
    assert done.returncode == 0, done.stderr[-1000:]
    assert _until(lambda: proxy_lab.get(served, "/api/v1/settings", **logs).get("status") == 200)
    (conf / "site.conf").write_text(site(frozenset()).replace("proxy_pass", "proxy_passs", 1))
    failed = proxy_lab.ns.run(*validate_argv(server, root))
    assert failed.returncode != 0 and "proxy_passs" in failed.stderr


def test_planned_files_outside_the_config_dir_are_read_from_the_plan(tmp_path):
    """A placeholder certificate the plan creates (outside /etc/nginx, absent under the root so far) is
    what nginx -t reads; without it in the plan the same site is invalid. Keys may be system paths."""
    server = _server("nginx")
    _etc_copy(tmp_path, "nginx")
    req = _nginx_request(tmp_path)
    cert_dir = tmp_path / "etc" / "ssl" / "desterlib"
    pem, key = (cert_dir / "fullchain.pem").read_bytes(), (cert_dir / "privkey.pem").read_bytes()
    shutil.rmtree(cert_dir)
    changes, links = _nginx_changes(tmp_path, nginx_site(req))
    assert not validate(server, SystemRoot(str(tmp_path)), changes, links).ok
    planned = dict(changes)
    planned["/etc/ssl/desterlib/fullchain.pem"] = pem  # a system path: taken under the root
    planned[str(cert_dir / "privkey.pem")] = key
    before = _tree(tmp_path)
    result = validate(server, SystemRoot(str(tmp_path)), planned, links)
    assert result.ok, result.message
    assert _tree(tmp_path) == before and not cert_dir.exists()
    # A planned removal is seen too: the certificate the site names is gone.
    planned[str(cert_dir / "privkey.pem")] = None
    assert not validate(server, SystemRoot(str(tmp_path)), planned, links).ok
