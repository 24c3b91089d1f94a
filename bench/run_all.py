"""Every benchmark in sequence, each in its own process; each writes its JSON and its section of
docs/BENCHMARKS.md.

    python bench/run_all.py            # the documented budgets (hours on 2 CPU cores: search at 1M vectors)
    python bench/run_all.py --quick    # reduced budgets
    python bench/run_all.py --only quality flow_overhead --quick

``--quick`` is passed to the benchmarks that take it; for the others, RUNS holds their reduced arguments.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# name -> (script, arguments at the documented budget, arguments of the reduced run)
RUNS: dict[str, tuple[str, list[str], list[str]]] = {
    "quality": ("bench/quality.py", [], ["--quick"]),
    "flow_overhead": ("bench/flow_overhead.py", [], ["--quick"]),
    "search": ("bench/search.py", ["--queries", "10000", "--corpus", "1000000", "--dim", "384", "--rounds", "3"], []),
    "train_speed": ("bench/train_speed.py", [], ["--steps", "10", "--rounds", "3"]),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced budgets")
    parser.add_argument("--only", nargs="+", choices=list(RUNS), default=list(RUNS))
    return parser.parse_args(argv)


def command(name: str, quick: bool) -> list[str]:
    script, full, reduced = RUNS[name]
    return [sys.executable, str(ROOT / script), *(reduced if quick else full)]


def main(argv=None) -> int:
    args = parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "JINA_OPTOUT_TELEMETRY": "1"}
    failed = []
    for name in args.only:
        cmd = command(name, args.quick)
        print(f"== {name}: {' '.join(cmd)}", flush=True)
        start = time.perf_counter()
        code = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
        print(f"== {name}: exit {code} after {time.perf_counter() - start:.0f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
