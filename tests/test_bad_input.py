"""Bad input: exit 2, one line on stderr naming the file (and line), no traceback, nothing written.

And the other side of the line: a UTF-8 BOM at the start of a file and CRLF line
endings are valid input (Docker Compose accepts them) and are audited exactly
like the same files without them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PROJECT

BOMB = """\
x-a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
x-b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
x-c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
x-d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
x-e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
x-f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
x-g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
x-h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
x-i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
services:
  api:
    image: desterlib/api:1.0.0
    environment:
      X: *i
"""

#: A small valid compose file; tests break one line of it.
COMPOSE = """\
services:
  postgres:
    image: postgres:15-alpine
    environment:
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
    ports:
      - "5432:5432"
  api:
    image: desterlib/api:1.0.0
    env_file: api.env
    environment:
      DATABASE_URL: postgresql://desterlib:${POSTGRES_PASSWORD}@postgres:5432/desterlib
    volumes:
      - ./media:/media
"""
ENV = "# DesterLib\nPOSTGRES_PASSWORD=weakpass12\nNODE_ENV=production\n"
API_ENV = "PORT=3001\nJWT_SECRET=change-me-please-now\n"


@dataclass
class Run:
    code: int
    out: str
    err: str


def write(path: Path, data: str | bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.chmod(path, mode)


def make_install(root: Path, compose: str | bytes = COMPOSE, env: str | bytes = ENV,
                 api_env: str | bytes = API_ENV) -> Path:
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    write(root / "docker-compose.yml", compose, 0o644)
    write(root / ".env", env)
    write(root / "api.env", api_env)
    (root / "media").mkdir()
    os.chmod(root / "media", 0o755)
    return root


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` with its type, mode, size and mtime (never following links)."""
    out: dict[str, tuple] = {}
    for root in roots:
        if not os.path.lexists(root):
            out[str(root)] = ("absent",)
            continue
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in [""] + dirnames + filenames:
                p = os.path.join(dirpath, name) if name else dirpath
                st = os.lstat(p)
                out[p] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_uid)
    return out


class Sandbox:
    """An install under test, plus HOME and TMPDIR, all snapshotted around a run."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.home = Path(os.environ["HOME"])
        self.tmpdir = tmp_path / "tmpdir"
        self.tmpdir.mkdir()
        self.root = tmp_path / "install"

    def run(self, *args: str, prefix: tuple[str, ...] = (), timeout: float = 60,
            extra_roots: tuple[Path, ...] = ()) -> Run:
        roots = (self.tmp, self.home, *extra_roots)
        before = snapshot(*roots)
        env = dict(os.environ, TMPDIR=str(self.tmpdir))
        proc = subprocess.run([*prefix, sys.executable, "-m", "tui", *args], capture_output=True, text=True, env=env,
                              cwd=str(PROJECT), timeout=timeout, stdin=subprocess.DEVNULL)
        after = snapshot(*roots)
        changed = (sorted(set(before) ^ set(after))
                   + sorted(p for p in set(before) & set(after) if before[p] != after[p]))
        assert not changed, f"the CLI wrote to disk: {changed[:5]}"
        assert list(self.tmpdir.iterdir()) == []
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def audit(self, *extra: str, directory: Path | None = None, **kw) -> Run:
        return self.run("audit", "--dir", str(directory or self.root), "--host-root", str(self.tmp / "host"),
                        *extra, **kw)


@pytest.fixture
def box(tmp_path) -> Sandbox:
    (tmp_path / "host").mkdir()
    return Sandbox(tmp_path)


def assert_input_error(r: Run, file: str, line: int | None = None, *, has_line: bool | None = None) -> str:
    """Exit 2, exactly one line on stderr that names ``file`` (and ``line``), nothing on stdout."""
    assert r.code == 2, (r.code, r.err, r.out[:300])
    assert "Traceback" not in r.err and "Traceback" not in r.out
    assert r.out == ""
    assert r.err.endswith("\n") and r.err.count("\n") == 1, repr(r.err)
    msg = r.err.rstrip("\n")
    assert msg.startswith("dester-harden: error: "), msg
    assert re.search(r"(?:^|[\s/:])" + re.escape(file) + r"(?::|\s|$)", msg), (file, msg)
    if line is not None:
        assert f"{file}:{line}: " in msg, (file, line, msg)
    if has_line is True:
        assert re.search(re.escape(file) + r":\d+: ", msg), msg
    if has_line is False:
        assert not re.search(re.escape(file) + r":\d+", msg), msg
    return msg


def test_snapshot_notices_writes(tmp_path):
    """The guard the other tests rely on: a new file, a changed size or mtime is seen."""
    (tmp_path / "a").write_text("x")
    before = snapshot(tmp_path)
    (tmp_path / "b").write_text("")
    assert set(snapshot(tmp_path)) - set(before)
    before = snapshot(tmp_path)
    os.utime(tmp_path / "a", ns=(1, 1))
    assert snapshot(tmp_path) != before


# -- the directory --------------------------------------------------------------------------


def test_missing_directory(box):
    missing = box.tmp / "no-such-install"
    msg = assert_input_error(box.audit(directory=missing), str(missing))
    assert "not found" in msg


def test_directory_is_a_file(box):
    f = box.tmp / "a-file"
    f.write_text("services: {}\n")
    assert_input_error(box.audit(directory=f), str(f))


def test_no_compose_file(box):
    make_install(box.root)
    (box.root / "docker-compose.yml").unlink()
    msg = assert_input_error(box.audit(), str(box.root))
    assert "compose" in msg


def test_compose_file_option_names_missing_file(box):
    make_install(box.root)
    missing = box.root / "other.yml"
    assert_input_error(box.audit("-f", str(missing)), str(missing))


# -- YAML -----------------------------------------------------------------------------------


def test_yaml_syntax_error(box):
    make_install(box.root, COMPOSE.replace('      - "5432:5432"\n', '      - "5432:5432\n'))
    assert_input_error(box.audit(), "docker-compose.yml", has_line=True)


def test_yaml_syntax_error_mid_file_names_its_line(box):
    broken = COMPOSE.replace("    image: desterlib/api:1.0.0\n", "    image: - desterlib/api:1.0.0\n")
    make_install(box.root, broken)
    assert_input_error(box.audit(), "docker-compose.yml", 9)


def test_duplicate_key(box):
    broken = COMPOSE.replace("    image: desterlib/api:1.0.0\n",
                             "    image: desterlib/api:1.0.0\n    image: desterlib/api:2.0.0\n")
    make_install(box.root, broken)
    msg = assert_input_error(box.audit(), "docker-compose.yml", 10)
    assert "duplicate" in msg


def test_duplicate_service(box):
    broken = COMPOSE + "  postgres:\n    image: postgres:16\n"
    make_install(box.root, broken)
    assert_input_error(box.audit(), "docker-compose.yml", 15)


def test_tab_indentation(box):
    broken = COMPOSE.replace("    env_file: api.env\n", "\tenv_file: api.env\n")
    make_install(box.root, broken)
    msg = assert_input_error(box.audit(), "docker-compose.yml", 10)
    assert "tab" in msg


def test_tab_inside_nested_mapping(box):
    broken = COMPOSE.replace("      POSTGRES_PASSWORD:", "  \t    POSTGRES_PASSWORD:")
    make_install(box.root, broken)
    msg = assert_input_error(box.audit(), "docker-compose.yml", 5)
    assert "tab" in msg


def test_alias_bomb(box):
    make_install(box.root, BOMB)
    r = box.audit(timeout=60)
    msg = assert_input_error(r, "docker-compose.yml", has_line=True)
    found = re.search(r"docker-compose\.yml:(\d+):", msg)
    assert found is not None, msg
    line = int(found.group(1))
    assert 1 <= line <= 14
    assert "alias" in msg


def test_recursive_alias(box):
    make_install(box.root, "x-loop: &loop\n  again: *loop\n" + COMPOSE)
    msg = assert_input_error(box.audit(), "docker-compose.yml", has_line=True)
    assert "alias" in msg or "anchor" in msg


def test_deep_nesting(box):
    make_install(box.root, COMPOSE + "x-deep: " + "[" * 5000 + "]" * 5000 + "\n")
    assert_input_error(box.audit(), "docker-compose.yml")


@pytest.mark.parametrize("depth", [150, 600, 5000])
@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
def test_deep_nesting_names_the_line(box, monkeypatch, depth, libyaml):
    """Deep enough for Python's recursion limit (600) or libyaml's own (5000): the error cites where it is."""
    make_install(box.root, COMPOSE + "x-pad: 1\nx-deep:\n  - " + "[" * depth + "]" * depth + "\n")
    line = COMPOSE.count("\n") + 3
    if libyaml:
        msg = assert_input_error(box.audit(), "docker-compose.yml", line)
        assert "nesting" in msg
        return
    import yaml

    import checks.core.yamlpos as yamlpos
    from checks.core.errors import InputError

    monkeypatch.setattr(yamlpos, "_Loader", yaml.SafeLoader)
    with pytest.raises(InputError) as info:
        yamlpos.parse_yaml((box.root / "docker-compose.yml").read_text(), "docker-compose.yml")
    assert f"docker-compose.yml:{line}: " in str(info.value) and "nesting" in str(info.value)


@pytest.mark.parametrize("tag", ["!vault", "!!binary", "!secret", "!<tag:example.com,2000:pw>"])
def test_an_unknown_tag_on_a_secret_is_an_input_error(box, tag):
    """`POSTGRES_PASSWORD: !vault abc` is not the password "abc", and not "not set" either."""
    make_install(box.root, COMPOSE.replace("${POSTGRES_PASSWORD}", f"{tag} c2VjcmV0cGFzc3dvcmQ="))
    msg = assert_input_error(box.audit(), "docker-compose.yml", 5)
    assert "tag" in msg and "c2VjcmV0" not in msg
    r = box.run("fix", "--dir", str(box.root), "--host-root", str(box.tmp / "host"), "--dry-run")
    assert_input_error(r, "docker-compose.yml", 5)


@pytest.mark.parametrize("tag", ["!reset", "!override", "!!str"])
def test_the_tags_compose_knows_are_accepted(box, tag):
    make_install(box.root, COMPOSE.replace("${POSTGRES_PASSWORD}", f"{tag} ${{POSTGRES_PASSWORD}}"))
    r = box.audit("--fail-on", "never")
    assert r.code == 0, r.err


@pytest.mark.parametrize("text", ["- services\n- api\n", "just a string\n", "42\n"])
def test_top_level_not_a_mapping(box, text):
    make_install(box.root, text)
    msg = assert_input_error(box.audit(), "docker-compose.yml", 1)
    assert "mapping" in msg


def test_services_not_a_mapping(box):
    make_install(box.root, "name: x\nservices:\n  - postgres\n  - api\n")
    msg = assert_input_error(box.audit(), "docker-compose.yml", has_line=True)
    assert "services" in msg


def test_service_not_a_mapping(box):
    make_install(box.root, COMPOSE + "  redis: redis:7\n")
    msg = assert_input_error(box.audit(), "docker-compose.yml", 15)
    assert "redis" in msg


def test_empty_compose_file(box):
    make_install(box.root, "")
    assert_input_error(box.audit(), "docker-compose.yml")


def test_broken_override_file_is_named(box):
    make_install(box.root)
    write(box.root / "docker-compose.override.yml", "services:\n  api:\n    ports: [\n", 0o644)
    assert_input_error(box.audit(), "docker-compose.override.yml", has_line=True)


# -- bytes: encodings, NULs, BOMs, size -------------------------------------------------------


def test_invalid_utf8_in_compose(box):
    make_install(box.root, COMPOSE.encode().replace(b"postgres:15-alpine", b"postgres:15-\xe9alpine"))
    msg = assert_input_error(box.audit(), "docker-compose.yml", 3)
    assert "UTF-8" in msg


def test_latin1_env_file(box):
    make_install(box.root, env="# Datenbank f\xfcr DesterLib\nPOSTGRES_PASSWORD=weakpass12\n".encode("latin-1"))
    msg = assert_input_error(box.audit(), ".env", 1)
    assert "UTF-8" in msg


def test_invalid_utf8_after_a_leading_bom(box):
    make_install(box.root, env=b"\xef\xbb\xbfA=1\nB=2\nC=\xff\n")
    assert_input_error(box.audit(), ".env", 3)


def test_nul_byte(box):
    make_install(box.root, COMPOSE.replace("      - ./media:/media\n", "      - ./media:/media\x00\n"))
    msg = assert_input_error(box.audit(), "docker-compose.yml", 14)
    assert "NUL" in msg


def test_nul_byte_in_env_file(box):
    make_install(box.root, api_env="PORT=3001\n\x00\x00\x00\n")
    assert_input_error(box.audit(), "api.env", 2)


def test_bom_in_the_middle_of_compose(box):
    make_install(box.root, COMPOSE.replace("  api:\n", "\ufeff  api:\n"))
    msg = assert_input_error(box.audit(), "docker-compose.yml", 8)
    assert "byte order mark" in msg


def test_second_bom_after_a_leading_one(box):
    make_install(box.root, env="\ufeff\ufeffPOSTGRES_PASSWORD=weakpass12\n")
    assert_input_error(box.audit(), ".env", 1)


def test_bom_in_the_middle_of_env_file(box):
    make_install(box.root, env=ENV + "\ufeffREDIS_URL=redis://redis:6379\n")
    assert_input_error(box.audit(), ".env", 4)


def _sparse(path: Path, head: bytes, size: int) -> None:
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(size)  # sparse: no 50 MB actually written


@pytest.mark.parametrize("name", ["docker-compose.yml", ".env", "api.env"])
def test_50_mb_file(box, name):
    make_install(box.root)
    _sparse(box.root / name, b"services:\n" if name.endswith(".yml") else b"A=1\n", 50 * 1024 * 1024)
    msg = assert_input_error(box.audit(timeout=30), name, has_line=False)
    assert "MiB" in msg


# -- env files ----------------------------------------------------------------------------


def test_env_file_is_a_directory(box):
    make_install(box.root)
    (box.root / ".env").unlink()
    (box.root / ".env").mkdir()
    msg = assert_input_error(box.audit(), ".env")
    assert "directory" in msg


def test_env_file_named_by_compose_is_a_directory(box):
    make_install(box.root)
    (box.root / "api.env").unlink()
    (box.root / "api.env").mkdir()
    msg = assert_input_error(box.audit(), "api.env")
    assert "directory" in msg


@pytest.mark.parametrize("name", [".env", "api.env", "docker-compose.yml"])
def test_fifo_does_not_hang(box, name):
    make_install(box.root)
    (box.root / name).unlink()
    os.mkfifo(box.root / name)
    msg = assert_input_error(box.audit(timeout=20), name)
    assert "regular file" in msg


def test_malformed_env_line(box):
    make_install(box.root, env=ENV + "THIS LINE IS NOT AN ASSIGNMENT\n")
    msg = assert_input_error(box.audit(), ".env", 4)
    assert "KEY=value" in msg


def test_malformed_env_file_line(box):
    make_install(box.root, api_env="PORT=3001\nJWT_SECRET='unterminated\n")
    assert_input_error(box.audit(), "api.env", has_line=True)


def test_compose_file_names_missing_file(box):
    make_install(box.root, env=ENV + "COMPOSE_FILE=docker-compose.yml:docker-compose.prod.yml\n")
    msg = assert_input_error(box.audit(), ".env", 4)
    assert "docker-compose.prod.yml" in msg


def _nobody_usable() -> str | None:
    if shutil.which("setpriv") is None:
        return "setpriv is not installed"
    if os.geteuid() != 0:
        return "needs root to switch to user nobody (as a normal user chmod 000 is tested as is)"
    return None


@pytest.mark.parametrize("name", [".env", "api.env"])
def test_unreadable_env_file(box, name):
    reason = _nobody_usable()
    if reason:
        pytest.skip(reason)
    # Root reads a 0000 file anyway: run the CLI as nobody on a copy that nobody can reach.
    shared = Path(tempfile.mkdtemp(prefix="dester-harden-nobody-"))
    try:
        os.chmod(shared, 0o755)
        install = make_install(shared / "install")
        for other in (".env", "api.env"):
            os.chmod(install / other, 0o644)
        os.chmod(install / name, 0o000)
        prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
        r = box.run("audit", "--dir", str(install), "--host-root", str(box.tmp / "host"), prefix=prefix,
                    extra_roots=(shared,))
        if "Permission denied" in r.err and "python" in r.err.lower() and r.code != 2:
            pytest.skip(f"nobody cannot run {sys.executable}: {r.err.strip()}")
        msg = assert_input_error(r, name)
        assert "permission denied" in msg
    finally:
        shutil.rmtree(shared, ignore_errors=True)


# -- valid input: a leading BOM and CRLF line endings ---------------------------------------


def _normalized_findings(root: Path, r: Run) -> list:
    assert r.code in (0, 1), r.err
    doc = json.loads(r.out.replace(str(root), "ROOT"))
    return doc["findings"]


@pytest.mark.parametrize("bom,crlf", [(True, False), (False, True), (True, True)])
def test_bom_and_crlf_are_valid_input(tmp_path, bom, crlf):
    (tmp_path / "host").mkdir()
    host = str(tmp_path / "host")

    def encode(text: str) -> bytes:
        if crlf:
            text = text.replace("\n", "\r\n")
        return (b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8")

    plain = make_install(tmp_path / "plain")
    # The variable whose key sits right after the BOM: a BOM taken into the key would lose it.
    env = "POSTGRES_PASSWORD=weakpass12\nNODE_ENV=production\n"
    write(plain / ".env", env)
    odd = make_install(tmp_path / "odd", encode(COMPOSE), encode(env), encode(API_ENV))
    for root in (plain, odd):
        os.utime(root / ".env", ns=(0, 0))

    runs = {}
    for root in (plain, odd):
        args = ["audit", "--dir", str(root), "--host-root", host, "--format", "json"]
        proc = subprocess.run([sys.executable, "-m", "tui", *args], capture_output=True, text=True, cwd=str(PROJECT),
                              timeout=60)
        runs[root] = Run(proc.returncode, proc.stdout, proc.stderr)
        assert runs[root].code == 1, runs[root].err
        assert runs[root].err == ""
    expected = _normalized_findings(plain, runs[plain])
    got = _normalized_findings(odd, runs[odd])
    assert got == expected

    by_id = {f["id"]: f for f in got}
    net = by_id["NET-001"]
    assert net["status"] == "fail"
    assert [(e["file"], e["line"], e["text"]) for e in net["evidence"]] == [("docker-compose.yml", 7, '- "5432:5432"')]
    sec = by_id["SEC-001"]
    assert sec["status"] == "fail"
    # The value is read without the BOM or a trailing CR: 10 characters, not 11.
    notes = " ".join(e.get("note", "") for e in sec["evidence"])
    assert "10 characters" in notes, sec
    for f in got:
        for e in f["evidence"]:
            assert "\r" not in e["text"] and "\ufeff" not in e["text"], e
            assert "\ufeff" not in (e["file"] or "")
    # POSTGRES_PASSWORD, the key right after the BOM, is still recognised as a secret and masked.
    assert "weakpass12" not in runs[odd].out


def test_bom_and_crlf_text_output(tmp_path):
    (tmp_path / "host").mkdir()
    root = make_install(tmp_path / "odd", b"\xef\xbb\xbf" + COMPOSE.replace("\n", "\r\n").encode(),
                        b"\xef\xbb\xbf" + ENV.replace("\n", "\r\n").encode())
    proc = subprocess.run([sys.executable, "-m", "tui", "audit", "--dir", str(root),
                           "--host-root", str(tmp_path / "host")],

                          capture_output=True, text=True, cwd=str(PROJECT), timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "docker-compose.yml:7 [postgres]" in proc.stdout
    assert "\r" not in proc.stdout and "\ufeff" not in proc.stdout
