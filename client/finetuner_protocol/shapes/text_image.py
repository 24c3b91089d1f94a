"""Text-image pairs: a text and the image it describes, unlabeled, for CLIP training (each text's negatives are
the other images of its batch). CSV rows ``image,text``; documents with ``text`` and an image."""

from __future__ import annotations

from typing import Any

from finetuner_protocol.data.images import image_to_png_bytes
from finetuner_protocol.data.records import TEXT_IMAGE, PairItem
from finetuner_protocol.data.validation import validate_pairs
from finetuner_protocol.shapes.base import RANK, LoadImage, SaveImage, Shape


def _read_doc(doc, where: str) -> PairItem:
    """A document's pair, its image as the document holds it (bytes, a data URI or pixels), to be decoded."""
    image = next((value for value in (doc.blob, doc.uri, doc.tensor) if value is not None), None)
    return PairItem(doc.text, image, where)


def _to_row(record: PairItem, save_image: SaveImage) -> dict[str, Any]:
    return {"text": record.text, "image": save_image(record.image)}


def _from_row(row: dict[str, Any], load_image: LoadImage) -> PairItem:
    return PairItem(text=row["text"], image=load_image(row["image"]))


def _eval_sizes(records: list[PairItem]) -> tuple[int, int, bool]:
    """Each distinct text queries every image."""
    return len({record.text for record in records}), len(records), False


SHAPE = Shape(
    name=TEXT_IMAGE,
    description="text-image pairs",
    record=PairItem,
    columns=("image", "text"),
    read_row=lambda where, cells: PairItem(cells[1], cells[0], where),
    read_doc=_read_doc,
    doc_marks=(),
    to_doc=lambda record: {"text": record.text, "blob": image_to_png_bytes(record.image)},
    row_fields=frozenset({"text", "image"}),
    to_row=_to_row,
    from_row=_from_row,
    validate=lambda records, dataset, min_items_per_class, whole: validate_pairs(records, dataset),
    holds=lambda record: TEXT_IMAGE,
    modality=lambda record: TEXT_IMAGE,
    text_columns=lambda record: {},
    default_loss="CLIPLoss",
    losses=("CLIPLoss",),
    metrics=RANK,
    default_monitor="mrr@10",
    eval_sizes=_eval_sizes,
    card_counts=("texts", "text"),
    card_evaluation="Retrieval on the evaluation data ({count} queries: each text against every image), before "
    "and after training.",
)
