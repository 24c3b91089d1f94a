"""The two trainers of the quality benchmarks: the project's core (as a run does it, without the Flow) and
sentence-transformers' SentenceTransformerTrainer at the same budget; both evaluated by the project's code."""

from __future__ import annotations

from finetuner_core.config import FitConfig
from finetuner_core.evaluation.evaluate import evaluate_labeled
from finetuner_core.evaluation.pairs import evaluate_pairs
from finetuner_core.models import ModelOptions, build_model
from finetuner_core.training.loop import train
from finetuner_core.training.seeding import seed_everything
from finetuner_protocol.data.fit_settings import settle_fit
from finetuner_protocol.data.records import LabeledItem

TORCH_ADAMW_WEIGHT_DECAY = 0.01  # the default optimizer's (torch.optim.AdamW) weight decay


def evaluate(model, records: list, ks: tuple[int, ...]) -> dict[str, float]:
    """The run's evaluation: labeled items by label, pairs by retrieval, scored pairs by correlation."""
    metrics = (evaluate_labeled if isinstance(records[0], LabeledItem) else evaluate_pairs)(model, records, ks)
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}


def ours(model_name: str, train_records: list, eval_records: list, settings: dict, ks: tuple[int, ...]) -> dict:
    """Build, evaluate, train with the default recipe plus ``settings``, evaluate again (as runs.execute)."""
    config = FitConfig(model=model_name, eval_ks=list(ks), **settings)
    settle_fit(config, {"train": train_records, "eval": eval_records})  # the data shape's default loss
    seed_everything(config.seed)
    model = build_model(config.model, config.model_options, config.device)
    before = evaluate(model, eval_records, ks)
    state = train(model, train_records, config)
    after = evaluate(model, eval_records, ks)
    return {
        "before": before,
        "after": after,
        "loss": config.loss_name,
        "steps": state.step,
        "batch_size": state.batch_size,
        "train_s": round(state.elapsed_s, 1),
        "final_loss": state.loss,
        "notes": list(state.notes),
        "config": config.model_dump(mode="json"),
    }


def sentence_transformers(name: str, train_records: list, eval_records: list, config: dict, ks, folder: str) -> dict:
    """A fresh MiniLM trained by SentenceTransformerTrainer with our run's steps, batch size, learning rate,
    warm-up ratio, linear schedule, weight decay, no gradient clipping, seed, fp32; evaluated by our code."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import BatchAllTripletLoss, CoSENTLoss
    from sentence_transformers.sentence_transformer.training_args import SentenceTransformerTrainingArguments

    from finetuner_core.models.families.text import TextEmbeddingModel
    from finetuner_protocol.backbones import minilm_path

    st = SentenceTransformer(str(minilm_path()), device="cpu", local_files_only=True)
    if name == "banking77":
        ids = {label: i for i, label in enumerate(sorted({r.label for r in train_records}))}
        data = {"text": [r.content for r in train_records], "label": [ids[r.label] for r in train_records]}
        loss, sampler = BatchAllTripletLoss(st), BatchSamplers.GROUP_BY_LABEL
    else:
        data = {
            "sentence1": [r.text for r in train_records],
            "sentence2": [r.text_pair for r in train_records],
            "score": [r.score for r in train_records],
        }
        loss, sampler = CoSENTLoss(st), BatchSamplers.BATCH_SAMPLER
    arguments = SentenceTransformerTrainingArguments(
        output_dir=folder,
        max_steps=config["max_steps"],
        per_device_train_batch_size=config["batch_size"],
        learning_rate=config["learning_rate"],
        warmup_steps=config["warmup_ratio"],  # below 1: a share of the steps
        lr_scheduler_type="linear",
        weight_decay=TORCH_ADAMW_WEIGHT_DECAY,
        max_grad_norm=0.0,
        batch_sampler=sampler,
        seed=config["seed"],
        use_cpu=True,
        bf16=False,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        dataloader_drop_last=True,
    )
    trainer = SentenceTransformerTrainer(model=st, args=arguments, train_dataset=Dataset.from_dict(data), loss=loss)
    output = trainer.train()
    model = TextEmbeddingModel(trainer.model, "sentence-transformers trained", ModelOptions()).eval()
    return {
        "after": evaluate(model, eval_records, ks),
        "steps": int(output.global_step),
        "train_s": round(float(output.metrics.get("train_runtime", 0.0)), 1),
        "final_loss": float(output.training_loss),
    }
