"""Users and their tokens. A token is shown once, when it is issued; only its SHA-256 is stored.

Every request to the Flow carries a token (``parameters["token"]``); :meth:`UserStore.authenticate` turns it into
the :class:`User` whose datasets, runs and artifacts the request may see. Tokens are issued by an administrator
with ``python -m finetuner_core.admin`` (or ``finetuner admin``), never over the Flow.

What a user owns is stored under its :attr:`User.id`, generated when the user is created and never reused: a
user deleted and then created again under the same name is a new user and sees nothing of the old one's.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from finetuner_core.storage.database import Database
from finetuner_protocol.ids import USER_ID as USER_ID

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
TOKEN_PREFIX = "ft_"
MIN_TOKEN_LENGTH = 32

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    id TEXT
);
"""


class AuthError(PermissionError):
    """A request without a valid token."""


@dataclass(frozen=True)
class User:
    id: str
    name: str
    admin: bool = False


class UserStore:
    def __init__(self, path: str | Path):
        self.db = Database(path, SCHEMA)
        with self.db.transaction() as connection:  # a users.db from before users had ids: each gets one
            if "id" not in {row["name"] for row in connection.execute("PRAGMA table_info(users)")}:
                connection.execute("ALTER TABLE users ADD COLUMN id TEXT")
            for row in connection.execute("SELECT name FROM users WHERE id IS NULL").fetchall():
                connection.execute("UPDATE users SET id = ? WHERE name = ?", (_new_id(), row["name"]))
            connection.execute("CREATE UNIQUE INDEX IF NOT EXISTS users_by_id ON users (id)")

    def create(self, name: str, admin: bool = False) -> str:
        """Add user ``name`` and return its token (shown once; not recoverable)."""
        if not USER_NAME.match(name or ""):
            raise ValueError(f"user name {name!r}: letters, digits and _.@- only, 1 to 64 characters")
        if self.db.row("SELECT name FROM users WHERE name = ?", (name,)):
            raise ValueError(f"user {name!r} already exists (rotate its token with `rotate-token`)")
        token = _new_token()
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO users (name, token_sha256, admin, created_at, id) VALUES (?, ?, ?, ?, ?)",
                (name, _digest(token), int(admin), time.time(), _new_id()),
            )
        return token

    def ensure(self, name: str, token: str, admin: bool = False) -> None:
        """Make ``token`` (chosen by an operator, e.g. from a secret) a token of user ``name``, creating the user
        if needed. For a deployment that gives no shell on the workspace to run the admin command."""
        if not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(f"a token set by an operator needs at least {MIN_TOKEN_LENGTH} characters")
        if not USER_NAME.match(name or ""):
            raise ValueError(f"user name {name!r}: letters, digits and _.@- only, 1 to 64 characters")
        with self.db.transaction() as connection:
            connection.execute(
                "INSERT INTO users (name, token_sha256, admin, created_at, id) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256, admin = excluded.admin",
                (name, _digest(token), int(admin), time.time(), _new_id()),
            )

    def rotate(self, name: str) -> str:
        """A new token for ``name``; the old one stops working."""
        token = _new_token()
        with self.db.transaction() as connection:
            changed = connection.execute(
                "UPDATE users SET token_sha256 = ? WHERE name = ?", (_digest(token), name)
            ).rowcount
        if not changed:
            raise LookupError(f"no user {name!r}")
        return token

    def delete(self, name: str) -> None:
        """Remove user ``name``: its tokens stop working; what it owned stays, owned by its id, which no later
        user gets (a new user of the same name sees none of it)."""
        with self.db.transaction() as connection:
            if not connection.execute("DELETE FROM users WHERE name = ?", (name,)).rowcount:
                raise LookupError(f"no user {name!r}")

    def list(self) -> list[User]:
        return [_user(row) for row in self.db.rows("SELECT * FROM users ORDER BY name")]

    def ids_by_name(self) -> dict[str, str]:
        """Every user's id by its name."""
        return {row["name"]: row["id"] for row in self.db.rows("SELECT name, id FROM users")}

    def authenticate(self, token: object) -> User:
        """The user holding ``token``; :class:`AuthError` when it is missing or unknown."""
        if not isinstance(token, str) or not token:
            raise AuthError("this request has no token: log in with finetuner.login(token=...)")
        digest = _digest(token)
        for row in self.db.rows("SELECT * FROM users WHERE token_sha256 = ?", (digest,)):
            if hmac.compare_digest(row["token_sha256"], digest):
                return _user(row)
        raise AuthError("invalid token: ask the administrator for a valid one")


def _user(row: dict) -> User:
    return User(row["id"], row["name"], bool(row["admin"]))


def _new_id() -> str:
    return "u:" + secrets.token_hex(16)


def _new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
