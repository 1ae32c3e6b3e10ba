"""``ragkit reindex``: bring every collection up to date with the configured sources.

What a scheduled run (cron, a systemd timer) needs from one command: re-ingest every source
incrementally (new, changed and deleted files), check the workspace with the doctor's quick
check, and say per source what changed — all under one writer lock, so an ingest started by
hand meanwhile waits or exits 75 instead of interleaving. The ingest is an inner job of the
``reindex`` job: it keeps its own ``runs`` row and counts, and every collection the ingest keeps
in step is updated by it.

The run fails (an exception, runs row ``failed``) when a source looked lost (a missing root, or
a walk that found nothing where the store has files: an unmounted disk must not empty the
index), when the doctor finds a problem, and on any store or index write error. Files that
failed alone keep their last good version; the run is then ``partial`` (exit 3).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ragkit.errors import RagkitError
from ragkit.pipelines._runner import job
from ragkit.pipelines.ingest import IngestReport, ingest
from ragkit.pipelines.sources import resolve_sources
from ragkit.workspace import Workspace

__all__ = ["ReindexError", "ReindexReport", "SourceCounts", "reindex"]

ProgressCallback = Callable[[str, int], None]


class ReindexError(RagkitError):
    """A reindex that must not count as done: a source looked lost, or the check failed.
    ``report`` says what the run did all the same (the CLI prints it with ``--json``)."""

    def __init__(self, message: str, report: ReindexReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class SourceCounts:
    """What one source's files did in this run, from the store's file records before and
    after (so it holds whatever the ingest decided, however it batched its commits)."""

    name: str
    path: str
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: int = 0
    refused: bool = False


@dataclass
class ReindexReport:
    run_id: int = 0
    ingest_run_id: int = 0
    sources: list[SourceCounts] = field(default_factory=list)
    encoder_calls: int = 0  # chunks sent to the encoder (the rest came from the cache)
    commits: int = 0
    generations: dict[str, int] = field(default_factory=dict)
    doctor_ok: bool = True
    doctor: dict[str, Any] = field(default_factory=dict)
    ingest: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No file failed (a refused source or a failed check raises instead)."""
        return not self.ingest.get("failures")

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}

    def stats(self) -> dict[str, Any]:
        """The counts kept in the runs row (the full ingest report is the inner row's)."""
        totals = {
            key: sum(getattr(s, key) for s in self.sources)
            for key in ("added", "updated", "deleted", "unchanged", "failed")
        }
        return {
            **totals,
            "encoder_calls": self.encoder_calls,
            "commits": self.commits,
            "generations": self.generations,
            "doctor_ok": self.doctor_ok,
            "ingest_run_id": self.ingest_run_id,
            "sources": [asdict(s) for s in self.sources],
        }


def reindex(
    workspace: Workspace,
    *,
    wait: float = 0.0,
    allow_empty: bool = False,
    max_delete_fraction: float | None = None,
    commit_every: int = 4096,
    progress: ProgressCallback | None = None,
    ray: str | None = None,
) -> ReindexReport:
    """Re-ingest every configured source, check, report. Raises :class:`ReindexError` when a
    source was refused or the check found a problem (after recording the run as failed).
    ``ray``: encode on the Ray cluster at that address."""
    from ragkit.doctor import check_workspace

    sources = resolve_sources(workspace, [], None, None, False)  # ConfigError when none
    if max_delete_fraction is not None and not 0 <= max_delete_fraction <= 1:
        raise ReindexError("--max-delete-fraction must be between 0 and 1")
    params = {
        "allow_empty": allow_empty,
        "max_delete_fraction": max_delete_fraction,
        "commit_every": commit_every,
        "ray": ray,
    }
    with job(workspace, "reindex", params, wait=wait) as run:
        store = workspace.store
        before = {s.name: store.files(s.name) for s in sources}
        done = ingest(
            workspace,
            [],
            commit_every=commit_every,
            progress=progress,
            allow_empty=allow_empty,
            max_delete_fraction=max_delete_fraction,
            ray=ray,
        )
        report = ReindexReport(run_id=run.run_id, ingest_run_id=done.run_id)
        report.sources = [_counts(s.name, s.path, before[s.name], store, done) for s in sources]
        report.encoder_calls = done.chunks_encoded
        report.commits = done.commits
        report.ingest = done.to_dict()
        report.generations = {c.name: c.generation for c in store.collections()}
        checked = check_workspace(workspace, quick=True)
        report.doctor_ok, report.doctor = checked.ok, checked.to_dict()
        run.outcome(report.ok, report.stats())
        _raise_if_not_done(report, done)
    return report


def _counts(
    name: str, path: str, before: dict[str, Any], store: Any, done: IngestReport
) -> SourceCounts:
    after = store.files(name)
    counts = SourceCounts(name=name, path=path, refused=name in done.sources_refused)
    for uri, record in after.items():
        old = before.get(uri)
        if old is None:
            counts.added += 1
        elif old.content_hash != record.content_hash:
            counts.updated += 1
        else:
            counts.unchanged += 1
    counts.deleted = sum(1 for uri in before if uri not in after)
    root = os.path.realpath(path)
    counts.failed = sum(
        1
        for failure in done.failures
        if failure.path == name or os.path.realpath(failure.path).startswith(root + os.sep)
    )
    return counts


def _raise_if_not_done(report: ReindexReport, done: IngestReport) -> None:
    """Fail the run (the runner records the message) for what must not pass as a reindex."""
    if done.sources_refused:
        reasons = [f.reason for f in done.failures if f.path in done.sources_refused]
        raise ReindexError(
            f"source(s) {', '.join(map(repr, done.sources_refused))} left unchanged: "
            + "; ".join(reasons),
            report,
        )
    if not report.doctor_ok:
        problems = [
            f"{c['name']}: {check['name']} ({check['detail']})"
            for c in report.doctor["collections"]
            for check in c["checks"]
            if check["status"] == "problem"
        ] + [
            f"store: {check['name']} ({check['detail']})"
            for check in report.doctor["store"]
            if check["status"] == "problem"
        ]
        raise ReindexError(
            "the check after the reindex found problems: "
            + "; ".join(problems)
            + ". Run `ragkit doctor --repair`",
            report,
        )
