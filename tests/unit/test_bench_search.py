"""The search benchmark's code path at a small size: exact runs, the reference check, IVF and HNSW, the JSON, the
plot and the section; and the plot and section redrawn from the JSON alone."""

import json


def test_search_benchmark_writes_its_results_plot_and_section(bench_scripts, tmp_path):
    import search

    doc, out, plot = tmp_path / "BENCHMARKS.md", tmp_path / "search.json", tmp_path / "search.png"
    doc.write_text("# Benchmarks\n\nkept as it is\n", encoding="utf-8")
    sizes = ["--queries", "40", "--corpus", "3000", "--dim", "16", "--rounds", "1", "--reference-queries", "10"]
    files = ["--out", str(out), "--doc", str(doc), "--plot", str(plot)]
    search.main([*sizes, "--nprobe", "4", "--ef-search", "16", *files])

    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["config"]["corpus"] == 3000 and len(results["exact"]["seconds"]["evaluate"]["wall"]) == 1
    assert [run["nprobe"] for run in results["ivf"]["runs"]] == [4, 4]  # the far and the near queries
    assert all(0 <= run["recall_vs_flat@10"] <= 1 for run in results["hnsw"]["runs"])
    text = doc.read_text(encoding="utf-8")
    assert "kept as it is" in text and text.count("<!-- search:begin -->") == 1 and "search.png" in text
    drawn = plot.stat().st_size
    assert drawn > 0

    plot.unlink()
    search.main(["--render", *files])
    assert plot.stat().st_size == drawn and doc.read_text(encoding="utf-8") == text
