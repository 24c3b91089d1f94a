"""Administration of a workspace: users and their tokens (run on the machine that holds the workspace).

    python -m finetuner_core.admin --workspace ./workspace create-user alice [--admin]
    python -m finetuner_core.admin --workspace ./workspace rotate-token alice
    python -m finetuner_core.admin --workspace ./workspace delete-user alice
    python -m finetuner_core.admin --workspace ./workspace list-users

A token is printed once, when it is issued; the workspace keeps only its SHA-256.
"""

from __future__ import annotations

import argparse
import sys

from finetuner_core.workspace import Workspace, workspace_root


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
    args = parser.parse_args(argv)
    users = Workspace(workspace_root(args.workspace)).users
    try:
        if args.command == "create-user":
            print(users.create(args.name, admin=args.admin))
        elif args.command == "rotate-token":
            print(users.rotate(args.name))
        elif args.command == "delete-user":
            users.delete(args.name)
        else:
            for user in users.list():
                print(f"{user.name}{' (admin)' if user.admin else ''}")
    except (ValueError, LookupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
