"""Following a run: its ``step a/b epoch e/E loss ... lr ... elapsed ...s eta ...s`` log lines, parsed, drive a
progress bar; every other line is printed above the bar."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

STEP_LINE = re.compile(
    r"^step (?P<step>\d+)/(?P<total>\d+) epoch (?P<epoch>\d+)/(?P<epochs>\d+) "
    r"loss (?P<loss>\S+) lr (?P<lr>\S+)(?: elapsed (?P<elapsed>\S+)s)?(?: eta (?P<eta>\S+)s)?(?:\s|$)"
)
Mode = Literal["bar", "lines", "quiet"]


@dataclass(frozen=True)
class StepLine:
    """One training log line: where training is, its loss and learning rate, and the time spent and left."""

    step: int
    total: int
    epoch: int
    epochs: int
    loss: float
    learning_rate: float
    elapsed_s: float = math.nan
    eta_s: float = math.nan


def parse_step(line: str) -> StepLine | None:
    """The step line ``line`` is, or None for any other log line."""
    match = STEP_LINE.match(line.strip())
    if match is None:
        return None
    try:
        return StepLine(
            step=int(match["step"]),
            total=int(match["total"]),
            epoch=int(match["epoch"]),
            epochs=int(match["epochs"]),
            loss=float(match["loss"]),
            learning_rate=float(match["lr"]),
            elapsed_s=float(match["elapsed"]) if match["elapsed"] else math.nan,
            eta_s=float(match["eta"]) if match["eta"] else math.nan,
        )
    except ValueError:
        return None


def step_lines(lines: Iterable[str]) -> list[StepLine]:
    """The step lines among ``lines``, in order (e.g. a run's loss curve)."""
    return [step for step in map(parse_step, lines) if step is not None]


def follow_mode(console: Console, quiet: bool) -> Mode:
    """``quiet``: nothing shown; a terminal: the bar; a pipe or file: every line as it comes."""
    if quiet:
        return "quiet"
    return "bar" if console.is_terminal else "lines"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class RunProgress:
    """Fed a run's log lines one by one (:meth:`feed`): in ``bar`` mode step lines move a progress bar (step,
    epoch, loss, ETA) and other lines are printed above it; in ``lines`` mode every line is printed; in
    ``quiet`` mode nothing is. Use it as a context manager."""

    def __init__(self, console: Console, mode: Mode = "bar", description: str = "training"):
        self.console = console
        self.mode = mode
        self.last: StepLine | None = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("epoch {task.fields[epoch]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("eta {task.fields[eta]}"),
            console=console,
            disable=mode != "bar",
            transient=False,
        )
        self._task: TaskID = self._progress.add_task(description, total=None, epoch="-", loss="-", eta="-")

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def feed(self, line: str) -> StepLine | None:
        """Show ``line``; the step it reports, if it is a step line."""
        step = parse_step(line)
        if self.mode == "lines" or (self.mode == "bar" and step is None):
            self.console.print(line, markup=False, highlight=False)
        if step is not None:
            self.last = step
            self._progress.update(
                self._task,
                total=step.total,
                completed=step.step,
                epoch=f"{step.epoch}/{step.epochs}",
                loss=f"{step.loss:.4f}",
                eta=_duration(step.eta_s),
            )
        return step


def follow(run, console: Console, quiet: bool = False, interval_s: float = 1.0) -> str:
    """Show ``run``'s logs as they come (:class:`RunProgress`) until it ends; its final status."""
    with RunProgress(console, follow_mode(console, quiet)) as progress:
        for line in run.stream_logs(interval_s=interval_s):
            progress.feed(line)
    return run.status()
