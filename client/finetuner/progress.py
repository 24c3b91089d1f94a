"""Following a run: its log records (``finetuner_protocol.logs``) drive a progress bar, read field by field: the
training's length (``train_begin``) sets the bar's total, each ``step`` moves it (step, epoch, loss, ETA), and a
record that starts a part of the run (building, evaluating, training, saving) names the bar; a model's download
(``download`` records) moves a bar of its own (MB done of the model's size, rate, ETA) until it is complete; every
other record is printed above the bars as its text line."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from finetuner_protocol.logs import Download, Evaluating, LogRecord, Step, TrainBegin

Mode = Literal["bar", "lines", "quiet"]


def steps(records: Iterable[LogRecord]) -> list[Step]:
    """The training steps among ``records``, in order (e.g. a run's loss curve)."""
    return [record for record in records if isinstance(record, Step)]


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


def _phase(record: LogRecord) -> str | None:
    """What the bar is named while the part of the run that ``record`` starts goes on."""
    if isinstance(record, Evaluating):
        return f"evaluating ({record.stage})"
    return record.phase


def _training(epoch: str = "-", loss: str = "-", eta: str = "-") -> str:
    return f"epoch {epoch} loss {loss} eta {eta}"


class RunProgress:
    """Fed a run's log records one by one (:meth:`feed`): in ``bar`` mode steps move a progress bar (step, epoch,
    loss, ETA; its total known from the training's first record), a download moves a second bar while it goes on,
    and other records are printed above them as text;
    in ``lines`` mode every record's text line is printed; in ``quiet`` mode nothing is. Use it as a context
    manager."""

    def __init__(self, console: Console, mode: Mode = "bar", description: str = "training"):
        self.console = console
        self.mode = mode
        self.last: Step | None = None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[detail]}"),
            console=console,
            disable=mode != "bar",
            transient=False,
        )
        self._task: TaskID = self._progress.add_task(description, total=None, count="", detail=_training())
        self._download: TaskID | None = None  # the bar of a download going on

    def __enter__(self) -> RunProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._progress.stop()

    def feed(self, record: LogRecord) -> Step | None:
        """Show ``record``; the step it reports, if it is one."""
        step = record if isinstance(record, Step) else None
        if (phase := _phase(record)) is not None:
            self._progress.update(self._task, description=phase)
        if isinstance(record, TrainBegin):
            self._progress.update(
                self._task,
                total=record.total_steps,
                count=f"0/{record.total_steps}",
                detail=_training(f"-/{record.epochs}"),
            )
        if step is not None:
            self.last = step
            self._progress.update(
                self._task,
                total=step.total_steps,
                completed=step.step,
                count=f"{step.step}/{step.total_steps}",
                detail=_training(f"{step.epoch}/{step.epochs}", f"{step.loss:.4f}", _duration(step.eta_s)),
            )
        moved = step is not None or (isinstance(record, Download) and self._show_download(record))
        if self.mode == "lines" or (self.mode == "bar" and not moved):
            self.console.print(record.text(), markup=False, highlight=False)
        return step

    def _show_download(self, record: Download) -> bool:
        """Move the download's bar (added at its first record); False when the download is complete or waits (the
        bar goes, the record is printed)."""
        if record.waiting or record.complete:
            if self._download is not None:
                self._progress.remove_task(self._download)
                self._download = None
            return False
        left = (record.total_bytes - record.done_bytes) / record.rate_bps if record.rate_bps > 0 else math.nan
        fields = {
            "total": record.total_bytes,
            "completed": record.done_bytes,
            "count": f"{record.done_bytes / 1e6:.1f}/{record.total_bytes / 1e6:.1f} MB",
            "detail": f"{record.rate_bps / 1e6:.1f} MB/s eta {_duration(left)}",
        }
        if self._download is None:
            self._download = self._progress.add_task(f"downloading {record.model}", **fields)
        else:
            self._progress.update(self._download, **fields)
        return True


def follow(run, console: Console, quiet: bool = False, interval_s: float = 1.0) -> str:
    """Show ``run``'s logs as they come (:class:`RunProgress`) until it ends; its final status."""
    with RunProgress(console, follow_mode(console, quiet)) as progress:
        for record in run.stream_records(interval_s=interval_s):
            progress.feed(record)
    return run.status()
