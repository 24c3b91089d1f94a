"""The client starts without the service's code: `import finetuner` and the `finetuner` command load no model
library and nothing of finetuner_core, and no client module needs them (each checked in a fresh interpreter)."""

import json
import os
import subprocess
import sys

MODEL_LIBRARIES = ("faiss", "open_clip", "timm", "sentence_transformers", "pytorch_metric_learning", "transformers")
CLIENT_MODULES = ("api", "cli", "data", "datasets", "environment", "errors", "progress", "report", "run", "transport")


def loaded_after(code: str, tmp_path) -> set[str]:
    """The top-level packages in ``sys.modules`` after ``code`` ran in a fresh interpreter with no login."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}})))"
    env = {key: value for key, value in os.environ.items() if not key.startswith("FINETUNER_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path)  # no saved login
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_import_finetuner_and_its_commands_load_no_model_code_nor_the_service(tmp_path):
    code = (
        "import contextlib, io, finetuner, finetuner.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
        "    assert finetuner.cli.main(['--help']) == 0\n"
        "    assert finetuner.cli.main(['runs', 'list']) == finetuner.cli.UNREACHABLE  # not logged in\n"
    )
    loaded = loaded_after(code, tmp_path)
    assert "finetuner" in loaded and "finetuner_protocol" in loaded
    heavy = {"torch", *MODEL_LIBRARIES, "finetuner_core", "jina", "docarray"}
    assert not loaded & heavy, f"loaded at start: {sorted(loaded & heavy)}"


def test_every_client_module_imports_where_torch_the_model_libraries_and_the_service_are_missing(tmp_path):
    # a None entry in sys.modules makes importing that name fail, as in a client-only environment (where docarray,
    # which imports torch by itself when it can, goes without it: tests/deploy/test_client_alone.py installs one)
    missing = ("torch", *MODEL_LIBRARIES, "finetuner_core")
    block = f"import sys\nsys.modules.update(dict.fromkeys({missing!r}))\n"
    loaded = loaded_after(block + "\n".join(f"import finetuner.{name}" for name in CLIENT_MODULES), tmp_path)
    assert {"finetuner", "finetuner_protocol", "docarray", "pydantic"} <= loaded
