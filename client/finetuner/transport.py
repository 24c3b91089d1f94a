"""The only module of the client that speaks to the Flow (jina's gRPC client, imported when the first
:class:`Transport` is made: commands that reach no Flow start without it)."""

from __future__ import annotations

import os
import warnings
from typing import Any
from urllib.parse import urlparse

from docarray import DocList

from finetuner.errors import ConnectionFailedError, ServerError
from finetuner_protocol.wire import FinetunerDoc, read_result

os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")


def parse_host(host: str) -> tuple[str, int, bool]:
    """``grpc://127.0.0.1:54321`` or ``127.0.0.1:54321`` -> (``127.0.0.1``, 54321, False);
    ``grpcs://name.wolf.jina.ai`` (TLS, port 443 unless given) -> (``name.wolf.jina.ai``, 443, True)."""
    parsed = urlparse(host if "://" in host else f"grpc://{host}")
    tls = parsed.scheme == "grpcs"
    port = parsed.port or (443 if tls else None)
    if parsed.scheme not in ("grpc", "grpcs") or not parsed.hostname or not port:
        raise ValueError(f"host must look like grpc://HOST:PORT or grpcs://HOST[:PORT], got {host!r}")
    return parsed.hostname, port, tls


class Transport:
    """Posts requests to a Flow over gRPC and turns refused requests into :class:`ServerError`."""

    def __init__(self, host: str, token: str | None = None):
        self.host = host
        self.token = token
        address, port, tls = parse_host(host)
        with warnings.catch_warnings():  # jina imports pkg_resources, which warns on every import
            warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
            from jina import Client
        self._client = Client(host=address, port=port, protocol="grpc", tls=tls)

    def is_ready(self, timeout_s: float = 5.0) -> bool:
        return bool(self._client.is_flow_ready(timeout=timeout_s))

    def post(self, endpoint: str, docs: list[FinetunerDoc] | None = None, **parameters: Any) -> DocList[FinetunerDoc]:
        """Send ``docs`` (in one request) with ``parameters``; return the answer's documents."""
        docs = DocList[FinetunerDoc](docs or [])
        if self.token is not None:
            parameters["token"] = self.token
        try:
            responses = self._client.post(
                endpoint,
                inputs=docs,
                parameters=parameters,
                request_size=max(1, len(docs)),
                return_type=DocList[FinetunerDoc],
                return_responses=True,
                continue_on_error=True,
                on_error=_keep,  # refused requests are raised below, not logged by jina (with the server's traceback)
            )
        except ConnectionError as exc:
            raise ConnectionFailedError(f"cannot reach the Flow at {self.host}: {exc}") from None
        for response in responses:
            _raise_for_status(response)
        return DocList[FinetunerDoc]([doc for response in responses for doc in response.docs])

    def result(self, endpoint: str, docs: list[FinetunerDoc] | None = None, **parameters: Any) -> dict[str, Any]:
        """The JSON payload of the answer to ``endpoint``."""
        return read_result(self.post(endpoint, docs, **parameters))


def _keep(response) -> None:
    """jina's error callback: the response is kept as it is (``_raise_for_status`` reads it)."""


def _raise_for_status(response) -> None:
    status = response.header.status
    if status.code == status.ERROR:
        exception = status.exception
        message = reason(exception.args[0] if exception.args else "") or exception.name or "the request failed"
        raise ServerError(message, executor=exception.executor, kind=exception.name)


def reason(message: str) -> str:
    """The server's reason: the exception's first line and the indented lines that detail it (e.g. the bad rows
    of a data set), never a traceback (the server keeps that in its log)."""
    lines = message.strip().splitlines()
    kept = lines[:1]
    for line in lines[1:]:
        if not line.startswith((" ", "\t")) or line.lstrip().startswith(("Traceback", 'File "')):
            break
        kept.append(line)
    return "\n".join(kept)
