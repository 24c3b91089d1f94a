"""Data of one modality given to a model of another is refused, on whole-column evidence: image paths as the
texts of a text model, texts as the images of an image or CLIP model. Texts that merely mention a file pass."""

import base64
import io

import pytest
from PIL import Image

import finetuner
from finetuner_core.config import parse_fit_config
from finetuner_protocol.data.checks import check_fit_splits
from finetuner_protocol.data.csv_reader import CSVOptions
from finetuner_protocol.data.errors import DataError
from finetuner_protocol.data.intake import parse_data
from finetuner_protocol.data.records import LabeledItem, QueryDocItem
from finetuner_protocol.wire import FinetunerDoc


def write_images(folder, names):
    for name in names:
        Image.new("RGB", (16, 16), "red").save(folder / name)


def problem_lines(error: DataError) -> list[str]:
    return str(error).splitlines()[1:]


def test_an_image_label_csv_given_to_a_text_model_is_refused_in_check_data(tmp_path):
    write_images(tmp_path, ["a.jpg", "b.jpg", "c.png", "d.png"])
    path = tmp_path / "train.csv"
    path.write_text("image,label\na.jpg,cat\nb.jpg,cat\nc.png,dog\nd.png,dog\n")
    with pytest.raises(DataError) as refused:
        finetuner.check_data(str(path))
    assert problem_lines(refused.value) == [
        "  train.csv row 2: 'a.jpg' looks like an image (a path, URL or data URI), as does every text of this data "
        "set, but model 'all-MiniLM-L6-v2' takes text; use an image model such as 'efficientnet-lite0' "
        "(or 'lit-minilm-efficientnet-lite0' for image-text pairs)"
    ]
    assert finetuner.check_data(str(path), model="efficientnet-lite0")["train"]["shape"] == "image"


def test_the_flow_refuses_image_references_as_texts_without_knowing_the_model_name():
    uri = (
        "data:image/png;base64,"
        + base64.b64encode(b"\x89PNG not really an image, but long enough to be cut short").decode()
    )
    docs = [FinetunerDoc(text=value, finetuner_label=label) for value, label in [(uri, "a"), ("x/y.webp", "b")]]
    with pytest.raises(DataError, match=r"train document 0: 'data:image/png;base64,.*\.\.\.' looks like an image"):
        parse_data(docs, "text", CSVOptions(), min_items_per_class=1, whole=False)
    pairs = [FinetunerDoc(text=f"q{i}", text_pair=f"http://host/{i}.JPG") for i in range(3)]
    with pytest.raises(DataError, match="as does every document of this data set, but the model takes text"):
        parse_data(pairs, "text", CSVOptions(), whole=False)


def test_texts_that_mention_image_files_are_texts():
    texts = [
        ("I saved the receipt as photo.jpg", "receipts"),
        ("see cat.png", "receipts"),
        ("my card was declined", "declined"),
        ("card declined again", "declined"),
    ]
    assert finetuner.check_data(texts)["train"] == {"items": 4, "shape": "text", "classes": 2}
    pairs = [("where is scan.png?", "in your inbox"), ("what is a .jpg", "an image format")]
    assert finetuner.check_data(pairs, csv_options={"is_labeled": False})["train"]["shape"] == "query-doc"


@pytest.mark.parametrize(
    ("model", "takes"),
    [("efficientnet-lite0", "images"), ("lit-minilm-efficientnet-lite0", "image-text pairs")],
)
def test_a_text_csv_given_to_an_image_model_is_refused_in_one_line(tmp_path, model, takes):
    path = tmp_path / "train.csv"
    path.write_text("text,label\nI lost my card,lost\nmy card is gone,lost\nwhere is my card,came\nis it here,came\n")
    with pytest.raises(DataError) as refused:
        finetuner.check_data(str(path), model=model)
    assert problem_lines(refused.value) == [
        f"  train.csv row 2: 'I lost my card' names no image, nor does any value of this file, but model {model!r} "
        f"takes {takes}; for labeled texts use a text model such as 'all-MiniLM-L6-v2'"
    ]


def test_an_image_csv_with_one_missing_file_is_refused_for_that_file_only(tmp_path):
    write_images(tmp_path, ["a.jpg", "b.jpg", "c.jpg"])
    path = tmp_path / "train.csv"
    path.write_text("image,label\na.jpg,cat\nb.jpg,cat\nc.jpg,dog\nd.jpg,dog\n")
    with pytest.raises(DataError) as refused:
        finetuner.check_data(str(path), model="efficientnet-lite0")
    assert problem_lines(refused.value) == ["  train.csv row 5: image 'd.jpg' (not sent with the CSV file)"]


def test_a_stored_dataset_of_image_paths_is_refused_for_a_text_fit():
    splits = {"train": [LabeledItem(f"img/{i}.jpg", f"c{i % 2}") for i in range(4)]}
    with pytest.raises(DataError, match=r"item 0: 'img/0.jpg' looks like an image .* model 'all-MiniLM-L6-v2'"):
        check_fit_splits(splits, parse_fit_config({"eval_ks": [1]}))
    eval_pairs = [QueryDocItem(f"q{i}", f"{i}.png") for i in range(3)]
    splits = {"train": [QueryDocItem(f"q{i}", f"d{i}") for i in range(3)], "eval": eval_pairs}
    with pytest.raises(DataError, match=r"^eval data rejected"):
        check_fit_splits(splits, parse_fit_config({"eval_ks": [1]}))


def test_image_bytes_sent_with_an_image_csv_count_as_images():
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="PNG")
    csv_doc = FinetunerDoc(kind="csv", name="train.csv", blob=b"image,label\nscan-1,cat\nscan-2,dog\n")
    files = [FinetunerDoc(kind="file", name=name, blob=buffer.getvalue()) for name in ("scan-1", "scan-2")]
    records = parse_data([csv_doc, *files], "image", CSVOptions(), min_items_per_class=1)["train"]
    assert [record.label for record in records] == ["cat", "dog"]
