"""Retrieval quality and query latency per mode on a BEIR dataset (default: debian-packages).

    python bench/retrieval.py [--dataset DIR] [--split dev] [--sparse bm25 splade] [--tune]

For each sparse channel the same workspace is re-indexed (dense vectors come from the cache;
only the sparse index is rebuilt), then dense, sparse and hybrid are evaluated on the split:
nDCG@10, MRR@10, Recall@100 (pytrec_eval), and single-query latency p50/p95/p99 end to end
(encode + search + fetch rows) over the first ``--latency-queries`` queries.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


def main() -> None:
    _common.offline()
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--split", default="dev")
    p.add_argument("--workspace", type=Path, default=Path("/tmp/ragkit-bench-retrieval"))
    p.add_argument("--sparse", nargs="+", default=["bm25", "splade"])
    p.add_argument("--latency-queries", type=int, default=200)
    p.add_argument("--max-queries", type=int, default=None)
    p.add_argument("--tune", action="store_true", help="also tune fusion on the split (biased)")
    args = p.parse_args()

    import ragkit
    from ragkit.evaluation import load_beir
    from ragkit.pipelines.eval import eval_workspace
    from ragkit.pipelines.tune_fusion import tune_fusion

    data = load_beir(args.dataset, args.split)
    queries = dict(sorted(data.queries.items()))
    if args.max_queries:
        queries = dict(list(queries.items())[: args.max_queries])
    rows, results = [], []
    for channel in args.sparse:
        kit = ragkit.open(args.workspace, create=True)
        kit.config.sparse.model = channel
        kit.config.save(kit.config_path)
        started = time.perf_counter()
        report = kit.ingest(args.dataset / "corpus.jsonl")
        build = time.perf_counter() - started
        modes = ["dense", "sparse", "hybrid"] if channel == args.sparse[0] else ["sparse", "hybrid"]
        evaluated = eval_workspace(kit, queries, data.qrels, modes=modes, runs_dir=None)
        sample = list(queries.values())[: args.latency_queries]
        for result in evaluated:
            latency = _common.latency_ms(
                lambda text, ws=kit, mode=result.mode: ws.query(text, k=10, mode=mode),
                sample,
                warmup=1,  # warm caches
                digits=1,
            )
            fusion = kit.collection().record.spec.fusion_for(kit.config)
            name = {
                "dense": "dense (encoder)",
                "sparse": channel,
                "hybrid": f"hybrid dense+{channel} ({fusion.method}, untuned)",
            }
            m = result.metrics
            row = {
                "system": name[result.mode],
                "ndcg@10": round(100 * m["ndcg@10"], 2),
                "mrr@10": round(100 * m["mrr@10"], 2),
                "recall@100": round(100 * m["recall@100"], 2),
                **latency,
            }
            results.append({**row, "index_build_s": round(build, 1), "ingest": report.to_dict()})
            rows.append(list(row.values()))
        if args.tune:
            tuned = tune_fusion(kit, queries, data.qrels, write=False)
            best = tuned.best
            rows.append(
                [
                    f"hybrid dense+{channel}, tuned ({best.method} k={best.k} w={list(best.weights)})",
                    round(100 * best.score, 2),
                    None,
                    None,
                    None,
                    None,
                    None,
                ]
            )
            rows.append(
                [
                    f"hybrid dense+{channel}, tuned, 2-fold CV",
                    round(100 * tuned.cross_validated, 2),
                    None,
                    None,
                    None,
                    None,
                    None,
                ]
            )
            results.append({"system": f"tuned dense+{channel}", "tune": tuned.to_dict()})
        kit.close()
    columns = ["system", "nDCG@10", "MRR@10", "R@100", "p50 ms", "p95 ms", "p99 ms"]
    _common.print_table(
        f"{args.dataset.name} · {args.split} · {len(queries)} queries",
        columns,
        rows,
        caption=_common.machine_line(),
    )
    print(_common.markdown_table(columns, rows))
    _common.write_result("retrieval", {"rows": results, "split": args.split})


if __name__ == "__main__":
    main()
