from types import SimpleNamespace

import numpy as np
import pytest

from finetuner_core.config import FitConfig
from finetuner_protocol.data import DataError
from finetuner_protocol.data.intake import modality, parse_fit_data
from finetuner_protocol.wire import FinetunerDoc


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
    from finetuner_protocol.data.records import PairItem

    jpeg = (data_dir / "cifar10" / "test" / "cat" / "0000.jpg").read_bytes()
    config = Config(model="lit-minilm-efficientnet-lite0")
    pairs = parse_fit_data([item("a photo of a cat", None, blob=jpeg)] * 2, config)["train"]
    assert all(isinstance(p, PairItem) and p.text == "a photo of a cat" for p in pairs)
    with pytest.raises(DataError, match="holds text; this model takes text-image pairs"):
        parse_fit_data([item("only text", None)], config)


# --- query-document and scored pairs ------------------------------------------------------------------------------

QUERY_DOCS = b"query,document\n" + b"".join(f"question {i},answer {i}\n".encode() for i in range(4))
SCORED = b"".join(f"sentence {i},other sentence {i},{i / 2}\n".encode() for i in range(4))


def pair(text, text_pair, score=None, split="train", **fields):
    return FinetunerDoc(kind="item", split=split, text=text, text_pair=text_pair, score=score, **fields)


def csv_doc(blob, split="train", name="pairs.csv"):
    return FinetunerDoc(kind="csv", split=split, name=name, blob=blob)


def test_query_document_csv_and_documents_are_merged_and_settle_the_default_loss():
    from finetuner_protocol.data.records import QueryDocItem

    config = FitConfig(eval_ks=[1])
    docs = [csv_doc(QUERY_DOCS), pair("q", "d"), pair("eq1", "ed1", split="eval"), pair("eq2", "ed2", split="eval")]
    data = parse_fit_data(docs, config)
    assert all(isinstance(r, QueryDocItem) for r in data["train"] + data["eval"])
    assert [(r.query, r.source) for r in data["train"]][-2:] == [
        ("question 3", "pairs.csv row 5"),
        ("q", "train document 1"),
    ]
    assert config.loss == "MultipleNegativesRankingLoss" and config.loss_name == "MultipleNegativesRankingLoss"


def test_scored_pairs_from_csv_and_documents_settle_cosent():
    config = FitConfig()
    data = parse_fit_data([csv_doc(SCORED), pair("a", "b", 4.5)], config)
    assert [r.score for r in data["train"]] == [0.0, 0.5, 1.0, 1.5, 4.5]
    assert config.loss == "CoSENTLoss"


def test_labeled_data_keeps_its_loss_unset():
    config = FitConfig()
    parse_fit_data(TRAIN, config)
    assert config.loss is None and config.loss_name == "TripletMarginLoss"


def test_is_labeled_false_reads_a_headerless_two_column_csv_as_pairs():
    blob = b"".join(f"question {i},answer {i}\n".encode() for i in range(3))
    config = FitConfig(csv_options={"is_labeled": False})
    assert type(parse_fit_data([csv_doc(blob)], config)["train"][0]).__name__ == "QueryDocItem"


def test_a_split_mixing_shapes_is_refused():
    with pytest.raises(DataError) as info:
        parse_fit_data([csv_doc(QUERY_DOCS), *TRAIN], FitConfig())
    assert str(info.value.problems[0]) == (
        "train: mixed shapes: query-document pairs (e.g. pairs.csv row 2), labeled items (e.g. train document 1); "
        "a data set holds one shape"
    )


def test_pair_documents_are_checked_field_by_field():
    docs = [pair("a", "b", 1.0), pair("c", None, 2.0), pair(" ", "d", float("nan")), pair("e", "f", 3.0)]
    docs += [pair("g", "h", finetuner_label="x")]
    with pytest.raises(DataError) as info:
        parse_fit_data(docs, FitConfig())
    assert [str(p) for p in info.value.problems] == [
        "train document 4: holds a label (finetuner_label) and a second text (text_pair); a document is a labeled "
        "item or a pair"
    ]
    with pytest.raises(DataError) as info:
        parse_fit_data(docs[:4], FitConfig())
    assert [str(p) for p in info.value.problems] == [
        "train document 1: second text is missing, empty or whitespace",
        "train document 2: text is empty or whitespace",
        "train document 2: score is nan, not a finite number",
    ]


def test_a_loss_that_does_not_fit_the_data_is_refused_naming_those_that_do():
    with pytest.raises(DataError) as info:
        parse_fit_data([csv_doc(SCORED)], FitConfig(loss="MultipleNegativesRankingLoss"))
    assert str(info.value.problems[0]) == (
        "train: MultipleNegativesRankingLoss trains on query-document pairs, but this data holds scored pairs; "
        "losses for scored pairs: CoSENTLoss, CosineSimilarityLoss, MarginMSELoss"
    )
    with pytest.raises(DataError, match="InfoNCELoss trains on labeled items, but this data holds query-document"):
        parse_fit_data([csv_doc(QUERY_DOCS)], FitConfig(loss="InfoNCELoss"))


def test_options_of_a_default_loss_must_fit_the_loss_the_data_settles():
    with pytest.raises(DataError, match="CoSENTLoss has no option\\(s\\) margin"):
        parse_fit_data([csv_doc(SCORED)], FitConfig(loss_options={"margin": 0.2}))


def test_the_monitor_must_be_measured_on_the_evaluation_data():
    scored_eval = [csv_doc(SCORED), csv_doc(SCORED, split="eval")]
    parse_fit_data(scored_eval, FitConfig(monitor="spearman", eval_every_steps=2))
    with pytest.raises(DataError, match="monitor 'mrr@10' is not measured on scored pairs"):
        parse_fit_data(scored_eval, FitConfig(monitor="mrr@10"))
    with pytest.raises(DataError, match="monitor 'spearman' is not measured on query-document pairs"):
        parse_fit_data([csv_doc(QUERY_DOCS), csv_doc(QUERY_DOCS, split="eval")], FitConfig(monitor="spearman"))


def test_query_document_evaluation_data_must_hold_enough_documents_for_every_k():
    docs = [csv_doc(QUERY_DOCS), pair("q1", "d1", split="eval"), pair("q2", "d2", split="eval")]
    with pytest.raises(ValueError, match="k=20 is larger than the 2 items a query can retrieve"):
        parse_fit_data(docs, FitConfig())
    assert len(parse_fit_data(docs, FitConfig(eval_ks=[1, 2]))["eval"]) == 2


def test_records_survive_the_trip_through_documents_and_json_rows():
    """The validator answers with documents that the trainer parses again; the run store keeps JSON rows."""
    from dataclasses import asdict

    from finetuner_protocol.shapes import from_row, to_row
    from finetuner_protocol.wire import record_docs

    def content(splits):
        return [(type(r), {**asdict(r), "source": ""}) for split in ("train", "eval") for r in splits[split]]

    splits = parse_fit_data([csv_doc(SCORED), csv_doc(QUERY_DOCS, split="eval")], FitConfig(eval_ks=[1]))
    assert content(parse_fit_data(list(record_docs(splits)), FitConfig(eval_ks=[1]))) == content(splits)
    rows = {split: [from_row(to_row(r, None), None) for r in records] for split, records in splits.items()}
    assert content(rows) == content(splits)
