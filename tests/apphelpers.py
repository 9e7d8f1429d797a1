"""Helpers for Pilot and snapshot tests of the assistant: deterministic apps and waiting."""

from __future__ import annotations

import os
import random
import stat
import string

from checks.assistant.session import Session
from checks.assistant.steps import APPLY_STEPS
from tui.run import build_app

ALPHABET = string.ascii_letters + string.digits + "-_"
#: Snapshots show a fixed clock and host name.
HOSTNAME = "media-box"
CLOCK = 1_795_000_000.0  # 2026-11-18


def seeded_secrets(seed: int = 7):
    """A stand-in for secrets.token_urlsafe that repeats between runs (tests only)."""
    rnd = random.Random(seed)

    def token(nbytes: int = 32) -> str:
        n = (nbytes * 4 + 2) // 3
        return "".join(rnd.choice(ALPHABET) for _ in range(n))

    return token


def make_app(root: str, **kwargs):
    kwargs.setdefault("hostname", HOSTNAME)
    kwargs.setdefault("now", lambda: CLOCK)
    kwargs.setdefault("new_secret", seeded_secrets())
    kwargs.setdefault("cursor_blink", False)
    # No Docker in a test unless it brings its own (a fake LiveState, or the live lab).
    kwargs.setdefault("live_state", lambda root: None)
    kwargs.setdefault("euid", 1000)
    return build_app(root, **kwargs)


#: Worker groups that live as long as a flow (they wait for the user).
FLOW_GROUPS = ("flow", "review", "history-undo")


async def settle(app, pilot, timeout: float = 60.0) -> None:
    """Wait until every worker except the long-lived flows has finished, then one refresh."""
    from textual.worker import WorkerState

    loops = int(timeout / 0.02)
    for _ in range(loops):
        busy = [w for w in app.workers if w.group not in FLOW_GROUPS
                and w.state in (WorkerState.PENDING, WorkerState.RUNNING)]
        if not busy:
            break
        await pilot.pause(0.02)
    else:
        raise AssertionError(f"workers still busy: {busy}")
    await pilot.pause()
    await pilot.pause()


async def wait_screen(app, pilot, name: str, timeout: float = 60.0):
    """Wait until the active screen is of class ``name`` and its workers are done."""
    for _ in range(int(timeout / 0.02)):
        if type(app.screen).__name__ == name:
            screen = app.screen
            await settle(app, pilot, timeout)
            return screen
        await pilot.pause(0.02)
    raise AssertionError(f"expected {name}, the screen is {type(app.screen).__name__}")


async def wait_until(pilot, predicate, timeout: float = 60.0, what: str = "condition") -> None:
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def screen_text(app) -> str:
    """The text of every Static and table on the active screen (what a user reads)."""
    from textual.widgets import DataTable, OptionList, Static

    parts = []
    for w in app.screen.query("*"):
        if isinstance(w, Static):
            parts.append(str(w.render()))
        elif isinstance(w, OptionList):
            parts += [str(w.get_option_at_index(i).prompt) for i in range(w.option_count)]
        elif isinstance(w, DataTable):
            for row in range(w.row_count):
                parts.append("  ".join(str(c) for c in w.get_row_at(row)))
    return "\n".join(parts)


def snapshot_tree(root: str) -> dict[str, tuple[bytes | None, int, int, int]]:
    """(contents or None for dirs, mode, uid, gid) of everything under root, except the journal."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".dester-harden"]
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as fh:
                    data = fh.read()
            out[os.path.relpath(path, root)] = (data, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    st = os.lstat(root)
    out["."] = (None, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    return out


async def wait_in_stack(app, pilot, name: str, timeout: float = 60.0):
    """Wait until a screen of class ``name`` is anywhere on the stack (a modal may be above it)."""
    for _ in range(int(timeout / 0.02)):
        for screen in app.screen_stack:
            if type(screen).__name__ == name:
                return screen
        await pilot.pause(0.02)
    raise AssertionError(f"expected {name} on the stack: {[type(s).__name__ for s in app.screen_stack]}")


#: The guided setup's step screens on the demo (local profile), in order.
STEP_SCREENS = ("NetworkScreen", "PasswordScreen", "PermissionsScreen", "ContainersScreen", "FirewallScreen",
                "BackupsScreen")


async def walk_to_review(app, pilot) -> None:
    """From the welcome screen: Enter, then n through every step to the review."""
    await wait_screen(app, pilot, "WelcomeScreen")
    await pilot.press("enter")
    for name in STEP_SCREENS:
        await wait_screen(app, pilot, name)
        await pilot.press("n")


async def answer_previews(app, pilot, key: str):
    """Answer every preview of the review with ``key`` ("a" apply, "s" skip); returns the review screen."""
    review = await wait_in_stack(app, pilot, "ReviewScreen")
    for step in review.steps:
        await wait_screen(app, pilot, "PreviewModal")
        await pilot.press(key)
        await wait_until(pilot, lambda step=step: review.state[step] not in ("pending", "applying"),
                         what=f"{step} answered")
    await wait_until(pilot, lambda: review.done, what="the review to finish")
    return review


def harden(root: str, **session_kwargs) -> Session:
    """What a first run leaves: every step applied through the session API the review screen uses."""
    session_kwargs.setdefault("hostname", "h")
    session_kwargs.setdefault("new_secret", seeded_secrets())
    s = Session(root, **session_kwargs)
    s.audit()
    s.generate_password()
    for step in APPLY_STEPS:
        s.choices.selected[step] = s.default_selection(step)
        s.apply(s.plan(step))
    return s


#: The Engine the fake live states answer with (the lab's Debian docker.io).
ENGINE_VERSION = "20.10.24"


def demo_live(root: str, *, reachable: bool = True, stale: tuple[str, ...] = (),
              error: str = "permission denied on /var/run/docker.sock", firewall=None):
    """A fixed LiveState for the demo install as the CLI deploys it: every service running, postgres and
    redis published on all interfaces (``HostIp ""``), the API on 0.0.0.0:3001; no real Docker.

    ``stale``: services whose running container holds other password values than the files
    (not recreated since the files changed). ``reachable=False``: the Engine refused with ``error``;
    the listening sockets (read from /proc without Docker) still show the exposure.
    """
    from checks.install.discovery import discover
    from checks.live.model import Binding, Container, EngineInfo, Listener, LiveMount, LiveState, value_digest

    listeners = (Listener("0.0.0.0", 3001, 4), Listener("0.0.0.0", 5432, 4), Listener("::", 5432, 6),
                 Listener("0.0.0.0", 6379, 4), Listener("::", 6379, 6))
    if not reachable:
        return LiveState(project="desterlib", engine_error=error, listeners=listeners)
    inst = discover(root, None, "/", CLOCK)
    bindings = {"postgres": (Binding("", 5432, 5432),), "redis": (Binding("", 6379, 6379),),
                "api": (Binding("0.0.0.0", 3001, 3001),)}
    containers = []
    for svc in inst.services:
        def running(key: str, value: str | None, service: str = svc.name) -> str:
            old = service in stale and ("PASSWORD" in key or key == "DATABASE_URL")
            return value_digest("an-old-value" if old else (value or ""))

        env = {k: running(k, v.value) for k, v in svc.environment.items()}
        # mounted as the files say (as Compose names volumes: project_volume), so nothing drifts
        mounts = tuple(LiveMount(m.kind, (m.host_path or "") if m.kind == "bind" else f"desterlib_{m.source}",
                                 m.target or "", not m.read_only) for m in svc.mounts if m.target)
        containers.append(Container(id=f"{svc.name}0000", name=f"desterlib-{svc.name}", service=svc.name,
                                    status="running", health="healthy" if svc.name == "postgres" else None,
                                    restart_count=0, started_at="2026-11-18T12:00:00Z", image=svc.image_name,
                                    image_id=f"sha256:{svc.name}", image_created=CLOCK - 86400,
                                    bindings=bindings.get(svc.name, ()), mounts=mounts, env=env))
    return LiveState(project="desterlib",
                     engine=EngineInfo(ENGINE_VERSION, "1.41", "unix:///var/run/docker.sock", "iptables"),
                     containers=tuple(containers), listeners=listeners, addresses=("192.168.1.20",),
                     gathered_at=CLOCK, firewall=firewall)


def ufw_bypassed():
    """A fixed FirewallState: ufw active with ``deny 5432`` and deny incoming, Docker's forward path open
    (DOCKER-USER holds only its RETURN), an SSH session from the LAN: the situation issue 12 starts from."""
    from checks.live.fwmodel import FirewallState, FwRule, SshSession

    return FirewallState(
        "ufw", True, "0.36.2", ufw_installed=True, default_incoming="deny",
        rules=(FwRule("allow", 22, "tcp", text="22/tcp ALLOW IN Anywhere"),
               FwRule("deny", 5432, "tcp", text="5432 DENY IN Anywhere")),
        iptables="nft", docker_backend="iptables", docker_user=("-N DOCKER-USER", "-A DOCKER-USER -j RETURN"),
        docker_user6=None, ipv6=True, lan_networks=("192.168.1.0/24",), ssh_ports=(22,),
        ssh_session=SshSession("192.168.1.7", 51234, "192.168.1.20", 22))


#: A ufw configuration as Debian's package installs it, cut to what the firewall plan reads: hermetic
#: input for the faces' tests (the real files are the fw_sandbox tests' input).
UFW_FILES = {
    "etc/ufw/ufw.conf": "ENABLED=yes\nLOGLEVEL=low\n",
    "etc/ufw/user.rules": ("*filter\n:ufw-user-input - [0:0]\n:ufw-user-output - [0:0]\n:ufw-user-forward - [0:0]\n"
                           ":ufw-user-limit - [0:0]\n:ufw-user-limit-accept - [0:0]\n### RULES ###\n"
                           "-A ufw-user-limit -j REJECT\n-A ufw-user-limit-accept -j ACCEPT\nCOMMIT\n"),
    "etc/ufw/user6.rules": ("*filter\n:ufw6-user-input - [0:0]\n:ufw6-user-output - [0:0]\n:ufw6-user-forward - [0:0]\n"
                            "### RULES ###\nCOMMIT\n"),
    "etc/ufw/after.rules": ("*filter\n:ufw-after-input - [0:0]\n:ufw-after-output - [0:0]\n"
                            ":ufw-after-forward - [0:0]\nCOMMIT\n"),
    "etc/ufw/after6.rules": ("*filter\n:ufw6-after-input - [0:0]\n:ufw6-after-output - [0:0]\n"
                             ":ufw6-after-forward - [0:0]\nCOMMIT\n"),
    "etc/default/ufw": 'IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\n',
}


def ufw_sysroot(parent) -> str:
    """A ``--root`` directory holding :data:`UFW_FILES` (0640 as ufw keeps its rules)."""
    import os

    root = os.path.join(str(parent), "sysroot")
    for rel, text in UFW_FILES.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(path, 0o640 if rel.endswith(".rules") else 0o644)
    return root
