"""Errors the client raises, each with one clear message."""


class FinetunerError(Exception):
    """Base class of the client's errors."""


class NotLoggedInError(FinetunerError):
    """No Flow address is known: call finetuner.login(host=...) or set FINETUNER_HOST."""


class ServerError(FinetunerError):
    """The Flow refused a request; the message is the executor's reason (e.g. the bad rows of a data set)."""

    def __init__(self, message: str, executor: str = "", kind: str = ""):
        self.executor = executor
        self.kind = kind
        super().__init__(message)


class ConnectionFailedError(FinetunerError):
    """The Flow did not answer at the given address."""
