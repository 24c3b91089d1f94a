import pytest

from finetuner_protocol.data import DataError
from finetuner_protocol.data.csv_reader import CSVOptions, read_labeled_csv


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


# --- the shapes of a text file: labeled texts, query-document pairs, scored pairs --------------------------------


def read_text(text: str, **options):
    from finetuner_protocol.data.csv_reader import read_text_csv

    return read_text_csv(text.encode("utf-8"), "data.csv", CSVOptions(**options))


@pytest.mark.parametrize("header", ["query,document", "anchor,positive", "sentence1,sentence2", "Question,Answer"])
def test_a_header_naming_two_texts_makes_query_document_pairs(header):
    records = read_text(f"{header}\nhow do I pay,pay with a card\nlost card,freeze it in the app\n")
    assert [(r.query, r.document, r.source) for r in records] == [
        ("how do I pay", "pay with a card", "data.csv row 2"),
        ("lost card", "freeze it in the app", "data.csv row 3"),
    ]


def test_is_labeled_false_reads_two_columns_as_query_and_document():
    from finetuner_protocol.data.records import LabeledItem, QueryDocItem

    text = "how do I pay,pay with a card\nlost card,freeze it\n"
    assert all(isinstance(r, LabeledItem) for r in read_text(text))
    records = read_text(text, is_labeled=False)
    assert all(isinstance(r, QueryDocItem) for r in records) and records[1].document == "freeze it"


@pytest.mark.parametrize("header", ["", "sentence1,sentence2,score\n", "text_a,text_b,label\n"])
def test_three_columns_are_scored_pairs(header):
    records = read_text(header + 'a plane takes off,"an air plane, taking off",5.000\nA man sings.,A dog runs.,0.2\n')
    assert [(r.text, r.text_pair, r.score) for r in records] == [
        ("a plane takes off", "an air plane, taking off", 5.0),
        ("A man sings.", "A dog runs.", 0.2),
    ]
    assert records[0].source == f"data.csv row {1 + bool(header)}"


def test_a_score_that_is_not_a_number_is_named_with_its_row_along_with_the_other_problems():
    from finetuner_protocol.data.validation import validate_scored

    records = read_text("a,b,1\nc,d,high\ne,,2.5\ng,h,\ni,j,4\n")
    assert records[1].score == "high", "kept as written, for validation to report"
    with pytest.raises(DataError) as info:
        validate_scored(records, "train")
    assert [str(p) for p in info.value.problems] == [
        "data.csv row 2: score 'high' is not a number",
        "data.csv row 3: second text is missing, empty or whitespace",
        "data.csv row 4: score '' is not a number",
    ]


def test_rows_of_the_wrong_width_are_named_for_each_shape():
    with pytest.raises(DataError) as info:
        read_text("a,b,1\nc,d,2\ne,f\n")
    assert [str(p) for p in info.value.problems] == ["data.csv row 3: expected 3 columns (text, text, score), found 2"]
    with pytest.raises(DataError, match="row 2: expected 2 columns \\(query, document\\), found 3"):
        read_text("query,document\nq,d,extra\n")


def test_three_cells_of_text_stay_a_labeled_file_with_a_bad_row():
    """Most rows end in a label, not a number: the file is labeled, and a row with an extra comma is named."""
    with pytest.raises(DataError, match="row 2: expected 2 columns \\(text, label\\), found 3"):
        read_text("hello,greeting\nhi, there,greeting\nbye,farewell\n")


def test_stsb_rows_parse_as_scored_pairs(data_dir):
    import csv
    import io

    with open(data_dir / "stsb" / "sts-dev.csv", encoding="utf-8") as file:
        rows = [line.rstrip("\n").split("\t") for line in file]
    buffer = io.StringIO()
    csv.writer(buffer).writerows([("sentence1", "sentence2", "score"), *[(r[5], r[6], r[4]) for r in rows]])
    records = read_text(buffer.getvalue())
    assert len(records) == 1500 and all(0 <= r.score <= 5 for r in records)
    assert records[0].text == rows[0][5] and records[0].score == float(rows[0][4])
