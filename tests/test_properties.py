"""Property-based tests: parsing never crashes, interpolation and port parsing
keep their invariants, and no output ever shows a secret.

Examples are generated (hypothesis, with its own seeded database off), written
into fresh temporary directories, and discovered hermetically.
"""

from __future__ import annotations

import ipaddress
import os
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from checks.audit.catalog import CATALOG, PROFILES
from checks.audit.report import render_json, render_sarif, render_text
from checks.audit.run import explain_score, run_audit
from checks.core.errors import InputError
from checks.core.interpolate import interpolate
from checks.install.discovery import discover
from checks.install.model import LAYOUT_NAMES, Installation
from checks.install.specs import parse_port_spec

from .conftest import FIXED_NOW

# The autouse hermetic_env fixture is function-scoped; it only sets environment
# variables, which every example may share.
SETTINGS = settings(max_examples=150, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def discover_files(files: dict[str, bytes]) -> tuple[Installation | None, InputError | None]:
    """Write ``files`` into a fresh directory and discover it (host root empty)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "install"
        host = Path(tmp) / "host"
        root.mkdir()
        host.mkdir()
        for rel, data in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.chmod(path, 0o600)
        try:
            inst = discover(str(root), host_root=str(host), now=FIXED_NOW)
        except InputError as exc:
            assert str(exc)  # renders as one line
            return None, exc
        # Audit and render while the files still exist (FS-* and OPS-* read the disk).
        for profile in PROFILES:
            report = run_audit(inst, profile)
            render_text(report)
            render_json(report)
            render_sarif(report)
        return inst, None


# --------------------------------------------------------------------------- (a) robustness

COMPOSE_KEYS = ["image", "ports", "volumes", "environment", "env_file", "command", "entrypoint", "networks",
                "network_mode", "privileged", "cap_add", "security_opt", "logging", "container_name", "pid",
                "user", "read_only", "depends_on", "expose"]
ENV_KEYS = ["PORT", "DATABASE_URL", "POSTGRES_PASSWORD", "POSTGRES_USER", "POSTGRES_DB", "REDIS_URL",
            "CONTAINER_MEDIA_PATH", "JWT_SECRET", "POSTGRES_HOST_AUTH_METHOD", "REDIS_PASSWORD", "COMPOSE_FILE"]
SCALAR_TEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["5432:5432", "127.0.0.1:3001:3001", "[::]:6379:6379", "./media:/media:ro",
                     "/var/run/docker.sock:/x", "${X}", "${X:-d}", "$$", "${", "postgresql://u:p@postgres/db",
                     "host", "true", "²", "1-2", "/media",
                     "desterlib/api:latest", "postgres", "redis:7", "--requirepass ${R}", "no-new-privileges:true",
                     "api.env", ".env", "../.env", "/", "~", "-1", "65536", "0x10"]),
)
SCALARS = st.one_of(SCALAR_TEXT, st.integers(-2, 70000), st.booleans(), st.none(), st.floats(allow_nan=False))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.one_of(st.sampled_from(COMPOSE_KEYS + ENV_KEYS + ["target", "source", "published", "host_ip",
                                                                         "type", "read_only", "path", "required",
                                                                         "driver", "options", "max-size"]),
                              st.text(max_size=8)), inner, max_size=4),
), max_leaves=12)
SERVICE = st.dictionaries(st.sampled_from(COMPOSE_KEYS), VALUES, max_size=6)
COMPOSE_DOC = st.fixed_dictionaries(
    {"services": st.dictionaries(st.sampled_from(["api", "postgres", "redis", "caddy", "backup", "x"]),
                                 st.one_of(SERVICE, st.none(), VALUES), max_size=4)},
    optional={"volumes": VALUES, "networks": VALUES, "name": SCALARS},
)


@st.composite
def compose_texts(draw) -> str:
    """A compose file: random YAML of compose shape, sometimes damaged by random text."""
    text = yaml.safe_dump(draw(COMPOSE_DOC), allow_unicode=True, sort_keys=False)
    if draw(st.booleans()):
        pos = draw(st.integers(0, len(text)))
        text = text[:pos] + draw(st.text(max_size=12)) + text[pos:]
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    return text


@st.composite
def env_texts(draw) -> str:
    lines = draw(st.lists(st.one_of(
        st.tuples(st.sampled_from(ENV_KEYS), SCALAR_TEXT, st.sampled_from(["", '"', "'"])).map(
            lambda t: f"{t[0]}={t[2]}{t[1]}{t[2]}"),
        st.text(max_size=20),
        st.sampled_from(["# comment", "", "export A=1", 'M="multi', 'line"', "B=${A}"]),
    ), max_size=8))
    return "\n".join(lines)


def _check_outcome(files: dict[str, bytes]) -> None:
    inst, err = discover_files(files)
    assert (inst is None) != (err is None)
    if inst is not None:
        assert isinstance(inst, Installation)


@SETTINGS
@given(compose=st.text(max_size=300), env=st.one_of(st.none(), st.text(max_size=200)))
@example(compose="services:\n  api:\n    image: desterlib/api:1\n    environment:\n      PORT: '²'\n"
                 "    ports: ['3001']\n", env=None)
@example(compose="services: []\n", env=None)
@example(compose="services:\n  a: 1\n", env=None)
@example(compose="[]", env="=\n")
@example(compose="services:\n  a:\n    image: x\n", env="COMPOSE_FILE=\n")
def test_arbitrary_text_gives_an_installation_or_an_input_error(compose, env):
    files = {"docker-compose.yml": compose.encode("utf-8", "surrogatepass")}
    if env is not None:
        files[".env"] = env.encode("utf-8", "surrogatepass")
    _check_outcome(files)


@SETTINGS
@given(compose=st.binary(max_size=300), env=st.one_of(st.none(), st.binary(max_size=200)))
@example(compose=b"\xef\xbb\xbfservices:\n  a:\n    image: x\n", env=b"\xef\xbb\xbfA=1\r\n")
@example(compose=b"services:\n  a:\n    image: \xff\n", env=None)
@example(compose=b"services: {}\n", env=b"A=\x00\n")
def test_arbitrary_bytes_give_an_installation_or_an_input_error(compose, env):
    files = {"docker-compose.yml": compose}
    if env is not None:
        files[".env"] = env
    _check_outcome(files)


@SETTINGS
@given(compose=compose_texts(), env=st.one_of(st.none(), env_texts()),
       override=st.one_of(st.none(), compose_texts()), api_env=st.one_of(st.none(), env_texts()))
def test_compose_shaped_input_gives_an_installation_or_an_input_error(compose, env, override, api_env):
    files = {"docker-compose.yml": compose.encode("utf-8", "surrogatepass")}
    if env is not None:
        files[".env"] = env.encode("utf-8", "surrogatepass")
    if override is not None:
        files["docker-compose.override.yml"] = override.encode("utf-8", "surrogatepass")
    if api_env is not None:
        files["api.env"] = api_env.encode("utf-8", "surrogatepass")
    _check_outcome(files)


# --------------------------------------------------------------------------- (b) interpolation

NO_DOLLAR = st.text(max_size=40).filter(lambda s: "$" not in s)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
ENVS = st.dictionaries(NAMES, st.text(max_size=20), max_size=5)


@SETTINGS
@given(text=NO_DOLLAR, env=ENVS)
def test_text_without_dollar_is_unchanged(text, env):
    out = interpolate(text, env)
    assert out.value == text
    assert out.refs == [] and out.missing == [] and out.error is None
    assert out.literal == text


@SETTINGS
@given(parts=st.lists(NO_DOLLAR, min_size=2, max_size=5), env=ENVS)
def test_double_dollar_is_one_literal_dollar(parts, env):
    out = interpolate("$$".join(parts), env)
    assert out.value == "$".join(parts)
    assert out.refs == []
    assert out.literal == "$".join(parts)


@SETTINGS
@given(prefix=NO_DOLLAR, suffix=NO_DOLLAR, name=NAMES, value=st.text(max_size=20), env=ENVS,
       form=st.sampled_from(["${%s}", "${%s:-fallback}", "${%s-fallback}", "${%s?err}", "${%s:?err}"]))
def test_a_defined_variable_is_replaced_by_its_value(prefix, suffix, name, value, env, form):
    assume(value != "" or ":" not in form)  # ${VAR:-x} treats an empty value as unset
    env = {**env, name: value}
    out = interpolate(prefix + form % name + suffix, env)
    assert out.value == prefix + value + suffix
    assert out.refs == [name] and out.missing == [] and out.error is None


@SETTINGS
@given(prefix=NO_DOLLAR, suffix=NO_DOLLAR.filter(lambda s: not s[:1].isalnum() and s[:1] != "_"), name=NAMES,
       value=st.text(max_size=20))
def test_a_bare_variable_is_replaced_by_its_value(prefix, suffix, name, value):
    assume(not (suffix[:1].isascii() and (suffix[:1].isalnum() or suffix[:1] == "_")))
    out = interpolate(prefix + "$" + name + suffix, {name: value})
    assert out.value == prefix + value + suffix


@SETTINGS
@given(prefix=NO_DOLLAR, name=NAMES, default=NO_DOLLAR.filter(lambda s: "}" not in s), env=ENVS)
def test_an_unset_variable_takes_its_default(prefix, name, default, env):
    env = {k: v for k, v in env.items() if k != name}
    out = interpolate(f"{prefix}${{{name}:-{default}}}", env)
    assert out.value == prefix + default
    assert out.defaults == [default]


@SETTINGS
@given(text=st.text(max_size=60), env=ENVS)
def test_interpolate_never_raises(text, env):
    out = interpolate(text, env)
    assert isinstance(out.value, str)


# --------------------------------------------------------------------------- (c) port specs

PORT = st.integers(0, 65535)


@st.composite
def port_ranges(draw) -> str:
    lo = draw(PORT)
    if draw(st.booleans()):
        return str(lo)
    return f"{lo}-{draw(st.integers(lo, 65535))}"


@st.composite
def port_specs(draw):
    target = draw(port_ranges())
    published = draw(st.one_of(st.none(), port_ranges()))
    ip = draw(st.one_of(st.none(), st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)))
    proto = draw(st.sampled_from([None, "tcp", "udp", "sctp", "UDP"]))
    if ip is None:
        spec = target if published is None else f"{published}:{target}"
    else:
        bracket = ":" in ip and draw(st.booleans())
        host = f"[{ip}]" if bracket else ip
        spec = f"{host}:{published or ''}:{target}"
    if proto is not None:
        spec += "/" + proto
    expected = (ip, published, target, (proto or "tcp").lower())
    return spec, expected


@SETTINGS
@given(port_specs())
def test_parse_port_spec_round_trip(case):
    spec, expected = case
    assert parse_port_spec(spec) == expected


@SETTINGS
@given(spec=st.text(max_size=40))
def test_parse_port_spec_never_raises(spec):
    got = parse_port_spec(spec)
    assert got is None or (isinstance(got, tuple) and len(got) == 4)


def test_parsed_ipv6_addresses_are_addresses():
    for spec in ("[::1]:1:2", "::1:1:2", ":::1:2", "fe80:::1:2", "[fe80::]:1:2"):
        got = parse_port_spec(spec)
        assert got is not None and got[0] is not None, spec
        ipaddress.ip_address(got[0])


# --------------------------------------------------------------------------- (d) the masker

SECRETS = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", min_size=8, max_size=48)
PLACEHOLDER = "\x00SECRET\x00"
FIXED_TEXT = "\n".join([c.id + " " + c.title + " " + c.why + " " + c.fix for c in CATALOG]
                       + list(LAYOUT_NAMES.values()) + [explain_score()])


@st.composite
def secret_installs(draw) -> dict[str, str]:
    """An installation with PLACEHOLDER wherever the database password goes."""
    in_compose = draw(st.booleans())       # literal in the compose file, or ${VAR} from .env
    url_in_env = draw(st.booleans())       # DATABASE_URL in .env, or in the compose file
    quote = draw(st.sampled_from(["", '"', "'"]))
    user = draw(st.sampled_from(["dester", "postgres", "app_user"]))
    host_port = draw(st.sampled_from(['"5432:5432"', '"127.0.0.1:5432:5432"', None]))
    env_file = draw(st.booleans())
    crlf = draw(st.booleans())
    password = PLACEHOLDER if in_compose else "${POSTGRES_PASSWORD}"
    pg = ("  postgres:\n    image: postgres:16\n    environment:\n"
          f"      POSTGRES_USER: {user}\n      POSTGRES_PASSWORD: {password}\n      POSTGRES_DB: desterlib\n")
    if host_port:
        pg += f"    ports:\n      - {host_port}\n"
    api = "  api:\n    image: desterlib/api:latest\n    ports:\n      - \"3001:3001\"\n"
    url = f"postgresql://{user}:{PLACEHOLDER}@postgres:5432/desterlib?schema=public"
    if env_file:
        api += "    env_file: .env\n"
    if not url_in_env:
        api += f"    environment:\n      DATABASE_URL: {url}\n"
    env_lines = ["# DesterLib", "NODE_ENV=production"]
    if not in_compose:
        env_lines.append(f"POSTGRES_PASSWORD={quote}{PLACEHOLDER}{quote}")
    if url_in_env:
        env_lines.append(f"DATABASE_URL={quote}{url}{quote}")
    files = {"docker-compose.yml": "services:\n" + pg + api, ".env": "\n".join(env_lines) + "\n"}
    if draw(st.booleans()):
        files[".env.bak"] = files[".env"]
    if crlf:
        files = {k: v.replace("\n", "\r\n") for k, v in files.items()}
    return files


@SETTINGS
@given(secret=SECRETS, files=secret_installs(), profile=st.sampled_from(PROFILES))
@example(secret="Sup3r-Secret_Value", files={
    "docker-compose.yml": "services:\n  postgres:\n    image: postgres:16\n    environment:\n"
                          f"      POSTGRES_PASSWORD: {PLACEHOLDER}\n    ports:\n      - \"5432:5432\"\n",
    ".env": f"DATABASE_URL=postgresql://postgres:{PLACEHOLDER}@postgres:5432/x\n"}, profile="local")
def test_no_output_contains_the_secret(secret, files, profile):
    template = "".join(files.values())
    # A "secret" that is also ordinary text of the install or of the catalog
    # (postgres, desterlib, a word of a title) cannot be told apart from it.
    assume(secret not in template.replace(PLACEHOLDER, "") and secret.lower() not in FIXED_TEXT.lower())
    with tempfile.TemporaryDirectory() as tmp:
        assume(secret not in tmp)
        root = Path(tmp) / "install"
        host = Path(tmp) / "host"
        root.mkdir()
        host.mkdir()
        for rel, text in files.items():
            (root / rel).write_text(text.replace(PLACEHOLDER, secret), newline="")
            os.chmod(root / rel, 0o644)
        inst = discover(str(root), host_root=str(host), now=FIXED_NOW)
        report = run_audit(inst, profile)
        outputs = {"text": render_text(report), "color": render_text(report, color=True),
                   "json": render_json(report), "sarif": render_sarif(report)}
    for kind, out in outputs.items():
        assert secret not in out, kind
