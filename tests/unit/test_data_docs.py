"""docs/guide/data.md is true: every example in it runs, and each error it shows is the one the code gives.

The page is read block by block, in order, in one folder: a ``csv NAME`` block is written to the file NAME; a
``python`` block runs (all of them share one namespace, with ``finetuner`` imported); a python block followed by a
``text`` block must raise, and the text is the error: ``str(error)`` of a DataError, else ``Type: message``.
"""

import os
import re

import pytest

import finetuner
from conftest import ROOT

PAGE = ROOT / "docs" / "guide" / "data.md"
BLOCK = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```$", re.S | re.M)


def blocks() -> list[tuple[str, str, str]]:
    return [(kind, info.strip(), body) for kind, info, body in BLOCK.findall(PAGE.read_text("utf-8"))]


def shown(error: Exception) -> str:
    return str(error) if isinstance(error, finetuner.DataError) else f"{type(error).__name__}: {error}"


def test_every_example_of_the_data_guide_gives_the_error_it_shows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"finetuner": finetuner}
    page, checked = blocks(), 0
    for index, (kind, info, body) in enumerate(page):
        if kind == "csv":
            (tmp_path / info).write_text(body, encoding="utf-8")
        if kind != "python":
            continue
        expected = page[index + 1][2].strip() if index + 1 < len(page) and page[index + 1][0] == "text" else None
        code = compile(body, f"{PAGE.name} block {index}", "exec")
        if expected is None:
            exec(code, namespace)
            continue
        with pytest.raises(Exception) as info:
            exec(code, namespace)
        assert shown(info.value) == expected, f"block {index}:\n{body}"
        checked += 1
    assert checked >= 15, "the guide shows every kind of refusal"
    assert os.path.exists("latin1.csv")


def test_check_data_describes_valid_data(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("text,label\nI lost my card,lost\nmy card is gone,lost\ncard arrived?,came\nis it here,came\n")
    assert finetuner.check_data(str(path)) == {"train": {"items": 4, "shape": "text", "classes": 2}}
    scored = [("A plane takes off.", "An air plane is taking off.", 5), ("A cat.", "A dog runs.", 0.4)]
    assert finetuner.check_data(scored, scored, monitor="spearman") == {
        "train": {"items": 2, "shape": "scored"},
        "eval": {"items": 2, "shape": "scored"},
    }


def test_every_python_block_of_the_guides_compiles():
    pages = sorted((ROOT / "docs" / "guide").glob("*.md"))
    assert {page.stem for page in pages} >= {"data", "text", "image", "text-to-image", "scored-pairs"}
    for page in pages:
        for index, (kind, body) in enumerate(re.findall(r"^```(\w+)[^\n]*\n(.*?)^```$", page.read_text(), re.S | re.M)):
            if kind == "python":
                compile(body, f"{page.name} block {index}", "exec")
