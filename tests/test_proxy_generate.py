"""checks.proxy.generate and the pure parts of checks.proxy.servers: no server runs here.

The real servers' verdicts on what is generated are in tests/test_proxy_real.py.
"""

from __future__ import annotations

import os
import re
import string
import subprocess
import sys
from pathlib import Path

import bcrypt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from checks.core.errors import InputError
from checks.core.sysroot import SystemRoot
from checks.proxy import servers
from checks.proxy.generate import (
    BCRYPT_COST,
    Cert,
    SiteRequest,
    caddy_site,
    hash_password,
    htpasswd,
    nginx_site,
    validate_domain,
)
from checks.proxy.servers import (
    Server,
    find_server,
    is_debian_default_caddyfile,
    nginx_layout,
    parse_version,
    reload_argv,
    validate_argv,
)

SETTINGS = settings(max_examples=200, deadline=None, database=None)
HASH = "$2b$04$" + "a" * 53
CERT = Cert("/etc/ssl/dl/fullchain.pem", "/etc/ssl/dl/privkey.pem", False)

# ------------------------------------------------------------------------------ validate_domain


@pytest.mark.parametrize(("text", "want"), [
    ("desterlib.example.com", "desterlib.example.com"),
    ("DesterLib.Example.COM", "desterlib.example.com"),
    ("media.example.com.", "media.example.com"),
    ("  a.b.co  ", "a.b.co"),
    ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("a-b.c-d.io", "a-b.c-d.io"),
    ("1.example.com", "1.example.com"),
    ("a" * 63 + ".com", "a" * 63 + ".com"),
])
def test_good_domains(text, want):
    assert validate_domain(text) == want


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    (".", "empty"),
    ("localhost", "no dot"),
    ("192.168.1.10", "IP address"),
    ("::1", "IP address"),
    ("[::1]", "IP address"),
    ("10.0.0.300", "all digits"),
    ("a..b.com", "empty label"),
    (".example.com", "empty label"),
    ("-a.example.com", "not a host name"),
    ("a-.example.com", "not a host name"),
    ("a_b.example.com", "not a host name"),
    ("*.example.com", "not a host name"),
    ("exa mple.com", "not a host name"),
    ("example.com/path", "not a host name"),
    ("https://example.com", "not a host name"),
    ("bücher.example", "not a host name"),
    ("a" * 64 + ".com", "63"),
    (".".join(["a" * 60] * 5), "253"),
    ("evil.com\n{", "not a host name"),
    ("evil.com;include /etc/passwd", "not a host name"),
])
def test_bad_domains_are_one_line_input_errors(text, why):
    with pytest.raises(InputError) as err:
        validate_domain(text)
    assert why in str(err.value)
    assert "\n" not in str(err.value)


_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


@SETTINGS
@given(st.lists(_label, min_size=2, max_size=6))
@example(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
def test_every_rfc1123_name_is_accepted_lower_cased(labels):
    name = ".".join(labels)
    if len(name) > 253 or labels[-1].isdigit():
        with pytest.raises(InputError):
            validate_domain(name)
        return
    assert validate_domain(name.upper()) == name
    assert validate_domain(name + ".") == name


@SETTINGS
@given(st.text(alphabet=string.printable + "éü\u00a0\u2028", max_size=80))
def test_anything_accepted_is_safe_in_a_config_file(text):
    """What passes is only letters, digits, dots and hyphens: nothing that ends a directive or a block."""
    try:
        name = validate_domain(text)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert re.fullmatch(r"[a-z0-9.-]+", name)
    assert "." in name and len(name) <= 253


# ------------------------------------------------------------------------------ hash and htpasswd


def test_hash_password_is_bcrypt_at_the_chosen_cost_and_checks():
    h = hash_password("s3cret pass", cost=4)
    assert h.startswith("$2b$04$") and len(h) == 60
    assert bcrypt.checkpw(b"s3cret pass", h.encode())
    assert not bcrypt.checkpw(b"s3cret pasS", h.encode())
    assert hash_password("s3cret pass", cost=4) != h  # salted


def test_the_default_cost_is_the_constant():
    assert hash_password("x").startswith(f"$2b${BCRYPT_COST:02d}$")


def test_hash_password_refuses_what_bcrypt_would_cut_or_empty():
    with pytest.raises(InputError):
        hash_password("")
    with pytest.raises(InputError, match="72 bytes"):
        hash_password("x" * 73)


def test_htpasswd_line():
    assert htpasswd("desterlib", HASH) == f"desterlib:{HASH}\n"
    with pytest.raises(InputError):
        htpasswd("desterlib", "plaintext-password")
    with pytest.raises(InputError):
        htpasswd("bad:user", HASH)


# ------------------------------------------------------------------------------ caddy_site / nginx_site


def _req(**kw) -> SiteRequest:
    base = {"domain": "dl.example.com", "server": "caddy", "api_port": 3001, "password_hash": HASH}
    base.update(kw)
    return SiteRequest(**base)  # type: ignore[arg-type]


def test_caddy_site_order_is_refusal_then_login_then_proxy():
    text = caddy_site(_req())
    body = text[text.index("dl.example.com {"):]
    route = body[body.index("route {"):]
    assert route.index("@blocked path /api/v1/logs* /api/v1/settings* /api/docs*") < route.index("respond @blocked 403")
    proxy = route.index("reverse_proxy 127.0.0.1:3001")
    assert route.index("respond @blocked 403") < route.index("basicauth {") < proxy
    assert f"desterlib {HASH}" in route
    assert "header_up X-Real-IP {remote_host}" in route
    assert 'Strict-Transport-Security "max-age=31536000; includeSubDomains"' in body
    assert "-Server" in body
    assert "tls internal" not in text


def test_caddy_site_options():
    text = caddy_site(_req(open_paths=frozenset({"logs", "settings", "docs"}), caddy_directive="basic_auth",
                           tls_internal=True, https_port=8443, install="/home/u/.desterlib"))
    assert "@blocked" not in text and "respond" not in text
    assert "basic_auth {" in text and "basicauth" not in text
    assert "\ttls internal\n" in text
    assert "dl.example.com:8443 {" in text
    assert "/home/u/.desterlib" in text.splitlines()[0]
    assert "dester-harden undo" in text
    only_docs = caddy_site(_req(open_paths=frozenset({"docs"})))
    assert "@blocked path /api/v1/logs* /api/v1/settings*\n" in only_docs


def test_nginx_site_blocks():
    text = nginx_site(_req(server="nginx", cert=CERT, open_paths=frozenset({"settings"})))
    assert "listen 80;" in text and "listen 443 ssl http2;" in text
    assert "location ^~ /.well-known/acme-challenge/ {\n\t\troot /var/www/html;" in text
    assert "return 301 https://$host$request_uri;" in text
    assert "ssl_certificate /etc/ssl/dl/fullchain.pem;" in text
    assert "auth_basic_user_file /etc/nginx/desterlib.htpasswd;" in text
    assert "location ~* ^/api/v1/logs {\n\t\treturn 403;" in text
    assert "location ~* ^/api/docs {" in text
    assert "/api/v1/settings {" not in text
    assert 'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" always;' in text
    ws = text[text.index("location /ws {"):]
    assert "proxy_http_version 1.1;" in ws and "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_read_timeout 1h;" in ws
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in text
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in text
    # The redirect keeps a non-default HTTPS port.
    assert "return 301 https://$host:8443$request_uri;" in nginx_site(_req(server="nginx", cert=CERT, https_port=8443))


def test_nginx_needs_a_certificate():
    with pytest.raises(InputError, match="certificate"):
        nginx_site(_req(server="nginx"))


@pytest.mark.parametrize("bad", [
    {"domain": "evil.com { }"},
    {"password_hash": "hunter2"},
    {"user": "a b"},
    {"open_paths": frozenset({"health"})},
    {"api_port": 0},
    {"caddy_directive": "basic"},
])
def test_bad_requests_are_refused(bad):
    with pytest.raises(InputError):
        caddy_site(_req(**bad))


def test_nginx_paths_must_be_plain(tmp_path):
    with pytest.raises(InputError):
        nginx_site(_req(server="nginx", cert=Cert("/etc/x.pem; include /etc/shadow", "/k", False)))
    with pytest.raises(InputError):
        nginx_site(_req(server="nginx", cert=CERT, htpasswd="relative.htpasswd"))


def test_the_password_is_in_nothing_generated():
    password = "the-password-itself"
    h = hash_password(password, cost=4)
    outputs = [caddy_site(_req(password_hash=h)), nginx_site(_req(server="nginx", password_hash=h, cert=CERT)),
               htpasswd("desterlib", h)]
    assert all(password not in out for out in outputs)


# ------------------------------------------------------------------------------ servers: pure parts


@pytest.mark.parametrize(("kind", "out", "want"), [
    ("caddy", "v2.6.2 h1:SrJ3ZzLD2WOcAuKs8M0abW6nLj1kkBX3RFKOAIWhhUI=\n", "2.6.2"),
    ("caddy", "2.6.2\n", "2.6.2"),
    ("caddy", "v2.8.4 h1:q3pe0wpBj1OcHFZ3n/1nl4V4bxBrYoSoab7rL9BMYNk=", "2.8.4"),
    ("caddy", "v2.10.0-beta.1 h1:x", "2.10.0"),
    ("caddy", "garbage", None),
    ("nginx", "nginx version: nginx/1.22.1\n", "1.22.1"),
    ("nginx", "nginx version: nginx/1.25.3 (Ubuntu)", "1.25.3"),
    ("nginx", "", None),
])
def test_parse_version(kind, out, want):
    assert parse_version(kind, out) == want


@pytest.mark.parametrize(("version", "want"), [
    ("2.6.2", "basicauth"), ("2.7.6", "basicauth"), ("2.8.0", "basic_auth"), ("2.10.0", "basic_auth"),
    ("3.0", "basic_auth"), (None, "basicauth"),
])
def test_caddy_directive(version, want):
    assert Server("caddy", "/usr/bin/caddy", version, False).caddy_directive == want


def _fake(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(exist_ok=True)
    p = bin_dir / name
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(0o755)
    return p


def test_find_server_reads_the_version_from_path(tmp_path):
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "caddy", 'echo "v2.8.4 h1:abc="\n')
    _fake(bin_dir, "nginx", 'echo "nginx version: nginx/1.26.0" >&2\n')
    caddy = find_server("caddy", SystemRoot(), {"PATH": str(bin_dir)})
    assert (caddy.binary, caddy.version, caddy.caddy_directive) == (str(bin_dir / "caddy"), "2.8.4", "basic_auth")
    assert find_server("nginx", SystemRoot(), {"PATH": str(bin_dir)}).version == "1.26.0"
    missing = find_server("caddy", SystemRoot(), {"PATH": str(tmp_path / "none")})
    assert missing.binary is None and not missing.running and missing.install_hint == "apt install caddy"


def test_find_server_gives_up_on_a_version_that_hangs(tmp_path, monkeypatch):
    monkeypatch.setattr(servers, "VERSION_TIMEOUT", 0.3)
    bin_dir = tmp_path / "bin"
    _fake(bin_dir, "caddy", "exec sleep 30\n")
    found = find_server("caddy", SystemRoot(), {"PATH": str(bin_dir)})
    assert found.binary is not None and found.version is None


def test_find_server_sees_a_running_process_by_exe(tmp_path):
    """A process whose /proc/PID/exe is the binary: running. The binary is a copy of sleep under a name
    nothing else runs (a real nginx elsewhere on the machine must not decide the negative case)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "dh-fake-srv"
    fake.write_bytes(Path("/bin/sleep").read_bytes())
    fake.chmod(0o755)
    assert not servers._running(str(fake), "dh-fake-srv")
    proc = subprocess.Popen([str(fake), "30"])
    try:
        assert servers._running(str(fake), "dh-none")  # by exe
        assert servers._running("/nonexistent/x", "dh-fake-srv")  # by comm
        (bin_dir / "nginx").symlink_to(fake)
        assert find_server("nginx", SystemRoot(), {"PATH": str(bin_dir)}).running
    finally:
        proc.kill()
        proc.wait()
    assert not servers._running(str(fake), "dh-fake-srv")


DEBIAN_CADDYFILE = """\
# The Caddyfile is an easy way to configure your Caddy web server.
#
# this machine's public IP, then replace ":80" below with your
# domain name.

:80 {
\t# Set this path to your site's directory.
\troot * /usr/share/caddy

\t# Enable the static file server.
\tfile_server

\t# Another common task is to set up a reverse proxy:
\t# reverse_proxy localhost:8080
}

# Refer to the Caddy docs for more information:
# https://caddyserver.com/docs/caddyfile
"""


def test_is_debian_default_caddyfile():
    assert is_debian_default_caddyfile(DEBIAN_CADDYFILE)
    if Path("/etc/caddy/Caddyfile").is_file():  # the package's own, where installed
        assert is_debian_default_caddyfile(Path("/etc/caddy/Caddyfile").read_text())
    assert not is_debian_default_caddyfile(DEBIAN_CADDYFILE.replace("# reverse_proxy", "reverse_proxy"))
    assert not is_debian_default_caddyfile(DEBIAN_CADDYFILE + "\nmedia.example.com {\n\treverse_proxy :3001\n}\n")
    assert not is_debian_default_caddyfile(DEBIAN_CADDYFILE.replace(":80", ":8080"))
    assert not is_debian_default_caddyfile("")


def test_nginx_layout(tmp_path):
    root = SystemRoot(str(tmp_path))
    conf = tmp_path / "etc" / "nginx"
    assert nginx_layout(root) == "conf.d"
    (conf / "sites-available").mkdir(parents=True)
    (conf / "nginx.conf").write_text("http {\n\tinclude /etc/nginx/conf.d/*.conf;\n"
                                     "\t# include /etc/nginx/sites-enabled/*;\n}\n")
    assert nginx_layout(root) == "conf.d"
    (conf / "nginx.conf").write_text("http {\n\tinclude /etc/nginx/conf.d/*.conf;\n"
                                     "\tinclude /etc/nginx/sites-enabled/*;\n}\n")
    assert nginx_layout(root) == "sites"
    (conf / "sites-available").rmdir()
    assert nginx_layout(root) == "conf.d"


def test_validate_and_reload_argv_under_a_root(tmp_path):
    root = SystemRoot(str(tmp_path))
    caddy = Server("caddy", "/usr/bin/caddy", "2.6.2", True)
    nginx = Server("nginx", "/usr/sbin/nginx", "1.22.1", True)
    assert validate_argv(caddy, root)[:2] == ("sh", "-c")
    assert validate_argv(caddy, root)[3:] == ("/usr/bin/caddy", f"{tmp_path}/etc/caddy/Caddyfile")
    assert validate_argv(nginx, root)[:4] == ("/usr/sbin/nginx", "-t", "-q", "-c")
    assert validate_argv(nginx, root)[4] == f"{tmp_path}/etc/nginx/nginx.conf"
    assert reload_argv(caddy, root) == ("/usr/bin/caddy", "reload", "--adapter", "caddyfile", "--config",
                                        f"{tmp_path}/etc/caddy/Caddyfile")
    assert reload_argv(nginx, root)[:5] == ("/usr/sbin/nginx", "-s", "reload", "-c", f"{tmp_path}/etc/nginx/nginx.conf")


def test_reload_argv_uses_systemctl_only_on_the_real_root_with_systemd(monkeypatch):
    nginx = Server("nginx", "/usr/sbin/nginx", "1.22.1", True)
    real_isdir = os.path.isdir
    monkeypatch.setattr(os.path, "isdir", lambda p: True if p == "/run/systemd/system" else real_isdir(p))
    assert reload_argv(nginx, SystemRoot()) == ("systemctl", "reload", "nginx")
    assert reload_argv(nginx, SystemRoot("/tmp/x"))[1:3] == ("-s", "reload")
    monkeypatch.setattr(os.path, "isdir", lambda p: False if p == "/run/systemd/system" else real_isdir(p))
    assert reload_argv(nginx, SystemRoot())[:3] == ("/usr/sbin/nginx", "-s", "reload")


def test_nothing_here_imports_a_face():
    done = subprocess.run([sys.executable, "-c", "import checks.proxy.servers, checks.proxy.generate, sys;"
                           "print(sorted(m for m in sys.modules if m.startswith(('textual', 'tui', 'screens'))))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
