from types import SimpleNamespace

import numpy as np
import pytest

from finetuner_core.config import FitConfig
from finetuner_core.data import DataError
from finetuner_core.data.intake import modality, parse_fit_data
from finetuner_core.wire import FinetunerDoc


def item(text, label, split="train", **fields):
    return FinetunerDoc(kind="item", split=split, text=text, finetuner_label=label, **fields)


TRAIN = [item("a1", "a"), item("a2", "a"), item("b1", "b"), item("b2", "b")]


def test_items_and_csv_files_are_merged_per_split():
    csv_doc = FinetunerDoc(kind="csv", split="train", name="more.csv", blob=b"text,label\nc1,c\nc2,c\n")
    docs = [*TRAIN, csv_doc, item("q", "a", "eval"), item("r", "b", "eval")]
    data = parse_fit_data(docs, FitConfig(eval_ks=[1]))
    assert [r.content for r in data["train"]] == ["c1", "c2", "a1", "a2", "b1", "b2"]
    assert [r.label for r in data["eval"]] == ["a", "b"]


def test_an_eval_set_too_small_for_its_ks_is_refused_before_anything_is_stored():
    docs = [*TRAIN, item("q", "a", "eval"), item("r", "b", "eval")]
    with pytest.raises(ValueError, match="k=20 is larger than the 1 items a query can retrieve"):
        parse_fit_data(docs, FitConfig())


def test_eval_data_is_optional_and_train_data_is_not():
    assert "eval" not in parse_fit_data(TRAIN, FitConfig())
    with pytest.raises(DataError, match="train: the data set is empty"):
        parse_fit_data([item("q", "a", "eval")], FitConfig())


def test_document_problems_name_the_document():
    with pytest.raises(DataError) as info:
        parse_fit_data([*TRAIN, item(" ", "a"), item("x", None)], FitConfig())
    assert [str(p) for p in info.value.problems] == [
        "train document 4: text is empty or whitespace",
        "train document 5: label is missing",
    ]


def test_mixed_modalities_are_refused():
    image = item(None, "a", uri="cat.jpg")
    with pytest.raises(DataError, match=r"mixed modalities: image \(e.g. document 4\), text \(e.g. document 0\)"):
        parse_fit_data([*TRAIN, image], FitConfig())


def test_image_only_data_is_refused_for_the_text_path():
    docs = [item(None, label, tensor=np.zeros((3, 4, 4))) for label in "aabb"]
    with pytest.raises(DataError, match="train document 0: holds image; this model takes text"):
        parse_fit_data(docs, FitConfig())


def test_unknown_split_is_refused():
    with pytest.raises(DataError, match="document 4: unknown split 'test'"):
        parse_fit_data([*TRAIN, item("x", "a", "test")], FitConfig())


def test_random_sampler_accepts_one_item_classes():
    data = parse_fit_data([*TRAIN, item("c1", "c")], FitConfig(sampler="random"))
    assert len(data["train"]) == 5
    with pytest.raises(DataError, match="class 'c' has 1 item"):
        parse_fit_data([*TRAIN, item("c1", "c")], FitConfig())


@pytest.mark.parametrize(
    "fields,expected",
    [
        ({"text": "t"}, "text"),
        ({"uri": "x.png"}, "image"),
        ({"text": "t", "uri": "x.png"}, "text+image"),
        ({}, "none"),
    ],
)
def test_modality(fields, expected):
    doc = SimpleNamespace(**{"text": None, "uri": None, "tensor": None, **fields})
    assert modality(doc) == expected


def test_image_documents_and_csv_rows_become_checked_images(data_dir):
    from finetuner_core.config import FitConfig as Config

    jpeg = (data_dir / "cifar10" / "test" / "cat" / "0000.jpg").read_bytes()
    config = Config(model="efficientnet-lite0", batch_size=8, num_items_per_class=2)
    csv_doc = FinetunerDoc(kind="csv", name="images.csv", blob=b"image,label\nimg/a.jpg,cat\nimg/b.jpg,dog\n")
    files = [FinetunerDoc(kind="file", name=f"img/{n}.jpg", blob=jpeg) for n in "ab"]
    docs = [csv_doc, *files, item(None, "cat", blob=jpeg), item(None, "dog", tensor=np.zeros((8, 8, 3), np.uint8))]
    records = parse_fit_data(docs, config)["train"]
    assert [r.label for r in records] == ["cat", "dog", "cat", "dog"]
    assert all(r.content.size in ((32, 32), (8, 8)) and r.content.mode == "RGB" for r in records)


def test_images_that_cannot_be_read_are_named(data_dir):
    from finetuner_core.config import FitConfig as Config

    config = Config(model="efficientnet-lite0", batch_size=8, num_items_per_class=2)
    csv_doc = FinetunerDoc(kind="csv", name="images.csv", blob=b"img/missing.jpg,cat\nimg/bad.jpg,cat\n")
    docs = [csv_doc, FinetunerDoc(kind="file", name="img/bad.jpg", blob=b"not an image")]
    docs += [item(None, "dog", uri="/etc/passwd.png"), item(None, "dog", blob=b"\x89PNG")]
    with pytest.raises(DataError) as info:
        parse_fit_data(docs, config)
    problems = [str(p) for p in info.value.problems]
    assert problems[0] == "images.csv row 1: image 'img/missing.jpg' (not sent with the CSV file)"
    assert problems[1] == "images.csv row 2: not a readable image: the data is in no image format that can be decoded"
    assert problems[2] == (
        "train document 2: image '/etc/passwd.png' (a path is read by the client: send the image bytes in 'blob')"
    )
    assert problems[3].startswith("train document 3: ") and len(problems) == 4


def test_text_image_pairs_need_one_image_and_one_text(data_dir):
    from finetuner_core.config import FitConfig as Config
    from finetuner_core.data.records import PairItem

    jpeg = (data_dir / "cifar10" / "test" / "cat" / "0000.jpg").read_bytes()
    config = Config(model="lit-minilm-efficientnet-lite0")
    pairs = parse_fit_data([item("a photo of a cat", None, blob=jpeg)] * 2, config)["train"]
    assert all(isinstance(p, PairItem) and p.text == "a photo of a cat" for p in pairs)
    with pytest.raises(DataError, match="holds text; this model takes text-image pairs"):
        parse_fit_data([item("only text", None)], config)
