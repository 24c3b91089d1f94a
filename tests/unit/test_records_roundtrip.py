"""Every text the data checks accept is stored and read back exactly: rows files end lines in "\\n" only, and
a text that no file can hold (a lone surrogate) is refused, naming its row, before anything is stored.

The property is checked over seeded random texts drawn from every code point (surrogates included), with the
characters that break lines or CSV files drawn more often.
"""

import csv
import io
import random
from dataclasses import replace

import pytest

from finetuner_core.storage.rows import atomic_write, read_records, rows_text
from finetuner_protocol.data.csv_reader import CSVOptions
from finetuner_protocol.data.errors import DataError
from finetuner_protocol.data.intake import parse_data
from finetuner_protocol.data.records import LabeledItem, QueryDocItem, ScoredPairItem
from finetuner_protocol.wire import FinetunerDoc, record_docs

LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
AWKWARD = LINE_BREAKS + '\x00",;\t| \ufeff\u0301\U0001f600'
SURROGATES = "\ud800\udbff\udc00\udfff"
EXAMPLES = 150


def random_text(rng: random.Random) -> str:
    """0 to 12 characters, each an awkward one, a lone surrogate (now and then), or any code point."""
    return "".join(random_char(rng) for _ in range(rng.randrange(13)))


def random_char(rng: random.Random) -> str:
    draw = rng.random()
    if draw < 0.3:
        return rng.choice(AWKWARD)
    return rng.choice(SURROGATES) if draw < 0.31 else chr(rng.randrange(0x110000))


def stored_and_read(tmp_path, records: list) -> list:
    path = tmp_path / "rows.jsonl"
    atomic_write(path, rows_text(records, save_image=None))
    return read_records(tmp_path, path)


def reasons(error: DataError) -> list[str]:
    return [problem.reason for problem in error.problems]


def refusal_is_true(texts: list[str], error: DataError) -> bool:
    """Refused only for an empty text or label, or a lone surrogate, and only when one really is there."""
    empty = any(not text.strip() for text in texts)
    surrogate = any(0xD800 <= ord(char) <= 0xDFFF for text in texts for char in text)
    allowed = ("is empty or whitespace", "label is missing", "is missing, empty or whitespace", "lone surrogate")
    return all(any(part in reason for part in allowed) for reason in reasons(error)) and (empty or surrogate)


def test_every_accepted_labeled_text_is_stored_and_read_back_exactly(tmp_path):
    rng = random.Random(13)
    accepted = refused = 0
    for _ in range(EXAMPLES):
        rows = [(random_text(rng), random_text(rng)) for _ in range(3)]
        docs = [FinetunerDoc(text=text, finetuner_label=label) for text, label in rows]
        try:
            records = parse_data(docs, "text", CSVOptions(), min_items_per_class=1, whole=False)["train"]
        except DataError as error:
            assert refusal_is_true([cell for row in rows for cell in row], error), (rows, str(error))
            refused += 1
            continue
        assert [(r.content, r.label) for r in records] == rows
        assert stored_and_read(tmp_path, records) == [LabeledItem(text, label) for text, label in rows]
        sent = [FinetunerDoc.from_protobuf(doc.to_protobuf()) for doc in record_docs({"train": records})]
        assert [(doc.text, doc.finetuner_label) for doc in sent] == rows, "the documents a client uploads"
        accepted += 1
    assert accepted > 10 and refused > 10, (accepted, refused)


def test_every_accepted_pair_is_stored_and_read_back_exactly(tmp_path):
    rng = random.Random(7)
    accepted = 0
    for _ in range(EXAMPLES):
        first, second, score = random_text(rng), random_text(rng), rng.uniform(-5, 5)
        docs = [FinetunerDoc(text=first, text_pair=second), FinetunerDoc(text=first, text_pair=second, score=score)]
        for doc in docs:
            try:
                records = parse_data([doc], "text", CSVOptions(), whole=False)["train"]
            except DataError as error:
                assert refusal_is_true([first, second], error), (first, second, str(error))
                continue
            assert stored_and_read(tmp_path, records) == [replace(record, source="") for record in records]
            accepted += 1
    assert accepted > 20


def test_every_text_a_csv_file_holds_is_read_stored_and_read_back_exactly(tmp_path):
    rng = random.Random(29)
    accepted = 0
    for _ in range(EXAMPLES):
        rows = [(random_text(rng), random_text(rng)) for _ in range(3)]
        buffer = io.StringIO(newline="")
        csv.writer(buffer).writerows([("text", "label"), *rows])
        content = buffer.getvalue().encode("utf-8", errors="surrogatepass")  # bytes that are not UTF-8
        doc = FinetunerDoc(kind="csv", name="train.csv", blob=content)
        options = CSVOptions(dialect="excel", header=True)
        try:
            records = parse_data([doc], "text", options, min_items_per_class=1, whole=False)["train"]
        except DataError as error:
            surrogate = any(0xD800 <= ord(char) <= 0xDFFF for row in rows for cell in row for char in cell)
            assert surrogate or refusal_is_true([cell for row in rows for cell in row], error), (rows, str(error))
            continue
        kept = [row for row in rows if any(cell.strip() for cell in row)]  # a blank row is no row
        assert [(r.content, r.label) for r in records] == kept
        assert stored_and_read(tmp_path, records) == [LabeledItem(text, label) for text, label in kept]
        accepted += 1
    assert accepted > 10


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r"])
def test_a_csv_whose_texts_and_labels_hold_line_breaks_round_trips(tmp_path, separator):
    content = f'text,label\n"first{separator}line","a{separator}b"\nsecond,"a{separator}b"\nthird,c\nfourth,c\n'
    doc = FinetunerDoc(kind="csv", name="train.csv", blob=content.encode("utf-8"))
    records = parse_data([doc], "text", CSVOptions())["train"]
    assert records[0].content == f"first{separator}line" and records[0].label == f"a{separator}b"
    assert stored_and_read(tmp_path, records) == [LabeledItem(r.content, r.label) for r in records]


def test_a_lone_surrogate_is_refused_with_its_row_and_field():
    docs = [
        FinetunerDoc(text="fine", finetuner_label="a"),
        FinetunerDoc(text="half \ud83d of an emoji", finetuner_label="a"),
    ]
    with pytest.raises(DataError) as refused:
        parse_data(docs, "text", CSVOptions(), min_items_per_class=1)
    assert str(refused.value).splitlines()[1:] == [
        "  train document 1: text holds a lone surrogate (U+D83D) at position 5, half of a character, "
        "which cannot be stored as UTF-8"
    ]
    pairs = [QueryDocItem("q", "d\udc00"), ScoredPairItem("a\ud800", "b", 1.0)]
    for record in pairs:
        doc = FinetunerDoc(
            text=getattr(record, "query", getattr(record, "text", None)),
            text_pair=getattr(record, "document", getattr(record, "text_pair", None)),
            score=getattr(record, "score", None),
        )
        with pytest.raises(DataError, match="lone surrogate"):
            parse_data([doc], "text", CSVOptions(), whole=False)
