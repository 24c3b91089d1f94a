"""Query-document pairs and scored pairs through the real default Flow (flow.yml), with the real MiniLM."""

import csv

import pytest
from docarray import BaseDoc, DocList

import finetuner


class PairDoc(BaseDoc):
    text: str
    text_pair: str


def stsb(data_dir, split: str, count: int, start: int = 0) -> list[tuple[str, str, float]]:
    """``(sentence1, sentence2, score)`` of ``count`` STS-B pairs (tab-separated: ..., score, s1, s2, ...)."""
    with open(data_dir / "stsb" / f"sts-{split}.csv", encoding="utf-8") as file:
        rows = [line.rstrip("\n").split("\t") for line in file][start : start + count]
    return [(row[5], row[6], float(row[4])) for row in rows]


def finished(run) -> list[str]:
    lines = list(run.stream_logs(interval_s=0.2))
    assert run.status() == "FINISHED", "\n".join(lines)
    return lines


@pytest.mark.slow
def test_query_document_pairs_fit_through_the_flow(flow, data_dir, tmp_path):
    """A headerless two-column CSV read as (query, document) with csv_options.is_labeled=False; evaluation pairs
    from a DocList; the loss defaults to MultipleNegativesRankingLoss."""
    similar = [(a, b) for a, b, score in stsb(data_dir, "train", 600) if score >= 4]
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(similar[:24])
    eval_docs = DocList[PairDoc](PairDoc(text=a, text_pair=b) for a, b in similar[24:44])
    run = finetuner.fit(
        train_data=str(path),
        eval_data=eval_docs,
        csv_options={"is_labeled": False},
        batch_size=8,
        max_steps=2,
        eval_ks=[1, 5],
        log_every=1,
    )
    lines = finished(run)
    assert any("loss MultipleNegativesRankingLoss" in line for line in lines), lines
    metrics = run.metrics()
    for stage in ("before", "after"):
        assert {"mrr@5", "ndcg@5", "hit@1", "recall@5"} <= set(metrics[stage])
        assert metrics[stage]["queries"] == 20 and 0 < metrics[stage]["mrr@5"] <= 1


@pytest.mark.slow
def test_scored_stsb_pairs_fit_through_the_flow_and_report_correlations(flow, data_dir):
    """(sentence1, sentence2, score) tuples; the loss defaults to CoSENTLoss; Spearman is monitored every step."""
    run = finetuner.fit(
        train_data=stsb(data_dir, "train", 32, start=3000),
        eval_data=stsb(data_dir, "dev", 40),
        batch_size=8,
        max_steps=2,
        eval_every_steps=1,
        monitor="spearman",
        log_every=1,
    )
    lines = finished(run)
    assert any("loss CoSENTLoss" in line for line in lines), lines
    metrics = run.metrics()
    assert {"before", "step 1", "after"} <= set(metrics)
    for stage in ("before", "after"):
        assert set(metrics[stage]) == {"spearman", "pearson", "pairs"} and metrics[stage]["pairs"] == 40
        assert 0.5 < metrics[stage]["spearman"] <= 1, "MiniLM follows STS-B"


def test_bad_scored_pairs_are_refused_naming_each_item(flow):
    with pytest.raises((finetuner.ServerError, ValueError)) as info:
        finetuner.fit(train_data=[("a", "b", 1.0), ("c", "d", float("nan")), ("e", "", 2.0)])
    message = str(info.value)
    assert "train document 1: score is nan, not a finite number" in message
    assert "train document 2: second text is missing, empty or whitespace" in message
