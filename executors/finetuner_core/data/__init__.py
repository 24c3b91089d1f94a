"""Training and evaluation data: parsing (CSV), records and validation."""

from finetuner_core.data.errors import DataError, Problem
from finetuner_core.data.records import LabeledItem

__all__ = ["DataError", "LabeledItem", "Problem"]
