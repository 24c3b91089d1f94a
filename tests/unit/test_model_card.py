"""The model card of an artifact: front matter, data, training settings, metrics, and loading code that runs."""

import re

import numpy as np
import pytest
import torch
import yaml
from sentence_transformers import SentenceTransformer

from finetuner_core.config import FitConfig
from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.models import build_model
from finetuner_core.models.onnx_export import export_onnx
from finetuner_core.runs.model_card import data_summary, write_model_card
from finetuner_protocol.data.records import LabeledItem, PairItem


def front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def run_snippet(code: str, path, **names) -> dict:
    """Execute a snippet of the card on the artifact at ``path``; ``names`` replace its ``name = [...]`` lines."""
    code = code.replace("path/to/model", str(path))
    lines = [line for line in code.splitlines() if not any(line.startswith(f"{n} = [...]") for n in names)]
    namespace = dict(names)
    exec("\n".join(lines), namespace)
    return namespace


def vector_items(rng, labels: int, per_label: int) -> list[LabeledItem]:
    centres = rng.normal(size=(labels, 8))
    return [
        LabeledItem(content=(centres[k] + 0.3 * rng.normal(size=8)).tolist(), label=f"class {k}")
        for k in range(labels)
        for _ in range(per_label)
    ]


@pytest.fixture
def mlp_artifact(tmp_path):
    rng = np.random.default_rng(0)
    train, evaluation = vector_items(rng, 4, 10), vector_items(rng, 3, 5)
    model = build_model("mlp", {"input_dim": 8, "hidden_dims": [16]}, "cpu")
    before = evaluate_labeled(model, evaluation, (1, 5))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter += 0.5 * torch.randn_like(parameter)
    after = evaluate_labeled(model, evaluation, (1, 5))
    model.save(tmp_path / "model")
    export_onnx(model, tmp_path / "model" / "onnx")
    config = FitConfig(model="mlp", model_options={"input_dim": 8, "hidden_dims": [16]}, eval_ks=[1, 5], epochs=3)
    summary = data_summary({"train": train, "eval": evaluation})
    card = write_model_card(tmp_path / "model", config, {"before": before, "step 5": after, "after": after}, summary)
    return model, card, before, after, evaluation


def test_the_card_of_an_mlp_artifact_names_data_settings_and_metrics(mlp_artifact):
    _, card, before, after, _ = mlp_artifact
    text = card.read_text("utf-8")
    assert card.name == "README.md"
    matter = front_matter(text)
    assert matter["library_name"] == "pytorch" and "base_model" not in matter
    assert {"finetuner", "TripletMarginLoss", "mlp", "onnx"} <= set(matter["tags"])
    assert matter["pipeline_tag"] == "feature-extraction"
    assert "| train | 40 | 4 |" in text and "| eval | 15 | 3 |" in text
    assert "| loss | `TripletMarginLoss` |" in text and "| epochs | `3` |" in text
    assert "| miner | `TripletMarginMiner` |" in text
    change = after["precision@1"] - before["precision@1"]
    row = f"| precision@1 | {before['precision@1']:.4f} | {after['precision@1']:.4f} | {change:+.4f} |"
    assert row in text
    assert "| queries |" not in text and f"({before['queries']} queries)" in text


def test_the_loading_code_of_the_mlp_card_runs(mlp_artifact):
    model, card, _, _, evaluation = mlp_artifact
    values = [item.content for item in evaluation[:4]]
    expected = model.encode(values)
    finetuner_code, onnx_code = snippets(card.read_text("utf-8"))
    namespace = run_snippet(finetuner_code, card.parent, inputs=values)
    np.testing.assert_allclose(namespace["embeddings"], expected, atol=1e-5)
    namespace = run_snippet(onnx_code, card.parent, values=values)
    np.testing.assert_allclose(namespace["embeddings"], expected, atol=1e-4)


def test_the_card_of_a_text_artifact_loads_with_sentence_transformers(minilm, tmp_path):
    path = minilm.save(tmp_path / "model")
    config = {"model": "all-MiniLM-L6-v2", "loss": "InfoNCELoss", "run_name": "banking"}
    card = write_model_card(path, config, {}, {"train": {"items": 32, "labels": 4}}, training={"steps": 3, "loss": 0.2})
    text = card.read_text("utf-8")
    matter = front_matter(text)
    assert matter["library_name"] == "sentence-transformers"
    assert matter["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert matter["pipeline_tag"] == "sentence-similarity" and "InfoNCELoss" in matter["tags"]
    assert text.split("---\n", 2)[2].lstrip().startswith("# banking\n")
    assert "No evaluation data was given." in text and "to_onnx=True" in text
    assert "| steps | 3 |" in text and "| final loss | 0.2 |" in text
    assert "| miner |" not in text, "InfoNCELoss uses no miner"
    finetuner_code, st_code = snippets(text)
    tuned = run_snippet(st_code, path)["embeddings"]
    assert tuned.shape == (2, 384)
    np.testing.assert_allclose(run_snippet(finetuner_code, path)["embeddings"], tuned, atol=1e-5)


def test_the_onnx_code_of_a_text_card_runs(minilm, tmp_path):
    path = minilm.save(tmp_path / "model")
    export_onnx(minilm, path / "onnx")
    card = write_model_card(path, {"model": "all-MiniLM-L6-v2", "to_onnx": True}, {}, {})
    text = card.read_text("utf-8")
    assert "onnx" in front_matter(text)["tags"]
    onnx_code = snippets(text)[-1]
    assert "onnxruntime" in onnx_code
    embeddings = run_snippet(onnx_code, path)["embeddings"]
    expected = SentenceTransformer(str(path), device="cpu").encode(
        ["first sentence", "second sentence"], normalize_embeddings=True
    )
    np.testing.assert_allclose(embeddings, expected, atol=1e-4)


def test_data_summary_counts_labels_or_texts():
    labeled = [LabeledItem("a", "x"), LabeledItem("b", "x"), LabeledItem("c", "y")]
    pairs = [PairItem("a cat", None), PairItem("a cat", None), PairItem("a dog", None)]
    assert data_summary({"train": labeled, "eval": []}) == {"train": {"items": 3, "labels": 2}}
    assert data_summary({"train": pairs}) == {"train": {"items": 3, "texts": 2}}
