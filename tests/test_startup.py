"""Commands that never encode must not import torch or sentence-transformers.

Each entry point runs in a fresh interpreter (imports cached by the test process would hide
the cost); the child reports which heavy stacks it had imported when it finished.
``bench/startup.py`` measures the time these entry points take.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import ragkit

_CHILD = """
import contextlib, io, json, sys
out = io.StringIO()
code = 0
with contextlib.redirect_stdout(out):
    if sys.argv[1] == "-c":
        exec(sys.argv[2])
    else:
        sys.argv = ["ragkit", *sys.argv[1:]]
        from ragkit.cli.app import main
        try:
            main()
        except SystemExit as exit:
            code = exit.code or 0
heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
print(json.dumps({"code": code, "heavy": heavy, "stdout": out.getvalue()}))
"""


def run_fresh(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "statement",
    [
        "import ragkit",
        "import ragkit.errors",
        "import ragkit.connectors",
        "import ragkit.config",
        "import ragkit.store",
        "import ragkit.chunking",
        "from ragkit import Hit, RagkitError",
    ],
)
def test_imports_leave_torch_out(statement: str) -> None:
    result = run_fresh("-c", statement)
    assert result["heavy"] == [], f"{statement!r} imported {result['heavy']}"


def test_help_leaves_torch_out() -> None:
    result = run_fresh("--help")
    assert result["code"] == 0
    assert "status" in result["stdout"] and "query" in result["stdout"]
    assert result["heavy"] == []


def test_status_reads_a_workspace_without_the_encoder(workspace, docs: Path) -> None:  # type: ignore[no-untyped-def]
    workspace.ingest(docs)
    workspace.close()
    result = run_fresh("status", "-w", str(workspace.root), "--json")
    assert result["code"] == 0, result["stdout"]
    info = json.loads(result["stdout"])
    assert info["counts"]["documents"] == 3
    assert info["collections"][0]["aliases"] == ["default"]
    assert result["heavy"] == []


def test_public_names_resolve_lazily() -> None:
    from ragkit import Hit
    from ragkit.documents import Hit as DocumentsHit
    from ragkit.workspace import Workspace, open_workspace

    assert Hit is DocumentsHit
    assert ragkit.open is open_workspace and ragkit.Workspace is Workspace
    for name in ragkit.__all__:
        assert getattr(ragkit, name) is not None, name
    assert set(ragkit.__all__) <= set(dir(ragkit))
    with pytest.raises(AttributeError, match="no_such_name"):
        ragkit.no_such_name  # noqa: B018


def test_version_leaves_torch_out() -> None:
    result = run_fresh("--version")
    assert result["code"] == 0
    assert result["stdout"] == f"ragkit {ragkit.__version__}\n"
    assert result["heavy"] == []
