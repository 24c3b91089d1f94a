"""The records of a run's log (as the training loop's LoggingCallback writes them and the run's log stores them),
read back by their fields, and the progress view."""

import io
import json
import math

import pytest
from rich.console import Console

from finetuner.progress import RunProgress, follow_mode, steps
from finetuner_core.callbacks.log import EVERY_STEP_UNTIL, INTERVAL_S, LoggingCallback
from finetuner_core.callbacks.state import TrainState
from finetuner_protocol.logs import (
    LogRecord,
    LogRecordError,
    Message,
    Metrics,
    Note,
    Step,
    TrainBegin,
    TrainEnd,
    read_record,
)


def logged_records(
    total_steps: int = 6, epochs: int = 2, every: int | None = 2, step_s: float = 1.5
) -> list[LogRecord]:
    """What LoggingCallback writes for a short training: the settings, the steps, the end."""
    records: list[LogRecord] = []
    callback = LoggingCallback(every=every, emit=records.append)
    state = TrainState(epochs=epochs, total_steps=total_steps, batch_size=8, notes=["sampler: class"])
    callback.on_train_begin(state)
    for step in range(1, total_steps + 1):
        state.step, state.epoch = step, (step - 1) * epochs // total_steps
        state.loss, state.learning_rate, state.elapsed_s = 1.0 / step, 2e-5 * step, step_s * step
        callback.on_step_end(state)
    callback.on_train_end(state)
    return records


def stored(records: list[LogRecord]) -> list[LogRecord]:
    """``records`` as a run's log stores them and the client reads them back (``/runs/logs`` entries, JSON)."""
    entries = [{"time": 0.0, "message": r.text(), "record": json.loads(r.model_dump_json())} for r in records]
    return [read_record(entry) for entry in json.loads(json.dumps(entries))]


def test_steps_of_the_logging_callback_are_read_back_by_their_fields():
    found = steps(stored(logged_records(total_steps=6, epochs=2, every=2)))
    assert [s.step for s in found] == [2, 4, 6]
    assert {s.total_steps for s in found} == {6} and {s.epochs for s in found} == {2}
    assert [s.epoch for s in found] == [1, 2, 2]
    assert [s.loss for s in found] == pytest.approx([0.5, 0.25, 1 / 6], abs=1e-4)
    assert found[1].learning_rate == pytest.approx(8e-5)
    assert found[0].elapsed_s == 3 and found[0].eta_s == 6
    assert found[-1].eta_s == 0


def test_every_record_reads_as_the_line_it_always_was():
    lines = [r.text() for r in logged_records(total_steps=4, epochs=1, every=2)]
    assert lines == [
        "note: sampler: class",
        "training: 1 epoch(s), 4 steps, batch size 8, fp32",
        "step 2/4 epoch 1/1 loss 0.5000 lr 4.00e-05 elapsed 3s eta 3s",
        "step 4/4 epoch 1/1 loss 0.2500 lr 8.00e-05 elapsed 6s eta 0s",
        "training done: 4 steps in 6.0s",
    ]


def test_a_short_run_logs_every_step_and_a_long_one_a_steady_rate():
    short = steps(logged_records(total_steps=EVERY_STEP_UNTIL, every=None, step_s=0.001))
    assert [s.step for s in short] == list(range(1, EVERY_STEP_UNTIL + 1))
    total, step_s = 1000, 0.1  # after the first steps, one every INTERVAL_S seconds of training, and the last
    long = [s.step for s in steps(logged_records(total_steps=total, every=None, step_s=step_s))]
    assert long[:EVERY_STEP_UNTIL] == list(range(1, EVERY_STEP_UNTIL + 1)) and long[-1] == total
    gaps = {b - a for a, b in zip(long[EVERY_STEP_UNTIL:-1], long[EVERY_STEP_UNTIL + 1 : -1], strict=False)}
    assert gaps == {round(INTERVAL_S / step_s)}


@pytest.mark.parametrize(
    "record",
    [
        Note(note="sampler: class"),
        TrainBegin(epochs=1, total_steps=6, batch_size=8, precision="fp32"),
        TrainEnd(steps=6, elapsed_s=9.0),
        Metrics(stage="step 2", metrics={"precision@1": 0.5}),
        Message(message="step 3/10 epoch 1/1 loss 0.1 lr 1e-5"),
    ],
)
def test_other_records_are_not_steps(record):
    assert steps(stored([record])) == []


def test_a_non_finite_loss_and_missing_times_still_read_back():
    (step,) = steps(stored([Step(step=3, total_steps=10, epoch=1, epochs=1, loss=math.nan, learning_rate=2e-5)]))
    assert step.step == 3 and math.isnan(step.loss)
    assert math.isnan(step.elapsed_s) and math.isnan(step.eta_s)


def test_entries_without_a_record_or_of_an_unknown_kind_read_as_their_line_and_bad_records_are_refused():
    assert read_record({"message": "step 1/2 epoch 1/1 loss 0.1 lr 1e-5", "record": None}) == Message(
        message="step 1/2 epoch 1/1 loss 0.1 lr 1e-5"
    )
    assert read_record({"message": "new", "record": {"kind": "newer"}}) == Message(message="new")
    with pytest.raises(LogRecordError, match=r"log entry 'step 3': step record, loss: Input should be a valid number"):
        read_record(
            {
                "message": "step 3",
                "record": {
                    "kind": "step",
                    "step": 3,
                    "total_steps": 10,
                    "epoch": 1,
                    "epochs": 1,
                    "loss": "abc",
                    "learning_rate": 2e-5,
                },
            }
        )


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120, color_system=None), buffer


def test_bar_mode_moves_the_bar_and_prints_the_other_lines_above_it():
    screen, buffer = console(terminal=True)
    records = logged_records(total_steps=4, epochs=1, every=1)
    with RunProgress(screen, "bar") as progress:
        for record in records:
            progress.feed(record)
    output = buffer.getvalue()
    assert "training: 1 epoch(s), 4 steps" in output and "training done: 4 steps" in output
    assert "4/4" in output and "epoch 1/1" in output and "loss 0.2500" in output
    assert "step 1/4 epoch" not in output, "step lines move the bar; they are not printed"
    assert progress.last is not None and progress.last.step == 4


def test_lines_mode_prints_every_line_as_it_comes():
    screen, buffer = console(terminal=False)
    assert follow_mode(screen, quiet=False) == "lines"
    records = logged_records()
    with RunProgress(screen, follow_mode(screen, quiet=False)) as progress:
        for record in records:
            progress.feed(record)
    assert buffer.getvalue().splitlines() == [record.text() for record in records]


def test_quiet_mode_prints_nothing():
    screen, buffer = console(terminal=True)
    assert follow_mode(screen, quiet=True) == "quiet"
    with RunProgress(screen, "quiet") as progress:
        for record in logged_records():
            progress.feed(record)
    assert buffer.getvalue() == ""
    assert progress.last is not None and progress.last.step == 6


def test_the_bar_knows_the_total_from_the_first_record_of_training():
    screen, buffer = console(terminal=True)
    with RunProgress(screen, "bar") as progress:
        for record in logged_records(total_steps=4, epochs=1, every=1)[:2]:  # the note, the training's length
            progress.feed(record)
        progress._progress.refresh()
    last_frame = buffer.getvalue().split("\x1b[2K")[-1]
    assert "training" in last_frame and "0/4" in last_frame and "epoch -/1" in last_frame, "before any step"
