"""Two models compared on the same queries: the queries whose top results changed most, with both rankings, their
labels and image thumbnails, as the evaluator answers them and as the run report shows them."""

import base64
import io
import re

import numpy as np
from PIL import Image

from finetuner.report import examples_html
from finetuner_core.evaluation.dataset import EvalSet, labeled_set
from finetuner_core.evaluation.endpoint import answer
from finetuner_core.evaluation.evaluate import evaluate_models
from finetuner_core.evaluation.relevance import LabelRelevance
from finetuner_protocol.data.records import LabeledItem


class Lookup:
    """A deterministic encoder: a fixed vector per input."""

    def __init__(self, table: dict):
        self.table = table

    def encode(self, inputs: list) -> np.ndarray:
        return np.array([self.table[x] for x in inputs], np.float32)


class ByIdentity(Lookup):
    """A fixed vector per input object (images are not hashable by content)."""

    def encode(self, inputs: list) -> np.ndarray:
        return np.array([self.table[id(x)] for x in inputs], np.float32)


def test_the_queries_that_changed_most_come_with_both_rankings_and_labels():
    # six texts in two classes; before training each one's nearest item is of the other class; after, a, b, x and y
    # find their own class while c and z keep each other: a, b, x, y changed most (ties in query order)
    texts, labels = ["a", "b", "c", "x", "y", "z"], ["1", "1", "1", "2", "2", "2"]
    before_axes = {"a": 0, "x": 0, "b": 1, "y": 1, "c": 2, "z": 2}
    after_axes = {"a": 0, "b": 0, "x": 1, "y": 1, "c": 2, "z": 2}

    def vectors(axes: dict[str, int]) -> dict[str, np.ndarray]:
        return {t: np.eye(4)[axes[t]] + 0.01 * (i + 1) * np.eye(4)[3] for i, t in enumerate(texts)}

    eval_set = EvalSet(texts, None, LabelRelevance(labels, labels, own=np.arange(6)))
    models = {"before": (Lookup(vectors(before_axes)), None), "after": (Lookup(vectors(after_axes)), None)}
    result = answer(eval_set, evaluate_models(eval_set, models, (1,), {"examples": 2, "example_k": 1}))

    changes = result["changes"]
    assert [change["query"]["content"] for change in changes] == ["a", "b"]
    for change in changes:
        query = change["query"]
        assert query["label"] == "1" and change["relevant_in_index"] == 2
        assert change["relevant_before"] == 0 and change["relevant_after"] == 1
        assert [(r["rank"], r["label"], r["relevance"]) for r in change["before"]] == [(1, "2", 0.0)]
        assert [(r["rank"], r["label"], r["relevance"]) for r in change["after"]] == [(1, "1", 1.0)]
    assert [r["content"] for r in changes[0]["before"] + changes[0]["after"]] == ["x", "b"]
    assert "label" not in result["examples"][0]["query"], "one model's sample queries keep their form"

    page = examples_html(changes)
    assert page.count('<div class="example">') == 2 and page.count('<tr class="result">') == 2
    assert page.count("&#10003;") == 2, "the relevant results (after training) are marked"
    assert '<tr class="result"><td>1</td><td>x</td><td>2</td>' in page


def test_images_in_a_comparison_come_as_thumbnails_large_enough_to_see():
    images = [Image.new("RGB", (320, 240), colour) for colour in ("red", "darkred", "blue", "navy")]
    records = [LabeledItem(image, "red" if i < 2 else "blue") for i, image in enumerate(images)]
    model = ByIdentity({id(image): np.eye(4)[i // 2] + 0.1 * i for i, image in enumerate(images)})
    eval_set = labeled_set(records)
    options = {"examples": 1, "example_k": 1, "thumbnail_px": 160}
    result = answer(eval_set, evaluate_models(eval_set, {"a": (model, None), "b": (model, None)}, (1,), options))

    (change,) = result["changes"]
    uri = change["after"][0]["thumbnail"]
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumbnail:
        assert thumbnail.format == "PNG" and thumbnail.size == (160, 120)
    assert change["query"]["thumbnail"].startswith("data:image/png;base64,")
    assert "thumbnail" not in result["examples"][0]["query"]
    assert re.search(r'<img class="thumbnail" src="data:image/png;base64,[^"]+"', examples_html([change]))
