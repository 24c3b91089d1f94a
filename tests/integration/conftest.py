import pytest

from conftest import user_token


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace of this test module's own."""
    return tmp_path_factory.mktemp("workspace")


@pytest.fixture(scope="module")
def token(workspace):
    """alice's token in the module's workspace."""
    return user_token(workspace, "alice")
