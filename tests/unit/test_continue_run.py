"""A run continued from an earlier one (``model=<run id>``): it starts from that run's weights, only the same
user's finished runs are accepted, and every run records where its model came from, in its config and its card."""

import pytest

from conftest import banking77_slice
from finetuner_core.config import ConfigError
from finetuner_core.fit_request import fit_config
from finetuner_core.models.licence import model_licence
from finetuner_core.runs import RunStatus, RunStore
from finetuner_core.runs.context import RunContext
from finetuner_core.runs.continuation import RUN, artifact_folder, load_continued
from finetuner_core.runs.execute import execute_run
from finetuner_protocol.data import LabeledItem

ALICE, BOB = "u:" + "a" * 32, "u:" + "b" * 32
SETTINGS = {"batch_size": 16, "max_steps": 2, "eval_ks": [1, 5], "device": "cpu"}


@pytest.fixture(scope="module")
def data(data_dir):
    train = [LabeledItem(t, lab) for t, lab in banking77_slice(data_dir, "train", classes=4, per_class=8)]
    evaluation = [LabeledItem(t, lab) for t, lab in banking77_slice(data_dir, "test", classes=4, per_class=5)]
    return train, evaluation


@pytest.fixture(scope="module")
def first(tmp_path_factory, data) -> tuple[RunStore, str]:
    """A finished run of Alice's on the packaged MiniLM."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    run_id = store.create(fit_config(SETTINGS, []), *data, owner=ALICE)
    execute_run(RunContext(store, run_id))
    assert store.status(run_id)["status"] == RunStatus.FINISHED
    return store, run_id


def test_a_continued_run_starts_from_the_earlier_runs_weights(first, data):
    store, first_id = first
    config = fit_config({**SETTINGS, "model": first_id}, [], store, ALICE)
    assert config.model_source["kind"] == RUN and config.model_modality == "text"
    assert config.model_source["base"]["id"] == "all-MiniLM-L6-v2"
    run_id = store.create(config, *data, owner=ALICE)
    execute_run(RunContext(store, run_id))
    assert store.status(run_id)["status"] == RunStatus.FINISHED, store.status(run_id)
    before, after = store.metrics(run_id)["before"], store.metrics(first_id)["after"]
    assert before == pytest.approx(after, abs=1e-6), "it starts where the first run ended"
    assert before != store.metrics(first_id)["before"]
    card = (store.artifact_dir(run_id) / "README.md").read_text("utf-8")
    assert f"continued from run | `{first_id}`" in card
    assert "base_model: sentence-transformers/all-MiniLM-L6-v2" in card


def test_another_users_run_is_refused_like_a_run_that_does_not_exist(first):
    store, first_id = first
    with pytest.raises(ConfigError) as theirs:
        fit_config({"model": first_id}, [], store, BOB)
    unknown = "0123456789abcdef"
    with pytest.raises(ConfigError) as missing:
        fit_config({"model": unknown}, [], store, BOB)
    assert str(theirs.value) == str(missing.value).replace(unknown, first_id) == f"model: run {first_id!r} not found"
    assert fit_config({"model": first_id}, [], store, None).model_source["id"] == first_id, "an admin may use it"


def test_a_run_that_has_not_finished_is_refused_with_its_status(first, data):
    store, _ = first
    waiting = store.create(fit_config(SETTINGS, []), *data, owner=ALICE)
    with pytest.raises(ConfigError, match=rf"^model: run {waiting} is CREATED; only a FINISHED run's model"):
        fit_config({"model": waiting}, [], store, ALICE)


def test_the_runs_options_are_kept_and_options_that_cannot_apply_are_refused(first):
    store, first_id = first
    with pytest.raises(ConfigError, match=r"^model_options.pooling: run \w+'s model was built with pooling=None"):
        fit_config({"model": first_id, "model_options": {"pooling": "cls"}}, [], store, ALICE)
    config = fit_config({**SETTINGS, "model": first_id, "model_options": {"output_dim": 32}}, [], store, ALICE)
    assert config.model_options.output_dim == 32 and config.model_options.normalize
    model = load_continued(artifact_folder(store.path(first_id), first_id), config, "cpu")
    assert model.dim == 32 and model.encode(["a new projection"]).shape == (1, 32)


def test_a_run_records_its_models_source_revision_and_licence_in_its_config_and_card(first):
    store, first_id = first
    source = store.config(first_id).model_source
    assert source["kind"] == "packaged" and source["id"] == "all-MiniLM-L6-v2"
    assert source["revision"].startswith("sha256:") and source["license"] == "apache-2.0"
    card = (store.artifact_dir(first_id) / "README.md").read_text("utf-8")
    assert f"| revision | `{source['revision']}` |" in card and "`apache-2.0`" in card


def test_the_licence_is_read_from_a_model_cards_front_matter(tmp_path):
    (tmp_path / "README.md").write_text("---\nlanguage: en\nlicense: mit\ntags:\n- x\n---\n# A model\n", "utf-8")
    assert model_licence(tmp_path) == "mit"
    (tmp_path / "README.md").write_text("# A model without front matter\nlicense: not this\n", "utf-8")
    assert model_licence(tmp_path) is None
    (tmp_path / "open_clip_config.json").write_text('{"license": "cc-by-4.0", "model_cfg": {}}', "utf-8")
    assert model_licence(tmp_path) == "cc-by-4.0"


def test_finetuners_model_artifact_names_the_run_to_continue_and_no_other_model():
    import finetuner

    data = [("a text", "a"), ("another", "a")]
    with pytest.raises(ConfigError, match=r"model_artifact: continues run 0123456789abcdef, but model"):
        finetuner.fit(model="bert-base-en", model_artifact="0123456789abcdef", train_data=data)
    with pytest.raises(ConfigError, match=r"model_artifact: an earlier run's id \(run.artifact_id\)"):
        finetuner.fit(model_artifact="not-a-run", train_data=data)
