"""The wheel must carry every sub-package of the four source folders."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FOLDERS = {
    "ragkit": "ragkit",
    "connectors": "ragkit.connectors",
    "pipelines": "ragkit.pipelines",
    "cli": "ragkit.cli",
}


def source_packages() -> set[str]:
    packages = set()
    for folder, package in FOLDERS.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            packages.add(".".join((package, *relative)))
    return packages


def test_pyproject_lists_every_package() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert len(config["packages"]) == len(set(config["packages"])), "a package is listed twice"
    assert set(config["packages"]) == source_packages()
    assert config["package-dir"] == {v: k for k, v in FOLDERS.items()}


@pytest.mark.slow
def test_built_wheel_holds_every_subpackage(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("ragkit-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in source_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    assert "ragkit/connectors/markdown.py" in names
    assert "ragkit/pipelines/ingest.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "ragkit = ragkit.cli.app:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
