"""The finetuner command: log in, start and follow runs, inspect and delete them, download models, evaluate,
write reports, manage datasets and (on the Flow's machine) users. `finetuner COMMAND --help` says more.

Exit codes: 0 done; 1 the Flow refused the request, or the run failed or was cancelled; 2 a usage error (bad
arguments, settings or files); 3 the Flow cannot be reached, or there is no login. Errors are one line on
stderr, ``error: ...``; ``FINETUNER_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

import yaml
from rich.console import Console
from rich.table import Table

import finetuner
from finetuner.environment import HOST_VARIABLE, TOKEN_VARIABLE
from finetuner.errors import ConnectionFailedError, FinetunerError, NotLoggedInError, ServerError
from finetuner.progress import follow
from finetuner.settings import settings_of
from finetuner_protocol.backbones import DEFAULT_TEXT_MODEL, ModelNotAvailableError
from finetuner_protocol.data.errors import DataError
from finetuner_protocol.runs import RunStatus
from finetuner_protocol.settings import ConfigError

OK, REFUSED, USAGE, UNREACHABLE = 0, 1, 2, 3
STATUSES = tuple(status.value for status in RunStatus)
FIT_FLAGS = {
    "model": "model",
    "train_data": "train_data",
    "eval_data": "eval_data",
    "loss": "loss",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "learning_rate": "learning_rate",
    "max_steps": "max_steps",
    "eval_every_steps": "eval_every_steps",
    "experiment": "experiment_name",
    "run_name": "run_name",
}


class UsageError(Exception):
    """The command line or a file it names is not usable; exit code 2."""


# --- credentials ---------------------------------------------------------------------------------------------
def credentials_path() -> Path:
    """``$XDG_CONFIG_HOME/finetuner/credentials.json``, by default under ``~/.config``."""
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "finetuner" / "credentials.json"


def save_credentials(host: str, token: str | None, path: Path | None = None) -> Path:
    """Write host and token, readable by the user alone (0600, folder 0700), replacing any earlier login."""
    path = path or credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump({"host": host, "token": token}, file)
    os.chmod(partial, 0o600)
    os.replace(partial, path)
    return path


def load_credentials(path: Path | None = None) -> dict[str, str | None]:
    """Host and token: the saved login, each overridden by $FINETUNER_HOST / $FINETUNER_TOKEN when set."""
    path = path or credentials_path()
    saved: dict[str, Any] = {}
    if path.exists():
        try:
            saved = json.loads(path.read_text("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NotLoggedInError(f"{path} is not valid JSON ({exc}); run `finetuner login` again") from None
        if not isinstance(saved, dict):
            raise NotLoggedInError(f"{path} does not hold a login; run `finetuner login` again")
    return {
        "host": os.environ.get(HOST_VARIABLE) or saved.get("host"),
        "token": os.environ.get(TOKEN_VARIABLE) or saved.get("token"),
    }


def connect() -> None:
    """Log the client in with the saved (or environment) host and token."""
    credentials = load_credentials()
    if not credentials["host"]:
        raise NotLoggedInError(
            f"not logged in: run `finetuner login --host grpc://HOST:PORT --token TOKEN` or set {HOST_VARIABLE}"
        )
    finetuner.login(host=credentials["host"], token=credentials["token"])


# --- output --------------------------------------------------------------------------------------------------
def _out() -> Console:
    return Console(soft_wrap=False)


def _err() -> Console:
    return Console(stderr=True)


def _note(args: argparse.Namespace, message: str) -> None:
    """A message for people (stderr), left out with --quiet."""
    if not args.quiet:
        _err().print(message, markup=False, highlight=False)


def _when(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else ""


def _duration(record: dict[str, Any]) -> str:
    start, end = record.get("started_at"), record.get("finished_at")
    return f"{end - start:.0f}s" if start and end else ""


def status_code(status: str) -> int:
    """1 for a run that failed or was cancelled, else 0."""
    return REFUSED if status in (RunStatus.FAILED, RunStatus.CANCELLED) else OK


# --- commands ------------------------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    host = args.host or os.environ.get(HOST_VARIABLE)
    if not host:
        raise UsageError(f"login needs --host grpc://HOST:PORT (or {HOST_VARIABLE})")
    token = sys.stdin.readline().strip() if args.token == "-" else args.token or os.environ.get(TOKEN_VARIABLE)
    finetuner.login(host=host, token=token, verify=not args.no_verify)  # the trainer checks the token
    path = save_credentials(host, token)
    _note(args, f"logged in to {host}; credentials saved to {path}")
    return OK


def cmd_logout(args: argparse.Namespace) -> int:
    path = credentials_path()
    path.unlink(missing_ok=True)
    _note(args, f"removed {path}")
    return OK


def load_run_config(path: str) -> dict[str, Any]:
    """The mapping of a ``--config`` YAML file; data paths in it are relative to the file."""
    file = Path(path)
    try:
        content = yaml.safe_load(file.read_text("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"--config: no such file {path!r}") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {path}: not valid YAML: {' '.join(str(exc).split())}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UsageError(f"--config {path}: expected a mapping of FitConfig fields, found {type(content).__name__}")
    if "experiment" in content:
        content["experiment_name"] = content.pop("experiment")
    for split in ("train_data", "eval_data"):
        if isinstance(content.get(split), str) and (file.parent / content[split]).exists():
            content[split] = str(file.parent / content[split])
    return content


def parse_settings(settings: list[str]) -> dict[str, Any]:
    """``--set KEY=VALUE`` pairs, each value read as YAML (``0.2``, ``true``, ``[1, 5]``, ``{margin: 0.2}``)."""
    parsed = {}
    for setting in settings:
        key, equals, value = setting.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--set {setting!r}: expected KEY=VALUE")
        try:
            parsed[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise UsageError(f"--set {setting!r}: the value is not valid YAML") from None
    return parsed


def fit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The fit's arguments: the --config file, then --set, then the flags (each overriding the one before)."""
    options = load_run_config(args.config) if args.config else {}
    options.update(parse_settings(args.set or []))
    options.update({name: getattr(args, flag) for flag, name in FIT_FLAGS.items() if getattr(args, flag) is not None})
    if options.get("train_data") is None:
        raise UsageError("fit needs --train-data (or train_data in the --config file)")
    settings = {k: v for k, v in options.items() if k not in ("train_data", "eval_data", "experiment_name")}
    settings_of(settings.pop("model", None) or DEFAULT_TEXT_MODEL, settings)
    return options


def cmd_fit(args: argparse.Namespace) -> int:
    options = fit_options(args)
    connect()
    run = finetuner.fit(**options, quiet=args.quiet or not sys.stdout.isatty())
    print(run.id, flush=True)
    if not args.follow:
        _note(args, f"run {run.id} started; follow it with: finetuner runs logs {run.id} -f")
        return OK
    return _follow(run, args.quiet, _err())


def _follow(run, quiet: bool, console: Console) -> int:
    """Show the run's progress on ``console`` until it ends; print the final status; 1 unless FINISHED."""
    try:
        status = follow(run, console, quiet=quiet)
    except KeyboardInterrupt:
        _err().print(f"stopped following; run {run.id} goes on (finetuner runs logs {run.id} -f)", markup=False)
        raise
    print(status, flush=True)
    if status != "FINISHED":
        reason = run.info().get("error") if status == "FAILED" else None
        print(f"error: run {run.id} {status}{f': {reason}' if reason else ''}", file=sys.stderr)
    return status_code(status)


def cmd_check(args: argparse.Namespace) -> int:
    options = fit_options(args)
    options.pop("experiment_name", None)
    try:
        splits = finetuner.check_data(**options)
    except (DataError, ModelNotAvailableError) as exc:  # every problem on a line of its own: they are read here
        print(f"error: {exc}", file=sys.stderr)
        return REFUSED
    if args.quiet:
        for split, described in splits.items():
            print("\t".join(str(value) for value in (split, *described.values())))
        return OK
    table = Table("split", "items", "shape", "classes", title="the data is valid")
    for split, described in splits.items():
        table.add_row(split, str(described["items"]), described["shape"], str(described.get("classes", "")))
    _out().print(table)
    return OK


def cmd_runs_list(args: argparse.Namespace) -> int:
    connect()
    runs = finetuner.list_runs(args.experiment, args.status, args.page, args.size)
    if args.quiet:
        for run in runs:
            print(run["run_id"])
        return OK
    table = Table(title=f"runs (page {args.page})")
    table.add_column("run id", no_wrap=True, min_width=16)
    for column in ("name", "experiment", "status", "created", "duration"):
        table.add_column(column)
    for run in runs:
        row = (run["run_id"], run.get("name") or "", run.get("experiment") or "", run["status"])
        table.add_row(*row, _when(run.get("created_at")), _duration(run))
    _out().print(table)
    return OK


def cmd_runs_status(args: argparse.Namespace) -> int:
    connect()
    run = finetuner.get_run(args.run_id)
    info = run.info()
    if args.quiet:
        print(info["status"])
        return status_code(info["status"])
    from finetuner.report import display_metrics, loss_name

    config = info.get("config", {})
    table = Table("", "", show_header=False, title=f"run {run.id}")
    rows = {
        "name": info.get("name"),
        "experiment": info.get("experiment"),
        "status": info["status"],
        "error": info.get("error"),
        "created": _when(info.get("created_at")),
        "started": _when(info.get("started_at")),
        "finished": _when(info.get("finished_at")),
        "model": config.get("model"),
        **model_source_rows(config.get("model_source")),
        "loss": loss_name(config),
        "epochs": config.get("epochs"),
        "batch size": config.get("batch_size"),
        "learning rate": config.get("learning_rate"),
    }
    for key, value in rows.items():
        if value not in (None, ""):
            table.add_row(key, str(value))
    console = _out()
    console.print(table)
    metrics = run.metrics()
    if metrics:
        display_metrics(metrics, console)
    return status_code(info["status"])


def model_source_rows(source: dict[str, Any] | None) -> dict[str, str | None]:
    """Where a run's model came from (its config's ``model_source``): the kind and id, the revision, the licence;
    for a run continued from another, that run and the base model it came from."""
    if not source:
        return {}
    base = source.get("base") or {} if source.get("kind") == "run" else source
    rows = {"continued from": f"run {source.get('id')}" if source is not base else None}
    rows["source"] = f"{base.get('kind')}: {base.get('id')}" if base.get("kind") else None
    rows["revision"] = base.get("revision")
    rows["licence"] = base.get("license")
    return rows


def cmd_runs_logs(args: argparse.Namespace) -> int:
    connect()
    run = finetuner.get_run(args.run_id)
    if args.follow:
        return _follow(run, args.quiet, _out())
    if not args.quiet:
        text = run.logs()
        if text:
            print(text)
    return OK


def cmd_runs_cancel(args: argparse.Namespace) -> int:
    connect()
    finetuner.get_run(args.run_id).cancel()
    _note(args, f"cancelling run {args.run_id}")
    return OK


def cmd_runs_delete(args: argparse.Namespace) -> int:
    connect()
    finetuner.delete_run(args.run_id)
    _note(args, f"deleted run {args.run_id}")
    return OK


def cmd_download(args: argparse.Namespace) -> int:
    connect()
    path = finetuner.get_run(args.run_id).save_artifact(args.directory, quiet=args.quiet)
    print(path)
    return OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    if not Path(args.data).is_file():
        raise UsageError(f"--data: no such file {args.data!r}")
    options: dict[str, Any] = {"eval_ks": args.eval_ks} if args.eval_ks else {}
    if args.examples:
        options["evaluation"] = {"examples": args.examples, "example_k": args.example_k}
    connect()
    answer = finetuner.evaluate(args.data, model=args.model, run_id=args.run, full=True, **options)
    if args.quiet:
        for name, value in answer["metrics"].items():
            print(f"{name}\t{value}")
        return OK
    from finetuner.report import display_examples, display_metrics

    console = _out()
    display_metrics({args.run or args.model or finetuner.api.DEFAULT_TEXT_MODEL: answer["metrics"]}, console)
    if args.examples:
        display_examples(answer["examples"], console)
    for warning in answer.get("warnings", []):
        _note(args, f"warning: {warning}")
    return OK


def cmd_models(args: argparse.Namespace) -> int:
    if args.quiet:
        from finetuner_protocol.backbones import list_backbones

        for spec in list_backbones():
            print(spec.name)
        return OK
    try:
        if load_credentials()["host"]:
            connect()  # the Flow says where each model's weights would come from
        finetuner.describe_models(aliases=True)
    except ConnectionFailedError as exc:  # the catalogue alone
        _note(args, f"{one_line(exc)}; where each model's weights would come from is not shown")
        finetuner.describe_models(aliases=True, flow=False)
    return OK


def cmd_models_store(args: argparse.Namespace) -> int:
    """``finetuner models pull | import | list | delete``: the workspace's model store, on the Flow's machine."""
    admin = _admin_module()
    argv = ["--workspace", args.workspace, f"models-{args.models_command}"]
    if args.models_command == "import":
        argv += [args.path, "--name", args.name]
    elif args.models_command in ("pull", "delete"):
        argv.append(args.name)
    elif getattr(args, "quiet", False):
        argv.append("--quiet")
    return admin.main(argv)


def cmd_datasets_list(args: argparse.Namespace) -> int:
    connect()
    datasets = finetuner.list_datasets()
    if args.quiet:
        for dataset in datasets:
            print(dataset["id"])
        return OK
    table = Table(title="datasets")
    table.add_column("dataset id", no_wrap=True, min_width=19)
    for column in ("name", "status", "items", "size", "created"):
        table.add_column(column)
    for d in datasets:
        size = f"{(d.get('bytes') or 0) / 1e6:.1f} MB"
        table.add_row(d["id"], d.get("name") or "", d["status"], str(d.get("items", "")), size, _when(d["created_at"]))
    _out().print(table)
    return OK


def cmd_datasets_delete(args: argparse.Namespace) -> int:
    connect()
    finetuner.delete_dataset(args.dataset_id)
    _note(args, f"deleted dataset {args.dataset_id}")
    return OK


def cmd_report(args: argparse.Namespace) -> int:
    from finetuner.report import write_report

    connect()
    run = finetuner.get_run(args.run_id)
    path = write_report(run, args.directory, args.eval_data, args.examples, args.example_k)
    print(path)
    return OK


def _admin_module():
    """``finetuner_core.admin``, which is installed where the service is."""
    try:
        from finetuner_core import admin
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("finetuner_core."):
            raise
        raise UsageError("admin runs on the Flow's machine, where the service is installed") from None
    return admin


def cmd_admin(args: argparse.Namespace) -> int:
    admin = _admin_module()
    argv = ["--workspace", args.workspace, args.admin_command]
    if args.admin_command != "list-users":
        argv.append(args.name)
    if getattr(args, "admin", False):
        argv.append("--admin")
    return admin.main(argv)


# --- the parser ----------------------------------------------------------------------------------------------
class Parser(argparse.ArgumentParser):
    """Usage errors as one line, ``error: ...``, exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(USAGE)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print only what scripts need"
    )
    return common


def _command(commands, name: str, handler: Callable, help: str, description: str | None = None):
    parser = commands.add_parser(name, help=help, description=description or help, parents=[_common()])
    parser.set_defaults(handler=handler)
    return parser


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _add_fit(commands) -> None:
    fit = _command(
        commands,
        "fit",
        cmd_fit,
        "start a fine-tuning run and print its id",
        "Start a fine-tuning run and print its id. Settings come from --config (a YAML file of FitConfig "
        "fields, plus train_data / eval_data / experiment), then --set KEY=VALUE, then the flags.",
    )
    _fit_arguments(fit)
    fit.add_argument("-f", "--follow", action="store_true", help="show progress until the run ends")
    check = _command(
        commands,
        "check",
        cmd_check,
        "check data here as fit would, without a Flow",
        "Check the training (and evaluation) data here, with the settings fit would get (--config, --set, the "
        "flags): every bad row is listed; exit 1 if any. Needs no Flow and no login.",
    )
    _fit_arguments(check)


def _fit_arguments(fit) -> None:
    fit.add_argument("--model", help="backbone name or local model folder (see `finetuner models`)")
    fit.add_argument("--train-data", help="training data: a CSV file or a dataset id")
    fit.add_argument("--eval-data", help="evaluation data: a CSV file or a dataset id")
    fit.add_argument("--loss", help="loss name, e.g. TripletMarginLoss, InfoNCELoss")
    fit.add_argument("--epochs", type=_positive)
    fit.add_argument("--batch-size", type=_positive)
    fit.add_argument("--learning-rate", type=float)
    fit.add_argument("--max-steps", type=_positive, help="stop after this many steps")
    fit.add_argument("--eval-every-steps", type=_positive, help="evaluate on the eval data every N steps")
    fit.add_argument("--experiment", help="experiment the run belongs to (default: default)")
    fit.add_argument("--run-name", help="a name for the run")
    fit.add_argument("--config", metavar="RUN.YAML", help="YAML file of FitConfig fields")
    fit.add_argument("--set", action="append", metavar="KEY=VALUE", help="any FitConfig field; repeatable")


def _add_runs(commands) -> None:
    runs = commands.add_parser("runs", help="list, inspect, follow, cancel and delete runs").add_subparsers(
        dest="runs_command", required=True, metavar="COMMAND"
    )
    listing = _command(runs, "list", cmd_runs_list, "list your runs, oldest first")
    listing.add_argument("--experiment", help="only this experiment's runs")
    listing.add_argument("--status", type=str.upper, choices=STATUSES, help="only runs with this status")
    listing.add_argument("--page", type=_positive, default=1)
    listing.add_argument("--size", type=_positive, default=50, help="runs per page")
    _command(runs, "status", cmd_runs_status, "a run's status, settings and metrics").add_argument("run_id")
    logs = _command(runs, "logs", cmd_runs_logs, "a run's logs")
    logs.add_argument("run_id")
    logs.add_argument("-f", "--follow", action="store_true", help="show progress until the run ends")
    _command(runs, "cancel", cmd_runs_cancel, "cancel a run").add_argument("run_id")
    _command(runs, "delete", cmd_runs_delete, "delete a run that has ended").add_argument("run_id")


def _add_evaluate(commands) -> None:
    evaluate = _command(commands, "evaluate", cmd_evaluate, "retrieval metrics of a model or a run on labeled data")
    source = evaluate.add_mutually_exclusive_group()
    source.add_argument("--model", help="backbone name or local model folder (default: all-MiniLM-L6-v2)")
    source.add_argument("--run", metavar="RUN_ID", help="a run's tuned model")
    evaluate.add_argument("--data", required=True, help="evaluation data: a CSV file")
    evaluate.add_argument("--eval-ks", type=_positive, nargs="+", metavar="K", help="cut-offs k (default 1 10 20)")
    evaluate.add_argument("--examples", type=int, default=0, help="show this many sample queries")
    evaluate.add_argument("--example-k", type=_positive, default=5, help="results shown per sample query")


def _add_datasets(commands) -> None:
    datasets = commands.add_parser("datasets", help="list or delete uploaded datasets").add_subparsers(
        dest="datasets_command", required=True, metavar="COMMAND"
    )
    _command(datasets, "list", cmd_datasets_list, "list your datasets")
    _command(datasets, "delete", cmd_datasets_delete, "delete a dataset").add_argument("dataset_id")


def _add_models(commands) -> None:
    models = _command(
        commands,
        "models",
        cmd_models,
        "the backbones, and the workspace's model store",
        "The backbones a fit may name (with no command), and the workspace's model store (on the machine holding "
        "the workspace): models pulled from the Hugging Face Hub or imported by hand, named in a fit like any "
        "backbone.",
    )
    store = models.add_subparsers(dest="models_command", metavar="COMMAND")
    pull = _command(store, "pull", cmd_models_store, "copy a Hugging Face model into the store (cache, else the Hub)")
    pull.add_argument("name", help="a Hugging Face id or a Finetuner model name")
    imported = _command(store, "import", cmd_models_store, "store a model folder or archive (.tar, .tar.gz, .zip)")
    imported.add_argument("path", help="a model folder, or an archive of one")
    imported.add_argument("--name", required=True, help="the name fits will use")
    _command(store, "list", cmd_models_store, "list the stored models (-q: names only)")
    _command(store, "delete", cmd_models_store, "remove a stored model").add_argument("name")
    for parser in store.choices.values():
        parser.add_argument("--workspace", default="", help="workspace folder ($FINETUNER_WORKSPACE, ./workspace)")


def _add_admin(commands) -> None:
    admin = commands.add_parser(
        "admin", help="manage users (on the machine holding the workspace)", description="Manage users."
    ).add_subparsers(dest="admin_command", required=True, metavar="COMMAND")
    for name, help in (
        ("create-user", "add a user and print its token"),
        ("rotate-token", "issue a new token (the old one stops working)"),
        ("delete-user", "remove a user (its runs and datasets stay)"),
        ("list-users", "list users"),
    ):
        parser = _command(admin, name, cmd_admin, help)
        if name != "list-users":
            parser.add_argument("name")
        parser.add_argument("--workspace", default="", help="workspace folder ($FINETUNER_WORKSPACE, ./workspace)")
        if name == "create-user":
            parser.add_argument("--admin", action="store_true", help="the user may see every user's runs")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="finetuner", description=__doc__.split("\n\n")[0])
    parser.add_argument("-q", "--quiet", action="store_true", help="print only what scripts need")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    login = _command(commands, "login", cmd_login, "check a Flow answers and save its address and your token")
    login.add_argument("--host", help="the Flow, grpc://HOST:PORT (default: $FINETUNER_HOST)")
    login.add_argument("--token", help="your token (default: $FINETUNER_TOKEN); '-' reads it from stdin")
    login.add_argument("--no-verify", action="store_true", help="save without checking the token")
    _command(commands, "logout", cmd_logout, "forget the saved login")
    _add_fit(commands)
    _add_runs(commands)
    download = _command(commands, "download", cmd_download, "download a run's tuned model into a folder")
    download.add_argument("run_id")
    download.add_argument("directory")
    _add_evaluate(commands)
    _add_models(commands)
    _add_datasets(commands)
    report = _command(commands, "report", cmd_report, "write a run's HTML report (index.html with plots)")
    report.add_argument("run_id")
    report.add_argument("directory")
    report.add_argument("--eval-data", help="evaluation data (CSV) to show sample queries with their top results")
    report.add_argument("--examples", type=int, default=3, help="sample queries shown (with --eval-data)")
    report.add_argument("--example-k", type=_positive, default=5, help="results shown per sample query")
    _add_admin(commands)
    return parser


def _version() -> str:
    try:
        return metadata.version("finetuner")
    except metadata.PackageNotFoundError:
        return "unknown"


# --- errors and main -----------------------------------------------------------------------------------------
ERRORS: list[tuple[type[BaseException], int]] = [
    (NotLoggedInError, UNREACHABLE),
    (ConnectionFailedError, UNREACHABLE),
    (ServerError, REFUSED),
    (DataError, REFUSED),
    (ConfigError, USAGE),
    (UsageError, USAGE),
    (FileNotFoundError, USAGE),
    (FinetunerError, REFUSED),
    (TimeoutError, REFUSED),
    (ValueError, USAGE),
    (OSError, REFUSED),
]


def exit_code(exc: BaseException) -> int | None:
    """The exit code of a known error, None for an unexpected one."""
    return next((code for kind, code in ERRORS if isinstance(exc, kind)), None)


def one_line(exc: BaseException) -> str:
    """The error's message on one line: a multi-line message (every bad row ...) joined with '; '."""
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    parts = [part.strip() for part in str(exc).splitlines() if part.strip()] or [type(exc).__name__]
    text = parts[0]
    for part in parts[1:]:
        text += (" " if text.endswith(":") else "; ") + part
    return text


@contextlib.contextmanager
def _quiet_jina() -> Iterator[None]:
    """jina's client logs connection errors itself; here they become the one error line."""
    settings = {"JINA_LOG_CONFIG": "QUIET", "JINA_LOG_LEVEL": "CRITICAL"}
    added = [name for name in settings if name not in os.environ]
    os.environ.update({name: settings[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else USAGE
    try:
        with _quiet_jina():
            return args.handler(args)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("FINETUNER_DEBUG"):
            raise
        code = exit_code(exc)
        message = one_line(exc) if code is not None else f"unexpected {type(exc).__name__}: {one_line(exc)}"
        print(f"error: {message}", file=sys.stderr)
        return REFUSED if code is None else code


if __name__ == "__main__":
    sys.exit(main())
