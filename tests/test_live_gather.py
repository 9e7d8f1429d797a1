"""The live layer against a real Docker Engine: the lab's dockerd, the demo stack, the server's namespace.

Every test here is marked ``live`` and uses the lab fixtures (tests/livefixtures.py); where the lab
cannot start they skip with its reason (and fail under ``CI=true``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from checks.install.discovery import discover
from checks.live.gather import gather
from checks.live.model import Binding, value_digest
from tests.conftest import PROJECT

pytestmark = pytest.mark.live

DEMO_PASSWORD = "postgres"
"""The demo install's database password (also the service's name: never assert on it alone)."""

_GATHER_JSON = """\
import dataclasses, json, sys
from checks.install.discovery import discover
from checks.live.gather import gather
state = gather(discover(sys.argv[1]), logs=False)
print(json.dumps({"addresses": state.addresses, "probes": [dataclasses.asdict(p) for p in state.probes],
                  "engine_error": state.engine_error, "probes_error": state.probes_error,
                  "docker_imported": "docker" in sys.modules}))
"""


def _deployed(live_lab, live_install, edits=()):
    """A demo install with ``edits`` (old, new) made to its compose file, deployed and healthy.

    Each healthcheck gets a ``start_period``, a longer timeout and more retries: on a loaded 2-core machine
    PostgreSQL's first start outlasted five 1-second checks, and a check's own ``docker exec`` its 5 s
    timeout, so deploys failed before any code under test ran. These tests are not about health.
    """
    install = live_install(deploy=False)
    text = install.compose.read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    text = re.sub(r"(?m)^(\s+)timeout: \d+s\n", r"\1timeout: 30s\n", text)
    text = re.sub(r"(?m)^(\s+)retries: \d+\n(?!\1start_period)", r"\1retries: 30\n\1start_period: 90s\n", text)
    install.compose.write_text(text)
    live_lab.deploy(install)
    return install


def _state(live_lab, install, **kw):
    return gather(discover(str(install)), proc_net=f"/proc/{live_lab.server_pid}/net",
                  environ={**os.environ, **live_lab.env}, **kw)


def test_gather_reads_the_running_stack(live_lab, live_install):
    install = _deployed(live_lab, live_install)
    state = _state(live_lab, install, probe=False)
    assert state.engine_error is None, state.engine_error
    assert state.project == install.project
    assert state.engine is not None and state.engine.version.startswith("20.10.")
    assert state.engine.api_version and state.engine.endpoint == live_lab.env["DOCKER_HOST"]
    assert {c.service for c in state.containers} == {"api", "postgres", "redis"}
    pg, api, redis = (state.container(s) for s in ("postgres", "api", "redis"))
    assert pg is not None and api is not None and redis is not None
    # "5432:5432" asks for every interface, IPv6 included: HostIp "" ; "0.0.0.0:3001:3001" is IPv4 only.
    assert pg.bindings == (Binding("", 5432, 5432),) and pg.bindings[0].all_interfaces
    assert api.bindings == (Binding("0.0.0.0", 3001, 3001),)
    assert redis.bindings == (Binding("", 6379, 6379),)
    assert pg.status == "running" and pg.health == "healthy" and pg.restart_count == 0
    assert api.health == "healthy" and api.image == "desterlib/api:latest"
    assert all(c.image_created is not None and 0 < c.image_created < time.time() for c in state.containers)
    assert {"POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB"} <= set(pg.env)
    assert pg.env["POSTGRES_PASSWORD"] == value_digest(DEMO_PASSWORD)
    assert "DATABASE_URL" in api.env and "postgresql://" not in repr(state)
    assert f"POSTGRES_PASSWORD={DEMO_PASSWORD}" not in repr(state)
    volume = [m for m in pg.mounts if m.target == "/var/lib/postgresql/data"]
    assert volume and volume[0].kind == "volume" and volume[0].read_write
    media = [m for m in api.mounts if m.target == "/media"]
    assert media and media[0].kind == "bind" and media[0].source == str(install / "media")
    assert pg.config_hash and pg.networks and api.command
    assert state.built == frozenset()
    # The listeners are the server namespace's: docker-proxy holds 5432, 6379 and 3001 there.
    assert state.listeners is not None, state.listeners_error
    ports = {(x.port, x.address) for x in state.listeners}
    assert {5432, 6379, 3001} <= {p for p, _ in ports}
    assert any(p == 5432 and a in ("0.0.0.0", "::") for p, a in ports)
    assert "10.77.0.1" in state.addresses and "fd77::1" in state.addresses
    # The API logs its DATABASE_URL at start: found in docker logs, kept as a line number only.
    docker_logs = [f for f in state.logs if f.source == "docker logs api"]
    assert docker_logs and docker_logs[0].leaked_lines, state.logs_error


TMDB_KEY = "tmdb-5f0e8c1d9a7b"


def test_probes_run_in_the_server_namespace_find_the_admin_surface(live_lab, live_install):
    media = "      CONTAINER_MEDIA_PATH: /media\n"
    install = _deployed(live_lab, live_install, [(media, f"{media}      TMDB_API_KEY: {TMDB_KEY}\n")])
    out = live_lab.in_server([sys.executable, "-c", _GATHER_JSON, str(install)], cwd=str(PROJECT), timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["engine_error"] is None and got["probes_error"] is None
    assert "10.77.0.1" in got["addresses"]
    exposed = {p["url"]: p["exposes"] for p in got["probes"] if p["exposes"]}
    assert exposed.get("http://10.77.0.1:3001/api/docs") == "Swagger UI"
    assert exposed.get("http://10.77.0.1:3001/api/v1/settings") == "the TMDB API key"
    assert exposed.get("http://10.77.0.1:3001/api/v1/logs") == "the API's logs"
    # 0.0.0.0 is IPv4 only, and nothing but this host's own addresses is asked.
    assert all(p["url"].startswith("http://10.77.0.1:3001/") for p in got["probes"]), got
    assert TMDB_KEY not in out.stdout


def test_settings_without_a_tmdb_key_are_exposed_but_give_no_key(live_lab, live_install):
    install = _deployed(live_lab, live_install)
    out = live_lab.in_server([sys.executable, "-c", _GATHER_JSON, str(install)], cwd=str(PROJECT), timeout=120)
    assert out.returncode == 0, out.stderr
    exposed = {p["url"]: p["exposes"] for p in json.loads(out.stdout)["probes"]}
    assert exposed["http://10.77.0.1:3001/api/v1/settings"] == "the API's settings"


def test_an_unreachable_docker_host_is_one_line_and_loads_no_docker_code(live_lab, live_install):
    install = live_install(deploy=False)
    out = live_lab.in_server([sys.executable, "-c", _GATHER_JSON, str(install)], cwd=str(PROJECT), timeout=120,
                             env={"DOCKER_HOST": "tcp://10.77.0.1:2375"})
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["engine_error"] == ("the Docker Engine is not reachable at tcp://10.77.0.1:2375: "
                                   "connection refused (is dockerd running?)")
    assert got["docker_imported"] is False


def test_permission_denied_on_the_engine_socket_says_how_to_get_access(live_lab):
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv is not installed: cannot run as an unprivileged user")
    code = ("import sys, json\nfrom checks.live.docker import connect, LiveError\n"
            "try:\n    connect()\n    print(json.dumps(['connected']))\n"
            "except LiveError as e:\n    print(json.dumps([str(e), 'docker' in sys.modules]))\n")
    env = {**os.environ, **live_lab.env, "PYTHONPATH": str(PROJECT)}
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
                         capture_output=True, text=True, env=env, cwd="/", timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [
        f"the Docker Engine is not reachable at {live_lab.env['DOCKER_HOST']}: permission denied "
        "(run with sudo or join the docker group)", False]


_HAMMER = """\
import sys, urllib.request, urllib.error
for _ in range(int(sys.argv[2])):
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(sys.argv[1], timeout=5).read()
    except urllib.error.HTTPError as exc:
        print(exc.code)
"""


def test_log_leak_and_429_burst_found_in_docker_logs_and_the_host_combined_log(live_lab, live_install):
    media, bind = "      CONTAINER_MEDIA_PATH: /media\n", "      - ./media:/media\n"
    install = _deployed(live_lab, live_install, [(media, f"{media}      RATE_LIMIT_MAX: 3\n"),
                                                 (bind, f"{bind}      - ./logs:/app/logs\n")])
    hammer = live_lab.in_server([sys.executable, "-c", _HAMMER, "http://10.77.0.1:3001/api/v1/settings", "6"])
    assert hammer.stdout.split().count("429") >= 3, hammer.stdout + hammer.stderr
    state = _state(live_lab, install, probe=False)
    by_source = {f.source: f for f in state.logs}
    assert set(by_source) == {"docker logs api", "logs/combined.log"}, (state.logs, state.logs_error)
    for finding in by_source.values():
        assert finding.leaked_lines, finding
        assert sum(finding.too_many_requests.values()) >= 3, finding
    # docker's own timestamps date every line: nothing is counted under the scan's hour for want of one.
    assert by_source["docker logs api"].undated == 0
    assert "postgresql://" not in repr(state) and DEMO_PASSWORD + "@" not in repr(state)
