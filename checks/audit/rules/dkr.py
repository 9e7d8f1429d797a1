"""DKR-*: container isolation settings."""

from __future__ import annotations

import json
import os
import posixpath
import re

from checks.audit.findings import FAIL, PASS, Outcome
from checks.audit.rules import Context, check
from checks.core.yamlpos import Node
from checks.install.model import Mount, Service, Where

_TRUE = {"true", "yes", "on", "y", "1"}


def truthy(node: Node | None) -> bool:
    """Whether a compose scalar says yes (``true``, ``yes``, ``on``, ``1``...)."""
    if node is None:
        return False
    if isinstance(node.value, bool):
        return node.value
    return str(node.value).strip().lower() in _TRUE


def _socket_dirs() -> set[str]:
    # Directories that contain /var/run/docker.sock (or /run/docker.sock).
    return {"/", "/var", "/var/run", "/run"}


def is_docker_socket(path: str) -> bool:
    base = posixpath.basename(path)
    return base in ("docker.sock", "podman.sock") or path in _socket_dirs()


@check("DKR-001")
def dkr_001(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        for m in svc.mounts:
            if m.host_path and is_docker_socket(m.host_path):
                how = f" via volume '{m.via_volume}'" if m.via_volume else ""
                is_sock = posixpath.basename(m.host_path).endswith(".sock")
                what = "the Docker socket" if is_sock else f"{m.host_path}, which holds the Docker socket"
                ev.append(ctx.ev(m.where, svc.name, f"{what} is mounted{how}", target=m))
    return Outcome(FAIL if ev else PASS, ev)


@check("DKR-002")
def dkr_002(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        node = svc.opt("privileged")
        if node is not None and truthy(node):
            ev.append(ctx.ev(Where(node.file, node.line, "privileged: true"), svc.name, target=node))
    return Outcome(FAIL if ev else PASS, ev)


_NNP = re.compile(r"^\s*no-new-privileges(?:\s*[:=]\s*(?P<v>\S+))?\s*$", re.I)


def no_new_privileges(svc: Service) -> tuple[bool, Node | None]:
    """(set, the item that sets it false) from a service's security_opt."""
    node = svc.opt("security_opt")
    ok, bad = False, None
    if node is not None and node.is_seq():
        for item in node.value:
            m = _NNP.match(str(item.value)) if item.value is not None else None
            if m and (m.group("v") is None or m.group("v").lower() in _TRUE):
                ok = True
            elif m:
                bad = item
    return ok, bad


@check("DKR-003")
def dkr_003(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        ok, _ = no_new_privileges(svc)
        if not ok:
            ev.append(ctx.svc_ev(svc, "no-new-privileges is not set"))
    return Outcome(FAIL if ev else PASS, ev)


def image_tag(ref: str) -> tuple[str | None, bool]:
    """(tag, has_digest) of an image reference; the registry's :port is not a tag."""
    if "@" in ref:
        return None, True
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        return last.split(":", 1)[1], False
    return None, False


@check("DKR-004")
def dkr_004(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        if svc.image is None or not isinstance(svc.image.value, str):
            continue
        if svc.image.missing:
            continue  # depends on a variable that is not set here
        tag, digest = image_tag(svc.image.value.strip())
        if digest:
            continue
        if tag is None or tag == "" or tag == "latest":
            where = Where(svc.image.node.file, svc.image.node.line, f"image: {svc.image.value}")
            ev.append(ctx.ev(where, svc.name, "no tag (means latest)" if not tag else "tag latest"))
    return Outcome(FAIL if ev else PASS, ev)


DANGEROUS_CAPS = {"ALL", "SYS_ADMIN", "NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "SYS_RAWIO", "DAC_READ_SEARCH",
                  "DAC_OVERRIDE", "BPF", "PERFMON", "SYS_BOOT", "SYS_TIME", "MAC_ADMIN", "MAC_OVERRIDE",
                  "SETFCAP", "SYSLOG"}


def normalize_cap(cap: str) -> str | None:
    """``cap_sys_admin`` -> ``SYS_ADMIN``; ``CAP_ALL`` is not a capability (Docker rejects it)."""
    up = cap.strip().upper()
    if up.startswith("CAP_"):
        up = up[4:]
        if up == "ALL":
            return None
    return up


@check("DKR-006")
def dkr_006(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        node = svc.opt("cap_add")
        if node is None or not node.is_seq():
            continue
        for item in node.value:
            cap = normalize_cap(str(item.value)) if item.value is not None else None
            if cap in DANGEROUS_CAPS:
                ev.append(ctx.ev(Where(item.file, item.line, f"cap_add: {item.value}"), svc.name, f"{cap}"))
    return Outcome(FAIL if ev else PASS, ev)


_CREDENTIAL_DIRS = (".ssh", ".aws", ".gnupg", ".docker", ".kube", ".config/gcloud", ".azure", ".password-store")
_ETC_READONLY_OK = {"/etc/localtime", "/etc/timezone", "/etc/ssl/certs", "/etc/ca-certificates",
                    "/etc/pki/ca-trust", "/etc/hosts", "/etc/resolv.conf", "/etc/machine-id", "/etc/os-release"}


def sensitive_reason(m: Mount, install_root: str) -> str | None:
    path = m.host_path
    if not path:
        return None
    source = (m.source or "").strip()
    # Data dirs inside the install dir (../desterlib-data/db) are DesterLib's own,
    # even when the install dir itself lives in /root. A relative path that
    # climbs out of it is judged by where it lands.
    if path == install_root or path.startswith(install_root.rstrip("/") + "/"):
        return None
    home_like = re.fullmatch(r"/home(/[^/]+)?|/root|/Users/[^/]+|/var/home/[^/]+", path)
    if source in ("~", "~/") or home_like:
        return "a home directory" if path != "/home" else "every home directory"
    if path == "/":
        return "the host's root filesystem"
    for top in ("/etc", "/proc", "/sys", "/boot", "/var/lib/docker"):
        if path == top:
            return f"host {top}"
    if path in ("/var/run", "/run"):
        return "host /var/run (runtime sockets)"
    if path.startswith("/etc/"):
        if m.read_only and path in _ETC_READONLY_OK:
            return None
        return "a file under host /etc"
    if path.startswith(("/proc/", "/sys/", "/boot/", "/var/lib/docker/")):
        return "a path under " + "/" + path.split("/")[1]
    if path == "/dev" or (path.startswith("/dev/") and path in ("/dev/mem", "/dev/kmem", "/dev/port")):
        return "host devices"
    for home in re.findall(r"^(?:/home/[^/]+|/root|/Users/[^/]+)", path):
        rest = path[len(home) + 1:]
        if any(rest == d or rest.startswith(d + "/") for d in _CREDENTIAL_DIRS):
            return "credentials in a home directory"
    under_home = source[2:]
    if source.startswith("~/") and any(
            under_home.rstrip("/") == d or under_home.startswith(d + "/") for d in _CREDENTIAL_DIRS):
        return "credentials in a home directory"
    return None


@check("DKR-007")
def dkr_007(ctx: Context) -> Outcome:
    ev = []
    for svc in ctx.inst.services:
        for m in svc.mounts:
            if m.host_path and posixpath.basename(m.host_path) in ("docker.sock", "podman.sock"):
                continue  # DKR-001's
            reason = sensitive_reason(m, ctx.inst.root)
            if reason:
                ev.append(ctx.ev(m.where, svc.name, f"mounts {reason}" + (" (read-only)" if m.read_only else "")))
    return Outcome(FAIL if ev else PASS, ev)


def _daemon_rotates(host_root: str) -> bool:
    path = os.path.join(host_root, "etc/docker/daemon.json")
    try:
        with open(path, encoding="utf-8") as fh:
            conf = json.load(fh)
    except (OSError, ValueError):
        return False
    if not isinstance(conf, dict):
        return False
    driver = str(conf.get("log-driver", "json-file"))
    if driver in _ROTATING_DRIVERS:
        return True
    opts = conf.get("log-opts")
    return isinstance(opts, dict) and "max-size" in opts


def _daemon_log_driver(host_root: str) -> str:
    """The daemon's default log driver: json-file unless daemon.json names another."""
    try:
        with open(os.path.join(host_root, "etc/docker/daemon.json"), encoding="utf-8") as fh:
            conf = json.load(fh)
    except (OSError, ValueError):
        return "json-file"
    return str(conf.get("log-driver") or "json-file").lower() if isinstance(conf, dict) else "json-file"


_ROTATING_DRIVERS = {
    "local", "journald", "syslog", "none", "fluentd", "gelf", "awslogs", "splunk", "gcplogs", "loki", "etwlogs",
}


@check("DKR-008")
def dkr_008(ctx: Context) -> Outcome:
    daemon = _daemon_rotates(ctx.inst.host_root)
    daemon_driver = _daemon_log_driver(ctx.inst.host_root)
    ev = []
    for svc in ctx.inst.services:
        node = svc.opt("logging")
        if node is None or not node.is_map():
            if not daemon:
                ev.append(ctx.svc_ev(svc, "default json-file logging without max-size"))
            continue
        driver = node.get("driver")
        name = str(driver.value).lower() if driver is not None and driver.value else daemon_driver
        if name in _ROTATING_DRIVERS:
            continue
        opts = node.get("options")
        if opts is not None and opts.is_map() and opts.get("max-size") is not None:
            continue
        # Docker merges the daemon's log-opts into every container whose driver is
        # the daemon's default, whether the compose file names it or not
        # (Daemon.mergeAndVerifyLogConfig).
        if daemon and name == daemon_driver:
            continue
        # Cite the "logging:" key itself: a block mapping's value starts a line lower.
        at = (svc.node.keys or {}).get("logging") or node
        ev.append(ctx.ev(Where(at.file, at.line, "logging:"), svc.name, f"{name} logging without max-size"))
    return Outcome(FAIL if ev else PASS, ev)
