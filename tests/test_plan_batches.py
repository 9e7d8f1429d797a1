"""Fix planning grows linearly with services: batched rounds build the same plan.

Fixers whose edits stay inside one service's nodes apply a round's targets in
one batch (checks/fix/planner.py, Planner.each). The one-at-a-time loop, which
re-discovers after every edit, is kept as the reference (``batching = False``):
on random compose files and on many-service installs, both plans must be equal
change by change, refusal by refusal, note by note. And the number of
discoveries must not grow with the number of services.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, Phase, example, given, settings

from checks.fix.planner import Planner
from checks.fix.registry import FIXERS

from .conftest import FIXED_NOW
from .test_edit import compose_docs, make, new_secrets

FIXABLE = [f.id for f in FIXERS]
#: A refusal after an edit that adds lines before it (DKR-003 inserts security_opt into a):
#: the batch, which applies the last target first, once named the refused line as it was
#: before that edit (7), the one-at-a-time loop as the edit leaves it (9).
SHIFTED_REFUSAL = ("services:\n  a:\n    image: example/a:1\n  b:\n    image: example/b:1\n"
                   "    security_opt: &so\n      - no-new-privileges:false\n"
                   "  c:\n    image: example/c:1\n    security_opt: *so\n")
#: No shrinking: an example plans every fix twice, and shrinking one took minutes.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate)


def build(root: Path, host: Path, only: set[str] | None, batching: bool):
    planner = Planner(str(root), "local", None, str(host), FIXED_NOW, new_secrets())
    planner.batching = batching
    return planner.build(only), planner


def same_plan(root: Path, host: Path, only: set[str] | None = None) -> None:
    batched, _ = build(root, host, only, True)
    reference, _ = build(root, host, only, False)
    assert batched.checks == reference.checks
    assert batched.changes == reference.changes
    assert batched.refusals == reference.refusals
    assert batched.notes == reference.notes


@settings(max_examples=int(os.environ.get("EDIT_EXAMPLES", 40)), deadline=None, database=None, phases=PHASES,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(doc=compose_docs())
@example(doc=(SHIFTED_REFUSAL, ""))
def test_batched_plans_equal_one_at_a_time_plans_on_random_compose_files(doc):
    text, env_text = doc
    no_compose = mock.patch("checks.fix.composecheck.compose_available", return_value=False)
    with tempfile.TemporaryDirectory() as tmp, no_compose:
        root, host = make(Path(tmp), text, env_text)
        same_plan(root, host)
        for cid in ("NET-001", "NET-002", "NET-005", "DKR-001", "DKR-002", "DKR-003", "DKR-006", "DKR-008", "FS-004"):
            same_plan(root, host, {cid})


def test_a_refusal_names_the_line_as_the_edits_before_it_leave_it(tmp_path):
    # The plan's diff shows the file as the plan leaves it, and the refused entry is
    # fixed by hand there: line 9 once a got its two security_opt lines, in both modes.
    root, host = make(tmp_path, SHIFTED_REFUSAL)
    with mock.patch("checks.fix.composecheck.compose_available", return_value=False):
        for batching in (True, False):
            plan, _ = build(root, host, {"DKR-003"}, batching)
            assert [r.check for r in plan.refusals] == ["DKR-003", "DKR-003"]
            assert all("docker-compose.yml:9 " in r.reason for r in plan.refusals), plan.refusals


#: Services of different shapes, so one batch meets every kind of edit and some refusals.
SHAPES = [
    '    ports:\n      - "5432:5432"\n',
    '    ports:\n      - target: 5433\n        published: 5433\n',
    '    ports:\n      - "${BIND:-0.0.0.0}:5434:5434"\n',  # refused: interpolated
    "    privileged: true\n    cap_add: [SYS_ADMIN, CHOWN]\n",
    "    security_opt:\n      - seccomp:unconfined\n    logging:\n      driver: json-file\n",
    "    volumes:\n      - /srv/media:/media\n      - /var/run/docker.sock:/var/run/docker.sock\n",
    "    logging:\n      options:\n        max-file: \"5\"\n",
    "",
]


def many(n: int) -> str:
    out = ["# generated\nservices:\n"]
    for i in range(n):
        shape = i % len(SHAPES)
        image = "postgres:16.4" if shape < 3 else "desterlib/api:0.2.0" if shape == 5 else f"example/app{i}:1"
        out.append(f"  svc{i}:\n    image: {image}\n    restart: unless-stopped\n" + SHAPES[i % len(SHAPES)])
    out.append("volumes:\n  data:\n")
    return "".join(out)


def test_a_many_service_plan_equals_the_one_at_a_time_plan(tmp_path):
    root, host = make(tmp_path, many(3 * len(SHAPES)), "BIND=127.0.0.1\n")
    with mock.patch("checks.fix.composecheck.compose_available", return_value=False):
        same_plan(root, host)
        same_plan(root, host, {"NET-001", "DKR-001", "DKR-002", "DKR-006", "FS-004"})


def discoveries(tmp: Path, n: int) -> int:
    tmp.mkdir()
    root, host = make(tmp, many(n))
    calls = []
    real = Planner.inst

    def counted(self):
        calls.append(1)
        return real(self)
    no_compose = mock.patch("checks.fix.composecheck.compose_available", return_value=False)
    with mock.patch.object(Planner, "inst", counted), no_compose:
        plan, _ = build(root, host, None, True)
    assert plan.changes
    return len(calls)


def test_the_number_of_discoveries_does_not_grow_with_services(tmp_path):
    # One at a time, every edit cost a discovery (hundreds here); batched, a
    # handful of rounds per fixer, however many services there are.
    small = discoveries(tmp_path / "small", len(SHAPES))
    large = discoveries(tmp_path / "large", 6 * len(SHAPES))
    assert large == small
