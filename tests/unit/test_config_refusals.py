"""Settings that would be ignored, misread or fail later in a run are refused when given, one line per field."""

import typing

import annotated_types
import numpy as np
import pytest
import torch

import finetuner
from finetuner_core.callbacks.log import LoggingCallback
from finetuner_core.config import ConfigError, FitConfig, check_runtime, parse_fit_config
from finetuner_core.evaluation.metrics import METRICS, RANK_METRICS
from finetuner_core.models import build_model
from finetuner_core.training.loop import length, train
from finetuner_core.training.optimizers import build_optimizer
from finetuner_protocol.data import LabeledItem
from finetuner_protocol.metrics import CORRELATIONS
from finetuner_protocol.model_options import ModelOptions

MLP_OPTIONS = {"input_dim": 8, "hidden_dims": [16]}


def refusal(parameters: dict) -> tuple[str, str]:
    """The one field named by the refusal of ``parameters`` and its reason."""
    with pytest.raises(ConfigError) as info:
        parse_fit_config(parameters)
    header, *lines = str(info.value).splitlines()
    assert header == "invalid fit configuration:" and len(lines) == 1, str(info.value)
    field, _, reason = lines[0].strip().partition(": ")
    return field, reason


# --- monitor -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "monitor,guess",
    [("mrrr@10", "mrr@10"), ("precison@1", "precision@1"), ("ndgc@5", "ndcg@5"), ("mrr", "mrr@10"),
     ("spearmann", "spearman"), ("r_precison", "r_precision")],
)  # fmt: skip
def test_a_monitor_the_evaluation_does_not_report_is_refused_with_the_closest_name(monitor, guess):
    field, reason = refusal({"monitor": monitor, "eval_ks": [1, 5, 10]})
    assert field == "monitor"
    assert reason.startswith(f"{monitor!r} is no metric the evaluation reports; did you mean {guess!r}?")


def test_every_metric_the_evaluation_reports_can_be_monitored():
    names = ["loss", *CORRELATIONS, *RANK_METRICS, *(f"{name}@5" for name in METRICS)]
    for name in names:
        assert parse_fit_config({"monitor": name, "eval_ks": [5]}).monitor == name
    assert refusal({"monitor": "mrr@7", "eval_ks": [5]}) == ("monitor", "'mrr@7' needs its cut-off in eval_ks ([5])")


# --- model ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "   ", "all-MiniLM-L6-v2 ", "a\x00b"])
def test_an_empty_or_unreadable_model_name_is_refused(name):
    field, reason = refusal({"model": name})
    assert field == "model" and ("empty name" in reason or "no surrounding spaces" in reason)


def test_freezing_everything_without_a_head_is_refused():
    field, reason = refusal({"model_options": {"freeze": True}})
    assert field == "model_options.freeze" and "leaves nothing to train" in reason and "output_dim" in reason
    field, reason = refusal({"model": "lit-minilm-efficientnet-lite0", "model_options": {"freeze": True}})
    assert field == "model_options.freeze" and "its projections included" in reason
    assert parse_fit_config({"model_options": {"freeze": True, "output_dim": 64}}).model_options.freeze is True
    assert parse_fit_config({"model_options": {"freeze": ["0.auto_model.embeddings"]}})


def test_a_model_with_nothing_to_train_fails_before_the_first_step():
    model = build_model("mlp", {**MLP_OPTIONS, "freeze": True}, "cpu")
    with pytest.raises(ValueError, match="nothing to train: every parameter of the model is frozen"):
        build_optimizer(model, FitConfig(model="mlp"))


@pytest.mark.parametrize(
    "options,field",
    [({"output_dim": 10**9}, "output_dim"), ({"input_dim": 10**6}, "input_dim"),
     ({"hidden_dims": [10**7]}, "hidden_dims"), ({"lock_text_unlocked_layers": 10**6}, "lock_text_unlocked_layers")],
)  # fmt: skip
def test_model_sizes_are_bounded(options, field):
    assert refusal({"model": "mlp", "model_options": {**MLP_OPTIONS, **options}})[0] == f"model_options.{field}"


# --- optimizer -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters,field,reason",
    [
        ({"optimizer_options": {"momentum": 0.9}}, "optimizer_options", "AdamW has no option(s) momentum; allowed:"),
        ({"optimizer_options": {"betas": "abc"}}, "optimizer_options", "AdamW does not work with options"),
        ({"optimizer_options": {"weight_decay": -1}}, "optimizer_options", "Invalid weight_decay value: -1"),
        ({"optimizer_options": {"lr": 0.1}}, "optimizer_options", "lr is set by learning_rate"),
        ({"optimizer": "SGD", "optimizer_options": {"betas": [0.9, 0.99]}}, "optimizer_options", "SGD has no option"),
        ({"optimizer": "LBFGS"}, "optimizer", "LBFGS cannot train here"),
        ({"optimizer": "SparseAdam"}, "optimizer", "SparseAdam cannot train here"),
    ],
)
def test_optimizer_options_the_optimizer_does_not_take_are_refused(parameters, field, reason):
    named, given = refusal(parameters)
    assert named == field and reason in given


def test_finetuners_layer_wise_lr_decay_is_read_as_layer_lr_decay():
    config = parse_fit_config({"optimizer_options": {"layer_wise_lr_decay": 0.8, "betas": [0.9, 0.98]}})
    assert config.layer_lr_decay == 0.8 and config.optimizer_options == {"betas": [0.9, 0.98]}
    assert parse_fit_config({"layer_lr_decay": 0.8, "optimizer_options": {"layer_wise_lr_decay": 0.8}})
    field, reason = refusal({"layer_lr_decay": 0.5, "optimizer_options": {"layer_wise_lr_decay": 0.8}})
    assert field == "layer_lr_decay" and reason.endswith("set one")


# --- loss and miner ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters,field,reason",
    [
        ({"loss_options": {"margin": "abc"}}, "loss_options", "option margin must be a finite number, got 'abc'"),
        ({"loss_options": {"triplets_per_anchor": "some"}}, "loss_options", "must be 'all' or an integer >= 1"),
        ({"loss": "InfoNCELoss", "loss_options": {"temperature": 0}}, "loss_options", "gives a non-finite loss"),
        ({"loss": "CosineSimilarityLoss", "loss_options": {"score_range": [5, 0]}}, "loss_options", "low < high"),
        ({"loss": "MultipleNegativesRankingLoss", "loss_options": {"symmetric": "yes"}}, "loss_options",
         "option symmetric must be true or false"),
        ({"miner_options": {"typ_of_triplets": "hard"}}, "miner_options",
         "TripletMarginMiner has no option(s) typ_of_triplets; allowed: margin, type_of_triplets"),
        ({"miner_options": {"type_of_triplets": "hardest"}}, "miner_options",
         "type_of_triplets must be 'all' or 'hard' or 'semihard' or 'easy'"),
        ({"miner": None, "miner_options": {"margin": 0.2}}, "miner_options", "given, but miner is None"),
        ({"loss": "InfoNCELoss", "miner_options": {"margin": 0.2}}, "miner_options", "InfoNCELoss uses no miner"),
    ],
)  # fmt: skip
def test_loss_and_miner_options_of_the_wrong_name_or_type_are_refused(parameters, field, reason):
    named, given = refusal(parameters)
    assert named == field and reason in given


def test_loss_and_miner_options_of_the_right_type_are_kept():
    config = parse_fit_config({"loss_options": {"margin": 1, "triplets_per_anchor": 5}, "miner_options": {}})
    assert config.loss_options == {"margin": 1, "triplets_per_anchor": 5}
    assert parse_fit_config({"miner_options": {"type_of_triplets": "semihard", "margin": 0.2}})


def test_a_schedule_that_gives_no_finite_learning_rate_is_refused():
    field, reason = refusal({"scheduler": "polynomial", "scheduler_options": {"power": float("nan")}})
    assert field == "scheduler_options" and reason.endswith("not finite and >= 0")
    assert parse_fit_config({"scheduler": "polynomial", "scheduler_options": {"power": 2}})


# --- the trainer's machine -----------------------------------------------------------------------------------------


def test_the_trainer_refuses_a_device_or_precision_it_does_not_have():
    if torch.cuda.is_available():
        check_runtime(parse_fit_config({"device": "cuda"}))
        return
    config = parse_fit_config({"device": "cuda"})  # the client cannot know the trainer's hardware
    with pytest.raises(ConfigError) as info:
        check_runtime(config)
    assert (
        str(info.value).splitlines()[1] == "  device: 'cuda', but the trainer has no CUDA device; use 'auto' or 'cpu'"
    )
    with pytest.raises(ConfigError, match="  precision: precision 'fp16' needs a CUDA device"):
        check_runtime(parse_fit_config({"precision": "fp16"}))
    check_runtime(parse_fit_config({"device": "cpu", "precision": "fp32"}))


# --- max_steps -----------------------------------------------------------------------------------------------------


def test_max_steps_sets_the_length_as_in_the_hugging_face_trainer():
    assert length(per_epoch=6, epochs=3, max_steps=None) == (18, 3)
    assert length(per_epoch=6, epochs=1, max_steps=15) == (15, 3)  # the data repeated
    assert length(per_epoch=6, epochs=5, max_steps=2) == (2, 1)  # epochs not used
    rng = np.random.default_rng(0)
    records = [LabeledItem(rng.normal(size=8).astype(np.float32), str(i % 4)) for i in range(48)]
    config = FitConfig(
        model="mlp", model_options=MLP_OPTIONS, batch_size=8, num_items_per_class=2, max_steps=15, precision="fp32"
    )
    lines = []
    state = train(build_model("mlp", MLP_OPTIONS, "cpu"), records, config, [LoggingCallback(lines.append, 100)])
    assert state.step == 15 and state.epochs == 3 and state.epoch == 2
    assert (
        "note: max_steps=15 sets the length (epochs is not used): 3 passes over the data of 6 steps each: the "
        "data is repeated" in lines
    )
    assert "training: 3 epoch(s), 15 steps, batch size 8, fp32" in lines


# --- bounds --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "parameters",
    [{"eval_ks": [10**9]}, {"gradient_accumulation_steps": 10**9}, {"log_every": 10**9}, {"epochs": 10**6},
     {"batch_size": 2**20}, {"num_items_per_class": 2**20}, {"checkpoint_every_steps": 10**9},
     {"eval_every_steps": 10**9}, {"early_stopping_patience": 10**9}, {"max_steps": 10**9}, {"seed": 2**70},
     {"learning_rate": 1e6}, {"learning_rate": float("inf")}, {"max_grad_norm": float("nan")}],
)  # fmt: skip
def test_absurd_numbers_are_refused_naming_the_field(parameters):
    assert refusal(parameters)[0] == next(iter(parameters))


@pytest.mark.parametrize("model", [FitConfig, ModelOptions])
def test_every_numeric_setting_has_an_upper_bound(model):
    validated = {"eval_ks", "hidden_dims"}  # lists of numbers, bounded by their validators
    for name, field in model.model_fields.items():
        types = set(typing.get_args(field.annotation)) | {field.annotation}
        if name in validated or not types & {int, float} or bool in types:
            continue
        bounds = [m for m in field.metadata if isinstance(m, annotated_types.Le | annotated_types.Lt)]
        assert bounds, f"{model.__name__}.{name} has no upper bound"


def test_the_client_refuses_before_it_reads_or_sends_anything(tmp_path):
    with pytest.raises(ConfigError, match="monitor: 'mrrr@10' is no metric"):
        finetuner.fit(train_data=str(tmp_path / "missing.csv"), monitor="mrrr@10")
