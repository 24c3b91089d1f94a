"""The parsing of a run's step lines (as the training loop's LoggingCallback writes them) and the progress view."""

import io
import math

import pytest
from rich.console import Console

from finetuner.progress import RunProgress, follow_mode, parse_step, step_lines
from finetuner_core.training.callbacks import LoggingCallback
from finetuner_core.training.state import TrainState


def logged_lines(total_steps: int = 6, epochs: int = 2, every: int = 2) -> list[str]:
    """What LoggingCallback writes for a short training: the settings, the step lines, the end."""
    lines: list[str] = []
    callback = LoggingCallback(lines.append, every=every)
    state = TrainState(epochs=epochs, total_steps=total_steps, batch_size=8, notes=["sampler: class"])
    callback.on_train_begin(state)
    for step in range(1, total_steps + 1):
        state.step, state.epoch = step, (step - 1) * epochs // total_steps
        state.loss, state.learning_rate, state.elapsed_s = 1.0 / step, 2e-5 * step, 1.5 * step
        callback.on_step_end(state)
    callback.on_train_end(state)
    return lines


def test_step_lines_of_the_logging_callback_are_parsed_back():
    lines = logged_lines(total_steps=6, epochs=2, every=2)
    steps = step_lines(lines)
    assert [s.step for s in steps] == [2, 4, 6]
    assert {s.total for s in steps} == {6} and {s.epochs for s in steps} == {2}
    assert [s.epoch for s in steps] == [1, 2, 2]
    assert [s.loss for s in steps] == pytest.approx([0.5, 0.25, 1 / 6], abs=1e-4)
    assert steps[1].learning_rate == pytest.approx(8e-5)
    assert steps[0].elapsed_s == 3 and steps[0].eta_s == 6
    assert steps[-1].eta_s == 0


@pytest.mark.parametrize(
    "line",
    [
        "note: sampler: class",
        "training: 1 epoch(s), 6 steps, batch size 8, fp32",
        "training done: 6 steps in 9.0s",
        "metrics step 2: precision@1 0.5000",
        "step two/6 epoch 1/1 loss 0.1 lr 1e-5",
        "step 3/10 epoch 1/1 loss abc lr 2.00e-05 elapsed 5s eta 12s",
        "",
    ],
)
def test_other_lines_are_not_steps(line):
    assert parse_step(line) is None


def test_a_non_finite_loss_and_missing_times_still_parse():
    step = parse_step("step 3/10 epoch 1/1 loss nan lr 2.00e-05")
    assert step is not None and step.step == 3 and math.isnan(step.loss)
    assert math.isnan(step.elapsed_s) and math.isnan(step.eta_s)


def console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120, color_system=None), buffer


def test_bar_mode_moves_the_bar_and_prints_the_other_lines_above_it():
    screen, buffer = console(terminal=True)
    lines = logged_lines(total_steps=4, epochs=1, every=1)
    with RunProgress(screen, "bar") as progress:
        for line in lines:
            progress.feed(line)
    output = buffer.getvalue()
    assert "training: 1 epoch(s), 4 steps" in output and "training done: 4 steps" in output
    assert "4/4" in output and "epoch 1/1" in output and "loss 0.2500" in output
    assert "step 1/4 epoch" not in output, "step lines move the bar; they are not printed"
    assert progress.last is not None and progress.last.step == 4


def test_lines_mode_prints_every_line_as_it_comes():
    screen, buffer = console(terminal=False)
    assert follow_mode(screen, quiet=False) == "lines"
    lines = logged_lines()
    with RunProgress(screen, follow_mode(screen, quiet=False)) as progress:
        for line in lines:
            progress.feed(line)
    assert buffer.getvalue().splitlines() == lines


def test_quiet_mode_prints_nothing():
    screen, buffer = console(terminal=True)
    assert follow_mode(screen, quiet=True) == "quiet"
    with RunProgress(screen, "quiet") as progress:
        for line in logged_lines():
            progress.feed(line)
    assert buffer.getvalue() == ""
    assert progress.last is not None and progress.last.step == 6
