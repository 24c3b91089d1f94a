"""Finetuner's scored documents (``tags["finetuner_score"]`` on a document with two chunks, or with ``text`` and
``text_pair``) are scored pairs: never query-document pairs, never labeled texts."""

import pytest
from docarray import BaseDoc, DocList
from docarray.documents import TextDoc

import finetuner
from finetuner.data import to_wire_docs
from finetuner_protocol.data.errors import DataError


class ScoredDoc(BaseDoc):
    text: str | None = None
    text_pair: str | None = None
    chunks: DocList[TextDoc] | None = None
    tags: dict = {}


def chunked(first: str, second: str, score) -> ScoredDoc:
    return ScoredDoc(
        chunks=DocList[TextDoc]([TextDoc(text=first), TextDoc(text=second)]), tags={"finetuner_score": score}
    )


def test_two_chunks_with_a_finetuner_score_are_a_scored_pair():
    docs = DocList[ScoredDoc](
        [chunked("the weather is nice", "the weather is beautiful", 0.9), chunked("it is nice", "it is bad", "0.0")]
    )
    wire = to_wire_docs(docs, "train")
    assert [(d.text, d.text_pair, d.score, d.finetuner_label) for d in wire] == [
        ("the weather is nice", "the weather is beautiful", 0.9, None),
        ("it is nice", "it is bad", 0.0, None),
    ]
    assert finetuner.check_data(docs, docs, monitor="spearman") == {
        "train": {"items": 2, "shape": "scored"},
        "eval": {"items": 2, "shape": "scored"},
    }


def test_text_and_text_pair_with_a_finetuner_score_are_not_trained_as_query_document_pairs():
    docs = DocList[ScoredDoc](
        [
            ScoredDoc(text="a plane takes off", text_pair="an air plane is taking off", tags={"finetuner_score": 5}),
            ScoredDoc(text="a cat sleeps", text_pair="a dog barks", tags={"finetuner_score": 0.4}),
        ]
    )
    assert finetuner.check_data(docs, monitor="spearman")["train"]["shape"] == "scored"
    assert finetuner.check_data(docs, monitor="spearman", loss="CoSENTLoss")["train"]["shape"] == "scored"


@pytest.mark.parametrize(
    ("doc", "found"),
    [
        (ScoredDoc(text="only one text", tags={"finetuner_score": 1.0}), "text, 0 chunks"),
        (ScoredDoc(chunks=DocList[TextDoc]([TextDoc(text="one")]), tags={"finetuner_score": 1.0}), "1 chunk"),
        (ScoredDoc(text_pair="second", tags={"finetuner_score": 1.0}), "text_pair, 0 chunks"),
    ],
)
def test_a_finetuner_score_without_two_texts_is_refused(doc, found):
    with pytest.raises(DataError) as refused:
        finetuner.check_data(DocList[ScoredDoc]([chunked("a", "b", 1.0), doc]))
    assert str(refused.value).splitlines() == [
        "train data rejected: 1 problem",
        "  train item 1: tags['finetuner_score'] scores a pair of texts: the document needs 'text' and 'text_pair', "
        f"or two chunks with a text each (found {found})",
    ]


def test_a_finetuner_score_that_is_not_a_number_is_refused():
    with pytest.raises(DataError, match=r"train item 0: score 'high' is not a number"):
        finetuner.check_data(DocList[ScoredDoc]([chunked("a", "b", "high"), chunked("c", "d", 1.0)]))
