"""A Caddy site block or an nginx server block for the user's domain, with the login the API lacks.

(Interface; the implementation lands with the TLS work.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from checks.proxy.model import PROTECTED

BCRYPT_COST = 12
"""bcrypt's cost: hashing stays under 0.5 s on a small server (measured in benchmarks/tls_speed.py)."""
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


def validate_domain(text: str) -> str:
    """The domain, lower-cased, if it is a valid DNS host name with a dot; InputError (one line) if not."""
    raise NotImplementedError


def hash_password(password: str, cost: int = BCRYPT_COST) -> str:
    """bcrypt of ``password`` (both Caddy and nginx on Debian read ``$2b$``)."""
    raise NotImplementedError


def caddy_site(req: SiteRequest) -> str:
    """The Caddyfile site block."""
    raise NotImplementedError


def nginx_site(req: SiteRequest) -> str:
    """The nginx server blocks (port 80: ACME and the redirect; 443: the proxy)."""
    raise NotImplementedError


def htpasswd(user: str, password_hash: str) -> str:
    """The nginx password file's content."""
    raise NotImplementedError


__all__ = ["PROTECTED", "BCRYPT_COST", "LOGIN_USER", "Cert", "SiteRequest", "validate_domain", "hash_password",
           "caddy_site", "nginx_site", "htpasswd"]
