"""The finetuner command without a Flow: parsing, settings files, exit codes, the error line, credentials, admin."""

import argparse
import os
import stat
import subprocess
import sys

import pytest

from conftest import unused_port
from finetuner import cli
from finetuner.errors import ConnectionFailedError, NotLoggedInError, ServerError
from finetuner_core.config import ConfigError, parse_fit_config
from finetuner_core.workspace import Workspace
from finetuner_protocol.backbones import list_backbones
from finetuner_protocol.data.errors import DataError, Problem


@pytest.fixture(autouse=True)
def no_login(tmp_path, monkeypatch):
    """A home of its own, no saved login, no login from the environment."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in ("FINETUNER_HOST", "FINETUNER_TOKEN", "FINETUNER_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of the parser: (), ("fit",), ("runs", "list") ..."""
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, (*prefix, name))
    return found


@pytest.mark.parametrize("path", commands(cli.build_parser()), ids=lambda p: " ".join(p) or "finetuner")
def test_every_command_has_help(capsys, path):
    code, out, err = run(capsys, *path, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"usage: {' '.join(('finetuner', *path))}")


def test_the_command_tree_is_complete():
    paths = {" ".join(p) for p in commands(cli.build_parser())}
    expected = {"login", "logout", "fit", "check", "download", "evaluate", "models", "report"}
    expected |= {f"runs {c}" for c in ("list", "status", "logs", "cancel", "delete")}
    expected |= {"datasets list", "datasets delete", "admin create-user", "admin list-users"}
    assert expected <= paths


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_flags_override_settings_which_override_the_config_file(tmp_path):
    write(tmp_path / "train.csv", "text,label\na,x\nb,x\nc,y\nd,y\n")
    config = write(
        tmp_path / "run.yaml",
        "model: all-MiniLM-L6-v2\nepochs: 3\nbatch_size: 8\nloss_options: {margin: 0.2}\n"
        "train_data: train.csv\neval_data: ds-0123456789abcdef\nexperiment: banking\noutput_dim: 64\n",
    )
    args = cli.build_parser().parse_args(
        ["fit", "--config", str(config), "--epochs", "2", "--set", "batch_size=16", "--set", "eval_ks=[1, 5]"]
    )
    options = cli.fit_options(args)
    assert options["epochs"] == 2 and options["batch_size"] == 16 and options["eval_ks"] == [1, 5]
    assert options["loss_options"] == {"margin": 0.2} and options["output_dim"] == 64
    assert options["train_data"] == str(tmp_path / "train.csv"), "paths in the file are relative to it"
    assert options["eval_data"] == "ds-0123456789abcdef", "a dataset id stays as it is"
    assert options["experiment_name"] == "banking" and options["model"] == "all-MiniLM-L6-v2"


def test_fit_flags_map_to_fit_arguments():
    args = cli.build_parser().parse_args(
        "fit --model mlp --train-data t.csv --eval-data e.csv --loss InfoNCELoss --epochs 2 --batch-size 8 "
        "--learning-rate 1e-4 --max-steps 5 --eval-every-steps 2 --experiment exp --run-name r1 -f -q".split()
    )
    assert args.follow and args.quiet and args.handler is cli.cmd_fit
    options = {name: getattr(args, flag) for flag, name in cli.FIT_FLAGS.items()}
    assert options == {
        "model": "mlp",
        "train_data": "t.csv",
        "eval_data": "e.csv",
        "loss": "InfoNCELoss",
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 1e-4,
        "max_steps": 5,
        "eval_every_steps": 2,
        "experiment_name": "exp",
        "run_name": "r1",
    }


def test_quiet_goes_before_or_after_the_command():
    parser = cli.build_parser()
    assert parser.parse_args(["-q", "runs", "list"]).quiet
    assert parser.parse_args(["runs", "list", "--quiet"]).quiet
    assert not parser.parse_args(["runs", "list"]).quiet


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["frobnicate"], ["invalid choice: 'frobnicate'"]),
        (["runs"], ["required: COMMAND"]),
        (["fit"], ["fit needs --train-data"]),
        (["fit", "--train-data", "t.csv", "--epochs", "0"], ["--epochs: must be at least 1"]),
        (["fit", "--train-data", "t.csv", "--loss", "NoSuchLoss"], ["invalid fit configuration", "NoSuchLoss"]),
        (["fit", "--train-data", "t.csv", "--set", "epochz=2"], ["epochz", "Extra inputs are not permitted"]),
        (["fit", "--train-data", "t.csv", "--set", "epochs"], ["expected KEY=VALUE"]),
        (["fit", "--config", "missing.yaml"], ["no such file 'missing.yaml'"]),
        (["runs", "list", "--status", "DONE"], ["invalid choice: 'DONE'"]),
        (["runs", "list", "--size", "x"], ["expected a whole number"]),
        (["evaluate", "--data", "missing.csv"], ["--data: no such file"]),
        (["evaluate", "--model", "mlp", "--run", "abc", "--data", "x.csv"], ["not allowed with argument"]),
        (["download", "only-one-argument"], ["required: directory"]),
    ],
)
def test_usage_errors_exit_2_with_one_error_line(capsys, argv, fragments):
    code, out, err = run(capsys, *argv)
    assert code == cli.USAGE and out == ""
    assert_one_error_line(err, *fragments)


def test_a_bad_config_file_is_a_usage_error(capsys, tmp_path):
    bad = write(tmp_path / "bad.yaml", "epochs: [1, 2\n")
    code, _, err = run(capsys, "fit", "--config", str(bad), "--train-data", "t.csv")
    assert code == cli.USAGE
    assert_one_error_line(err, "not valid YAML")
    listed = write(tmp_path / "list.yaml", "- epochs\n")
    code, _, err = run(capsys, "fit", "--config", str(listed), "--train-data", "t.csv")
    assert code == cli.USAGE
    assert_one_error_line(err, "expected a mapping of FitConfig fields")


@pytest.mark.parametrize(
    "argv", [["runs", "list"], ["runs", "status", "0123456789abcdef"], ["datasets", "list"], ["report", "x", "dir"]]
)
def test_without_a_login_commands_exit_3(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == cli.UNREACHABLE and out == ""
    assert_one_error_line(err, "not logged in", "finetuner login")


def test_a_fit_that_is_valid_but_not_logged_in_exits_3(capsys, tmp_path):
    train = write(tmp_path / "train.csv", "text,label\na,x\nb,x\nc,y\nd,y\n")
    code, _, err = run(capsys, "fit", "--train-data", str(train), "--batch-size", "4")
    assert code == cli.UNREACHABLE
    assert_one_error_line(err, "not logged in")


def test_a_flow_that_does_not_answer_exits_3(capsys, monkeypatch):
    host = f"grpc://127.0.0.1:{unused_port()}"
    monkeypatch.setenv("FINETUNER_HOST", host)
    code, out, err = run(capsys, "runs", "list")
    assert code == cli.UNREACHABLE and out == ""
    assert_one_error_line(err, f"no Flow answers at {host}")
    code, _, err = run(capsys, "login", "--host", host, "--token", "t")
    assert code == cli.UNREACHABLE and not cli.credentials_path().exists()
    assert_one_error_line(err, "no Flow answers")


def test_login_needs_a_host(capsys):
    code, _, err = run(capsys, "login", "--token", "t")
    assert code == cli.USAGE
    assert_one_error_line(err, "login needs --host")


def test_credentials_are_readable_by_the_user_alone(tmp_path, monkeypatch):
    path = cli.save_credentials("grpc://127.0.0.1:1234", "secret")
    assert path == tmp_path / "home" / ".config" / "finetuner" / "credentials.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert cli.load_credentials() == {"host": "grpc://127.0.0.1:1234", "token": "secret"}
    cli.save_credentials("grpc://127.0.0.1:5678", "newer")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["credentials.json"]
    monkeypatch.setenv("FINETUNER_TOKEN", "from-env")
    assert cli.load_credentials() == {"host": "grpc://127.0.0.1:5678", "token": "from-env"}
    monkeypatch.setenv("FINETUNER_HOST", "grpc://127.0.0.1:9999")
    assert cli.load_credentials()["host"] == "grpc://127.0.0.1:9999"


def test_xdg_config_home_is_respected(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert cli.save_credentials("grpc://h:1", "t") == tmp_path / "xdg" / "finetuner" / "credentials.json"


def test_a_corrupt_credentials_file_asks_for_a_new_login(capsys):
    path = cli.save_credentials("grpc://127.0.0.1:1", "t")
    path.write_text("{not json", encoding="utf-8")
    code, _, err = run(capsys, "runs", "list")
    assert code == cli.UNREACHABLE
    assert_one_error_line(err, "is not valid JSON", "finetuner login")


def test_logout_removes_the_credentials(capsys):
    path = cli.save_credentials("grpc://127.0.0.1:1", "t")
    code, _, _ = run(capsys, "logout", "-q")
    assert code == 0 and not path.exists()


def test_errors_map_to_exit_codes_and_one_line_messages():
    data_error = DataError("train.csv", [Problem("train.csv row 7", "text is empty"), Problem("row 9", "no label")])
    with pytest.raises(ConfigError) as config_error:
        parse_fit_config({"loss": "Nope", "epochs": 0})
    cases = [
        (ServerError("run 'x' not found"), cli.REFUSED),
        (data_error, cli.REFUSED),
        (config_error.value, cli.USAGE),
        (FileNotFoundError("train data: no such file 'x.csv'"), cli.USAGE),
        (ConnectionFailedError("cannot reach the Flow"), cli.UNREACHABLE),
        (NotLoggedInError("not logged in"), cli.UNREACHABLE),
        (TimeoutError("still running"), cli.REFUSED),
        (RuntimeError("a bug"), None),
    ]
    for error, code in cases:
        assert cli.exit_code(error) == code, error
        assert "\n" not in cli.one_line(error)
    assert cli.one_line(data_error) == (
        "train.csv data rejected: 2 problems; train.csv row 7: text is empty; row 9: no label"
    )
    line = cli.one_line(config_error.value)
    assert line.startswith("invalid fit configuration: ") and "loss" in line and "epochs" in line
    assert (
        cli.one_line(FileNotFoundError(2, "No such file or directory", "x.csv")) == "No such file or directory: x.csv"
    )


def test_run_status_exit_codes():
    assert [cli.status_code(s) for s in cli.STATUSES] == [0, 0, 0, 0, 1, 1]


def test_models_lists_the_registry(capsys):
    code, out, _ = run(capsys, "models", "--quiet")
    assert code == 0 and out.split() == [spec.name for spec in list_backbones()]
    code, out, _ = run(capsys, "models")
    assert code == 0 and "all-MiniLM-L6-v2" in out and "modality" in out


def test_admin_creates_users_whose_tokens_work(capsys, tmp_path):
    workspace = tmp_path / "workspace"
    code, out, err = run(capsys, "admin", "create-user", "bob", "--workspace", str(workspace))
    assert code == 0 and err == ""
    token = out.strip()
    assert Workspace(workspace).users.authenticate(token).name == "bob"
    code, _, err = run(capsys, "admin", "create-user", "bob", "--workspace", str(workspace))
    assert code == 1
    assert_one_error_line(err, "already exists")
    code, out, _ = run(capsys, "admin", "list-users", "--workspace", str(workspace))
    assert code == 0 and out.split() == ["bob"]
    code, out, _ = run(capsys, "admin", "rotate-token", "bob", "--workspace", str(workspace))
    assert code == 0 and out.strip() != token
    assert Workspace(workspace).users.authenticate(out.strip()).name == "bob"


@pytest.mark.slow
def test_the_installed_command_prints_one_error_line_and_no_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNER_")}
    env.update(HOME=str(tmp_path / "home"), PYTHONWARNINGS="ignore")
    done = subprocess.run(
        [sys.executable, "-m", "finetuner.cli", "runs", "list"], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == cli.UNREACHABLE and done.stdout == ""
    assert_one_error_line(done.stderr, "not logged in")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("grpc://127.0.0.1:54321", ("127.0.0.1", 54321, False)),
        ("127.0.0.1:54321", ("127.0.0.1", 54321, False)),
        ("grpcs://finetuner-abc.wolf.jina.ai", ("finetuner-abc.wolf.jina.ai", 443, True)),
        ("grpcs://example.org:8443", ("example.org", 8443, True)),
    ],
)
def test_hosts_name_plain_or_tls_grpc(host, expected):
    from finetuner.transport import parse_host

    assert parse_host(host) == expected


@pytest.mark.parametrize("host", ["http://x:1", "grpc://x", "grpc://:80"])
def test_other_hosts_are_refused(host):
    from finetuner.transport import parse_host

    with pytest.raises(ValueError, match="host must look like"):
        parse_host(host)


def test_check_reads_data_without_a_flow_and_lists_every_problem(capsys, tmp_path):
    good = write(tmp_path / "train.csv", "text,label\na,x\nb,x\nc,y\nd,y\n")
    code, out, err = run(capsys, "check", "--train-data", str(good), "--eval-data", str(good), "--set", "eval_ks=[1]")
    assert code == 0 and err == "", err
    assert "the data is valid" in out and "train" in out and "eval" in out
    code, out, _ = run(capsys, "-q", "check", "--train-data", str(good), "--set", "eval_ks=[1]")
    assert code == 0 and out.splitlines() == ["train\t4\ttext\t2"]

    bad = write(tmp_path / "bad.csv", "text,label\na,x\n,x\nc,\nd,y\ne,y\n")
    code, out, err = run(capsys, "check", "--train-data", str(bad))
    assert code == cli.REFUSED and out == ""
    assert err.splitlines() == [
        "error: train data rejected: 2 problems",
        "  bad.csv row 3: text is empty or whitespace",
        "  bad.csv row 4: label is missing",
    ]
    code, _, err = run(capsys, "check", "--train-data", str(good), "--loss", "NoSuchLoss")
    assert code == cli.USAGE
    assert_one_error_line(err, "unknown loss 'NoSuchLoss'")


def test_models_import_list_and_delete_manage_the_workspace_s_store(capsys, tmp_path):
    workspace, model = str(tmp_path / "workspace"), tmp_path / "tiny"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "bert"}')
    code, out, err = run(capsys, "models", "import", str(model), "--name", "acme/tiny", "--workspace", workspace)
    assert code == 0 and err == "" and out.startswith("acme/tiny: sha256:")
    assert Workspace(workspace).models.lookup("acme/tiny") is not None
    code, out, _ = run(capsys, "models", "list", "--workspace", workspace)
    header, row = out.splitlines()
    assert header.split() == ["name", "family", "revision", "size", "origin", "created"]
    assert row.split()[:2] == ["acme/tiny", "sentence-transformers"] and " tiny " in row
    code, out, _ = run(capsys, "models", "list", "-q", "--workspace", workspace)
    assert code == 0 and out.split() == ["acme/tiny"]
    code, out, _ = run(capsys, "models", "delete", "acme/tiny", "--workspace", workspace)
    assert code == 0 and out.strip() == "deleted acme/tiny"
    code, _, err = run(capsys, "models", "delete", "acme/tiny", "--workspace", workspace)
    assert code == 1
    assert_one_error_line(err, "'acme/tiny' is not in the store")


def test_models_commands_refuse_in_one_line(capsys, tmp_path, monkeypatch):
    workspace = str(tmp_path / "workspace")
    code, _, err = run(capsys, "models", "import", str(tmp_path), "--name", "../up", "--workspace", workspace)
    assert code == 1
    assert_one_error_line(err, "model name '../up'")
    code, _, err = run(capsys, "models", "import", str(tmp_path), "--name", "acme/x", "--workspace", workspace)
    assert code == 1
    assert_one_error_line(err, "holds the model store")
    (tmp_path / "empty").mkdir()
    code, _, err = run(
        capsys, "models", "import", str(tmp_path / "empty"), "--name", "acme/x", "--workspace", workspace
    )
    assert code == 1
    assert_one_error_line(err, "does not look like a model")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, _, err = run(capsys, "models", "pull", "acme/nowhere", "--workspace", workspace)
    assert code == 1
    assert_one_error_line(err, "'acme/nowhere'", "nothing may be downloaded")
    code, _, err = run(capsys, "models", "pull", "--workspace", workspace)
    assert code == cli.USAGE
