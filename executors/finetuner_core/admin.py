"""Administration of a workspace: users and their tokens, and the model store (run on the machine that holds the
workspace).

    python -m finetuner_core.admin --workspace ./workspace create-user alice [--admin]
    python -m finetuner_core.admin --workspace ./workspace rotate-token alice
    python -m finetuner_core.admin --workspace ./workspace delete-user alice
    python -m finetuner_core.admin --workspace ./workspace list-users
    python -m finetuner_core.admin --workspace ./workspace models-pull BAAI/bge-small-en-v1.5
    python -m finetuner_core.admin --workspace ./workspace models-import ./bge.tar.gz --name acme/bge-tuned
    python -m finetuner_core.admin --workspace ./workspace models-list [-q]
    python -m finetuner_core.admin --workspace ./workspace models-delete acme/bge-tuned

A token is printed once, when it is issued; the workspace keeps only its SHA-256. A stored model is named in a fit
like any backbone (storage.models).
"""

from __future__ import annotations

import argparse
import sys

from finetuner_core.storage.models import ModelStore, StoredModel
from finetuner_core.workspace import Workspace, workspace_root

MODEL_COLUMNS = ("name", "family", "revision", "size", "origin", "created")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="finetuner-admin", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--workspace", default="", help="workspace folder (default: $FINETUNER_WORKSPACE or ./workspace)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create-user", help="add a user and print its token")
    create.add_argument("name")
    create.add_argument("--admin", action="store_true", help="the user may see every user's runs")
    commands.add_parser("rotate-token", help="issue a new token (the old one stops working)").add_argument("name")
    commands.add_parser("delete-user", help="remove a user (its runs and datasets stay)").add_argument("name")
    commands.add_parser("list-users", help="list users")
    pull = commands.add_parser("models-pull", help="copy a Hugging Face model into the store (cache, else the Hub)")
    pull.add_argument("name")
    imported = commands.add_parser("models-import", help="store a model folder or archive (.tar, .tar.gz, .zip)")
    imported.add_argument("path")
    imported.add_argument("--name", required=True, help="the name fits will use")
    listing = commands.add_parser("models-list", help="list the stored models")
    listing.add_argument("-q", "--quiet", action="store_true", help="names only")
    commands.add_parser("models-delete", help="remove a stored model").add_argument("name")
    args = parser.parse_args(argv)
    workspace = Workspace(workspace_root(args.workspace))
    try:
        if args.command.startswith("models-"):
            models_command(workspace.models, args)
        elif args.command == "create-user":
            print(workspace.users.create(args.name, admin=args.admin))
        elif args.command == "rotate-token":
            print(workspace.users.rotate(args.name))
        elif args.command == "delete-user":
            workspace.users.delete(args.name)
        else:
            for user in workspace.users.list():
                print(f"{user.name}{' (admin)' if user.admin else ''}")
    except (ValueError, LookupError, OSError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0


def models_command(store: ModelStore, args: argparse.Namespace) -> None:
    if args.command == "models-pull":
        record = store.pull(args.name)
        print(f"{record.name}: {record.revision} ({human_size(record.size)}, {record.family})")
    elif args.command == "models-import":
        record = store.import_path(args.path, args.name)
        print(f"{record.name}: {record.revision} ({human_size(record.size)}, {record.family})")
    elif args.command == "models-delete":
        print(f"deleted {store.delete(args.name).name}")
    elif args.quiet:
        for record in store.list():
            print(record.name)
    else:
        print_models(store.list())


def print_models(records: list[StoredModel]) -> None:
    """The stored models as a table: name, family, revision, size, origin, created."""
    rows = [MODEL_COLUMNS] + [
        (r.name, r.family, short_revision(r.revision), human_size(r.size), r.origin, r.created_at) for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(MODEL_COLUMNS))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def short_revision(revision: str) -> str:
    """A commit hash or ``sha256:`` digest cut to 12 characters of hex, as git shows commits."""
    kind, _, value = revision.rpartition(":")
    return f"{kind}:{value[:12]}" if kind else value[:12]


def human_size(size: float) -> str:
    for unit in ("B", "KB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


if __name__ == "__main__":
    sys.exit(main())
