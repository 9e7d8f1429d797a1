"""A Caddy site block or an nginx server block for the user's domain, with the login the API lacks.

Both configurations do the same four things, in this order:

1. refuse the API's dangerous paths (:data:`PROTECTED`: its logs, which hold the database password,
   its settings, which hold the TMDB key, and the Swagger UI that drives the whole API) with 403,
   before the login is even asked for, so the login does not open them; a key in
   ``SiteRequest.open_paths`` is served instead (behind the login);
2. ask for the login (basic auth, bcrypt hash);
3. proxy to ``127.0.0.1:API_PORT``, passing the client's address on (X-Real-IP, X-Forwarded-For), and
   websockets on ``/ws``;
4. send HSTS and the usual security headers; plain HTTP is redirected to HTTPS.

The refused prefixes match case-insensitively (Express routes ``/API/V1/LOGS`` like
``/api/v1/logs``) and cover everything under and after them (``/api/docs.json``,
``/api/v1/settings/providers``). The password itself never appears in anything generated here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

import bcrypt

from checks.core.errors import InputError
from checks.proxy.model import PROTECTED

BCRYPT_COST = 11
"""bcrypt's cost: hashing stays under 0.5 s on a small server, busy or not (benchmarks/tls_speed.py, 2-core VM:
cost 11 takes 0.15 s idle and 0.30 s with the machine loaded 2.5 times over; cost 12 took 0.30 s idle but
0.6 s loaded). Each step doubles the work; 10 is the least the usual guidance accepts."""
LOGIN_USER = "desterlib"


@dataclass(frozen=True, slots=True)
class Cert:
    """nginx's certificate and key (Let's Encrypt's once certbot has run; a self-signed placeholder before)."""

    certificate: str
    key: str
    letsencrypt: bool


@dataclass(frozen=True, slots=True)
class SiteRequest:
    """What to generate."""

    domain: str
    server: str
    """``caddy`` or ``nginx``."""
    api_port: int
    password_hash: str
    """bcrypt (``$2b$...``): what the file holds, never the password."""
    user: str = LOGIN_USER
    open_paths: frozenset[str] = field(default_factory=frozenset)
    """Keys of :data:`PROTECTED` the user opted in to serve (behind the login)."""
    caddy_directive: str = "basicauth"
    """``basicauth`` before Caddy 2.8, ``basic_auth`` from 2.8."""
    cert: Cert | None = None
    """nginx only."""
    htpasswd: str = "/etc/nginx/desterlib.htpasswd"
    """nginx only: the password file's system path."""
    acme_root: str = "/var/www/html"
    """nginx only: the webroot ``certbot certonly --webroot`` writes its challenges to."""
    http_port: int = 80
    https_port: int = 443
    tls_internal: bool = False
    """Caddy: ``tls internal`` (tests: a local CA instead of ACME)."""
    install: str = ""
    """The installation's directory, named in the header comment (empty: not named)."""


_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
#: Characters a bcrypt hash is made of; a user name is one word (it sits in a Caddyfile and an htpasswd line).
_HASH = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}")
_USER = re.compile(r"[A-Za-z0-9._-]{1,64}")

HEADERS: tuple[tuple[str, str], ...] = (
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "frame-ancestors 'none'"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)
"""The security headers both servers send (Caddy also drops ``Server``; nginx sets ``server_tokens off``)."""


def validate_domain(text: str) -> str:
    """The domain, lower-cased, if it is a valid DNS host name with a dot; InputError (one line) if not.

    RFC 1123: labels of letters, digits and inner hyphens, 1-63 characters each, at most 253 in all;
    a trailing dot (the root) is accepted and dropped; an IP address is not a domain (no certificate
    authority issues for it, and Caddy's automatic HTTPS needs a name).
    """
    if not isinstance(text, str):
        raise InputError("the domain must be text")
    name = text.strip().lower()
    name = name[:-1] if name.endswith(".") else name
    shown = _shown(text)
    if not name:
        raise InputError("the domain is empty: give a host name such as desterlib.example.com")
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        pass
    else:
        raise InputError(f"{shown} is an IP address: give a host name such as desterlib.example.com")
    if len(name) > 253:
        raise InputError(f"the domain is {len(name)} characters long: at most 253")
    labels = name.split(".")
    if len(labels) < 2:
        raise InputError(f"{shown} has no dot: give a full host name such as desterlib.example.com")
    for label in labels:
        if not label:
            raise InputError(f"{shown} has an empty label (two dots in a row, or a leading dot)")
        if len(label) > 63:
            raise InputError(f"{shown} has a label of {len(label)} characters: at most 63")
        if not _LABEL.fullmatch(label):
            raise InputError(f"{shown} is not a host name: letters, digits and inner hyphens only, between dots")
    if labels[-1].isdigit():
        raise InputError(f"{shown} is not a host name: its last label is all digits")
    return name


def _shown(text: str) -> str:
    """The user's text, safe for one line of output (printable, bounded)."""
    clean = "".join(c if c.isprintable() and not c.isspace() else "?" for c in text.strip())
    return repr(clean[:80] + ("..." if len(clean) > 80 else ""))


def hash_password(password: str, cost: int = BCRYPT_COST) -> str:
    """bcrypt of ``password`` (both Caddy and nginx on Debian read ``$2b$``)."""
    if not password:
        raise InputError("the proxy password is empty")
    raw = password.encode()
    if len(raw) > 72:
        # bcrypt reads 72 bytes; a longer password would silently accept any suffix.
        raise InputError("the proxy password is longer than 72 bytes (bcrypt reads no more)")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=cost)).decode("ascii")


def _check(req: SiteRequest) -> None:
    """Refuse a request whose values would break out of their place in the file."""
    validate_domain(req.domain)
    if not _HASH.fullmatch(req.password_hash):
        raise InputError("the proxy login's hash is not a bcrypt hash ($2b$...)")
    if not _USER.fullmatch(req.user):
        raise InputError("the proxy login's user name must be letters, digits, '.', '_' or '-'")
    unknown = set(req.open_paths) - set(PROTECTED)
    if unknown:
        raise InputError(f"unknown path to open: {', '.join(sorted(unknown))} (known: {', '.join(PROTECTED)})")
    for port in (req.api_port, req.http_port, req.https_port):
        if not 0 < port < 65536:
            raise InputError(f"port {port} is out of range")


def _blocked(req: SiteRequest) -> list[str]:
    return [p for k, p in PROTECTED.items() if k not in req.open_paths]


def _header(req: SiteRequest, server: str) -> list[str]:
    where = f" for the DesterLib install at {req.install}" if req.install else " for DesterLib"
    opened = ", ".join(PROTECTED[k] for k in PROTECTED if k in req.open_paths) or "none"
    return [
        f"# Generated by dester-harden{where}: the {server} front door of {req.domain}.",
        f"# Everyone needs the login ({req.user}); refused even with it: "
        + (", ".join(_blocked(req)) or "nothing") + f"; opened by the user: {opened}.",
        "# Undo with `dester-harden undo` (it restores every file as it was and reloads the server);",
        "# edits made here by hand are overwritten by the next `dester-harden fix`.",
    ]


def caddy_site(req: SiteRequest) -> str:
    """The Caddyfile site block."""
    _check(req)
    if req.caddy_directive not in ("basicauth", "basic_auth"):
        raise InputError(f"unknown Caddy basic auth directive {req.caddy_directive!r}")
    address = req.domain if req.https_port == 443 else f"{req.domain}:{req.https_port}"
    out = _header(req, "Caddy")
    out.append(f"{address} {{")
    if req.tls_internal:
        out.append("\ttls internal")
    out.append("\theader {")
    out += [f'\t\t{name} "{value}"' for name, value in HEADERS]
    out.append("\t\t-Server")
    out.append("\t}")
    # route: the handlers run in the order written, not in Caddy's directive order, so the refusal
    # comes before the login and the login before the proxy.
    out.append("\troute {")
    blocked = _blocked(req)
    if blocked:
        # Caddy's path matcher is case-insensitive, as Express's routing is.
        out.append("\t\t@blocked path " + " ".join(f"{p}*" for p in blocked))
        out.append("\t\trespond @blocked 403")
    out.append(f"\t\t{req.caddy_directive} {{")
    out.append(f"\t\t\t{req.user} {req.password_hash}")
    out.append("\t\t}")
    # X-Forwarded-For/-Proto/-Host are set by reverse_proxy itself; websockets (/ws) pass through it.
    out.append(f"\t\treverse_proxy 127.0.0.1:{req.api_port} {{")
    out.append("\t\t\theader_up X-Real-IP {remote_host}")
    out.append("\t\t}")
    out.append("\t}")
    out.append("}")
    return "\n".join(out) + "\n"


def _proxy_headers(indent: str) -> list[str]:
    return [
        f"{indent}proxy_set_header Host $host;",
        f"{indent}proxy_set_header X-Real-IP $remote_addr;",
        f"{indent}proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        f"{indent}proxy_set_header X-Forwarded-Proto $scheme;",
    ]


def nginx_site(req: SiteRequest) -> str:
    """The nginx server blocks (port 80: ACME and the redirect; 443: the proxy)."""
    _check(req)
    if req.cert is None:
        raise InputError("nginx needs a certificate and key (a placeholder until certbot has run)")
    for path in (req.cert.certificate, req.cert.key, req.htpasswd, req.acme_root):
        if not path.startswith("/") or re.search(r"[\s;{}'\"$#\\]", path):
            raise InputError(f"{_shown(path)} is not a plain absolute path")
    port = "" if req.https_port == 443 else f":{req.https_port}"
    i1, i2 = "\t", "\t\t"
    out = _header(req, "nginx")
    out += [
        "server {",
        f"{i1}listen {req.http_port};",
        f"{i1}listen [::]:{req.http_port};",
        f"{i1}server_name {req.domain};",
        f"{i1}server_tokens off;",
        f"{i1}# certbot's challenges (certbot certonly --webroot -w {req.acme_root}): no login, nothing else.",
        f"{i1}location ^~ /.well-known/acme-challenge/ {{",
        f"{i2}root {req.acme_root};",
        f"{i2}default_type text/plain;",
        f"{i1}}}",
        f"{i1}location / {{",
        f"{i2}return 301 https://$host{port}$request_uri;",
        f"{i1}}}",
        "}",
        "",
        "server {",
        f"{i1}listen {req.https_port} ssl http2;",
        f"{i1}listen [::]:{req.https_port} ssl http2;",
        f"{i1}server_name {req.domain};",
        f"{i1}server_tokens off;",
        f"{i1}ssl_certificate {req.cert.certificate};",
        f"{i1}ssl_certificate_key {req.cert.key};",
    ]
    # Inherited by every location below (none sets add_header itself); "always": on 401/403 too.
    out += [f'{i1}add_header {name} "{value}" always;' for name, value in HEADERS]
    out += [
        f'{i1}auth_basic "DesterLib";',
        f"{i1}auth_basic_user_file {req.htpasswd};",
        f"{i1}client_max_body_size 50m;",
    ]
    for path in _blocked(req):
        # A case-insensitive regex (Express routes /API/V1/LOGS too), checked before the prefix
        # locations; `return` runs before the login is asked for: refused even with it.
        out += [f"{i1}location ~* ^{re.escape(path)} {{", f"{i2}return 403;", f"{i1}}}"]
    out += [
        f"{i1}location /ws {{",
        f"{i2}proxy_pass http://127.0.0.1:{req.api_port};",
        f"{i2}proxy_http_version 1.1;",
        f"{i2}proxy_set_header Upgrade $http_upgrade;",
        f'{i2}proxy_set_header Connection "upgrade";',
        *_proxy_headers(i2),
        f"{i2}proxy_read_timeout 1h;",
        f"{i2}proxy_send_timeout 1h;",
        f"{i1}}}",
        f"{i1}location / {{",
        f"{i2}proxy_pass http://127.0.0.1:{req.api_port};",
        f"{i2}proxy_http_version 1.1;",
        *_proxy_headers(i2),
        f"{i1}}}",
        "}",
    ]
    return "\n".join(out) + "\n"


def htpasswd(user: str, password_hash: str) -> str:
    """The nginx password file's content."""
    if not _USER.fullmatch(user):
        raise InputError("the proxy login's user name must be letters, digits, '.', '_' or '-'")
    if not _HASH.fullmatch(password_hash):
        raise InputError("the proxy login's hash is not a bcrypt hash ($2b$...)")
    return f"{user}:{password_hash}\n"


__all__ = ["PROTECTED", "BCRYPT_COST", "LOGIN_USER", "HEADERS", "Cert", "SiteRequest", "validate_domain",
           "hash_password", "caddy_site", "nginx_site", "htpasswd"]
