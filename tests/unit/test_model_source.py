"""Where requests enter, models and weights come from registered names or the operator's roots only; a fit's
distributed settings never name other machines (the operator's do)."""

import os

import pytest

from finetuner_core.training.distributed_options import (
    DistributedOptions,
    check_processes,
    for_request,
    operator_settings,
)
from finetuner_protocol.backbones import ModelSourceError, check_model_source, model_roots


def test_registered_names_pass_and_paths_need_a_root(tmp_path):
    for name in ("all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2", "timm/resnet50", "openclip/RN50"):
        check_model_source(name, None, [])
    with pytest.raises(ModelSourceError, match=r"^model '/etc/passwd' names a path on the server outside"):
        check_model_source("/etc/passwd", None, [])
    for name in ("BAAI/bge-small-en-v1.5", "bert-base-en", "resnet50::IMAGENET1K_V2", "hf-hub:laion/x"):
        check_model_source(name, None, [])  # not paths: the resolver places them
    root = tmp_path / "models"
    (root / "mine").mkdir(parents=True)
    (root / "weights.pt").write_bytes(b"")
    check_model_source(str(root / "mine"), str(root / "weights.pt"), [root])
    for escape in (str(root / ".." / "other"), str(tmp_path), "~", "relative/../../x", ""):
        with pytest.raises(ModelSourceError, match=f"model roots \\({root}\\)"):
            check_model_source(escape, None, [root])
    with pytest.raises(ModelSourceError, match="model_options.weights '/etc/passwd'"):
        check_model_source("resnet50", "/etc/passwd", [root])


def test_a_link_out_of_a_root_is_refused(tmp_path):
    root = tmp_path / "models"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ModelSourceError):
        check_model_source(str(root / "link"), None, [root])


def test_roots_come_from_the_setting_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FINETUNER_MODEL_ROOTS", os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")]))
    assert model_roots([str(tmp_path / "c")]) == [tmp_path / "c", tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv("FINETUNER_MODEL_ROOTS")
    assert model_roots(None) == []


def test_the_rendezvous_is_the_operators(monkeypatch):
    operator = {"nnodes": 2, "master_addr": "10.0.0.1", "master_port": 29500}
    fit = DistributedOptions(num_processes=2, timeout_minutes=5)
    merged = for_request(fit, operator_settings(operator))
    assert (merged.nnodes, merged.master_addr, merged.master_port) == (2, "10.0.0.1", 29500)
    assert (merged.num_processes, merged.timeout_minutes) == (2, 5)
    assert for_request(fit, {}) == fit
    with pytest.raises(ValueError, match="^distributed.master_addr: settings that name other machines"):
        for_request(DistributedOptions(master_addr="10.9.9.9"), operator)
    with pytest.raises(ValueError, match="take nnodes"):
        operator_settings({"num_processes": 4})
    monkeypatch.setenv("FINETUNER_DISTRIBUTED", '{"nnodes": 2, "master_addr": "10.0.0.1", "master_port": 1}')
    assert operator_settings(None)["master_port"] == 1
    monkeypatch.setenv("FINETUNER_DISTRIBUTED", "{not json")
    with pytest.raises(ValueError, match="FINETUNER_DISTRIBUTED is not a JSON object"):
        operator_settings(None)


def test_processes_are_bounded_by_the_machine():
    check_processes(DistributedOptions(num_processes=1), "cpu")
    with pytest.raises(ValueError, match="exceeds this trainer's .* CPU cores"):
        check_processes(DistributedOptions(num_processes=(os.cpu_count() or 1) + 1), "cpu")
    with pytest.raises(ValueError, match="less than or equal to 64"):
        DistributedOptions(num_processes=100000)
