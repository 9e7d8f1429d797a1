"""TLS-*: the front door in front of the API (internet profile; a tailscale funnel too).

The front doors come from :func:`checks.proxy.detect.front_doors` (Caddy, nginx,
Traefik labels, cloudflared, ``tailscale serve`` for the tailscale profile), read
once per audit (:func:`detected`). A door whose rules cannot be read from here (a
cloudflared tunnel run with a token) never lets TLS-002 or TLS-003 pass.
"""

from __future__ import annotations

from collections.abc import Callable

from checks.audit.catalog import BY_ID
from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED, Evidence, Outcome
from checks.audit.rules import Context, check
from checks.core.sysroot import SystemRoot
from checks.install.model import Where
from checks.proxy import detect
from checks.proxy.model import FrontDoor

_KEY = "front_doors"


def detected(ctx: Context) -> detect.Detected:
    """The installation's front doors, read once per audit (TLS-001/002/003 and NET-003 share them)."""
    got = ctx.cache.get(_KEY)
    if not isinstance(got, detect.Detected):
        got = detect.front_doors(ctx.inst, tailscale=_tailscale(ctx))
        ctx.cache[_KEY] = got
    return got


def _tailscale(ctx: Context) -> Callable[[], str | None] | None:
    """``tailscale serve status`` for the tailscale profile on this machine's own root (under
    ``--root DIR`` the running tailscale is not the copy's)."""
    if ctx.profile != "tailscale" or not SystemRoot(ctx.inst.host_root).real:
        return None
    return detect.tailscale_status


def _ev(ctx: Context, door: FrontDoor, note: str | None) -> Evidence:
    return ctx.ev(Where(door.file, door.line, ""), None, note, text=door.summary())


def _scope(ctx: Context, check_id: str) -> tuple[list[FrontDoor], Outcome | None, str | None]:
    """The public doors the check judges, or the outcome when it does not apply; and the severity
    (a funnel under the tailscale profile is judged as the internet profile)."""
    if ctx.profile == "internet":
        return [d for d in detected(ctx).doors if d.public], None, None
    if ctx.profile == "tailscale":
        doors = detected(ctx).doors
        funnels = [d for d in doors if d.public and d.kind == "tailscale"]
        if funnels:
            return funnels, None, BY_ID[check_id].severity_for("internet")
        reason = f"applies to the internet profile only (profile: {ctx.profile})"
        served = [d for d in doors if d.kind == "tailscale"]
        if served:
            reason += f"; tailscale serve reaches the tailnet only ({len(served)} handler(s) to the API, no funnel)"
        return [], Outcome(SKIPPED, reason=reason), None
    return [], Outcome(SKIPPED, reason=f"applies to the internet profile only (profile: {ctx.profile})"), None


def _unknown_reason(ctx: Context, doors: list[FrontDoor]) -> str:
    notes = [n for n in detected(ctx).notes if any(n.startswith(f"{d.file}:{d.line}") for d in doors)]
    first = notes[0] if notes else doors[0].summary()
    return "cannot tell from here what it protects: " + first


def _with(outcome: Outcome, severity: str | None) -> Outcome:
    outcome.severity = severity
    return outcome


@check("TLS-001")
def tls_001(ctx: Context) -> Outcome:
    doors, skip, sev = _scope(ctx, "TLS-001")
    if skip is not None:
        return skip
    known = [d for d in doors if not d.unknown]
    https = [d for d in known if d.https]
    if https:
        return _with(Outcome(PASS, [_ev(ctx, d, None) for d in https]), sev)
    unknown = [d for d in doors if d.unknown]
    if unknown and not known:
        return _with(Outcome(ERROR, reason=_unknown_reason(ctx, unknown)), sev)
    ev = [_ev(ctx, d, "plain HTTP") for d in known]
    reason = "no Caddy, nginx, Traefik or cloudflared front door proxies to the API" if not known else \
        "the proxy serves plain HTTP"
    unreadable = detected(ctx).unreadable
    if unreadable:
        reason += " (could not read: " + ", ".join(unreadable) + ")"
    return _with(Outcome(FAIL, ev, reason), sev)


@check("TLS-002")
def tls_002(ctx: Context) -> Outcome:
    doors, skip, sev = _scope(ctx, "TLS-002")
    if skip is not None:
        return skip
    if not doors:
        return Outcome(SKIPPED, reason="no reverse proxy to the API found (see TLS-001)")
    ev = [_ev(ctx, d, "no login: basic_auth/auth_basic, forward auth or Access")
          for d in doors if not d.unknown and not d.auth]
    if ev:
        return _with(Outcome(FAIL, ev), sev)
    unknown = [d for d in doors if d.unknown]
    if unknown:
        return _with(Outcome(ERROR, reason=_unknown_reason(ctx, unknown)), sev)
    return _with(Outcome(PASS), sev)


@check("TLS-003")
def tls_003(ctx: Context) -> Outcome:
    doors, skip, sev = _scope(ctx, "TLS-003")
    if skip is not None:
        return skip
    if not doors:
        return Outcome(SKIPPED, reason="no reverse proxy to the API found (see TLS-001)")
    ev = []
    accepted = []
    for d in doors:
        if d.unknown or not d.open_paths:
            continue
        if not d.unaccepted_paths:
            accepted.append(_ev(ctx, d, "serves " + ", ".join(d.open_paths) + " behind the login, as you chose "
                                "in the TLS step"))
            continue
        note = "serves " + ", ".join(d.unaccepted_paths)
        if d.kind == "traefik":
            note += " (Traefik cannot refuse a path without a plugin; no IP-allowlisted router for it)"
        ev.append(_ev(ctx, d, note))
    if ev:
        return _with(Outcome(FAIL, ev), sev)
    unknown = [d for d in doors if d.unknown]
    if unknown:
        return _with(Outcome(ERROR, reason=_unknown_reason(ctx, unknown)), sev)
    return _with(Outcome(PASS, accepted), sev)
