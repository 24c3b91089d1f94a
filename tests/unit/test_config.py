import pytest

from finetuner_core.config import ConfigError, FitConfig, optimizer_names, parse_fit_config


def test_defaults_are_valid_and_documented():
    config = parse_fit_config({})
    assert config.loss_name == "TripletMarginLoss" and config.miner == "TripletMarginMiner"
    assert parse_fit_config({"model": "lit-minilm-efficientnet-lite0"}).loss_name == "CLIPLoss"
    assert all(field.description for field in FitConfig.model_fields.values())


def test_zero_and_false_values_are_kept():
    config = parse_fit_config({"warmup_ratio": 0, "seed": 0, "csv_options": {"header": False}})
    assert config.warmup_ratio == 0 and config.seed == 0 and config.csv_options.header is False


@pytest.mark.parametrize(
    "parameters,message",
    [
        ({"loss": "Nope"}, "loss: unknown loss 'Nope'; allowed: TripletMarginLoss"),
        ({"miner": "Nope"}, "unknown miner 'Nope'"),
        ({"optimizer": "Nope"}, "unknown optimizer 'Nope'; allowed: "),
        ({"sampler": "Nope"}, "unknown sampler 'Nope'; allowed: class, random"),
        ({"learning_rate": 0}, "learning_rate: Input should be greater than 0"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
        ({"batch_size": 30}, "batch_size (30) must be a multiple of num_items_per_class (4)"),
        ({"loss_options": {"margn": 1}}, "TripletMarginLoss has no option(s) margn; allowed: margin"),
        ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
        ({"eval_ks": [0, 5]}, "eval_ks: every k must be between 1 and 10000"),
        ({"csv_options": {"encoding": "nope"}}, "unknown encoding 'nope'"),
    ],
)
def test_bad_fields_are_named(parameters, message):
    with pytest.raises(ConfigError) as info:
        parse_fit_config(parameters)
    assert message in str(info.value)


def test_optimizers_are_listed_from_torch():
    assert {"Adam", "AdamW", "SGD"} <= set(optimizer_names())


def test_miner_is_used_only_by_losses_that_take_one():
    assert parse_fit_config({}).uses_miner
    assert not parse_fit_config({"loss": "InfoNCELoss"}).uses_miner
    assert not parse_fit_config({"miner": None}).uses_miner
