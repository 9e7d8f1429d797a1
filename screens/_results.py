"""What the assistant's screens answer with: typed results instead of strings and tuples."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class StepAnswer(enum.Enum):
    """A guided step's answer to the flow."""

    NEXT = "next"
    BACK = "back"


class PreviewChoice(enum.Enum):
    """What the user chose on a step's preview."""

    APPLY = "apply"
    SKIP = "skip"
    BACK = "back"


@dataclass(frozen=True, slots=True)
class ReviewResult:
    """How the review ended: on to the summary, or back to a step (``step``) to change the choices."""

    back_to: str | None = None
    """The step to go back to; None: every preview was answered, go on."""
    went_back: bool = False

    @classmethod
    def next(cls) -> ReviewResult:
        return cls()

    @classmethod
    def back(cls, step: str | None) -> ReviewResult:
        return cls(step, True)
