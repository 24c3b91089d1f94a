"""The image path and the CLIP path through the real Flow, on CIFAR-10 images."""

import shutil

import numpy as np
import pytest
from docarray import BaseDoc, DocList

import finetuner
from conftest import cifar10_files

pytestmark = pytest.mark.slow


class ImageDoc(BaseDoc):
    url: str
    finetuner_label: str


def csv_with_images(folder, files, row) -> str:
    """A CSV in ``folder`` whose rows name images copied next to it, by relative path."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    lines = []
    for path, label in files:
        relative = f"images/{label}_{path.name}"
        shutil.copy(path, folder / relative)
        lines.append(row(relative, label))
    (folder / "data.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(folder / "data.csv")


def test_image_model_fine_tunes_through_the_flow(flow, data_dir, tmp_path):
    train_csv = csv_with_images(tmp_path, cifar10_files(data_dir, 4, 8), lambda image, label: f"{image},{label}")
    eval_docs = DocList[ImageDoc](
        ImageDoc(url=str(path), finetuner_label=label) for path, label in cifar10_files(data_dir, 4, 5, start=600)
    )
    run = finetuner.fit(
        model="efficientnet-lite0",
        train_data=train_csv,
        eval_data=eval_docs,
        image_size=64,
        output_dim=32,
        batch_size=16,
        epochs=2,
        max_steps=3,
        learning_rate=1e-3,
        eval_ks=[1, 5],
    )
    lines = list(run.stream_logs(interval_s=0.2))
    assert run.status() == "FINISHED", "\n".join(lines)
    metrics = run.metrics()
    assert metrics["before"]["queries"] == 20 and 0 <= metrics["after"]["precision@1"] <= 1

    model = finetuner.get_model(run.save_artifact(tmp_path / "model"))
    assert (model.modality, model.dim) == ("image", 32)
    images = [str(path) for path, _ in cifar10_files(data_dir, 2, 2, start=900)]
    tuned = finetuner.encode(model, images)
    assert tuned.shape == (4, 32) and np.isfinite(tuned).all()
    by_run = finetuner.evaluate(eval_docs, run_id=run.id, eval_ks=[1, 5])
    assert by_run["precision@1"] == pytest.approx(metrics["after"]["precision@1"])


def test_clip_model_trains_on_text_image_pairs_through_the_flow(flow, data_dir, tmp_path):
    def caption(label: str) -> str:
        return f"a photo of a {label}"

    train_csv = csv_with_images(
        tmp_path, cifar10_files(data_dir, 4, 6), lambda image, label: f"{image},{caption(label)}"
    )
    eval_pairs = [(str(path), caption(label)) for path, label in cifar10_files(data_dir, 4, 4, start=600)]
    run = finetuner.fit(
        model="lit-minilm-efficientnet-lite0",
        train_data=train_csv,
        eval_data=eval_pairs,
        image_size=64,
        batch_size=8,
        max_steps=2,
        learning_rate=1e-3,
        eval_ks=[1, 4],
    )
    lines = list(run.stream_logs(interval_s=0.2))
    assert run.status() == "FINISHED", "\n".join(lines)
    assert any("loss CLIPLoss" in line for line in lines)
    metrics = run.metrics()
    assert metrics["before"]["queries"] == 4, "one query per distinct caption"
    model = finetuner.get_model(run.save_artifact(tmp_path / "clip"))
    both = finetuner.encode(model, [caption("cat"), eval_pairs[0][0]])
    assert both.shape == (2, 384)


def test_a_corrupt_image_is_refused_naming_its_row(flow, data_dir, tmp_path):
    train_csv = csv_with_images(tmp_path, cifar10_files(data_dir, 2, 2), lambda image, label: f"{image},{label}")
    broken = sorted((tmp_path / "images").iterdir())[1]
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(finetuner.DataError) as info:  # checked by the client before anything is sent
        finetuner.fit(model="efficientnet-lite0", train_data=train_csv, batch_size=4, num_items_per_class=2)
    assert "data.csv row 2: corrupt or truncated image" in str(info.value)
