"""The installed Caddy or nginx: version, where a site goes, validation, reload.

:func:`validate` runs the server's own validator (``caddy validate``, ``nginx -t``) on a scratch copy
of its whole configuration tree with the planned changes in place, so the verdict is the real
server's about the real configuration, and nothing under the root (nor the host's /etc, logs or
certificate storage) is written. Every absolute reference to the configuration directory in the
copied files is pointed at the copy; under ``--root DIR`` the other system paths the configuration
names (certificates, the htpasswd file, the ACME webroot) are taken under DIR where they exist
there; log files go to the scratch directory.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from checks.core.sysroot import SystemRoot

INSTALL_HINT = {"caddy": "apt install caddy", "nginx": "apt install nginx certbot python3-certbot-nginx"}
CONF_DIR = {"caddy": "/etc/caddy", "nginx": "/etc/nginx"}
MAIN_FILE = {"caddy": "Caddyfile", "nginx": "nginx.conf"}
VERSION_TIMEOUT = 2.0
VALIDATE_TIMEOUT = 10.0
#: ``-e``: where nginx logs before it has read the configuration's own ``error_log``. A build whose
#: compiled-in default is a file would open (and create) it even under ``-t``; ``stderr`` writes nothing.
_NGINX_EARLY_LOG = "stderr"
_SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True, slots=True)
class Server:
    """A proxy server as found on this machine."""

    kind: str
    """``caddy`` or ``nginx``."""
    binary: str | None
    """None: not installed (say :attr:`install_hint`)."""
    version: str | None
    """``2.6.2``, ``1.22.1``."""
    running: bool
    """A process of it runs (a reload is planned only then)."""

    @property
    def install_hint(self) -> str:
        """How to install it (``apt install caddy``)."""
        return INSTALL_HINT[self.kind]

    @property
    def caddy_directive(self) -> str:
        """``basicauth`` before 2.8, ``basic_auth`` from 2.8 (an unknown version: the old spelling, which
        2.8+ still accepts with a deprecation warning)."""
        parts = _version_tuple(self.version)
        return "basic_auth" if parts is not None and parts >= (2, 8) else "basicauth"


@dataclass(frozen=True, slots=True)
class Validation:
    """The server's own validator's verdict on a whole configuration."""

    ok: bool
    message: str
    """One line: the validator's verdict (``caddy validate: Valid configuration``) or its first error."""


def _version_tuple(version: str | None) -> tuple[int, ...] | None:
    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    return tuple(int(g) for g in m.groups() if g is not None) if m else None


def parse_version(kind: str, output: str) -> str | None:
    """``2.6.2`` from ``caddy version`` (``v2.6.2 h1:...`` or ``2.6.2``); ``1.22.1`` from ``nginx -v``."""
    if kind == "caddy":
        m = re.search(r"(?:^|\s)v?(\d+\.\d+(?:\.\d+)?)(?:[-+.\w]*)?(?:\s|$)", output)
    else:
        m = re.search(r"nginx/(\d+\.\d+(?:\.\d+)?)", output)
    return m.group(1) if m else None


def _which(name: str, environ: Mapping[str, str]) -> str | None:
    return shutil.which(name, path=environ.get("PATH", _SAFE_PATH))


def _env(environ: Mapping[str, str], home: str | None = None) -> dict[str, str]:
    """A small environment for the server's binary: PATH and the locale, HOME moved away when asked."""
    env = {"PATH": environ.get("PATH", _SAFE_PATH), "LC_ALL": "C"}
    if home is not None:
        env.update(HOME=home, XDG_DATA_HOME=os.path.join(home, "data"), XDG_CONFIG_HOME=os.path.join(home, "config"))
    return env


def _running(binary: str, kind: str) -> bool:
    """A process of ``binary`` runs in this PID namespace (/proc/PID/exe, or comm when exe is unreadable)."""
    try:
        real = os.path.realpath(binary)
        entries = os.listdir("/proc")
    except OSError:
        return False
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            if os.path.realpath(f"/proc/{entry}/exe") == real:
                return True
        except OSError:
            pass
        try:
            comm = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue
        if comm == kind:
            return True
    return False


def find_server(kind: str, sysroot: SystemRoot, environ: Mapping[str, str] | None = None) -> Server:
    """The installed server of ``kind`` (PATH from ``environ``)."""
    if kind not in CONF_DIR:
        raise ValueError(f"unknown server {kind!r}")
    env = dict(os.environ if environ is None else environ)
    binary = _which(kind, env)
    if binary is None:
        return Server(kind, None, None, False)
    argv = [binary, "version"] if kind == "caddy" else [binary, "-v"]
    version = None
    with tempfile.TemporaryDirectory(prefix="dh-version-") as home:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=VERSION_TIMEOUT,
                                  env=_env(env, home), stdin=subprocess.DEVNULL, cwd=home)
            version = parse_version(kind, done.stdout + "\n" + done.stderr)
        except (OSError, subprocess.SubprocessError):
            version = None
    return Server(kind, binary, version, _running(binary, kind))


def is_debian_default_caddyfile(text: str) -> bool:
    """True when the Caddyfile is still Debian's (``:80 { root * /usr/share/caddy; file_server }`` and
    comments): it may then be replaced by the generated site instead of importing it."""
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    words = " ".join(ln for ln in lines if ln).split()
    return words in (
        [":80", "{", "root", "*", "/usr/share/caddy", "file_server", "}"],
        [":80", "{", "file_server", "root", "*", "/usr/share/caddy", "}"],
    )


def nginx_layout(sysroot: SystemRoot) -> str:
    """``sites`` when nginx.conf includes Debian's sites-enabled (with sites-available beside it), else ``conf.d``.
    Under ``--root DIR`` the include may name DIR/etc/nginx/sites-enabled as well as /etc/nginx/sites-enabled."""
    conf = Path(sysroot.path("/etc/nginx"))
    try:
        text = (conf / "nginx.conf").read_text(errors="replace")
    except OSError:
        return "conf.d"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"include\s+(\S+?)\s*;", line)
        prefixes = "|".join(re.escape(d) for d in {"/etc/nginx/", str(conf) + "/"})
        if m and re.fullmatch(rf"({prefixes})?sites-enabled/\S*", m.group(1)) and (conf / "sites-available").is_dir():
            return "sites"
    return "conf.d"


# ------------------------------------------------------------------ validation in a scratch copy


class _Scratch:
    """A scratch copy of one server's configuration directory, and how paths map into it."""

    def __init__(self, kind: str, sysroot: SystemRoot, top: str) -> None:
        self.kind = kind
        self.sysroot = sysroot
        self.system_dir = CONF_DIR[kind]
        self.real_dir = sysroot.path(self.system_dir)
        self.conf = os.path.join(top, "conf")
        self.outside = os.path.join(top, "outside")
        self.logs = os.path.join(top, "logs")
        self.home = os.path.join(top, "home")
        for d in (self.outside, self.logs, self.home):
            os.makedirs(d)
        self.extra: dict[str, str] = {}
        """System path (outside the config directory) -> the scratch file standing for a planned change."""
        self._log_n = 0

    def into_conf(self, path: str) -> str | None:
        """The scratch path of ``path`` (a path under the root, or a system path) when it is in the config dir."""
        for base in (self.real_dir, self.system_dir):
            rel = os.path.relpath(os.path.normpath(path), base)
            if rel == ".":
                return self.conf
            if not rel.startswith(".."):
                return os.path.join(self.conf, rel)
        return None

    def system_of(self, path: str) -> str:
        """The system path ``path`` stands for (a path under --root DIR, or already a system path)."""
        try:
            return self.sysroot.system(path)
        except ValueError:
            return os.path.normpath(path)

    def remap(self, token: str) -> str:
        """Where an absolute path named in the configuration is read during validation."""
        inside = self.into_conf(token)
        if inside is not None:
            return inside
        system = self.system_of(token)
        if system in self.extra:
            return self.extra[system]
        if not self.sysroot.real and not token.startswith(self.sysroot.root + "/"):
            under = self.sysroot.path(token)
            if os.path.lexists(under) or _glob_hits(under):
                return under
        return token

    def log_file(self) -> str:
        self._log_n += 1
        return os.path.join(self.logs, f"log{self._log_n}.log")


def _glob_hits(pattern: str) -> bool:
    """An include pattern (``sites-enabled/*``) that matches something."""
    return any(c in pattern for c in "*?[") and bool(glob.glob(pattern))


_ABS = re.compile(r"(?<![\w.\-/:$~^])(/[\w.\-/*?\[\]+@%,]+)")
_NGINX_LOG = re.compile(r"(?m)^(\s*(?:access_log|error_log)\s+)([^\s;]+)")
_CADDY_LOG = re.compile(r"(?m)^(\s*output\s+file\s+)(\S+)")


def _rewrite(text: str, scratch: _Scratch) -> str:
    """The copied file's text with its paths pointed at the scratch copy (logs at the scratch logs)."""
    log_re = _NGINX_LOG if scratch.kind == "nginx" else _CADDY_LOG

    def log(m: re.Match[str]) -> str:
        target = m.group(2)
        if target in ("off", "stderr", "stdout", "discard") or ":" in target:
            return m.group(0)
        return m.group(1) + scratch.log_file()

    text = log_re.sub(log, text)
    return _ABS.sub(lambda m: m.group(1) if m.group(1).startswith(scratch.logs) else scratch.remap(m.group(1)), text)


def _is_text(data: bytes) -> bool:
    return b"\0" not in data[:8192]


def _build(scratch: _Scratch, changes: Mapping[str, bytes | None], links: Mapping[str, str]) -> None:
    """Copy the config tree, put the planned changes in, and point every path at the copy."""
    if os.path.isdir(scratch.real_dir):
        shutil.copytree(scratch.real_dir, scratch.conf, symlinks=True)
    else:
        os.makedirs(scratch.conf)
    for path, content in changes.items():
        target = scratch.into_conf(path)
        if target is None:
            system = scratch.system_of(path)
            if content is None:
                scratch.extra[system] = os.path.join(scratch.outside, "absent", system.lstrip("/"))
                continue
            target = os.path.join(scratch.outside, system.lstrip("/"))
            scratch.extra[system] = target
        if content is None:
            if os.path.lexists(target) and not os.path.isdir(target):
                os.unlink(target)
            continue
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.lexists(target) and os.path.islink(target):
            os.unlink(target)
        Path(target).write_bytes(content)
    for path, target_path in links.items():
        where = scratch.into_conf(path) or os.path.join(scratch.outside, scratch.system_of(path).lstrip("/"))
        os.makedirs(os.path.dirname(where), exist_ok=True)
        if os.path.lexists(where):
            os.unlink(where)
        os.symlink(target_path, where)
    for dirpath, dirs, files in os.walk(scratch.conf):
        # os.walk lists a link to a directory among dirs (and does not enter it): retarget it too.
        for name in [d for d in dirs if os.path.islink(os.path.join(dirpath, d))] + files:
            full = os.path.join(dirpath, name)
            if os.path.islink(full):
                target = os.readlink(full)
                absolute = target if target.startswith("/") else None
                if absolute is not None:
                    new = scratch.remap(absolute)
                    if new != absolute:
                        os.unlink(full)
                        os.symlink(new, full)
                continue
            _rewrite_file(full, scratch)
    for dirpath, _dirs, files in os.walk(scratch.outside):
        for name in files:
            _rewrite_file(os.path.join(dirpath, name), scratch)


def _rewrite_file(full: str, scratch: _Scratch) -> None:
    try:
        data = Path(full).read_bytes()
    except OSError:
        return
    if not _is_text(data):
        return
    text = data.decode("utf-8", errors="surrogateescape")
    new = _rewrite(text, scratch)
    if new != text:
        Path(full).write_bytes(new.encode("utf-8", errors="surrogateescape"))


_SECRETish = re.compile(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{10,}")


def _first_error(kind: str, output: str, scratch: _Scratch) -> str:
    """The validator's first error line, with scratch paths shown as the real ones and no hashes."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    # Caddy ends with its verdict ("Error: adapting config ..." / "Error: provisioning ..."), after JSON log lines.
    picked = next((ln for ln in lines if kind == "caddy" and ln.startswith("Error:")), "")
    for ln in [] if picked else lines:
        low = ln.lower()
        if kind == "nginx" and ("[emerg]" in low or "[crit]" in low or "[alert]" in low or "failed" in low):
            picked = ln
            break
        if kind == "caddy" and ("error" in low or "unrecognized" in low or "adapting" in low):
            picked = ln
            break
    if not picked:
        picked = lines[-1] if lines else "no output"
    picked = picked.replace(scratch.conf, scratch.real_dir)
    for system, fake in scratch.extra.items():
        picked = picked.replace(fake, scratch.sysroot.path(system))
    picked = _SECRETish.sub("$2b$<hash>", picked)
    # Caddy's JSON log line: keep its "error" field, which says what is wrong.
    m = re.search(r'"error":\s*"((?:[^"\\]|\\.)*)"', picked)
    if m:
        picked = m.group(1).replace('\\"', '"')
    picked = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", picked)
    picked = re.sub(r"^(?:nginx|caddy): ", "", picked)
    return picked[:300]


def validate(server: Server, sysroot: SystemRoot, changes: Mapping[str, bytes | None],
             links: Mapping[str, str] | None = None) -> Validation:
    """Validate the server's whole configuration under ``sysroot`` as it will be with ``changes``
    (path -> new content, None: removed) and ``links`` (path -> target) in place, in a scratch copy:
    nothing under the root is written. A missing binary is never valid."""
    if server.binary is None:
        return Validation(False, f"{server.kind} is not installed: {server.install_hint}")
    with tempfile.TemporaryDirectory(prefix=f"dh-validate-{server.kind}-") as top:
        scratch = _Scratch(server.kind, sysroot, top)
        try:
            _build(scratch, changes, links or {})
        except OSError as exc:
            return Validation(False, f"{server.kind}: the configuration could not be copied for validation "
                                     f"({exc.strerror or exc})")
        main = os.path.join(scratch.conf, MAIN_FILE[server.kind])
        if server.kind == "caddy":
            argv = [server.binary, "validate", "--adapter", "caddyfile", "--config", main]
        else:
            # No -p: the compiled-in prefix stays, so Debian's `load_module modules/...` still resolves.
            argv = [server.binary, "-t", "-q", "-c", main, "-e", os.path.join(scratch.logs, "error.log")]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=VALIDATE_TIMEOUT,
                                  env=_env(os.environ, scratch.home), stdin=subprocess.DEVNULL,
                                  cwd=scratch.conf, errors="replace")
        except subprocess.TimeoutExpired:
            return Validation(False, f"{server.kind}: the validator did not answer in {VALIDATE_TIMEOUT:g} s")
        except OSError as exc:
            return Validation(False, f"{server.kind}: the validator could not run ({exc.strerror or exc})")
        if done.returncode == 0:
            return Validation(True, "caddy validate: Valid configuration" if server.kind == "caddy"
                              else "nginx -t: the configuration is valid")
        return Validation(False, f"{server.kind}: " + _first_error(server.kind, done.stderr + "\n" + done.stdout,
                                                                    scratch))


def validate_argv(server: Server, sysroot: SystemRoot) -> tuple[str, ...]:
    """The command that validates the installed configuration (after installing, before the reload)."""
    binary = server.binary or server.kind
    main = os.path.join(sysroot.path(CONF_DIR[server.kind]), MAIN_FILE[server.kind])
    if server.kind == "caddy":
        # caddy validate provisions the config: `tls internal` makes a whole CA under $XDG_DATA_HOME and
        # smallstep a ~/.step, in root's (or, under sudo, the user's) home. A throwaway HOME instead;
        # the binary and the file are positional arguments, never part of the script's text.
        return ("sh", "-c", _CADDY_VALIDATE_SH, binary, main)
    return (binary, "-t", "-q", "-c", main, "-e", _NGINX_EARLY_LOG)


_CADDY_VALIDATE_SH = ('d=$(mktemp -d) || exit 1; HOME="$d" XDG_DATA_HOME="$d/data" XDG_CONFIG_HOME="$d/config" '
                      '"$0" validate --adapter caddyfile --config "$1"; rc=$?; rm -rf "$d"; exit $rc')



def reload_argv(server: Server, sysroot: SystemRoot) -> tuple[str, ...]:
    """The command that makes the running server read its configuration again."""
    if sysroot.real and os.path.isdir("/run/systemd/system"):
        return ("systemctl", "reload", server.kind)
    binary = server.binary or server.kind
    main = os.path.join(sysroot.path(CONF_DIR[server.kind]), MAIN_FILE[server.kind])
    if server.kind == "caddy":
        return (binary, "reload", "--adapter", "caddyfile", "--config", main)
    return (binary, "-s", "reload", "-c", main, "-e", _NGINX_EARLY_LOG)


__all__ = ["INSTALL_HINT", "CONF_DIR", "Server", "Validation", "find_server", "parse_version", "validate",
           "validate_argv", "reload_argv", "is_debian_default_caddyfile", "nginx_layout"]
