"""TREC run files: the plain-text format trec_eval, ranx and every IR paper's tooling read.

Writing runs to disk lets a result be re-scored later, compared with another tool's numbers, or
tested for significance against a run made months apart, without re-running retrieval.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ragkit.errors import ConfigError, ConnectorError

__all__ = ["read_trec_run", "write_trec_run"]


def write_trec_run(
    run: Mapping[str, Mapping[str, float]], path: str | Path, tag: str = "ragkit"
) -> Path:
    """Write ``qid Q0 docid rank score tag`` lines, each query's documents by descending score.

    The file is written to a temporary file beside ``path`` and renamed into place, so a crash
    or a full disk never leaves a truncated run that would silently score lower.
    """
    if not tag or any(char.isspace() for char in tag):
        raise ConfigError(f"run tag {tag!r} must be non-empty and contain no whitespace")
    lines = []
    for qid in sorted(run):
        _check_field("query id", qid)
        ranked = sorted(run[qid].items(), key=lambda item: (-float(item[1]), item[0]))
        for rank, (doc, score) in enumerate(ranked, start=1):
            _check_field("document id", doc)
            lines.append(f"{qid} Q0 {doc} {rank} {float(score)!r} {tag}\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as file:
            file.writelines(lines)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def read_trec_run(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a TREC run file back into ``{qid: {docid: score}}``; ranks and tags are dropped.

    trec_eval ranks by score, not by the rank column, so the scores are what we keep.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConnectorError(str(path), f"cannot read run file: {error}") from error
    run: dict[str, dict[str, float]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 6:
            raise ConnectorError(
                str(path),
                f"line {number}: expected 6 fields 'qid Q0 docid rank score tag', "
                f"got {len(fields)}: {line!r}",
            )
        qid, _, doc, _, score_text, _ = fields
        try:
            score = float(score_text)
        except ValueError:
            raise ConnectorError(
                str(path), f"line {number}: score {score_text!r} is not a number"
            ) from None
        docs = run.setdefault(qid, {})
        if doc in docs:
            raise ConnectorError(
                str(path), f"line {number}: document {doc!r} appears twice for query {qid!r}"
            )
        docs[doc] = score
    return run


def _check_field(what: str, value: str) -> None:
    if not value or any(char.isspace() for char in value):
        raise ConfigError(
            f"{what} {value!r} cannot be written to a TREC run: it is empty or has whitespace"
        )
