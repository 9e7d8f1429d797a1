"""The running stack as the use cases hand it to the engine, and what they tell of it afterwards.

The default stack is the docker CLI (:class:`checks.live.stack.ComposeStack`), made only when a
recreate needs it, so recovery and the audit import no Docker code in the common case. The stack
is wrapped to record what was recreated (the outcome says "recreated api (healthy in 2.4 s)"); a
failing health gate (:class:`checks.change.stack.GateFailed`) becomes a :class:`Reverted`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from checks.change.plan import Plan, Recreate
    from checks.change.stack import GateFailed, GateResult, Reporter, Stack


@dataclass(frozen=True, slots=True)
class Recreated:
    """Services recreated on the running stack, healthy after ``elapsed`` seconds."""

    services: tuple[str, ...]
    elapsed: float

    def text(self) -> str:
        return f"recreated {', '.join(self.services)} (healthy in {self.elapsed:.1f} s)"


@dataclass(frozen=True, slots=True)
class Reverted:
    """The health gate failed: the change was rolled back by itself (files, commands, the stack)."""

    message: str
    """One line: "api did not become healthy within 120 s (restarted 3 times): the files were restored..."."""
    last_logs: tuple[str, ...] = ()
    """The failing container's last log lines, masked."""
    problems: tuple[str, ...] = field(default_factory=tuple)
    """What the rollback could not put back itself ("recreate api by hand: ...")."""


class DefaultStack:
    """The docker CLI's stack, made when a recreate first needs one."""

    def recreate(self, change: Recreate, secrets: Mapping[str, str], report: Reporter | None = None) -> GateResult:
        from checks.live.stack import ComposeStack

        return ComposeStack().recreate(change, secrets, report)


class RecordingStack:
    """Passes recreates on to ``inner`` and remembers the healthy ones made on apply."""

    def __init__(self, inner: Stack) -> None:
        self.inner = inner
        self.done: list[Recreated] = []

    def recreate(self, change: Recreate, secrets: Mapping[str, str], report: Reporter | None = None) -> GateResult:
        result = self.inner.recreate(change, secrets, report)
        if result.ok and change.when == "apply":
            self.done.append(Recreated(tuple(change.services), result.elapsed))
        return result


def stack_or_default(stack: Stack | None) -> Stack:
    return stack if stack is not None else DefaultStack()


def recording(stack: Stack) -> RecordingStack:
    return RecordingStack(stack)


def reverted(exc: GateFailed, plan: Plan) -> Reverted:
    """The outcome of a failed gate, in the words the faces show."""
    from checks.change.plan import Recreate
    from checks.core.secrets import Masker

    masker = Masker(set(plan.secrets) | set(plan.named_secrets.values()))
    names = ", ".join(sorted({s for c in plan.changes if isinstance(c, Recreate) and c.when == "rollback"
                              for s in c.services})) or "the services"
    problems = tuple(masker.text(p) for p in exc.rollback_problems)
    told = masker.text(str(exc))
    if problems:
        told += ": the files were restored, but " + "; ".join(problems)
    else:
        told += f": the files were restored and {names} recreated with them"
    logs = tuple(masker.text(line) for line in exc.result.last_logs)
    if logs:
        told += "; its last log lines:"
    return Reverted(told, logs, problems)
