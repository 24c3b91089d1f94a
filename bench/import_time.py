"""How long the client takes to start: ``import finetuner``, the API loaded (``from finetuner import fit``),
``finetuner --help`` and ``finetuner runs list``, each a fresh Python process, timed wall-clock ``--rounds``
times; plus what ``import finetuner`` loads.

    python bench/import_time.py --label after                                 # this checkout
    git archive COMMIT client executors | tar -x -C /tmp/old                  # an older version of the code ...
    python bench/import_time.py --label before --source /tmp/old              # ... with the same interpreter
    python bench/import_time.py --label client-only --python VENV/bin/python  # the client installed alone
    python bench/import_time.py --doc                                         # docs/BENCHMARKS.md's section

``runs list`` goes to a port where no Flow listens, so it measures everything a real call does up to the
request (imports, login, the gRPC client) and ends with exit code 3. Each label's figures are written to
``bench/results/import_time_<label>.json``; ``--doc`` renders every label found there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import spread  # noqa: E402
from quality_report import DOC, RESULTS, describe_machine, machine_line, put_section  # noqa: E402

BEGIN, END = "<!-- import-time:begin -->", "<!-- import-time:end -->"
CLI = "import sys; from finetuner.cli import main; sys.exit(main())"
HEAVY = (
    "torch",
    "faiss",
    "open_clip",
    "timm",
    "sentence_transformers",
    "pytorch_metric_learning",
    "transformers",
    "finetuner_core",
    "jina",
)
LOADED = (
    "import json, sys; import finetuner; "
    f"print(json.dumps([len(sys.modules), [m for m in {HEAVY!r} if m in sys.modules]]))"
)
COMMANDS = {
    "import finetuner": ["-c", "import finetuner"],
    "from finetuner import fit": ["-c", "from finetuner import fit"],  # the API, loaded on first use
    "finetuner --help": ["-c", CLI, "--help"],
    "finetuner runs list": ["-c", CLI, "runs", "list"],
}


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment(source: Path | None, config_home: str) -> dict[str, str]:
    """No saved login, a Flow address where nothing answers, and ``source``'s packages first on the path."""
    env = {**os.environ, "XDG_CONFIG_HOME": config_home, "JINA_OPTOUT_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
    env["FINETUNER_HOST"] = f"grpc://127.0.0.1:{closed_port()}"
    env.pop("FINETUNER_TOKEN", None)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source / "client"), str(source / "executors")])
    return env


def wall_seconds(python: str, args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([python, *args], env=env, cwd=tempfile.gettempdir(), capture_output=True, check=False)
    return time.perf_counter() - started


def import_profile(python: str, env: dict[str, str]) -> dict[str, object]:
    """``-X importtime``'s cumulative time of ``finetuner``, the number of modules loaded, the heavy ones among them."""
    done = subprocess.run(
        [python, "-X", "importtime", "-c", LOADED], env=env, capture_output=True, text=True, check=True
    )
    top = re.search(r"^import time:\s+\d+ \|\s+(\d+) \| finetuner$", done.stderr, re.MULTILINE)
    modules, heavy = json.loads(done.stdout)
    return {"importtime_s": int(top.group(1)) / 1e6 if top else None, "modules": modules, "heavy": heavy}


def measure(rounds: int, source: Path | None, python: str) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as config_home:
        env = environment(source, config_home)
        seconds: dict[str, list[float]] = {name: [] for name in COMMANDS}
        for _ in range(rounds):  # alternated, so that a busy moment of the machine touches every command alike
            for name, args in COMMANDS.items():
                seconds[name].append(wall_seconds(python, args, env))
        return {
            "machine": describe_machine(),
            "rounds": rounds,
            "python": python,
            "wall_s": {name: spread(values) for name, values in seconds.items()},
            "profile": import_profile(python, env),
        }


def render(results: dict[str, dict]) -> str:
    lines = [
        "## Client start-up: `import finetuner` and the CLI",
        "",
        "`python bench/import_time.py`: each command a fresh process, wall-clock seconds over the rounds",
        "(min / median / max). `import finetuner` loads the API on first use: `from finetuner import fit` loads it",
        "(with docarray, which imports torch by itself where torch is installed). `runs list` is sent to a port where",
        "no Flow listens (imports, login and the gRPC client, then exit code 3). Modules: how many `import finetuner`",
        "leaves in `sys.modules`, and which of the heavy packages (torch, faiss, open_clip, timm,",
        "sentence-transformers, pytorch-metric-learning, transformers, the service's core, jina) among them.",
        "`before`: the client as it was (it imported the service's core); `after`: this checkout in the development",
        "environment (client and service installed); `client-only`: the client installed alone (`pip install",
        "./client`: no torch).",
        "",
    ]
    for label, result in results.items():
        lines.append(f"- {label}: {machine_line(result['machine'])}, {result['rounds']} rounds")
    lines += ["", "| command | " + " | ".join(results) + " |", "|---|" + "---|" * len(results)]
    for name in COMMANDS:
        cells = ["{min:.2f} / {median:.2f} / {max:.2f}".format(**result["wall_s"][name]) for result in results.values()]
        lines.append(f"| `{name}` (s) | " + " | ".join(cells) + " |")
    profiles = [result["profile"] for result in results.values()]
    lines.append(
        "| `-X importtime` of finetuner (s) | " + " | ".join(f"{p['importtime_s']:.3f}" for p in profiles) + " |"
    )
    lines.append("| modules loaded | " + " | ".join(str(p["modules"]) for p in profiles) + " |")
    lines.append("| heavy packages loaded | " + " | ".join(", ".join(p["heavy"]) or "none" for p in profiles) + " |")
    return "\n".join(lines) + "\n\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--label", default="after", help="the name of these figures (a column of the table)")
    parser.add_argument("--source", type=Path, help="a source tree (client/ and executors/) to measure instead")
    parser.add_argument("--python", default=sys.executable, help="the interpreter to measure (another environment's)")
    parser.add_argument("--doc", action="store_true", help="only write the section of docs/BENCHMARKS.md")
    args = parser.parse_args()
    if not args.doc:
        result = measure(args.rounds, args.source, args.python)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"import_time_{args.label}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
        print(json.dumps({"wall_s": result["wall_s"], "profile": result["profile"]}, indent=2))
        return
    order = {"before": 0, "after": 1}
    files = sorted(RESULTS.glob("import_time_*.json"), key=lambda p: (order.get(p.stem[12:], 2), p.stem))
    put_section(DOC, BEGIN, END, render({p.stem[12:]: json.loads(p.read_text(encoding="utf-8")) for p in files}))


if __name__ == "__main__":
    main()
