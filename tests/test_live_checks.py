"""The live checks on LiveState data (no Docker): each fails and passes, skips with the reason of the part
it could not read, and no rendered report ever holds a secret the containers or their logs held."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from checks.audit.findings import ERROR, FAIL, PASS, SKIPPED, Finding
from checks.audit.report import render_json, render_sarif, render_text
from checks.audit.run import exit_code, run_audit
from checks.install.discovery import discover
from checks.install.model import Installation, Service
from checks.live.drift import drift, normal_image
from checks.live.gather import gather
from checks.live.model import (
    Binding,
    Container,
    EngineInfo,
    Listener,
    LiveMount,
    LiveState,
    LogFinding,
    Probe,
    value_digest,
)

from . import installs
from .conftest import FIXED_NOW, run_cli

DAY = 86400.0
NEW_ENGINE = EngineInfo("28.2.2", "1.50", "unix:///var/run/docker.sock")
OLD_ENGINE = EngineInfo("20.10.24+dfsg1", "1.41", "unix:///run/lab/docker.sock")
UNREACHABLE = "the Docker Engine is not reachable at unix:///var/run/docker.sock: permission denied"


def cli_inst(tmp_path: Path, hardened: bool = False) -> Installation:
    root = installs.cli_install(tmp_path, hardened=hardened)
    return discover(str(root), host_root=str(tmp_path), now=FIXED_NOW)


def svc_of(inst: Installation, name: str) -> Service:
    svc = inst.service(name)
    assert svc is not None, name
    return svc


def container_of(inst: Installation, svc: Service, *, created: float = FIXED_NOW - DAY) -> Container:
    """A container that runs exactly what the files say (no drift)."""
    bindings = tuple(Binding(p.host_ip or "", pub, tgt) for p in svc.ports
                     for pub, tgt in zip(p.published_ports, p.target_ports, strict=False))
    mounts = tuple(LiveMount("bind" if m.kind == "bind" else "volume", m.host_path or f"proj_{m.source}",
                             m.target or "", not m.read_only) for m in svc.mounts)
    env = {k: value_digest(v.value) for k, v in svc.environment.items() if v.value is not None}
    env["PATH"] = value_digest("/usr/bin")  # the image's own: never drift
    return Container(f"id-{svc.name}", f"desterlib-{svc.name}", svc.name, "running", None, 0, "", svc.image_name,
                     f"sha256:{svc.name}", created, bindings, mounts, env)


def running(inst: Installation, engine: EngineInfo = NEW_ENGINE, **kw) -> LiveState:
    containers = tuple(container_of(inst, s) for s in inst.services)
    return LiveState("install", engine=engine, containers=containers, listeners=(), **kw)


def audit(inst: Installation, live: LiveState | None, check_id: str, profile: str = "local") -> Finding:
    return run_audit(inst, profile, only={check_id}, live=live).by_id(check_id)


def texts(f: Finding) -> str:
    return "\n".join(f"{e.text} | {e.note or ''}" for e in f.evidence)


# -- no live state, and parts missing ----------------------------------------------------

LIVE_IDS = ("NET-006", "NET-008", "NET-009", "DKR-005", "DKR-009", "OPS-002")


def test_without_live_state_every_live_check_is_skipped_not_run(tmp_path):
    inst = cli_inst(tmp_path)
    report = run_audit(inst, "local")
    for cid in LIVE_IDS:
        f = report.by_id(cid)
        assert (f.status, f.reason) == (SKIPPED, "live checks not run"), cid


@pytest.mark.parametrize("cid", ["NET-008", "DKR-005", "DKR-009"])
def test_engine_checks_skip_with_the_engines_reason(tmp_path, cid):
    inst = cli_inst(tmp_path)
    f = audit(inst, LiveState("install", engine_error=UNREACHABLE, listeners=()), cid)
    assert (f.status, f.reason) == (SKIPPED, UNREACHABLE)


def test_ops002_skips_with_the_logs_reason(tmp_path):
    f = audit(cli_inst(tmp_path), LiveState("install", engine_error=UNREACHABLE, logs_error="no log readable"),
              "OPS-002")
    assert (f.status, f.reason) == (SKIPPED, "no log readable")


def test_net009_skips_with_the_probes_reason(tmp_path):
    f = audit(cli_inst(tmp_path), LiveState("install", probes_error="/proc/net/fib_trie: permission denied"),
              "NET-009")
    assert (f.status, f.reason) == (SKIPPED, "/proc/net/fib_trie: permission denied")


def test_a_live_pass_becomes_error_when_an_include_was_not_followed(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)
    inst.unfollowed.append("docker-compose.yml:3: include x.yml: not found")
    f = audit(inst, running(inst), "DKR-009")
    assert f.status == ERROR


# -- NET-006 -------------------------------------------------------------------------------


def test_net006_fails_from_proc_alone_without_docker(tmp_path):
    inst = cli_inst(tmp_path)
    live = LiveState("install", engine_error=UNREACHABLE,
                     listeners=(Listener("0.0.0.0", 5432, 4), Listener("::", 5432, 6), Listener("0.0.0.0", 3001, 4)))
    f = audit(inst, live, "NET-006")
    assert f.status == FAIL
    assert [e.text for e in f.evidence] == ["listening now on 0.0.0.0:5432 and [::]:5432"]
    assert f.evidence[0].service == "postgres" and f.evidence[0].file == "docker-compose.yml"
    assert "container bindings not read" not in texts(f)


def test_net006_names_the_container_and_all_interfaces_means_ipv6_too(tmp_path):
    inst = cli_inst(tmp_path)
    f = audit(inst, running(inst), "NET-006")
    assert f.status == FAIL and f.severity == "critical"
    assert [e.text for e in f.evidence] == [
        "listening now on 0.0.0.0:5432 and [::]:5432 (container desterlib-postgres)"]


def test_net006_passes_on_loopback_only(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)
    live = replace(running(inst), listeners=(Listener("127.0.0.1", 5432, 4), Listener("::1", 6379, 6),
                                             Listener("0.0.0.0", 22, 4)))
    assert audit(inst, live, "NET-006").status == PASS


def test_net006_flags_a_database_on_a_nonstandard_port_by_its_image(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)
    c = container_of(inst, svc_of(inst, "postgres"))
    live = replace(running(inst), containers=(replace(c, bindings=(Binding("10.0.0.5", 15432, 5432),)),))
    f = audit(inst, live, "NET-006")
    assert [e.text for e in f.evidence] == ["listening now on 10.0.0.5:15432 (container desterlib-postgres)"]


def test_net006_skips_when_neither_proc_nor_docker_answered(tmp_path):
    f = audit(cli_inst(tmp_path), LiveState("install", engine_error=UNREACHABLE, listeners_error="no /proc/net/tcp"),
              "NET-006")
    assert f.status == SKIPPED and UNREACHABLE in (f.reason or "") and "no /proc/net/tcp" in (f.reason or "")


# -- NET-008 -------------------------------------------------------------------------------


def test_net008_fails_on_engine_20_with_a_loopback_publish(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)  # postgres on 127.0.0.1:5432
    f = audit(inst, running(inst, OLD_ENGINE), "NET-008")
    assert f.status == FAIL
    assert f.evidence[0].text.startswith("127.0.0.1:5432 -> 5432 (container desterlib-postgres) on Docker Engine 20.10")
    assert f.evidence[0].line is not None  # the port line the fix edits


def test_net008_passes_on_engine_28(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)
    assert audit(inst, running(inst, NEW_ENGINE), "NET-008").status == PASS


def test_net008_passes_on_engine_20_without_loopback_publishes(tmp_path):
    inst = cli_inst(tmp_path)  # 0.0.0.0 and "": NET-006/NET-001's, not this one
    assert audit(inst, running(inst, OLD_ENGINE), "NET-008").status == PASS


# -- DKR-005 -------------------------------------------------------------------------------


def test_dkr005_fails_on_old_images_with_build_or_pull(tmp_path):
    inst = cli_inst(tmp_path)
    live = running(inst)
    live.containers = tuple(replace(c, image_created=FIXED_NOW - 30 * DAY) for c in live.containers)
    live.built = frozenset({"api"})
    f = audit(inst, live, "DKR-005")
    assert f.status == FAIL
    notes = {e.service: e.note for e in f.evidence}
    assert notes["api"] == "update: docker compose build --pull api && docker compose up -d api"
    assert notes["postgres"] == "update: docker compose pull postgres && docker compose up -d postgres"
    assert "30 days ago" in f.evidence[0].text


def test_dkr005_passes_on_images_younger_than_a_week(tmp_path):
    inst = cli_inst(tmp_path)
    assert audit(inst, running(inst), "DKR-005").status == PASS


def test_dkr005_skips_without_running_containers(tmp_path):
    f = audit(cli_inst(tmp_path), LiveState("install", engine=NEW_ENGINE), "DKR-005")
    assert f.status == SKIPPED and "no container" in (f.reason or "")


# -- DKR-009 and drift ---------------------------------------------------------------------


def test_dkr009_passes_when_what_runs_is_what_the_files_say(tmp_path):
    inst = cli_inst(tmp_path)
    f = audit(inst, running(inst), "DKR-009")
    assert f.status == PASS and not f.evidence


def test_dkr009_one_finding_per_service_listing_every_difference(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)
    (tmp_path / "old").mkdir()
    old = cli_inst(tmp_path / "old")  # the files before the fix: what still runs
    pg = container_of(old, svc_of(old, "postgres"))
    live = replace(running(inst), containers=(pg, container_of(inst, svc_of(inst, "api"))))
    f = audit(inst, live, "DKR-009")
    assert f.status == FAIL and [e.service for e in f.evidence] == ["postgres"]
    ev = f.evidence[0]
    assert ev.text.startswith("fixed on disk, not applied: service postgres runs with the old ports, environment")
    assert ev.text.endswith("and must be recreated")
    assert "5432/tcp published on all interfaces:5432; the files say 127.0.0.1:5432" in (ev.note or "")
    assert "POSTGRES_PASSWORD differs" in (ev.note or "")
    for secret in installs.SECRETS:
        assert secret not in ev.text + (ev.note or "")


def test_drift_finds_mounts_and_image(tmp_path):
    inst = cli_inst(tmp_path)
    api = svc_of(inst, "api")
    c = container_of(inst, api)
    media = next(m for m in c.mounts if m.target == "/media")
    c = replace(c, image="desterlib/api:0.1.0",
                mounts=(replace(media, read_write=True), LiveMount("bind", "/etc", "/host-etc", False)))
    kinds = [(d.kind, d.what) for d in drift(api, c)]
    assert ("mounts", "/media is mounted read-write; the files say read-only") in kinds
    assert ("mounts", "/host-etc is bound from /etc; the files mount it no more") in kinds
    assert ("image", "runs desterlib/api:0.1.0; the files say desterlib/api:latest") in kinds


def test_drift_ignores_the_images_own_environment_and_equal_image_spellings(tmp_path):
    inst = cli_inst(tmp_path)
    api = svc_of(inst, "api")
    c = replace(container_of(inst, api), image="docker.io/desterlib/api:latest")
    assert drift(api, c) == []
    assert normal_image("postgres") == normal_image("docker.io/library/postgres:latest")


def test_drift_reports_an_unset_variable_by_name(tmp_path):
    inst = cli_inst(tmp_path)
    api = svc_of(inst, "api")
    c = container_of(inst, api)
    c = replace(c, env={k: v for k, v in c.env.items() if k != "DATABASE_URL"})
    assert [d.what for d in drift(api, c)] == ["DATABASE_URL is not set in the container"]


def test_dkr009_a_service_not_running_is_information_not_drift(tmp_path):
    inst = cli_inst(tmp_path)
    live = replace(running(inst), containers=(container_of(inst, svc_of(inst, "postgres")),))
    f = audit(inst, live, "DKR-009")
    assert f.status == PASS
    assert [e.text for e in f.evidence] == ["service api is not running"]


# -- OPS-002 -------------------------------------------------------------------------------


def test_ops002_fails_on_a_leaked_database_url_with_line_numbers(tmp_path):
    live = LiveState("install", logs=(LogFinding("docker logs api", leaked_lines=(1, 40, 80), lines=90),))
    f = audit(cli_inst(tmp_path), live, "OPS-002")
    assert f.status == FAIL
    assert [e.text for e in f.evidence] == [
        "3 lines of docker logs api hold DATABASE_URL with its password (lines 1, 40, 80)"]


def test_ops002_fails_on_bursts_and_passes_below_the_thresholds(tmp_path):
    inst = cli_inst(tmp_path)
    burst = LogFinding("desterlib-data/logs/combined.log", too_many_requests={"2026-12-01T14": 50, "2026-12-01T15": 3},
                       server_errors={"2026-12-01T14": 20}, lines=500)
    f = audit(inst, LiveState("install", logs=(burst,)), "OPS-002")
    assert [e.text for e in f.evidence] == [
        '50 "Too many requests" (429) answers in desterlib-data/logs/combined.log in the hour 2026-12-01T14',
        "20 server errors (5xx) in desterlib-data/logs/combined.log in the hour 2026-12-01T14"]
    calm = replace(burst, too_many_requests={"2026-12-01T14": 49}, server_errors={"2026-12-01T14": 19})
    assert audit(inst, LiveState("install", logs=(calm,)), "OPS-002").status == PASS


def test_ops002_clean_logs_with_an_unreadable_one_is_no_pass(tmp_path):
    live = LiveState("install", logs=(LogFinding("docker logs api", lines=10),), logs_error="cannot read combined.log")
    f = audit(cli_inst(tmp_path), live, "OPS-002")
    assert (f.status, f.reason) == (SKIPPED, "cannot read combined.log")


# -- NET-009 -------------------------------------------------------------------------------


def test_net009_fails_on_the_admin_surface_with_severity_by_profile(tmp_path):
    inst = cli_inst(tmp_path)
    live = LiveState("install", addresses=("10.77.0.1",), probes=(
        Probe("http://10.77.0.1:3001/api/docs", "/api/docs", 200, "Swagger UI"),
        Probe("http://10.77.0.1:3001/api/v1/settings", "/api/v1/settings", 200, "the TMDB API key"),
        Probe("http://10.77.0.1:3001/health", "/health", 200, None)))
    f = audit(inst, live, "NET-009")
    assert f.status == FAIL and f.severity == "medium"
    assert [e.text for e in f.evidence] == ["GET http://10.77.0.1:3001/api/docs answered 200",
                                            "GET http://10.77.0.1:3001/api/v1/settings answered 200"]
    assert audit(inst, live, "NET-009", "internet").severity == "critical"


def test_net009_passes_when_nothing_answers_or_nothing_is_published(tmp_path):
    inst = cli_inst(tmp_path)
    closed = LiveState("install", addresses=("10.77.0.1",),
                       probes=(Probe("http://10.77.0.1:3001/api/docs", "/api/docs", None),))
    assert audit(inst, closed, "NET-009").status == PASS
    assert audit(inst, LiveState("install", addresses=("10.77.0.1",)), "NET-009").status == PASS


# -- no secret in any report ---------------------------------------------------------------


class _FakeEngine:
    """An Engine whose containers' logs hold the password, as DesterLib's do."""

    def __init__(self, containers: tuple[Container, ...], lines: list[str]) -> None:
        self._containers, self._lines = containers, lines

    def engine_info(self) -> EngineInfo:
        return OLD_ENGINE

    def containers(self, project: str) -> tuple[Container, ...]:
        return self._containers

    def logs(self, container_id: str, tail: int = 2000) -> list[str]:
        return list(self._lines)

    def close(self) -> None:
        pass


def test_no_secret_in_any_rendered_report_even_when_env_and_logs_held_it(tmp_path):
    inst = cli_inst(tmp_path)
    password = installs.CLI_PASSWORD
    url = f"postgresql://desterlib:{password}@postgres:5432/desterlib?schema=public"
    old = container_of(inst, svc_of(inst, "api"))
    # It ran with another password once: the env digest differs, the name is all the report may say.
    api = replace(old, env=dict(old.env, DATABASE_URL=value_digest(url.replace(password, "Old" + password))))
    containers = (container_of(inst, svc_of(inst, "postgres"), created=FIXED_NOW - 40 * DAY), api)
    lines = [f"2026-12-01T14:00:0{i}Z info: Database: {url}" for i in range(3)]
    logs_dir = Path(inst.root) / "logs"
    logs_dir.mkdir()
    (logs_dir / "combined.log").write_text("\n".join(lines) + "\n")
    live = gather(inst, proc_net=str(tmp_path / "no-proc"), probe=False, engine=lambda: _FakeEngine(containers, lines),
                  now=FIXED_NOW)
    report = run_audit(inst, "local", live=live)
    assert report.by_id("OPS-002").status == FAIL and report.by_id("DKR-009").status == FAIL
    for out in (render_text(report), render_json(report), render_sarif(report)):
        assert password not in out
        assert "Old" + password not in out
    assert "DATABASE_URL differs" in render_text(report)


# -- the CLI -------------------------------------------------------------------------------


def test_cli_audit_no_live_says_not_run(tmp_path):
    root = installs.cli_install(tmp_path)
    r = run_cli("audit", "--dir", str(root), "--format", "json", "--no-live", env={"DESTER_HARDEN_NO_LIVE": ""})
    findings = {f["id"]: f for f in json.loads(r.out)["findings"]}
    for cid in LIVE_IDS:
        assert (findings[cid]["status"], findings[cid].get("reason")) == (SKIPPED, "live checks not run"), cid


def test_cli_audit_with_an_unreachable_engine_skips_with_the_reason_and_keeps_the_exit_code(tmp_path):
    root = installs.cli_install(tmp_path, hardened=True)
    sock = tmp_path / "nothing-here.sock"
    env = {"DESTER_HARDEN_NO_LIVE": "", "DOCKER_HOST": f"unix://{sock}"}
    base = run_cli("audit", "--dir", str(root), "--format", "json", "--no-live")
    r = run_cli("audit", "--dir", str(root), "--format", "json", "--only", "DKR-009,NET-008,DKR-005,FS-001", env=env)
    findings = {f["id"]: f for f in json.loads(r.out)["findings"]}
    for cid in ("DKR-009", "NET-008", "DKR-005"):
        assert findings[cid]["status"] == SKIPPED and str(sock) in findings[cid]["reason"], findings[cid]
    assert r.code == base.code == 0
    text = run_cli("audit", "--dir", str(root), "--only", "DKR-009", env=env).out
    flat = "".join(line.strip() for line in text.splitlines())  # the text report wraps at 80 columns
    assert str(sock) in flat and "1 skipped" in flat


def test_the_hermetic_environment_turns_the_live_layer_off():
    from checks.assistant.usecases import live_state

    assert os.environ.get("DESTER_HARDEN_NO_LIVE") == "1"
    assert live_state("/nonexistent") is None


def test_exit_code_ignores_skipped_live_checks(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)
    with_skips = run_audit(inst, "local", live=LiveState("install", engine_error=UNREACHABLE, listeners=()))
    without = run_audit(inst, "local")
    assert exit_code(with_skips, "high") == exit_code(without, "high")


# -- the re-audit against the baseline -----------------------------------------------------


def test_reaudit_live_drift_is_new_and_an_unreachable_engine_is_unchecked_not_fixed(tmp_path):
    from checks.assistant.baseline import Baseline
    from checks.assistant.baseline import drift as baseline_drift

    inst = cli_inst(tmp_path, hardened=True)
    clean = run_audit(inst, "local", live=running(inst))
    assert clean.by_id("DKR-009").status == PASS
    base = Baseline(FIXED_NOW, "local", clean.score, {f.id: f.status for f in clean.findings}, {})
    (tmp_path / "old").mkdir()
    old = cli_inst(tmp_path / "old")
    drifted = replace(running(inst), containers=(container_of(old, svc_of(old, "postgres")),
                                                 container_of(inst, svc_of(inst, "api"))))
    now = baseline_drift(base, run_audit(inst, "local", live=drifted))
    assert "DKR-009" in [i.finding.id for i in now.regressions + now.new]
    gone = baseline_drift(base, run_audit(inst, "local", live=LiveState("install", engine_error=UNREACHABLE,
                                                                        listeners=())))
    assert "DKR-009" in [i.finding.id for i in gone.unchecked]
    assert "DKR-009" not in [i.finding.id for i in gone.fixed]


def test_usecases_reaudit_runs_the_live_checks(tmp_path, monkeypatch):
    from checks.assistant import usecases
    from checks.assistant.baseline import save_baseline

    root = installs.cli_install(tmp_path, hardened=True)
    inst = discover(str(root), now=FIXED_NOW)
    save_baseline(str(root), run_audit(inst, "local"), "local", None, FIXED_NOW)
    seen = []

    def fake_live_state(install, **kw):
        seen.append(install.root)
        return LiveState("install", engine_error=UNREACHABLE, listeners=())

    monkeypatch.setattr(usecases, "live_state", fake_live_state)
    r = usecases.reaudit(str(root), now=FIXED_NOW)
    assert seen == [str(root)]
    assert r.report.by_id("DKR-009").reason == UNREACHABLE
    assert usecases.reaudit(str(root), now=FIXED_NOW, live=False).report.by_id("DKR-009").reason == \
        "live checks not run"


def test_every_format_shows_the_skipped_reason(tmp_path):
    inst = cli_inst(tmp_path, hardened=True)
    report = run_audit(inst, "local", live=LiveState("install", engine_error=UNREACHABLE, listeners=()))
    sarif = json.loads(render_sarif(report))
    notes = [n["message"]["text"] for n in sarif["runs"][0]["invocations"][0]["toolExecutionNotifications"]]
    assert f"DKR-009 skipped: {UNREACHABLE}" in notes
    data = json.loads(render_json(report))
    assert {f["id"]: f.get("reason") for f in data["findings"]}["NET-008"] == UNREACHABLE
    flat = " ".join(line.strip() for line in render_text(report).splitlines())
    assert UNREACHABLE in flat


def test_no_live_state_is_read_when_no_live_check_is_asked_for(tmp_path, monkeypatch):
    from checks.assistant import usecases

    monkeypatch.delenv("DESTER_HARDEN_NO_LIVE")
    inst = cli_inst(tmp_path)
    assert usecases.live_state(inst, only={"FS-001", "NET-001"}) is None
    firewall = {"NET-007", "FW-001", "FW-002", "FW-003", "FW-004"}
    assert usecases.live_state(inst, skip={c for c in LIVE_IDS} | firewall) is None
    state = usecases.live_state(inst, only={"NET-006"}, probe=False, logs=False)
    assert state is not None and state.probes_error and state.logs_error  # not asked: not checked, never passed
