import numpy as np
import pytest

from conftest import banking77_slice
from finetuner_core.config import FitConfig
from finetuner_core.data import LabeledItem
from finetuner_core.models import build_model
from finetuner_core.training.callbacks import Callback, LoggingCallback, StopCallback
from finetuner_core.training.loop import train
from finetuner_core.training.losses import LOSSES


def class_separation(model, records) -> float:
    """Mean same-class cosine similarity minus mean other-class similarity."""
    embeddings = model.encode([r.content for r in records])
    labels = np.array([r.label for r in records])
    sim = embeddings @ embeddings.T
    same = labels[:, None] == labels[None]
    np.fill_diagonal(same, False)
    other = labels[:, None] != labels[None]
    return float(sim[same].mean() - sim[other].mean())


@pytest.fixture(scope="module")
def records(data_dir):
    return [LabeledItem(text, label) for text, label in banking77_slice(data_dir, "train", classes=6, per_class=8)]


@pytest.mark.slow
@pytest.mark.parametrize("loss", sorted(name for name, spec in LOSSES.items() if not spec.pairs))
def test_a_few_steps_of_every_loss_pull_classes_apart(loss, records):
    model = build_model("all-MiniLM-L6-v2", None, "cpu")
    before = class_separation(model, records)
    config = FitConfig(
        loss=loss,
        batch_size=24,
        num_items_per_class=4,
        learning_rate=1e-4,
        epochs=3,
        max_steps=6,
        warmup_ratio=0,
    )
    state = train(model, records, config)
    assert state.step == 6 and np.isfinite(state.loss)
    assert class_separation(model, records) > before + 0.01


def test_callbacks_see_every_step_and_can_stop_training(records):
    model = build_model("all-MiniLM-L6-v2", None, "cpu")
    seen, lines = [], []

    class Recorder(Callback):
        def on_step_end(self, state):
            seen.append((state.step, state.loss))

    config = FitConfig(batch_size=16, num_items_per_class=4, epochs=3, log_every=1)
    state = train(
        model,
        records,
        config,
        [Recorder(), LoggingCallback(lines.append, 1), StopCallback(lambda: len(seen) >= 2)],
    )
    assert state.stop and state.step == 2 and [s for s, _ in seen] == [1, 2]
    assert lines[0].startswith("training: 3 epoch(s)") and "step 2/" in lines[2]
