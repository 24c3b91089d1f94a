"""The search section of docs/BENCHMARKS.md, rendered from the benchmark's results and put between its markers."""

from __future__ import annotations

import statistics
from pathlib import Path

BEGIN, END = "<!-- search:begin -->", "<!-- search:end -->"
TARGET = 1.5
HEADER = """# Benchmarks

Figures measured on this product, with the commands that produce them. Each section is written by its script.
"""

NOT_SHOWN = """What these figures do not show:

- Real embeddings: the vectors are synthetic (1,000 Gaussian clusters on the unit sphere; each query a noisy
  copy of one corpus vector). Search time does not depend on the values, but IVF / HNSW recall does: real
  embeddings with other structure give other recall for the same settings.
- Encoding: models are not run; the embeddings are given. On 2 CPU cores encoding a million texts with MiniLM
  takes far longer than searching them.
- A quiet machine: the 2 cores are shared; the load averages above say how busy the machine was. Runs of A, B
  and C alternate so that all see the same conditions; CPU seconds (all threads of the process) are less
  sensitive to other work than wall-clock seconds. The parts of one evaluation, the index builds and the
  searches in the approximate-index table are single runs, not alternated.
- GPU search (FAISS GPU is not installed here; with it, Flat and IVF indexes search on the GPU) and other
  BLAS libraries: FAISS brings its own OpenBLAS, NumPy its own.
- A shared CPU: when another process keeps a core busy, FAISS's threaded search slows down more than the
  multiply alone, and A / B grows with it.
- The memory of encoding: here the embeddings already exist. The evaluation's own share is its index (one
  normalised copy of the corpus) plus bounded buffers: FAISS scores 4,096 queries x 1,024 vectors at a time
  (16 MiB), and results are kept for the top k + 1 only.
"""


def write_section(path: Path, results: dict) -> None:
    """Replace (or append) the search section of ``path``."""
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    section = f"{BEGIN}\n{render(results)}{END}"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def render(r: dict) -> str:
    plot = "![exact and approximate search](../bench/results/search.png)\n"
    return "\n".join([_intro(r), _exact(r), _reference(r), _approximate(r), plot, NOT_SHOWN])


def _intro(r: dict) -> str:
    c, m = r["config"], r["machine"]
    return f"""## Evaluation and search (FAISS)

`{r["command"]}` on {m["nproc"]} CPU cores ({m["cpu"]}, {m["memory_gib"]} GiB), Python {m["python"]},
{m["date"]}; load average {r["load_average_start"]} at the start, {r["load_average_end"]} at the end.
{c["queries"]:,} queries against {c["corpus"]:,} x {c["dim"]} float32 vectors, cosine similarity, k = 10;
raw figures in `bench/results/search.json`.
"""


def _exact(r: dict) -> str:
    e = r["exact"]
    wall, cpu = e["ratio_wall"], e["ratio_cpu"]
    verdict = "met" if wall["median"] <= TARGET else "NOT met"
    b, mem = e["breakdown"], e["breakdown"]["memory"]
    corpus_gib = r["config"]["corpus"] * r["config"]["dim"] * 4 / 2**30
    lines = [
        "### Exact search plus every metric vs the bare matrix multiply",
        "",
        "A = the whole evaluation (`evaluate_embeddings`: input checks, Flat index, search, judging, every metric);",
        "B = the multiply of every query with every corpus vector (NumPy, in FAISS's blocks), results discarded;",
        "C = FAISS's exact search alone (`IndexFlatIP.search`, k + 1 results): the part of A that is search. "
        f"Run A B C A B C ... ({len(e['seconds']['evaluate']['wall'])} runs each).",
        "",
        "| | min | median | max |",
        "| --- | --- | --- | --- |",
        _row("A: evaluation, wall s", e["seconds"]["evaluate"]["wall"]),
        _row("B: bare multiply, wall s", e["seconds"]["matmul"]["wall"]),
        _row("C: FAISS exact search, wall s", e["seconds"]["faiss_search"]["wall"]),
        f"| A / B, wall | {wall['min']:.2f} | {wall['median']:.2f} | {wall['max']:.2f} |",
        f"| A / B, CPU s | {cpu['min']:.2f} | {cpu['median']:.2f} | {cpu['max']:.2f} |",
        _ratio_row("C / B, wall", e["faiss_ratio_wall"]),
        "",
        f"Target A / B <= {TARGET}: **{verdict}** (median {wall['median']:.2f}). One evaluation in parts: index "
        f"{b['index_s']:.1f} s, search {b['search_s']:.1f} s, judging + metrics {b['judge_and_metrics_s']:.2f} s.",
        "",
        f"Memory: with the corpus resident ({mem['resident_before_gib']:.2f} GiB, the benchmark's own copy), one "
        f"evaluation peaked at {mem['peak_gib']:.2f} GiB: it adds {mem['peak_gib'] - mem['resident_before_gib']:.2f} "
        f"GiB (its index's normalised copy of the corpus, {corpus_gib:.2f} GiB, plus bounded per-batch buffers). "
        f"Peak of the whole process while A, B and C ran: {e['peak_rss_gib']:.2f} GiB.",
        "",
    ]
    return "\n".join(lines)


def _reference(r: dict) -> str:
    ref = r["exact"]["reference"]
    different = ref["queries"] - ref["identical"]
    detail = (
        "every one identical (ids and their order)."
        if different == 0
        else f"{ref['identical']} identical; the {different} others differ only among items whose scores are "
        f"within {ref['max_score_gap_where_different']:.1e} (float32 rounding of near-ties)."
    )
    return f"Flat results against a NumPy brute force (score, then lower id) for {ref['queries']:,} queries: {detail}\n"


def _approximate(r: dict) -> str:
    ivf, hnsw, exact = r["ivf"], r["hnsw"], r["exact"]["query_sets"]
    lines = [
        "### Approximate indexes on the same data",
        "",
        f"IVF: nlist {ivf['nlist']}, built in {ivf['build_s']:.1f} s (k-means + adding). HNSW: m {hnsw['m']}, "
        f"ef_construction {hnsw['ef_construction']}, built in {hnsw['build_s']:.1f} s. Two query sets of "
        f"{r['config']['queries']:,}: *far* (noisy copies far from every corpus vector, those of the table above) "
        "and *near* (copies among the corpus vectors, as queries from the indexed collection itself are).",
        "",
        "| index | setting | queries | search s | speed-up vs Flat | recall@10 vs Flat | metric recall@10 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, e in exact.items():
        lines.append(f"| Flat | exact | {name} | {e['search_s']:.2f} | 1.0x | 1.000 | {e['metric_recall@10']:.3f} |")
    for kind, index, setting in (("IVF", ivf, "nprobe"), ("HNSW", hnsw, "ef_search")):
        for run in index["runs"]:
            flat_s = exact[run["queries"]]["search_s"]
            lines.append(
                f"| {kind} | {setting} {run[setting]} | {run['queries']} | {run['search_s']:.2f} | "
                f"{flat_s / run['search_s']:.1f}x | {run['recall_vs_flat@10']:.3f} | {run['metric_recall@10']:.3f} |"
            )
    lines += [
        "",
        "recall@10 vs Flat: the share of the exact 10 nearest neighbours found; metric recall@10: the evaluation's "
        "recall@10 (each query's source vector among its 10 results), what a user reads. HNSW's greedy walk loses "
        "queries that lie far from every vector; IVF, which scans whole lists, holds up better there. An "
        "approximate index can change the metrics it is meant to measure: with one, the evaluator also reports "
        "`index_recall@k` against exact search.",
        "",
    ]
    return "\n".join(lines)


def _ratio_row(name: str, ratio: dict) -> str:
    return f"| {name} | {ratio['min']:.2f} | {ratio['median']:.2f} | {ratio['max']:.2f} |"


def _row(name: str, values: list[float]) -> str:
    return f"| {name} | {min(values):.1f} | {statistics.median(values):.1f} | {max(values):.1f} |"


if __name__ == "__main__":  # re-render the section from saved results: python bench/report.py RESULTS DOC
    import json
    import sys

    write_section(Path(sys.argv[2]), json.loads(Path(sys.argv[1]).read_text(encoding="utf-8")))
