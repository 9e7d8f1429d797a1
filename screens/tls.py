"""HTTPS for an installation on the internet (the internet profile only)."""

from __future__ import annotations

from ._base import InfoStepScreen


class TLSScreen(InfoStepScreen):
    """Where HTTPS stands, and how to put a proxy with a login in front of the API."""

    STEP = "tls"
    NAME = "HTTPS (TLS)"
    CSS_PATH = "tls.tcss"
    INTRO = ("On the internet, only an HTTPS reverse proxy (Caddy or nginx) that asks for a login may face the "
             "world, and it must not serve /api/v1/logs or /api/v1/settings. Setting up the proxy for you arrives "
             "with the TLS step of dester-harden; until then, here is where you stand and what to do.")
    HELP = ("DesterLib has no authentication, so a proxy with basic auth or forward auth is what keeps strangers out; "
            "HTTPS keeps the password and your library's names off the wire.\n\n"
            "- **TLS-001** an HTTPS proxy (Caddy gets certificates by itself; nginx needs certbot).\n"
            "- **TLS-002** the proxy asks for a login.\n"
            "- **TLS-003** the proxy refuses /api/v1/logs and /api/v1/settings (they leak DATABASE_URL).\n\n"
            "`dester-harden explain TLS-001` prints the full explanation.")
