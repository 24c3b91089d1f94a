import csv
import os
import random
import socket
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
# Flows started inside this process (the examples, the sharded Flow) spawn their executors instead of forking
# them: once gRPC's asyncio poller runs here (any client call), a fork can crash this process (grpc/grpc#19793).
# The `flow` fixture starts the default Flow in a process of its own (tests/flow_process.py).
os.environ.setdefault("JINA_MP_START_METHOD", "spawn")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared data sets: $FINETUNER_DATA_DIR, else ../shared/data next to the repository."""
    path = Path(os.environ.get("FINETUNER_DATA_DIR") or ROOT.parent / "shared" / "data")
    if not (path / "banking77" / "train.csv").exists():
        pytest.fail(f"Banking77 not found under {path}: set FINETUNER_DATA_DIR to the shared data folder")
    return path


def banking77_slice(data_dir: Path, split: str, classes: int, per_class: int, seed: int = 0) -> list[tuple[str, str]]:
    """``per_class`` (text, label) rows from each of the first ``classes`` categories of a Banking77 split."""
    with open(data_dir / "banking77" / f"{split}.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    by_class: dict[str, list] = {}
    for row in rows:
        by_class.setdefault(row["category"], []).append((row["text"], row["category"]))
    rng = random.Random(seed)
    chosen = sorted(by_class)[:classes]
    return [item for label in chosen for item in rng.sample(by_class[label], per_class)]


@pytest.fixture(scope="session")
def minilm():
    from finetuner_core.models import build_model

    return build_model("all-MiniLM-L6-v2", None, "cpu")


def unused_port() -> int:
    """A 127.0.0.1 port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return unused_port()


@pytest.fixture(scope="session")
def bench_scripts():
    """The benchmark scripts of bench/ importable by name (they import each other so)."""
    path = str(ROOT / "bench")
    sys.path.insert(0, path)
    yield ROOT / "bench"
    sys.path.remove(path)


def cifar10_files(data_dir: Path, classes: int, per_class: int, start: int = 0) -> list[tuple[Path, str]]:
    """``(path, class)`` for ``per_class`` CIFAR-10 test images (from file number ``start``) of ``classes`` classes."""
    folders = sorted((data_dir / "cifar10" / "test").iterdir())[:classes]
    return [(folder / f"{i:04d}.jpg", folder.name) for folder in folders for i in range(start, start + per_class)]


HUB_MODEL = "acme/minilm-copy"  # the packaged MiniLM under a Hugging Face id only the stand-in Hub serves


@pytest.fixture(scope="session")
def hub():
    """The stand-in Hugging Face Hub on 127.0.0.1 (tests/hub_server.py) that the shared Flow may download from: the
    packaged MiniLM as :data:`HUB_MODEL`."""
    from hub_server import HubServer

    from finetuner_protocol.backbones import minilm_path

    with HubServer({HUB_MODEL: minilm_path()}) as server:
        yield server


@pytest.fixture(scope="session")
def flow_server(tmp_path_factory, hub):
    """The default Flow (flow.yml) in its own process, on a free 127.0.0.1 port with its own workspace, started
    once for every test module that needs it; ready when a client request is answered. Yields (port, workspace).
    It runs as an online server does, its Hub the stand-in one (:func:`hub`) and its Hugging Face cache empty at
    first: downloads allowed, nothing reached beyond 127.0.0.1. The Flow's output is in ``<workspace>-flow.log``
    beside the workspace folder."""
    from flow_process import connect, start_flow, stop_flow

    port = unused_port()
    workspace = tmp_path_factory.mktemp("workspace")
    log = workspace.parent / f"{workspace.name}-flow.log"
    online = {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path_factory.mktemp("hf-home")), "HF_HUB_CACHE": None}
    online.update(HF_HUB_OFFLINE=None, TRANSFORMERS_OFFLINE=None, FINETUNER_DOWNLOADS=None)
    process = start_flow(workspace, port, log, online)
    try:
        try:
            connect(port, user_token(workspace, "ready"), process)  # answered through every executor
        except Exception as error:
            tail = log.read_text("utf-8", errors="replace")[-4000:] if log.exists() else ""
            pytest.fail(f"the Flow did not start: {error}\n{tail}")
        yield port, workspace
    finally:
        stop_flow(process)


@pytest.fixture(scope="module")
def flow(flow_server, request):
    """The shared Flow's port, with the client logged in as a user of this test module's own (its runs and
    datasets are its own); ``$FINETUNER_WORKSPACE`` names the Flow's workspace."""
    from flow_process import connect

    port, workspace = flow_server
    os.environ["FINETUNER_WORKSPACE"] = str(workspace)
    name = "u-" + request.module.__name__.rpartition(".")[2].removeprefix("test_")[:40]
    connect(port, user_token(workspace, name))
    return port


@pytest.fixture(autouse=True, scope="module")
def _logged_out_after():
    """Each test module ends logged out (a login to a Flow it started, or to the shared one), so that the next
    starts as a new process would: a client call that needs no Flow never asks a Flow that is gone."""
    yield
    from finetuner import api

    api._session.pop("transport", None)


def user_token(workspace: Path, name: str) -> str:
    """A token for a new user ``name`` of ``workspace`` (issued as the admin command does)."""
    from finetuner_core.workspace import Workspace

    return Workspace(workspace).users.create(name)
