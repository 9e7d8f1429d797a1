"""The live layer's reading side with fakes: /proc samples, log lines, a fake Docker SDK client.

The real Engine is exercised by tests/test_live_gather.py (marked ``live``).
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from checks.install.discovery import discover
from checks.live import addresses, docker, logs, logscan, probe, procnet, project
from checks.live.errors import LiveError
from checks.live.gather import gather, probe_targets
from checks.live.model import Binding, Container, EngineInfo, value_digest
from tests.conftest import FIXED_NOW, PROJECT
from tests.installs import CLI_PASSWORD, cli_install, newer_install

# -- /proc/net/tcp and tcp6 -----------------------------------------------------------------------------------------

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0
   1: 0100007F:18EB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 01004D0A:0BB9 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0 100 0 0 10 0
   3: 0100007F:A1B2 0100007F:1538 01 00000000:00000000 00:00000000 00000000     0        0 4 1 0 100 0 0 10 0
   4: garbage
"""
TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:1538 00000000000000000000000000000000:0000 0A 00000000:00000000
   1: 00000000000000000000000001000000:0BB9 00000000000000000000000000000000:0000 0A 00000000:00000000
   2: 0000000000000000FFFF00000100007F:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000
   3: 000077FD000000000000000001000000:0CEA 00000000000000000000000000000000:0000 06 00000000:00000000
"""

FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     +-- 10.77.0.0/24 2 0 2
        +-- 10.77.0.0/32 link BROADCAST
        |-- 10.77.0.1
           /32 host LOCAL
        |-- 10.77.0.255
           /32 link BROADCAST
     +-- 127.0.0.0/8 2 0 2
        |-- 127.0.0.1
           /32 host LOCAL
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 10.77.0.1
           /32 host LOCAL
        |-- 192.168.1.20
           /32 host LOCAL
"""
IF_INET6 = """\
00000000000000000000000000000001 01 80 10 80       lo
fd770000000000000000000000000001 03 40 00 80  lab-srv
fe80000000000000b0c4e1fffe2a1b3c 03 40 20 80  lab-srv
fd00dead00000000000000000000000a 05 40 00 80  br-0123456789ab
"""
FIB_TRIE_BRIDGES = FIB_TRIE + """\
        |-- 172.17.0.1
           /32 host LOCAL
        |-- 172.18.0.1
           /32 host LOCAL
"""
ROUTE = """\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
lab-srv\t00004D0A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
br-0123456789ab\t000012AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
"""


def _proc(tmp_path: Path, **files: str) -> str:
    d = tmp_path / "net"
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return str(d)


def test_listeners_from_tcp_and_tcp6(tmp_path):
    found = procnet.listeners(_proc(tmp_path, tcp=TCP, tcp6=TCP6))
    assert ("0.0.0.0", 5432, 4) in [(x.address, x.port, x.family) for x in found]
    assert ("127.0.0.1", 6379, 4) in [(x.address, x.port, x.family) for x in found]
    assert ("10.77.0.1", 3001, 4) in [(x.address, x.port, x.family) for x in found]
    assert ("::", 5432, 6) in [(x.address, x.port, x.family) for x in found]
    assert ("::1", 3001, 6) in [(x.address, x.port, x.family) for x in found]
    mapped = [x for x in found if x.port == 8080]
    assert mapped and mapped[0].address == "::ffff:127.0.0.1" and mapped[0].loopback
    # ESTABLISHED (01) and TIME_WAIT (06) are not listeners; the garbage line is skipped.
    assert {x.port for x in found} == {5432, 6379, 3001, 8080}
    assert [x for x in found if x.port == 6379][0].loopback
    assert not [x for x in found if x.port == 5432][0].loopback


def test_listeners_without_tcp6_and_unreadable_tcp(tmp_path):
    assert {x.port for x in procnet.listeners(_proc(tmp_path, tcp=TCP))} == {5432, 6379, 3001}
    with pytest.raises(LiveError, match="cannot read .*tcp"):
        procnet.listeners(str(tmp_path / "nowhere"))


def test_listeners_of_this_namespace_are_read():
    # /proc/net/tcp exists on every Linux host: the parser must agree with the kernel's own format.
    assert isinstance(procnet.listeners("/proc/net"), tuple)


def test_own_addresses_skip_loopback_and_link_local(tmp_path):
    got = addresses.own_addresses(_proc(tmp_path, fib_trie=FIB_TRIE, if_inet6=IF_INET6))
    assert got == ("10.77.0.1", "192.168.1.20", "fd77::1")


def test_own_addresses_leave_out_dockers_bridges(tmp_path):
    # 172.17.0.1 (docker0) and 172.18.0.1 (a compose network's bridge) are reached from this host only.
    got = addresses.own_addresses(_proc(tmp_path, fib_trie=FIB_TRIE_BRIDGES, if_inet6=IF_INET6, route=ROUTE))
    assert got == ("10.77.0.1", "192.168.1.20", "fd77::1")
    assert addresses.routes(ROUTE)[0] == ("lab-srv", ipaddress.IPv4Network("10.77.0.0/24"))
    # Without a route table no address can be told to be a bridge's: kept, never guessed away.
    assert "172.17.0.1" in addresses.own_addresses(_proc(tmp_path / "b", fib_trie=FIB_TRIE_BRIDGES))


def test_own_addresses_without_ipv6_and_without_fib_trie(tmp_path):
    assert addresses.own_addresses(_proc(tmp_path, fib_trie=FIB_TRIE)) == ("10.77.0.1", "192.168.1.20")
    with pytest.raises(LiveError, match="fib_trie"):
        addresses.own_addresses(str(tmp_path / "nowhere"))


# -- log scanning -----------------------------------------------------------------------------------------------------

def test_scan_finds_database_urls_with_a_password_in_every_written_form():
    lines = [
        "2026-12-01T14:00:01.123456789Z Database: postgresql://desterlib:s3cret@postgres:5432/desterlib",
        '{"level":"info","message":"Database: postgresql:\\/\\/desterlib:s3cret@postgres:5432\\/d"}',
        "DATABASE_URL: postgres://u:p@h/d",
        "connecting to redis://:hunter2@redis:6379",
        "mysql://root:pw@db/x",
        "Database: postgresql://desterlib:****@postgres:5432/desterlib",  # masked: no leak
        "Database: postgresql://desterlib@postgres:5432/desterlib",  # no password: no leak
        "Database: file:/app/db/main.db",
    ]
    found = logscan.scan(lines, "docker logs api")
    assert found.leaked_lines == (1, 2, 3, 4, 5)
    assert found.lines == 8 and found.source == "docker logs api"


def test_scan_counts_429_and_5xx_per_utc_hour():
    lines = [
        "2026-12-01T14:59:59.999999999Z ::ffff:10.0.0.9 - GET /api/v1/movies 429 0.3 ms - Too many requests",
        '2026-12-01T15:00:00Z {"error": "Too many requests"}',
        '10.0.0.9 - - [01/Dec/2026:16:03:22 +0100] "GET /api/v1/x HTTP/1.1" 503 12',  # 15:03 UTC
        '{"time":"2026-12-01T13:10:00+02:00","status":500}',  # 11:10 UTC
        "2026-12-01T15:30:00Z GET /health 200 1 ms",
        "GET /api/v1/y 502 3 ms",  # no timestamp: the hour of the scan
        "a line about 500 movies",  # a number is not a status
    ]
    now = datetime(2026, 12, 1, 14, 40, tzinfo=UTC).timestamp()
    found = logscan.scan(lines, "x", now=now)
    assert found.too_many_requests == {"2026-12-01T14": 1, "2026-12-01T15": 1}
    assert found.server_errors == {"2026-12-01T15": 1, "2026-12-01T11": 1, "2026-12-01T14": 1}
    assert found.undated == 1 and found.leaked_lines == ()


_PASSWORD = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="@/\"' \t\r\n\x0b\x0c\x1c\x1d\x1e\x1f"
                                           "\x85\u2028\u2029\xa0"), min_size=1, max_size=40)
_WRAP = st.sampled_from([
    "Database: postgresql://desterlib:{pw}@postgres:5432/desterlib",
    '{{"message":"Database: postgresql:\\/\\/u:{pw}@db\\/x"}}',
    "2026-12-01T14:00:00Z DATABASE_URL: postgres://u:{pw}@h/d 500",
    "redis://:{pw}@redis:6379 Too many requests",
])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(pw=_PASSWORD, wraps=st.lists(_WRAP, min_size=1, max_size=5), noise=st.lists(st.text(max_size=30), max_size=5))
def test_no_password_substring_ever_reaches_a_finding(pw, wraps, noise):
    lines = [w.format(pw=pw) for w in wraps] + noise
    found = logscan.scan(lines, "docker logs api", now=FIXED_NOW)
    # The same scan of lines where the password is another string of the same shape: whatever text of the
    # finding is not derived from the password is in that one too; the password may not appear otherwise.
    control = logscan.scan([w.format(pw="Q" * len(pw)) for w in wraps] + noise, "docker logs api", now=FIXED_NOW)
    assume(pw not in repr(control))
    assert pw not in repr(found)
    assert pw not in str(found.__dict__ if hasattr(found, "__dict__") else found)


# -- the compose project name ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("written", "normal"), [
    ("My App.v2", "myappv2"), ("__-x_1", "x_1"), (".desterlib", "desterlib"), ("UPPER", "upper"), ("ü-ä", ""),
])
def test_normalize_like_compose(written, normal):
    assert project.normalize(written) == normal


def _install(tmp_path: Path, compose_extra: str = "", env_extra: str = "", dirname: str = ".desterlib"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    root = cli_install(tmp_path)
    if dirname != ".desterlib":
        root = root.rename(root.parent / dirname)
    if compose_extra:
        compose = root / "docker-compose.yml"
        compose.write_text(compose_extra + compose.read_text())
    if env_extra:
        with open(root / ".env", "a") as fh:
            fh.write(env_extra)
    return discover(str(root), now=FIXED_NOW)


def test_project_name_precedence(tmp_path):
    inst = _install(tmp_path / "a")
    assert project.project_name(inst, {}) == "desterlib"
    inst = _install(tmp_path / "b", dirname="Dester Lib!")
    assert project.project_name(inst, {}) == "desterlib"
    inst = _install(tmp_path / "c", compose_extra="name: Media_${STACK:-Home}\n")
    assert project.project_name(inst, {}) == "media_home"
    assert project.project_name(inst, {"STACK": "Box"}) == "media_box"
    inst = _install(tmp_path / "d", compose_extra="name: fromfile\n", env_extra="COMPOSE_PROJECT_NAME=fromdotenv\n")
    assert project.project_name(inst, {}) == "fromdotenv"
    assert project.project_name(inst, {"COMPOSE_PROJECT_NAME": "fromenv"}) == "fromenv"
    with pytest.raises(LiveError, match="not a valid compose project name"):
        project.project_name(inst, {"COMPOSE_PROJECT_NAME": "Bad Name"})


def _compose_cli() -> str:
    exe = shutil.which("docker")
    if exe is None or subprocess.run([exe, "compose", "version"], capture_output=True).returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the docker CLI with its compose plugin is not installed, and .ci/run installs it")
        pytest.skip("the docker CLI with its compose plugin is not installed")
    return exe


@pytest.mark.parametrize(("compose_extra", "env_extra", "dirname", "environ"), [
    ("", "", ".desterlib", {}),
    ("", "", "My-Stack.2", {}),
    ("name: Media_${STACK:-Home}\n", "STACK=Box\n", ".desterlib", {}),
    ("name: fromfile\n", "COMPOSE_PROJECT_NAME=fromdotenv\n", ".desterlib", {}),
    ("name: fromfile\n", "", ".desterlib", {"COMPOSE_PROJECT_NAME": "fromenv"}),
])
def test_project_name_agrees_with_docker_compose_config(tmp_path, compose_extra, env_extra, dirname, environ):
    exe = _compose_cli()
    inst = _install(tmp_path, compose_extra, env_extra, dirname)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_HOST"))}
    env.update(environ)
    env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")  # no user config, no credential helper
    files = [a for s in inst.command_line_files for a in ("-f", s.path)]
    out = subprocess.run([exe, "compose", *files, "config", "--format", "json"], capture_output=True, text=True,
                         env=env, cwd=inst.project_dir, timeout=60)
    assert out.returncode == 0, out.stderr
    assert project.project_name(inst, environ) == json.loads(out.stdout)["name"]


# -- where the Engine is, and why it does not answer ------------------------------------------------------------------

def test_endpoint_from_docker_host_else_default_else_rootless(tmp_path, monkeypatch):
    assert docker.resolve_endpoint({"DOCKER_HOST": "tcp://10.0.0.2:2376"}).url == "tcp://10.0.0.2:2376"
    monkeypatch.setattr(docker, "DEFAULT_SOCKET", str(tmp_path / "none.sock"))
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "docker.sock").write_text("")
    ep = docker.resolve_endpoint({"XDG_RUNTIME_DIR": str(xdg)})
    assert ep.url == f"unix://{xdg}/docker.sock" and ep.origin == "the rootless socket"
    assert docker.resolve_endpoint({}).url == f"unix://{tmp_path}/none.sock"


def _reason(url: str) -> str:
    with pytest.raises(LiveError) as err:
        docker.preflight(docker.Endpoint(url, "DOCKER_HOST"), timeout=0.5)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"the Docker Engine is not reachable at {url}: ")
    return msg[len(f"the Docker Engine is not reachable at {url}: "):]


def test_preflight_reasons(tmp_path):
    assert _reason(f"unix://{tmp_path}/absent.sock").startswith("no such socket")
    (tmp_path / "file").write_text("")
    assert _reason(f"unix://{tmp_path}/file") == "not a socket"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(tmp_path / "dead.sock"))  # bound, never listening: what a crashed dockerd leaves
    try:
        assert _reason(f"unix://{tmp_path}/dead.sock").startswith("connection refused")
    finally:
        dead.close()
    assert "not supported" in _reason("ssh://user@host")
    assert _reason("tcp://") == "not a valid address"


def test_preflight_gives_up_after_its_timeout(tmp_path):
    # A dockerd that accepts nothing: its backlog full, a connect blocks until the timeout.
    stuck = socket.socket(socket.AF_UNIX)
    stuck.bind(str(tmp_path / "stuck.sock"))
    stuck.listen(0)
    fillers = []
    try:
        for _ in range(4):
            c = socket.socket(socket.AF_UNIX)
            c.setblocking(False)
            try:
                c.connect(str(tmp_path / "stuck.sock"))
            except BlockingIOError:
                c.close()
                break
            fillers.append(c)
        assert _reason(f"unix://{tmp_path}/stuck.sock") == "no answer within 0.5 s"
    finally:
        for c in fillers:
            c.close()
        stuck.close()


def test_preflight_accepts_a_listening_socket(tmp_path):
    live = socket.socket(socket.AF_UNIX)
    live.bind(str(tmp_path / "ok.sock"))
    live.listen(1)
    try:
        docker.preflight(docker.Endpoint(f"unix://{tmp_path}/ok.sock", "DOCKER_HOST"), timeout=0.5)
    finally:
        live.close()


def test_permission_denied_names_the_fix(tmp_path):
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to connect as another user")
    d = Path(tempfile.mkdtemp(prefix="live-perm-"))
    try:
        d.chmod(0o755)
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(d / "docker.sock"))
        sock.listen(1)
        os.chmod(d / "docker.sock", 0o600)
        code = ("import sys; from checks.live.docker import connect, LiveError\n"
                "try: connect({'DOCKER_HOST': sys.argv[1]})\n"
                "except LiveError as e: print(e); print('docker' in sys.modules)\n")
        out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                              code, f"unix://{d}/docker.sock"], capture_output=True, text=True, cwd=str(PROJECT),
                             env={**os.environ, "PYTHONPATH": str(PROJECT)}, timeout=60)
        sock.close()
        assert out.stdout.splitlines() == [
            f"the Docker Engine is not reachable at unix://{d}/docker.sock: permission denied "
            "(run with sudo or join the docker group)", "False"], out.stderr
    finally:
        shutil.rmtree(d)


def test_no_docker_code_is_imported_when_the_engine_is_absent(tmp_path):
    root = cli_install(tmp_path)
    code = ("import sys, json\n"
            "import checks.live, checks.live.docker, checks.live.gather, checks.live.logs, checks.live.probe\n"
            "assert 'docker' not in sys.modules\n"
            "from checks.install.discovery import discover\n"
            "from checks.live.gather import gather\n"
            "s = gather(discover(sys.argv[1]), environ={'DOCKER_HOST': 'unix:///nonexistent/docker.sock'},"
            " probe=False)\n"
            "print(json.dumps([s.engine_error, 'docker' in sys.modules]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, cwd=str(PROJECT),
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        "the Docker Engine is not reachable at unix:///nonexistent/docker.sock: no such socket "
        "(is Docker installed and running?)", False]


# -- the Engine's answers as model data (a fake SDK client) -----------------------------------------------------------

SECRET = "Zq8-very-secret-value"


def _attrs(service: str, *, image="postgres:15-alpine", image_id="sha256:aaa", ports=None, oneoff=False,
           health="healthy", env=None):
    return {
        "Id": f"id-{service}", "Name": f"/desterlib-{service}", "Image": image_id, "RestartCount": 2,
        "State": {"Status": "running", "StartedAt": "2026-12-01T14:00:00.5Z",
                  **({"Health": {"Status": health}} if health else {})},
        "Config": {"Image": image, "Cmd": ["postgres"], "Env": env or [f"POSTGRES_PASSWORD={SECRET}", "PATH=/usr/bin"],
                   "Labels": {"com.docker.compose.project": "desterlib", "com.docker.compose.service": service,
                              "com.docker.compose.config-hash": "abc123",
                              "com.docker.compose.oneoff": "True" if oneoff else "False"}},
        "HostConfig": {"PortBindings": ports if ports is not None else {
            "5432/tcp": [{"HostIp": "", "HostPort": "5432"}]}},
        "NetworkSettings": {"Networks": {"desterlib_default": {}}, "Ports": {
            "9000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "49153"}]}},
        "Mounts": [{"Type": "volume", "Name": "desterlib_postgres_data", "Source": "/var/lib/docker/volumes/x",
                    "Destination": "/var/lib/postgresql/data", "RW": True},
                   {"Type": "bind", "Source": "/srv/media", "Destination": "/media", "RW": False}],
    }


class FakeSDK:
    """The parts of ``docker.DockerClient`` the live layer calls, recording the calls."""

    def __init__(self, containers, *, info=None, log_lines=()):
        self.calls: list[tuple] = []
        self._containers = containers
        self._info = info or {"SecurityOptions": ["name=seccomp,profile=default"], "ServerVersion": "20.10.24"}
        self._logs = "\n".join(log_lines).encode()
        self.containers = SimpleNamespace(list=self._list, get=self._get)
        self.images = SimpleNamespace(get=self._image)

    def _list(self, **kw):
        self.calls.append(("list", kw))
        return [SimpleNamespace(attrs=a) for a in self._containers]

    def _get(self, cid):
        self.calls.append(("get", cid))
        def logs(**kw):
            self.calls.append(("logs", kw))
            return self._logs

        return SimpleNamespace(logs=logs)

    def _image(self, ref):
        self.calls.append(("image", ref))
        if ref == "sha256:gone":
            raise RuntimeError("404 Client Error: No such image")
        return SimpleNamespace(attrs={"Created": "2026-11-20T10:00:00.123456789Z"})

    def version(self):
        return {"Version": "20.10.24+dfsg1", "ApiVersion": "1.41"}

    def info(self):
        return self._info

    def close(self):
        self.calls.append(("close",))


def _client(sdk):
    return docker.EngineClient(sdk, docker.Endpoint("unix:///fake.sock", "DOCKER_HOST"))


def test_containers_from_inspect_attrs():
    sdk = FakeSDK([
        _attrs("postgres"),
        _attrs("api", image="desterlib/api:latest", image_id="sha256:bbb", health=None,
               ports={"3001/tcp": [{"HostIp": "0.0.0.0", "HostPort": "3001"}], "9000/tcp": [{"HostIp": "127.0.0.1"}]}),
        _attrs("redis", image_id="sha256:aaa", ports={}),
        _attrs("postgres", oneoff=True),  # `docker compose run`: not the service
        _attrs("old", image_id="sha256:gone", ports={}),
    ])
    got = _client(sdk).containers("desterlib")
    assert ("list", {"all": True, "filters": {"label": "com.docker.compose.project=desterlib"},
                     "ignore_removed": True}) in sdk.calls
    assert [c.service for c in got] == ["api", "old", "postgres", "redis"]
    pg = got[2]
    assert pg.bindings == (Binding("", 5432, 5432, "tcp"),) and pg.bindings[0].all_interfaces
    assert pg.health == "healthy" and pg.restart_count == 2 and pg.status == "running"
    assert pg.name == "desterlib-postgres" and pg.command == ("postgres",) and pg.config_hash == "abc123"
    assert pg.networks == ("desterlib_default",)
    assert [(m.kind, m.source, m.target, m.read_write) for m in pg.mounts] == [
        ("volume", "desterlib_postgres_data", "/var/lib/postgresql/data", True),
        ("bind", "/srv/media", "/media", False)]
    assert pg.image_created == pytest.approx(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp() + 0.123456)
    assert set(pg.env) == {"POSTGRES_PASSWORD", "PATH"} and pg.env["POSTGRES_PASSWORD"] == value_digest(SECRET)
    api = got[0]
    # "127.0.0.1::9000": Docker chose the host port; NetworkSettings.Ports says which.
    assert api.bindings == (Binding("0.0.0.0", 3001, 3001), Binding("127.0.0.1", 49153, 9000)) and api.health is None
    assert got[1].image_created is None  # the image was removed since: the rest is still read
    assert [c for c in sdk.calls if c[0] == "image"] == [("image", "sha256:aaa"), ("image", "sha256:bbb"),
                                                         ("image", "sha256:gone")]
    assert SECRET not in repr(got)


def test_secrets_in_a_containers_command_are_kept_as_digests():
    pw = "Sekr3t!x-9q"
    token = f"<secret:{value_digest(pw)}>"
    assert docker.mask_command(["redis-server", "--requirepass", pw, "--appendonly", "yes"]) == (
        "redis-server", "--requirepass", token, "--appendonly", "yes")
    assert docker.mask_command(["sh", "-c", f"redis-server --requirepass {pw} --port 6379"]) == (
        "sh", "-c", f"redis-server --requirepass {token} --port 6379")
    assert docker.mask_command([f"--password={pw}", f"DB_PASSWORD={pw}", f"postgresql://u:{pw}@db/x"]) == (
        f"--password={token}", f"DB_PASSWORD={token}", f"postgresql://u:{token}@db/x")
    assert docker.mask_command(["postgres", "-c", "max_connections=100"]) == ("postgres", "-c", "max_connections=100")
    sdk = FakeSDK([_attrs("redis", env=["A=b"])])
    sdk._containers[0]["Config"]["Cmd"] = ["redis-server", "--requirepass", pw]
    got = _client(sdk).containers("desterlib")
    assert got[0].command[-1] == token and pw not in repr(got)


@pytest.mark.parametrize(("info", "backend", "rootless"), [
    ({"SecurityOptions": ["name=seccomp,profile=default"]}, None, False),
    ({"FirewallBackend": {"Driver": "nftables"}, "SecurityOptions": ["name=rootless"]}, "nftables", True),
    ({"FirewallBackend": "iptables"}, "iptables", False),
])
def test_engine_info(info, backend, rootless):
    got = _client(FakeSDK([], info=info)).engine_info()
    assert got == EngineInfo("20.10.24+dfsg1", "1.41", "unix:///fake.sock", backend, rootless)


def test_sdk_errors_become_one_line():
    class Broken(FakeSDK):
        def version(self):
            raise ConnectionError("('Connection aborted.', FileNotFoundError(2, 'No such file'))\nTraceback: ...")

    with pytest.raises(LiveError) as err:
        _client(Broken([])).engine_info()
    assert "\n" not in str(err.value) and "did not answer its version" in str(err.value)


# -- the API's logs on the host ------------------------------------------------------------------------------------

def test_combined_log_path_from_the_api_log_bind_mount(tmp_path):
    root = newer_install(tmp_path)
    inst = discover(str(root), now=FIXED_NOW)
    paths = logs.combined_log_paths(inst, "api")
    assert paths == [str(root / "desterlib-data" / "logs" / "combined.log")]


def test_read_tail_is_capped_and_confined(tmp_path):
    root = tmp_path / "inst"
    (root / "logs").mkdir(parents=True)
    log = root / "logs" / "combined.log"
    log.write_text("".join(f"line {i}\n" for i in range(5000)))
    tail = logs.read_tail(str(root), str(log), lines=2000, limit=1024 * 1024)
    assert len(tail) == 2000 and tail[-1] == "line 4999"
    capped = logs.read_tail(str(root), str(log), limit=100)
    assert capped[-1] == "line 4999" and all(line.startswith("line ") for line in capped)
    (tmp_path / "elsewhere.log").write_text("Database: postgresql://u:p@h/d\n")
    with pytest.raises(LiveError, match="outside the installation"):
        logs.read_tail(str(root), str(tmp_path / "elsewhere.log"))
    (root / "linked").mkdir()
    os.symlink(tmp_path / "elsewhere.log", root / "linked" / "combined.log")
    with pytest.raises(OSError):
        logs.read_tail(str(root), str(root / "linked" / "combined.log"))
    os.symlink(tmp_path, root / "dirlink")
    with pytest.raises(OSError):
        logs.read_tail(str(root), str(root / "dirlink" / "elsewhere.log"))


# -- probes -------------------------------------------------------------------------------------------------------

def test_exposes():
    assert probe.exposes("/api/docs", 200, b"<title>Swagger UI</title>") == "Swagger UI"
    assert probe.exposes("/api/docs", 200, b"<html>login</html>") is None
    assert probe.exposes("/api/docs", 401, b"swagger") is None
    assert probe.exposes("/api/docs/swagger.json", 200, b'{"openapi":"3.0.0","paths":{}}') == \
        "the API description (OpenAPI)"
    assert probe.exposes("/api/v1/settings", 200, b'{"data":{"tmdbApiKey":"k3y"}}') == "the TMDB API key"
    assert probe.exposes("/api/v1/settings", 200, b'{"data":{"tmdbApiKey":""}}') == "the API's settings"
    assert probe.exposes("/api/v1/logs", 200, b'{"logs":[]}') == "the API's logs"
    assert probe.exposes("/api/v1/logs", 404, b"") is None


def test_probe_neither_follows_redirects_nor_uses_a_proxy():
    handlers = probe.opener().handlers  # type: ignore[attr-defined]
    proxies = [h for h in handlers if type(h).__name__ == "ProxyHandler"]
    assert proxies == [] or all(h.proxies == {} for h in proxies)
    assert any(isinstance(h, probe._NoRedirect) for h in handlers)
    assert probe._NoRedirect().redirect_request(None, None, 302, "Found", {}, "http://elsewhere/") is None  # type: ignore[func-returns-value]


def test_probe_runs_in_parallel_under_a_budget(monkeypatch):
    seen = []

    def fake_fetch(url, timeout):
        seen.append(url)
        if url.endswith("/api/v1/logs"):
            time.sleep(3)  # a port that holds the connection: cut off by the budget
        return (200, b"Swagger UI") if url.endswith("/api/docs") else (404, b"")

    monkeypatch.setattr(probe, "fetch", fake_fetch)
    got = probe.probe([("10.77.0.1", 3001), ("fd77::1", 3001)], budget=0.5)
    hosts = ("10.77.0.1", "[fd77::1]")
    assert {p.url for p in got} == {f"http://{h}:3001{path}" for h in hosts for path in probe.PATHS}
    assert [p.exposes for p in got if p.path == "/api/docs"] == ["Swagger UI", "Swagger UI"]
    assert all(p.status is None for p in got if p.path == "/api/v1/logs")


def test_probe_targets_are_own_addresses_only():
    own = ("10.77.0.1", "192.168.1.20", "fd77::1")
    assert probe_targets([Binding("", 3001, 3001)], own) == [(a, 3001) for a in own]
    assert probe_targets([Binding("0.0.0.0", 3001, 3001)], own) == [("10.77.0.1", 3001), ("192.168.1.20", 3001)]
    assert probe_targets([Binding("192.168.1.20", 8000, 3001)], own) == [("192.168.1.20", 8000)]
    assert probe_targets([Binding("203.0.113.9", 3001, 3001), Binding("127.0.0.1", 3001, 3001)], own) == []


# -- gather -----------------------------------------------------------------------------------------------------------

class FakeEngine:
    def __init__(self, containers, log_lines=()):
        self._c = tuple(containers)
        self._lines = list(log_lines)
        self.closed = False

    def engine_info(self):
        return EngineInfo("20.10.24", "1.41", "unix:///fake.sock")

    def containers(self, project):
        assert project == "desterlib"
        return self._c

    def logs(self, container_id, tail=2000):
        assert container_id == "id-api" and tail == 2000
        return self._lines

    def close(self):
        self.closed = True


def _container(service, image, bindings):
    return Container(id=f"id-{service}", name=service, service=service, status="running", health="healthy",
                     restart_count=0, started_at="", image=image, image_id="sha256:x", image_created=0.0,
                     bindings=tuple(bindings))


def test_gather_reads_every_part(tmp_path, monkeypatch):
    inst = discover(str(cli_install(tmp_path)), now=FIXED_NOW)
    proc = _proc(tmp_path, tcp=TCP, tcp6=TCP6, fib_trie=FIB_TRIE, if_inet6=IF_INET6)
    engine = FakeEngine([_container("api", "desterlib/api:latest", [Binding("0.0.0.0", 3001, 3001)]),
                         _container("postgres", "postgres:15-alpine", [Binding("", 5432, 5432)])],
                        [f"2026-12-01T14:00:00Z Database: postgresql://desterlib:{CLI_PASSWORD}@postgres:5432/x"])
    asked = []

    def fetch(url, timeout):
        asked.append(url)
        return 404, b""

    monkeypatch.setattr(probe, "fetch", fetch)
    state = gather(inst, proc_net=proc, engine=lambda: engine, environ={})
    assert state.project == "desterlib" and state.engine is not None and state.engine_error is None
    assert [c.service for c in state.containers] == ["api", "postgres"]
    assert state.listeners is not None and {x.port for x in state.listeners} == {5432, 6379, 3001, 8080}
    assert state.addresses == ("10.77.0.1", "192.168.1.20", "fd77::1")
    assert [(f.source, f.leaked_lines) for f in state.logs] == [("docker logs api", (1,))]
    assert {p.url.rsplit(":", 1)[0] for p in state.probes} == {"http://10.77.0.1", "http://192.168.1.20"}
    assert all(u.startswith(("http://10.77.0.1:", "http://192.168.1.20:")) for u in asked)
    assert engine.closed and CLI_PASSWORD not in repr(state)


def test_gather_without_engine_still_reads_proc_and_probes_the_files_ports(tmp_path, monkeypatch):
    inst = discover(str(cli_install(tmp_path)), now=FIXED_NOW)
    proc = _proc(tmp_path, tcp=TCP, fib_trie=FIB_TRIE)

    def no_engine():
        raise LiveError("the Docker Engine is not reachable at unix:///x: permission denied")

    monkeypatch.setattr(probe, "fetch", lambda url, timeout: (200, b"swagger") if url.endswith("docs") else (404, b""))
    state = gather(inst, proc_net=proc, engine=no_engine, environ={})
    assert state.engine is None and str(state.engine_error).endswith("permission denied")
    assert not state.docker_reachable and state.containers == ()
    assert state.listeners is not None and state.listeners_error is None
    # The files publish the API on 0.0.0.0:3001: probed on the IPv4 addresses of this host.
    assert {p.url for p in state.probes if p.exposes} == {"http://10.77.0.1:3001/api/docs",
                                                          "http://192.168.1.20:3001/api/docs"}


def test_gather_reports_unreadable_proc_and_a_bad_project_name(tmp_path):
    inst = discover(str(cli_install(tmp_path)), now=FIXED_NOW)
    state = gather(inst, proc_net=str(tmp_path / "none"), environ={"COMPOSE_PROJECT_NAME": "No Good"},
                   engine=lambda: pytest.fail("the Engine is not asked without a project name"))
    assert state.listeners is None and "cannot read" in str(state.listeners_error)
    assert "not a valid compose project name" in str(state.engine_error)
    assert state.probes_error is not None and state.probes == ()


def test_gather_scans_the_host_combined_log(tmp_path, monkeypatch):
    root = newer_install(tmp_path)
    log = root / "desterlib-data" / "logs" / "combined.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("2026-12-01 14:00:00 info: Database: postgresql://postgres:Sup3rS3cret@db:5432/x\n")
    inst = discover(str(root), now=FIXED_NOW)
    state = gather(inst, proc_net=_proc(tmp_path, tcp=TCP, fib_trie=FIB_TRIE), probe=False,
                   engine=lambda: (_ for _ in ()).throw(LiveError("no engine")), environ={})
    assert [(f.source, f.leaked_lines) for f in state.logs] == [("desterlib-data/logs/combined.log", (1,))]
    assert "Sup3rS3cret" not in repr(state)
    assert stat.S_ISREG(os.stat(log).st_mode)


# -- probes and addresses for real, in a private network namespace (no server in the host's) -------------------------

_NETNS_PROBE = r"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from checks.live import addresses, probe, procnet

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        routes = {"/api/docs": (200, b"<title>Swagger UI</title>"),
                  "/api/v1/settings": (200, b'{"success":true,"data":{"tmdbApiKey":"%s"}}' % sys.argv[1].encode()),
                  "/api/v1/logs": (500, b"{}")}
        if self.path == "/api/docs.json":
            self.send_response(302); self.send_header("Location", "http://10.99.0.1:9/"); self.end_headers(); return
        code, body = routes.get(self.path, (404, b"no"))
        self.send_response(code); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass

srv = ThreadingHTTPServer(("10.99.0.1", 3001), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
own = addresses.own_addresses("/proc/net")
found = probe.probe([(a, 3001) for a in own])
print(json.dumps({"own": own, "listeners": [[x.address, x.port] for x in procnet.listeners("/proc/net")],
                  "probes": [[p.url, p.status, p.exposes] for p in found]}))
"""


def test_probe_and_addresses_in_a_private_network_namespace(tmp_path):
    if os.getuid() != 0 or shutil.which("unshare") is None or shutil.which("ip") is None:
        pytest.skip("needs root, unshare and ip to make a private network namespace")
    tmdb_key = "tmdb-Xy7Qw2Lk9"
    setup = ("ip link set lo up && ip link add d0 type veth peer name d1 && ip addr add 10.99.0.1/24 dev d0 && "
             "ip link set d1 up && ip link set d0 up && exec \"$@\"")
    out = subprocess.run(["unshare", "--net", "--", "sh", "-c", setup, "sh", sys.executable, "-c", _NETNS_PROBE,
                          tmdb_key], capture_output=True, text=True, cwd=str(PROJECT), timeout=60,
                         env={**os.environ, "PYTHONPATH": str(PROJECT), "http_proxy": "http://10.99.0.1:9",
                              "HTTP_PROXY": "http://10.99.0.1:9", "no_proxy": ""})
    if out.returncode != 0 and "Operation not permitted" in out.stderr:
        pytest.skip(f"cannot make a network namespace here: {out.stderr.strip().splitlines()[-1]}")
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["own"][0] == "10.99.0.1"  # the dummy's address; loopback is not one of ours to probe
    assert ["10.99.0.1", 3001] in got["listeners"]
    by_path = {url.split(":3001", 1)[1]: (status, exposes) for url, status, exposes in got["probes"]
               if url.startswith("http://10.99.0.1:3001")}
    assert by_path["/api/docs"] == (200, "Swagger UI")
    assert by_path["/api/v1/settings"] == (200, "the TMDB API key")
    assert by_path["/api/docs.json"] == (302, None)  # the redirect is not followed
    assert by_path["/api/v1/logs"] == (500, None)
    assert by_path["/api/docs/swagger.json"] == (404, None)
    assert tmdb_key not in out.stdout


def test_gather_asks_api_v1_logs_only_where_the_api_is_published_on_loopback(tmp_path, monkeypatch):
    inst = discover(str(cli_install(tmp_path)), now=FIXED_NOW)
    proc = _proc(tmp_path, tcp=TCP, fib_trie=FIB_TRIE)
    asked = []

    def fetch(url, timeout):
        asked.append(url)
        return 200, json.dumps({"logs": ["info: Database: postgresql://desterlib:Lo0pSecret@postgres:5432/x",
                                         {"level": "info", "message": "GET /api/v1/x 503 1 ms"}]}).encode()

    monkeypatch.setattr(logs, "fetch", fetch)
    monkeypatch.setattr(probe, "fetch", fetch)
    loopback = FakeEngine([_container("api", "desterlib/api:latest", [Binding("127.0.0.1", 3001, 3001)])])
    state = gather(inst, proc_net=proc, engine=lambda: loopback, environ={})
    found = [f for f in state.logs if f.source == "GET /api/v1/logs"]
    assert asked == ["http://127.0.0.1:3001/api/v1/logs"] and state.probes == ()
    assert found and found[0].leaked_lines == (1,) and sum(found[0].server_errors.values()) == 1
    assert "Lo0pSecret" not in repr(state)
    asked.clear()
    lan = FakeEngine([_container("api", "desterlib/api:latest", [Binding("0.0.0.0", 3001, 3001)])])
    state = gather(inst, proc_net=proc, engine=lambda: lan, environ={})
    assert not [f for f in state.logs if f.source == "GET /api/v1/logs"]
    assert "http://127.0.0.1:3001/api/v1/logs" not in asked and asked  # the LAN side is the probes' business
