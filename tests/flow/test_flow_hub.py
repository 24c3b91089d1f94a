"""The shared Flow may download models, from the stand-in Hugging Face Hub on 127.0.0.1 serving the packaged MiniLM
under a new id (conftest's ``hub``): a fit names the model only by that id, downloads it, and improves Banking77 as
the default model does; a fit on that run's id continues from it."""

import pytest

import finetuner
from conftest import HUB_MODEL, banking77_slice
from finetuner_protocol.logs import Download, LogRecord

SETTINGS = {"batch_size": 16, "max_steps": 4, "learning_rate": 5e-5, "eval_ks": [1, 5], "log_every": 1}
METRIC = "map@5"  # far from its ceiling on twelve Banking77 classes


@pytest.fixture(scope="module")
def banking(data_dir):
    train = banking77_slice(data_dir, "train", classes=12, per_class=8)
    evaluation = banking77_slice(data_dir, "test", classes=12, per_class=5)
    return train, evaluation


def finished(run) -> list[LogRecord]:
    """The run's log records, followed until it ends; it must have finished."""
    records = list(run.stream_records(interval_s=0.2))
    assert run.status() == "FINISHED", run.info().get("error")
    return records


@pytest.mark.slow
def test_a_model_known_only_by_a_new_hub_id_is_downloaded_and_fine_tuned(flow, hub, banking):
    train, evaluation = banking
    default = finetuner.fit(train_data=train, eval_data=evaluation, **SETTINGS)
    downloaded = finetuner.fit(model=HUB_MODEL, train_data=train, eval_data=evaluation, **SETTINGS)
    finished(default)
    records = finished(downloaded)
    downloads = [record for record in records if isinstance(record, Download)]
    assert downloads and downloads[-1].complete and downloads[-1].model == HUB_MODEL, records
    assert hub.gets(HUB_MODEL, "model.safetensors") == 1

    gains = {}
    for name, run in (("default", default), ("downloaded", downloaded)):
        metrics = run.metrics()
        gains[name] = metrics["after"][METRIC] - metrics["before"][METRIC]
    assert gains["default"] > 0 and gains["downloaded"] > 0, gains
    assert abs(gains["downloaded"] - gains["default"]) <= gains["default"] / 2, gains  # the same weights

    source = downloaded.info()["config"]["model_source"]
    assert source["id"] == HUB_MODEL and source["kind"] == "hub" and len(source["revision"]) == 40

    continued = finetuner.fit(model=downloaded.id, train_data=train, eval_data=evaluation, **SETTINGS)
    finished(continued)
    before, after = continued.metrics()["before"], downloaded.metrics()["after"]
    assert before[METRIC] == pytest.approx(after[METRIC], abs=1e-6), "it starts where the downloaded run ended"
    assert continued.info()["config"]["model_source"]["base"]["id"] == HUB_MODEL
