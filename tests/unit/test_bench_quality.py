"""The quality benchmark's code path on a tiny Banking77 slice: both trainers, the JSON, the plot, the section."""

import json

import pytest


@pytest.mark.slow
def test_quality_benchmark_writes_its_results_and_section(bench_scripts, data_dir, tmp_path):
    import quality

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nkept as it is\n", encoding="utf-8")
    argv = ["--data", str(data_dir), "--only", "banking77", "--quick", "--max-steps", "2"]
    quality.main([*argv, "--train-size", "4", "--eval-size", "2", "--results", str(tmp_path), "--doc", str(doc)])

    result = json.loads((tmp_path / "quality_banking77.json").read_text(encoding="utf-8"))
    assert result["name"] == "banking77" and result["model"] == "all-MiniLM-L6-v2" and result["quick"] is True
    assert result["metrics"] == ["precision@1", "mrr@20", "map@20", "ndcg@20"]
    assert result["ours"]["steps"] == 2 and result["ours"]["loss"] == "TripletMarginLoss"
    assert result["st"]["steps"] == 2, "sentence-transformers trains the same number of steps"
    assert result["data"]["train_items"] == 77 * 4 and result["data"]["eval_items"] == 77 * 2
    for stage in (result["ours"]["before"], result["ours"]["after"], result["st"]["after"]):
        assert set(result["metrics"]) <= set(stage)
        assert all(0.0 <= stage[m] <= 1.0 for m in result["metrics"])
        assert stage["queries"] == 77 * 2
    assert result["ours"]["before"] != result["ours"]["after"], "two steps change the model"
    assert {"nproc", "cpu", "date", "lscpu", "load_average"} <= set(result["machine"])

    assert (tmp_path / "quality.png").stat().st_size > 0
    text = doc.read_text(encoding="utf-8")
    assert "kept as it is" in text and text.count("<!-- quality:begin -->") == 1
    assert "| banking77 | quick | precision@1 |" in text and "**Reduced budget (`--quick`)**" in text


def test_every_benchmark_has_a_budget_and_a_data_reader(bench_scripts):
    import quality

    from finetuner_core.config import FitConfig

    for name, bench in quality.BENCHMARKS.items():
        for budget in (bench.full, bench.quick):
            config = FitConfig(model=bench.model, **{**quality.COMMON, **budget.settings})
            assert config.model == bench.model, name
        assert bench.st_applies == (name in ("banking77", "stsb")), name
