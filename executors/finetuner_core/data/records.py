"""The unit of labeled training data once it has been parsed, whatever it came from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabeledText:
    """A text with its class label. ``source`` says where it came from, for error messages."""

    text: str
    label: str
    source: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"text": self.text, "label": self.label}

    @classmethod
    def from_dict(cls, row: dict[str, str]) -> LabeledText:
        return cls(text=row["text"], label=row["label"])
