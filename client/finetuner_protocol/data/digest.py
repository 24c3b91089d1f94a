"""The digest of a batch of records, as the client declares it with each uploaded batch and the dataset store
checks it: what was sent is what is stored."""

from __future__ import annotations

import hashlib
import json

from PIL import Image

from finetuner_protocol.shapes import to_row


def batch_sha256(records: list) -> str:
    """The SHA-256 of a batch's records: their rows (``records.to_row``), an image as its size and RGB pixels, so
    that PNG encoding does not change it."""
    digest = hashlib.sha256()

    def pixels(image: Image.Image) -> str:
        rgb = image.convert("RGB")
        return hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()

    for record in records:
        digest.update(json.dumps(to_row(record, pixels), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()
