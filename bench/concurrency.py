"""Concurrency: how long status, logs and list calls take while two users each run four fits at once.

    python bench/concurrency.py            # 2 users x 4 fits of 20 steps
    python bench/concurrency.py --steps 5  # shorter

Starts the default Flow (flow.yml) on a free port with a fresh workspace, creates the users, uploads each user's
Banking77 slice, submits the fits all at once (one asyncio loop, jina's async client), and while they are
checked, queued and trained, calls /runs/status, /runs/logs and /runs/list in turn for both users. Prints the
min / median / max latency of each call and how many were made; writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JINA_OPTOUT_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality_data import banking77_slice  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENDPOINTS = ("/runs/status", "/runs/logs", "/runs/list")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the shared data folder")
    parser.add_argument("--users", type=int, default=2)
    parser.add_argument("--fits", type=int, default=4, help="fits submitted at once by each user")
    parser.add_argument("--steps", type=int, default=20, help="training steps of each fit")
    parser.add_argument("--per-class", type=int, default=8, help="Banking77 train rows of each class")
    return parser.parse_args(argv)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def post(client, endpoint: str, docs: list | None = None, **parameters) -> dict:
    from docarray import DocList

    from finetuner_protocol.wire import FinetunerDoc, read_result

    async for response in client.post(
        endpoint,
        inputs=DocList[FinetunerDoc](docs or []),
        parameters=parameters,
        request_size=max(1, len(docs or [])),
        return_type=DocList[FinetunerDoc],
        return_responses=True,
        continue_on_error=True,
        on_error=lambda response: None,
    ):
        status = response.header.status
        if status.code == status.ERROR:
            raise RuntimeError(f"{endpoint}: {status.exception.args[0] if status.exception.args else status}")
        return read_result(response.docs)
    raise RuntimeError(f"{endpoint}: no answer")


async def fit(client, token: str, dataset_id: str, steps: int) -> str:
    config = {"batch_size": 16, "max_steps": steps, "device": "cpu", "eval_ks": [1]}
    answer = await post(client, "/fit", token=token, config=config, train_dataset=dataset_id)
    return answer["run_id"]


async def probe(client, tokens: list[str], runs: dict[str, list[str]], done: asyncio.Event) -> dict[str, list[float]]:
    """Status, logs and list calls in turn (every user's), timed, until ``done``."""
    latencies: dict[str, list[float]] = {endpoint: [] for endpoint in ENDPOINTS}
    while not done.is_set():
        for token in tokens:
            run_ids = runs.get(token) or []
            for endpoint in ENDPOINTS:
                if endpoint != "/runs/list" and not run_ids:
                    continue
                parameters = {"limit": 10} if endpoint == "/runs/list" else {"run_id": run_ids[-1]}
                started = time.perf_counter()
                await post(client, endpoint, token=token, **parameters)
                latencies[endpoint].append(time.perf_counter() - started)
        await asyncio.sleep(0.05)  # pacing of the probe, not synchronisation
    return latencies


async def load(port: int, tokens: list[str], uploads: dict[str, str], args) -> dict[str, list[float]]:
    from jina import Client

    client = Client(host="127.0.0.1", port=port, protocol="grpc", asyncio=True)
    runs: dict[str, list[str]] = {}
    done = asyncio.Event()
    prober = asyncio.create_task(probe(client, tokens, runs, done))

    async def user(token: str) -> None:
        ids = await asyncio.gather(*(fit(client, token, uploads[token], args.steps) for _ in range(args.fits)))
        runs[token] = list(ids)
        while True:
            statuses = [(await post(client, "/runs/status", token=token, run_id=i))["status"] for i in ids]
            if all(s in ("FINISHED", "FAILED", "CANCELLED") for s in statuses):
                return
            await asyncio.sleep(1.0)  # polling interval of a waiting client

    await asyncio.gather(*(user(token) for token in tokens))
    done.set()
    return await prober


def main(argv=None) -> dict[str, list[float]]:
    args = parse_args(argv)
    from jina import Flow

    import finetuner
    from finetuner_core.workspace import Workspace

    train_records, _, _ = banking77_slice(Path(args.data), args.per_class, 1)
    rows = [(record.content, record.label) for record in train_records]
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder) / "workspace"
        os.environ["FINETUNER_WORKSPACE"] = str(workspace)
        tokens = [Workspace(workspace).users.create(f"user{i}") for i in range(args.users)]
        port = free_port()
        with Flow.load_config(str(ROOT / "flow.yml"), uses_with={"port": port}):
            uploads = {}
            for token in tokens:
                finetuner.login(host=f"grpc://127.0.0.1:{port}", token=token)
                uploads[token] = finetuner.upload_dataset(rows, quiet=True)["id"]
            started = time.perf_counter()
            latencies = asyncio.run(load(port, tokens, uploads, args))
            wall = time.perf_counter() - started
    print(f"{args.users} users x {args.fits} concurrent fits of {args.steps} steps: {wall:.1f} s")
    print(f"{'call':<14} {'n':>4} {'min s':>8} {'median s':>9} {'max s':>8}")
    for endpoint, values in latencies.items():
        if values:
            line = f"{min(values):8.3f} {statistics.median(values):9.3f} {max(values):8.3f}"
            print(f"{endpoint:<14} {len(values):>4} {line}")
    return latencies


if __name__ == "__main__":
    main()
