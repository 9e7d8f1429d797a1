"""The Docker Engine, through the ``docker`` SDK, read-only, with short timeouts.

Where the Engine is: ``DOCKER_HOST`` (``unix://`` or ``tcp://``, with ``DOCKER_TLS_VERIFY`` and
``DOCKER_CERT_PATH`` as the SDK reads them), else ``/var/run/docker.sock``, else a rootless
Engine's socket (``$XDG_RUNTIME_DIR/docker.sock``, ``/run/user/<uid>/docker.sock`` for this
user and for the installation's owner). :func:`connect` checks that the socket exists and
accepts a connection *before* the SDK is imported, so an audit without Docker loads no Docker
code; every failure is a :class:`LiveError` with one line for the user, never a traceback.

:class:`EngineClient` turns the SDK's answers into :mod:`checks.live.model` data: it keeps
environment variable names and keyed digests, never values, and a command's secrets (Redis's
``--requirepass``) as digests too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from checks.core.secrets import is_secret_key, url_password_span
from checks.live.errors import LiveError, one_line
from checks.live.model import Binding, Container, EngineInfo, LiveMount, value_digest

__all__ = ["LiveError", "Endpoint", "resolve_endpoint", "preflight", "connect", "EngineClient"]

DEFAULT_SOCKET = "/var/run/docker.sock"
TIMEOUT = 2.0
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
HASH_LABEL = "com.docker.compose.config-hash"
_DENIED_HINT = "permission denied (run with sudo or join the docker group)"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the Engine is expected to answer."""

    url: str
    """``unix:///var/run/docker.sock``, ``tcp://host:2376``."""
    origin: str
    """Why this one: ``DOCKER_HOST``, ``the default socket``, ``the rootless socket``."""

    @property
    def unix_path(self) -> str | None:
        return self.url[len("unix://") :] if self.url.startswith("unix://") else None


def resolve_endpoint(environ: Mapping[str, str] | None = None, owners: Iterable[int] = ()) -> Endpoint:
    """The endpoint to try: ``DOCKER_HOST`` when set, else the first socket that exists.

    ``owners`` are further uids whose rootless Engine counts (the installation's owner when
    root audits another user's install). With no socket anywhere, the default socket is
    returned so the message names where Docker usually is.
    """
    env = os.environ if environ is None else environ
    host = env.get("DOCKER_HOST", "").strip()
    if host:
        return Endpoint(host, "DOCKER_HOST")
    if os.path.exists(DEFAULT_SOCKET):
        return Endpoint("unix://" + DEFAULT_SOCKET, "the default socket")
    candidates: list[str] = []
    if env.get("XDG_RUNTIME_DIR"):
        candidates.append(os.path.join(env["XDG_RUNTIME_DIR"], "docker.sock"))
    for uid in (os.getuid(), *owners):
        candidates.append(f"/run/user/{uid}/docker.sock")
    for path in candidates:
        if os.path.exists(path):
            return Endpoint("unix://" + path, "the rootless socket")
    return Endpoint("unix://" + DEFAULT_SOCKET, "the default socket")


def _unreachable(ep: Endpoint, why: str) -> LiveError:
    return LiveError(f"the Docker Engine is not reachable at {ep.url}: {why}")


def _os_reason(exc: OSError, timeout: float) -> str:
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return _DENIED_HINT
    if isinstance(exc, FileNotFoundError):
        return "no such socket (is Docker installed and running?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is dockerd running?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return "the host name does not resolve"
    return exc.strerror or one_line(exc)


def preflight(ep: Endpoint, timeout: float = TIMEOUT) -> None:
    """Check that ``ep`` accepts a connection, without the SDK. :class:`LiveError` when not."""
    path = ep.unix_path
    if path is not None:
        if not path:
            raise _unreachable(ep, "no socket path")
        try:
            st = os.stat(path)
        except OSError as exc:
            raise _unreachable(ep, _os_reason(exc, timeout)) from None
        if not stat.S_ISSOCK(st.st_mode):
            raise _unreachable(ep, "not a socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        target: Any = path
    else:
        parts = urlsplit(ep.url)
        if parts.scheme not in ("tcp", "http", "https"):
            raise _unreachable(ep, f"{parts.scheme or 'this'}:// endpoints are not supported (use unix:// or tcp://)")
        try:
            port = parts.port
        except ValueError:
            raise _unreachable(ep, "not a valid address") from None
        if not parts.hostname:
            raise _unreachable(ep, "not a valid address")
        try:
            infos = socket.getaddrinfo(parts.hostname, port or 2375, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise _unreachable(ep, _os_reason(exc, timeout)) from None
        family, _, _, _, target = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        while True:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                sock.connect(target)
                return
            except BlockingIOError:
                # A unix socket whose backlog is full answers EAGAIN at once: a busy or hung dockerd.
                if time.monotonic() >= deadline:
                    raise TimeoutError from None
                time.sleep(0.05)
    except OSError as exc:
        raise _unreachable(ep, _os_reason(exc, timeout)) from None
    finally:
        sock.close()


def connect(environ: Mapping[str, str] | None = None, *, owners: Iterable[int] = (),
            timeout: float = TIMEOUT) -> EngineClient:
    """An :class:`EngineClient` for the Engine that answers, or :class:`LiveError` with why not."""
    env = dict(os.environ if environ is None else environ)
    ep = resolve_endpoint(env, owners)
    preflight(ep, timeout)
    try:
        import docker  # imported only now: the socket answered

        env["DOCKER_HOST"] = ep.url
        client = docker.from_env(environment=env, timeout=max(1, round(timeout)), version="auto")
    except Exception as exc:  # the SDK raises DockerException, requests' and TLS errors: all mean "no Engine"
        raise _unreachable(ep, one_line(exc)) from None
    return EngineClient(client, ep)


def _created(text: Any) -> float | None:
    """Epoch seconds of an Engine timestamp (RFC 3339 with nanoseconds); None when unreadable."""
    if not isinstance(text, str) or not text or text.startswith("0001-"):
        return None
    s = text.strip().replace("Z", "+00:00")
    head, dot, rest = s.partition(".")
    if dot:  # Python reads at most microseconds
        digits = "".join(c for c in rest if c.isdigit())
        s = head + "." + digits[:6] + rest[len(digits):]
    try:
        return datetime.fromisoformat(s).timestamp()
    except ValueError:
        return None


def _bindings(attrs: Mapping[str, Any]) -> tuple[Binding, ...]:
    host_cfg = attrs.get("HostConfig") or {}
    asked = host_cfg.get("PortBindings") or {}
    actual = (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    out: list[Binding] = []
    for key, entries in sorted(asked.items()):
        port, _, proto = str(key).partition("/")
        try:
            cport = int(port)
        except ValueError:
            continue
        for i, entry in enumerate(entries or ()):
            host_ip = str(entry.get("HostIp") or "")
            hport = str(entry.get("HostPort") or "")
            if not hport.isdigit():
                # Docker picked the port: NetworkSettings.Ports says which, when it runs.
                live = (actual.get(key) or [])
                hport = str(live[i].get("HostPort") or "0") if i < len(live) else "0"
            out.append(Binding(host_ip, int(hport) if hport.isdigit() else 0, cport, proto or "tcp"))
    return tuple(out)


def _mounts(attrs: Mapping[str, Any]) -> tuple[LiveMount, ...]:
    out = []
    for m in attrs.get("Mounts") or ():
        kind = str(m.get("Type") or "")
        source = str(m.get("Name") if kind == "volume" and m.get("Name") else m.get("Source") or "")
        out.append(LiveMount(kind, source, str(m.get("Destination") or ""), bool(m.get("RW"))))
    return tuple(out)


def secret_token(value: str) -> str:
    """How a secret in a container's command is kept: ``<secret:DIGEST>`` (compare with :func:`value_digest`)."""
    return f"<secret:{value_digest(value)}>"


def _mask_word(word: str, after_secret_flag: bool) -> str:
    if after_secret_flag:
        return secret_token(word)
    name, eq, value = word.partition("=")
    if eq and value and is_secret_key(name.lstrip("-")):
        return f"{name}={secret_token(value)}"
    done, rest = "", word
    while (span := url_password_span(rest)) is not None:  # each pass consumes text up to the URL's "@"
        done += rest[: span[0]] + secret_token(rest[span[0] : span[1]])
        rest = rest[span[1] :]
    return done + rest


def mask_command(args: Iterable[str]) -> tuple[str, ...]:
    """A container's command with every secret replaced by :func:`secret_token`.

    Redis is often given its password on the command line (``--requirepass PASS``); so are
    ``--password=PASS``, ``DB_PASSWORD=PASS`` and URLs with a password. A shell string
    (``sh -c "redis-server --requirepass $PASS"`` after interpolation) is masked word by word.
    """
    out: list[str] = []
    secret_flag = False
    for arg in args:
        if any(c.isspace() for c in arg):
            words, flag = [], False
            for w in arg.split():
                words.append(_mask_word(w, flag))
                flag = w.startswith("-") and "=" not in w and is_secret_key(w.lstrip("-"))
            out.append(" ".join(words))
            secret_flag = False
            continue
        out.append(_mask_word(arg, secret_flag))
        secret_flag = arg.startswith("-") and "=" not in arg and is_secret_key(arg.lstrip("-"))
    return tuple(out)


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in config.get("Env") or ():
        name, _, value = str(item).partition("=")
        out[name] = value_digest(value)
    return out


class EngineClient:
    """Read-only questions to one Engine, answered as model data (any SDK failure: :class:`LiveError`)."""

    def __init__(self, client: Any, endpoint: Endpoint) -> None:
        self.client = client
        self.endpoint = endpoint
        self._image_created: dict[str, float | None] = {}

    def _ask(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LiveError:
            raise
        except Exception as exc:  # SDK, requests and socket errors alike: one line, no traceback
            where = self.endpoint.url
            raise LiveError(f"the Docker Engine at {where} did not answer {what}: {one_line(exc)}") from None

    def engine_info(self) -> EngineInfo:
        """Server version, API version, firewall backend and rootless mode."""
        version = self._ask("its version", self.client.version) or {}
        info = self._ask("its info", self.client.info) or {}
        backend = info.get("FirewallBackend")
        if isinstance(backend, Mapping):
            backend = backend.get("Driver")
        rootless = any("name=rootless" in str(opt) for opt in info.get("SecurityOptions") or ())
        return EngineInfo(str(version.get("Version") or info.get("ServerVersion") or ""),
                          str(version.get("ApiVersion") or ""), self.endpoint.url,
                          str(backend) if backend else None, rootless)

    def image_created(self, image_id: str) -> float | None:
        """The creation time of an image, asked once per image."""
        if not image_id:
            return None
        if image_id not in self._image_created:
            try:
                image = self._ask("about an image", self.client.images.get, image_id)
                self._image_created[image_id] = _created((image.attrs or {}).get("Created"))
            except LiveError:
                self._image_created[image_id] = None  # removed since: the container still tells the rest
        return self._image_created[image_id]

    def containers(self, project: str) -> tuple[Container, ...]:
        """The containers of compose project ``project`` (stopped ones too; ``run`` one-offs left out)."""
        found = self._ask("which containers run", self.client.containers.list, all=True,
                          filters={"label": f"{PROJECT_LABEL}={project}"}, ignore_removed=True)
        out = []
        for c in found:
            attrs = c.attrs or {}
            config = attrs.get("Config") or {}
            labels = config.get("Labels") or {}
            if str(labels.get(ONEOFF_LABEL, "False")).lower() == "true":
                continue
            state = attrs.get("State") or {}
            health = (state.get("Health") or {}).get("Status")
            image_id = str(attrs.get("Image") or "")
            out.append(Container(
                id=str(attrs.get("Id") or ""),
                name=str(attrs.get("Name") or "").lstrip("/"),
                service=str(labels.get(SERVICE_LABEL) or ""),
                status=str(state.get("Status") or ""),
                health=str(health) if health else None,
                restart_count=int(attrs.get("RestartCount") or 0),
                started_at=str(state.get("StartedAt") or ""),
                image=str(config.get("Image") or ""),
                image_id=image_id,
                image_created=self.image_created(image_id),
                bindings=_bindings(attrs),
                mounts=_mounts(attrs),
                env=_env(config),
                networks=tuple(sorted((attrs.get("NetworkSettings") or {}).get("Networks") or {})),
                command=mask_command(str(a) for a in config.get("Cmd") or ()),
                config_hash=str(labels[HASH_LABEL]) if labels.get(HASH_LABEL) else None,
            ))
        return tuple(sorted(out, key=lambda c: (c.service, c.name)))

    def logs(self, container_id: str, tail: int = 2000) -> list[str]:
        """The last ``tail`` lines of a container's stdout and stderr, each with docker's timestamp."""
        container = self._ask("about a container", self.client.containers.get, container_id)
        data = self._ask("with logs", container.logs, stdout=True, stderr=True, tail=tail, timestamps=True)
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
        return text.splitlines()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a pool that already failed is no news
            self.client.close()
