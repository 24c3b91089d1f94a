"""A refused request reads as the server's reason: no traceback, no server paths, and nothing logged by jina."""

import asyncio

import pytest
from jina.types.request.data import DataRequest

from finetuner.errors import ServerError
from finetuner.transport import _raise_for_status, reason
from finetuner_core.in_thread import in_thread
from finetuner_protocol.data.errors import DataError, Problem


def refused(error: Exception) -> DataRequest:
    """A response as an executor's worker makes it for ``error`` (with the traceback jina adds)."""
    try:
        raise error
    except Exception as raised:
        response = DataRequest()
        response.add_exception(raised)
        return response


def test_the_message_is_the_reason_without_the_traceback():
    response = refused(ValueError("parameter limit: input should be greater than or equal to 1, got -1"))
    assert response.header.status.exception.stacks, "jina sends the traceback along"
    with pytest.raises(ServerError) as error:
        _raise_for_status(response)
    assert str(error.value) == "parameter limit: input should be greater than or equal to 1, got -1"
    assert error.value.kind == "ValueError"


def test_a_data_error_keeps_the_lines_that_name_its_rows():
    problems = [Problem("train.csv row 3", "text is empty"), Problem("train.csv row 9", "label is empty")]
    with pytest.raises(ServerError) as error:
        _raise_for_status(refused(DataError("train", problems)))
    assert str(error.value).splitlines() == [
        "train data rejected: 2 problems",
        "  train.csv row 3: text is empty",
        "  train.csv row 9: label is empty",
    ]


def test_a_traceback_inside_a_message_is_cut_off():
    dump = 'boom\n  detail\nTraceback (most recent call last):\n  File "/srv/executor.py", line 3, in f\nKeyError: 1'
    assert reason(dump) == "boom\n  detail"
    assert reason('boom\n  File "/srv/executor.py", line 3, in f') == "boom"
    assert reason("") == ""


def test_an_exception_without_a_message_is_named():
    with pytest.raises(ServerError, match="^KeyError$"):
        _raise_for_status(refused(KeyError()))


def test_an_endpoint_error_reaches_the_wire_without_the_servers_traceback(caplog):
    """What jina sends for an ``@in_thread`` endpoint's error: the kind and message, no stack (no server path);
    the server's own log keeps the traceback."""

    class Endpoint:
        @in_thread
        def fit(self):
            raise DataError("train", [Problem("train.csv row 3", "text is empty")])

    try:
        asyncio.run(Endpoint().fit())
    except Exception as raised:
        assert isinstance(raised, DataError)  # still the kind it was, for callers in the server
        response = DataRequest()
        response.add_exception(raised)
    exception = response.header.status.exception
    assert exception.name == "DataError"
    assert "".join(exception.stacks).count("\n") == 2  # the message alone: no "File ..." lines
    assert "File " not in "".join(exception.stacks) and __file__ not in "".join(exception.stacks)
    assert "Traceback" in caplog.text and "test_server_errors.py" in caplog.text  # logged on the server
