"""What a run is on both sides: its statuses and the stages its metrics are recorded at.

A run is ``CREATED`` when stored, ``QUEUED`` when it waits for a worker, ``STARTED`` while it trains, and ends
``FINISHED``, ``FAILED`` (with the reason) or ``CANCELLED``. Its metrics are recorded per stage: ``before``
training, ``step N`` for an evaluation during training, and ``after`` training.
"""

import enum
import re
from typing import Final


class RunStatus(enum.StrEnum):
    CREATED = "CREATED"
    QUEUED = "QUEUED"
    STARTED = "STARTED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES: Final = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED})

STAGE_BEFORE: Final = "before"  # the base model, before training
STAGE_AFTER: Final = "after"  # the tuned model
_STAGE_STEP = re.compile(r"^step (\d+)$")


def step_stage(step: int) -> str:
    """The stage of an evaluation during training, after ``step`` steps."""
    return f"step {step}"


def stage_step(stage: str) -> int | None:
    """The step of a ``step N`` stage; None for any other stage."""
    match = _STAGE_STEP.match(stage)
    return int(match[1]) if match else None
