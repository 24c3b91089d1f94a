import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from finetuner_core.models import (
    ModelNotAvailableError,
    TextEmbeddingModel,
    list_backbones,
    resolve_model_path,
)


@pytest.mark.parametrize("spec", list_backbones(), ids=lambda spec: spec.name)
def test_every_registered_backbone_loads_offline_and_embeds(spec):
    model = TextEmbeddingModel.load(spec.name, "cpu")
    embeddings = model.encode(["how do I top up my card", "my card has not arrived"])
    assert embeddings.shape == (2, spec.output_dim) and embeddings.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)


def test_unknown_model_fails_with_an_offline_message():
    with pytest.raises(ModelNotAvailableError) as info:
        resolve_model_path("bert-base-uncased")
    message = str(info.value)
    assert "'bert-base-uncased' is not available offline" in message and "local folder" in message


def test_a_saved_model_reloads_from_its_folder_and_with_sentence_transformers(minilm, tmp_path):
    minilm.save(tmp_path / "model")
    again = TextEmbeddingModel.load(str(tmp_path / "model"), "cpu")
    texts = ["lost card", "exchange rate"]
    np.testing.assert_allclose(again.encode(texts), minilm.encode(texts), atol=1e-5)
    plain = SentenceTransformer(str(tmp_path / "model"), device="cpu")
    np.testing.assert_allclose(
        plain.encode(texts, normalize_embeddings=True), minilm.encode(texts), atol=1e-5
    )


def test_embed_keeps_gradients(minilm):
    embeddings = minilm.embed(["a", "b"])
    assert embeddings.requires_grad and embeddings.shape == (2, minilm.dim)
