"""One error type for bad data: it names every offending row or document and the reason."""

from __future__ import annotations

from dataclasses import dataclass

MAX_LISTED = 20


@dataclass(frozen=True)
class Problem:
    """One reason a data set was refused, and where (``row 7``, ``document 3``, ``file``)."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class DataError(ValueError):
    """A data set was refused as a whole; nothing of it is kept.

    The message lists up to ``MAX_LISTED`` problems, one per line, each naming its row or document.
    """

    def __init__(self, dataset: str, problems: list[Problem]):
        if not problems:
            raise ValueError("DataError needs at least one problem")
        self.dataset = dataset
        self.problems = list(problems)
        super().__init__(self._message())

    def _message(self) -> str:
        count = len(self.problems)
        head = f"{self.dataset} data rejected: {count} problem{'s' if count > 1 else ''}"
        lines = [f"  {p}" for p in self.problems[:MAX_LISTED]]
        if count > MAX_LISTED:
            lines.append(f"  ... and {count - MAX_LISTED} more")
        return "\n".join([head, *lines])
