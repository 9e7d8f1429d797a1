"""Discovery: compose files, env files, interpolation, ports, volumes and positions.

Every test writes a small installation into ``tmp_path``; nothing here needs ../shared.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from checks.audit.rules.fs import media_mounts
from checks.core.errors import InputError
from checks.install.discovery import discover
from checks.install.model import LAYOUT_CLI, LAYOUT_CUSTOM, LAYOUT_NEWER, LAYOUT_SETUP_SCRIPT, Installation
from checks.install.specs import parse_port_spec

from .conftest import FIXED_NOW


def make(tmp_path: Path, files: dict[str, str | bytes]) -> Path:
    """Write ``files`` (relative path -> text or bytes) under tmp_path/install."""
    root = tmp_path / "install"
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))
    return root


def disc(tmp_path: Path, files: dict[str, str | bytes] | None = None) -> Installation:
    """Discover the installation in tmp_path/install, hermetically."""
    root = make(tmp_path, files or {})
    host = tmp_path / "host"
    host.mkdir(parents=True, exist_ok=True)
    return discover(str(root), host_root=str(host), now=FIXED_NOW)


def line_of(text: str, needle: str) -> int:
    """1-based number of the only line of ``text`` that contains ``needle``."""
    hits = [i for i, line in enumerate(text.split("\n"), 1) if needle in line]
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def svc(inst: Installation, name: str):
    found = inst.service(name)
    assert found is not None, name
    return found


def env_value(inst: Installation, name: str, key: str) -> str | None:
    return svc(inst, name).environment[key].value


API = "services:\n  api:\n    image: desterlib/api:1.0.0\n"


# --------------------------------------------------------------------------- compose files


@pytest.mark.parametrize("winner,losers", [
    ("compose.yaml", ["compose.yml", "docker-compose.yaml", "docker-compose.yml"]),
    ("compose.yml", ["docker-compose.yaml", "docker-compose.yml"]),
    ("docker-compose.yaml", ["docker-compose.yml"]),
    ("docker-compose.yml", []),
])
def test_compose_file_precedence(tmp_path, winner, losers):
    files: dict[str, str | bytes] = {winner: "services:\n  winner:\n    image: alpine:3\n"}
    for name in losers:
        files[name] = "services:\n  loser:\n    image: alpine:3\n"
    inst = disc(tmp_path, files)
    assert [s.display for s in inst.compose_files] == [winner]
    assert [s.name for s in inst.services] == ["winner"]


def test_root_compose_file_wins_over_docker_dir(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": "services:\n  root:\n    image: alpine:3\n",
        "docker/docker-compose.yml": "services:\n  sub:\n    image: alpine:3\n",
    })
    assert [s.name for s in inst.services] == ["root"]


def test_docker_subdirectory_and_root_env(tmp_path):
    inst = disc(tmp_path, {
        "docker/docker-compose.yml": (API + "    env_file: ../.env\n    environment:\n      TAG: ${TAG}\n"
                                      "    volumes:\n      - ../media:/media:ro\n"),
        ".env": "TAG=from-root\n",
    })
    assert [s.display for s in inst.compose_files] == ["docker/docker-compose.yml"]
    assert inst.project_dir == str(tmp_path / "install" / "docker")
    # No docker/.env: the install root's .env interpolates (the newer layout keeps it there).
    assert env_value(inst, "api", "TAG") == "from-root"
    api = svc(inst, "api")
    # Relative paths resolve against the compose file's directory.
    assert api.mounts[0].host_path == str(tmp_path / "install" / "media")
    assert [e.display for e in api.env_files] == [".env"]
    assert inst.layout == LAYOUT_NEWER


def test_no_compose_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no compose file found"):
        disc(tmp_path, {".env": "A=1\n"})


def test_missing_install_dir_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        discover(str(tmp_path / "nope"), host_root=str(tmp_path), now=FIXED_NOW)


def test_empty_compose_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="empty"):
        disc(tmp_path, {"docker-compose.yml": "# nothing here\n"})


BASE = """\
services:
  api:
    image: desterlib/api:1.0.0
    ports:
      - "3001:3001"
    volumes:
      - ./media:/media
      - ./cache:/cache
    environment:
      KEEP: base
      CHANGE: base
    cap_add:
      - NET_ADMIN
    command: ["node", "base.js"]
  postgres:
    image: postgres:16
    ports:
      - "5432:5432"
"""

OVERRIDE = """\
services:
  api:
    ports:
      - "127.0.0.1:9229:9229"
    volumes:
      - ./extra:/extra
    environment:
      - CHANGE=override
      - ADDED=override
    cap_add: !reset []
    command: !override ["node", "override.js"]
  postgres:
    ports: !override
      - "127.0.0.1:5432:5432"
"""


@pytest.mark.parametrize("name", ["docker-compose.override.yml", "docker-compose.override.yaml"])
def test_override_file_is_merged(tmp_path, name):
    inst = disc(tmp_path, {"docker-compose.yml": BASE, name: OVERRIDE})
    assert [s.display for s in inst.compose_files] == ["docker-compose.yml", name]
    api = svc(inst, "api")
    # ports and volumes concatenate, base first
    assert [(p.host_ip, p.published, p.where.file) for p in api.ports] == [
        (None, "3001", "docker-compose.yml"), ("127.0.0.1", "9229", name)]
    assert [(m.target, m.where.file) for m in api.mounts] == [
        ("/media", "docker-compose.yml"), ("/cache", "docker-compose.yml"), ("/extra", name)]
    # environment merges by key, the override winning (map base, list override)
    env = api.environment
    assert (env["KEEP"].value, env["KEEP"].where.file) == ("base", "docker-compose.yml")
    assert (env["CHANGE"].value, env["CHANGE"].where.file) == ("override", name)
    assert env["ADDED"].value == "override"
    # !reset removes, !override replaces
    assert api.opt("cap_add") is None
    assert api.opt("command").plain() == ["node", "override.js"]
    pg = svc(inst, "postgres")
    assert [(p.host_ip, p.where.file, p.where.line) for p in pg.ports] == [
        ("127.0.0.1", name, line_of(OVERRIDE, "127.0.0.1:5432"))]


def test_override_reset_of_an_environment_key(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    environment:\n      FOO: bar\n      KEEP: x\n",
        "docker-compose.override.yml": "services:\n  api:\n    environment:\n      FOO: !reset null\n",
    })
    assert set(svc(inst, "api").environment) == {"KEEP"}


def test_override_volume_with_same_target_replaces_the_base_one(tmp_path):
    # Compose keys service volumes by target: `./media:/media:ro` in the override
    # replaces the base's read-write mount instead of adding a second one.
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    volumes:\n      - ./media:/media\n      - ./cache:/cache\n",
        "docker-compose.override.yml": "services:\n  api:\n    volumes:\n      - ./media:/media:ro\n",
    })
    mounts = svc(inst, "api").mounts
    assert [(m.target, m.read_only, m.where.file) for m in mounts] == [
        ("/media", True, "docker-compose.override.yml"), ("/cache", False, "docker-compose.yml")]


def test_override_adds_a_service(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API,
        "docker-compose.override.yml": "services:\n  redis:\n    image: redis:7\n",
    })
    assert [s.name for s in inst.services] == ["api", "redis"]
    assert svc(inst, "redis").where.file == "docker-compose.override.yml"


def test_compose_file_variable_in_env(tmp_path):
    inst = disc(tmp_path, {
        "prod.yml": API,
        "extra/db.yml": "services:\n  db:\n    image: postgres:16\n",
        "docker-compose.yml": "services:\n  ignored:\n    image: alpine:3\n",
        ".env": "COMPOSE_FILE=prod.yml:extra/db.yml\n",
    })
    assert [s.display for s in inst.compose_files] == ["prod.yml", "extra/db.yml"]
    assert [s.name for s in inst.services] == ["api", "db"]


def test_compose_file_with_path_separator(tmp_path):
    inst = disc(tmp_path, {
        "a.yml": API,
        "b.yml": "services:\n  db:\n    image: postgres:16\n",
        ".env": "COMPOSE_PATH_SEPARATOR=;\nCOMPOSE_FILE=a.yml;b.yml\n",
    })
    assert [s.display for s in inst.compose_files] == ["a.yml", "b.yml"]


def test_compose_file_naming_a_missing_file(tmp_path):
    with pytest.raises(InputError) as err:
        disc(tmp_path, {"a.yml": API, ".env": "COMPOSE_FILE=a.yml:missing.yml\n"})
    assert err.value.file == ".env" and err.value.line == 1


def test_explicit_files_argument(tmp_path):
    root = make(tmp_path, {"one.yml": API, "docker-compose.yml": "services:\n  other:\n    image: alpine:3\n"})
    inst = discover(str(root), files=[str(root / "one.yml")], host_root=str(tmp_path), now=FIXED_NOW)
    assert [s.name for s in inst.services] == ["api"]


# --------------------------------------------------------------------------- env files


def test_root_env_is_read_even_without_env_file(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API, ".env": "A=1\n"})
    assert [(e.display, e.exists) for e in inst.env_files] == [(".env", True)]
    assert "root" in inst.env_files[0].roles and "project" in inst.env_files[0].roles
    assert inst.project_env == {"A": "1"}


@pytest.mark.parametrize("spec", [
    "    env_file: conf/api.env\n",
    "    env_file:\n      - conf/api.env\n",
    "    env_file:\n      - path: conf/api.env\n",
    "    env_file:\n      - path: ./conf/api.env\n        required: true\n",
])
def test_env_file_forms(tmp_path, spec):
    inst = disc(tmp_path, {"docker-compose.yml": API + spec, "conf/api.env": "SECRET_THING=s3cr3t-value\n"})
    api = svc(inst, "api")
    assert [e.display for e in api.env_files] == ["conf/api.env"]
    var = api.environment["SECRET_THING"]
    assert (var.value, var.origin, var.where.file, var.where.line) == ("s3cr3t-value", "env_file", "conf/api.env", 1)
    ef = api.env_files[0]
    assert ef.referenced_by[0][0] == "api"
    assert ef.referenced_by[0][1].line == line_of(API + spec, "conf/api.env")


def test_env_file_relative_to_the_compose_file_directory(tmp_path):
    inst = disc(tmp_path, {
        "docker/docker-compose.yml": API + "    env_file: api.env\n",
        "docker/api.env": "X=in-docker\n",
        "api.env": "X=at-root\n",
    })
    assert env_value(inst, "api", "X") == "in-docker"


def test_several_env_files_later_wins_and_environment_wins_over_env_file(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    env_file: [a.env, b.env]\n    environment:\n      C: compose\n",
        "a.env": "A=a\nB=a\nC=a\n",
        "b.env": "B=b\n",
    })
    env = svc(inst, "api").environment
    assert (env["A"].value, env["B"].value, env["C"].value) == ("a", "b", "compose")
    assert env["C"].origin == "compose"


def test_missing_required_env_file_is_a_note_not_a_crash(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API + "    env_file: ./gone.env\n"})
    api = svc(inst, "api")
    assert [(e.display, e.exists) for e in api.env_files] == [("gone.env", False)]
    assert any("gone.env" in n and "missing" in n for n in inst.notes)


def test_missing_optional_env_file_gives_no_note(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": (API + "    env_file:\n      - path: ./opt.env\n"
                                                  "        required: false\n")})
    assert inst.notes == []
    assert svc(inst, "api").env_files[0].required is False


def test_env_file_values_interpolate_from_the_project_env(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    env_file: api.env\n",
        ".env": "PW=from-dot-env\n",
        "api.env": "DATABASE_URL=postgresql://u:${PW}@db/x\n",
    })
    assert env_value(inst, "api", "DATABASE_URL") == "postgresql://u:from-dot-env@db/x"


# --------------------------------------------------------------------------- interpolation


INTERP = """\
services:
  api:
    image: desterlib/api:${TAG:-1.0.0}
    environment:
      SET: ${SET}
      BARE: $SET
      COLON_DEFAULT_SET: ${SET:-d}
      COLON_DEFAULT_EMPTY: ${EMPTY:-d}
      COLON_DEFAULT_UNSET: ${UNSET:-d}
      DASH_DEFAULT_EMPTY: ${EMPTY-d}
      DASH_DEFAULT_UNSET: ${UNSET-d}
      REQUIRED_SET: ${SET?must be set}
      REQUIRED_COLON_SET: ${SET:?must be set}
      REQUIRED_UNSET: ${UNSET:?must be set}
      ALT_SET: ${SET:+alt}
      ALT_UNSET: ${UNSET:+alt}
      DOLLARS: price $$5 and $${SET}
      NESTED: ${UNSET:-${SET}-x}
      UNSET_PLAIN: ${UNSET}
"""


def test_compose_interpolation_from_dot_env(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": INTERP, ".env": "SET=value\nEMPTY=\n"})
    api = svc(inst, "api")
    assert api.image_name == "desterlib/api:1.0.0"
    got = {k: v.value for k, v in api.environment.items()}
    assert got == {
        "SET": "value",
        "BARE": "value",
        "COLON_DEFAULT_SET": "value",
        "COLON_DEFAULT_EMPTY": "d",
        "COLON_DEFAULT_UNSET": "d",
        "DASH_DEFAULT_EMPTY": "",
        "DASH_DEFAULT_UNSET": "d",
        "REQUIRED_SET": "value",
        "REQUIRED_COLON_SET": "value",
        "REQUIRED_UNSET": "",
        "ALT_SET": "alt",
        "ALT_UNSET": "",
        "DOLLARS": "price $5 and ${SET}",
        "NESTED": "value-x",
        "UNSET_PLAIN": "",
    }
    # what was written stays available for SEC-003 and the change engine
    assert api.environment["SET"].raw == "${SET}"
    assert api.environment["SET"].setting.refs == ["SET"]
    assert api.environment["UNSET_PLAIN"].setting.missing == ["UNSET"]
    assert api.environment["COLON_DEFAULT_UNSET"].setting.defaults == ["d"]


def test_non_string_scalars_become_strings(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": (API + "    environment:\n      PORT: 3001\n      DEBUG: false\n"
                                                  "      RATIO: 0.5\n      NOTHING:\n")})
    env = svc(inst, "api").environment
    assert (env["PORT"].value, env["DEBUG"].value, env["RATIO"].value, env["NOTHING"].value) == (
        "3001", "false", "0.5", None)


def test_yaml_1_2_scalars_stay_strings(tmp_path):
    # Compose reads YAML 1.2: `on`, `yes` and `22:22` are strings, not booleans or sexagesimal ints.
    inst = disc(tmp_path, {"docker-compose.yml": (API + "    environment:\n      A: on\n      B: yes\n"
                                                  "    ports:\n      - 22:22\n")})
    api = svc(inst, "api")
    assert (api.environment["A"].value, api.environment["B"].value) == ("on", "yes")
    assert (api.ports[0].published, api.ports[0].target) == ("22", "22")


# --------------------------------------------------------------------------- .env (python-dotenv)


DOTENV = """\
# a comment line

export EXPORTED=yes
DOUBLE="double ${EXPORTED} quoted"
SINGLE='single ${EXPORTED} quoted'
ESCAPES="tab\\tnewline\\nquote\\" end"
INLINE=value # an inline comment
HASH=value#not-a-comment
QUOTED_HASH="a # b"
MULTI="first
second"
CHAIN_A=a
CHAIN_B=${CHAIN_A}-b
CHAIN_C=${CHAIN_B}-c
SPACES =  padded
EMPTY=
BARE
AFTER=last
"""


def test_dotenv_semantics(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API, ".env": DOTENV})
    env = inst.env_files[0]
    values = {e.key: e.value for e in env.entries}
    assert values == {
        "EXPORTED": "yes",
        "DOUBLE": "double yes quoted",
        "SINGLE": "single ${EXPORTED} quoted",
        "ESCAPES": 'tab\tnewline\nquote" end',
        "INLINE": "value",
        "HASH": "value#not-a-comment",
        "QUOTED_HASH": "a # b",
        "MULTI": "first\nsecond",
        "CHAIN_A": "a",
        "CHAIN_B": "a-b",
        "CHAIN_C": "a-b-c",
        "SPACES": "padded",
        "EMPTY": "",
        "BARE": None,
        "AFTER": "last",
    }
    quotes = {e.key: e.quote for e in env.entries}
    assert (quotes["DOUBLE"], quotes["SINGLE"], quotes["INLINE"]) == ('"', "'", "")
    # lines are the real lines, also after a multi-line value
    for entry in env.entries:
        assert entry.line == line_of(DOTENV, entry.text.split("\n")[0]), entry.key
    after, multi = env.get("AFTER"), env.get("MULTI")
    assert after is not None and multi is not None
    assert after.line == line_of(DOTENV, "AFTER=last")
    assert multi.text == 'MULTI="first\nsecond"'
    # BARE has no value: not part of the interpolation environment
    assert "BARE" not in inst.project_env


def test_dotenv_later_definition_wins(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API + "    environment:\n      X: ${X}\n",
                           ".env": "X=first\nX=second\n"})
    assert env_value(inst, "api", "X") == "second"
    x = inst.env_files[0].get("X")
    assert x is not None
    assert x.line == 2


def test_dotenv_syntax_error_names_the_line(tmp_path):
    with pytest.raises(InputError) as err:
        disc(tmp_path, {"docker-compose.yml": API, ".env": "A=1\n\n\nthis is not an assignment\n"})
    # python-dotenv starts the bad binding at the blank lines; the error cites the bad line
    assert (err.value.file, err.value.line) == (".env", 4)


# --------------------------------------------------------------------------- ports


PORTS = """\
services:
  api:
    image: desterlib/api:1.0.0
    ports:
      - "5432:5432"                    # all
      - "127.0.0.1:5433:5432"          # v4 loopback
      - "[::1]:5434:5432"              # bracketed v6
      - "::1:5435:5432"                # bare v6
      - ":::5436:5432"                 # v6 any
      - "[::]:5437:5432"               # bracketed v6 any
      - "8000-8010:8000-8010"          # range
      - "53:53/udp"                    # protocol
      - 3001                           # container port only
      - "9000:9000/TCP"                # upper-case protocol
      - "${BIND:-0.0.0.0}:3002:3001"   # interpolated address
      - target: 80                     # long
        published: "8080"
        host_ip: 127.0.0.1
        protocol: udp
      - target: 443                    # long without host_ip
        published: 8443
"""


def test_ports_short_and_long_syntax(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": PORTS})
    got = [(p.host_ip, p.published, p.target, p.protocol, p.long, p.all_interfaces) for p in svc(inst, "api").ports]
    assert got == [
        (None, "5432", "5432", "tcp", False, True),
        ("127.0.0.1", "5433", "5432", "tcp", False, False),
        ("::1", "5434", "5432", "tcp", False, False),
        ("::1", "5435", "5432", "tcp", False, False),
        ("::", "5436", "5432", "tcp", False, True),
        ("::", "5437", "5432", "tcp", False, True),
        (None, "8000-8010", "8000-8010", "tcp", False, True),
        (None, "53", "53", "udp", False, True),
        (None, None, "3001", "tcp", False, True),
        (None, "9000", "9000", "tcp", False, True),
        ("0.0.0.0", "3002", "3001", "tcp", False, True),
        ("127.0.0.1", "8080", "80", "udp", True, False),
        (None, "8443", "443", "tcp", True, True),
    ]


def test_port_positions_are_real_lines(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": PORTS})
    ports = svc(inst, "api").ports
    needles = ['"5432:5432"', "127.0.0.1:5433", "[::1]:5434", '"::1:5435', ":::5436", "[::]:5437", "8000-8010",
               "53:53/udp", "- 3001", "9000/TCP", "BIND", "target: 80 ", "target: 443"]
    lines = PORTS.split("\n")
    for port, needle in zip(ports, needles, strict=True):
        assert port.where.line == line_of(PORTS, needle), needle
        assert port.where.text == lines[port.where.line - 1]
        assert port.where.file == "docker-compose.yml"


def test_port_range_expansion(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": PORTS})
    rng = svc(inst, "api").ports[6]
    assert rng.target_ports == list(range(8000, 8011))
    assert rng.published_ports == list(range(8000, 8011))


def test_interpolated_bind_address_is_flagged_and_resolved_from_env(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": PORTS, ".env": "BIND=127.0.0.1\n"})
    port = svc(inst, "api").ports[10]
    assert (port.host_ip, port.interpolated, port.all_interfaces) == ("127.0.0.1", True, False)


def test_unreadable_port_is_a_note(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API + "    ports:\n      - \"not-a-port\"\n      - \"3001:3001\"\n"})
    assert [p.target for p in svc(inst, "api").ports] == ["3001"]
    assert any("cannot read port" in n and ":5:" in n for n in inst.notes)


@pytest.mark.parametrize("spec,expected", [
    ("5432", (None, None, "5432", "tcp")),
    ("5432:5432", (None, "5432", "5432", "tcp")),
    ("127.0.0.1:5432:5432", ("127.0.0.1", "5432", "5432", "tcp")),
    ("127.0.0.1::5432", ("127.0.0.1", None, "5432", "tcp")),
    ("[::1]:5432:5432", ("::1", "5432", "5432", "tcp")),
    ("::1:5432:5432", ("::1", "5432", "5432", "tcp")),
    # nat.ParsePortSpec joins everything before the last two fields: ":::5432:5432" is [::]
    (":::5432:5432", ("::", "5432", "5432", "tcp")),
    ("[::]:5432:5432", ("::", "5432", "5432", "tcp")),
    ("0.0.0.0:8000-8010:8000-8010/udp", ("0.0.0.0", "8000-8010", "8000-8010", "udp")),
    ("53:53/", (None, "53", "53", "tcp")),
    ("", None),
    ("http", None),
    ("a:b", None),
])
def test_parse_port_spec(spec, expected):
    assert parse_port_spec(spec) == expected


# --------------------------------------------------------------------------- volumes


VOLUMES = """\
services:
  api:
    image: desterlib/api:1.0.0
    environment:
      CONTAINER_MEDIA_PATH: /media
    volumes:
      - ./media:/media:ro
      - /srv/rw:/rw:rw
      - /srv/z:/z:ro,z
      - /anonymous
      - named:/named
      - library:/library:ro
      - ~/photos:/photos
      - type: bind
        source: ./long
        target: /long
        read_only: true
      - type: bind
        source: ./long-str
        target: /long-str
        read_only: "true"
      - type: volume
        source: named
        target: /long-named
      - source: /implied-bind
        target: /implied
volumes:
  named:
  library:
    driver: local
    driver_opts:
      type: none
      o: bind
      device: /srv/library
"""


def test_volumes_short_and_long_syntax(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": VOLUMES})
    root = str(tmp_path / "install")
    got = [(m.kind, m.source, m.target, m.read_only, m.host_path, m.via_volume, m.long)
           for m in svc(inst, "api").mounts]
    assert got == [
        ("bind", "./media", "/media", True, root + "/media", None, False),
        ("bind", "/srv/rw", "/rw", False, "/srv/rw", None, False),
        ("bind", "/srv/z", "/z", True, "/srv/z", None, False),
        ("volume", None, "/anonymous", False, None, None, False),
        ("volume", "named", "/named", False, None, None, False),
        ("volume", "library", "/library", True, "/srv/library", "library", False),
        ("bind", "~/photos", "/photos", False, pwd.getpwuid(os.getuid()).pw_dir.rstrip("/") + "/photos", None, False),
        ("bind", "./long", "/long", True, root + "/long", None, True),
        ("bind", "./long-str", "/long-str", True, root + "/long-str", None, True),
        ("volume", "named", "/long-named", False, None, None, True),
        ("bind", "/implied-bind", "/implied", False, "/implied-bind", None, True),
    ]


def test_volume_positions_are_real_lines(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": VOLUMES})
    lines = VOLUMES.split("\n")
    # a long-syntax entry is cited at its first key (the line of its "- ")
    expected = [line_of(VOLUMES, n) for n in ("./media:/media", "/srv/rw", "/srv/z", "/anonymous", "named:/named",
                                              "library:/library", "~/photos")]
    expected += [i for i, line in enumerate(lines, 1) if line.startswith(("      - type:", "      - source:"))]
    assert len(expected) == 11
    got = [m.where.line for m in svc(inst, "api").mounts]
    assert got == expected
    for mount in svc(inst, "api").mounts:
        assert mount.where.text == lines[mount.where.line - 1]


def test_tilde_expands_like_compose(tmp_path):
    # compose-go joins the home directory and the rest: "~x" is HOME/x.
    home = pwd.getpwuid(os.getuid()).pw_dir.rstrip("/")
    inst = disc(tmp_path, {"docker-compose.yml": API + "    volumes:\n      - ~/a:/a\n      - ~b:/b\n      - ~:/c\n"})
    assert [m.host_path for m in svc(inst, "api").mounts] == [home + "/a", home + "/b", home or "/"]


def test_bind_backed_named_volume_variants(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API + """\
    volumes:
      - a:/a
      - b:/b
      - c:/c
      - d:/d
volumes:
  a:
    driver_opts: {o: bind, device: ./rel}
  b:
    driver_opts: {type: nfs, o: "addr=10.0.0.1", device: ":/export"}
  c:
    external: true
    driver_opts: {type: none, o: bind, device: /srv/c}
  d:
    driver: local
    driver_opts: {type: none, o: bind, device: /srv/d}
"""})
    got = {m.target: (m.host_path, m.via_volume) for m in svc(inst, "api").mounts}
    assert got == {
        "/a": (str(tmp_path / "install" / "rel"), "a"),
        "/b": (None, None),
        "/c": (None, None),
        "/d": ("/srv/d", "d"),
    }


def test_media_mount_default_path(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API + "    volumes:\n      - ./media:/media\n"
                                                 "      - ./other:/other\n"})
    assert inst.media_path == "/media"
    assert [m.target for _, m in media_mounts(inst)] == ["/media"]


def test_media_mount_follows_container_media_path(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    environment:\n      CONTAINER_MEDIA_PATH: ${MEDIA_IN:-/library/}\n"
        "    volumes:\n      - ./media:/media\n"
        "      - type: bind\n        source: /srv/films\n        target: /library\n",
    })
    assert inst.media_path == "/library"
    assert [(m.target, m.host_path) for _, m in media_mounts(inst)] == [("/library", "/srv/films")]


def test_media_path_from_env_file(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    env_file: .env\n    volumes:\n      - /data/tv:/tv\n",
        ".env": "CONTAINER_MEDIA_PATH=/tv\n",
    })
    assert inst.media_path == "/tv"
    assert [m.host_path for _, m in media_mounts(inst)] == ["/data/tv"]


def test_named_volume_is_not_a_media_bind_mount(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": API + "    volumes:\n      - media:/media\nvolumes:\n  media:\n"})
    assert media_mounts(inst) == []


# --------------------------------------------------------------------------- positions, CRLF, BOM


POSITIONS = """\
# DesterLib
services:

  postgres:
    image: postgres:16
    environment:
      POSTGRES_PASSWORD: ${PG_PASSWORD}
      POSTGRES_USER: dester
    ports:
      - "5432:5432"

  api:
    image: desterlib/api:1.0.0
    env_file:
      - api.env
    environment:
      - NODE_ENV=production
      - DATABASE_URL=postgresql://dester:${PG_PASSWORD}@postgres:5432/dester
      - FROM_SHELL
    ports:
      - target: 3001
        published: 3001
    volumes:
      - type: bind
        source: ./media
        target: /media
        read_only: true
"""

API_ENV = """\
# api settings
JWT_SECRET="multi
line"

RATE_LIMIT=100
"""


def _check_positions(inst: Installation, compose: str, env_text: str) -> None:
    lines = compose.split("\n")
    env_lines = env_text.split("\n")
    seen = 0
    for s in inst.services:
        assert s.where.line == line_of(compose, f"  {s.name}:")
        for port in s.ports:
            assert port.where.line is not None
            assert lines[port.where.line - 1] == port.where.text
            seen += 1
        for mount in s.mounts:
            assert mount.where.line is not None
            assert lines[mount.where.line - 1] == mount.where.text
            seen += 1
        for var in s.environment.values():
            assert var.where.line is not None
            if var.origin == "compose":
                assert lines[var.where.line - 1] == var.where.text
                assert var.key in var.where.text
            else:
                assert env_lines[var.where.line - 1] == var.where.text.split("\n")[0]
                assert var.where.text.startswith(var.key + "=")
            seen += 1
    assert seen == 10
    pg = svc(inst, "postgres")
    assert pg.environment["POSTGRES_PASSWORD"].where.line == 7
    assert pg.ports[0].where.line == 10
    api = svc(inst, "api")
    assert api.environment["DATABASE_URL"].where.line == 18
    assert api.environment["FROM_SHELL"].where.line == 19
    assert api.ports[0].where.line == 21
    assert api.mounts[0].where.line == 24
    assert api.environment["JWT_SECRET"].where.line == 2
    assert api.environment["RATE_LIMIT"].where.line == 5


def test_positions_are_real_lines(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": POSITIONS, "api.env": API_ENV, ".env": "PG_PASSWORD=pw\n"})
    _check_positions(inst, POSITIONS, API_ENV)


def _crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode()


def _summary(inst: Installation) -> list:
    """Lines and values; the text of an env entry is as written, so compare it LF-normalised."""
    def lf(text: str) -> str:
        return text.replace("\r\n", "\n")

    out: list[tuple[object, ...]] = []
    for s in inst.services:

        out.append((s.name, s.where.line, s.where.text))
        out += [(p.host_ip, p.published, p.target, p.where.line, p.where.text) for p in s.ports]
        out += [(m.kind, m.source, m.target, m.read_only, m.where.line, m.where.text) for m in s.mounts]
        out += [(v.key, v.value, v.raw, v.where.file, v.where.line, lf(v.where.text)) for v in s.environment.values()]
    for ef in inst.env_files:
        out += [(e.key, e.value, e.raw, e.line, lf(e.text), e.quote) for e in ef.entries]
    return out


def test_crlf_files_give_the_same_lines_and_values(tmp_path):
    lf = disc(tmp_path / "lf", {"docker-compose.yml": POSITIONS, "api.env": API_ENV, ".env": "PG_PASSWORD=pw\n"})
    crlf = disc(tmp_path / "crlf", {"docker-compose.yml": _crlf(POSITIONS), "api.env": _crlf(API_ENV),
                                     ".env": _crlf("PG_PASSWORD=pw\n")})
    assert crlf.compose_files[0].newline == "\r\n"
    assert _summary(crlf) == _summary(lf)
    assert svc(crlf, "api").environment["JWT_SECRET"].value == "multi\nline"
    # the entry's text is the file's own bytes, so an in-place edit can find it
    entry = next(e for ef in crlf.env_files for e in ef.entries if e.key == "JWT_SECRET")
    assert entry.text == 'JWT_SECRET="multi\r\nline"'
    assert any(entry.text in ef.source.text for ef in crlf.env_files if ef.source)


def test_bom_at_the_start_is_accepted(tmp_path):
    bom = b"\xef\xbb\xbf"
    inst = disc(tmp_path, {"docker-compose.yml": bom + POSITIONS.encode(), "api.env": bom + API_ENV.encode(),
                           ".env": bom + b"PG_PASSWORD=pw\n"})
    assert inst.compose_files[0].bom
    assert inst.project_env == {"PG_PASSWORD": "pw"}
    _check_positions(inst, POSITIONS, API_ENV)


def test_bom_and_crlf_together(tmp_path):
    plain = disc(tmp_path / "a", {"docker-compose.yml": POSITIONS, "api.env": API_ENV, ".env": "PG_PASSWORD=pw\n"})
    both = disc(tmp_path / "b", {"docker-compose.yml": b"\xef\xbb\xbf" + _crlf(POSITIONS),
                                 "api.env": b"\xef\xbb\xbf" + _crlf(API_ENV), ".env": _crlf("PG_PASSWORD=pw\n")})
    assert _summary(both) == _summary(plain)


def test_bom_in_the_middle_is_refused(tmp_path):
    with pytest.raises(InputError, match="byte order mark"):
        disc(tmp_path, {"docker-compose.yml": API + "# \ufeff\n"})


# --------------------------------------------------------------------------- layouts


def test_layout_cli(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    environment:\n      DATABASE_URL: postgresql://u:p@postgres/x\n",
        ".env": "DATABASE_URL=postgresql://u:p@postgres/x\n",
    })
    assert inst.layout == LAYOUT_CLI


def test_layout_cli_by_image_when_not_named_api(tmp_path):
    inst = disc(tmp_path, {"docker-compose.yml": "services:\n  server:\n    image: desterlib/api:1\n"})
    assert inst.layout == LAYOUT_CLI


def test_layout_setup_script(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    env_file: apps/api/.env\n",
        "apps/api/.env": "DATABASE_URL=postgresql://postgres:postgres@postgres:5432/desterlib\n",
    })
    assert inst.layout == LAYOUT_SETUP_SCRIPT
    assert [e.display for e in inst.env_files] == ["apps/api/.env"]


def test_layout_setup_script_by_repository_tree(tmp_path):
    (tmp_path / "install" / "apps" / "api").mkdir(parents=True)
    inst = disc(tmp_path, {"docker-compose.yml": API})
    assert inst.layout == LAYOUT_SETUP_SCRIPT


def test_layout_newer(tmp_path):
    inst = disc(tmp_path, {"docker/docker-compose.yml": API, ".env": "DATABASE_URL=file:./db/main.db\n"})
    assert inst.layout == LAYOUT_NEWER


@pytest.mark.parametrize("files", [
    {"docker-compose.yml": "services:\n  db:\n    image: postgres:16\n"},
    {"stack.yml": API, ".env": "COMPOSE_FILE=stack.yml\n"},
])
def test_layout_custom(tmp_path, files):
    assert disc(tmp_path, files).layout == LAYOUT_CUSTOM


def test_secrets_are_collected_for_masking(tmp_path):
    inst = disc(tmp_path, {
        "docker-compose.yml": API + "    environment:\n      DATABASE_URL: postgresql://u:Url-Pass-123@postgres/x\n"
        "    env_file: api.env\n",
        "api.env": "JWT_SECRET=jwt-secret-value-42\n",
    })
    assert {"Url-Pass-123", "jwt-secret-value-42"} <= inst.secrets
