"""Imports point down: cli → pipelines → connectors → core. The contracts live in pyproject.toml.

lint-imports reads the package from disk, and in the repository ``ragkit.connectors``,
``ragkit.pipelines`` and ``ragkit.cli`` are the folders ``connectors/``, ``pipelines/`` and
``cli/`` that setuptools maps into ``ragkit``. So the test lays the package out as the wheel
does (from ``[tool.setuptools] package-dir``) in a temporary folder and lints that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="the layering check needs ragkit[dev] (import-linter)")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = REPO / "pyproject.toml"


def contract_names() -> list[str]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return [contract["name"] for contract in config["contracts"]]


def installed_layout(target: Path) -> Path:
    """Copy the sources into ``target`` the way the wheel nests them; return ``target``."""
    mapping = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["package-dir"]
    for package, folder in sorted(mapping.items(), key=lambda item: item[0].count(".")):
        shutil.copytree(
            REPO / folder,
            target.joinpath(*package.split(".")),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    return target


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    # The click command itself, run by this interpreter: works whether or not the venv has the
    # ``lint-imports`` script (importlinter.cli has no ``__main__``).
    command = [sys.executable, "-c", "from importlinter.cli import lint_imports_command as c; c()"]
    # lint-imports puts its working directory first on sys.path: ``ragkit`` resolves to the copy.
    return subprocess.run(
        [*command, str(PYPROJECT), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return installed_layout(tmp_path_factory.mktemp("layout"))


def test_contracts_are_kept(layout: Path) -> None:
    result = lint_imports(layout)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in contract_names():
        assert f"{name} KEPT" in result.stdout, result.stdout
    # the mapped folders are part of the graph, not silently missing
    assert f"{len(contract_names())} kept, 0 broken" in result.stdout


def test_contracts_catch_an_import_that_points_up(tmp_path: Path) -> None:
    root = installed_layout(tmp_path)
    package = root / "ragkit"
    (package / "up_reach.py").write_text("import ragkit.pipelines.eval\nimport ragkit.cli.app\n")
    (package / "connectors" / "up_reach.py").write_text("import ragkit.pipelines.ingest\n")
    # the query path takes a CollectionSource; reaching for the whole workspace is refused
    (package / "retrieval" / "up_reach.py").write_text("import ragkit.workspace\n")
    # the facade exception covers exactly ingest and repair, not every pipeline
    with (package / "workspace.py").open("a") as handle:
        handle.write("\n\ndef _eval():\n    import ragkit.pipelines.eval\n")

    result = lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    for name in contract_names():
        assert f"{name} BROKEN" in result.stdout, result.stdout
    for line in (
        "ragkit.up_reach -> ragkit.pipelines.eval",
        "ragkit.up_reach -> ragkit.cli.app",
        "ragkit.workspace -> ragkit.pipelines.eval",
        "ragkit.connectors.up_reach -> ragkit.pipelines.ingest",
        "ragkit.retrieval.up_reach -> ragkit.workspace",
    ):
        assert line in result.stdout, result.stdout
