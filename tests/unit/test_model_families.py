"""The family table: every family is a complete ``EmbeddingModel`` class that builds, embeds, saves and loads,
exports ONNX and writes its model-card text; no family name is compared anywhere else."""

import ast
import inspect
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import yaml

from finetuner_core.models import FAMILIES, EmbeddingModel, ModelOptions, build_model, get_family, list_families
from finetuner_core.models.base import CONFIG_FILE
from finetuner_core.models.onnx_export import export_onnx
from finetuner_core.runs.model_card import write_model_card
from finetuner_protocol.backbones import FOLDER_FAMILY, NAME_PREFIXES, backbone_family, list_backbones
from unit.test_library_weights import write_tiny_hf_clip

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "executors" / "finetuner_core" / "models" / "families"
TEXTS = ["where is my card", "the exchange rate looks wrong today", "refund"]
IMAGES = [np.random.default_rng(i).integers(0, 255, (32, 32, 3), dtype=np.uint8) for i in range(3)]
VECTORS = [np.linspace(-1, 1, 6, dtype=np.float32) * i for i in (1, 2, -1)]

TINY_HF_CLIP = tempfile.mkdtemp(prefix="tiny-hf-clip-")  # a folder the fixture fills with a tiny transformers CLIP
# Per family: a packaged or tiny model, and its inputs in the order of its ONNX files (one group per file).
EXAMPLES: dict[str, tuple[str, dict, list[list]]] = {
    "sentence-transformers": ("all-MiniLM-L6-v2", {"output_dim": 16}, [TEXTS]),
    "timm": ("efficientnet-lite0", {"image_size": 32}, [IMAGES]),
    "torchvision": ("efficientnet_b0", {"pretrained": False, "image_size": 32}, [IMAGES]),
    "open_clip": ("lit-minilm-efficientnet-lite0", {"image_size": 32}, [TEXTS, IMAGES]),
    "mlp": ("mlp", {"input_dim": 6, "hidden_dims": [8]}, [VECTORS]),
    "transformers-clip": (TINY_HF_CLIP, {"output_dim": 8}, [TEXTS, IMAGES]),
}


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def saved(request, tmp_path_factory) -> tuple[str, EmbeddingModel, Path]:
    """A model of each family, built by name and saved: (family, model, folder)."""
    family = request.param
    name, options, _ = EXAMPLES[family]
    if name == TINY_HF_CLIP:
        write_tiny_hf_clip(Path(name))
    model = build_model(name, options, "cpu").eval()
    return family, model, model.save(tmp_path_factory.mktemp(family) / "model")


def test_every_family_is_a_complete_class_in_one_listable_table():
    assert list_families() == sorted(FAMILIES) and set(EXAMPLES) == set(FAMILIES), "each family needs an example here"
    for name, cls in FAMILIES.items():
        assert issubclass(cls, EmbeddingModel) and cls.family == name and get_family(name) is cls
        assert not inspect.isabstract(cls), f"{cls.__name__} lacks {sorted(cls.__abstractmethods__)}"
    catalogue = {spec.family for spec in list_backbones()} | {p.family for p in NAME_PREFIXES.values()}
    assert catalogue | {FOLDER_FAMILY} <= set(FAMILIES), "every family the catalogue names has a class"
    with pytest.raises(ValueError, match="unknown model family 'keras'; the families are mlp, "):
        get_family("keras")


def test_a_family_missing_an_abstract_method_cannot_be_built():
    class Incomplete(EmbeddingModel):
        family = "incomplete"

        def preprocess(self, inputs):
            return inputs

    assert {"create", "features", "feature_dim", "export_onnx", "card_usage"} <= Incomplete.__abstractmethods__
    with pytest.raises(TypeError, match="abstract"):
        Incomplete("x", ModelOptions())


def test_each_family_builds_saves_and_loads_its_model(saved):
    family, model, folder = saved
    name, _, groups = EXAMPLES[family]
    assert type(model) is FAMILIES[family] and backbone_family(name) == family
    assert json.loads((folder / CONFIG_FILE).read_text("utf-8"))["family"] == family
    again = build_model(str(folder), None, "cpu")
    assert type(again) is type(model) and (again.name, again.modality, again.dim) == (name, model.modality, model.dim)
    for inputs in groups:
        embeddings = model.encode(inputs)
        assert embeddings.shape == (len(inputs), model.dim) and np.isfinite(embeddings).all()
        np.testing.assert_array_equal(again.encode(inputs), embeddings)


@pytest.mark.slow
def test_each_family_exports_onnx_that_gives_its_embeddings(saved, tmp_path):
    family, model, _ = saved
    paths = export_onnx(model, tmp_path)
    groups = EXAMPLES[family][2]
    assert len(paths) == len(groups)
    for path, inputs in zip(paths, groups, strict=True):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        batch = model.preprocess(inputs)
        tensors = {k: v for k, v in batch.items() if k in names} if isinstance(batch, Mapping) else {names[0]: batch}
        feeds = {k: v.numpy() for k, v in tensors.items()}
        np.testing.assert_allclose(session.run(None, feeds)[0], model.encode(inputs), atol=1e-4)


def test_each_family_writes_its_model_card_text(saved):
    family, _, folder = saved
    cls = FAMILIES[family]
    usage, onnx_usage = cls.card_usage(), cls.card_onnx_usage(["onnx/model.onnx"])
    assert usage.startswith("With ") and "`onnx/model.onnx`" in onnx_usage
    text = write_model_card(folder, {"model": EXAMPLES[family][0]}, {}, {}).read_text("utf-8")
    matter = yaml.safe_load(text.split("---\n")[1])
    assert matter["library_name"] == cls.library and family in matter["tags"]
    assert usage in text


def _family_comparisons(source: str, families: set[str], classes: set[str]) -> list[int]:
    """Comparisons with a family name (or a ``family`` field), dicts keyed by one, isinstance on a family class."""

    def is_family_field(node: ast.AST) -> bool:
        if isinstance(node, ast.Attribute):
            return node.attr == "family"
        if isinstance(node, ast.Subscript):
            return isinstance(node.slice, ast.Constant) and node.slice.value == "family"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
            return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "family"
        return False

    def names_family(node: ast.AST | None) -> bool:
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            return any(names_family(element) for element in node.elts)
        return isinstance(node, ast.Constant) and node.value in families

    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(names_family(o) or is_family_field(o) for o in operands):
                found.append(node.lineno)
        elif isinstance(node, ast.Dict) and any(names_family(key) for key in node.keys):
            found.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "isinstance":
            if any(isinstance(n, ast.Name) and n.id in classes for n in ast.walk(node.args[1])):
                found.append(node.lineno)
    return found


def test_no_family_name_is_compared_outside_the_family_table():
    families = set(FAMILIES)
    classes = {c.__name__ for family in FAMILIES.values() for c in family.__mro__ if issubclass(c, EmbeddingModel)}
    classes.discard(EmbeddingModel.__name__)
    files = [p for folder in ("executors", "client") for p in sorted((ROOT / folder).rglob("*.py"))]
    outside = [p for p in files if not p.is_relative_to(TABLE)]
    assert len(outside) > 50
    found = [
        f"{path.relative_to(ROOT)}:{line}"
        for path in outside
        for line in _family_comparisons(path.read_text("utf-8"), families, classes)
    ]
    assert not found, f"family names compared outside models/families/: {found}"
    ladder = (
        'if model.family == "open_clip": pass\n'
        'if family in ("timm", "torchvision"): pass\n'
        'if config["family"] != x: pass\n'
        'LIBRARIES = {"timm": "timm"}\n'
        "if isinstance(model, TextEmbeddingModel): pass\n"
        'if modality == "text": pass\n'
    )
    assert sorted(_family_comparisons(ladder, families, classes)) == [1, 2, 3, 4, 5]
