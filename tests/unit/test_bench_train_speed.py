"""The training-speed benchmark's code path at the smallest size: one pair (the pairs share their code), the JSON,
the plot, the section."""

import json

import pytest


@pytest.mark.slow
def test_train_speed_benchmark_writes_its_results_and_section(bench_scripts, data_dir, tmp_path):
    import train_speed

    doc = tmp_path / "BENCHMARKS.md"
    doc.write_text("# Benchmarks\n\nkept as it is\n", encoding="utf-8")
    out, plot = tmp_path / "train_speed.json", tmp_path / "train_speed.png"
    small = ["--steps", "1", "--warmup", "1", "--rounds", "1", "--test-per-class", "2", "--flop-batches", "1"]
    train_speed.main(
        [*small, "--profile-steps", "1", "--pairs", "infonce", "--data", str(data_dir)]
        + ["--out", str(out), "--doc", str(doc), "--plot", str(plot)]
    )

    results = json.loads(out.read_text(encoding="utf-8"))
    assert set(results["pairs"]) == {"infonce"}
    for pair, compared in results["pairs"].items():
        assert {"ours", "st"} <= set(compared["runs"]), pair
        assert {"runs", "ratio", "flops"} <= set(compared), pair
    assert results["data"]["train_rows"] == 10003 and results["data"]["test_rows"] == 154
    assert set(results["profile"]) >= {"packed", "grouped", "padded", "optimizer", "operators"}
    assert plot.stat().st_size > 0
    text = doc.read_text(encoding="utf-8")
    assert "kept as it is" in text and text.count("<!-- training:begin -->") == 1
    assert "ours / sentence-transformers" in text and "### FLOPs and MFU" in text
