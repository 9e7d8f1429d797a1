"""The firewall plans without a firewall: the profile's rules, the SSH lockout guard, ufw's file formats
and the fixer's plan (the real ufw is in tests/test_fw_ufw_real.py).

The user.rules samples in tests/data/ufw were written by real ufw 0.36.2 in the firewall sandbox
(``ufw allow 22/tcp``, ``ufw allow from 10.77.0.0/24 to any port 3001 proto tcp``, ``ufw allow
5432/tcp``, ``ufw deny 6379``, ``ufw deny 2222/tcp comment 'old ssh'``...).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from checks.change.plan import Command, FileEdit
from checks.core.sysroot import SystemRoot
from checks.firewall import guard, ufw, ufwrules
from checks.firewall.wants import TAILSCALE_V4, TAILSCALE_V6, Want, WantError, wanted
from checks.install.discovery import discover
from checks.live.fwmodel import FirewallState, FwRule, SshSession
from checks.live.model import Binding, Container, EngineInfo, LiveState

DATA = Path(__file__).parent / "data" / "ufw"
COMPOSE = """services:
  api:
    image: desterlib/api:1.4.2
    ports:
      - "3001:3001"
  postgres:
    image: postgres:15-alpine
    ports:
      - "5432:5432"
"""


@pytest.fixture
def inst(tmp_path):
    d = tmp_path / "install"
    d.mkdir()
    (d / "docker-compose.yml").write_text(COMPOSE)
    return discover(str(d))


def _fw(**kw: object) -> FirewallState:
    base = FirewallState("ufw", True, ufw_installed=True, lan_networks=("192.168.1.0/24", "fd00:1::/64"),
                         ssh_ports=(22,), ssh_session=SshSession("192.168.1.50", 50000, "192.168.1.20", 22))
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


def _live(*containers: Container) -> LiveState:
    return LiveState(project="install", engine=EngineInfo("20.10.24", "1.41", "unix:///x"), containers=containers)


def _c(service: str, image: str, *bindings: Binding) -> Container:
    return Container(id=service, name=service, service=service, status="running", health=None, restart_count=0,
                     started_at="", image=image, image_id="x", image_created=None, bindings=bindings)


# -- wanted -----------------------------------------------------------------------------------
def test_local_profile_ssh_first_api_from_each_lan_network_db_denied_default_deny(inst):
    ws = wanted("local", _fw(), inst, None)
    assert [w.text() for w in ws] == [
        "allow 22/tcp", "allow 3001/tcp from 192.168.1.0/24", "allow 3001/tcp from fd00:1::/64",
        "deny 5432/tcp", "deny 6379/tcp", "deny everything"]
    assert ws[1].forwarded and ws[3].forwarded and not ws[4].forwarded  # the compose files publish 3001, 5432
    assert ws[2].v6 is True and ws[1].v6 is False


def test_local_profile_without_a_lan_network_is_refused_not_opened_to_all(inst):
    with pytest.raises(WantError, match="no LAN network"):
        wanted("local", _fw(lan_networks=()), inst, None)


def test_tailscale_profile_allows_the_tailnet_and_the_interface(inst):
    ws = wanted("tailscale", _fw(tailscale=True), inst, None)
    texts = [w.text() for w in ws]
    assert f"allow 3001/tcp from {TAILSCALE_V4}" in texts and f"allow 3001/tcp from {TAILSCALE_V6}" in texts
    assert "allow 3001/tcp in on tailscale0" in texts
    assert not any("192.168" in t for t in texts)


def test_internet_profile_opens_80_and_443_only_and_denies_a_published_api(inst):
    ws = wanted("internet", _fw(), inst, None)
    allows = [w.text() for w in ws if w.action == "allow"]
    assert allows == ["allow 22/tcp", "allow 80/tcp", "allow 443/tcp"]
    assert "deny 3001/tcp" in [w.text() for w in ws]  # published by Docker, not part of the profile


def test_ssh_ports_and_the_session_port_come_first_and_22_when_none_seen(inst):
    ws = wanted("local", _fw(ssh_ports=(2222,), ssh_session=SshSession("10.0.0.9", 1, "10.0.0.1", 2200)), inst, None)
    assert [w.port for w in ws[:2]] == [2200, 2222]
    ws = wanted("local", _fw(ssh_ports=(), ssh_session=None), inst, None)
    assert ws[0].port == 22 and "no sshd" in ws[0].why


def test_forwarded_comes_from_the_running_containers_when_the_engine_answered(inst):
    live = _live(_c("api", "desterlib/api", Binding("127.0.0.1", 3001, 3001)),
                 _c("postgres", "postgres:15", Binding("", 5433, 5432)))
    ws = wanted("local", _fw(), inst, live)
    by = {(w.action, w.port): w for w in ws}
    assert not by[("allow", 3001)].forwarded  # published on loopback only: DNAT does not forward it
    assert by[("deny", 5433)].forwarded  # what the db service really publishes


# -- guard --------------------------------------------------------------------------------------
S = SshSession("192.168.1.50", 50000, "192.168.1.20", 2222)


def test_guard_refuses_an_existing_deny_above_the_ssh_allow():
    rules = [FwRule("deny", 2222, "tcp", text="2222/tcp DENY IN Anywhere"), FwRule("allow", 2222, "tcp")]
    v = guard.evaluate(rules, S)
    assert not v.ok and "rule 1 (2222/tcp DENY IN Anywhere)" in v.reason and "cut" in v.reason


def test_guard_passes_when_the_allow_comes_first_and_refuses_when_nothing_allows():
    assert guard.evaluate([Want("allow", 2222), Want("deny", 2222)], S).ok
    v = guard.evaluate([Want("allow", 22)], S)
    assert not v.ok and "default is deny" in v.reason


def test_guard_source_restricted_allow_that_excludes_the_session_is_refused():
    v = guard.evaluate([Want("allow", 2222, source="10.0.0.0/8")], S)
    assert not v.ok  # an ssh_from="lan" that is not where the session comes from
    assert guard.evaluate([Want("allow", 2222, source="192.168.0.0/16")], S).ok


def test_guard_an_interface_deny_it_cannot_decide_counts_against_the_plan():
    assert not guard.evaluate([Want("deny", None, proto="any", interface="eth0"), Want("allow", 2222)], S).ok


def test_never_a_deny_before_the_ssh_allow():
    v = guard.check_order([Want("deny", 5432), Want("allow", 22)], [22])
    assert not v.ok and "deny 5432/tcp is ordered before the SSH allow allow 22/tcp" in v.reason
    assert guard.check_order([Want("allow", 22), Want("deny", 5432)], [22]).ok


def test_guard_refuses_a_session_whose_port_cannot_be_determined():
    fw = _fw(ssh_session=None)
    v = guard.guard(fw, [Want("allow", 22)], environ={"SSH_TTY": "/dev/pts/0"})
    assert not v.ok and "could not be determined" in v.reason
    assert guard.guard(fw, [Want("allow", 22)], environ={}).ok


def test_the_wanted_rules_always_pass_the_guard(inst):
    fw = _fw(ssh_ports=(2222,), ssh_session=S)
    ws = wanted("local", fw, inst, None)
    existing = [FwRule("deny", 2222, "tcp")]  # after ours in user.rules: never reached by the session
    assert guard.guard(fw, [*ufwrules.user_wants(ws), *existing], environ={}).ok


# -- ufw's formats ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["user.rules.sample", "user6.rules.sample"])
def test_user_rules_round_trip_byte_for_byte(name):
    text = (DATA / name).read_text()
    assert ufwrules.parse_user_rules(text).render() == text


def test_rendered_blocks_are_exactly_what_ufw_writes():
    text = (DATA / "user.rules.sample").read_text()
    blocks = {b.tuple_line: b.lines for b in ufwrules.parse_user_rules(text).blocks}
    for w in (Want("allow", 22), Want("allow", 3001, source="10.77.0.0/24"), Want("deny", 6379, proto="any"),
              Want("allow", None, proto="any", source="10.0.0.0/8"),
              Want("allow", 3001, source="100.64.0.0/10", interface="tailscale0")):
        b = ufwrules.rule_block(w, v6=False)
        assert b is not None and blocks[b.tuple_line] == b.lines
    text6 = (DATA / "user6.rules.sample").read_text()
    blocks6 = {b.tuple_line: b.lines for b in ufwrules.parse_user_rules(text6).blocks}
    b6 = ufwrules.rule_block(Want("allow", 3001, source="fd77::/64"), v6=True)
    assert b6 is not None and blocks6[b6.tuple_line] == b6.lines
    assert ufwrules.rule_block(Want("allow", 3001, source="fd77::/64"), v6=False) is None


def test_merge_puts_ours_first_removes_db_allows_and_is_idempotent():
    current = ufwrules.parse_user_rules((DATA / "user.rules.sample").read_text())
    ws = [Want("allow", 22), Want("deny", 5432), Want("deny", None, proto="any")]
    merged, removed = ufwrules.merge_user_rules(current, ws, False, {5432})
    tuples = [b.tuple_line for b in merged.blocks]
    assert tuples[0].endswith("allow tcp 22 0.0.0.0/0 any 0.0.0.0/0 in")
    assert tuples[1].endswith("deny tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in")
    assert removed == ["allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in"]  # FW-002
    assert sum("tcp 22 " in t for t in tuples) == 1  # the user's own `allow 22/tcp` is ours now, once
    assert any("comment=6f6c6420737368" in t for t in tuples)  # the user's other rules stay, comments too
    route = ufwrules.parse_user_rules(merged.render().replace(
        "### END RULES ###", "### tuple ### route:allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in\n"
        "-A ufw-user-forward -p tcp --dport 5432 -j ACCEPT\n\n### END RULES ###"))
    assert ufwrules.merge_user_rules(route, ws, False, {5432})[1] == ["route:allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in"]
    again, removed2 = ufwrules.merge_user_rules(merged, ws, False, {5432})
    assert again.render() == merged.render() and removed2 == []


def test_after_rules_block_matches_the_original_port_and_is_replaced_not_duplicated():
    ws = [Want("allow", 22), Want("allow", 3001, source="10.77.0.0/24", forwarded=True, v6=False),
          Want("deny", 5432, forwarded=True), Want("deny", None, proto="any")]
    base = "*filter\n:ufw-after-input - [0:0]\nCOMMIT\n"
    once = ufw.with_block(base, ws, v6=False)
    assert ufw.with_block(once, ws, v6=False) == once
    assert ufw.strip_block(once) == base
    lines = ufw.block_lines(once)
    assert lines == [
        "-A DH-DOCKER -i docker0 -j RETURN", "-A DH-DOCKER -i br-+ -j RETURN",
        "-A DH-DOCKER -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-A DH-DOCKER -s 10.77.0.0/24 -p tcp -m conntrack --ctorigdstport 3001 --ctdir ORIGINAL -j RETURN",
        "-A DH-DOCKER -p tcp -m conntrack --ctorigdstport 5432 --ctdir ORIGINAL -j DROP",
        "-A DH-DOCKER -p tcp -m conntrack --ctorigdstport 3001 --ctdir ORIGINAL -j DROP"]
    assert ":DOCKER-USER - [0:0]" in once and "-A DOCKER-USER -j DH-DOCKER" in once
    assert ufw.block_lines(base) is None


def _sysroot(tmp_path: Path) -> SystemRoot:
    root = tmp_path / "root"
    (root / "etc" / "default").mkdir(parents=True)
    shutil.copytree("/etc/ufw", root / "etc" / "ufw") if Path("/etc/ufw").is_dir() else None
    if not (root / "etc" / "ufw").is_dir():
        pytest.skip("ufw is not installed here: its package files are the input of this test")
    (root / "etc" / "default" / "ufw").write_text('IPV6=yes\nDEFAULT_INPUT_POLICY="ACCEPT"\n')
    (root / "etc" / "ufw" / "ufw.conf").write_text("ENABLED=no\nLOGLEVEL=low\n")
    return SystemRoot(str(root))


def test_ufw_plan_edits_only_under_its_system_dirs_and_a_second_plan_is_empty(tmp_path, inst):
    sr = _sysroot(tmp_path)
    ws = wanted("local", _fw(), inst, None)
    bp = ufw.plan(ws, _fw(), sr, inst)
    paths = {e[0] for e in bp.edits}
    etc = sr.path("/etc/ufw")
    assert paths == {f"{etc}/user.rules", f"{etc}/user6.rules", f"{etc}/after.rules", f"{etc}/after6.rules",
                     f"{etc}/ufw.conf", sr.path("/etc/default/ufw")}
    assert all(any(p.startswith(d + "/") for d in bp.system_dirs) for p in paths)
    after = {e[0]: e[2].decode() for e in bp.edits}
    assert 'DEFAULT_INPUT_POLICY="DROP"' in after[sr.path("/etc/default/ufw")]
    assert "ENABLED=yes" in after[f"{etc}/ufw.conf"]
    assert "### END RULES ###" in after[f"{etc}/user.rules"]  # the package's short file, in ufw's own form now
    assert bp.sync[1:] == ("-m", "checks.firewall.sync", "ufw", "--root", sr.root)
    assert bp.commands[0] == "ufw insert 1 allow 22/tcp"
    for path, _before, data, _m, _o in bp.edits:
        Path(path).write_bytes(data)
    assert ufw.plan(ws, _fw(), sr, inst).edits == []


def test_ufw_plan_removes_a_database_allow_and_says_the_ufw_delete_command(tmp_path, inst):
    sr = _sysroot(tmp_path)
    shutil.copy(DATA / "user.rules.sample", sr.path("/etc/ufw/user.rules"))
    ws = wanted("local", _fw(), inst, None)
    bp = ufw.plan(ws, _fw(), sr, inst)
    assert bp.commands[0] == "ufw delete allow 5432/tcp"
    assert any(n.startswith("FW-002: the rule 'allow tcp 5432 ") for n in bp.notes)
    after = next(e[2].decode() for e in bp.edits if e[0].endswith("/user.rules"))
    assert "allow tcp 5432" not in after and after.index("allow tcp 22 ") < after.index("deny tcp 2222 ")
    assert ufw._delete_command("route:allow tcp 5432 0.0.0.0/0 any 0.0.0.0/0 in") == \
        "ufw route delete allow to any port 5432 proto tcp"
    for path, _before, data, _m, _o in bp.edits:
        Path(path).write_bytes(data)
    assert ufw.plan(ws, _fw(), sr, inst).edits == []


def test_a_symlinked_ufw_dir_is_refused(tmp_path, inst):
    (tmp_path / "r" / "etc").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "r" / "etc" / "ufw").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="not a directory"):
        ufw.plan([Want("allow", 22)], _fw(), SystemRoot(str(tmp_path / "r")), inst)


# -- the fixer --------------------------------------------------------------------------------------
def _planner(inst, sysroot: SystemRoot, live: LiveState | None):
    from checks.fix.planner import Planner

    return Planner(inst.root, "local", host_root=sysroot.root, live=live)


def _fix(p):
    from checks.fix.firewall import fix_firewall

    fix_firewall(p)
    return p._assemble(["FW-001"])


def test_the_fixer_plans_files_inside_the_sync_pair_with_confirm_or_revert(tmp_path, inst):
    sr = _sysroot(tmp_path)
    live = _live(_c("api", "desterlib/api", Binding("", 3001, 3001)),
                 _c("postgres", "postgres:15", Binding("0.0.0.0", 5432, 5432)))
    live.firewall = _fw(active=False)
    plan = _fix(_planner(inst, sr, live))
    cmds = [c for c in plan.changes if isinstance(c, Command)]
    edits = [c for c in plan.changes if isinstance(c, FileEdit)]
    assert plan.changes[0] is cmds[0] and cmds[0].argv == ("true",) and cmds[0].inverse[1:3] == (
        "-m", "checks.firewall.sync")
    assert plan.changes[-1] is cmds[-1] and cmds[-1].inverse == ("true",) and cmds[-1].argv == cmds[0].inverse
    assert all(c.host for c in cmds)
    assert {e.path for e in edits} >= {sr.path("/etc/ufw/user.rules"), sr.path("/etc/ufw/after.rules")}
    assert set(plan.system) == {sr.path("/etc/ufw"), sr.path("/etc/default")}
    assert plan.revert_after == 60.0
    assert any(n.startswith("Firewall (ufw, local profile), in this order: allow 22/tcp;") for n in plan.notes)
    assert any("ufw insert 1 allow 22/tcp" in n for n in plan.notes)
    assert not any("OUTSIDE the installation" in n for n in plan.notes)


@pytest.mark.parametrize(("fw", "why"), [
    (None, "could not be read"),
    (FirewallState("none", False, errors=()), "ufw is not installed: apt install ufw"),
    (FirewallState("ufw", True, ufw_installed=True, errors=("ip6tables: permission denied",)),
     "could not be read (ip6tables: permission denied)"),
    (FirewallState("ufw", True, ufw_installed=True, lan_networks=(), ssh_ports=(22,)), "no LAN network"),
    (FirewallState("ufw", True, ufw_installed=True, lan_networks=("10.0.0.0/8",), mixed_backends=True),
     "both iptables-legacy and nf_tables"),
])
def test_the_fixer_refuses_rather_than_guess(tmp_path, inst, fw, why):
    sr = _sysroot(tmp_path)
    live = _live()
    live.firewall = fw
    live.firewall_error = "ufw status timed out" if fw is None else None
    plan = _fix(_planner(inst, sr, live))
    assert plan.changes == [] and plan.revert_after is None
    assert any(why in r.reason for r in plan.refusals), plan.refusals


def test_the_fixer_refuses_a_plan_the_guard_says_would_cut_the_session(tmp_path, inst, monkeypatch):
    sr = _sysroot(tmp_path)
    live = _live()
    live.firewall = _fw(ssh_session=None)
    monkeypatch.setenv("SSH_CONNECTION", "")
    monkeypatch.setenv("SSH_TTY", "/dev/pts/3")
    plan = _fix(_planner(inst, sr, live))
    assert plan.changes == []
    assert any(r.check == "FW-003" and "could not be determined" in r.reason for r in plan.refusals)


def test_sync_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, msg in ((["bogus"], "invalid choice"), (["ufw", "--root", str(tmp_path / "nope")],
                                                       "not a directory")):
        done = subprocess.run([sys.executable, "-m", "checks.firewall.sync", *args], capture_output=True, text=True,
                              cwd=Path(__file__).parent.parent)
        assert done.returncode == 2 and msg in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_sync_under_a_root_that_ufw_does_not_read_is_refused_before_any_command(tmp_path):
    calls = []

    def runner(argv, timeout):
        calls.append(argv)
        raise AssertionError("no command may run")

    with pytest.raises(ufw.SyncError, match="ufw reads /etc/ufw"):
        ufw.sync(_sysroot(tmp_path), runner)
    assert calls == []
