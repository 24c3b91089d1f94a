import pytest

from finetuner_core.admin import main as admin
from finetuner_core.storage.users import AuthError, User, UserStore


def test_a_token_authenticates_its_user_only_and_is_stored_as_a_digest(tmp_path):
    users = UserStore(tmp_path / "users.db")
    alice, bob = users.create("alice"), users.create("bob", admin=True)
    assert alice != bob and alice.startswith("ft_") and len(alice) > 40
    assert users.authenticate(alice) == User("alice") and users.authenticate(bob) == User("bob", admin=True)
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
    assert users.authenticate(secret) == User("admin", admin=True) and len(users.list()) == 1
    with pytest.raises(ValueError, match="at least 32 characters"):
        users.ensure("admin", "short")
