import pytest

from finetuner_core.data import DataError
from finetuner_core.data.csv_reader import CSVOptions, read_labeled_csv


def read(text: str | bytes, **options):
    content = text.encode("utf-8") if isinstance(text, str) else text
    return [(r.content, r.label) for r in read_labeled_csv(content, "data.csv", CSVOptions(**options))]


def test_header_is_detected_and_skipped():
    assert read("text,label\nhello,a\nworld,b\n") == [("hello", "a"), ("world", "b")]


def test_banking77_header_is_detected(data_dir):
    records = read_labeled_csv((data_dir / "banking77" / "test.csv").read_bytes(), "test.csv")
    assert len(records) == 3080
    assert records[0].source == "test.csv row 2"
    assert len({r.label for r in records}) == 77


def test_no_header():
    assert read("hello,a\nworld,b\n") == [("hello", "a"), ("world", "b")]


def test_header_can_be_forced():
    assert read("first,row\nhello,a\n", header=True) == [("hello", "a")]
    assert read("text,label\nhello,a\n", header=False) == [("text", "label"), ("hello", "a")]


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_dialect_is_sniffed(delimiter):
    text = "".join(f"some text {i}{delimiter}label{i % 2}\n" for i in range(6))
    assert read(text)[0] == ("some text 0", "label0")


def test_quoted_field_keeps_its_commas_and_newlines():
    assert read('"Hi, there\nfriend",greeting\nbye,farewell\n') == [
        ("Hi, there\nfriend", "greeting"),
        ("bye", "farewell"),
    ]


def test_named_dialect():
    assert read("a text\tx\nb text\ty\n", dialect="excel-tab") == [("a text", "x"), ("b text", "y")]


def test_blank_lines_and_bom_are_ignored():
    assert read("\ufefftext,label\n\nhello,a\n\n") == [("hello", "a")]


def test_encoding_option():
    content = "café,drink\nthé,drink\n".encode("latin-1")
    assert read(content, encoding="latin-1") == [("café", "drink"), ("thé", "drink")]


def test_non_utf8_file_names_the_row_and_the_fix():
    content = "text,label\nfine,a\ncaf\xe9,b\n".encode("latin-1")
    with pytest.raises(DataError) as info:
        read(content)
    message = str(info.value)
    assert "data.csv row 3" in message and "not valid utf-8" in message and "encoding" in message


def test_wrong_column_count_names_every_bad_row():
    with pytest.raises(DataError) as info:
        read("text,label\nok,a\ntoo,many,cells\nalone\nfine,b\n")
    problems = [str(p) for p in info.value.problems]
    assert problems == [
        "data.csv row 3: expected 2 columns (text, label), found 3",
        "data.csv row 4: expected 2 columns (text, label), found 1",
    ]


@pytest.mark.parametrize("field,value", [("encoding", "no-such-codec"), ("dialect", "nope")])
def test_bad_options_are_refused(field, value):
    with pytest.raises(ValueError, match=field if field == "encoding" else "dialect"):
        CSVOptions(**{field: value})


def test_doubled_quotes_inside_a_quoted_text():
    text = 'text,label\n"he said ""no"" to me, twice",refusal\nok,other\n'
    assert read(text) == [('he said "no" to me, twice', "refusal"), ("ok", "other")]


def test_whole_banking77_train_file_parses(data_dir):
    records = read_labeled_csv((data_dir / "banking77" / "train.csv").read_bytes(), "train.csv")
    assert len(records) == 10003
