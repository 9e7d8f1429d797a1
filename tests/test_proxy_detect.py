"""Front doors that exist (checks/proxy/detect.py): each form with a fail and a pass case, in tmp
dirs used as the host root (``--root``), and what TLS-001/002/003 and NET-003 make of them.

Over 500 lines: every form (Caddy, nginx, Traefik, cloudflared, tailscale) and the rules built on
them share the one install builder here, and each form's fail and pass cases read best side by side."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED
from checks.audit.rules import tls
from checks.audit.run import run_audit
from checks.install.discovery import discover
from checks.install.model import Installation
from checks.proxy import detect
from checks.proxy.detect import front_doors
from checks.proxy.model import PROTECTED, FrontDoor

FIXED_NOW = 1_700_000_000.0
API = '  api:\n    image: desterlib/api:1.4.2\n    ports:\n      - "127.0.0.1:3001:3001"\n'
ALL = frozenset(PROTECTED)
REFUSE_CADDY = "    @blocked path /api/v1/logs* /api/v1/settings* /api/docs*\n    respond @blocked 403\n"


def build(tmp_path: Path, host: dict[str, str], compose: str = API, install: dict[str, str] | None = None,
          links: dict[str, str] | None = None) -> Installation:
    root = tmp_path / "install"
    root.mkdir(parents=True, exist_ok=True)
    (root / "docker-compose.yml").write_text("services:\n" + compose)
    for rel, text in (install or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    host_root = tmp_path / "host"
    host_root.mkdir(exist_ok=True)
    for rel, text in host.items():
        (host_root / rel).parent.mkdir(parents=True, exist_ok=True)
        (host_root / rel).write_text(text)
    for rel, target in (links or {}).items():
        (host_root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, host_root / rel)
    return discover(str(root), host_root=str(host_root), now=FIXED_NOW)


def doors(tmp_path: Path, host: dict[str, str], compose: str = API, **kw) -> list[FrontDoor]:
    return front_doors(build(tmp_path, host, compose, **kw)).doors


def one(found: list[FrontDoor]) -> FrontDoor:
    assert len(found) == 1, found
    return found[0]


# -- Caddy -----------------------------------------------------------------------------------------

def test_caddy_main_file_open_site(tmp_path):
    d = one(doors(tmp_path, {"etc/caddy/Caddyfile": "{\n  email a@b.c\n}\n\nx.example.com {\n"
                                                     "  reverse_proxy localhost:3001\n}\n"}))
    assert (d.kind, d.line, d.hosts, d.https, d.auth, d.blocked) == ("caddy", 5, ("x.example.com",), True, False,
                                                                      frozenset())
    assert d.file.endswith("/host/etc/caddy/Caddyfile")
    assert d.summary().endswith(":5: HTTPS; no login; serves /api/v1/logs, /api/v1/settings, /api/docs")


def test_caddy_main_file_closed_site(tmp_path):
    text = "x.example.com {\n  basicauth {\n    a $2a$14$x\n  }\n" + REFUSE_CADDY + "  reverse_proxy :3001\n}\n"
    d = one(doors(tmp_path, {"etc/caddy/Caddyfile": text}))
    assert (d.https, d.auth, d.blocked, d.open_paths) == (True, True, ALL, [])


def test_caddy_other_upstream_is_no_door(tmp_path):
    assert doors(tmp_path, {"etc/caddy/Caddyfile": "x.example.com {\n  reverse_proxy localhost:8096\n}\n"}) == []


def test_caddy_exact_path_does_not_refuse_what_is_under_it(tmp_path):
    """Caddy's ``path /api/v1/settings`` is exact: /api/v1/settings/providers still passes."""
    text = ("x.example.com {\n  @b path /api/v1/logs* /api/v1/settings /api/docs*\n  respond @b 403\n"
            "  reverse_proxy :3001\n}\n")
    d = one(doors(tmp_path, {"etc/caddy/Caddyfile": text}))
    assert d.blocked == {"logs", "docs"}


def test_caddy_import_glob_finds_sites_in_imported_files(tmp_path):
    host = {"etc/caddy/Caddyfile": "{\n  admin off\n}\nimport sites/*.caddy\n",
            "etc/caddy/sites/a.caddy": "\n\nhttp://x.example.com {\n  reverse_proxy 127.0.0.1:3001\n}\n",
            "etc/caddy/sites/b.txt": "y.example.com {\n  reverse_proxy 127.0.0.1:3001\n}\n"}
    d = one(doors(tmp_path, host))
    assert d.file.endswith("etc/caddy/sites/a.caddy") and d.line == 3 and not d.https


def test_caddy_nested_import_relative_to_the_importing_file(tmp_path):
    """Caddyfile imports a/*; a/site imports ../common/auth (relative to a/), which holds the login and
    the refusals; a cycle back to the Caddyfile stops."""
    host = {"etc/caddy/Caddyfile": "import a/*\n",
            "etc/caddy/a/site": "import ../Caddyfile\nx.example.com {\n  import ../common/auth\n"
                                "  reverse_proxy 127.0.0.1:3001\n}\n",
            "etc/caddy/common/auth": "basic_auth {\n  a $2a$14$x\n}\n" + REFUSE_CADDY}
    d = one(doors(tmp_path, host))
    assert (d.line, d.auth, d.blocked) == (2, True, ALL)
    host["etc/caddy/common/auth"] = "header X-Frame-Options DENY\n"
    d = one(doors(tmp_path / "open", host))
    assert (d.auth, d.blocked) == (False, frozenset())


def test_caddy_snippet_import_is_the_snippet_not_a_file(tmp_path):
    host = {"etc/caddy/Caddyfile": "(login) {\n  basicauth {\n    a $2a$14$x\n  }\n}\n"
                                   "x.example.com {\n  import login\n  reverse_proxy 127.0.0.1:3001\n}\n",
            "etc/caddy/login": "y.example.com {\n  reverse_proxy 127.0.0.1:3001\n}\n"}
    d = one(doors(tmp_path, host))
    assert (d.hosts, d.auth) == (("x.example.com",), True)


def test_caddy_site_file_not_imported_is_not_loaded(tmp_path):
    host = {"etc/caddy/Caddyfile": ":80 {\n  file_server\n}\n",
            "etc/caddy/conf.d/site": "x.example.com {\n  reverse_proxy 127.0.0.1:3001\n}\n"}
    assert doors(tmp_path, host) == []


def test_an_import_that_names_the_root_copy_itself_is_read_there(tmp_path):
    """Under --root DIR, a tree a server runs from names DIR/etc/caddy/...: not moved under DIR twice;
    a /etc/caddy/... path of a copied tree is taken under DIR."""
    host_root = tmp_path / "host"
    site = "x.example.com {\n  reverse_proxy 127.0.0.1:3001\n}\n"
    host = {"etc/caddy/Caddyfile": f"import {host_root}/etc/caddy/own.caddy\nimport /etc/caddy/copied.caddy\n",
            "etc/caddy/own.caddy": site, "etc/caddy/copied.caddy": site.replace("x.", "y.")}
    found = sorted(d.file for d in doors(tmp_path, host))
    assert [f.rsplit("/", 1)[1] for f in found] == ["copied.caddy", "own.caddy"]


def test_planned_site_and_link_are_judged_like_installed_ones(tmp_path):
    """The fix planner's re-audit: a site file and its sites-enabled link it is about to write."""
    inst = build(tmp_path, {"etc/nginx/nginx.conf": NGINX_CONF, "etc/nginx/sites-available/.keep": ""})
    base = os.path.join(inst.host_root, "etc/nginx")
    assert front_doors(inst).doors == []
    inst.planned[os.path.join(base, "sites-available/desterlib")] = NGINX_OPEN.encode()
    assert front_doors(inst).doors == []  # only in sites-available: nginx does not load it
    inst.planned_links[os.path.join(base, "sites-enabled/desterlib")] = "../sites-available/desterlib"
    d = one(front_doors(inst).doors)
    assert d.kind == "nginx" and not d.auth


def test_caddy_import_cycle_ends(tmp_path):
    host = {"etc/caddy/Caddyfile": "import Caddyfile\nimport *\nx.example.com {\n  reverse_proxy :3001\n}\n"}
    assert one(doors(tmp_path, host)).line == 3


# -- nginx -----------------------------------------------------------------------------------------

NGINX_CONF = "events {}\nhttp {\n    include /etc/nginx/conf.d/*.conf;\n    include /etc/nginx/sites-enabled/*;\n}\n"
NGINX_OPEN = "server {\n    listen 80;\n    server_name x.example.com;\n    location / {\n" \
             "        proxy_pass http://127.0.0.1:3001;\n    }\n}\n"
NGINX_CLOSED = """\
upstream dester {
    server 127.0.0.1:3001;
}
server {
    listen 443 ssl;
    server_name x.example.com;
    auth_basic "DesterLib";
    auth_basic_user_file /etc/nginx/.htpasswd;
    location = /api/v1/logs { return 403; }
    location ^~ /api/v1/logs/ { return 403; }
    location ^~ /api/v1/settings { deny all; }
    location ~* ^/api/docs { return 444; }
    location / {
        proxy_pass http://dester;
    }
}
"""


def test_nginx_enabled_site_is_a_door(tmp_path):
    host = {"etc/nginx/nginx.conf": NGINX_CONF, "etc/nginx/sites-available/dester": NGINX_OPEN}
    d = one(doors(tmp_path, host, links={"etc/nginx/sites-enabled/dester": "../sites-available/dester"}))
    assert (d.kind, d.line, d.https, d.auth, d.blocked) == ("nginx", 1, False, False, frozenset())
    assert d.hosts == ("x.example.com",)


def test_nginx_site_only_in_sites_available_is_no_door(tmp_path):
    host = {"etc/nginx/nginx.conf": NGINX_CONF, "etc/nginx/sites-available/dester": NGINX_OPEN}
    assert doors(tmp_path, host) == []


def test_nginx_conf_d_relative_include_closed_site(tmp_path):
    host = {"etc/nginx/nginx.conf": "http {\n  include conf.d/*.conf;\n}\n",
            "etc/nginx/conf.d/dester.conf": NGINX_CLOSED}
    d = one(doors(tmp_path, host))
    assert (d.line, d.https, d.auth, d.blocked) == (4, True, True, ALL)
    assert d.file.endswith("etc/nginx/conf.d/dester.conf")


def test_nginx_conf_d_file_nginx_does_not_include(tmp_path):
    host = {"etc/nginx/nginx.conf": "http {\n  include sites-enabled/*;\n}\n",
            "etc/nginx/conf.d/dester.conf": NGINX_OPEN}
    assert doors(tmp_path, host) == []


def test_nginx_longest_prefix_wins_over_a_refusing_root(tmp_path):
    """``location / { deny all; }`` does not refuse what a longer prefix proxies."""
    text = NGINX_OPEN.replace("    location / {", "    location / { deny all; }\n    location /api {")
    d = one(doors(tmp_path, {"etc/nginx/nginx.conf": "http {\n" + text + "}\n"}))
    assert d.blocked == frozenset() and d.line == 2


def test_nginx_exact_location_leaves_the_rest_open(tmp_path):
    text = NGINX_OPEN.replace("    location / {", "    location = /api/v1/settings { return 403; }\n    location / {")
    d = one(doors(tmp_path, {"etc/nginx/sites-enabled/x": text}))
    assert "settings" not in d.blocked


# -- Traefik ---------------------------------------------------------------------------------------

def test_traefik_labels_list_form_without_auth(tmp_path):
    """The docs' labels: HTTPS through websecure and a resolver, no middleware, nothing refused."""
    compose = API + ('    labels:\n      - "traefik.enable=true"\n'
                     '      - "traefik.http.routers.desterlib.rule=Host(`x.example.com`)"\n'
                     '      - "traefik.http.routers.desterlib.entrypoints=websecure"\n'
                     '      - "traefik.http.routers.desterlib.tls.certresolver=myresolver"\n')
    inst = build(tmp_path, {}, compose)
    got = front_doors(inst)
    d = one(got.doors)
    assert (d.kind, d.line, d.hosts, d.https, d.auth, d.blocked) == ("traefik", 8, ("x.example.com",), True, False,
                                                                      frozenset())
    assert any("Traefik cannot refuse a path" in n for n in got.notes)


def test_traefik_labels_map_form_with_basic_auth_and_allowlisted_paths(tmp_path):
    compose = ("  web:\n    image: desterlib/api:1.4.2\n  proxied:\n    image: example/app\n    labels:\n"
               '      traefik.http.routers.d.rule: "Host(`x.example.com`)"\n'
               '      traefik.http.routers.d.tls: "true"\n'
               '      traefik.http.routers.d.middlewares: "login"\n'
               '      traefik.http.middlewares.login.basicauth.users: "a:$$2y$$05$$x"\n'
               '      traefik.http.routers.inside.rule: "PathPrefix(`/api/v1/logs`) || PathPrefix(`/api/v1/settings`)'
               ' || PathPrefix(`/api/docs`)"\n'
               '      traefik.http.routers.inside.middlewares: "lan"\n'
               '      traefik.http.middlewares.lan.ipallowlist.sourcerange: "10.0.0.0/8"\n'
               '      traefik.http.services.d.loadbalancer.server.port: "3001"\n')
    d = one(doors(tmp_path, {}, compose=compose))
    assert (d.https, d.auth, d.blocked, d.unknown) == (True, True, ALL, False)


def test_traefik_middleware_from_a_file_is_unknown(tmp_path):
    compose = API + ('    labels:\n      - "traefik.http.routers.d.rule=Host(`x.example.com`)"\n'
                     '      - "traefik.http.routers.d.middlewares=auth@file"\n')
    d = one(doors(tmp_path, {}, compose))
    assert d.unknown and "not readable" in d.summary()


def test_traefik_disabled_or_other_service_is_no_door(tmp_path):
    off = API + '    labels:\n      - "traefik.enable=false"\n      - "traefik.http.routers.d.rule=Host(`x`)"\n'
    assert doors(tmp_path / "off", {}, off) == []
    other = API + '  other:\n    image: x/y\n    labels:\n      - "traefik.http.routers.o.rule=Host(`y`)"\n'
    assert doors(tmp_path / "other", {}, other) == []


# -- cloudflared -----------------------------------------------------------------------------------

CLOUDFLARED = "tunnel: abc\ncredentials-file: /root/.cloudflared/abc.json\ningress:\n" \
              "  - hostname: x.example.com\n    service: http://localhost:3001\n  - service: http_status:404\n"


def test_cloudflared_config_without_access(tmp_path):
    d = one(doors(tmp_path, {"etc/cloudflared/config.yml": CLOUDFLARED}))
    assert (d.kind, d.line, d.hosts, d.https, d.auth, d.blocked) == ("cloudflared", 4, ("x.example.com",), True,
                                                                      False, frozenset())


def test_cloudflared_config_with_access_in_the_owners_home(tmp_path):
    uid = os.getuid()
    text = CLOUDFLARED.replace("    service: http://localhost:3001\n",
                               "    service: http://127.0.0.1:3001\n    originRequest:\n      access:\n"
                               "        required: true\n        teamName: t\n")
    host = {"etc/passwd": f"root:x:0:0:root:/root:/bin/bash\nowner:x:{uid}:{uid}::/home/owner:/bin/sh\n",
            "home/owner/.cloudflared/config.yaml": text}
    if uid == 0:
        host["etc/passwd"] = "root:x:0:0:root:/home/owner:/bin/bash\n"
    d = one(doors(tmp_path, host))
    assert d.auth and d.file.endswith("home/owner/.cloudflared/config.yaml")


def test_cloudflared_other_service_is_no_door(tmp_path):
    assert doors(tmp_path, {"etc/cloudflared/config.yml": CLOUDFLARED.replace(":3001", ":8096")}) == []


def test_cloudflared_token_service_is_unknown_and_keeps_the_token_out(tmp_path):
    token = "eyJhIjoiZmFrZS10b2tlbi1mb3ItdGVzdHMifQ"
    compose = API + f"  tunnel:\n    image: cloudflare/cloudflared:2024.1.0\n    command: tunnel run --token {token}\n"
    inst = build(tmp_path, {}, compose)
    got = front_doors(inst)
    d = one(got.doors)
    assert d.unknown and d.line == 6
    assert token not in repr(got)
    report = run_audit(inst, "internet", only={"TLS-001", "TLS-002", "TLS-003"})
    for cid in ("TLS-001", "TLS-002", "TLS-003"):
        f = report.by_id(cid)
        assert f.status == ERROR and f.reason and "dashboard" in f.reason, (cid, f)
        assert token not in repr(f)


# -- tailscale serve (recorded `tailscale serve status --json`: no tailscale binary in Debian) -----------

TS_SERVE = {"TCP": {"443": {"HTTPS": True}},
            "Web": {"box.tail1234.ts.net:443": {"Handlers": {"/": {"Proxy": "http://127.0.0.1:3001"}}}}}
TS_FUNNEL = dict(TS_SERVE, AllowFunnel={"box.tail1234.ts.net:443": True})


def test_tailscale_serve_without_funnel_is_tailnet_only(tmp_path):
    d = one(front_doors(build(tmp_path, {}), tailscale=lambda: json.dumps(TS_SERVE)).doors)
    assert (d.kind, d.hosts, d.https, d.public, d.auth) == ("tailscale", ("box.tail1234.ts.net",), True, False, True)


def test_tailscale_funnel_is_public_without_a_login(tmp_path):
    d = one(front_doors(build(tmp_path, {}), tailscale=lambda: json.dumps(TS_FUNNEL)).doors)
    assert (d.public, d.auth, d.blocked) == (True, False, frozenset())


def test_tailscale_not_asked_outside_its_profile_nor_under_a_root_copy(tmp_path, monkeypatch):
    def boom() -> str:
        raise AssertionError("tailscale asked")
    monkeypatch.setattr(detect, "tailscale_status", boom)
    inst = build(tmp_path, {})
    assert run_audit(inst, "internet", only={"TLS-002"}).by_id("TLS-002").status == SKIPPED
    assert run_audit(inst, "tailscale", only={"TLS-002"}).by_id("TLS-002").status == SKIPPED


@pytest.mark.parametrize("status,expect", [(TS_SERVE, SKIPPED), (TS_FUNNEL, FAIL)], ids=["serve", "funnel"])
def test_tailscale_profile_rules(tmp_path, monkeypatch, status, expect):
    inst = build(tmp_path, {})
    monkeypatch.setattr(tls, "_tailscale", lambda ctx: (lambda: json.dumps(status)))
    f = run_audit(inst, "tailscale", only={"TLS-002"}).by_id("TLS-002")
    assert f.status == expect, f
    if expect == FAIL:
        # A funnel is public: judged (and scored) as the internet profile.
        assert f.severity == "high" and "tailscale at tailscale serve status" in f.evidence[0].text
    else:
        assert f.reason and "tailnet only" in f.reason


# -- the rules -------------------------------------------------------------------------------------

def test_rules_read_the_front_doors_once_per_audit(tmp_path, monkeypatch):
    inst = build(tmp_path, {"etc/caddy/Caddyfile": "x.example.com {\n  reverse_proxy :3001\n}\n"},
                 API.replace("127.0.0.1:3001", "3001"))
    calls = []
    real = detect.front_doors

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)
    monkeypatch.setattr(detect, "front_doors", counting)
    report = run_audit(inst, "internet")
    assert [report.by_id(c).status for c in ("TLS-001", "TLS-002", "TLS-003")] == [PASS, FAIL, FAIL]
    assert len(calls) == 1


def test_tls_evidence_is_the_door_summary(tmp_path):
    inst = build(tmp_path, {"etc/caddy/Caddyfile": "\n\nx.example.com {\n  reverse_proxy :3001\n}\n"})
    f = run_audit(inst, "internet", only={"TLS-003"}).by_id("TLS-003")
    assert f.evidence[0].line == 3
    assert f.evidence[0].text.endswith("Caddyfile:3: HTTPS; no login; serves /api/v1/logs, /api/v1/settings, /api/docs")


def test_net003_says_the_front_door_can_be_bypassed(tmp_path):
    inst = build(tmp_path, {"etc/caddy/Caddyfile": "x.example.com {\n  reverse_proxy :3001\n}\n"},
                 API.replace("127.0.0.1:3001", "3001"))
    f = run_audit(inst, "internet", only={"NET-003"}).by_id("NET-003")
    assert f.status == FAIL
    note = f.evidence[0].note or ""
    assert "the caddy front door at " in note and "Caddyfile:1 can be bypassed: the API answers on 0.0.0.0:3001" in note


def test_net003_without_a_front_door_says_nothing_of_one(tmp_path):
    inst = build(tmp_path, {}, API.replace("127.0.0.1:3001", "3001"))
    f = run_audit(inst, "internet", only={"NET-003"}).by_id("NET-003")
    assert f.status == FAIL and "bypassed" not in (f.evidence[0].note or "")


def test_unreadable_config_is_named(tmp_path):
    inst = build(tmp_path, {"etc/caddy/Caddyfile": "x" * 10})
    os.truncate(os.path.join(inst.host_root, "etc/caddy/Caddyfile"), 5 * 1024 * 1024)
    got = front_doors(inst)
    assert got.doors == [] and got.unreadable == [os.path.join(inst.host_root, "etc/caddy/Caddyfile")]


# -- Caddy's own order, not the written one ----------------------------------------------------------

def _caddy(tmp_path: Path, body: str) -> FrontDoor:
    return one(doors(tmp_path, {"etc/caddy/Caddyfile": "x.example.com {\n" + body + "}\n"}))


def test_caddy_top_level_refusal_never_runs_before_a_catch_all_handle(tmp_path):
    """Caddy runs ``handle`` before ``respond``: the catch-all handle proxies the logs too."""
    d = _caddy(tmp_path, REFUSE_CADDY + "  handle {\n    reverse_proxy 127.0.0.1:3001\n  }\n")
    assert d.blocked == frozenset()
    d = _caddy(tmp_path / "plain", REFUSE_CADDY + "  reverse_proxy 127.0.0.1:3001\n")
    assert d.blocked == ALL


def test_caddy_handles_are_exclusive_the_refusing_one_wins(tmp_path):
    body = ("  @blocked path /api/v1/logs* /api/v1/settings* /api/docs*\n  handle {\n    reverse_proxy :3001\n  }\n"
            "  handle @blocked {\n    respond 403\n  }\n")
    assert _caddy(tmp_path, body).blocked == ALL
    body = "  handle /api/v1/logs* {\n    abort\n  }\n  handle {\n    reverse_proxy :3001\n  }\n"
    assert _caddy(tmp_path / "path", body).blocked == {"logs"}


def test_caddy_route_keeps_the_written_order(tmp_path):
    body = "  route {\n    reverse_proxy :3001\n" + REFUSE_CADDY.replace("  ", "    ") + "  }\n"
    assert _caddy(tmp_path, body).blocked == frozenset()
    body = "  route {\n" + REFUSE_CADDY.replace("  ", "    ") + "    reverse_proxy :3001\n  }\n"
    assert _caddy(tmp_path / "first", body).blocked == ALL


def test_caddy_refusal_that_depends_on_a_header_refuses_nothing_for_sure(tmp_path):
    body = ("  @b {\n    path /api/v1/logs* /api/v1/settings* /api/docs*\n    header X-Admin no\n  }\n"
            "  respond @b 403\n  reverse_proxy :3001\n")
    assert _caddy(tmp_path, body).blocked == frozenset()
    body = body.replace("header X-Admin no", "not remote_ip private_ranges")
    assert _caddy(tmp_path / "outsiders", body).blocked == ALL


def test_caddy_login_on_a_subpath_only_is_no_login(tmp_path):
    body = "  basicauth /admin/* {\n    a $2a$14$x\n  }\n  reverse_proxy :3001\n"
    assert not _caddy(tmp_path, body).auth
    assert _caddy(tmp_path / "all", body.replace(" /admin/*", "")).auth


def test_nginx_login_is_inherited_and_overridden_like_nginx_does(tmp_path):
    conf = ("http {\n    auth_basic \"DesterLib\";\n    auth_basic_user_file /etc/nginx/.htpasswd;\n"
            "    include sites-enabled/*;\n}\n")
    host = {"etc/nginx/nginx.conf": conf, "etc/nginx/sites-enabled/x": NGINX_OPEN}
    assert one(doors(tmp_path, host)).auth  # from the http block
    off = "    location / {\n        auth_basic off;\n"
    host["etc/nginx/sites-enabled/x"] = NGINX_OPEN.replace("    location / {\n", off)
    assert not one(doors(tmp_path / "off", host)).auth  # the location turns it off
    closed = NGINX_CLOSED.replace("    location / {\n", off)
    assert not one(doors(tmp_path / "off2", {"etc/nginx/conf.d/x.conf": closed})).auth


def test_caddy_single_site_without_braces(tmp_path):
    text = "{\n  email a@b.c\n}\nx.example.com\n\nbasicauth {\n  a $2a$14$x\n}\nreverse_proxy localhost:3001\n"
    d = one(doors(tmp_path, {"etc/caddy/Caddyfile": text}))
    assert (d.line, d.hosts, d.https, d.auth) == (4, ("x.example.com",), True, True)
    assert not one(doors(tmp_path / "open", {"etc/caddy/Caddyfile": "x.example.com\nreverse_proxy :3001\n"})).auth


def test_caddy_import_never_leaves_the_root_copy(tmp_path):
    """Under --root DIR a relative import that climbs out of DIR is not followed; an absolute one with
    ``..`` stays inside DIR."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "site").write_text("x.example.com {\n  reverse_proxy :3001\n}\n")
    inst = build(tmp_path, {"etc/caddy/Caddyfile": "import ../../../outside/*\n"})
    got = front_doors(inst)
    assert got.doors == [] and any("not followed" in n for n in got.notes)
    host = {"etc/caddy/Caddyfile": "import /../../etc/caddy/sites/*\n",
            "etc/caddy/sites/a": "x.example.com {\n  reverse_proxy :3001\n}\n"}
    assert one(doors(tmp_path / "inside", host)).file.endswith("inside/host/etc/caddy/sites/a")


# -- proxies run by compose: their mounts say where the container paths are ---------------------------

def test_caddy_service_mounts_resolve_container_imports(tmp_path):
    compose = API + ("  caddy:\n    image: caddy:2.7\n    volumes:\n      - ./Caddyfile:/etc/caddy/Caddyfile:ro\n"
                     "      - ./sites:/etc/caddy/sites:ro\n")
    install = {"Caddyfile": "import /etc/caddy/sites/*\nimport /etc/caddy/absent/*\n",
               "sites/dester": ("x.example.com {\n  import /etc/caddy/sites/login.snippet\n"
                                "  reverse_proxy api:3001\n}\n"),
               "sites/login.snippet": "basic_auth {\n  a $2a$14$x\n}\n" + REFUSE_CADDY}
    got = front_doors(build(tmp_path, {}, compose, install=install))
    d = one(got.doors)
    assert (d.file, d.line, d.auth, d.blocked) == ("sites/dester", 1, True, ALL)
    assert any("import /etc/caddy/absent/*: not followed" in n for n in got.notes)


def test_nginx_service_mounts_resolve_container_includes(tmp_path):
    compose = API + ("  proxy:\n    image: nginx:1.27\n    volumes:\n"
                     "      - ./nginx/nginx.conf:/etc/nginx/nginx.conf:ro\n"
                     "      - ./nginx/sites:/etc/nginx/conf.d:ro\n")
    install = {"nginx/nginx.conf": "http {\n  include /etc/nginx/conf.d/*.conf;\n}\n",
               "nginx/sites/dester.conf": NGINX_OPEN.replace("127.0.0.1", "api"),
               "nginx/sites/other.txt": NGINX_OPEN}
    d = one(front_doors(build(tmp_path, {"etc/nginx/nginx.conf": "http {\n}\n"}, compose, install=install)).doors)
    assert (d.file, d.line, d.auth) == ("nginx/sites/dester.conf", 1, False)


def test_install_dir_file_never_reads_the_hosts_etc(tmp_path, monkeypatch):
    """An absolute include in a file of the install directory is not this machine's /etc."""
    opened = []
    real_open = os.open

    def spy(path, *a, **kw):
        opened.append(os.fsdecode(path))
        return real_open(path, *a, **kw)
    monkeypatch.setattr(os, "open", spy)
    inst = build(tmp_path, {}, install={"nginx.conf": "http {\n  include /etc/nginx/*.conf;\n}\n"})
    assert front_doors(inst).doors == []
    assert not [p for p in opened if p.startswith("/etc/")], opened


def test_caddy_huge_or_branchy_site_ends_and_assumes_the_worst(tmp_path):
    """Thousands of directives do not overflow the stack; more maybe-matchers than can be followed
    count as reaching the API without a login, never as refused."""
    long = "".join(f"  header X-{i} v\n" for i in range(5000)) + REFUSE_CADDY + "  reverse_proxy :3001\n"
    assert _caddy(tmp_path, long).blocked == ALL
    branchy = "".join(f"  @h{i} header X-{i} v\n  rewrite @h{i} /x{i}\n" for i in range(40))
    d = _caddy(tmp_path / "branchy", branchy + REFUSE_CADDY + "  reverse_proxy :3001\n")
    assert (d.auth, d.blocked) == (False, frozenset())
    # A maybe-matcher on a directive that changes nothing is no branch: all refused, quickly.
    quiet = "".join(f"  @h{i} header X-{i} v\n  header @h{i} X-Seen {i}\n" for i in range(40))
    assert _caddy(tmp_path / "quiet", quiet + REFUSE_CADDY + "  reverse_proxy :3001\n").blocked == ALL


@pytest.mark.parametrize("form", ["list", "map"])
@pytest.mark.parametrize("login", [True, False], ids=["login", "open"])
def test_traefik_both_label_forms_with_and_without_a_login(tmp_path, form, login):
    lab = {"traefik.enable": "true", "traefik.http.routers.d.rule": "Host(`x.example.com`)",
           "traefik.http.routers.d.entrypoints": "websecure"}
    if login:
        lab["traefik.http.routers.d.middlewares"] = "auth@docker"
        lab["traefik.http.middlewares.auth.forwardauth.address"] = "http://authelia:9091/api/verify"
    if form == "list":
        text = "".join(f'      - "{k}={v}"\n' for k, v in lab.items())
    else:
        text = "".join(f'      {k}: "{v}"\n' for k, v in lab.items())
    d = one(doors(tmp_path, {}, API + "    labels:\n" + text))
    assert (d.https, d.auth, d.unknown) == (True, login, False)


def test_default_tailscale_runner(tmp_path, monkeypatch):
    """A stand-in ``tailscale`` on PATH (the real one is not in Debian): its output, or None when it
    fails or is absent."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    assert detect.tailscale_status() is None
    script = bin_dir / "tailscale"
    script.write_text('#!/bin/sh\n[ "$1 $2 $3" = "serve status --json" ] && echo \'{"Web": {}}\' && exit 0\nexit 1\n')
    script.chmod(0o755)
    assert json.loads(detect.tailscale_status() or "null") == {"Web": {}}
    script.write_text("#!/bin/sh\nexit 3\n")
    assert detect.tailscale_status() is None
