"""Training and evaluation data: parsing (CSV), records and validation."""

from finetuner_protocol.data.errors import DataError, Problem
from finetuner_protocol.data.records import LabeledItem

__all__ = ["DataError", "LabeledItem", "Problem"]
