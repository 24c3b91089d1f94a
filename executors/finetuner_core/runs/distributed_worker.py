"""One process of a run trained by several (torchrun starts one per process; see runs.distributed).

    python -m torch.distributed.run --nproc-per-node N ... \\
        --module finetuner_core.runs.distributed_worker --root <runs folder> --run-id <run id>

Every process joins the process group from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
MASTER_PORT) and executes the run (runs.execute). The lead (local rank 0 of the node the run was started on, see
training.distributed) does what a run alone does: it logs, evaluates, writes and records how the run ended, and
stops when the run's cancel file appears. The others read the run's folder only (no database) and train the same
steps silently. A process exits non-zero when the run failed, so that torchrun ends the others.
"""

from __future__ import annotations

import argparse
import logging
import sys

from finetuner_core.models.base import pick_device
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.distributed import cancel_file, run_folder
from finetuner_core.runs.execute import execute_run
from finetuner_core.runs.store import RunStore
from finetuner_core.training.distributed import start_process_group, stop_process_group
from finetuner_protocol.runs import RunStatus


def work(root: str, run_id: str) -> int:
    """Execute this process's part of ``run_id``; 0 unless the lead recorded the run as FAILED."""
    folder = run_folder(root, run_id)
    config = folder.config(run_id)
    device = pick_device(config.device)
    options = config.distributed
    ranks = start_process_group(options.backend_for(device), device, options.timeout_minutes)
    try:
        if not ranks.lead:
            execute_run(RunContext(folder, run_id, ranks=ranks))
            return 0
        store = RunStore(root)
        execute_run(RunContext(store, run_id, should_stop=cancel_file(store, run_id).exists, ranks=ranks))
        return 1 if store.status(run_id)["status"] == RunStatus.FAILED else 0
    finally:
        stop_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one process of a run trained by several (started by torchrun)")
    parser.add_argument("--root", required=True, help="the runs folder")
    parser.add_argument("--run-id", required=True, help="the run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return work(args.root, args.run_id)


if __name__ == "__main__":
    sys.exit(main())
