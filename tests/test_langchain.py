"""The LangChain adapters: documents and metadata from real hits, k/where, sync = async, vectors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="the LangChain integration needs ragkit[langchain]")

import ragkit
from ragkit.encoders import DenseEncoder
from ragkit.errors import ConfigError, MissingDependencyError, WorkspaceError
from ragkit.integrations.langchain import RagkitEmbeddings, RagkitRetriever


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_encoder):  # type: ignore[no-untyped-def]
    """One workspace for the module: ingesting is the slow part, and every test only reads."""
    root = tmp_path_factory.mktemp("langchain")
    docs = root / "docs"
    write(
        docs / "pets.md",
        "# Pets\n\n## Cats\n\nthe cat sat on the red apple\n\n## Dogs\n\nthe dog ate a green pear\n",
    )
    write(docs / "fruit.txt", "banana cherry grape lemon orange\n\nplum and yellow lemon\n")
    write(docs / "sub" / "net.md", "# Network\n\ndns dhcp subnet router\n")
    kit = ragkit.open(root / "ws", encoder=tiny_encoder, create=True)
    report = kit.ingest(docs)
    assert report.chunks_added == 4
    yield kit
    kit.close()


def test_documents_carry_the_hit_text_id_and_metadata(indexed) -> None:  # type: ignore[no-untyped-def]
    docs = RagkitRetriever(workspace=indexed, k=2).invoke("dog pear")
    hits = indexed.query("dog pear", k=2)
    assert len(docs) == len(hits) == 2
    top = docs[0]
    assert top.page_content == "the dog ate a green pear"
    assert top.id == hits[0].chunk_id
    assert top.metadata["uri"] == "pets.md"
    assert top.metadata["title"] == hits[0].title
    assert top.metadata["headings"] == ["Pets", "Dogs"]
    assert top.metadata["format"] == "md" and "source" in top.metadata
    for doc, hit in zip(docs, hits):
        assert doc.metadata == {
            **hit.metadata,
            "score": hit.score,
            "uri": hit.uri,
            "title": hit.title,
            "headings": list(hit.headings),
            "chunk_id": hit.chunk_id,
            "doc_id": hit.doc_id,
            "rank": hit.rank,
        }
    assert [d.metadata["rank"] for d in docs] == [1, 2]
    assert docs[0].metadata["score"] >= docs[1].metadata["score"]


def test_k_from_the_constructor_and_per_call(indexed) -> None:  # type: ignore[no-untyped-def]
    retriever = RagkitRetriever(workspace=indexed, k=1)
    assert len(retriever.invoke("lemon")) == 1
    assert len(retriever.invoke("lemon", k=3)) == 3
    assert len(RagkitRetriever(workspace=indexed).invoke("lemon")) == 4  # default k=4, 4 chunks
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        RagkitRetriever(workspace=indexed, k=0)


@pytest.mark.parametrize(
    "where", ["uri=sub/*", ["format=md", "uri!=pets.md"], {"uri": "sub/net.md"}]
)
def test_where_filters_documents(indexed, where) -> None:  # type: ignore[no-untyped-def]
    unfiltered = RagkitRetriever(workspace=indexed, k=4).invoke("the dog ate a green pear")
    assert unfiltered[0].metadata["uri"] == "pets.md"
    docs = RagkitRetriever(workspace=indexed, k=4, where=where).invoke("the dog ate a green pear")
    assert [d.metadata["uri"] for d in docs] == ["sub/net.md"]
    per_call = RagkitRetriever(workspace=indexed, k=4).invoke("dog pear", where=where)
    assert [d.metadata["uri"] for d in per_call] == ["sub/net.md"]


def test_a_filter_matching_nothing_returns_no_documents(indexed) -> None:  # type: ignore[no-untyped-def]
    assert RagkitRetriever(workspace=indexed, where={"format": "pdf"}).invoke("lemon") == []


def test_mode_is_passed_to_the_workspace(indexed) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match="query mode 'telepathy'"):
        RagkitRetriever(workspace=indexed, mode="telepathy").invoke("lemon")
    assert len(RagkitRetriever(workspace=indexed, mode="dense", k=2).invoke("lemon")) == 2


class ThreadRecorder:
    """Delegates to a workspace and notes which thread ran each query."""

    def __init__(self, workspace: ragkit.Workspace) -> None:
        self.workspace = workspace
        self.threads: list[int] = []

    def query(self, text: str, **kwargs: Any) -> list[ragkit.Hit]:
        self.threads.append(threading.get_ident())
        return self.workspace.query(text, **kwargs)


def test_invoke_and_ainvoke_agree_and_async_runs_off_the_loop(indexed) -> None:  # type: ignore[no-untyped-def]
    recorder = ThreadRecorder(indexed)
    retriever = RagkitRetriever(workspace=recorder, k=3, where="format=md")
    sync_docs = retriever.invoke("cat apple")

    async def main() -> tuple[list[Any], int]:
        return await retriever.ainvoke("cat apple"), threading.get_ident()

    async_docs, loop_thread = asyncio.run(main())
    assert async_docs == sync_docs and len(sync_docs) == 3
    assert [d.metadata["uri"] for d in sync_docs].count("pets.md") == 2
    assert recorder.threads[0] == threading.get_ident()
    assert recorder.threads[1] != loop_thread
    per_call = asyncio.run(retriever.ainvoke("cat apple", k=1, where="format=txt"))
    assert [d.metadata["uri"] for d in per_call] == ["fruit.txt"]


def test_batch_returns_one_list_per_query(indexed) -> None:  # type: ignore[no-untyped-def]
    retriever = RagkitRetriever(workspace=indexed, k=1)
    results = retriever.batch(["dog pear", "dns router"])
    assert [[d.metadata["uri"] for d in docs] for docs in results] == [["pets.md"], ["sub/net.md"]]


def test_from_path_opens_an_existing_workspace(indexed, tiny_encoder, tmp_path) -> None:  # type: ignore[no-untyped-def]
    retriever = RagkitRetriever.from_path(
        indexed.root, encoder=tiny_encoder, k=2, where="format=md"
    )
    try:
        assert (retriever.k, retriever.where) == (2, "format=md")
        docs = retriever.invoke("dog pear")
        assert [d.id for d in docs] == [h.chunk_id for h in indexed.query("dog pear", k=2)]
    finally:
        retriever.workspace.close()
    with pytest.raises(WorkspaceError, match="no ragkit workspace here"):
        RagkitRetriever.from_path(tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


@pytest.fixture(scope="module")
def prompted_encoder(tiny_model) -> DenseEncoder:  # type: ignore[no-untyped-def]
    """Different prompts for queries and documents, so mixing them up changes the vectors."""
    return DenseEncoder(
        tiny_model, name="tiny-prompted", query_prompt="cat ", document_prompt="dog "
    )


def test_embeddings_are_the_encoder_vectors_with_the_right_prompt(prompted_encoder) -> None:  # type: ignore[no-untyped-def]
    embeddings = RagkitEmbeddings(prompted_encoder)
    texts = ["banana cherry", "dns router", "the red apple"]
    documents = embeddings.embed_documents(texts)
    query = embeddings.embed_query("banana cherry")
    assert isinstance(documents[0][0], float) and isinstance(query[0], float)
    np.testing.assert_array_equal(
        np.array(documents, dtype=np.float32), prompted_encoder.encode_documents(texts)
    )
    np.testing.assert_array_equal(
        np.array(query, dtype=np.float32), prompted_encoder.encode_queries(["banana cherry"])[0]
    )
    assert len(query) == prompted_encoder.dim
    assert not np.allclose(query, documents[0])  # the query prompt, not the document prompt
    assert embeddings.embed_documents([]) == []


def test_async_embeddings_equal_sync(prompted_encoder) -> None:  # type: ignore[no-untyped-def]
    embeddings = RagkitEmbeddings(prompted_encoder)

    async def main() -> tuple[list[list[float]], list[float]]:
        return await embeddings.aembed_documents(["plum", "grape"]), await embeddings.aembed_query(
            "plum"
        )

    documents, query = asyncio.run(main())
    assert documents == embeddings.embed_documents(["plum", "grape"])
    assert query == embeddings.embed_query("plum")


def test_embeddings_of_a_workspace_use_its_encoder(indexed, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
    embeddings = RagkitEmbeddings(indexed)
    assert embeddings.encoder is tiny_encoder
    np.testing.assert_array_equal(
        np.array(embeddings.embed_query("dog pear"), dtype=np.float32),
        tiny_encoder.encode_queries(["dog pear"])[0],
    )


def test_missing_langchain_names_the_extra(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # None in sys.modules makes an import fail as if the package were not installed; the
    # submodules need it too, or ``from langchain_core.documents import`` finds them cached.
    for name in [n for n in sys.modules if n.partition(".")[0] == "langchain_core"]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "ragkit.integrations.langchain")
    with pytest.raises(MissingDependencyError, match=r"pip install 'ragkit\[langchain\]'") as info:
        import ragkit.integrations.langchain  # noqa: F401
    assert info.value.package == "langchain-core" and info.value.extra == "langchain"


def test_ragkit_imports_without_langchain() -> None:
    code = (
        "import sys; sys.modules['langchain_core'] = None; import ragkit, ragkit.integrations; "
        "print(sorted(m for m in sys.modules if m.startswith('langchain')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "['langchain_core']"  # only the blocker planted above
