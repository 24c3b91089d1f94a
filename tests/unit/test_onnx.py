"""ONNX export: onnxruntime gives the PyTorch embeddings within tolerance, for every family."""

import numpy as np
import onnxruntime as ort
import pytest

from finetuner_core.models import build_model
from finetuner_core.models.onnx_export import export_onnx

IMAGES = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(3)]
TEXTS = ["where is my card", "the exchange rate looks wrong today", "refund"]


def run(path, feeds: dict) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v.numpy() for k, v in feeds.items() if k in names})[0]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,options",
    [
        ("all-MiniLM-L6-v2", {"output_dim": 16}),
        ("efficientnet-lite0", {"image_size": 64, "pooling": "gem"}),
        ("mlp", {"input_dim": 6, "hidden_dims": [8, 8]}),
    ],
)
def test_onnx_matches_pytorch(name, options, tmp_path):
    model = build_model(name, options, "cpu").eval()
    inputs = {"text": TEXTS, "image": IMAGES, "vector": [np.arange(6, dtype=np.float32) * i for i in range(3)]}[
        model.modality
    ]
    (path,) = export_onnx(model, tmp_path)
    batch = model.preprocess(inputs)
    feeds = dict(batch) if hasattr(batch, "keys") else {"pixel_values": batch, "vectors": batch}
    np.testing.assert_allclose(run(path, feeds), model.encode(inputs), atol=1e-4)


@pytest.mark.slow
def test_clip_towers_export_separately(tmp_path):
    model = build_model("lit-minilm-efficientnet-lite0", {"image_size": 64}, "cpu").eval()
    text_path, image_path = export_onnx(model, tmp_path)
    assert (text_path.name, image_path.name) == ("text.onnx", "image.onnx")
    np.testing.assert_allclose(run(text_path, {"input_ids": model.tokenize(TEXTS)}), model.encode(TEXTS), atol=1e-4)
    np.testing.assert_allclose(run(image_path, {"pixel_values": model.images(IMAGES)}), model.encode(IMAGES), atol=1e-4)
