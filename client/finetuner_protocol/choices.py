"""The names a fit setting chooses from, with the options each takes: losses, miners, samplers, optimizers,
schedules, experiment loggers and precisions.

The service's core holds what each name builds (``finetuner_core.training.losses.LOSSES`` / ``MINERS``,
``training.samplers.SAMPLERS``, ``torch.optim``, ``training.schedulers.SCHEDULERS``, ``callbacks.loggers.LOGGERS``);
these are their names, so that a client without torch refuses a misspelt one before it sends anything. A test keeps
each list equal to the registry it names, in the registry's order.
"""

from __future__ import annotations

LOSS_OPTIONS: dict[str, tuple[str, ...]] = {
    "TripletMarginLoss": ("margin", "triplets_per_anchor"),
    "InfoNCELoss": ("temperature",),
    "ArcFaceLoss": ("margin", "scale"),
    "CosFaceLoss": ("margin", "scale"),
    "CLIPLoss": (),
    "SupConLoss": ("temperature",),
    "SiameseLoss": ("pos_margin", "neg_margin"),
    "MultipleNegativesRankingLoss": ("scale", "symmetric"),
    "CachedMultipleNegativesRankingLoss": ("scale", "symmetric", "mini_batch_size"),
    "CoSENTLoss": ("scale",),
    "CosineSimilarityLoss": ("score_range",),
    "MarginMSELoss": ("score_range",),
}
"""Every loss by name, with the options it takes (the shape each trains on, and the default loss of each
shape: ``finetuner_protocol.shapes``)."""

LOSS_NAMES = tuple(LOSS_OPTIONS)
MINED_LOSSES = frozenset({"TripletMarginLoss"})
"""The losses that train on what a miner picks (the others take no miner)."""

MINER_OPTIONS: dict[str, tuple[str, ...]] = {
    "TripletMarginMiner": ("margin", "type_of_triplets"),
    "BatchHardMiner": (),
}
MINER_NAMES = tuple(MINER_OPTIONS)

SAMPLER_NAMES = ("class", "random", "no-duplicates")

OPTIMIZER_NAMES = (
    "ASGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "LBFGS",
    "Muon",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "SGD",
    "SparseAdam",
)
"""Every optimizer class of ``torch.optim`` (of the torch the service runs), sorted."""

SCHEDULER_OPTIONS: dict[str, tuple[str, ...]] = {
    "linear": (),
    "cosine": (),
    "cosine_with_restarts": ("num_cycles",),
    "polynomial": ("power", "end_factor"),
    "constant": (),
    "constant_with_warmup": (),
}
SCHEDULER_NAMES = tuple(SCHEDULER_OPTIONS)

LOGGER_NAMES = ("tensorboard", "mlflow", "wandb")

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
