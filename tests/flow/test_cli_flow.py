"""The finetuner command against the real Flow: login with a token, fit --follow --quiet, runs, download, errors."""

import csv
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

import finetuner
from conftest import banking77_slice, user_token
from finetuner import cli


def write_csv(path: Path, rows) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([("text", "label"), *rows])
    return path


@pytest.fixture
def logged_in(flow, tmp_path, monkeypatch, capsys):
    """``finetuner login`` as a new user, with its own home; alice's client session again afterwards."""
    previous = finetuner.api._session["transport"]
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("XDG_CONFIG_HOME", "FINETUNER_HOST", "FINETUNER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    token = user_token(Path(os.environ["FINETUNER_WORKSPACE"]), f"cli-{tmp_path.name}"[:60])
    host = f"grpc://127.0.0.1:{flow}"
    assert cli.main(["login", "--host", host, "--token", token]) == 0
    capsys.readouterr()
    yield host, token
    finetuner.api._session["transport"] = previous


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_login_checks_the_token_and_saves_it_privately(flow, tmp_path, monkeypatch, capsys, logged_in):
    host, token = logged_in
    path = cli.credentials_path()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert cli.load_credentials() == {"host": host, "token": token}
    code, _, err = run(capsys, "login", "--host", host, "--token", "ft_wrong")
    assert code == cli.REFUSED and err.startswith("error: invalid token") and len(err.strip().splitlines()) == 1
    assert cli.load_credentials()["token"] == token, "a refused login keeps the saved one"


@pytest.mark.slow
def test_fit_follow_quiet_then_list_inspect_download_and_delete(data_dir, tmp_path, capsys, logged_in):
    train = write_csv(tmp_path / "train.csv", banking77_slice(data_dir, "train", classes=4, per_class=8))
    evaluation = write_csv(tmp_path / "eval.csv", banking77_slice(data_dir, "test", classes=4, per_class=5))
    code, out, err = run(
        capsys,
        "fit",
        *("--train-data", str(train), "--eval-data", str(evaluation), "--batch-size", "16", "--epochs", "2"),
        *("--max-steps", "3", "--experiment", "cli", "--run-name", "from the command line", "--set", "eval_ks=[1, 5]"),
        *("--set", "log_every=1", "--set", "device=cpu", "--follow", "--quiet"),
    )
    assert code == 0, err
    run_id, status = out.split()
    assert status == "FINISHED" and err == ""

    code, out, _ = run(capsys, "runs", "list")
    assert code == 0 and run_id in out and "FINISHED" in out and "from the" in out
    code, out, _ = run(capsys, "runs", "list", "--experiment", "cli", "--status", "finished", "-q")
    assert code == 0 and out.split() == [run_id]
    code, out, _ = run(capsys, "runs", "list", "--experiment", "other", "-q")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "runs", "status", run_id)
    assert code == 0 and "FINISHED" in out and "precision@1" in out and "change" in out
    code, out, _ = run(capsys, "runs", "logs", run_id)
    assert code == 0 and "step 3/3" in out and "metrics after" in out
    code, out, _ = run(capsys, "runs", "logs", run_id, "-f")
    assert code == 0 and "step 3/3" in out and out.splitlines()[-1] == "FINISHED"

    code, out, _ = run(capsys, "download", run_id, str(tmp_path / "model"), "-q")
    assert code == 0 and out.strip() == str(tmp_path / "model")
    assert SentenceTransformer(out.strip(), device="cpu").encode(["top up"]).shape == (1, 384)

    code, out, _ = run(capsys, "evaluate", "--run", run_id, "--data", str(evaluation), "--eval-ks", "1", "5", "-q")
    metrics = dict(line.split("\t") for line in out.splitlines())
    assert code == 0 and float(metrics["precision@1"]) > 0 and metrics["queries"] == "20"

    code, out, err = run(capsys, "runs", "delete", run_id)
    assert code == 0 and f"deleted run {run_id}" in err
    code, _, err = run(capsys, "runs", "status", run_id)
    assert code == cli.REFUSED and err.startswith("error: ") and "not found" in err


def test_bad_data_is_refused_with_one_line(tmp_path, capsys, logged_in):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,label\nfine,a\nalso fine,a\nnext,b\n,b\nthis,has,three\n", encoding="utf-8")
    code, out, err = run(capsys, "fit", "--train-data", str(bad), "--batch-size", "4", "-q")
    assert code == cli.REFUSED and out == ""
    assert err.count("\n") == 1 and err.startswith("error: bad.csv data rejected: ")
    assert "row 6: expected 2 columns" in err


@pytest.mark.slow
def test_the_installed_command_lists_runs_with_a_token_from_the_environment(flow, tmp_path):
    token = user_token(Path(os.environ["FINETUNER_WORKSPACE"]), "cli-env")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNER_")}
    env.update(HOME=str(tmp_path), FINETUNER_HOST=f"grpc://127.0.0.1:{flow}", FINETUNER_TOKEN=token)
    command = [sys.executable, "-m", "finetuner.cli", "runs", "list"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "runs (page 1)" in done.stdout and "run id" in done.stdout
    env["FINETUNER_TOKEN"] = "ft_wrong"
    done = subprocess.run([*command, "-q"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == cli.REFUSED and done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith("error: invalid token")
