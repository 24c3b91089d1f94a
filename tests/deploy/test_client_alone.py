"""The client as a distribution of its own (``finetuner``, client/pyproject.toml): installed alone in a fresh virtual
environment, without torch or the service's code, it drives a running Flow (login, upload, fit, wait, list)."""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import ROOT, banking77_slice, user_token

CLIENT = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]
SERVICE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
SERVICE_ONLY = ("torch", "finetuner_core", "sentence_transformers", "faiss", "open_clip", "timm", "transformers")

DRIVE = """
import importlib.util, json, sys
import finetuner
from finetuner import FinetunerError
from finetuner_protocol.settings import ConfigError
missing = [name for name in {service_only!r} if importlib.util.find_spec(name) is None]
finetuner.login()
try:  # a setting only the service checks (AdamW's signature): refused before anything is uploaded
    finetuner.fit(train_data=sys.argv[1], optimizer_options={{"momentom": 0.9}}, quiet=True)
    refused = ""
except ConfigError as exc:
    refused = str(exc)
stored_after_refusal = len(finetuner.list_datasets())
dataset = finetuner.upload_dataset(sys.argv[1], quiet=True)
run = finetuner.fit(train_data=dataset["id"], max_steps=2, batch_size=8, eval_ks=[1], device="cpu", quiet=True)
status = run.wait(interval_s=0.5, timeout_s=600)
try:
    finetuner.get_model(run.id)
    local = "built"
except FinetunerError as exc:
    local = str(exc)
listed = [r["run_id"] for r in finetuner.list_runs()]
seen = {{"missing": missing, "refused": refused, "stored_after_refusal": stored_after_refusal}}
seen.update(dataset=dataset["status"], run=run.id, status=status, listed=listed, get_model=local)
print(json.dumps(seen))
"""


def requirement_name(line: str) -> str:
    return re.split(r"[\s\[=<>!~;]", line, maxsplit=1)[0].lower()


def test_the_client_pins_what_the_service_pins_and_is_what_the_service_depends_on():
    service = {requirement_name(line): line for line in SERVICE["dependencies"]}
    for line in CLIENT["dependencies"]:
        pinned = service.get(requirement_name(line))
        assert pinned == line, f"client/pyproject.toml: {line}; pyproject.toml: {pinned}"
    assert f"{CLIENT['name']}=={CLIENT['version']}" in SERVICE["dependencies"]
    assert CLIENT["optional-dependencies"]["inference"] == [f"{SERVICE['name']}=={SERVICE['version']}"]
    assert CLIENT["scripts"] == {"finetuner": "finetuner.cli:main"} and "scripts" not in SERVICE


@pytest.fixture(scope="module")
def client_python(tmp_path_factory) -> Path:
    """A fresh virtual environment with the client distribution installed alone (its dependencies from the
    package index); its python."""
    source = tmp_path_factory.mktemp("client-source") / "client"  # the sources alone: no earlier build's files
    shutil.copytree(ROOT / "client", source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    venv = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(source)]
    done = subprocess.run(install, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-4000:]
    return python


@pytest.mark.slow
def test_the_client_alone_drives_a_running_flow(client_python, flow_server, data_dir, tmp_path):
    port, workspace = flow_server
    train = tmp_path / "train.csv"
    with open(train, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *banking77_slice(data_dir, "train", classes=4, per_class=4)])
    env = {key: value for key, value in os.environ.items() if not key.startswith(("FINETUNER_", "PYTHON"))}
    env.update(
        FINETUNER_HOST=f"grpc://127.0.0.1:{port}",
        FINETUNER_TOKEN=user_token(workspace, "client-alone"),
        XDG_CONFIG_HOME=str(tmp_path / "config"),
        HOME=str(tmp_path / "home"),
    )
    code = DRIVE.format(service_only=SERVICE_ONLY)
    done = subprocess.run(
        [client_python, "-c", code, str(train)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-4000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["missing"] == list(SERVICE_ONLY), "the client's environment holds none of the service's packages"
    assert "optimizer_options: AdamW has no option(s) momentom" in seen["refused"] and seen["stored_after_refusal"] == 0
    assert (seen["dataset"], seen["status"]) == ("READY", "FINISHED")
    assert seen["run"] in seen["listed"]
    assert seen["get_model"].endswith('pip install "finetuner[inference]"')
    command = client_python.parent / "finetuner"
    listed = subprocess.run(
        [command, "runs", "list", "--quiet"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert listed.returncode == 0 and seen["run"] in listed.stdout, listed.stderr
    checked = subprocess.run(  # no Flow needed; the packaged weights are the service's
        [command, "check", "--train-data", str(train), "--quiet"], env=env, capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0 and checked.stdout.split() == ["train", "16", "text", "4"], checked.stderr
