"""The fit settings the client checks without the service's code: the names they list are the core's registries,
they refuse what needs no model code with the service's own messages, and they import no torch."""

import subprocess
import sys
import typing

import pytest

from finetuner_core.callbacks.loggers import LOGGERS
from finetuner_core.config import SERVICE_FIELDS, FitConfig, optimizer_names, parse_fit_config
from finetuner_core.evaluation.evaluate import DEFAULT_KS
from finetuner_core.evaluation.metrics import METRICS, RANK_METRICS
from finetuner_core.training import losses
from finetuner_core.training.precision import PRECISIONS
from finetuner_core.training.samplers import SAMPLERS
from finetuner_core.training.schedulers import SCHEDULERS
from finetuner_protocol import choices, metrics
from finetuner_protocol.metrics import CORRELATIONS
from finetuner_protocol.settings import ConfigError, FitSettings, parse_settings
from finetuner_protocol.shapes import SHAPES


def test_every_name_list_is_the_registry_it_names():
    assert choices.LOSS_OPTIONS == {name: tuple(spec.defaults) for name, spec in losses.LOSSES.items()}
    assert choices.MINED_LOSSES == {name for name, spec in losses.LOSSES.items() if spec.uses_miner}
    assert set(choices.LOSS_NAMES) == {name for shape in SHAPES.values() for name in shape.losses}
    assert choices.MINER_OPTIONS == {name: tuple(spec.defaults) for name, spec in losses.MINERS.items()}
    assert choices.SAMPLER_NAMES == tuple(SAMPLERS)
    assert choices.OPTIMIZER_NAMES == tuple(optimizer_names())
    assert choices.SCHEDULER_OPTIONS == {name: spec.options for name, spec in SCHEDULERS.items()}
    assert choices.LOGGER_NAMES == tuple(LOGGERS)
    assert choices.PRECISIONS == PRECISIONS == typing.get_args(FitSettings.model_fields["precision"].annotation)
    assert (metrics.METRICS, metrics.RANK_METRICS) == (tuple(METRICS), tuple(RANK_METRICS))
    assert (metrics.CORRELATIONS, metrics.DEFAULT_KS) == (CORRELATIONS, DEFAULT_KS)


def test_the_service_checks_every_setting_the_client_does_with_the_same_fields():
    assert list(FitConfig.model_fields) == list(FitSettings.model_fields) + list(SERVICE_FIELDS)
    assert FitConfig().model_dump(exclude=set(SERVICE_FIELDS)) == FitSettings().model_dump()


@pytest.mark.parametrize(
    "parameters,line",
    [
        ({"loss": "TripletLoss"}, "  loss: unknown loss 'TripletLoss'; allowed: TripletMarginLoss, InfoNCELoss"),
        ({"optimizer": "adamw"}, "; did you mean 'AdamW'?"),
        ({"scheduler": "cosin"}, "  scheduler: unknown scheduler 'cosin'; allowed: linear, cosine"),
        ({"loggers": ["tensorbord"]}, "did you mean 'tensorboard'?"),
        ({"monitor": "mrrr@10"}, "  monitor: 'mrrr@10' is no metric the evaluation reports; did you mean 'mrr@10'?"),
        ({"loss_options": {"margn": 1}}, "  loss_options: TripletMarginLoss has no option(s) margn; allowed: margin"),
        ({"loss": "CLIPLoss", "loss_options": {"scale": 1}}, "CLIPLoss has no option(s) scale; allowed: none"),
        ({"miner_options": {"typ": "hard"}}, "  miner_options: TripletMarginMiner has no option(s) typ; allowed:"),
        ({"scheduler_options": {"power": 2}}, "  scheduler_options: scheduler linear has no option(s) power"),
        ({"loss": "InfoNCELoss", "miner_options": {"margin": 0.2}}, "  miner_options: given, but the loss"),
        ({"monitor": "mrr@5"}, "  monitor: 'mrr@5' needs its cut-off in eval_ks ([1, 10, 20])"),
        ({"device": "cpu", "precision": "fp16"}, "  precision: 'fp16' needs CUDA"),
        ({"epochs": 0}, "  epochs: Input should be greater than or equal to 1"),
        ({"distributed": {"backend": "nccl"}, "device": "cpu"}, "  distributed: backend 'nccl' needs CUDA"),
    ],
)
def test_the_client_refuses_with_the_services_own_line(parameters, line):
    refusals = []
    for parse in (parse_settings, parse_fit_config):
        with pytest.raises(ConfigError) as info:
            parse(parameters)
        refusals.append(str(info.value))
    assert refusals[0] == refusals[1]
    header, only = refusals[0].splitlines()
    assert header == "invalid fit configuration:" and line in only


def test_what_needs_the_services_code_is_left_to_it():
    parameters = {"loss_options": {"margin": "abc"}, "optimizer_options": {"momentum": 0.9}}
    assert parse_settings(parameters).loss_options == {"margin": "abc"}
    with pytest.raises(ConfigError, match="loss_options: TripletMarginLoss option margin must be a finite number"):
        parse_fit_config(parameters)


def test_the_settings_read_defaults_without_the_service():
    settings = parse_settings({"model": "lit-minilm-efficientnet-lite0"})
    assert settings.loss_name == "CLIPLoss" and not settings.uses_miner and settings.monitor_mode == "min"
    assert parse_settings({}).uses_miner and parse_settings({}).loss_for("scored") == "CoSENTLoss"


def test_the_settings_import_no_model_code():
    code = "import sys, finetuner_protocol.settings; print(sorted({'torch', 'finetuner_core'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
