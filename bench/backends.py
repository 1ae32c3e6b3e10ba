"""CPU encoder backends: ingest speed and dense nDCG@10 per ``[encoder] backend`` / ``quantize``.

    python bench/backends.py [--dataset DIR] [--split dev] [--docs 3000] [--seed 0]
                             [--backends torch onnx onnx-int8]

The corpus is a subset, the same for every backend: every document judged in the split plus a
seeded random sample of the others, up to ``--docs`` documents, written to one jsonl file. Each
backend gets a fresh workspace with the sparse channel off (only the encoder differs); its
encoder is loaded, and an ONNX model exported, before the clock starts, then ``kit.ingest`` of
that file is timed (chunks/s, wall and CPU) and the split's queries are evaluated in dense mode.
``torch`` runs with ``precision = "auto"`` (bf16 autocast where the CPU has it).
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common

# name -> (backend, quantize)
CONFIGS = {"torch": ("torch", "none"), "onnx": ("onnx", "none"), "onnx-int8": ("onnx", "int8")}


def write_subset(dataset: Path, judged: set[str], size: int, seed: int, target: Path) -> int:
    """Judged documents first, then a seeded sample of the rest; return the count written."""
    docs = list(_common.iter_corpus(dataset))
    keep = [d for d in docs if d["_id"] in judged]
    rest = [d for d in docs if d["_id"] not in judged]
    random.Random(seed).shuffle(rest)
    keep += rest[: max(0, size - len(keep))]
    with target.open("w", encoding="utf-8") as out:
        for doc in keep:
            out.write(json.dumps(doc) + "\n")
    return len(keep)


def main() -> None:
    _common.offline()
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--split", default="dev")
    p.add_argument("--docs", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    args = p.parse_args()

    import ragkit
    from ragkit.evaluation import load_beir
    from ragkit.pipelines.eval import eval_workspace

    data = load_beir(args.dataset, args.split)
    judged = {doc for rels in data.qrels.values() for doc in rels}
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="ragkit-bench-backends-") as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        n_docs = write_subset(args.dataset, judged, args.docs, args.seed, corpus)
        for name in args.backends:
            backend, quantize = CONFIGS[name]
            kit = ragkit.open(Path(tmp) / name, create=True)
            kit.config.encoder.backend = backend
            kit.config.encoder.quantize = quantize
            kit.config.sparse.model = "none"
            kit.config.save(kit.config_path)
            kit.encoder.fingerprint  # load + export outside the clock  # noqa: B018
            started, cpu = time.perf_counter(), time.process_time()
            report = kit.ingest(corpus)
            wall, cpu = time.perf_counter() - started, time.process_time() - cpu
            chunks = report.chunks_encoded
            (result,) = eval_workspace(
                kit, data.queries, data.qrels, modes=["dense"], runs_dir=None
            )
            ndcg = round(100 * result.metrics["ndcg@10"], 2)
            row = [name, kit.encoder.compute_dtype, chunks, round(wall, 1), round(cpu, 1)]
            row += [round(chunks / wall, 1), round(report.encode_seconds, 1), ndcg]
            rows.append(row)
            results.append({"backend": name, "row": row, "ingest": report.to_dict()})
            kit.close()
    columns = ["backend", "computes in", "chunks", "seconds", "CPU s", "chunks/s", "encode s"]
    columns.append("nDCG@10")
    title = f"{args.dataset.name} · {n_docs} docs · {args.split} · {len(data.queries)} queries"
    _common.print_table(title, columns, rows, caption=_common.machine_line())
    print(_common.markdown_table(columns, rows))
    _common.write_result("backends", {"rows": results, "docs": n_docs, "seed": args.seed})


if __name__ == "__main__":
    main()
