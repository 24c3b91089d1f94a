"""Query-document and scored pairs: tasks, training, evaluation, settings and the client's conversion."""

import math

import numpy as np
import pytest
import torch
from docarray import BaseDoc, DocList

from finetuner.data import to_wire_docs
from finetuner_core.config import ConfigError, FitConfig, parse_fit_config
from finetuner_core.evaluation.pairs import evaluate_pairs, query_doc_set
from finetuner_core.evaluation.scored import correlations, evaluate_scored
from finetuner_core.models import build_model
from finetuner_core.training.loop import train
from finetuner_core.training.losses import CosineSimilarityLoss, MultipleNegativesRankingLoss
from finetuner_core.training.samplers import NoDuplicatesBatchSampler, RandomBatchSampler
from finetuner_core.training.tasks import QueryDocTask, ScoredPairTask, make_task
from finetuner_protocol.data import DataError
from finetuner_protocol.data.records import LabeledItem, QueryDocItem, ScoredPairItem


def stsb(data_dir, split: str, count: int, start: int = 0) -> list[ScoredPairItem]:
    """``count`` STS-B pairs (tab-separated: genre, file, year, id, score, sentence1, sentence2, ...)."""
    with open(data_dir / "stsb" / f"sts-{split}.csv", encoding="utf-8") as file:
        rows = [line.rstrip("\n").split("\t") for line in file][start : start + count]
    return [ScoredPairItem(row[5], row[6], float(row[4]), f"sts-{split} row {i + 1}") for i, row in enumerate(rows)]


QUERY_DOCS = [QueryDocItem(f"question {i % 6}", f"answer {i}") for i in range(12)]


# --- tasks ----------------------------------------------------------------------------------------------------


def test_the_task_follows_the_records_and_brings_its_sampler():
    task = make_task(QUERY_DOCS, FitConfig(batch_size=8))
    assert isinstance(task, QueryDocTask) and isinstance(task.sampler, NoDuplicatesBatchSampler)
    assert task.notes == [
        "sampler 'class' does not apply to query-document pairs: batches come from the 'no-duplicates' sampler"
    ]
    for batch in task.sampler:
        assert len({task.queries[i] for i in batch}) == len(batch) == 6, "no query twice in a batch"
    assert isinstance(make_task(QUERY_DOCS, FitConfig(batch_size=8, sampler="random")).sampler, RandomBatchSampler)
    scored = make_task([ScoredPairItem("a", "b", 1.0), ScoredPairItem("c", "d", 2.0)], FitConfig(sampler="random"))
    assert isinstance(scored, ScoredPairTask) and isinstance(scored.sampler, RandomBatchSampler) and not scored.notes


def test_a_loss_for_other_data_is_refused_naming_the_losses_that_fit():
    with pytest.raises(ValueError) as info:
        make_task(QUERY_DOCS, FitConfig(loss="CoSENTLoss"))
    assert str(info.value) == (
        "CoSENTLoss trains on scored pairs, but this data holds query-document pairs; "
        "losses for query-document pairs: MultipleNegativesRankingLoss, CachedMultipleNegativesRankingLoss"
    )
    with pytest.raises(ValueError, match="losses for labeled items: TripletMarginLoss"):
        make_task([LabeledItem("a", "x"), LabeledItem("b", "y")], FitConfig(loss="MultipleNegativesRankingLoss"))


def test_score_range_defaults_to_the_training_data_and_can_be_set():
    records = [ScoredPairItem("a", "b", 0.5), ScoredPairItem("c", "d", 4.0), ScoredPairItem("e", "f", 2.0)]
    task = make_task(records, FitConfig(loss="CosineSimilarityLoss"))
    assert isinstance(task.loss_fn, CosineSimilarityLoss) and task.loss_fn.score_range == (0.5, 4.0)
    options = {"score_range": [0, 5]}
    assert make_task(records, FitConfig(loss="MarginMSELoss", loss_options=options)).loss_fn.score_range == (0, 5)


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["CoSENTLoss", "CosineSimilarityLoss", "MarginMSELoss"])
def test_a_few_steps_on_stsb_raise_the_correlation_on_the_pairs_trained_on(loss, data_dir):
    records = stsb(data_dir, "train", 32, start=2000)
    model = build_model("all-MiniLM-L6-v2", None, "cpu")
    before = evaluate_scored(model, records)["spearman"]
    config = FitConfig(loss=loss, batch_size=16, epochs=2, max_steps=3, learning_rate=1e-4, warmup_ratio=0)
    state = train(model, records, config)
    assert state.step == 3 and math.isfinite(state.loss)
    assert evaluate_scored(model, records)["spearman"] > before + 0.05


@pytest.mark.slow
def test_a_few_steps_of_in_batch_negatives_rank_the_paired_documents_higher(data_dir):
    """Related but not paraphrased STS-B pairs (scored 3 to 4) as query-document pairs: the in-batch ranking loss
    over the whole set (every other document a negative), measured in eval mode, falls."""
    records = [QueryDocItem(r.text, r.text_pair) for r in stsb(data_dir, "train", 800) if 3 <= r.score < 4][:32]
    model = build_model("all-MiniLM-L6-v2", None, "cpu")

    def ranking_loss() -> float:
        queries = torch.from_numpy(model.encode([r.query for r in records]))
        documents = torch.from_numpy(model.encode([r.document for r in records]))
        return float(MultipleNegativesRankingLoss()(queries, documents))

    before = ranking_loss()
    config = FitConfig(batch_size=16, epochs=2, max_steps=3, learning_rate=1e-4, warmup_ratio=0)
    state = train(model, records, config)
    assert state.step == 3 and math.isfinite(state.loss)
    assert ranking_loss() < 0.8 * before


# --- evaluation -------------------------------------------------------------------------------------------------


def spearman_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation of the ranks, ties given their mean rank."""

    def ranks(values):
        order = np.argsort(values, kind="stable")
        result = np.empty(len(values))
        result[order] = np.arange(1, len(values) + 1)
        for value in np.unique(values):
            result[values == value] = result[values == value].mean()
        return result

    return float(np.corrcoef(ranks(x), ranks(y))[0, 1])


def test_correlations_match_numpy():
    rng = np.random.default_rng(0)
    predicted = rng.normal(size=50)
    gold = np.round(predicted + rng.normal(size=50), 0)  # ties in the gold scores
    result = correlations(predicted, gold)
    assert result["spearman"] == pytest.approx(spearman_reference(predicted, gold), rel=1e-9)
    assert result["pearson"] == pytest.approx(float(np.corrcoef(predicted, gold)[0, 1]), rel=1e-9)


@pytest.mark.parametrize(
    "predicted,gold,message",
    [([0.5], [1.0], "at least 2"), ([0.1, 0.2], [3.0, 3.0], "every gold score"), ([0.3, 0.3], [1.0, 2.0], "same")],
)
def test_undefined_correlations_are_refused(predicted, gold, message):
    from finetuner_core.evaluation import EvaluationError

    with pytest.raises(EvaluationError, match=message):
        correlations(np.array(predicted), np.array(gold))


def test_scored_evaluation_correlates_the_models_cosines_with_the_gold_scores(data_dir, minilm):
    records = stsb(data_dir, "test", 60)
    metrics = evaluate_pairs(minilm, records, (1, 10))
    assert set(metrics) == {"spearman", "pearson", "pairs"} and metrics["pairs"] == 60
    first = minilm.encode([r.text for r in records])
    second = minilm.encode([r.text_pair for r in records])
    cosines = np.sum(first * second, axis=1) / np.linalg.norm(first, axis=1) / np.linalg.norm(second, axis=1)
    gold = np.array([r.score for r in records])
    assert metrics["spearman"] == pytest.approx(spearman_reference(cosines, gold), abs=1e-5)
    assert metrics["spearman"] > 0.6, "MiniLM follows STS-B (0.82 on the whole test set)"


def test_query_document_evaluation_retrieves_each_querys_documents(minilm):
    records = [
        QueryDocItem("how do I top up", "top up with a card"),
        QueryDocItem("how do I top up", "top up by bank transfer"),
        QueryDocItem("card has not arrived", "cards arrive within a week"),
        QueryDocItem("exchange rate", "we use the interbank rate"),
        QueryDocItem("close my account", "top up with a card"),
    ]
    eval_set = query_doc_set(records)
    assert eval_set.queries == ["how do I top up", "card has not arrived", "exchange rate", "close my account"]
    assert len(eval_set.index) == 4 and list(eval_set.relevance.num_relevant()) == [2, 1, 1, 1]
    metrics = evaluate_pairs(minilm, records, (1, 3))
    queries, documents = minilm.encode(eval_set.queries), minilm.encode(eval_set.index)
    relevant = [{0, 1}, {2}, {3}, {0}]
    reciprocal = []
    for q, ranking in enumerate(np.argsort(-(queries @ documents.T), axis=1, kind="stable")):
        first = (
            next(rank for rank, d in enumerate(ranking[:3], 1) if d in relevant[q])
            if set(ranking[:3]) & relevant[q]
            else 0
        )
        reciprocal.append(1 / first if first else 0.0)
    assert metrics["mrr@3"] == pytest.approx(np.mean(reciprocal)) and metrics["queries"] == 4


# --- settings ----------------------------------------------------------------------------------------------------


def test_correlations_are_valid_monitors_without_a_cut_off():
    assert FitConfig(monitor="spearman", eval_ks=[1]).monitor_mode == "max"
    assert FitConfig(monitor="pearson").monitor == "pearson"
    with pytest.raises(ConfigError, match="monitor: 'kendall' is no metric the evaluation reports"):
        parse_fit_config({"monitor": "kendall"})


def test_the_default_loss_is_the_datas():
    config = FitConfig()
    assert config.loss_for("query-doc") == "MultipleNegativesRankingLoss" and config.loss_for("scored") == "CoSENTLoss"
    assert FitConfig(loss="SiameseLoss").loss_for("scored") == "SiameseLoss"


# --- the client's conversion ---------------------------------------------------------------------------------------


class PairDoc(BaseDoc):
    text: str
    text_pair: str
    score: float | None = None


def test_the_client_sends_pairs_from_tuples_and_doclists():
    docs = to_wire_docs(
        [("how do I pay", "with a card"), ("lost card", "freeze it")], "train", "text", is_labeled=False
    )
    assert [(d.text, d.text_pair, d.finetuner_label) for d in docs] == [
        ("how do I pay", "with a card", None),
        ("lost card", "freeze it", None),
    ]
    labeled = to_wire_docs([("how do I pay", "payments")], "train", "text")
    assert (labeled[0].finetuner_label, labeled[0].text_pair) == ("payments", None)
    scored = to_wire_docs([("a", "b", 4), ("c", "d", "2.5")], "eval", "text")
    assert [(d.text_pair, d.score, d.split) for d in scored] == [("b", 4.0, "eval"), ("d", 2.5, "eval")]
    from_docs = to_wire_docs(
        DocList[PairDoc]([PairDoc(text="q", text_pair="d"), PairDoc(text="a", text_pair="b", score=1)]), "train"
    )
    assert [(d.text_pair, d.score) for d in from_docs] == [("d", None), ("b", 1.0)]


def test_the_client_names_every_score_that_is_not_a_number():
    with pytest.raises(DataError) as info:
        to_wire_docs([("a", "b", 1), ("c", "d", "high"), ("e", "f", None)], "train", "text")
    assert [str(p) for p in info.value.problems] == [
        "train item 1: score 'high' is not a number",
        "train item 2: score None is not a number",
    ]
