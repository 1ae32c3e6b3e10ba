"""Long documents ranked as documents: ragkit's chunked retrieval against whole-page baselines.

    python bench/longdocs.py [--sets python git postgres] [--root /tmp/ragkit-longdocs]
                             [--debian WORKSPACE] [--sweep]

Sets are built by ``longdocs_sets.py`` from Debian's documentation packages and ingested with
ragkit's HTML connector into ``ROOT/<set>/ws`` (re-ingesting is incremental; vectors come from
the embedding cache). Per set, nDCG@10 / MRR@10 / R@100 (pytrec_eval) of:

- ragkit as it ranked documents before ``[query] documents``: each channel's top chunks, chunk
  runs fused by RRF in hybrid mode, a document scored by its best chunk;
- ragkit's document scorings: each channel's chunk run grouped into documents (``max`` or
  ``decayed``: s1 + λ·s2 + λ²·s3), document runs fused by RRF in hybrid mode — the same
  functions ``kit.query(..., documents=True)`` uses (``ragkit.retrieval.grouping``);
- a lead chunk: the dense run restricted to each document's first chunk, fused by RRF with the
  grouped channels;
- ragkit's document vectors (``[index] document_vectors``): a second collection over the same
  chunk rows (``kit.create_collection("docvec", index=... document_vectors=True)``: chunk
  vectors from the cache, only the documents' own vectors encoded), queried through
  ``kit.query_many(..., documents="max")``, the path ``ragkit query --documents`` takes (the
  document vectors' run weighs the share of documents longer than one chunk), fused by DBSF
  (``[fusion] method``'s default) and by RRF (the default before); and,
  bench-only, its document vectors' run fused with whole-page BM25 as a fourth run;
- the naive baselines: the first 256 tokens of each page embedded by the same encoder
  (all-MiniLM-L6-v2 truncates its input there), BM25 (bm25s, English stemmer and stopwords,
  as ragkit's) over whole pages, and the RRF (k=60) of the two.

``--debian WORKSPACE`` evaluates ragkit's rows on debian-packages dev in that workspace (an
ingested copy of the corpus; the whole-page baselines are not run there, its documents are
short). ``--sweep`` adds more λ and chunk counts. The PostgreSQL set also reports, per question
of ``bench/postgres_questions.jsonl``, whether a right page is in the hybrid top 3.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common
import longdocs_sets
import numpy as np

DEPTH = 300  # chunks per channel; eval_workspace asks for 3 × 100
Run = dict[str, dict[str, float]]
DOCVEC = "docvec"  # the collection with document vectors, beside the workspace's default


def _chunk_map(kit: Any) -> tuple[dict[int, str], dict[str, int]]:
    """chunk id → corpus id, and corpus id → its first chunk (ordinal 0), of the collection."""
    from ragkit.evaluation import corpus_id_from_uri

    collection = kit.collection()
    db = sqlite3.connect(f"file:{kit.root / 'store.sqlite'}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT c.id, d.uri, c.ordinal FROM chunks c JOIN documents d ON d.doc_id = c.doc_id"
        " WHERE c.chunking_fp = ?",
        (collection.chunking_fp,),
    ).fetchall()
    db.close()
    doc_of = {int(i): corpus_id_from_uri(uri) for i, uri, _ in rows}
    lead = {corpus_id_from_uri(uri): int(i) for i, uri, ordinal in rows if ordinal == 0}
    return doc_of, lead


def _ranked(run: Mapping[Any, float]) -> list[tuple[Any, float]]:
    return sorted(run.items(), key=lambda x: (-x[1], str(x[0])))


def _rrf(
    runs: list[Mapping[str, float]], k: int = 60, weights: list[float] | None = None
) -> dict[str, float]:
    from ragkit.retrieval.fusion import fuse

    return dict(fuse(runs, method="rrf", k=k, weights=weights))


def _top(run: Mapping[str, float], n: int = 100) -> dict[str, float]:
    return dict(_ranked(run)[:n])


def _ragkit_runs(kit: Any, texts: list[str], sweep: bool) -> dict[str, list[dict[str, float]]]:
    """Per system, one document run per query, from the workspace's own channels."""
    from ragkit.retrieval.fusion import fuse
    from ragkit.retrieval.grouping import DocumentScoring, group_run

    doc_of, lead = _chunk_map(kit)
    dense_runs, sparse_runs = kit.channel_runs(texts, depth=DEPTH, channels=("dense", "sparse"))
    collection = kit.collection()
    dense_index = kit.searcher._reader(collection)[0]
    vectors = kit.encoder_for(collection).encode_queries(texts)
    lead_ids = np.array(sorted(lead.values()), dtype=np.int64)
    scores, ids = dense_index.search(vectors, 100, allowed_ids=lead_ids)
    lead_runs = [
        {doc_of[int(i)]: float(s) for s, i in zip(row_s, row_i, strict=True) if i >= 0}
        for row_s, row_i in zip(scores, ids, strict=True)
    ]
    scorings = {"max": DocumentScoring(method="max")}
    grid = [(0.5, 3)] + ([(0.25, 3), (0.75, 3), (0.5, 2), (0.5, 5), (0.5, 10)] if sweep else [])
    for decay, chunks in grid:
        scorings[f"decayed λ={decay} n={chunks}"] = DocumentScoring(
            method="decayed", decay=decay, chunks=chunks
        )
    out: dict[str, list[dict[str, float]]] = {}
    out["dense · best chunk (before)"] = [group_run(r, doc_of, scorings["max"]) for r in dense_runs]
    out["sparse · best chunk (before)"] = [
        group_run(r, doc_of, scorings["max"]) for r in sparse_runs
    ]
    out["hybrid · chunk RRF, best chunk (before)"] = [
        group_run(dict(fuse([d, s], k=60)), doc_of, scorings["max"])
        for d, s in zip(dense_runs, sparse_runs, strict=True)
    ]
    out["dense · lead chunk only"] = lead_runs
    for name, scoring in scorings.items():
        dense = [group_run(r, doc_of, scoring) for r in dense_runs]
        sparse = [group_run(r, doc_of, scoring) for r in sparse_runs]
        if name != "max":
            out[f"dense · {name}"] = dense
            out[f"sparse · {name}"] = sparse
        out[f"hybrid · document RRF, {name}"] = [
            _rrf([d, s]) for d, s in zip(dense, sparse, strict=True)
        ]
        if name in ("max", "decayed λ=0.5 n=3"):
            out[f"dense · {name} + lead RRF"] = [
                _rrf([d, w]) for d, w in zip(dense, lead_runs, strict=True)
            ]
            out[f"hybrid · document RRF, {name} + lead"] = [
                _rrf([d, s, w]) for d, s, w in zip(dense, sparse, lead_runs, strict=True)
            ]
    return out


def _document_vector_collection(kit: Any) -> Any:
    """The collection with ``[index] document_vectors`` over the default's chunk rows."""
    import dataclasses

    found = kit.collection(DOCVEC)
    if found is None:
        started = time.perf_counter()
        index = dataclasses.replace(kit.config.index, document_vectors=True)
        found = kit.create_collection(DOCVEC, index=index, state="live")
        print(f"{DOCVEC}: built in {time.perf_counter() - started:.1f} s")
    return found


def _document_vector_runs(
    kit: Any, texts: list[str], grouped: dict[str, list[dict[str, float]]]
) -> dict[str, list[dict[str, float]]]:
    """ragkit's own query path with document vectors, and the document vectors' run alone."""
    from ragkit.config import FusionConfig
    from ragkit.document_vectors import load_document_index
    from ragkit.evaluation import corpus_id_from_uri
    from ragkit.retrieval.fusion import fuse

    collection = _document_vector_collection(kit)
    out: dict[str, list[dict[str, float]]] = {}
    configured, sections = kit.config.fusion, kit.config.sections_set
    for method in ("dbsf", "rrf"):  # the default since the fusion measurement, and before
        kit.config.set_fusion(FusionConfig(method=method))  # over the collection's own
        for mode, scoring in (
            ("dense", "max"),
            ("hybrid", "max"),
            ("dense", "decayed"),
            ("hybrid", "decayed"),
        ):
            hits = kit.query_many(texts, k=100, mode=mode, documents=scoring, alias=DOCVEC)
            name = "documents=True" if scoring == "max" else 'documents="decayed"'
            out[f"{mode} · {name} + document vectors, {method.upper()}"] = [
                {corpus_id_from_uri(h.uri): h.score for h in row} for row in hits
            ]
    kit.config.fusion, kit.config.sections_set = configured, sections
    vectors = np.asarray(kit.encoder_for(collection).encode_queries(texts), np.float32)
    scores, ids = load_document_index(collection).search(vectors, 100)
    document_of, _ = _chunk_map(kit)
    out["dense · document vectors alone"] = [
        {document_of[int(i)]: float(v) for v, i in zip(row_s, row_i, strict=True) if i >= 0}
        for row_s, row_i in zip(scores, ids, strict=True)
    ]
    share = kit.store.multi_chunk_share(collection.chunking_fp)  # the document run's weight
    print(f"{DOCVEC}: {share:.4f} of the documents are longer than one chunk")
    for method in ("dbsf", "rrf"):
        out[f"_check · hybrid document {method.upper()}, max + document vectors"] = [
            dict(fuse([d, s, w], method=method, weights=[1.0, 1.0, share]))
            for d, s, w in zip(
                grouped["dense · best chunk (before)"],
                grouped["sparse · best chunk (before)"],
                out["dense · document vectors alone"],
                strict=True,
            )
        ]
    return out


def _first_256_dense(kit: Any, out: Path, corpus: list[dict[str, str]]) -> np.ndarray:
    cache = out / "first256.npy"
    if cache.is_file():
        return np.load(cache)
    encoder = kit.encoder_for(kit.collection())
    texts = [f"{row['title']}\n\n{row['text']}" for row in corpus]
    vectors = np.asarray(encoder.encode_documents(texts), dtype=np.float32)
    np.save(cache, vectors)
    return vectors


def _baselines(kit: Any, out: Path, texts: list[str]) -> dict[str, list[dict[str, float]]]:
    import bm25s
    import Stemmer

    corpus = [json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()]
    ids = [row["_id"] for row in corpus]
    docs = _first_256_dense(kit, out, corpus)
    queries = np.asarray(kit.encoder_for(kit.collection()).encode_queries(texts), np.float32)
    sims = queries @ docs.T
    dense = []
    for row in sims:
        top = np.argsort(-row)[:100]
        dense.append({ids[j]: float(row[j]) for j in top})
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    page_texts = [f"{row['title']}\n\n{row['text']}" for row in corpus]
    retriever.index(
        bm25s.tokenize(page_texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    found, scores = retriever.retrieve(tokens, k=min(100, len(ids)), show_progress=False)
    bm25 = [
        {ids[int(j)]: float(s) for j, s in zip(row_j, row_s, strict=True) if s > 0}
        for row_j, row_s in zip(found, scores, strict=True)
    ]
    return {
        "naive · first 256 tokens dense": dense,
        "naive · whole-page BM25": bm25,
        "naive · RRF(first 256 dense, whole-page BM25)": [
            _rrf([d, b]) for d, b in zip(dense, bm25, strict=True)
        ],
    }


def _with_page_runs(
    systems: dict[str, list[dict[str, float]]],
) -> dict[str, list[dict[str, float]]]:
    """ragkit's grouped channels fused with whole-page BM25 (bench-only, not in ragkit),
    beside and without ragkit's document vectors."""
    dense = systems["dense · best chunk (before)"]
    sparse = systems["sparse · best chunk (before)"]
    vectors = systems["dense · document vectors alone"]
    bm25 = systems["naive · whole-page BM25"]
    combos = {
        "hybrid · document RRF, max + whole-page BM25": [dense, sparse, bm25],
        "hybrid · documents=True + document vectors + whole-page BM25": [
            dense,
            sparse,
            vectors,
            bm25,
        ],
    }
    return {
        name: [_rrf(list(runs)) for runs in zip(*parts, strict=True)]
        for name, parts in combos.items()
    }


def _evaluate(
    systems: dict[str, list[dict[str, float]]], qids: list[str], qrels: Any
) -> list[list[Any]]:
    from ragkit.evaluation import evaluate

    rows = []
    for name, runs in systems.items():
        run = {q: _top(r) for q, r in zip(qids, runs, strict=True)}
        m = evaluate(run, qrels, ("ndcg@10", "mrr@10", "recall@100")).mean
        rows.append(
            [
                name,
                round(100 * m["ndcg@10"], 2),
                round(100 * m["mrr@10"], 2),
                round(100 * m["recall@100"], 2),
            ]
        )
    return rows


def _top3(
    systems: dict[str, list[dict[str, float]]],
    names: list[str],
    queries: dict[str, str],
    qids: list[str],
    qrels: Any,
) -> list[list[Any]]:
    rows = []
    for position, qid in enumerate(qids):
        if not qid.startswith("pg"):
            continue
        row: list[Any] = [qid, queries[qid]]
        for name in names:
            top = [doc for doc, _ in _ranked(systems[name][position])[:3]]
            hit = next((doc for doc in top if qrels[qid].get(doc, 0) > 0), None)
            row.append(f"yes ({hit})" if hit else f"no ({top[0] if top else '-'})")
        rows.append(row)
    return rows


def _run_set(name: str, root: Path, sweep: bool, workspace: Path | None = None) -> dict[str, Any]:
    import ragkit
    from ragkit.evaluation import load_beir

    if workspace is None:
        out = longdocs_sets.build(name, root)
        kit = ragkit.open(out / "ws", create=True)
        started = time.perf_counter()
        ingest = kit.ingest(out / "pages").to_dict()
        split = "test"
    else:
        out, split = _common.DEFAULT_DATASET, "dev"
        kit = ragkit.open(workspace, create=False)
        started = time.perf_counter()
        ingest = {}
    ingest_s = time.perf_counter() - started
    try:
        data = load_beir(out, split)
        qids = [q for q in sorted(data.queries) if q in data.qrels]
        texts = [data.queries[q] for q in qids]
        started = time.perf_counter()
        systems = _ragkit_runs(kit, texts, sweep)
        query_s = time.perf_counter() - started
        systems.update(_document_vector_runs(kit, texts, systems))
        if workspace is None:
            systems.update(_baselines(kit, out, texts))
            systems.update(_with_page_runs(systems))
        chunks = kit.store.count_chunks(kit.collection().chunking_fp)
    finally:
        kit.close()
    rows = _evaluate(systems, qids, data.qrels)
    columns = ["system", "nDCG@10", "MRR@10", "R@100"]
    title = f"{name} · {len(qids)} queries · {chunks} chunks"
    _common.print_table(title, columns, rows, caption=_common.machine_line())
    print(_common.markdown_table(columns, rows))
    result: dict[str, Any] = {
        "set": name,
        "queries": len(qids),
        "chunks": chunks,
        "rows": rows,
        "ingest": ingest,
        "ingest_s": round(ingest_s, 1),
        "query_s": round(query_s, 1),
    }
    if name == "postgres":
        names = [
            "hybrid · chunk RRF, best chunk (before)",
            "hybrid · document RRF, max",
            "hybrid · documents=True + document vectors, RRF",
            "hybrid · documents=True + document vectors, DBSF",
            "hybrid · document RRF, decayed λ=0.5 n=3",
            'hybrid · documents="decayed" + document vectors, RRF',
            'hybrid · documents="decayed" + document vectors, DBSF',
        ]
        top3 = _top3(systems, names, data.queries, qids, data.qrels)
        columns = ["id", "question", "before", "document RRF", "+ document vectors (RRF)"]
        columns += ["+ document vectors (DBSF)", "decayed", "decayed + document vectors (RRF)"]
        columns += ["decayed + document vectors (DBSF)"]
        print(_common.markdown_table(columns, top3))
        for position, system in enumerate(names):
            found = sum(row[2 + position].startswith("yes") for row in top3)
            print(f"{system}: {found}/{len(top3)} questions with a right page in the top 3")
        result["top3"] = top3
    return result


def main() -> None:
    _common.offline()
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--sets", nargs="*", default=["python", "git", "postgres"])
    p.add_argument("--root", type=Path, default=Path("/tmp/ragkit-longdocs"))
    p.add_argument("--debian", type=Path, default=None, help="a debian-packages workspace")
    p.add_argument("--sweep", action="store_true", help="more decay settings")
    args = p.parse_args()
    results = [_run_set(name, args.root, args.sweep) for name in args.sets]
    if args.debian is not None:
        results.append(_run_set("debian-packages dev", args.root, args.sweep, args.debian))
    _common.write_result("longdocs", {"sets": results})


if __name__ == "__main__":
    main()
