"""Format-preserving edits: a fix's diff shows only the lines it changes.

Compose edits are text patches placed by node positions; .env edits by line.
These tests plan fixes on small installations written here and compare the
planned text with the original line by line: the exact lines a representative
fix changes, and for every fix that nothing else moved (comments, key order,
quoting, indentation, unrelated anchors, CRLF line endings, a BOM). Targets
inside an anchor, alias or merge key, or built by ``${VAR}`` interpolation, are
refused with the reason and what to do by hand, in the plan and in the CLI's
preview. A property test plans every fix on random compose files built from a
small grammar.
"""

from __future__ import annotations

import difflib
import itertools
import os
import re
import tempfile
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from checks.audit.findings import FAIL
from checks.audit.run import run_audit
from checks.change import preview
from checks.change.plan import FileEdit
from checks.core.textio import decode_source
from checks.core.yamlpos import parse_yaml
from checks.fix import envedit
from checks.fix.edit import EditRefused
from checks.fix.planner import plan_fixes
from checks.fix.registry import FIXERS
from checks.install.discovery import discover
from checks.install.envfile import load_env_file

from .conftest import FIXED_NOW, run_cli

STRONG = "Qm7Vx2Lp9Zr4Tn8Wc3Hy6Jd1Fs5Kb0GeAa"  # 34 URL-safe characters: passes SEC-001
FIXABLE = [f.id for f in FIXERS]


TAIL = "x7Lm2Pv9Rt4Ny8Bc3Hd6Jf1Gs5Ka0UeWq3Zr8Tn"


def new_secrets():
    """Deterministic generated secrets: Gen01..., Gen02..., each 45 URL-safe characters."""
    counter = itertools.count(1)
    return lambda nbytes: f"Gen{next(counter):02d}{TAIL}"


def make(tmp: Path, compose: str | bytes, env: str | bytes | None = None, name: str = "docker-compose.yml",
         files: dict[str, str | bytes] | None = None, env_mode: int = 0o600) -> tuple[Path, Path]:
    """An install directory with ``compose`` (and ``env`` as .env), and an empty host root."""
    root = tmp / "install"
    host = tmp / "host"
    root.mkdir()
    host.mkdir()
    os.chmod(root, 0o755)

    def put(rel: str, data: str | bytes, mode: int) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(path, mode)

    put(name, compose, 0o644)
    if env is not None:
        put(".env", env, env_mode)
    for rel, data in (files or {}).items():
        put(rel, data, 0o644)
    return root, host


def plan(root: Path, host: Path, only: set[str] | None = None, files: list[str] | None = None):
    return plan_fixes(str(root), "local", only=only, files=files, host_root=str(host), now=FIXED_NOW,
                      new_secret=new_secrets())


def after(p, root: Path, rel: str) -> bytes:
    path = os.path.abspath(root / rel)
    for c in p.changes:
        if isinstance(c, FileEdit) and c.path == path:
            return c.after
    raise AssertionError(f"the plan does not edit {rel}")


def diff(before: str, after_: str) -> tuple[list[str], list[str]]:
    """(removed, added) lines, with their line endings."""
    a = before.splitlines(keepends=True)
    b = after_.splitlines(keepends=True)
    removed, added = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


def fixed(root: Path, host: Path, only: set[str], rel: str = "docker-compose.yml") -> tuple[str, str]:
    p, _ = plan(root, host, only)
    assert not p.refusals, [r.reason for r in p.refusals]
    before = (root / rel).read_bytes().decode("utf-8")
    return before, after(p, root, rel).decode("utf-8")


def status(root: Path, host: Path, cid: str, overlay_plan=None) -> str:
    return run_audit(discover(str(root), host_root=str(host), now=FIXED_NOW), "local", only={cid}).findings[0].status


# -- NET-001: rebind to loopback ---------------------------------------------------------------------

DB = """\
services:
  db:
    image: postgres:16.4   # pinned
    environment:
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD}}
    ports:
{ports}
"""


@pytest.mark.parametrize("item,want", [
    ("      - '5432:5432'   # psql from this host", "      - '127.0.0.1:5432:5432'   # psql from this host"),
    ('      - "5432:5432"  # psql', '      - "127.0.0.1:5432:5432"  # psql'),
    ("      - 5432:5432 # plain", "      - 127.0.0.1:5432:5432 # plain"),
    ('      - "0.0.0.0:5432:5432"', '      - "127.0.0.1:5432:5432"'),
    ('      - "[::]:5432:5432/tcp"', '      - "127.0.0.1:5432:5432/tcp"'),
    ('      - "5432"', '      - "127.0.0.1::5432"'),
])
def test_net001_rebind_keeps_quoting_and_the_trailing_comment(tmp_path, item, want):
    root, host = make(tmp_path, DB.format(ports=item), f"POSTGRES_PASSWORD={STRONG}\n")
    before, now = fixed(root, host, {"NET-001"})
    assert diff(before, now) == ([item + "\n"], [want + "\n"])


def test_net001_long_syntax_gets_host_ip_at_its_keys_indentation(tmp_path):
    ports = "      - target: 5432\n        published: 5432   # psql\n        protocol: tcp\n"
    root, host = make(tmp_path, DB.format(ports=ports.rstrip("\n")) + "volumes:\n  data:\n",
                      f"POSTGRES_PASSWORD={STRONG}\n")
    before, now = fixed(root, host, {"NET-001"})
    removed, added = diff(before, now)
    assert removed == [] and added == ["        host_ip: 127.0.0.1\n"]
    assert now.index("host_ip") > now.index("protocol: tcp")


def test_net001_long_syntax_replaces_a_wide_host_ip(tmp_path):
    ports = "      - target: 5432\n        host_ip: '0.0.0.0'\n        published: 5432"
    root, host = make(tmp_path, DB.format(ports=ports), f"POSTGRES_PASSWORD={STRONG}\n")
    before, now = fixed(root, host, {"NET-001"})
    assert diff(before, now) == (["        host_ip: '0.0.0.0'\n"], ["        host_ip: '127.0.0.1'\n"])


def test_net001_in_flow_sequences_and_flow_mappings(tmp_path):
    compose = DB.format(ports='      - {target: 5432, published: 5432}').replace(
        "services:\n", "services:\n  cache:\n    image: redis:7.2\n"
                       "    command: [\"redis-server\", \"--requirepass\", \"${REDIS_PASSWORD}\"]\n"
                       "    ports: [\"6379:6379\", '127.0.0.1:9121:9121']  # exporter\n")
    root, host = make(tmp_path, compose, f"POSTGRES_PASSWORD={STRONG}\nREDIS_PASSWORD={STRONG}\n")
    before, now = fixed(root, host, {"NET-001"})
    removed, added = diff(before, now)
    assert removed == ["    ports: [\"6379:6379\", '127.0.0.1:9121:9121']  # exporter\n",
                       "      - {target: 5432, published: 5432}\n"]
    assert added == ["    ports: [\"127.0.0.1:6379:6379\", '127.0.0.1:9121:9121']  # exporter\n",
                     "      - {target: 5432, published: 5432, host_ip: 127.0.0.1}\n"]


# -- FS-004: the media mount read-only ---------------------------------------------------------------

API = """\
services:
  api:
    image: desterlib/api:0.2.0
    environment:
      PORT: 3001
    volumes:
      - ./data:/app/data
{media}
"""


@pytest.mark.parametrize("item,want", [
    ("      - /srv/media:/media", "      - /srv/media:/media:ro"),
    ('      - "/srv/media:/media"   # the library', '      - "/srv/media:/media:ro"   # the library'),
    ("      - '/srv/media:/media:rw'", "      - '/srv/media:/media:ro'"),
    ("      - /srv/media:/media:z", "      - /srv/media:/media:ro,z"),
    ("      - /srv/media:/media:rw,z", "      - /srv/media:/media:ro,z"),
    ("      - type: bind\n        source: /srv/media\n        target: /media",
     "      - type: bind\n        source: /srv/media\n        target: /media\n        read_only: true"),
    ("      - type: bind\n        source: /srv/media\n        target: /media\n        read_only: false  # for now",
     "      - type: bind\n        source: /srv/media\n        target: /media\n        read_only: true  # for now"),
])
def test_fs004_adds_ro(tmp_path, item, want):
    root, host = make(tmp_path, API.format(media=item))
    before, now = fixed(root, host, {"FS-004"})
    assert before.replace(item, want) == now
    removed, added = diff(before, now)
    assert len(removed) <= 1 and len(added) == 1


def test_fs004_with_the_host_side_from_a_variable(tmp_path):
    item = "      - ${HOST_MEDIA_PATH:-/srv/media}:/media  # from .env"
    root, host = make(tmp_path, API.format(media=item), "HOST_MEDIA_PATH=/srv/media\n")
    before, now = fixed(root, host, {"FS-004"})
    assert diff(before, now) == ([item + "\n"], ["      - ${HOST_MEDIA_PATH:-/srv/media}:/media:ro  # from .env\n"])


def test_fs004_refuses_a_container_side_from_a_variable(tmp_path):
    root, host = make(tmp_path, API.format(media="      - /srv/media:${MEDIA_TARGET}"), "MEDIA_TARGET=/media\n")
    p, _ = plan(root, host, {"FS-004"})
    assert p.changes == [] and [r.check for r in p.refusals] == ["FS-004"]
    assert "interpolation" in p.refusals[0].reason and p.refusals[0].manual


# -- DKR-003: security_opt with the file's indentation -------------------------------------------------

TWO = """\
services:
  api:
    image: desterlib/api:0.2.0
    ports:
      - "3001:3001"
    healthcheck:
      test: ["CMD", "true"]
  # the database
  db:
    image: postgres:16.4
"""

FOUR = """\
services:
    api:
        image: desterlib/api:0.2.0
        ports:
            - "3001:3001"
        healthcheck:
            test: ["CMD", "true"]
    # the database
    db:
        image: postgres:16.4
"""

FLUSH = """\
services:
  api:
    image: desterlib/api:0.2.0
    ports:
    - "3001:3001"
"""


@pytest.mark.parametrize("text,key,dash",
                         [(TWO, "    ", "      "), (FOUR, "        ", "            "), (FLUSH, "    ", "    ")],
                         ids=["2-spaces", "4-spaces", "dash-at-key-column"])
def test_dkr003_inserts_security_opt_with_the_files_indentation(tmp_path, text, key, dash):
    root, host = make(tmp_path, text)
    before, now = fixed(root, host, {"DKR-003"})
    removed, added = diff(before, now)
    services = 2 if "db:" in text else 1
    assert removed == []
    assert added == [f"{key}security_opt:\n", f'{dash}- "no-new-privileges:true"\n'] * services
    # Each lands at the end of its own service, before the comment that introduces the next one.
    if services == 2:
        assert now.index("no-new-privileges") < now.index("# the database") < now.rindex("no-new-privileges")
    node = parse_yaml(now, "x")
    for key in ("services", "api", "security_opt"):
        assert node is not None
        node = node.get(key)
    assert node is not None and node.plain() == ["no-new-privileges:true"]


def test_dkr003_after_a_block_scalar_whose_lines_look_like_comments(tmp_path):
    """A ``#`` line inside ``command: |`` is content: the new key goes after the whole scalar."""
    text = ("services:\n  api:\n    image: desterlib/api:0.2.0\n    command: |\n      node server.js\n"
            "      # not a comment: part of the script\n\n  db:\n    image: postgres:16.4\n")
    root, host = make(tmp_path, text)
    before, now = fixed(root, host, {"DKR-003"})
    doc = yaml.safe_load(now)
    assert doc["services"]["api"]["command"] == yaml.safe_load(before)["services"]["api"]["command"]
    assert doc["services"]["api"]["security_opt"] == ["no-new-privileges:true"]


def test_dkr003_appends_to_an_existing_list_or_fixes_a_false_item(tmp_path):
    text = ('services:\n  api:\n    image: desterlib/api:0.2.0\n    security_opt:\n      - "label:disable"\n'
            "  db:\n    image: postgres:16.4\n    security_opt: ['no-new-privileges:false']\n")
    root, host = make(tmp_path, text)
    before, now = fixed(root, host, {"DKR-003"})
    assert diff(before, now) == (["    security_opt: ['no-new-privileges:false']\n"],
                                 ['      - "no-new-privileges:true"\n',
                                  "    security_opt: ['no-new-privileges:true']\n"])


# -- SEC-003: a literal secret becomes ${VAR} and moves to .env -----------------------------------------

SEC = """\
# the stack
services:
  db:
    image: postgres:16.4
    environment:
      POSTGRES_USER: desterlib
      POSTGRES_PASSWORD: "{pw}"   # keep in sync with the API
    ports:
      - "127.0.0.1:5432:5432"
  api:
    image: desterlib/api:0.2.0
    environment:
      - DATABASE_URL=postgresql://desterlib:{pw}@db:5432/desterlib
      - NODE_ENV=production
"""


@pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_sec003_replaces_the_value_by_a_reference_and_appends_to_env(tmp_path, nl):
    env = "# DesterLib settings\nexport NODE_ENV=production  # inline\nTZ='Europe/Berlin'\n"
    root, host = make(tmp_path, SEC.format(pw=STRONG).replace("\n", nl), env.replace("\n", nl))
    p, _ = plan(root, host, {"SEC-003"})
    assert not p.refusals
    compose_before = (root / "docker-compose.yml").read_bytes().decode()
    compose_after = after(p, root, "docker-compose.yml").decode()
    assert diff(compose_before, compose_after) == (
        [f'      POSTGRES_PASSWORD: "{STRONG}"   # keep in sync with the API{nl}',
         f"      - DATABASE_URL=postgresql://desterlib:{STRONG}@db:5432/desterlib{nl}"],
        ['      POSTGRES_PASSWORD: "${POSTGRES_PASSWORD}"   # keep in sync with the API' + nl,
         "      - DATABASE_URL=postgresql://desterlib:${POSTGRES_PASSWORD}@db:5432/desterlib" + nl])
    env_after = after(p, root, ".env").decode()
    moved = f"# moved out of the compose file by dester-harden (SEC-003){nl}POSTGRES_PASSWORD={STRONG}{nl}"
    assert env_after == env.replace("\n", nl) + moved


def test_sec003_creates_env_0600_when_there_is_none(tmp_path):
    root, host = make(tmp_path, SEC.format(pw=STRONG))
    p, _ = plan(root, host, {"SEC-003"})
    new = [c for c in p.changes if isinstance(c, FileEdit) and c.before is None]
    assert [(os.path.basename(c.path), c.mode) for c in new] == [(".env", 0o600)]


def test_sec003_writes_to_the_env_file_compose_reads(tmp_path):
    """docker/docker-compose.yml with the root .env as the project's: no docker/.env that would shadow it."""
    root, host = make(tmp_path, SEC.format(pw=STRONG), "HOST_MEDIA_PATH=/srv/media\n", name="docker/docker-compose.yml")
    p, _ = plan(root, host, {"SEC-003"})
    edited = sorted(os.path.relpath(c.path, root) for c in p.changes if isinstance(c, FileEdit))
    assert edited == [".env", "docker/docker-compose.yml"]


# -- a realistic file under the default plan: everything else stays byte for byte -----------------------

RICH = """\
# DesterLib, by hand
x-logging: &default-logging   # used by the proxy only
  driver: json-file
  options: {max-size: "5m", max-file: "2"}

services:
  proxy:
    image: caddy:2.8
    logging: *default-logging
    security_opt: [no-new-privileges:true]
    networks: [desterlib-net]
    ports:
      - "443:443"      # the world
  postgres:
    image: 'postgres:16.4'
    environment:
      POSTGRES_USER: desterlib
      POSTGRES_DB:   desterlib          # odd spacing is kept
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    ports:
      - '5432:5432'    # psql
    networks:
      - desterlib-net
  api:
    image: desterlib/api:0.2.0
    environment: {PORT: "3001", NODE_ENV: production}
    ports:
      - "3001:3001"
    volumes:
      - /srv/media:/media   # the library
    networks:
      - desterlib-net
    privileged: true
    cap_add: [SYS_ADMIN, CHOWN]

networks:
  desterlib-net:
    driver: bridge
"""


def test_default_plan_changes_only_its_lines(tmp_path):
    root, host = make(tmp_path, RICH, f"# secrets\nPOSTGRES_PASSWORD={STRONG}\n")
    p, planner = plan(root, host)
    assert not p.refusals, [r.reason for r in p.refusals]
    before = RICH
    now = after(p, root, "docker-compose.yml").decode()
    removed, added = diff(before, now)
    assert removed == [
        "      - '5432:5432'    # psql\n",
        "      - /srv/media:/media   # the library\n",
        "    privileged: true\n",
        "    cap_add: [SYS_ADMIN, CHOWN]\n",
    ]
    assert added == [
        "      - '127.0.0.1:5432:5432'    # psql\n",
        "    security_opt:\n", '      - "no-new-privileges:true"\n',
        "    logging:\n", "      driver: json-file\n", "      options:\n", '        max-size: "10m"\n',
        '        max-file: "3"\n',
        "      - /srv/media:/media:ro   # the library\n",
        "    cap_add: [CHOWN]\n",
        "    security_opt:\n", '      - "no-new-privileges:true"\n',
        "    logging:\n", "      driver: json-file\n", "      options:\n", '        max-size: "10m"\n',
        '        max-file: "3"\n',
    ]
    # Comments, the unrelated anchor and its alias, key order and quoting: untouched.
    for line in before.splitlines():
        if line.lstrip().startswith("#") or "&default-logging" in line or "*default-logging" in line:
            assert line in now.splitlines()
    assert list(yaml.safe_load(now)["services"]) == ["proxy", "postgres", "api"]
    assert list(yaml.safe_load(now)["services"]["postgres"]) == ["image", "environment", "ports", "networks",
                                                                 "security_opt", "logging"]


def test_crlf_and_bom_survive_every_edit(tmp_path):
    compose = b"\xef\xbb\xbf" + RICH.replace("\n", "\r\n").encode()
    env = (b"\xef\xbb\xbf# secrets\r\nexport POSTGRES_PASSWORD='postgres'  # weak\r\n"
           b"POSTGRES_HOST_AUTH_METHOD=trust\r\nTZ=UTC\r\n")
    root, host = make(tmp_path, compose, env)
    p, _ = plan(root, host)
    new_compose = after(p, root, "docker-compose.yml")
    new_env = after(p, root, ".env")
    for data in (new_compose, new_env):
        assert data.startswith(b"\xef\xbb\xbf") and b"\xef\xbb\xbf" not in data[3:]
        assert data.count(b"\n") == data.count(b"\r\n") > 0
    assert new_env[3:].decode().splitlines() == ["# secrets", f"export POSTGRES_PASSWORD='Gen01{TAIL}'  # weak",
                                                 "TZ=UTC"]


# -- .env edits -----------------------------------------------------------------------------------------

ENV_DB = """\
services:
  db:
    image: postgres:16.4
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
"""
NEW = "Gen01" + TAIL


@pytest.mark.parametrize("line,want", [
    ("POSTGRES_PASSWORD=postgres", f"POSTGRES_PASSWORD={NEW}"),
    ("POSTGRES_PASSWORD='postgres'", f"POSTGRES_PASSWORD='{NEW}'"),
    ('POSTGRES_PASSWORD="postgres"', f'POSTGRES_PASSWORD="{NEW}"'),
    ("export POSTGRES_PASSWORD=postgres", f"export POSTGRES_PASSWORD={NEW}"),
    ("POSTGRES_PASSWORD=postgres   # change me", f"POSTGRES_PASSWORD={NEW}   # change me"),
    ("  export POSTGRES_PASSWORD = 'postgres' # old", f"  export POSTGRES_PASSWORD = '{NEW}' # old"),
    ('POSTGRES_PASSWORD="post#gres" # quoted hash', f'POSTGRES_PASSWORD="{NEW}" # quoted hash'),
])
@pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_env_value_edit_keeps_order_comments_quoting_export_and_line_endings(tmp_path, line, want, nl):
    env = nl.join(["# DesterLib", "TZ=UTC", line, "", "# more", "NODE_ENV='production'"]) + nl
    root, host = make(tmp_path, ENV_DB, env)
    p, _ = plan(root, host, {"SEC-001"})
    assert not p.refusals
    now = after(p, root, ".env").decode()
    assert now == env.replace(line, want)
    assert diff(env, now) == ([line + nl], [want + nl])


@pytest.mark.parametrize("nl", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_env_entry_removal_keeps_the_rest(tmp_path, nl):
    env = nl.join(["# db", f"POSTGRES_PASSWORD={STRONG}", "POSTGRES_HOST_AUTH_METHOD=trust  # dev only", "TZ=UTC"]) + nl
    compose = ENV_DB + "    env_file: .env\n"
    root, host = make(tmp_path, compose, env)
    p, _ = plan(root, host, {"SEC-006"})
    assert after(p, root, ".env").decode() == env.replace("POSTGRES_HOST_AUTH_METHOD=trust  # dev only" + nl, "")


def _entries(text: str):
    src = decode_source("/x/.env", ".env", "env file", text.encode(), os.stat("/"))
    return {e.key: e for e in load_env_file(src, "project").entries}


@pytest.mark.parametrize("quote,want", [("", "A=new-value"), ("'", "A='new-value'"), ('"', 'A="new-value"')])
def test_envedit_set_value_by_quote_style(quote, want):
    text = f"# c\nA={quote}old{quote}  # note\nB=2\n"
    e = _entries(text)["A"]
    assert envedit.set_value(text, e, "new-value") == f"# c\n{want}  # note\nB=2\n"


def test_envedit_quotes_what_must_be_quoted():
    text = "A=old\n"
    e = _entries(text)["A"]
    assert envedit.set_value(text, e, "p$ss w#rd") == "A='p$ss w#rd'\n"  # single quotes: no interpolation, no comment
    with pytest.raises(EditRefused):
        envedit.set_value(text, e, "it's $x")


def test_envedit_append_keeps_crlf_and_adds_a_missing_final_newline():
    assert envedit.append("A=1\r\nB=2", [("C", "3")], "why") == "A=1\r\nB=2\r\n# why\r\nC=3\r\n"
    assert envedit.append("", [("C", "3")]) == "C=3\n"


# -- refusals: anchors, aliases, merge keys and ${VAR} ------------------------------------------------------

MERGED = """\
x-common: &common
  image: postgres:16.4
  ports:
    - "5432:5432"
services:
  db:
    <<: *common
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
"""

ALIASED = """\
x-ports: &dbports
  - "5432:5432"
services:
  db:
    image: postgres:16.4
    ports: *dbports
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
"""

INTERPOLATED = """\
services:
  db:
    image: postgres:16.4
    ports:
      - "${BIND:-0.0.0.0}:5432:5432"
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
"""


@pytest.mark.parametrize("text,phrase", [(MERGED, "anchor, alias or merge key"),
                                         (ALIASED, "anchor, alias or merge key"),
                                         (INTERPOLATED, "interpolation")], ids=["merge-key", "alias", "interpolation"])
def test_refused_targets_have_a_reason_and_manual_steps(tmp_path, text, phrase):
    root, host = make(tmp_path, text, f"POSTGRES_PASSWORD={STRONG}\n")
    p, _ = plan(root, host, {"NET-001"})
    assert p.changes == []
    assert [r.check for r in p.refusals] == ["NET-001"]
    r = p.refusals[0]
    assert phrase in r.reason and "docker-compose.yml:" in r.reason
    assert "127.0.0.1" in r.manual
    if text is INTERPOLATED:
        assert "BIND=127.0.0.1" in r.reason
    res = run_cli("fix", "--dir", str(root), "--host-root", str(host), "--only", "NET-001", "--dry-run")
    assert res.code in (0, 1), res.err
    assert "Not changed (do these by hand):" in res.out
    assert f"NET-001: {r.reason}"[:60] in " ".join(res.out.split())
    assert "By hand:" in res.out
    assert STRONG not in res.out + res.err
    assert (root / "docker-compose.yml").read_text() == text  # a dry run writes nothing


def test_other_fixes_go_on_beside_a_refused_anchor(tmp_path):
    """The anchored port is refused; the same plan still edits the service's own keys, anchor untouched."""
    root, host = make(tmp_path, MERGED, f"POSTGRES_PASSWORD={STRONG}\n")
    p, _ = plan(root, host)
    assert [r.check for r in p.refusals] == ["NET-001"]
    now = after(p, root, "docker-compose.yml").decode()
    assert now.startswith(MERGED.split("services:")[0])  # the anchor's lines as they were
    assert "security_opt" in yaml.safe_load(now)["services"]["db"]


def test_an_anchor_nobody_aliases_is_kept_through_an_edit(tmp_path):
    """An anchor without aliases shares nothing: the edit goes ahead and keeps ``&name``."""
    text = ('services:\n  db: &db\n    image: postgres:16.4\n    ports: &dbports ["5432:5432"]\n'
            "    environment:\n      POSTGRES_PASSWORD: &pw ${POSTGRES_PASSWORD}\n")
    root, host = make(tmp_path, text, f"POSTGRES_PASSWORD={STRONG}\n")
    p, _ = plan(root, host)
    assert not p.refusals, [r.reason for r in p.refusals]
    now = after(p, root, "docker-compose.yml").decode()
    assert '    ports: &dbports ["127.0.0.1:5432:5432"]\n' in now and "  db: &db\n" in now
    assert yaml.safe_load(now)["services"]["db"]["security_opt"] == ["no-new-privileges:true"]


# -- several compose files: each edit lands in its own file ----------------------------------------------------

BASE = """\
services:
  db:
    image: postgres:16.4
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    ports:
      - "5432:5432"
  api:
    image: desterlib/api:0.2.0
    ports:
      - "3001:3001"
"""

OVERRIDE = """\
services:
  db:
    ports:
      - "5433:5432"
  api:
    environment:
      NODE_ENV: production
    command: ["node", "dist/index.js"]
    privileged: true
"""


def test_edits_with_an_override_file_are_placed_in_the_right_file(tmp_path):
    root, host = make(tmp_path, BASE, f"POSTGRES_PASSWORD={STRONG}\n", files={"docker-compose.override.yml": OVERRIDE})
    p, _ = plan(root, host)
    assert not p.refusals, [r.reason for r in p.refusals]
    base = after(p, root, "docker-compose.yml").decode()
    over = after(p, root, "docker-compose.override.yml").decode()
    assert diff(OVERRIDE, over) == (['      - "5433:5432"\n', "    privileged: true\n"],
                                    ['      - "127.0.0.1:5433:5432"\n'])
    removed, _ = diff(BASE, base)
    assert removed == ['      - "5432:5432"\n']
    assert yaml.safe_load(base)["services"]["api"]["security_opt"] == ["no-new-privileges:true"]
    p2, _ = plan(root, host, {"NET-002"})
    assert not p2.refusals
    assert yaml.safe_load(after(p2, root, "docker-compose.override.yml"))["services"]["db"] == {}  # not null
    assert "ports" not in yaml.safe_load(after(p2, root, "docker-compose.yml"))["services"]["db"]


# -- smaller cases the real files do not have ---------------------------------------------------------------


def test_net005_replaces_network_mode_bridge(tmp_path):
    text = ("services:\n  api:\n    image: desterlib/api:0.2.0\n    network_mode: bridge   # the default\n"
            "    restart: always\n")
    root, host = make(tmp_path, text)
    before, now = fixed(root, host, {"NET-005"})
    doc = yaml.safe_load(now)
    assert "network_mode" not in doc["services"]["api"] and doc["services"]["api"]["networks"] == ["desterlib-net"]
    assert doc["networks"] == {"desterlib-net": {"driver": "bridge"}}
    assert diff(before, now)[0] == ["    network_mode: bridge   # the default\n"]


@pytest.mark.parametrize("command,want", [
    ("    command: null\n", "    command: redis-server --requirepass ${REDIS_PASSWORD}\n"),
    ("    command:\n", "    command: redis-server --requirepass ${REDIS_PASSWORD}\n"),
    ("    command: redis-server --appendonly yes  # aof\n",
     "    command: redis-server --appendonly yes --requirepass ${REDIS_PASSWORD}  # aof\n"),
    ('    command: ["redis-server", "--appendonly", "yes"]\n',
     '    command: ["redis-server", "--appendonly", "yes", "--requirepass", "${REDIS_PASSWORD}"]\n'),
], ids=["null", "empty", "string", "flow-list"])
def test_sec005_adds_requirepass_to_any_command_form(tmp_path, command, want):
    text = "services:\n  redis:\n    image: redis:7.2\n" + command + '    ports:\n      - "127.0.0.1:6379:6379"\n'
    root, host = make(tmp_path, text, f"REDIS_PASSWORD={STRONG}\n")
    before, now = fixed(root, host, {"SEC-005"})
    removed, added = diff(before, now)
    assert removed == [command] and added[0] == want
    assert added[1:] == ["    environment:\n", "      REDISCLI_AUTH: ${REDIS_PASSWORD}\n"]


def test_removing_the_last_entry_of_a_list_takes_the_key_and_keeps_comments(tmp_path):
    text = ("services:\n  api:\n    image: desterlib/api:0.2.0\n    volumes:\n      # the socket, for the updater\n"
            "      - /var/run/docker.sock:/var/run/docker.sock:ro\n    # log rotation below\n    restart: always\n")
    root, host = make(tmp_path, text)
    before, now = fixed(root, host, {"DKR-001"})
    assert diff(before, now) == (["    volumes:\n", "      # the socket, for the updater\n",
                                  "      - /var/run/docker.sock:/var/run/docker.sock:ro\n"], [])


def test_preview_shows_only_the_changed_lines(tmp_path):
    """No trailing newline at the end of the file: the last line is not shown as removed and re-added."""
    text = 'services:\n  db:\n    image: postgres:16.4\n    ports:\n      - "5432:5432"\nvolumes:\n  data:'
    root, host = make(tmp_path, text, f"POSTGRES_PASSWORD={STRONG}\n")
    p, _ = plan(root, host, {"NET-001", "NET-005"})
    shown = preview.render(p, str(root))
    changed = [line for line in shown.splitlines()
               if line[:1] and line[0] in "+-" and not line.startswith(("+++", "---"))]
    assert changed == ['-      - "5432:5432"', '+      - "127.0.0.1:5432:5432"', "+    networks:",
                       "+      - desterlib-net",
                       "+networks:", "+  desterlib-net:", "+    driver: bridge"]
    assert after(p, root, "docker-compose.yml").decode().endswith("driver: bridge")  # still no final newline


def test_preview_masks_old_and_new_secrets(tmp_path):
    root, host = make(tmp_path, SEC.format(pw="postgres"))
    p, _ = plan(root, host)
    shown = preview.render(p, str(root), mask="****")
    assert "Gen01" + TAIL in after(p, root, ".env").decode()
    assert TAIL not in shown and "postgres:postgres" not in shown and ": \"postgres\"" not in shown


# -- property: random compose files from a small grammar --------------------------------------------------------

PW_PLACES = re.compile(r"PASSWORD|_URL|requirepass|command", re.I)
REMOVES = {"NET-002", "DKR-001", "DKR-002", "DKR-006", "NET-004", "SEC-006"}


def _scalar(draw, text: str, quotable: bool = True) -> str:
    style = draw(st.sampled_from(["plain", "single", "double"])) if quotable else "plain"
    if style == "single":
        return f"'{text}'"
    if style == "double":
        return f'"{text}"'
    return text


@st.composite
def compose_docs(draw):
    ind = draw(st.sampled_from([2, 4]))
    dash = draw(st.sampled_from(["indented", "flush"]))
    i1, i2 = " " * ind, " " * (2 * ind)
    item = i2 + (" " * ind if dash == "indented" else "")
    comment = lambda: draw(st.sampled_from(["", "", "  # note"]))  # noqa: E731
    lines = [draw(st.sampled_from(["", "# DesterLib\n"])).rstrip("\n")] if draw(st.booleans()) else []
    anchors = draw(st.booleans())
    if anchors:  # unrelated anchors: a logging block some services alias, a merge of restart policy
        lines += ["x-logging: &default-logging", f"{i1}driver: json-file", f"{i1}options:", f'{i2}max-size: "10m"',
                  "x-common: &common", f"{i1}restart: unless-stopped"]
    lines.append("services:")
    kinds = draw(st.lists(st.sampled_from(["db", "redis", "api", "web"]), min_size=1, max_size=4, unique=True))
    for kind in kinds:
        lines.append(f"{i1}{kind}:{comment()}")
        image = {"db": "postgres:16.4", "redis": "redis:7.2", "api": "desterlib/api:0.2.0", "web": "nginx:1.27"}[kind]
        lines.append(f"{i2}image: {_scalar(draw, image)}{comment()}")
        if anchors and draw(st.booleans()):
            lines.append(f"{i2}<<: *common")
        if anchors and draw(st.booleans()):
            lines.append(f"{i2}logging: *default-logging")
        ports = {"db": ["5432:5432", "0.0.0.0:5432:5432", "127.0.0.1:5432:5432", "${DB_BIND:-0.0.0.0}:5432:5432"],
                 "redis": ["6379:6379", "127.0.0.1:6379:6379"], "api": ["3001:3001", "0.0.0.0:3001:3001"],
                 "web": ["8080:80"]}[kind]
        chosen = draw(st.lists(st.sampled_from(ports), max_size=2, unique=True))
        if chosen:
            if draw(st.booleans()):
                # In a flow sequence ${...} must be quoted: { and } are flow indicators.
                flow = ", ".join(_scalar(draw, p, quotable="$" not in p) if "$" not in p else repr(p) for p in chosen)
                lines.append(f"{i2}ports: [{flow}]{comment()}")
            else:
                lines.append(f"{i2}ports:")
                for p in chosen:
                    if draw(st.integers(0, 3)) == 0 and "$" not in p:
                        parts = p.split(":")
                        lines.append(f"{item}- target: {parts[-1]}")
                        lines.append(f"{item}  published: {_scalar(draw, parts[-2])}")
                        if len(parts) == 3:
                            lines.append(f"{item}  host_ip: {_scalar(draw, parts[0])}")
                    else:
                        lines.append(f"{item}- {_scalar(draw, p)}{comment()}")
        env: list[tuple[str, str]] = []
        if kind == "db":
            env.append(("POSTGRES_PASSWORD", draw(st.sampled_from([STRONG, "postgres", "${POSTGRES_PASSWORD}"]))))
            if draw(st.integers(0, 4)) == 0:
                env.append(("POSTGRES_HOST_AUTH_METHOD", "trust"))
        if kind == "api":
            passwords = [STRONG, "postgres", "${POSTGRES_PASSWORD}",
                         STRONG[:10] + "/" + STRONG[10:20] + "+" + STRONG[20:]]
            pw = draw(st.sampled_from(passwords))
            env += [("DATABASE_URL", f"postgresql://postgres:{pw}@db:5432/desterlib"), ("NODE_ENV", "production")]
            if draw(st.booleans()):
                env.append(("JWT_SECRET", draw(st.sampled_from(["change-me-in-production", STRONG]))))
        if draw(st.booleans()):
            env.append(("TZ", "UTC"))
        if env:
            form = draw(st.sampled_from(["map", "list", "flow"]))
            if form == "flow":
                pairs = ", ".join(f"{k}: {chr(34)}{v}{chr(34)}" for k, v in env)
                lines.append(f"{i2}environment: {{{pairs}}}{comment()}")
                env = []
            else:
                lines.append(f"{i2}environment:{comment()}")
            for k, v in env:
                if form == "map":
                    lines.append(f"{i2}{' ' * ind}{k}: {_scalar(draw, v)}")
                else:
                    lines.append(f"{item}- {_scalar(draw, k + '=' + v)}")
        if kind == "redis" and draw(st.booleans()):
            command = draw(st.sampled_from(["redis-server --appendonly yes", "[redis-server, --appendonly, yes]"]))
            lines.append(f"{i2}command: {command}")
        vols = []
        if kind == "api":
            vols.append(draw(st.sampled_from(["/srv/media:/media", "/srv/media:/media:ro", "/srv/media:/media:rw"])))
        if draw(st.integers(0, 5)) == 0:
            vols.append("/var/run/docker.sock:/var/run/docker.sock")
        if draw(st.booleans()):
            vols.append("./data:/data")
        if vols:
            lines.append(f"{i2}volumes:")
            lines += [f"{item}- {_scalar(draw, v)}{comment()}" for v in vols]
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"{i2}privileged: true")
        if kind == "web" and draw(st.integers(0, 3)) == 0:
            lines.append(f"{i2}{draw(st.sampled_from(['network_mode', 'pid', 'ipc']))}: host")
        if draw(st.integers(0, 4)) == 0:
            lines.append(f"{i2}cap_add: [{draw(st.sampled_from(['SYS_ADMIN', 'SYS_ADMIN, CHOWN', 'NET_ADMIN']))}]")
        if draw(st.integers(0, 3)) == 0:
            lines.append(f"{i2}security_opt:")
            lines.append(f"{item}- no-new-privileges:true")
        if draw(st.booleans()):
            lines.append(f"{i2}# trailing comment of {kind}")
        if draw(st.booleans()):
            lines.append("")
    if draw(st.booleans()):
        lines += ["volumes:", f"{i1}data:"]
    nl = draw(st.sampled_from(["\n", "\n", "\r\n"]))
    text = nl.join(lines) + (nl if draw(st.booleans()) else "")
    env_text = None
    if draw(st.booleans()):
        env_text = f"# project\nPOSTGRES_PASSWORD={draw(st.sampled_from([STRONG, 'postgres']))}\n"
    return text, env_text


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _allowed_lines(lines: list[str], cid: str, evidence: set[int]) -> set[int]:
    """0-based original lines the fix for ``cid`` may change or remove."""
    allowed = set()
    for e in evidence:
        i = e - 1
        if not 0 <= i < len(lines):
            continue
        allowed.add(i)
        # The whole entry the evidence points at (a long-syntax item spans lines).
        base = _indent(lines[i]) + (2 if lines[i].lstrip().startswith("- ") else 1)
        j = i + 1
        while j < len(lines) and (not lines[j].strip()
                                  or _indent(lines[j]) >= base and not lines[j].lstrip().startswith("- ")):
            allowed.add(j)
            j += 1
        if cid in REMOVES:
            # The key above it too, when it was the last entry.
            k = i - 1
            while k >= 0 and (_indent(lines[k]) >= _indent(lines[i]) or not lines[k].strip()):
                allowed.add(k)
                k -= 1
            if k >= 0:
                allowed.add(k)
    for i, line in enumerate(lines):
        if cid.startswith("SEC-") and PW_PLACES.search(line):
            allowed.add(i)
        if cid == "DKR-003" and "no-new-privileges" in line:
            allowed.add(i)
        if cid == "SEC-005" and "environment: {" in line:  # REDISCLI_AUTH joins a one-line mapping
            allowed.add(i)
    return allowed


@settings(max_examples=int(os.environ.get("EDIT_EXAMPLES", 60)), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=compose_docs())
def test_every_planned_fix_on_random_compose_files(doc):
    text, env_text = doc
    # docker compose itself validates the real installations (test_fixes_real.py); here
    # it would run hundreds of times, so the planner's re-parse and re-audit stand alone.
    no_compose = mock.patch("checks.fix.composecheck.compose_available", return_value=False)
    with tempfile.TemporaryDirectory() as tmp, no_compose:
        root, host = make(Path(tmp), text, env_text)
        report = run_audit(discover(str(root), host_root=str(host), now=FIXED_NOW), "local")
        failing = [f for f in report.findings if f.status == FAIL and f.id in FIXABLE]
        original = text.splitlines()
        for f in failing:
            event(f.id)
            p, planner = plan(root, host, {f.id})
            for r in p.refusals:
                assert r.reason and r.manual
                assert r.check == "NET-001" and "interpolation" in r.reason and "${" in text, r.reason
            refused = {r.check for r in p.refusals}
            final = run_audit(planner.inst(), "local", only={f.id}).findings[0]
            if f.id not in refused and f.id != "FS-005":
                assert final.status != FAIL, f.id
            compose_edit = [c for c in p.changes if isinstance(c, FileEdit) and c.path.endswith("docker-compose.yml")]
            if not compose_edit:
                continue
            new = compose_edit[0].after.decode("utf-8")
            assert yaml.safe_load(new) is not None  # parses (the planner re-discovered it too)
            if "\r\n" in text:
                assert new.count("\n") == new.count("\r\n"), f"{f.id}: CRLF lost"
            else:
                assert "\r" not in new
            evidence = {e.line for e in f.evidence if e.file == "docker-compose.yml" and e.line}
            allowed = _allowed_lines(original, f.id, evidence)
            ops = difflib.SequenceMatcher(None, original, new.splitlines(), autojunk=False).get_opcodes()
            touched = {i for tag, i1, i2, _, _ in ops if tag != "equal" for i in range(i1, i2)}
            assert touched <= allowed, (f.id, sorted(touched - allowed))
        # All default fixes together: each fixed, nothing else newly failing, every file still parses.
        p, planner = plan(root, host)
        refused = {r.check for r in p.refusals}
        assert refused <= {"NET-001"}, sorted(refused)
        final_status = {x.id: x.status for x in run_audit(planner.inst(), "local").findings}
        before = {x.id: x.status for x in report.findings}
        assert not [c for c in p.checks if c not in refused and c != "FS-005" and final_status[c] == FAIL]
        assert not [c for c, st_ in final_status.items() if st_ == FAIL and before[c] != FAIL]


def test_a_reference_written_into_a_flow_mapping_is_quoted(tmp_path):
    """``${VAR}`` is plain in a block but would break ``{...}``: quoted only there."""
    text = ("services:\n  db:\n    image: postgres:16.4\n"
            "    environment: {POSTGRES_USER: desterlib, POSTGRES_PASSWORD: "
            f"{STRONG}}}\n  api:\n    image: desterlib/api:0.2.0\n    environment:\n      JWT_SECRET: {STRONG}x\n")
    root, host = make(tmp_path, text)
    before, now = fixed(root, host, {"SEC-003"})
    assert diff(before, now) == (
        [f"    environment: {{POSTGRES_USER: desterlib, POSTGRES_PASSWORD: {STRONG}}}\n",
         f"      JWT_SECRET: {STRONG}x\n"],
        ['    environment: {POSTGRES_USER: desterlib, POSTGRES_PASSWORD: "${POSTGRES_PASSWORD}"}\n',
         "      JWT_SECRET: ${JWT_SECRET}\n"])


def test_fs004_in_a_flow_mapping_mount(tmp_path):
    item = "      - {type: bind, source: /srv/media, target: /media}"
    root, host = make(tmp_path, API.format(media=item))
    before, now = fixed(root, host, {"FS-004"})
    assert diff(before, now) == ([item + "\n"],
                                 ["      - {type: bind, source: /srv/media, target: /media, read_only: true}\n"])


@pytest.mark.parametrize("env,want", [
    ('{POSTGRES_HOST_AUTH_METHOD: trust, TZ: "UTC"}', '{TZ: "UTC"}'),
    ('{TZ: "UTC", POSTGRES_HOST_AUTH_METHOD: "trust"}', '{TZ: "UTC"}'),
    ('{ TZ: UTC, POSTGRES_HOST_AUTH_METHOD: trust, LANG: C }', '{ TZ: UTC, LANG: C }'),
])
def test_sec006_removes_an_entry_from_a_flow_mapping(tmp_path, env, want):
    text = f"services:\n  db:\n    image: postgres:16.4\n    environment: {env}  # one line\n"
    root, host = make(tmp_path, text)
    before, now = fixed(root, host, {"SEC-006"})
    assert diff(before, now) == ([f"    environment: {env}  # one line\n"], [f"    environment: {want}  # one line\n"])


def test_net004_brings_the_network_fix_it_makes_necessary(tmp_path):
    text = "services:\n  web:\n    image: nginx:1.27\n    network_mode: host\n    restart: always\n"
    root, host = make(tmp_path, text)
    p, planner = plan(root, host, {"NET-004"})
    assert p.checks == ["NET-004", "NET-005"] and not p.refusals
    assert any(n.startswith("NET-005: fixed too") for n in p.notes)
    doc = yaml.safe_load(after(p, root, "docker-compose.yml"))
    assert doc["services"]["web"]["networks"] == ["desterlib-net"] and "network_mode" not in doc["services"]["web"]


SLASHED = "Qm7Vx2Lp9Z/r4Tn8Wc3Hy+6Jd1Fs5Kb0GeAa"


def test_sec004_encodes_a_referenced_password_in_env(tmp_path):
    text = ("services:\n  api:\n    image: desterlib/api:0.2.0\n    environment:\n"
            "      DATABASE_URL: postgresql://desterlib:${DB_URL_PASSWORD}@db:5432/desterlib\n")
    env = f"# for the URL only\nDB_URL_PASSWORD={SLASHED}  # from openssl rand -base64\n"
    root, host = make(tmp_path, text, env)
    p, _ = plan(root, host, {"SEC-004"})
    assert not p.refusals and p.files() == [str(root / ".env")]
    assert after(p, root, ".env").decode() == env.replace(SLASHED, SLASHED.replace("/", "%2F").replace("+", "%2B"))


def test_sec004_refuses_to_encode_a_password_that_is_used_raw_too(tmp_path):
    text = ("services:\n  db:\n    image: postgres:16.4\n    environment:\n"
            "      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n"
            "  api:\n    image: desterlib/api:0.2.0\n    environment:\n"
            "      DATABASE_URL: postgresql://postgres:${POSTGRES_PASSWORD}@db:5432/desterlib\n")
    root, host = make(tmp_path, text, f"POSTGRES_PASSWORD={SLASHED}\n")
    p, _ = plan(root, host, {"SEC-004"})
    assert p.changes == [] and [r.check for r in p.refusals] == ["SEC-004"]
    assert "outside a URL" in p.refusals[0].reason and SLASHED not in p.refusals[0].reason


def test_sec004_leaves_a_second_url_in_the_value_alone(tmp_path):
    """SEC-004 judges the first URL with a password in the value (here from ${PRIMARY_DSN});
    the literal URL after it, which it did not flag, must stay byte for byte."""
    text = ("services:\n  api:\n    image: desterlib/api:0.2.0\n    environment:\n"
            '      DATABASE_URL: "${PRIMARY_DSN} postgresql://mirror:w+x@mirror:5432/desterlib"\n')
    env = "PRIMARY_DSN=postgresql://desterlib:p@ss@db:5432/desterlib\n"
    root, host = make(tmp_path, text, env)
    p, _ = plan(root, host, {"SEC-004"})
    assert p.changes == [] and [r.check for r in p.refusals] == ["SEC-004"], p.changes


def test_sec004_encodes_only_the_url_it_judged_in_an_env_file(tmp_path):
    text = "services:\n  api:\n    image: desterlib/api:0.2.0\n    env_file: [.env]\n"
    env = ("DATABASE_URL=postgresql://desterlib:p+ss@db:5432/desterlib\n"
           "MIRROR_DSN=postgresql://mirror:w+x@mirror:5432/desterlib\n"
           "BACKUP_URL='postgresql://backup:ok@db:5432/desterlib https://u:w+x@mirror'\n")
    root, host = make(tmp_path, text, env)
    p, _ = plan(root, host, {"SEC-004"})
    assert not p.refusals
    assert after(p, root, ".env").decode() == env.replace("p+ss", "p%2Bss")


def _compose_config_json(tmp: Path, text: bytes) -> dict | None:
    """What ``docker compose config`` makes of ``text`` (None where it is not installed; CI has it)."""
    import json
    import subprocess

    try:
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    if not ok:
        assert os.environ.get("CI") != "true", "docker compose is missing, and .ci/run installs it"
        return None
    d = tmp / "oracle"
    d.mkdir()
    (d / "docker-compose.yml").write_bytes(text)
    proc = subprocess.run(["docker", "compose", "-f", str(d / "docker-compose.yml"), "config", "--format", "json",
                           "--no-interpolate", "--no-env-resolution"], capture_output=True, text=True, cwd=str(d),
                          timeout=60, env={**os.environ, "COMPOSE_DISABLE_ENV_FILE": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("default",
                         ["  default:\n    external: true\n    name: proxy\n", "  default:\n    name: dester\n"],
                         ids=["external", "named"])
def test_net005_never_takes_a_service_off_a_customised_default_network(tmp_path, default):
    """The reverse-proxy layout: the default network is the proxy's. Every service stays on
    it (Docker Compose itself says so), and joins desterlib-net beside it."""
    text = ("services:\n  api:\n    image: desterlib/api:0.2.0\n  db:\n    image: postgres:16.4\n"
            "networks:\n" + default)
    root, host = make(tmp_path, text)
    p, _ = plan(root, host, {"NET-005"})
    assert not p.refusals and any("stays on it" in n for n in p.notes)
    new = after(p, root, "docker-compose.yml")
    doc = yaml.safe_load(new)
    for name in ("api", "db"):
        assert doc["services"][name]["networks"] == ["default", "desterlib-net"]
    assert doc["networks"]["default"] == yaml.safe_load("networks:\n" + default)["networks"]["default"]
    config = _compose_config_json(tmp_path, new)
    if config is not None:
        for name in ("api", "db"):
            assert set(config["services"][name]["networks"]) == {"default", "desterlib-net"}
        assert config["networks"]["default"]["name"] == ("proxy" if "external" in default else "dester")
        assert config["networks"]["default"].get("external", False) == ("external" in default)


def test_net005_moves_every_service_or_none(tmp_path):
    """A service the fix cannot edit (a one-line mapping) would stay on the default network,
    cut off from the others: then no service is moved."""
    text = ("services:\n  api:\n    image: desterlib/api:0.2.0\n  db:\n    image: postgres:16.4\n"
            '  cache: {image: "redis:7.2"}\n')
    root, host = make(tmp_path, text)
    p, _ = plan(root, host, {"NET-005"})
    assert p.changes == []
    assert [r.check for r in p.refusals] == ["NET-005", "NET-005"] and "no service was moved" in p.refusals[-1].reason


def test_net005_on_the_plain_default_network_moves_all_services(tmp_path):
    text = "services:\n  api:\n    image: desterlib/api:0.2.0\n  db:\n    image: postgres:16.4\nnetworks:\n  default:\n"
    root, host = make(tmp_path, text)
    p, _ = plan(root, host, {"NET-005"})
    assert not p.refusals
    new = after(p, root, "docker-compose.yml")
    doc = yaml.safe_load(new)
    assert doc["services"]["api"]["networks"] == doc["services"]["db"]["networks"] == ["desterlib-net"]
    config = _compose_config_json(tmp_path, new)
    if config is not None:
        networks = config["services"]["api"]["networks"]
        assert set(networks) == set(config["services"]["db"]["networks"]) == {"desterlib-net"}
