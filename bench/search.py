"""Search benchmark: exact evaluation at scale against the bare matrix multiply it needs; IVF and HNSW against it.

    python bench/search.py                                                    # quick: 2,000 x 100,000 x 384
    python bench/search.py --queries 10000 --corpus 1000000 --dim 384         # the figures in docs/BENCHMARKS.md

1. exact: the whole evaluation (``evaluate_embeddings``: checks, Flat index, search, judging, every metric),
   the bare matrix multiply of every query with every corpus vector (NumPy, blocked like FAISS) and FAISS's
   exact search alone, alternated A B C A B C ...;
2. the Flat results of a sample of queries against a NumPy brute force;
3. IVF and HNSW: build time, search time and recall@10 against the exact results, for a few search settings
   and two query sets (``far`` and ``near``, see synthetic.py).

Writes ``bench/results/search.json`` and the search section of ``docs/BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import faiss
import numpy as np

from finetuner_core.evaluation import FlatIndex, HNSWIndex, IVFIndex, PairRelevance, evaluate_embeddings
from finetuner_core.evaluation.index import Index, neighbour_recall
from finetuner_core.evaluation.metrics import metric_table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure import (  # noqa: E402
    alternate,
    load_average,
    machine,
    peak_rss_gib,
    ratios,
    reset_peak,
    resident_gib,
    spread,
    timed,
)
from report import write_section  # noqa: E402
from search_plot import plot  # noqa: E402
from synthetic import QUERY_NOISE, Queries, clustered_corpus, noisy_queries  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
KS = (1, 10)
OPTIONS = {"metric": "cosine", "examples": 0}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--corpus", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--rounds", type=int, default=3, help="runs of each exact variant, alternated")
    parser.add_argument("--reference-queries", type=int, default=1000, help="queries checked against NumPy")
    parser.add_argument("--nprobe", type=int, nargs="*", default=[8, 32, 64], help="IVF settings measured")
    parser.add_argument("--ef-search", type=int, nargs="*", default=[32, 128, 512], help="HNSW settings measured")
    parser.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per vector (the product's default)")
    parser.add_argument("--hnsw-ef-construction", type=int, default=100, help="HNSW build candidates (default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "search.json"))
    parser.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"), help="'' to leave the docs alone")
    parser.add_argument("--plot", default=str(ROOT / "bench" / "results" / "search.png"), help="'' for none")
    parser.add_argument("--render", action="store_true", help="only redraw the plot and the docs from --out")
    return parser.parse_args(argv)


def bare_matmul(queries: np.ndarray, corpus: np.ndarray, query_block: int = 4096, corpus_block: int = 1024) -> None:
    """Every query times every corpus vector, blocked like FAISS's exact search, results thrown away."""
    out = np.empty((min(query_block, len(queries)), corpus_block), np.float32)
    for i in range(0, len(queries), query_block):
        block = queries[i : i + query_block]
        for j in range(0, len(corpus), corpus_block):
            part = corpus[j : j + corpus_block]
            np.matmul(block, part.T, out=out[: len(block), : len(part)])


def faiss_flat(corpus: np.ndarray) -> faiss.Index:
    """FAISS's own exact index over the corpus (unit vectors: inner product is cosine)."""
    index = faiss.IndexFlatIP(corpus.shape[1])
    for start in range(0, len(corpus), 65536):
        index.add(corpus[start : start + 65536])
    return index


def exact_runs(corpus: np.ndarray, queries: Queries, relevance: PairRelevance, rounds: int) -> dict:
    """The whole evaluation, the bare multiply, and FAISS's exact search alone (k + 1 results), alternated."""
    native = faiss_flat(corpus)
    seconds = alternate(
        {
            "evaluate": lambda: evaluate_embeddings(queries.vectors, corpus, relevance, KS, OPTIONS),
            "matmul": lambda: bare_matmul(queries.vectors, corpus),
            "faiss_search": lambda: native.search(queries.vectors, max(KS) + 1),
        },
        rounds,
    )
    return {
        "seconds": seconds,
        "ratio_wall": spread(ratios(seconds["evaluate"]["wall"], seconds["matmul"]["wall"])),
        "ratio_cpu": spread(ratios(seconds["evaluate"]["cpu"], seconds["matmul"]["cpu"])),
        "faiss_ratio_wall": spread(ratios(seconds["faiss_search"]["wall"], seconds["matmul"]["wall"])),
        "peak_rss_gib": peak_rss_gib(),
    }


def exact_breakdown(corpus: np.ndarray, queries: Queries, relevance: PairRelevance) -> tuple[dict, FlatIndex]:
    """One evaluation in its parts (index, search, judging + metrics) and the memory it adds to the corpus's."""
    reset_peak()
    before = resident_gib()["rss"]
    build, _, index = timed(lambda: FlatIndex(corpus, "cosine"))
    search, _, (_, ids) = timed(lambda: index.search(queries.vectors, max(KS)))
    judge, _, metrics = timed(lambda: metric_table(relevance.judge(ids), KS))
    memory = {"resident_before_gib": before, "peak_gib": resident_gib()["peak"]}
    parts = {"index_s": build, "search_s": search, "judge_and_metrics_s": judge, "memory": memory, "metrics": metrics}
    return parts, index


def reference_check(queries: np.ndarray, index: FlatIndex, count: int, k: int) -> dict:
    """The Flat results of ``count`` queries against a NumPy brute force (score, then lower id)."""
    sample = np.unique(np.linspace(0, len(queries) - 1, min(count, len(queries))).astype(int))
    _, ids = index.search(queries[sample], k)
    unit, stored = queries[sample] / np.linalg.norm(queries[sample], axis=1, keepdims=True), index.vectors()
    identical, gaps = 0, []
    for start in range(0, len(sample), 100):
        scores = unit[start : start + 100] @ stored.T  # (100, n)
        top = np.argpartition(-scores, k, axis=1)[:, : k + 1]
        for found, candidates, row in zip(ids[start : start + 100], top, scores, strict=True):
            expected = sorted(candidates.tolist(), key=lambda i: (-row[i], i))[:k]
            if expected == found.tolist():
                identical += 1
            else:
                gaps.append(float(np.abs(np.sort(row[expected]) - np.sort(row[found])).max()))
    return {"queries": len(sample), "identical": identical, "max_score_gap_where_different": max(gaps, default=0.0)}


def exact_results(index: FlatIndex, query_sets: dict, relevance: dict) -> dict:
    """Flat search of every query set: seconds, the ids (the truth for approximate indexes), metric recall@10."""
    results = {}
    for name, queries in query_sets.items():
        seconds, _, (_, ids) = timed(lambda q=queries: index.search(q.vectors, max(KS)))
        recall = metric_table(relevance[name].judge(ids), KS)["recall@10"]
        results[name] = {"search_s": seconds, "ids": ids, "metric_recall@10": recall}
    return results


def approximate_runs(index: Index, setting: str, values: list[int], query_sets, relevance, exact) -> list[dict]:
    """Search time, recall@10 against exact search, and the evaluation's recall@10, per query set and setting."""
    rows = []
    for name, queries in query_sets.items():
        for value in values:
            setattr(index, setting, value)
            seconds, cpu, (_, ids) = timed(lambda q=queries: index.search(q.vectors, max(KS)))
            rows.append(
                {
                    "queries": name,
                    setting: value,
                    "search_s": seconds,
                    "search_cpu_s": cpu,
                    "recall_vs_flat@10": neighbour_recall(ids, exact[name]["ids"]),
                    "metric_recall@10": metric_table(relevance[name].judge(ids), KS)["recall@10"],
                }
            )
            print(f"  {index.kind}: {rows[-1]}", flush=True)
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.render:
        results = json.loads(Path(args.out).read_text(encoding="utf-8"))
        _write(results, args)
        return results
    results: dict = {"machine": machine(), "command": " ".join(["python", "bench/search.py", *sys.argv[1:]])}
    results["config"] = {k: v for k, v in vars(args).items() if k not in ("out", "doc")}
    results["load_average_start"] = load_average()
    data_s, _, corpus = timed(lambda: clustered_corpus(args.corpus, args.dim, seed=args.seed))
    query_sets = {name: noisy_queries(corpus, args.queries, noise, args.seed) for name, noise in QUERY_NOISE.items()}
    relevance = {
        name: PairRelevance(args.queries, args.corpus, np.arange(args.queries), q.sources)
        for name, q in query_sets.items()
    }
    results["data_s"] = data_s
    print(f"data: {args.queries} x {args.corpus} x {args.dim} in {data_s:.1f}s", flush=True)

    results["exact"] = exact_runs(corpus, query_sets["far"], relevance["far"], args.rounds)
    print(f"exact: {json.dumps(results['exact'])}", flush=True)
    results["exact"]["breakdown"], flat = exact_breakdown(corpus, query_sets["far"], relevance["far"])
    results["exact"]["reference"] = reference_check(query_sets["far"].vectors, flat, args.reference_queries, max(KS))
    exact = exact_results(flat, query_sets, relevance)
    results["exact"]["query_sets"] = {n: {k: v for k, v in e.items() if k != "ids"} for n, e in exact.items()}
    print(f"breakdown: {results['exact']['breakdown']}\nreference: {results['exact']['reference']}", flush=True)
    del flat

    build_s, build_cpu, ivf = timed(lambda: IVFIndex(corpus, "cosine"))
    results["ivf"] = {"nlist": ivf.nlist, "build_s": build_s, "build_cpu_s": build_cpu}
    results["ivf"]["runs"] = approximate_runs(ivf, "nprobe", args.nprobe, query_sets, relevance, exact)
    results["ivf"]["peak_rss_gib"] = peak_rss_gib()
    del ivf

    graph = {"m": args.hnsw_m, "ef_construction": args.hnsw_ef_construction}
    build_s, build_cpu, hnsw = timed(lambda: HNSWIndex(corpus, "cosine", **graph))
    results["hnsw"] = {**graph, "build_s": build_s, "build_cpu_s": build_cpu}
    results["hnsw"]["runs"] = approximate_runs(hnsw, "ef_search", args.ef_search, query_sets, relevance, exact)
    results["hnsw"]["peak_rss_gib"] = peak_rss_gib()
    del hnsw

    results["load_average_end"] = load_average()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    _write(results, args)
    return results


def _write(results: dict, args) -> None:
    if args.plot:
        plot(results, Path(args.plot))
    if args.doc:
        write_section(Path(args.doc), results)
    print(f"written: {args.out}" + (f", {args.plot}" if args.plot else "") + (f", {args.doc}" if args.doc else ""))


if __name__ == "__main__":
    main()
