"""``include:`` and ``extends:``: problems written only in an included or extended file.

Before these were followed, a published ``postgres``/``postgres`` database, the
Docker socket and ``privileged: true`` in an included file were reported as
passed (exit 0). Here each is found at its own file and line, fixed in that
file, undone byte for byte, and what cannot be followed is an ``error``, never a
``pass``. ``docker compose config`` is the oracle for the merged services.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from checks.audit.findings import ERROR, FAIL, PASS
from checks.audit.run import run_audit
from checks.core.errors import InputError
from checks.core.names import JOURNAL_DIR
from checks.install.discovery import discover

from .conftest import FIXED_NOW, run_cli
from .installs import tree_snapshot

NOBODY = 65534

API = """\
  api:
    image: desterlib/api:1.4.2
    restart: unless-stopped
    ports:
      - "127.0.0.1:3001:3001"
    security_opt:
      - "no-new-privileges:true"
    logging:
      driver: json-file
      options:
        max-size: "10m"
"""


def write(root: Path, files: dict[str, str], mode: int = 0o644) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o600 if rel.endswith(".env") else mode)
    return root


def line_of(root: Path, rel: str, needle: str) -> int:
    for n, line in enumerate((root / rel).read_text().splitlines(), 1):
        if needle in line:
            return n
    raise AssertionError(f"{needle!r} not in {rel}")


def audit(root: Path, *extra: str):
    host = root.parent / "host"
    host.mkdir(exist_ok=True)
    r = run_cli("audit", "--dir", str(root), "--host-root", str(host), "--format", "json", *extra)
    assert "Traceback" not in r.err and "internal error" not in r.err, r.err
    return r


def findings(r) -> dict[str, dict]:
    return {f["id"]: f for f in json.loads(r.out)["findings"]}


def places(f: dict) -> set[tuple[str, int]]:
    return {(e["file"], e["line"]) for e in f["evidence"]}




# -- installs whose problems sit only in an included or extended file --------------------------

def included_install(tmp: Path) -> Path:
    """The database in ``db/compose.yaml`` (included): published, password ``postgres``,
    privileged, the Docker socket mounted; the main file is clean."""
    root = tmp / "inst"
    return write(root, {
        "docker-compose.yml": "include:\n  - db/compose.yaml\nservices:\n" + API,
        "db/compose.yaml": (
            "services:\n"
            "  postgres:\n"
            "    image: postgres:16-alpine\n"
            "    privileged: true\n"
            "    ports:\n"
            "      - \"5432:5432\"\n"
            "    environment:\n"
            "      POSTGRES_USER: postgres\n"
            "      POSTGRES_PASSWORD: postgres\n"
            "    volumes:\n"
            "      - ./data:/var/lib/postgresql/data\n"
            "      - /var/run/docker.sock:/var/run/docker.sock\n"),
    })


def include_env_install(tmp: Path) -> Path:
    """The long form: the included file takes its weak password from its own env_file."""
    root = tmp / "inst"
    return write(root, {
        "docker-compose.yml": ("include:\n  - path: stack/db.yml\n    env_file: stack/db.env\n"
                               "    project_directory: stack\nservices:\n" + API),
        "stack/db.yml": (
            "services:\n"
            "  postgres:\n"
            "    image: postgres:16-alpine\n"
            "    environment:\n"
            "      POSTGRES_PASSWORD: ${DB_PASSWORD}\n"
            "    volumes:\n"
            "      - ./pgdata:/var/lib/postgresql/data\n"),
        "stack/db.env": "DB_PASSWORD=postgres\n",
    })


def extends_install(tmp: Path) -> Path:
    """``api`` extends ``base`` from common/base.yml (privileged, the socket), and
    ``worker`` extends ``api`` in the same file."""
    root = tmp / "inst"
    return write(root, {
        "docker-compose.yml": (
            "services:\n"
            "  api:\n"
            "    extends:\n"
            "      file: common/base.yml\n"
            "      service: base\n"
            "    image: desterlib/api:1.4.2\n"
            "    ports:\n"
            "      - \"127.0.0.1:3001:3001\"\n"
            "  worker:\n"
            "    extends: api\n"
            "    ports: !reset []\n"),
        "common/base.yml": (
            "services:\n"
            "  base:\n"
            "    image: busybox:1.36\n"
            "    privileged: true\n"
            "    security_opt:\n"
            "      - \"no-new-privileges:true\"\n"
            "    volumes:\n"
            "      - /var/run/docker.sock:/var/run/docker.sock\n"
            "  unrelated:\n"
            "    image: busybox:1.36\n"
            "    privileged: true\n"),
    })


def test_included_file_problems_are_found_at_their_file_and_line(tmp_path):
    root = included_install(tmp_path)
    r = audit(root)
    assert r.code == 1, r.err
    f = findings(r)
    db = "db/compose.yaml"
    assert f["NET-001"]["status"] == FAIL and places(f["NET-001"]) == {(db, line_of(root, db, '"5432:5432"'))}
    assert f["SEC-001"]["status"] == FAIL and places(f["SEC-001"]) == {(db, line_of(root, db, "POSTGRES_PASSWORD"))}
    assert f["DKR-001"]["status"] == FAIL and places(f["DKR-001"]) == {(db, line_of(root, db, "docker.sock"))}
    assert f["DKR-002"]["status"] == FAIL and places(f["DKR-002"]) == {(db, line_of(root, db, "privileged"))}
    assert [e["text"] for e in f["SEC-001"]["evidence"]] == ["POSTGRES_PASSWORD: ••••"]  # masked


def test_included_env_file_weak_password_is_found_and_fixed_there(tmp_path):
    root = include_env_install(tmp_path)
    f = findings(audit(root))
    assert f["SEC-001"]["status"] == FAIL
    assert places(f["SEC-001"]) == {("stack/db.yml", line_of(root, "stack/db.yml", "POSTGRES_PASSWORD"))}
    inst = discover(str(root), now=FIXED_NOW)
    assert "stack/db.env" in {e.display for e in inst.env_files}  # its mode is FS-001's, its value masked
    assert "postgres" in inst.secrets
    before = tree_snapshot(root, skip=(JOURNAL_DIR,))
    r = run_cli("fix", "--dir", str(root), "--yes", "--only", "SEC-001")
    assert r.code in (0, 1), r.out + r.err
    # The password is changed where the included file takes it from; nothing is added to a root .env.
    assert not (root / ".env").exists()
    assert (root / "stack/db.env").read_text() != "DB_PASSWORD=postgres\n"
    assert (root / "stack/db.yml").read_bytes() == before["stack/db.yml"][-1]
    assert findings(audit(root))["SEC-001"]["status"] == PASS
    r = run_cli("undo", "--dir", str(root), "--last", "--yes")
    assert r.code == 0, r.out + r.err
    assert tree_snapshot(root, skip=(JOURNAL_DIR,)) == before


def test_fix_edits_the_included_file_and_undo_restores_every_file(tmp_path):
    root = included_install(tmp_path)
    before = tree_snapshot(root, skip=(JOURNAL_DIR,))
    main = (root / "docker-compose.yml").read_bytes()
    r = run_cli("fix", "--dir", str(root), "--yes", "--only", "NET-001,DKR-001,DKR-002,SEC-001")
    assert r.code in (0, 1), r.out + r.err
    db = (root / "db/compose.yaml").read_text()
    assert '"127.0.0.1:5432:5432"' in db and "privileged" not in db and "docker.sock" not in db
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}" in db or "POSTGRES_PASSWORD: postgres" not in db
    assert (root / "docker-compose.yml").read_bytes() == main  # the line was not there
    f = findings(audit(root))
    assert all(f[c]["status"] == PASS for c in ("NET-001", "DKR-001", "DKR-002", "SEC-001")), f
    r = run_cli("undo", "--dir", str(root), "--last", "--yes")
    assert r.code == 0, r.out + r.err
    assert tree_snapshot(root, skip=(JOURNAL_DIR,)) == before


def test_extended_service_problems_are_found_and_fixed_in_the_base_file(tmp_path):
    root = extends_install(tmp_path)
    f = findings(audit(root))
    base = "common/base.yml"
    sock, priv = line_of(root, base, "docker.sock"), line_of(root, base, "privileged")
    # Both services extend base (worker through api); unrelated is not part of the model.
    assert {(e["file"], e["line"], e["service"]) for e in f["DKR-001"]["evidence"]} == {(base, sock, "api"),
                                                                                        (base, sock, "worker")}
    assert {(e["file"], e["line"], e["service"]) for e in f["DKR-002"]["evidence"]} == {(base, priv, "api"),
                                                                                        (base, priv, "worker")}
    assert f["DKR-003"]["status"] == PASS  # security_opt inherited
    inst = discover(str(root), now=FIXED_NOW)
    assert [s.name for s in inst.services] == ["api", "worker"]
    worker = inst.service("worker")
    assert worker is not None
    assert worker.ports == []  # !reset [] in the extending service
    before = tree_snapshot(root, skip=(JOURNAL_DIR,))
    r = run_cli("fix", "--dir", str(root), "--yes", "--only", "DKR-001,DKR-002")
    assert r.code in (0, 1), r.out + r.err
    text = (root / base).read_text()
    assert "docker.sock" not in text
    # base's privileged is removed; unrelated (not in the model) keeps its own.
    assert text.count("privileged: true") == 1 and text.index("privileged") > text.index("unrelated")
    assert (root / "docker-compose.yml").read_bytes() == before["docker-compose.yml"][-1]
    f = findings(audit(root))
    assert f["DKR-001"]["status"] == PASS and f["DKR-002"]["status"] == PASS
    assert run_cli("undo", "--dir", str(root), "--last", "--yes").code == 0
    assert tree_snapshot(root, skip=(JOURNAL_DIR,)) == before


# -- docker compose config is the oracle ----------------------------------------------------------

def _compose_json(root: Path) -> dict:
    if (shutil.which("docker") is None
            or subprocess.run(["docker", "compose", "version"], capture_output=True).returncode):
        if os.environ.get("CI") == "true":
            pytest.fail("docker compose is missing under CI (.ci/run installs it)")
        pytest.skip("docker compose is not installed (.ci/run installs it)")
    proc = subprocess.run(["docker", "compose", "config", "--format", "json"], cwd=root, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["services"]


def _theirs(s: dict) -> dict:
    return {
        "image": s.get("image"),
        "privileged": bool(s.get("privileged")),
        "read_only": bool(s.get("read_only")),
        "user": s.get("user"),
        "command": s.get("command"),
        "ports": sorted((p.get("host_ip"), str(p["published"]) if p.get("published") else None, str(p["target"]))
                        for p in s.get("ports", [])),
        "volumes": sorted((v["type"], v.get("source"), v["target"], bool(v.get("read_only")))
                          for v in s.get("volumes", [])),
        "environment": dict(s.get("environment") or {}),
        "cap_add": sorted(s.get("cap_add", [])),
        "security_opt": sorted(s.get("security_opt", [])),
    }


def _ours(svc) -> dict:
    def text(key):
        node = svc.opt(key)
        return None if node is None or node.value is None else str(node.value)

    def seq(key):
        node = svc.opt(key)
        return sorted(str(n.value) for n in node.value) if node is not None and node.is_seq() else []

    cmd = svc.opt("command")
    return {
        "image": svc.image_name or None,
        "privileged": text("privileged") == "True",
        "read_only": text("read_only") == "True",
        "user": text("user"),
        "command": cmd.plain() if cmd is not None else None,
        "ports": sorted((p.host_ip, p.published, p.target) for p in svc.ports),
        "volumes": sorted((m.kind, m.host_path if m.kind == "bind" else m.source, m.target, m.read_only)
                          for m in svc.mounts),
        "environment": {k: v.value for k, v in svc.environment.items()},
        "cap_add": seq("cap_add"),
        "security_opt": seq("security_opt"),
    }


ORACLE_CASES = {
    "include-short": included_install,
    "include-long": include_env_install,
    "extends": extends_install,
}


def _nested(tmp: Path) -> Path:
    """Nested includes, a path list merged like override files, and extends across both."""
    root = tmp / "inst"
    return write(root, {
        "compose.yaml": ("include:\n  - path: [a/one.yml, a/one.override.yml]\n    env_file: [a/x.env, a/y.env]\n"
                         "services:\n" + API +
                         "  tool:\n    extends:\n      file: b/base.yml\n      service: b\n"
                         "    environment:\n      - MODE=override\n    cap_add: [SYS_ADMIN]\n"
                         "    command: [\"run\", \"--fast\"]\n"
                         "    volumes:\n      - ./cfg:/etc/tool:ro\n"),
        "a/one.yml": ("include:\n  - ../c/deep.yml\nservices:\n  redis:\n    image: redis:${REDIS_TAG}\n"
                      "    environment:\n      LEVEL: ${LEVEL}\n    volumes:\n      - ./r:/data\n"),
        "a/one.override.yml": "services:\n  redis:\n    ports:\n      - \"6379:6379\"\n    user: \"999\"\n",
        "a/x.env": "REDIS_TAG=6\nLEVEL=x\n",
        "a/y.env": "LEVEL=y\n",
        "c/deep.yml": "services:\n  deep:\n    image: alpine:3.20\n    read_only: true\n    volumes:\n      - ./d:/d\n",
        "b/base.yml": ("services:\n  b:\n    image: busybox:1.36\n"
                       "    environment:\n      MODE: base\n      KEEP: \"1\"\n"
                       "    cap_add: [NET_ADMIN]\n    command: [\"run\"]\n    volumes:\n      - ./data:/data\n"
                       "      - ./cfg-base:/etc/tool\n    ports:\n      - \"8080:80\"\n"),
    })


ORACLE_CASES["nested"] = _nested


def _extends_paths(tmp: Path) -> Path:
    """extends: file: is relative to the project directory in a project file (an included
    file's project_directory here), to its own directory in a file reached by extends."""
    root = tmp / "inst"
    return write(root, {
        "compose.yaml": ("include:\n  - path: sub/inc.yml\n    project_directory: other\nservices:\n" + API +
                         "  x:\n    extends:\n      file: lib/base.yml\n      service: b\n"),
        "sub/inc.yml": "services:\n  y:\n    extends:\n      file: base.yml\n      service: b\n",
        "sub/base.yml": "services:\n  b:\n    image: wrong:1\n",
        "other/base.yml": "services:\n  b:\n    image: right:1\n    volumes: [./v:/v]\n",
        "lib/base.yml": ("services:\n  b:\n    extends:\n      file: base2.yml\n      service: c\n"
                         "    volumes: [./v:/v]\n"),
        "lib/base2.yml": "services:\n  c:\n    image: right:2\n",
        "base2.yml": "services:\n  c:\n    image: wrong:2\n",
    })


ORACLE_CASES["extends-paths"] = _extends_paths


@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_docker_compose_config_agrees_on_the_merged_services(tmp_path, case):
    root = ORACLE_CASES[case](tmp_path)
    theirs = _compose_json(root)
    inst = discover(str(root), now=FIXED_NOW)
    ours = {s.name: _ours(s) for s in inst.services}
    assert sorted(ours) == sorted(theirs)
    for name in ours:
        assert ours[name] == _theirs(theirs[name]), name


# -- what cannot be followed is an error, never a pass -------------------------------------------

UNFOLLOWABLE = {
    "missing": ("include:\n  - db/missing.yml\n", {}, "not found"),
    "remote": ("include:\n  - https://example.com/db/compose.yaml\n", {}, "remote"),
    "git": ("include:\n  - git@github.com:someone/stack.git\n", {}, "remote"),
    "cycle": ("include:\n  - db/a.yml\n", {"db/a.yml": "include:\n  - ../docker-compose.yml\n"}, "cycle"),
    "unknown-form": ("include:\n  - 42\n", {}, "an entry must be"),
    "unknown-key": ("include:\n  - path: db/a.yml\n    profiles: [x]\n", {"db/a.yml": "services: {}\n"}, "unknown key"),
    "missing-env-file": ("include:\n  - path: db/a.yml\n    env_file: db/none.env\n", {"db/a.yml": "services: {}\n"},
                         "not found"),
    "not-a-list": ("include: db/a.yml\n", {"db/a.yml": "services: {}\n"}, "must be a list"),
    "home": ("include:\n  - ~/stack/compose.yaml\n", {}, "~"),
    "fan-out": ("include:\n  - f0.yml\n",
                {f"f{i}.yml": f"include:\n  - f{i + 1}.yml\n  - f{i + 1}.yml\nservices: {{}}\n" for i in range(19)}
                | {"f19.yml": "services: {}\n"}, "more than 200"),
    "extends-missing-service": ("", {}, "defines no service"),
    "extends-missing-file": ("", {}, "not found"),
    "extends-cycle": ("", {}, "cycle"),
    "extends-deep": ("", {}, "a chain of more than 50"),
}

_EXTENDS = {
    "extends-missing-service": "  side:\n    image: busybox:1.36\n    extends: {service: nope}\n",
    "extends-missing-file": "  side:\n    image: busybox:1.36\n    extends: {file: gone.yml, service: x}\n",
    "extends-cycle": ("  side:\n    image: busybox:1.36\n    extends: other\n"
                      "  other:\n    image: busybox:1.36\n    extends: side\n"),
    # Deeper than the stack: without a bound this was a RecursionError (exit 3).
    "extends-deep": "".join(f"  s{i}:\n    image: busybox:1.36\n    extends: s{i + 1}\n" for i in range(3000)) +
                    "  s3000:\n    image: busybox:1.36\n",
}


@pytest.mark.parametrize("case", sorted(UNFOLLOWABLE))
def test_what_cannot_be_followed_is_an_error_not_a_pass(tmp_path, case):
    head, extra, why = UNFOLLOWABLE[case]
    root = tmp_path / "inst"
    write(root, {"docker-compose.yml": head + "services:\n" + API + _EXTENDS.get(case, ""), **extra})
    before = tree_snapshot(root, skip=(JOURNAL_DIR,))
    r = audit(root)
    assert r.code == 2, r.out + r.err
    err = r.err.strip().splitlines()
    assert len(err) == 1 and why in err[0] and re.match(r"dester-harden: error: [\w./-]+\.yml:\d+: ", err[0]), r.err
    statuses = {f["status"] for f in json.loads(r.out)["findings"]}
    assert PASS not in statuses and ERROR in statuses
    errored = [f for f in json.loads(r.out)["findings"] if f["status"] == ERROR]
    assert all(why in f["reason"] for f in errored)
    r = run_cli("fix", "--dir", str(root), "--yes")
    assert r.code == 2 and len(r.err.strip().splitlines()) == 1 and why in r.err, r.out + r.err
    assert tree_snapshot(root, skip=(JOURNAL_DIR,)) == before


def test_a_failing_check_still_fails_beside_an_unfollowed_include(tmp_path):
    root = included_install(tmp_path)
    text = (root / "docker-compose.yml").read_text().replace("include:\n", "include:\n  - nowhere.yml\n")
    (root / "docker-compose.yml").write_text(text)
    f = findings(audit(root))
    assert f["NET-001"]["status"] == FAIL and f["NET-003"]["status"] == ERROR  # NET-003 passes when followed


def test_a_conflicting_included_service_is_an_input_error(tmp_path):
    root = included_install(tmp_path)
    (root / "docker-compose.yml").write_text("include:\n  - db/compose.yaml\nservices:\n" + API +
                                             "  postgres:\n    image: postgres:15\n")
    r = audit(root)
    assert r.code == 2 and r.out == "", r.out + r.err
    assert len(r.err.strip().splitlines()) == 1 and "conflicts" in r.err and "docker-compose.yml:" in r.err
    with pytest.raises(InputError):
        discover(str(root))


def test_an_included_file_owned_by_another_user_keeps_its_owner(tmp_path):
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("needs root (CI runs as root)")
        pytest.skip("needs root to give the install to uid 65534")
    root = included_install(tmp_path)
    victim = write(tmp_path / "victim", {"compose.yaml": "services:\n  x:\n    image: busybox\n    privileged: true\n"})
    for d, _dirs, names in os.walk(root):
        for p in [d] + [os.path.join(d, n) for n in names]:
            os.lchown(p, NOBODY, NOBODY)
    victim_before, before = tree_snapshot(victim, skip=(JOURNAL_DIR,)), tree_snapshot(root, skip=(JOURNAL_DIR,))
    r = run_cli("fix", "--dir", str(root), "--yes", "--only", "DKR-002,NET-001")
    assert r.code in (0, 1), r.out + r.err
    st = os.stat(root / "db/compose.yaml")
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert "privileged" not in (root / "db/compose.yaml").read_text()
    assert run_cli("undo", "--dir", str(root), "--last", "--yes").code == 0
    assert tree_snapshot(root, skip=(JOURNAL_DIR,)) == before
    assert tree_snapshot(victim, skip=(JOURNAL_DIR,)) == victim_before


def test_unfollowed_reason_counts_in_the_audit_report(tmp_path):
    root = tmp_path / "inst"
    write(root, {"docker-compose.yml": "include:\n  - a.yml\n  - https://x.test/b.yml\nservices:\n" + API})
    inst = discover(str(root), now=FIXED_NOW)
    assert len(inst.unfollowed) == 2 and inst.unfollowed[0].startswith("docker-compose.yml:2:")
    rep = run_audit(inst)
    assert all(f.status != PASS for f in rep.findings)
    assert any("(and 1 more)" in (f.reason or "") for f in rep.findings)


def test_a_path_built_from_a_secret_is_never_shown(tmp_path):
    secret = "Zq8xV3pLw9TbN2rKc7YdF4hJm6sQa1Ue"
    root = write(tmp_path / "inst", {
        "docker-compose.yml": "include:\n  - db/${DB_PASSWORD}.yml\nservices:\n" + API +
                              "  postgres:\n    image: postgres:16\n"
                              "    environment:\n      POSTGRES_PASSWORD: ${DB_PASSWORD}\n",

        ".env": f"DB_PASSWORD={secret}\n"})
    r = audit(root)
    assert r.code == 2 and "cannot follow include: the file it names not found" in r.err, r.err
    assert secret not in r.out + r.err
    r = run_cli("fix", "--dir", str(root), "--yes")
    assert r.code == 2 and secret not in r.out + r.err, r.out + r.err


def test_a_default_is_judged_with_the_included_files_own_variables(tmp_path):
    # ${REDIS_PASSWORD:-changeme} falls back to the default only when REDIS_PASSWORD is unset;
    # the included file's env_file sets it, so no password written in the file is in use.
    root = write(tmp_path / "inst", {
        "docker-compose.yml": "include:\n  - path: cache/redis.yml\n    env_file: cache/redis.env\nservices:\n" + API,
        "cache/redis.yml": "services:\n  redis:\n    image: redis:7\n"
                           "    command: redis-server --requirepass ${REDIS_PASSWORD:-changeme}\n",
        "cache/redis.env": "REDIS_PASSWORD=Zq8xV3pLw9TbN2rKc7YdF4hJm6sQa1Ue\n"})
    f = findings(audit(root))
    assert f["SEC-003"]["status"] == PASS, f["SEC-003"]
    (root / "cache/redis.env").write_text("OTHER=1\n")
    f = findings(audit(root))
    assert f["SEC-003"]["status"] == FAIL and places(f["SEC-003"]) == {("cache/redis.yml", 4)}


@pytest.mark.parametrize("case", sorted(ORACLE_CASES))
def test_the_default_plan_applies_validates_and_undoes_byte_for_byte(tmp_path, case):
    root = ORACLE_CASES[case](tmp_path)
    before = tree_snapshot(root, skip=(JOURNAL_DIR,))
    r = run_cli("fix", "--dir", str(root), "--yes")
    assert r.code in (0, 1), r.out + r.err
    assert "Applied as transaction" in r.out or "Nothing to fix" in r.out or "nothing" in r.out.lower(), r.out
    assert tree_snapshot(root, skip=(JOURNAL_DIR,)) != before
    _compose_json(root)  # Compose still reads the fixed files (and what they include and extend)
    r = run_cli("undo", "--dir", str(root), "--last", "--yes")
    assert r.code == 0, r.out + r.err
    assert tree_snapshot(root, skip=(JOURNAL_DIR,)) == before
