"""A stored run as several processes: torchrun starts one worker (runs.distributed_worker) per process.

On the node the run is started on (the trainer's), :func:`launch` runs torchrun as a subprocess and waits for
it; the workers' output goes to ``workers.log`` in the run folder. This node's local rank 0 leads (see
training.distributed). Cancellation reaches the workers through the file ``cancel`` in the run folder, which
the lead polls after every step and broadcasts, so that every rank stops after the same step. Workers that have
not stopped ``cancel_grace_s`` after the cancel (still waiting for other nodes at the rendezvous, loading the
model, or in a long step) are ended with torchrun's whole process group, and the run is CANCELLED. The lead
records the run's end (FINISHED, CANCELLED, FAILED); if the workers exit before that, the run fails with the
first error in ``workers.log``.

Each other node of a several-node run joins with the run's folder (a copy, or a read-only share)::

    python -m finetuner_core.runs.distributed --root <runs folder> --run-id <run id> --node-rank <n>
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import finetuner_core
from finetuner_core.config import FitConfig
from finetuner_core.models.base import pick_device
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.store import RunStore
from finetuner_core.storage.rows import read_records
from finetuner_core.training.distributed import LEAD_NODE
from finetuner_core.training.distributed_options import DistributedOptions
from finetuner_protocol.ids import RUN_ID
from finetuner_protocol.runs import RunStatus

CANCEL_FILE = "cancel"
WORKERS_LOG = "workers.log"
WORKER_MODULE = "finetuner_core.runs.distributed_worker"
POLL_S = 0.5
CANCEL_GRACE_S = 30.0  # how long the workers may take to stop on their own after a cancel
STOP_WAIT_S = 30.0  # how long the workers may take to exit after SIGTERM, before SIGKILL
LOG_TAIL_CHARS = 1000
ERROR_LINE = re.compile(r"^(?:\[rank\d+\]:\s*)?((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Failed): .+)$")


class WorkersFailed(RuntimeError):
    """The worker processes ended before the run did; the message holds the first error in their output."""


def torchrun_command(
    options: DistributedOptions, device: str, root: str | Path, run_id: str, node_rank: int | None = None
) -> list[str]:
    """``python -m torch.distributed.run ... --module finetuner_core.runs.distributed_worker --root R --run-id ID``.

    One node without ``master_port``: ``--standalone`` (torchrun picks a free port). Otherwise the static
    rendezvous on ``master_addr:master_port`` with this node's rank, or the c10d rendezvous on ``rdzv_endpoint``.
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={options.processes_per_node(device)}",
        f"--nnodes={options.nnodes}",
        "--max-restarts=0",
    ]
    if options.rdzv_backend == "c10d":
        command += [
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={options.rdzv_endpoint or 'localhost:0'}",
            f"--rdzv-id={options.rdzv_id or run_id}",
            f"--rdzv-conf=join_timeout={options.rdzv_timeout_s}",
        ]
    elif options.nnodes == 1 and options.master_port is None:
        command += ["--standalone", f"--rdzv-conf=join_timeout={options.rdzv_timeout_s}"]
    else:
        command += [
            f"--node-rank={options.node_rank if node_rank is None else node_rank}",
            f"--master-addr={options.master_addr}",
            f"--master-port={options.master_port}",
            f"--rdzv-conf=timeout={options.rdzv_timeout_s}",
        ]
    return [*command, "--module", WORKER_MODULE, "--root", str(root), "--run-id", run_id]


def worker_environment(processes_per_node: int, lead: bool) -> dict[str, str]:
    """This environment, with the core importable, the CPU cores shared out (unless OMP_NUM_THREADS is set), and
    ``FINETUNER_LEAD_NODE=1`` on the node the run was started on (its local rank 0 leads)."""
    environment = dict(os.environ)
    environment.pop(LEAD_NODE, None)
    if lead:
        environment[LEAD_NODE] = "1"
    package_root = str(Path(finetuner_core.__file__).resolve().parent.parent)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, environment.get("PYTHONPATH")]))
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes_per_node)))
    return environment


class RunFolder:
    """What a rank that does not lead reads of a run: its config and data, from the run's folder alone (no
    database; on another node, a copy of the folder or a read-only share of it). The same reads as
    :class:`RunStore`'s, for :func:`runs.execute.execute_run` (a ``runs.context.RunSource``)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not (self.folder / "config.json").is_file():
            raise FileNotFoundError(f"{self.folder} holds no run (config.json missing): copy or share the run folder")

    def path(self, run_id: str) -> Path:
        return self.folder

    def config(self, run_id: str) -> FitConfig:
        return FitConfig.model_validate_json((self.folder / "config.json").read_text("utf-8"))

    def data(self, run_id: str, split: str) -> list:
        path = self.folder / f"{split}.jsonl"
        return read_records(self.folder, path) if path.exists() else []


def run_folder(root: str | Path, run_id: str) -> RunFolder:
    if not RUN_ID.match(run_id):
        raise ValueError(f"{run_id!r} is not a run id")
    return RunFolder(Path(root) / run_id)


def cancel_file(store: RunStore, run_id: str) -> Path:
    """The file whose presence asks the workers to stop."""
    return store.path(run_id) / CANCEL_FILE


def launch(run: RunContext, cancel_grace_s: float = CANCEL_GRACE_S) -> None:
    """Run ``run`` with torchrun on this node and wait for it; the lead records how the run ended. Once
    ``run.should_stop()``, the cancel file asks the workers to stop; those still running ``cancel_grace_s`` later
    are ended, and the run is CANCELLED."""
    store, run_id, config, log = run.records, run.run_id, run.config, run.log
    options, device = config.distributed, pick_device(config.device)
    options.check_gpus(device)
    cancel = cancel_file(store, run_id)
    cancel.unlink(missing_ok=True)
    per_node = options.processes_per_node(device)
    log(
        f"starting {options.world_size(device)} training processes ({per_node} on each of {options.nnodes} "
        f"node(s), backend {options.backend_for(device)}); their output goes to {WORKERS_LOG}"
    )
    command = torchrun_command(options, device, store.root, run_id)
    asked: list[float] = []  # when the cancel was asked for

    def poll() -> bool:
        if not asked and run.should_stop():
            cancel.touch()
            asked.append(time.monotonic())
        return bool(asked) and time.monotonic() - asked[0] >= cancel_grace_s

    output = store.path(run_id) / WORKERS_LOG
    code = run_torchrun(command, worker_environment(per_node, lead=True), output, poll)
    if RunStatus(store.status(run_id)["status"]).is_final:
        return
    if asked:
        log(f"cancelled: the training processes were ended ({cancel_grace_s:g} s after the cancel)")
        store.set_status(run_id, RunStatus.CANCELLED)
        return
    cause = first_error(output.read_text("utf-8", errors="replace"))
    raise WorkersFailed(f"the training processes exited with code {code} before the run ended: {cause}")


def first_error(output: str) -> str:
    """The first exception a worker reported in ``output`` (the cause; later ones are its consequences), else
    the end of ``output``."""
    for line in output.splitlines():
        found = ERROR_LINE.match(line.strip())
        if found:
            return found.group(1)
    return output[-LOG_TAIL_CHARS:].strip() or "(no output)"


def run_torchrun(command: list[str], environment: dict[str, str], output: Path, poll: Callable[[], bool]) -> int:
    """Run ``command`` with its output appended to ``output``, calling ``poll()`` while it runs; its exit code.

    torchrun and its workers run in a process group of their own, which is ended (SIGTERM, then SIGKILL) when
    ``poll()`` returns True or this process stops waiting for it, e.g. on an exception or an interrupt.
    """
    with open(output, "ab") as sink:
        process = subprocess.Popen(
            command, stdout=sink, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        try:
            while True:
                try:
                    return process.wait(timeout=POLL_S)
                except subprocess.TimeoutExpired:
                    if poll():
                        break
        finally:
            stop_process_group(process)
        return process.returncode


def stop_process_group(process: subprocess.Popen) -> None:
    """End ``process`` (the leader of its own process group) and every process left in its group: SIGTERM, then
    SIGKILL to whatever is left once the leader has exited or ``STOP_WAIT_S`` has passed."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return  # the group has no process left
    try:
        process.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def join(root: str | Path, run_id: str, node_rank: int | None = None) -> int:
    """Take part in a several-node run from another node: torchrun with this node's rank; its exit code.

    This node needs the run's folder only (config.json, train.jsonl, images/), copied or shared read-only.
    """
    config = run_folder(root, run_id).config(run_id)
    options, device = config.distributed, pick_device(config.device)
    if options.nnodes < 2:
        raise ValueError(f"run {run_id} trains on one node (distributed.nnodes = 1): there is nothing to join")
    if options.rdzv_backend == "static" and (node_rank is None or not 0 < node_rank < options.nnodes):
        raise ValueError(f"--node-rank must be 1 .. {options.nnodes - 1} with the static rendezvous, got {node_rank}")
    options.check_gpus(device)
    command = torchrun_command(options, device, root, run_id, node_rank)
    return subprocess.call(command, env=worker_environment(options.processes_per_node(device), lead=False))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="join a several-node run from another node (see DISTRIBUTED.md)")
    parser.add_argument("--root", required=True, help="the runs folder (a copy of, or the same as, node 0's)")
    parser.add_argument("--run-id", required=True, help="the run to take part in")
    parser.add_argument("--node-rank", type=int, default=None, help="this node's rank (static rendezvous)")
    args = parser.parse_args(argv)
    return join(args.root, args.run_id, args.node_rank)


if __name__ == "__main__":
    sys.exit(main())
