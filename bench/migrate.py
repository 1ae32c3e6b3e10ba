"""A whole ``ragkit migrate`` on a BEIR dataset (default: debian-packages), measured.

    python bench/migrate.py --to all-mpnet-base-v2 [--workspace DIR] [--split dev]
    python bench/migrate.py --to tuned --finetune-pairs 1500   # fine-tune MiniLM first

Builds (or reuses) a workspace with the default encoder, then: the plan; the new model's raw
encode rate on a sample of chunk texts against the backfill's rate (encode + commits, with a
thread querying the live collection meanwhile: p50/p99); query adapters of each kind and sample
size, recall@10 relative to the new model's own search over the full new index, fit time and
µs per query; the gate on the split's judged queries (nDCG@10 before/after, decision); cutover
and rollback swap times and query latency around them. Prints a table and writes
``bench/results/migrate-<to>.json``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common


class Querier:
    """Issues dense/hybrid queries on the live alias from its own workspace object, recording
    each query's latency in the current phase, and any error or empty answer."""

    def __init__(self, root: Path, texts: list[str]) -> None:
        self.root, self.texts = root, texts
        self.phase = "idle"
        self.latency: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.empty = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Querier:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import ragkit

        with ragkit.open(self.root, create=False) as kit:
            i = 0
            while not self._stop.is_set():
                text = self.texts[i % len(self.texts)]
                i += 1
                started = time.perf_counter()
                try:
                    hits = kit.query(text, k=10)
                except Exception as exc:  # recorded, reported
                    self.errors.append(repr(exc))
                    continue
                self.latency.setdefault(self.phase, []).append(
                    (time.perf_counter() - started) * 1000
                )
                self.empty += not hits
                time.sleep(0.02)

    def summary(self) -> dict[str, Any]:
        out = {}
        for phase, values in self.latency.items():
            ordered = sorted(values)
            out[phase] = {
                "n": len(ordered),
                "p50_ms": round(ordered[len(ordered) // 2], 1),
                "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 1),
            }
        return {"phases": out, "errors": len(self.errors), "empty": self.empty}


def main() -> None:
    _common.offline()
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--to", default="all-mpnet-base-v2")
    p.add_argument("--split", default="dev")
    p.add_argument("--workspace", type=Path, default=Path("/tmp/ragkit-bench-migrate"))
    p.add_argument("--batch-chunks", type=int, default=2048)
    p.add_argument("--finetune-pairs", type=int, default=0, help="fine-tune first, as --to")
    p.add_argument("--kinds", nargs="+", default=["procrustes", "affine", "lowrank", "mlp"])
    p.add_argument("--samples", nargs="+", type=int, default=[1000, 5000, 20000])
    p.add_argument("--raw-sample", type=int, default=2000)
    p.add_argument(
        "--adapters-only",
        action="store_true",
        help="measure the adapters again on a workspace this script migrated already",
    )
    args = p.parse_args()

    import ragkit
    from ragkit.errors import MigrationRefusedError
    from ragkit.evaluation import load_beir
    from ragkit.pipelines import migrate

    info: dict[str, Any] = {"machine": _common.machine(), "git": _common.git_state(), "to": args.to}
    out = (
        Path(__file__).parent
        / "results"
        / f"migrate-{re.sub(r'[^A-Za-z0-9.-]+', '-', args.to)}.json"
    )
    if args.adapters_only:
        kit = ragkit.open(args.workspace, create=False)
        info = json.loads(out.read_text(encoding="utf-8"))
        info["adapters"] = _adapters(kit, args, args.workspace)
        info["adapters_machine"] = _common.machine()
        out.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
        _report(info)
        return
    data = load_beir(args.dataset, args.split)
    queries_path = args.dataset / "queries.jsonl"
    qrels_path = args.dataset / "qrels" / f"{args.split}.tsv"
    kit = ragkit.open(args.workspace, create=True)
    if kit.store.counts()["documents"] == 0:
        started = time.perf_counter()
        kit.ingest(args.dataset / "corpus.jsonl")
        info["ingest_seconds"] = time.perf_counter() - started
    if args.finetune_pairs:
        started = time.perf_counter()
        command = [
            sys.executable, "-m", "ragkit.cli.app", "finetune", "-w", str(args.workspace),
            "--dataset", str(args.dataset), "--split", "train", "--max-pairs",
            str(args.finetune_pairs), "--name", args.to, "--max-seq-length", "64",
            "--eval-max-chunks", "3000", "--json",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        info["finetune_seconds"] = time.perf_counter() - started
        kit.close()
        kit = ragkit.open(args.workspace, create=False)

    plan = migrate.plan_migration(kit, to=args.to)
    info["plan"] = plan.to_dict()
    print(f"plan: {plan.to_encode} of {plan.chunks} chunks to encode, {plan.cached} cached")

    texts = [data.queries[q] for q in sorted(data.queries)][:300]
    with Querier(args.workspace, texts) as querier:
        time.sleep(3)
        # The new model's raw encode rate on chunk texts (not cached: the backfill encodes
        # them), under the same query load as the backfill, so the two rates compare.
        querier.phase = "raw-encode"
        encoder = kit.parts.encoder(_planned(kit, plan))
        rows = kit.store.chunk_hashes(kit.collection().chunking_fp)
        sample = [text for _, _, text in rows[:: max(1, len(rows) // args.raw_sample)]]
        sample = sample[: args.raw_sample]
        encoder.encode_documents(sample[:32])
        started = time.perf_counter()
        encoder.encode_documents(sorted(sample, key=len))
        info["raw_encode_rate"] = len(sample) / (time.perf_counter() - started)
        querier.phase = "backfill"
        started = time.perf_counter()
        result = migrate.start(
            kit, to=args.to, batch_chunks=args.batch_chunks, queries=queries_path, qrels=qrels_path
        )
        info["backfill_wall_seconds"] = time.perf_counter() - started
        querier.phase = "idle-after"
        time.sleep(3)
        info["backfill"] = result
        info["backfill_rate"] = result["chunks"] / result["seconds"] if result["seconds"] else None
        info["encode_rate_in_backfill"] = (
            result["encoded"] / result["encode_seconds"] if result["encode_seconds"] else None
        )

        info["adapters"] = _adapters(kit, args, args.workspace)

        querier.phase = "gate"
        try:
            moved = migrate.cutover(kit)
            info["gate_decision"] = "passed"
        except MigrationRefusedError as refused:
            info["gate_decision"] = f"refused: {refused}"
            querier.phase = "cutover"
            moved = migrate.cutover(kit, force=True)
        info["cutover"] = moved
        querier.phase = "after-cutover"
        time.sleep(5)
        querier.phase = "rollback"
        started = time.perf_counter()
        back = migrate.rollback(kit)
        info["rollback_wall_seconds"] = time.perf_counter() - started
        info["rollback"] = back
        querier.phase = "after-rollback"
        time.sleep(5)
        migrate.cutover(kit, tolerance=1.0)  # leave the workspace on the new model
    info["queries"] = querier.summary()
    out = (
        Path(__file__).parent
        / "results"
        / f"migrate-{re.sub(r'[^A-Za-z0-9.-]+', '-', args.to)}.json"
    )
    out.write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")
    _report(info)
    print(f"wrote {out}")


def _adapters(kit: Any, args: Any, root: Path) -> list[dict[str, Any]]:
    """Each kind at each sample size: the share of the new model's recall@10 it keeps, its
    agreement with the new top 10, fit time and µs per query (batch 1)."""
    import numpy as np

    from ragkit.evaluation import load_beir
    from ragkit.migration.adapters import load_adapter
    from ragkit.pipelines import migrate

    data = load_beir(args.dataset, args.split)
    judged_set = JudgedSet(kit, data.queries, data.qrels)
    adapters = []
    for kind in args.kinds:
        for n in args.samples:
            try:
                fitted = migrate.fit_query_adapter(kit, kind=kind, sample=n, queries=300)
            except Exception as exc:  # a kind that cannot fit this sample size
                adapters.append({"kind": kind, "sample": n, "error": str(exc)})
                continue
            adapter = load_adapter(root / fitted["path"])
            one = np.random.default_rng(0).standard_normal((1, adapter.in_dim)).astype("f4")
            for _ in range(200):
                adapter(one)
            started = time.perf_counter()
            for _ in range(2000):
                adapter(one)
            apply_us = (time.perf_counter() - started) / 2000 * 1e6
            judged = judged_set.kept(adapter) if judged_set is not None else {}
            adapters.append({**fitted, "sample": n, "apply_us_batch1": apply_us, **judged})
            print(f"adapter {kind} n={n}: {fitted['relative_recall_at_10']:.3f} of new recall@10"
                  f" {judged}")  # fmt: skip
    return adapters


class JudgedSet:
    """The split's judged queries against every chunk both models embed: the share of the new
    model's document recall@10 an adapter keeps on real queries (not generated ones)."""

    def __init__(self, kit: Any, queries: dict[str, str], qrels: dict[str, dict[str, int]]):
        import numpy as np

        from ragkit.evaluation.metrics import corpus_id_from_uri
        from ragkit.pipelines.migrate.adapter import _document_pairs

        migration = kit.store.open_migration("default")
        source, target = kit.collection(migration.source), kit.collection(migration.target)
        self.old, self.new, hashes = _document_pairs(kit, source, target)
        row_of = {h: i for i, h in enumerate(hashes)}
        ids = {i: h for i, h, _ in kit.store.chunk_hashes(source.chunking_fp)}
        rows = kit.store.chunk_rows(list(ids))
        self.doc_of = np.empty(len(hashes), dtype=object)
        for chunk_id, h in ids.items():
            if h in row_of and chunk_id in rows:
                self.doc_of[row_of[h]] = corpus_id_from_uri(rows[chunk_id]["uri"])
        qids = [q for q in sorted(queries) if q in qrels]
        self.relevant = [set(qrels[q]) for q in qids]
        encoder = kit.encoder_for(target)
        self.queries = np.asarray(encoder.encode_queries([queries[q] for q in qids]), "f4")
        self.native = self._recall(self.queries @ self.new.T)

    def _recall(self, scores: Any) -> float:
        import numpy as np

        top = np.argsort(-scores, axis=1)[:, :30]
        hits = 0
        for row, wanted in zip(top, self.relevant, strict=True):
            docs = list(dict.fromkeys(self.doc_of[row]))[:10]
            hits += bool(wanted & set(docs))
        return hits / len(self.relevant)

    def kept(self, adapter: Any) -> dict[str, float]:
        served = self._recall(adapter(self.queries) @ self.old.T)
        return {
            "judged_served_recall_at_10": served,
            "judged_new_recall_at_10": self.native,
            "judged_kept": served / self.native if self.native else 0.0,
        }


def _planned(kit: Any, plan: Any) -> Any:
    from ragkit.collection import Collection

    return Collection(kit.store, kit.root, plan.record)


def _report(info: dict[str, Any]) -> None:
    gate = info["cutover"]["gate"]
    print(_common.machine_line(info["machine"]))
    print(f"to {info['to']}: raw encode {info['raw_encode_rate']:.1f} chunks/s; backfill "
          f"{info['backfill_rate']:.1f} chunks/s ({info['backfill_rate'] / info['raw_encode_rate']:.2f}x), "
          f"encode inside the backfill {info['encode_rate_in_backfill']:.1f}/s; "
          f"from cache {info['backfill']['from_cache']} of {info['backfill']['chunks']}")  # fmt: skip
    print(f"gate ({gate['mode']}, {gate['queries']} judged queries): "
          f"{gate['source'][gate['mode']] * 100:.2f} -> {gate['target'][gate['mode']] * 100:.2f}; "
          f"dense {gate['source']['dense'] * 100:.2f} -> {gate['target']['dense'] * 100:.2f}; "
          f"{info['gate_decision'][:80]}")  # fmt: skip
    print(f"cutover swap {info['cutover']['swap_seconds'] * 1000:.1f} ms; rollback swap "
          f"{info['rollback']['swap_seconds'] * 1000:.1f} ms (command {info['rollback_wall_seconds']:.2f} s)")  # fmt: skip
    print(
        "| adapter | pairs | recall@10 kept | served / new recall@10 | agreement@10 | fit s | µs/query |"
    )
    print("|---|---|---|---|---|---|---|")
    for a in info["adapters"]:
        if "error" in a:
            print(f"| {a['kind']} | {a['sample']} | {a['error'][:60]} | | |")
        else:
            print(f"| {a['kind']} | {a['fit_pairs']} | {a['relative_recall_at_10']:.3f} | "
                  f"{a['served_recall_at_10']:.3f} / {a['new_recall_at_10']:.3f} | "
                  f"{a.get('judged_kept', 0):.3f} | {a.get('judged_served_recall_at_10', 0):.3f} / "
                  f"{a.get('judged_new_recall_at_10', 0):.3f} | "
                  f"{a['agreement_at_10']:.3f} | {a['fit_seconds']:.2f} | {a['apply_us_batch1']:.1f} |")  # fmt: skip
    print("| phase | queries | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for phase, q in info["queries"]["phases"].items():
        print(f"| {phase} | {q['n']} | {q['p50_ms']} | {q['p99_ms']} |")
    print(f"errors {info['queries']['errors']}, empty answers {info['queries']['empty']}")


if __name__ == "__main__":
    main()
