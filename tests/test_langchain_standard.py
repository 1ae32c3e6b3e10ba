"""LangChain's own standard test suites, run against the ragkit retriever and embeddings.

The suites' async tests are plain ``async def`` methods; in pytest-asyncio's strict mode they
need the ``asyncio`` mark, which the class-level mark gives them. pytest-asyncio then warns about
each sync test in the same class carrying the mark; that one warning is ignored by its text.
"""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("langchain_core", reason="the LangChain integration needs ragkit[langchain]")
pytest.importorskip("langchain_tests", reason="LangChain's standard tests need langchain-tests")
pytest.importorskip("pytest_asyncio", reason="LangChain's standard tests need pytest-asyncio")

from langchain_tests.integration_tests import (
    EmbeddingsIntegrationTests,
    RetrieversIntegrationTests,
)
from langchain_tests.unit_tests import EmbeddingsUnitTests

import ragkit
from ragkit.integrations.langchain import RagkitEmbeddings, RagkitRetriever

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings(
        "ignore:The test <Function .*> is marked with '@pytest.mark.asyncio' but it is not an "
        "async function:pytest.PytestWarning"
    ),
]


@pytest.fixture(scope="module")
def standard_workspace(tmp_path_factory, tiny_encoder):  # type: ignore[no-untyped-def]
    """Four chunks: enough for the suite's k=3 test; the query shares words with all of them."""
    root = tmp_path_factory.mktemp("langchain-standard")
    docs = root / "docs"
    docs.mkdir()
    (docs / "pets.md").write_text(
        "# Pets\n\n## Cats\n\nthe cat sat on the red apple\n\n## Dogs\n\nthe dog ate a green pear\n",
        encoding="utf-8",
    )
    (docs / "fruit.txt").write_text("the banana and the plum\n", encoding="utf-8")
    (docs / "net.md").write_text("# Network\n\nthe dns and the router\n", encoding="utf-8")
    kit = ragkit.open(root / "ws", encoder=tiny_encoder, create=True)
    assert kit.ingest(docs).chunks_added == 4
    yield kit
    kit.close()


class TestRagkitRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _use_workspace(self, standard_workspace) -> None:  # type: ignore[no-untyped-def]
        self.workspace = standard_workspace

    @property
    def retriever_constructor(self) -> type[RagkitRetriever]:
        return RagkitRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"workspace": self.workspace}

    @property
    def retriever_query_example(self) -> str:
        return "the dog and the cat"


class TestRagkitEmbeddingsUnitStandard(EmbeddingsUnitTests):
    @pytest.fixture(autouse=True)
    def _use_encoder(self, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
        self.encoder = tiny_encoder

    @property
    def embeddings_class(self) -> type[RagkitEmbeddings]:
        return RagkitEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": self.encoder}


class TestRagkitEmbeddingsIntegrationStandard(EmbeddingsIntegrationTests):
    @pytest.fixture(autouse=True)
    def _use_encoder(self, tiny_encoder) -> None:  # type: ignore[no-untyped-def]
        self.encoder = tiny_encoder

    @property
    def embeddings_class(self) -> type[RagkitEmbeddings]:
        return RagkitEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"encoder": self.encoder}
