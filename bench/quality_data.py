"""The quality benchmarks' data: fixed slices of the shared data sets, as the project's records.

Banking77: the first ``train_per_class`` rows of each category of train.csv, the first ``eval_per_class`` of
test.csv (file order: the same slices every run). STS-B: sts-train.csv (its first ``train_size`` pairs, 0 = all)
and sts-test.csv (its first ``eval_size``, 0 = all). CIFAR-10: files 0000.. of each class for training, files
0600.. for evaluation; for CLIP the caption of an image is "a photo of a <class>".
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image

from finetuner_protocol.data.records import LabeledItem, PairItem, ScoredPairItem


def _per_class(rows: list[tuple[str, str]], per_class: int) -> list[tuple[str, str]]:
    taken: dict[str, int] = {}
    kept = []
    for text, label in rows:
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            kept.append((text, label))
    return kept


def _banking77_rows(data: Path, split: str) -> list[tuple[str, str]]:
    with open(data / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as file:
        return [(row["text"], row["category"]) for row in csv.DictReader(file)]


def banking77_slice(data: Path, train_per_class: int, eval_per_class: int) -> tuple[list, list, dict]:
    train = [LabeledItem(t, c) for t, c in _per_class(_banking77_rows(data, "train"), train_per_class)]
    evaluation = [LabeledItem(t, c) for t, c in _per_class(_banking77_rows(data, "test"), eval_per_class)]
    classes = len({r.label for r in train})
    described = {
        "train": f"train.csv, first {train_per_class} rows of each of {classes} categories ({len(train):,} rows)",
        "eval": f"test.csv, first {eval_per_class} rows of each category ({len(evaluation):,} rows; every row a "
        "query against the others, same category = relevant)",
        "train_items": len(train),
        "eval_items": len(evaluation),
    }
    return train, evaluation, described


def _stsb_pairs(data: Path, split: str, count: int) -> list[ScoredPairItem]:
    """STS-B lines are tab-separated: genre, file, year, id, score, sentence1, sentence2 (then extra fields)."""
    with open(data / "stsb" / f"sts-{split}.csv", encoding="utf-8") as file:
        rows = [line.rstrip("\n").split("\t") for line in file]
    rows = rows[:count] if count else rows
    return [ScoredPairItem(r[5], r[6], float(r[4]), f"sts-{split} row {i + 1}") for i, r in enumerate(rows)]


def stsb(data: Path, train_size: int, eval_size: int) -> tuple[list, list, dict]:
    train, evaluation = _stsb_pairs(data, "train", train_size), _stsb_pairs(data, "test", eval_size)
    described = {
        "train": f"sts-train.csv, {'first ' if train_size else 'all '}{len(train):,} scored pairs",
        "eval": f"sts-test.csv, {'first ' if eval_size else 'all '}{len(evaluation):,} pairs (Spearman of cosine "
        "vs gold score)",
        "train_items": len(train),
        "eval_items": len(evaluation),
    }
    return train, evaluation, described


def _cifar10_files(data: Path, first: int, count: int) -> list[tuple[Path, str]]:
    folders = sorted((data / "cifar10" / "test").iterdir())
    return [(f / f"{i:04d}.jpg", f.name) for f in folders for i in range(first, first + count)]


def _image(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def cifar10_images(data: Path, train_per_class: int, eval_per_class: int) -> tuple[list, list, dict]:
    train = [LabeledItem(_image(p), c) for p, c in _cifar10_files(data, 0, train_per_class)]
    evaluation = [LabeledItem(_image(p), c) for p, c in _cifar10_files(data, 600, eval_per_class)]
    described = {
        "train": f"files 0000-{train_per_class - 1:04d} of each class ({len(train):,} images)",
        "eval": f"files 0600-{600 + eval_per_class - 1:04d} of each class ({len(evaluation):,} images; every image "
        "a query against the others, same class = relevant)",
        "train_items": len(train),
        "eval_items": len(evaluation),
    }
    return train, evaluation, described


def cifar10_pairs(data: Path, train_per_class: int, eval_per_class: int) -> tuple[list, list, dict]:
    train = [PairItem(f"a photo of a {c}", _image(p)) for p, c in _cifar10_files(data, 0, train_per_class)]
    evaluation = [PairItem(f"a photo of a {c}", _image(p)) for p, c in _cifar10_files(data, 600, eval_per_class)]
    described = {
        "train": f"files 0000-{train_per_class - 1:04d} of each class with their captions ({len(train):,} pairs)",
        "eval": f"files 0600-{600 + eval_per_class - 1:04d} of each class ({len(evaluation):,} images); the 10 "
        "captions are the queries, the images of their class relevant",
        "train_items": len(train),
        "eval_items": len(evaluation),
    }
    return train, evaluation, described
