import hashlib
import sqlite3

import pytest

from finetuner_core.admin import main as admin
from finetuner_core.config import FitConfig
from finetuner_core.runs import RunNotFoundError, RunStore
from finetuner_core.storage.datasets import DatasetNotFoundError, DatasetStore
from finetuner_core.storage.users import USER_ID, AuthError, UserStore
from finetuner_core.workspace import Workspace
from finetuner_protocol.data import LabeledItem

TRAIN = [LabeledItem("a1", "a"), LabeledItem("b1", "b")]


def test_a_token_authenticates_its_user_only_and_is_stored_as_a_digest(tmp_path):
    users = UserStore(tmp_path / "users.db")
    alice, bob = users.create("alice"), users.create("bob", admin=True)
    assert alice != bob and alice.startswith("ft_") and len(alice) > 40
    found = users.authenticate(alice), users.authenticate(bob)
    assert [(u.name, u.admin) for u in found] == [("alice", False), ("bob", True)] and found[0].id != found[1].id
    assert all(USER_ID.match(u.id) for u in found) and found == tuple(users.list())
    assert alice.encode() not in (tmp_path / "users.db").read_bytes()
    for token in (None, "", alice + "x", 42):
        with pytest.raises(AuthError):
            users.authenticate(token)


def test_rotating_a_token_revokes_the_old_one_and_deleting_a_user_revokes_all(tmp_path):
    users = UserStore(tmp_path / "users.db")
    old = users.create("alice")
    new = users.rotate("alice")
    assert users.authenticate(new).name == "alice"
    with pytest.raises(AuthError):
        users.authenticate(old)
    users.delete("alice")
    with pytest.raises(AuthError):
        users.authenticate(new)
    with pytest.raises(LookupError):
        users.rotate("alice")


@pytest.mark.parametrize("name", ["", "../x", "a b", "x" * 65, "ünï"])
def test_user_names_are_checked(tmp_path, name):
    with pytest.raises(ValueError, match="user name"):
        UserStore(tmp_path / "users.db").create(name)


def test_the_admin_command_issues_tokens_that_authenticate(tmp_path, capsys):
    assert admin(["--workspace", str(tmp_path), "create-user", "carol"]) == 0
    token = capsys.readouterr().out.strip()
    assert UserStore(tmp_path / "users.db").authenticate(token).name == "carol"
    assert admin(["--workspace", str(tmp_path), "create-user", "carol"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert admin(["--workspace", str(tmp_path), "list-users"]) == 0
    assert capsys.readouterr().out.split() == ["carol"]


def test_an_operator_token_from_a_secret_makes_or_updates_a_user(tmp_path):
    users = UserStore(tmp_path / "users.db")
    secret = "s" * 40
    users.ensure("admin", secret, admin=True)
    users.ensure("admin", secret, admin=True)
    assert users.list() == [users.authenticate(secret)] and users.authenticate(secret).admin
    with pytest.raises(ValueError, match="at least 32 characters"):
        users.ensure("admin", "short")


def own_everything(home, owner: str) -> tuple[str, str]:
    """A run, an experiment and a dataset of ``owner``: (run id, dataset id)."""
    run_id = home.runs.create(FitConfig(), TRAIN, [], owner=owner, experiment="mine")
    dataset = home.datasets.begin(owner, "train.csv", hashlib.sha256(owner.encode()).hexdigest(), 1)
    return run_id, dataset["id"]


def sees_nothing(home: Workspace, owner: str) -> bool:
    return not (home.runs.list(owner) or home.runs.list_experiments(owner) or home.datasets.list(owner))


def test_a_new_user_of_a_deleted_users_name_sees_nothing_of_the_old_ones(tmp_path):
    home = Workspace(tmp_path)
    old = home.users.authenticate(home.users.create("alice"))
    run_id, dataset_id = own_everything(home, old.id)
    home.users.delete("alice")
    new = home.users.authenticate(home.users.create("alice"))
    assert new.name == old.name and new.id != old.id
    for opened in (home, Workspace(tmp_path)):  # also when the workspace is opened again
        assert sees_nothing(opened, new.id)
        with pytest.raises(RunNotFoundError):
            opened.runs.require(run_id, new.id)
        with pytest.raises(DatasetNotFoundError):
            opened.datasets.describe(dataset_id, new.id)
    assert [run["run_id"] for run in home.runs.list(None)] == [run_id], "the old user's run is kept (for an admin)"


def test_a_workspace_whose_things_belong_to_names_is_converted_once_when_opened(tmp_path):
    token = "t" * 40
    with sqlite3.connect(tmp_path / "users.db") as connection:  # users.db as written before users had ids
        connection.execute(
            "CREATE TABLE users (name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE, "
            "admin INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL)"
        )
        connection.execute("INSERT INTO users VALUES ('alice', ?, 0, 0)", (hashlib.sha256(token.encode()).hexdigest(),))
    connection.close()
    alice_run, alice_dataset = own_everything(StoresAlone(tmp_path), "alice")
    gone_run, _ = own_everything(StoresAlone(tmp_path), "gone")  # a user deleted before the conversion
    home = Workspace(tmp_path)
    alice = home.users.authenticate(token)
    assert USER_ID.match(alice.id)
    assert [run["run_id"] for run in home.runs.list(alice.id)] == [alice_run]
    assert [d["id"] for d in home.datasets.list(alice.id)] == [alice_dataset]
    assert [e["name"] for e in home.runs.list_experiments(alice.id)] == ["mine"]
    gone = home.users.authenticate(home.users.create("gone"))
    assert sees_nothing(Workspace(tmp_path), gone.id), "a name is converted once: a later user does not get it"
    assert home.runs.status(gone_run)["status"] == "CREATED"


class StoresAlone:
    """The run and dataset stores of a workspace, opened without the workspace (no conversion)."""

    def __init__(self, root):
        self.runs = RunStore(root / "runs")
        self.datasets = DatasetStore(root / "datasets")
