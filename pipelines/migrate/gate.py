"""The evaluation gate of a cutover: the shadow must not be worse than the live collection.

Judged queries come from ``--queries/--qrels`` (a BEIR queries.jsonl and a qrels TSV) or from
the workspace's own ``eval/`` folder (``ragkit migrate start --queries ... --qrels ...`` copies
them there). Without judgments the gate generates queries from the corpus (inverse cloze: a
sentence or heading of a sampled chunk, its document counted relevant) and says so in the
result: "generated" queries measure whether each collection finds the text a query was cut
from, which is weaker evidence than judged queries but still catches a broken model. Both
report overlap@10 too: the share of the top-10 documents the two collections have in common.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ragkit.errors import ConfigError
from ragkit.evaluation.beir import load_qrels, read_queries
from ragkit.evaluation.metrics import corpus_id_from_uri, evaluate, hits_to_run
from ragkit.training.pairs import InverseCloze
from ragkit.workspace import Workspace

__all__ = ["GateResult", "eval_set", "evaluate_gate", "generated_queries", "store_eval_set"]

EVAL_DIR = "eval"
METRIC = "ndcg@10"


@dataclass
class GateResult:
    metric: str
    queries: int
    judged: bool
    source: dict[str, float]  # mode -> metric
    target: dict[str, float]
    overlap_at_10: float
    mode: str  # the mode the decision is made on
    tolerance: float
    passed: bool
    seconds: float
    forced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        kind = "judged" if self.judged else "generated from the corpus (pseudo-judged)"
        before, after = self.source[self.mode], self.target[self.mode]
        return (
            f"{self.metric} ({self.mode}) on {self.queries} queries {kind}: live "
            f"{before * 100:.2f} → shadow {after * 100:.2f} ({(after - before) * 100:+.2f}); "
            f"overlap@10 {self.overlap_at_10:.2f}"
        )


def store_eval_set(workspace: Workspace, queries: Path, qrels: Path) -> None:
    """Keep judged queries with the workspace (``eval/queries.jsonl``, ``eval/qrels.tsv``)."""
    read_queries(queries), load_qrels(qrels)  # refuse a bad file before copying it
    folder = workspace.root / EVAL_DIR
    folder.mkdir(exist_ok=True)
    shutil.copyfile(queries, folder / "queries.jsonl")
    shutil.copyfile(qrels, folder / "qrels.tsv")


def eval_set(
    workspace: Workspace, queries: Path | None = None, qrels: Path | None = None
) -> tuple[dict[str, str], dict[str, dict[str, int]]] | None:
    """Judged queries given, else stored with the workspace, else None."""
    if (queries is None) != (qrels is None):
        raise ConfigError("give --queries and --qrels together")
    if queries is None:
        folder = workspace.root / EVAL_DIR
        queries, qrels = folder / "queries.jsonl", folder / "qrels.tsv"
        if not (queries.is_file() and qrels.is_file()):
            return None
    assert qrels is not None
    judged = load_qrels(qrels)
    texts = {q: t for q, t in read_queries(queries).items() if q in judged}
    if not texts:
        raise ConfigError(f"{queries}: no query has a judgment in {qrels}")
    return texts, judged


def generated_queries(
    workspace: Workspace, collection: str, n: int = 300, seed: int = 0
) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Inverse-cloze queries from a seeded sample of the collection's chunks; the document a
    query was cut from is its one relevant document (keyed by uri)."""
    found = workspace.collection(collection)
    store = workspace.store
    ids = [int(i) for i in store.all_chunk_ids(found.chunking_fp if found else None)]
    if len(ids) > n * 3:
        ids = sorted(random.Random(seed).sample(ids, n * 3))
    rows = store.chunk_rows(ids)
    generator = InverseCloze(seed=seed, title_rate=0.0)
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for chunk_id in ids:
        row = rows.get(chunk_id)
        if row is None:
            continue
        headings = tuple(json.loads(row["headings_json"]))
        for text in generator(row["text"], row["title"] or "", headings):
            text = " ".join(text.split())
            if len(text.split()) >= 4:
                qid = f"g{chunk_id}"
                queries[qid], qrels[qid] = text, {row["uri"]: 1}
        if len(queries) >= n:
            break
    if not queries:
        raise ConfigError(f"{workspace.root}: no query could be generated from the corpus")
    return queries, qrels


def evaluate_gate(
    workspace: Workspace,
    source: str,
    target: str,
    *,
    judged: tuple[dict[str, str], dict[str, dict[str, int]]] | None = None,
    tolerance: float = 0.0,
    max_queries: int = 1000,
) -> GateResult:
    """``target`` passes when its metric is at least ``source``'s minus ``tolerance`` on
    dense and on the mode both answer by default (hybrid when both have a sparse index):
    score fusion can make a broken dense channel all but invisible in hybrid (DBSF maps a run
    of equal scores to one constant), so hybrid alone would let it through. ``mode`` is the
    first of them the target is worse on, else the default one."""
    started = time.perf_counter()
    if judged is None:
        queries, qrels = generated_queries(workspace, source)
        key = _uri
    else:
        queries, qrels = judged
        key = corpus_id_from_uri
    qids = list(queries)[:max_queries]
    texts = [queries[q] for q in qids]
    modes_s, modes_t = workspace.available_modes(source), workspace.available_modes(target)
    mode = "hybrid" if "hybrid" in modes_s and "hybrid" in modes_t else "dense"
    scores: dict[str, dict[str, float]] = {"source": {}, "target": {}}
    top: dict[str, dict[str, list[str]]] = {"source": {}, "target": {}}
    for side, name in (("source", source), ("target", target)):
        for each in dict.fromkeys(("dense", mode)):
            hits = workspace.query_many(texts, k=30, mode=each, collection=name)
            run = hits_to_run(dict(zip(qids, hits, strict=True)), doc_key=lambda h: key(h.uri))
            result = evaluate(run, qrels, [METRIC])
            scores[side][each] = float(result.mean[METRIC])
            if each == mode:
                top[side] = {
                    q: [d for d, _ in sorted(docs.items(), key=lambda x: -x[1])[:10]]
                    for q, docs in run.items()
                }
    overlaps = [
        len(set(top["source"].get(q, [])) & set(top["target"].get(q, []))) / 10 for q in qids
    ]
    gated = dict.fromkeys((mode, "dense"))  # the default mode first, then dense if it differs
    worse = [m for m in gated if scores["target"][m] < scores["source"][m] - tolerance]
    passed = not worse
    mode = worse[0] if worse else mode
    return GateResult(
        metric="nDCG@10",
        queries=len(qids),
        judged=judged is not None,
        source=scores["source"],
        target=scores["target"],
        overlap_at_10=sum(overlaps) / len(overlaps) if overlaps else 0.0,
        mode=mode,
        tolerance=tolerance,
        passed=passed,
        seconds=time.perf_counter() - started,
    )


def _uri(uri: str) -> str:
    return uri
