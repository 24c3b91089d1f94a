"""Cross-modal evaluation of text-image pairs: each distinct text is a query against every image.

An image is relevant to a text when the two were paired (several images may share one caption, e.g.
``a photo of a cat``), so text-to-image retrieval is scored with the same metrics as label retrieval.
"""

from __future__ import annotations

import numpy as np

from finetuner_core.data.records import PairItem
from finetuner_core.evaluation.evaluate import DEFAULT_KS
from finetuner_core.evaluation.index import FlatIndex
from finetuner_core.evaluation.metrics import retrieval_metrics


def evaluate_pairs(model, pairs: list[PairItem], ks: tuple[int, ...] = DEFAULT_KS) -> dict:
    """Text-to-image retrieval metrics of ``model`` (which embeds texts and images into one space)."""
    texts = list(dict.fromkeys(pair.text for pair in pairs))
    query_ids = {text: i for i, text in enumerate(texts)}
    image_query = np.array([query_ids[pair.text] for pair in pairs])
    ks = tuple(k for k in ks if k <= len(pairs)) or (len(pairs),)
    index = FlatIndex(model.encode([pair.image for pair in pairs]), metric="cosine")
    _, ids = index.search(model.encode(texts), max(ks))
    hits = image_query[ids] == np.arange(len(texts))[:, None]
    num_relevant = np.bincount(image_query, minlength=len(texts))
    return retrieval_metrics(hits, num_relevant, ks)
