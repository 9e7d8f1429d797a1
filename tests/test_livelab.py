"""The live lab itself (tests/livelab): it reproduces what the tool must find and fix, and leaves nothing behind.

The lab tests are marked ``live``: they skip with the reason where no dockerd can start (and fail
under CI=true). The first tests need no dockerd: the compose rewriting and the mirror parsing.
"""

from __future__ import annotations

import glob
import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from checks.demo import materialize
from tests import livefixtures
from tests.livelab import LabUnavailable, LiveLab, cache_dir, compose_file, prepare_compose, procs, reap_stale
from tests.livelab.images import apt_mirrors, image_key

DEMO_PASSWORD = "postgres"  # the demo install's, from checks/demo/install


# -- without a dockerd -------------------------------------------------------------------

def test_prepare_compose_names_the_project_and_speeds_up_healthchecks(tmp_path):
    install = Path(materialize(str(tmp_path)))
    original = compose_file(install).read_text()
    prepared = prepare_compose(original, "desterlib-abc-1")
    data = yaml.safe_load(prepared)
    assert data["name"] == "desterlib-abc-1"
    assert data["services"]["postgres"]["healthcheck"]["interval"] == "1s"
    # A slow first start on a loaded machine is not "unhealthy"; a failure after it still is.
    assert data["services"]["postgres"]["healthcheck"]["start_period"] == "20s"
    assert data["services"]["postgres"]["healthcheck"]["retries"] == 5
    api = data["services"]["api"]["healthcheck"]
    assert api["test"] == ["CMD-SHELL", "wget -q --spider http://localhost:3001/health || exit 1"]
    assert api["interval"] == "1s"
    # Everything else is the demo's own text, comments included.
    kept = [ln for ln in original.splitlines() if "interval:" not in ln]
    assert all(ln in prepared.splitlines() for ln in kept)
    # A second pass renames, it does not add a second name: nor a second API healthcheck.
    again = prepare_compose(prepared, "desterlib-abc-2")
    assert yaml.safe_load(again)["name"] == "desterlib-abc-2"
    assert again.count("healthcheck:") == prepared.count("healthcheck:")


def test_prepare_compose_keeps_a_start_period_the_file_has(tmp_path):
    text = ("services:\n  api:\n    image: desterlib/api:latest\n    healthcheck:\n"
            "      test: [\"CMD\", \"true\"]\n      interval: 30s\n      start_period: 5s\n")
    data = yaml.safe_load(prepare_compose(text, "p-1"))
    assert data["services"]["api"]["healthcheck"] == {"test": ["CMD", "true"], "interval": "1s",
                                                      "start_period": "5s"}
    assert data["name"] == "p-1"


def test_apt_mirrors_reads_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\n"
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n")
    assert apt_mirrors(tmp_path) == ("http://mirror.example/debian", "http://mirror.example/debian-security")
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"
        "deb http://one.example/security bookworm-security main\n")
    assert apt_mirrors(tmp_path) == ("http://one.example/debian", "http://one.example/security")
    (tmp_path / "sources.list").write_text("deb http://one.example/debian trixie main\n")
    assert apt_mirrors(tmp_path) == (None, None)


def test_cache_dir_follows_the_environment_given():
    assert cache_dir({"DH_LIVE_CACHE": "/x/y"}) == Path("/x/y")
    assert cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/dester-harden/live")
    assert cache_dir({"HOME": "/h"}) == Path("/h/.cache/dester-harden/live")


def test_image_key_changes_with_the_sources(tmp_path, monkeypatch):
    from tests.livelab import images

    before = image_key()
    for name in ("Dockerfile.api", "Dockerfile.postgres", "Dockerfile.redis", "api_standin.py",
                 "postgres-entrypoint.sh", "redis-entrypoint.sh"):
        (tmp_path / name).write_bytes((images.HERE / name).read_bytes())
    monkeypatch.setattr(images, "HERE", tmp_path)
    assert image_key() == before
    (tmp_path / "api_standin.py").write_text((tmp_path / "api_standin.py").read_text() + "\n# changed\n")
    assert image_key() != before


# -- against the lab's dockerd -------------------------------------------------------------

def _listening(pid: int) -> set[str]:
    """``ip:port`` of the TCP sockets listening in the network namespace of ``pid``."""
    found = set()
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":
                continue
            addr, port = fields[1].split(":")
            raw = bytes.fromhex(addr)
            if len(raw) == 4:
                ip = ".".join(str(b) for b in raw[::-1])
            else:
                words = [raw[i:i + 4][::-1].hex() for i in range(0, 16, 4)]
                ip = "[" + str(ipaddress.IPv6Address(bytes.fromhex("".join(words)))) + "]"
            found.add(f"{ip}:{int(port, 16)}")
    return found


def _server_get(lab: LiveLab, url: str) -> tuple[int | None, str]:
    return lab.server_fetch(url)


def _wait_for(what: str, probe, seconds: float = 60):
    """Poll ``probe`` until it returns something true; fail saying ``what`` when it never does."""
    deadline = time.monotonic() + seconds
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {seconds:.0f} s")
        time.sleep(0.2)


@pytest.mark.live
def test_demo_install_is_exposed_to_the_lan(live_lab, live_install):
    install = live_install("cli")
    ip, ip6 = live_lab.server_ip, live_lab.server_ip6
    # "5432:5432" publishes on every interface, IPv6 included: the exposure NET-006 reports.
    assert live_lab.lan_tcp(ip, 5432) == "open"
    assert live_lab.lan_tcp(ip6, 5432) == "open"
    assert live_lab.lan_tcp(ip, 6379) == "open"
    # "0.0.0.0:3001:3001" is IPv4 only.
    assert live_lab.lan_http(f"http://{ip}:3001/health") == 200
    assert live_lab.lan_tcp(ip6, 3001) == "refused"
    assert live_lab.lan_tcp(ip, 5433) == "refused"
    # The server's own /proc/net shows what listens: what the tool reads without Docker access.
    listening = _listening(live_lab.server_pid)
    assert {"0.0.0.0:5432", "[::]:5432", "0.0.0.0:3001"} <= listening
    assert "[::]:3001" not in listening
    # The compose project is the unique one, and the SDK's view of the bindings is the file's.
    name = live_lab.container(install, "postgres")
    labels = json.loads(live_lab.docker("inspect", "-f", "{{json .Config.Labels}}", name).stdout)
    assert labels["com.docker.compose.project"] == install.project
    bindings = json.loads(live_lab.docker("inspect", "-f", "{{json .HostConfig.PortBindings}}", name).stdout)
    assert bindings == {"5432/tcp": [{"HostIp": "", "HostPort": "5432"}]}


@pytest.mark.live
def test_database_login_over_tcp_needs_the_right_password(live_lab, live_install):
    install = live_install("cli")
    assert live_lab.pg_login(install, "desterlib", "desterlib", DEMO_PASSWORD)
    assert not live_lab.pg_login(install, "desterlib", "desterlib", "not-the-password")
    assert not live_lab.pg_login(install, "nobody", "desterlib", DEMO_PASSWORD)
    # Redis of the demo has no password: anyone on the network may use it.
    assert live_lab.redis_auth(install, None)


@pytest.mark.live
def test_api_logs_its_database_url_and_serves_it(live_lab, live_install):
    install = live_install("cli")
    api = live_lab.container(install, "api")
    leak = f"Database: postgresql://desterlib:{DEMO_PASSWORD}@postgres:5432/desterlib?schema=public"
    assert leak in live_lab.docker("logs", api).stdout
    assert leak in live_lab.docker("exec", api, "cat", "/app/logs/combined.log").stdout
    status, body = _server_get(live_lab, "http://127.0.0.1:3001/api/v1/logs")
    assert status == 200
    logs = json.loads(body)["logs"]
    assert any(leak in line for line in logs)
    # One access-log line per request, with its status.
    assert any("GET /api/v1/logs" in line for line in json.loads(_server_get(
        live_lab, "http://127.0.0.1:3001/api/v1/logs")[1])["logs"])
    # The unauthenticated admin surface NET-009 probes.
    status, body = _server_get(live_lab, "http://127.0.0.1:3001/api/docs")
    assert status == 200 and "<title>Swagger UI</title>" in body
    assert _server_get(live_lab, "http://127.0.0.1:3001/api/docs/swagger.json")[0] == 200
    status, body = _server_get(live_lab, "http://127.0.0.1:3001/api/v1/settings")
    assert status == 200 and json.loads(body)["tmdbApiKey"] == ""
    # The same, from the LAN: what NET-009 reports.
    status, body = live_lab.lan_fetch(f"http://{live_lab.server_ip}:3001/api/v1/settings")
    assert status == 200 and "tmdbApiKey" in json.loads(body)
    assert live_lab.lan_fetch(f"http://{live_lab.server_ip}:3002/") == (None, "")
    # DELETE clears the log (what OPS-002's fix does to the leak).
    assert live_lab.lan_http(f"http://{live_lab.server_ip}:3001/api/v1/logs", method="DELETE") == 200
    logs = json.loads(_server_get(live_lab, "http://127.0.0.1:3001/api/v1/logs")[1])["logs"]
    assert not any(leak in line for line in logs)


@pytest.mark.live
def test_health_stays_200_when_the_database_is_gone(live_lab, live_install):
    install = live_install("cli")
    assert _server_get(live_lab, "http://127.0.0.1:3001/api/v1/health")[0] == 200
    assert live_lab.docker("stop", live_lab.container(install, "postgres")).returncode == 0
    # DesterLib's /health does not look at the database: a health gate cannot trust it alone.
    assert live_lab.lan_http(f"http://{live_lab.server_ip}:3001/health") == 200
    assert _server_get(live_lab, "http://127.0.0.1:3001/api/v1/health")[0] == 500


@pytest.mark.live
def test_api_exits_when_its_database_password_is_wrong_at_start(live_lab, live_install):
    install = live_install("cli", deploy=False)
    compose = install.compose
    text = compose.read_text()
    good = f"postgresql://desterlib:{DEMO_PASSWORD}@postgres"
    assert good in text
    compose.write_text(text.replace(good, "postgresql://desterlib:wrong-password@postgres"))
    live_lab.deploy(install, wait=False)
    api = live_lab.container(install, "api")

    def crashed():
        state = json.loads(live_lab.docker("inspect", "-f", "{{json .State}}", api).stdout or "{}")
        restarts = live_lab.docker("inspect", "-f", "{{.RestartCount}}", api).stdout.strip()
        return (state.get("ExitCode") == 1 or int(restarts or 0) > 0) and (state, restarts)

    _wait_for("the API exits on a refused database login", crashed)
    assert "Database connection failed" in live_lab.docker("logs", api).stdout


@pytest.mark.live
def test_api_rate_limit_answers_429(live_lab, live_install):
    install = live_install("cli", deploy=False)
    text = install.compose.read_text()
    install.compose.write_text(text.replace("      NODE_ENV: production\n",
                                            "      NODE_ENV: production\n      RATE_LIMIT_MAX: \"3\"\n", 1))
    live_lab.deploy(install)
    url = f"http://{live_lab.server_ip}:3001/api/v1/settings"
    assert [live_lab.lan_http(url) for _ in range(4)] == [200, 200, 200, 429]
    # /health is not rate limited (the healthcheck hits it every second).
    assert live_lab.lan_http(f"http://{live_lab.server_ip}:3001/health") == 200
    api = live_lab.container(install, "api")
    assert "/api/v1/settings 429" in live_lab.docker("logs", api).stdout


# -- the lab leaves nothing behind -----------------------------------------------------------

def _host_network() -> dict[str, str]:
    """The host namespace's addresses, routes and firewall rules (counters and lifetimes dropped)."""
    def run(*argv: str) -> str:
        if not shutil.which(argv[0]):
            return f"({argv[0]} not installed)"
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
        return proc.stdout + proc.stderr

    rules = re.compile(r"^#.*$|\[\d+:\d+\]", re.M)
    return {
        "addr": re.sub(r"valid_lft.*|preferred_lft.*", "", run("ip", "-o", "addr")),
        "route": run("ip", "route") + run("ip", "-6", "route"),
        "iptables": rules.sub("", run("iptables-save")),
        "ip6tables": rules.sub("", run("ip6tables-save")),
        "nft": run("nft", "list", "ruleset"),
    }


def _with_cache() -> dict[str, str]:
    """The environment for a child that starts a lab: this session's image cache, not its test HOME's.

    The hermetic HOME of a test has no cache: without this the child rebuilt the images from a
    debootstrap rootfs (about 100 s each time) instead of loading them (3 s).
    """
    return {**os.environ, "DH_LIVE_CACHE": str(livefixtures.CACHE)}


def _own_lab() -> LiveLab:
    """A lab of this test's own (not the session's), skipping or failing like the fixture."""
    try:
        return LiveLab.start(livefixtures.CACHE, livefixtures.PLUGIN)
    except LabUnavailable as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"live lab unavailable: {exc}")
        pytest.skip(f"live lab unavailable: {exc}")


def _traces(lab: LiveLab) -> dict[str, object]:
    """What a running lab consists of: its processes (pid -> command line), namespaces, cgroups."""
    holder = lab.server_pid
    namespaces = {procs.netns(holder), procs.netns(lab.lan_pid), os.readlink(f"/proc/{holder}/ns/mnt")}
    cgroups = sorted(glob.glob(f"/sys/fs/cgroup/*/dhl-{lab.token}") + glob.glob(f"/sys/fs/cgroup/dhl-{lab.token}"))
    # The containers' processes have namespaces of their own: they are found by the lab's cgroups.
    in_cgroups = {int(p) for c in cgroups for f in glob.glob(f"{c}/**/cgroup.procs", recursive=True)
                  for p in Path(f).read_text().split()}
    pids = {p: procs.cmdline(p) for p in (int(e) for e in os.listdir("/proc") if e.isdigit())
            if p in in_cgroups or procs.netns(p) in namespaces or _mntns(p) in namespaces}
    return {"pids": pids, "namespaces": namespaces, "cgroups": cgroups}


def _mntns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _left_over(traces: dict[str, object], root: Path) -> list[str]:
    left = []
    pids = traces["pids"]
    assert isinstance(pids, dict)
    for pid, cmd in pids.items():
        if procs.cmdline(pid) == cmd and Path(f"/proc/{pid}").exists():
            left.append(f"process {pid} {cmd[:60]}")
    namespaces = traces["namespaces"]
    assert isinstance(namespaces, set)
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (procs.netns(int(entry)) in namespaces or _mntns(int(entry)) in namespaces):
            left.append(f"process {entry} in a lab namespace: {procs.cmdline(int(entry))[:60]}")
    cgroups = traces["cgroups"]
    assert isinstance(cgroups, list)
    left += [f"cgroup {c}" for c in cgroups if os.path.exists(c)]
    left += [f"mount {m}" for m in procs.mounts_under(root)]
    if root.exists():
        left.append(f"directory {root}")
    return left


@pytest.mark.live
def test_stopping_a_lab_leaves_no_process_mount_cgroup_or_host_change(tmp_path):
    before = _host_network()
    lab = _own_lab()
    try:
        install = Path(materialize(str(tmp_path)))
        compose = compose_file(install)
        compose.write_text(prepare_compose(compose.read_text(), lab.new_project()))
        lab.deploy(install)
        traces = _traces(lab)
        pids = traces["pids"]
        assert isinstance(pids, dict)
        commands = " ".join(pids.values())
        # It was all there: dockerd, its containerd, the containers' shims and docker-proxy, the servers.
        for word in ("dockerd", "containerd", "containerd-shim", "docker-proxy", "postgres", "redis-server",
                     "api_standin.py"):
            assert word in commands, word
        assert traces["cgroups"], "dockerd's cgroups under the lab's own parent"
        assert not procs.mounts_under(lab.root), "the lab's mounts are in its own mount namespace only"
    finally:
        lab.stop()
    assert _left_over(traces, lab.root) == []
    assert _host_network() == before


@pytest.mark.live
def test_a_lab_whose_session_was_killed_is_reaped_by_the_next(tmp_path):
    # A session that dies by SIGKILL cannot stop its lab: dockerd and the holders outlive it.
    code = ("import sys, time\nfrom tests.livelab import LiveLab\nfrom tests import livefixtures as f\n"
            "lab = LiveLab.start(f.CACHE, f.PLUGIN)\nprint(lab.root, lab.server_pid, lab.lan_pid, flush=True)\n"
            "time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             cwd=str(Path(__file__).resolve().parent.parent), env=_with_cache())
    assert owner.stdout is not None
    line = owner.stdout.readline().split()
    if not line:
        owner.wait()
        _own_lab().stop()  # says why the lab cannot start (skip, or fail under CI)
        pytest.fail("the owner process started no lab")
    root, holder = Path(line[0]), int(line[1])
    dockerd = procs.alive(root / "dockerd.pid", "dockerd")
    assert dockerd and procs.alive(root / "holder.pid", "sleep") == holder
    owner.kill()
    owner.wait()
    assert procs.alive(root / "dockerd.pid", "dockerd") == dockerd, "the lab outlived its session"
    inode = procs.netns(holder)
    assert root in reap_stale()
    assert not root.exists()
    assert procs.cmdline(dockerd) == "" or "dockerd" not in procs.cmdline(dockerd)
    assert inode and procs.in_netns(inode) == []
    # A lab whose owner still runs (this session's own, if it started one) is left alone.
    reap_stale()
    assert all(lab.root.exists() for lab in livefixtures._labs)


@pytest.mark.live
def test_newer_layout_runs_sqlite_redis_and_the_built_scanner(live_lab, live_install):
    install = live_install("newer")
    ip = live_lab.server_ip
    for port in (6379, 8080, 3001):
        assert live_lab.lan_tcp(ip, port) == "open", port
    assert live_lab.lan_http(f"http://{ip}:8080/health") == 200
    assert live_lab.lan_http(f"http://{ip}:3001/api/v1/health") == 200
    # SQLite on the host's bind mount, the API's log beside it (what FS-007 and OPS-002 read).
    assert (install / "desterlib-data" / "db" / "main.db").is_file()
    assert "Database: file:/app/db/main.db" in (install / "desterlib-data" / "logs" / "combined.log").read_text()
    # api and scanner are built locally, redis is pulled (DKR-005 knows build --pull from pull).
    images = {svc: live_lab.docker("inspect", "-f", "{{.Config.Image}}", live_lab.container(install, svc)).stdout
              .strip() for svc in ("api", "scanner-service", "redis")}
    assert images == {"api": f"{install.project}-api", "scanner-service": f"{install.project}-scanner-service",
                      "redis": "redis:7-alpine"}
    assert live_lab.redis_auth(install, None)


@pytest.mark.live
def test_an_interrupted_session_still_stops_its_lab(tmp_path):
    """Ctrl-C in a test: pytest still runs the session fixture's teardown, which stops the lab."""
    (tmp_path / "test_interrupt.py").write_text(
        "def test_interrupted(live_lab):\n"
        "    print('LAB', live_lab.root, live_lab.server_pid, flush=True)\n"
        "    raise KeyboardInterrupt\n")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-s", "-q", "-p", "tests.livefixtures", "-p",
                           "no:cacheprovider", "--rootdir", str(tmp_path), "-c", os.devnull,
                           str(tmp_path / "test_interrupt.py")],
                          capture_output=True, text=True, cwd=str(Path(__file__).resolve().parent.parent),
                          timeout=600, env=_with_cache())
    started = [ln.split() for ln in proc.stdout.splitlines() if ln.startswith("LAB ")]
    if not started:
        _own_lab().stop()  # skips (or fails under CI) with the reason the lab cannot start
        pytest.fail("the interrupted session started no lab:\n" + proc.stdout[-2000:])
    assert "KeyboardInterrupt" in proc.stdout + proc.stderr
    root, holder = Path(started[0][1]), int(started[0][2])
    assert not root.exists()
    assert "sleep" not in procs.cmdline(holder)


def test_pg_login_passes_the_password_in_the_environment_never_in_argv(monkeypatch, tmp_path):
    calls: list[tuple[tuple[str, ...], dict]] = []

    def docker(self, *args, **kw):
        calls.append((args, kw))
        out = {"ps": "desterlib-postgres\n", "inspect": '{"p_default": {"IPAddress": "172.18.0.2"}}',
               "run": "1\n"}[args[0]]
        return subprocess.CompletedProcess(["docker", *args], 0, out, "")

    monkeypatch.setattr(LiveLab, "docker", docker)
    lab = LiveLab(tmp_path / "dhl-00000000")
    secret = "s3cret-Pa55word"
    assert lab.pg_login("p", "desterlib", "desterlib", secret)
    assert lab.redis_auth("p", secret)
    for args, _kw in calls:
        assert not any(secret in a for a in args)
    runs = [kw for args, kw in calls if args[0] == "run"]
    assert runs[0]["env"] == {"PGPASSWORD": secret}
    assert runs[1]["env"] == {"REDISCLI_AUTH": secret}
