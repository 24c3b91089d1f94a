"""Bad input against the real Flow: each kind is refused with one clear line, the Flow answers afterwards, and
nothing of it is stored (the workspace's databases and its datasets/ and runs/ folders are unchanged).

Where the client refuses before sending, the client's error is checked; the ``raw-`` cases send the same kind of
request with a plain jina Client (no client-side checks), so the Flow's own refusal is checked too.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from docarray import BaseDoc, DocList
from jina import Client

import finetuner
from conftest import banking77_slice, user_token
from finetuner_protocol.wire import FinetunerDoc

SMALL = {"batch_size": 16, "eval_ks": [1, 5], "device": "cpu", "quiet": True}
IGNORED = re.compile(r"(-wal|-shm|-journal|\.log|\.lock)$")
ROOT = Path(__file__).resolve().parents[2]
LEAKS = ("Traceback", 'File "', "site-packages", str(ROOT))  # + the workspace: the server's files


class Tagged(BaseDoc):
    """A document as Finetuner's users build them: text and tags."""

    text: str | None = None
    tags: dict[str, Any] = {}


class Refused(Exception):
    """A request the Flow failed; the message is the server's reason as jina carries it."""


@dataclass
class Bench:
    """What the cases use: the Flow, this module's user, and data prepared before any case runs."""

    port: int
    token: str
    tmp: Path
    data_dir: Path
    rows: list[tuple[str, str]]  # good (text, label) rows: 4 classes x 4
    dataset: str  # a READY dataset of this user
    uploading: str  # an UPLOADING dataset of this user (one batch planned, none stored)
    others_dataset: str  # a READY dataset of another user
    others_run: str  # an ended run of another user

    def csv(self, name: str, content: str | bytes) -> str:
        path = self.tmp / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return str(path)

    def rows_csv(self, name: str, extra: list[tuple[str, str]] = (), encoding: str = "utf-8") -> str:
        """The good rows plus ``extra`` as a ``text,label`` CSV."""
        text = io.StringIO()
        csv.writer(text).writerows([("text", "label"), *self.rows, *extra])
        return self.csv(name, text.getvalue().encode(encoding))


def raw(bench: Bench, endpoint: str, docs: list[FinetunerDoc] = (), **parameters: Any) -> None:
    """Send a request as a plain jina Client does (nothing checked on this side); :class:`Refused` with the
    server's reason when the Flow fails it."""
    client = Client(host="127.0.0.1", port=bench.port, protocol="grpc")
    responses = client.post(
        endpoint,
        inputs=DocList[FinetunerDoc](list(docs)),
        parameters={"token": bench.token, **parameters},
        request_size=max(1, len(docs)),
        return_type=DocList[FinetunerDoc],
        return_responses=True,
        continue_on_error=True,
        on_error=lambda response: None,
    )
    for response in responses:
        status = response.header.status
        if status.code == status.ERROR:
            exception = status.exception
            raise Refused(exception.args[0] if exception.args else exception.name)


def upload(data: Any, **options: Any) -> None:
    finetuner.upload_dataset(data, quiet=True, **options)


def fit(bench: Bench, **settings: Any) -> None:
    """A fit of this user's stored dataset (no upload), with ``settings``."""
    finetuner.fit(**{"train_data": bench.dataset, **SMALL, **settings})


def config(**settings: Any) -> dict[str, Any]:
    return {"model": "all-MiniLM-L6-v2", "device": "cpu", "eval_ks": [1, 5], **settings}


def docs(*items: dict[str, Any]) -> list[FinetunerDoc]:
    return [FinetunerDoc(**item) for item in items]


def labeled_texts(bench: Bench, split: str = "train") -> list[FinetunerDoc]:
    return [FinetunerDoc(split=split, text=text, finetuner_label=label) for text, label in bench.rows]


def vectors(*first: list[float]) -> list[tuple[np.ndarray, str]]:
    """Labeled 4-d vectors (3 classes x 3), the ``first`` ones replacing the start."""
    rng = np.random.default_rng(0)
    items = [(rng.normal(size=4).astype(np.float32), f"c{i % 3}") for i in range(9)]
    return [(np.asarray(v, dtype=np.float32), "c0") for v in first] + items[len(first) :]


def image_csv(bench: Bench) -> str:
    """An ``image,label`` CSV of 9 CIFAR-10 images (copied beside it)."""
    lines = []
    for name in ("airplane", "bird", "cat"):
        for i in range(3):
            image = bench.tmp / "images" / name / f"{i:04d}.jpg"
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes((bench.data_dir / "cifar10" / "test" / name / image.name).read_bytes())
            lines.append(f"images/{name}/{image.name},{name}")
    return bench.csv("images.csv", "image,label\n" + "\n".join(lines) + "\n")


@dataclass
class Case:
    id: str
    call: Callable[[Bench], Any]
    error: str  # a regex its headline matches (see headline)


CASES = [
    # --- malformed CSV files -------------------------------------------------------------------------------------
    Case(
        "csv-ragged-row",
        lambda b: upload(b.csv("ragged.csv", "text,label\nhello,a\nhi there,a,extra\nbye,b\nciao,b\n")),
        r"row 3|3 (fields|columns|cells)|ragged|field",
    ),
    Case(
        "csv-unclosed-quote",
        lambda b: upload(b.csv("quote.csv", 'text,label\n"hello,a\nhi,a\nbye,b\nciao,b\n')),
        r"quot|row|CSV",
    ),
    Case("csv-only-header", lambda b: upload(b.csv("header.csv", "text,label\n")), r"no (rows|items|data)|empty"),
    Case("csv-empty-file", lambda b: upload(b.csv("empty.csv", b"")), r"empty|no (rows|items|data)"),
    Case(
        "csv-one-class",
        lambda b: finetuner.fit(
            train_data=b.csv("one.csv", "text,label\n" + "".join(f"text {i},a\n" for i in range(8))), **SMALL
        ),
        r"class",
    ),
    Case(
        "csv-one-item-per-class",
        lambda b: finetuner.fit(
            train_data=b.csv("single.csv", "text,label\n" + "".join(f"text {i},c{i}\n" for i in range(8))), **SMALL
        ),
        r"class|item",
    ),
    Case("csv-empty-label", lambda b: upload(b.rows_csv("nolabel.csv", [("a text without label", "")])), r"label"),
    Case("csv-empty-text", lambda b: upload(b.rows_csv("notext.csv", [("", "c0")])), r"text|empty"),
    Case(
        "csv-binary-garbage",
        lambda b: upload(b.csv("garbage.csv", bytes(range(256)) * 8)),
        r"UTF-8|encod|binary|NUL|CSV",
    ),
    Case(
        "csv-eval-one-class",
        lambda b: finetuner.fit(
            train_data=b.dataset,
            eval_data=b.csv("eval.csv", "text,label\n" + "".join(f"e {i},a\n" for i in range(6))),
            **SMALL,
        ),
        r"eval",
    ),
    # --- encodings ------------------------------------------------------------------------------------------------
    Case(
        "encoding-latin-1",
        lambda b: upload(b.rows_csv("latin1.csv", [("caf\xe9 cr\xe8me", "c0")], "latin-1")),
        r"UTF-8|encod",
    ),
    Case("encoding-utf-16-bom", lambda b: upload(b.rows_csv("utf16.csv", encoding="utf-16")), r"UTF-16|UTF-8|encod"),
    Case(
        "encoding-invalid-utf-8",
        lambda b: upload(b.csv("bad.csv", b"text,label\nab\xc3\x28cd,a\nx,a\ny,b\nz,b\n")),
        r"UTF-8|encod",
    ),
    # --- NUL bytes ------------------------------------------------------------------------------------------------
    Case("nul-in-model-name", lambda b: fit(b, model="all-MiniLM-L6-v2\x00"), r"model"),
    Case(
        "nul-in-csv-path",
        lambda b: finetuner.fit(train_data=str(b.tmp / "train\x00.csv"), **SMALL),
        r"null|NUL|no such file",
    ),
    Case("nul-in-csv-encoding", lambda b: fit(b, csv_options={"encoding": "utf\x00-8"}), r"encoding"),
    Case(
        "raw-nul-in-dataset-id", lambda b: raw(b, "/datasets/delete", dataset_id=b.dataset[:-1] + "\x00"), r"not found"
    ),
    Case("raw-nul-in-run-id", lambda b: raw(b, "/runs/status", run_id=b.others_run[:-1] + "\x00"), r"not found"),
    Case(
        "raw-batch-undeclared",
        lambda b: raw(
            b, "/datasets/upload", labeled_texts(b), dataset={"id": b.uploading, "index": 0}, config=config()
        ),
        r"declare",
    ),
    Case(
        "huge-field-2mb",
        lambda b: upload(b.rows_csv("huge.csv", [("x" * 2_000_000, "c0")])),
        r"long|large|characters|size|limit",
    ),
    Case(
        "huge-line-100k-columns",
        lambda b: upload(b.csv("wide.csv", "text,label\n" + "x," * 100_000 + "a\n")),
        r"expected 2 columns",
    ),
    # --- wrong shapes ---------------------------------------------------------------------------------------------
    Case("image-csv-for-text-model", lambda b: upload(image_csv(b)), r"image|text model|modality"),
    Case(
        "vectors-with-nan",
        lambda b: upload(vectors([1.0, math.nan, 0.0, 0.0]), model="mlp", input_dim=4),
        r"NaN|finite",
    ),
    Case(
        "vectors-with-inf",
        lambda b: upload(vectors([1.0, math.inf, 0.0, 0.0]), model="mlp", input_dim=4),
        r"inf|finite",
    ),
    Case(
        "vectors-mixed-dims",
        lambda b: upload(vectors([1.0, 2.0]), model="mlp", input_dim=4),
        r"dimension|length|size|\b2\b",
    ),
    Case("vectors-for-text-model", lambda b: upload(vectors()), r"text|vector"),
    Case(
        "score-tag-without-two-texts",
        lambda b: upload(
            DocList[Tagged]([Tagged(text=f"only one {i}", tags={"finetuner_score": 0.5}) for i in range(4)])
        ),
        r"finetuner_score.*text_pair",
    ),
    Case("texts-without-labels", lambda b: upload([text for text, _ in b.rows]), r"label"),
    Case("no-data", lambda b: upload([]), r"no (rows|items|data)|empty"),
    Case(
        "raw-batch-count-differs",
        lambda b: raw(
            b,
            "/datasets/upload",
            labeled_texts(b),
            dataset={"id": b.uploading, "index": 0, "items": 3, "sha256": "0" * 64},
            config=config(),
        ),
        r"declared with 3 items",
    ),
    Case(
        "raw-batch-digest-differs",
        lambda b: raw(
            b,
            "/datasets/upload",
            labeled_texts(b),
            dataset={"id": b.uploading, "index": 0, "items": 16, "sha256": "0" * 64},
            config=config(),
        ),
        r"does not match the sha256",
    ),
    Case(
        "raw-batch-index-beyond-plan",
        lambda b: raw(
            b,
            "/datasets/upload",
            labeled_texts(b),
            dataset={"id": b.uploading, "index": 5, "items": 16, "sha256": "0" * 64},
            config=config(),
        ),
        r"batch index",
    ),
    Case("batch-size-huge", lambda b: fit(b, batch_size=10**9), r"batch_size"),
    Case("epochs-zero", lambda b: fit(b, epochs=0), r"epochs"),
    Case("grad-accumulation-huge", lambda b: fit(b, gradient_accumulation_steps=10**9), r"gradient_accumulation"),
    Case("output-dim-huge", lambda b: fit(b, output_dim=10**9), r"output_dim"),
    Case("monitor-unknown-metric", lambda b: fit(b, monitor="mrrr@10"), r"monitor"),
    Case("loss-margin-not-a-number", lambda b: fit(b, loss_options={"margin": "abc"}), r"loss_options|margin"),
    Case("miner-option-unknown", lambda b: fit(b, miner_options={"bogus": 1}), r"miner_options|bogus"),
    Case(
        "optimizer-option-bad-value",
        lambda b: fit(b, optimizer="SGD", optimizer_options={"momentum": "x"}),
        r"optimizer_options|momentum",
    ),
    Case("device-cuda-without-gpu", lambda b: fit(b, device="cuda"), r"cuda|GPU"),
    Case("model-name-empty", lambda b: fit(b, model=""), r"model"),
    Case("eval-ks-beyond-data", lambda b: fit(b, eval_ks=[100000]), r"eval_ks|100000"),
    Case("learning-rate-nan", lambda b: fit(b, learning_rate=math.nan), r"learning_rate"),
    Case("loss-unknown", lambda b: fit(b, loss="NoSuchLoss"), r"loss"),
    Case(
        "raw-monitor-unknown-metric",
        lambda b: raw(b, "/fit", train_dataset=b.dataset, config=config(monitor="mrrr@10")),
        r"monitor",
    ),
    Case(
        "raw-device-cuda-without-gpu",
        lambda b: raw(b, "/fit", train_dataset=b.dataset, config=config(device="cuda")),
        r"cuda|GPU",
    ),
    Case(
        "raw-batch-size-huge",
        lambda b: raw(b, "/fit", train_dataset=b.dataset, config=config(batch_size=10**9)),
        r"batch_size",
    ),
    # --- hostile paths --------------------------------------------------------------------------------------------
    Case("model-etc-passwd", lambda b: fit(b, model="/etc/passwd"), r"model|/etc/passwd"),
    Case("model-parent-folders", lambda b: fit(b, model="../../etc"), r"model|\.\./\.\./etc"),
    Case("weights-etc-shadow", lambda b: fit(b, model_options={"weights": "/etc/shadow"}), r"weights|/etc/shadow"),
    Case(
        "raw-model-etc-passwd",
        lambda b: raw(b, "/fit", train_dataset=b.dataset, config=config(model="/etc/passwd")),
        r"/etc/passwd|allowed|model",
    ),
    Case(
        "raw-weights-etc-shadow",
        lambda b: raw(b, "/fit", train_dataset=b.dataset, config=config(model_options={"weights": "/etc/shadow"})),
        r"/etc/shadow|allowed|weights",
    ),
    Case(
        "image-uri-file-etc-passwd",
        lambda b: upload(
            DocList[FinetunerDoc](
                [FinetunerDoc(uri="file:///etc/passwd", finetuner_label=f"c{i % 2}") for i in range(4)]
            ),
            model="efficientnet-lite0",
        ),
        r"uri|image|file",
    ),
    Case(
        "raw-image-uri-file-etc-passwd",
        lambda b: raw(
            b,
            "/datasets/upload",
            docs({"uri": "file:///etc/passwd", "finetuner_label": "a"}),
            dataset={"id": b.uploading, "index": 0, "items": 1},
            config=config(model="efficientnet-lite0"),
        ),
        r"uri|image|file",
    ),
    Case("run-id-parent-folder", lambda b: finetuner.get_run("../x"), r"not found|run"),
    Case("raw-run-id-parent-folder", lambda b: raw(b, "/runs/status", run_id="../x"), r"not found"),
    Case("dataset-of-another-user", lambda b: fit(b, train_data=b.others_dataset), r"not found"),
    Case("dataset-id-with-slash", lambda b: finetuner.delete_dataset("ds-../../users"), r"not found"),
    Case(
        "raw-fit-dataset-of-another-user",
        lambda b: raw(b, "/fit", train_dataset=b.others_dataset, config=config()),
        r"not found",
    ),
    Case("evaluate-run-of-another-user", lambda b: finetuner.evaluate(b.rows, run_id=b.others_run), r"not found"),
    Case(
        "raw-evaluate-run-of-another-user",
        lambda b: raw(b, "/evaluate", labeled_texts(b, "eval"), run_id=b.others_run, config=config()),
        r"not found",
    ),
    Case(
        "raw-evaluate-model-etc-passwd",
        lambda b: raw(b, "/evaluate", labeled_texts(b, "eval"), config=config(model="/etc/passwd")),
        r"/etc/passwd",
    ),
    Case(
        "raw-evaluate-models-parent-folder",
        lambda b: raw(
            b, "/evaluate", labeled_texts(b, "eval"), config=config(), models=["all-MiniLM-L6-v2", "../../runs"]
        ),
        r"\.\./\.\./runs",
    ),
    # --- raw parameter abuse --------------------------------------------------------------------------------------
    Case("raw-list-limit-negative", lambda b: raw(b, "/runs/list", limit=-1), r"limit"),
    Case(
        "raw-begin-batches-huge",
        lambda b: raw(b, "/datasets/begin", dataset={"name": "x", "upload_key": "k", "batches": 10**7}),
        r"batches",
    ),
    Case(
        "raw-begin-upload-key-not-a-digest",
        lambda b: raw(b, "/datasets/begin", dataset={"upload_key": "../../x", "batches": 1}),
        r"upload_key",
    ),
    Case("raw-string-for-dict", lambda b: raw(b, "/datasets/begin", dataset="abc"), r"dataset.*dict"),
    Case("raw-config-string", lambda b: raw(b, "/fit", train_dataset=b.dataset, config="abc"), r"config.*dict"),
    Case("raw-logs-since-negative", lambda b: raw(b, "/runs/logs", run_id=b.others_run, since=-5), r"since"),
    Case("raw-unknown-parameter", lambda b: raw(b, "/runs/list", bogus=1), r"bogus.*unknown|unknown.*bogus"),
    Case("raw-limit-not-a-number", lambda b: raw(b, "/runs/list", limit="ten"), r"limit"),
    # --- other users' things, other machines ----------------------------------------------------------------------
    Case("run-of-another-user", lambda b: finetuner.get_run(b.others_run), r"not found"),
    Case("raw-cancel-run-of-another-user", lambda b: raw(b, "/runs/cancel", run_id=b.others_run), r"not found"),
    Case("raw-delete-run-of-another-user", lambda b: raw(b, "/runs/delete", run_id=b.others_run), r"not found"),
    Case("distributed-master-addr", lambda b: fit(b, distributed={"master_addr": "10.0.0.1"}), r"master_addr"),
    Case(
        "raw-distributed-master-addr",
        lambda b: raw(b, "/fit", train_dataset=b.dataset, config=config(distributed={"master_addr": "10.0.0.1"})),
        r"master_addr",
    ),
]


def one_error(message: str) -> bool:
    """One error: a first line, then only indented lines detailing it (the bad rows of a data set, the bad
    fields of a configuration); no traceback, no file of the server."""
    lines = message.strip().splitlines()
    return (
        bool(lines)
        and len(lines[0]) <= 1000
        and all(line.startswith((" ", "\t")) for line in lines[1:])
        and not any(leak in message for leak in (*LEAKS, os.environ["FINETUNER_WORKSPACE"]))
    )


def headline(message: str) -> str:
    """The error's first line and its first detail (``invalid fit configuration:`` / ``  batch_size: ...``)."""
    return " ".join(line.strip() for line in message.strip().splitlines()[:2])


def snapshot(workspace: Path) -> dict[str, Any]:
    """Every row of every table of the workspace's databases, and the files (with their sizes) under its
    datasets/ and runs/ folders; WAL files, logs and the lock file left out."""
    state: dict[str, Any] = {}
    for path in sorted(workspace.rglob("*.db")):
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = [row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
                state[f"{path.relative_to(workspace)}:{table}"] = sorted(map(repr, rows))
        finally:
            connection.close()
    for folder in ("datasets", "runs"):
        for path in sorted((workspace / folder).rglob("*")):
            if not IGNORED.search(path.name):
                state[str(path.relative_to(workspace))] = path.stat().st_size if path.is_file() else "folder"
    return state


@pytest.fixture(scope="module")
def bench(flow, data_dir, tmp_path_factory) -> Bench:
    """This module's user with a stored dataset and an unfinished upload; another user with a dataset and a run."""
    workspace = Path(os.environ["FINETUNER_WORKSPACE"])
    mine = finetuner.api._session["transport"]
    rows = banking77_slice(data_dir, "train", classes=4, per_class=4)
    try:
        finetuner.login(host=f"grpc://127.0.0.1:{flow}", token=user_token(workspace, "u-bad-inputs-other"))
        others_dataset = finetuner.upload_dataset(rows, quiet=True)["id"]
        run = finetuner.fit(train_data=others_dataset, max_steps=1, **SMALL)
        run.cancel()
        assert run.wait(interval_s=0.3) in ("CANCELLED", "FINISHED"), run.logs()
    finally:
        finetuner.api._session["transport"] = mine
    dataset = finetuner.upload_dataset(rows, quiet=True)["id"]
    bench = Bench(flow, mine.token, tmp_path_factory.mktemp("bad"), data_dir, rows, dataset, "", others_dataset, run.id)
    plan = {"name": "unfinished", "upload_key": "0" * 64, "batches": 1}
    uploading = mine.result("/datasets/begin", dataset=plan)
    assert uploading["status"] == "UPLOADING"
    bench.uploading = uploading["id"]
    seen = repr(snapshot(workspace))
    assert all(name in seen for name in (dataset, bench.uploading, others_dataset, run.id)), "the snapshot sees them"
    return bench


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_with_one_line_and_nothing_stored(bench, case):
    workspace = Path(os.environ["FINETUNER_WORKSPACE"])
    before = snapshot(workspace)
    with pytest.raises(Exception) as refused:  # noqa: PT011 (each case names its own error by its message)
        case.call(bench)
    message = str(refused.value)
    assert one_error(message), f"{type(refused.value).__name__}: {message[:2000]}"
    assert re.search(case.error, headline(message), re.IGNORECASE), f"{type(refused.value).__name__}: {message[:500]}"
    assert isinstance(finetuner.list_runs(), list), "the Flow answers"
    assert snapshot(workspace) == before, "nothing of a refused request is stored"


def test_line_breaks_and_nul_in_texts_are_stored_and_read_back(bench):
    """Texts and labels holding U+2028, U+2029, U+0085 or a NUL are data like any other: accepted, stored, and
    read back unchanged."""
    from finetuner_core.workspace import Workspace

    label = bench.rows[0][1]
    odd = [("line\u2028separator", "sep\u2028label"), ("another\u2028one", "sep\u2028label")]
    odd += [("next\x85line", "nel\x85label"), ("and\x85another", "nel\x85label"), ("para\u2029graph", label)]
    odd += [("nul\x00inside", "nul\x00label"), ("another\x00nul", "nul\x00label")]
    dataset = finetuner.upload_dataset(bench.rows_csv("breaks.csv", odd), quiet=True)
    try:
        assert dataset["status"] == "READY" and dataset["items"] == len(bench.rows) + len(odd)
        assert dataset["id"] in [d["id"] for d in finetuner.list_datasets()]
        workspace = Workspace(os.environ["FINETUNER_WORKSPACE"])
        owner = workspace.users.authenticate(bench.token).id
        stored = [(record.content, record.label) for record in workspace.datasets.records(dataset["id"], owner)]
        assert stored == [*bench.rows, *odd]
    finally:
        finetuner.delete_dataset(dataset["id"])
