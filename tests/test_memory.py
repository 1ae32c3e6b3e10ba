"""Freed heap memory goes back to the OS after each commit (glibc's ``malloc_trim``)."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ragkit.compute import memory
from ragkit.pipelines import ingest_stage

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's; on other C libraries release_free_memory does nothing",
)

# A fragmented heap: 200 MB in 1 KiB blocks, all freed but every 64th, so glibc cannot shrink
# the heap from its top and keeps the free pages resident until malloc_trim returns them.
FRAGMENTED_HEAP = textwrap.dedent(
    """
    import ctypes, json
    from ragkit.compute import memory

    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024

    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = []
    for _ in range(200_000):
        block = libc.malloc(1024)
        ctypes.memset(block, 1, 1024)
        blocks.append(block)
    for i, block in enumerate(blocks):
        if i % 64:
            libc.free(block)
    before = rss()
    released = memory.release_free_memory()
    print(json.dumps({"before": before, "after": rss(), "released": released}))
    """
)


@glibc
def test_release_free_memory_returns_a_fragmented_heap_to_the_os() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FRAGMENTED_HEAP], capture_output=True, text=True, check=True
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    assert row["released"] is True
    # ~196 MB were freed; without the trim they stay resident
    assert row["before"] - row["after"] > 100, row


def test_release_free_memory_does_nothing_when_switched_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "ENABLED", False)
    assert memory.release_free_memory() is False


def test_an_ingest_releases_memory_after_every_commit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_encoder: object
) -> None:
    import ragkit

    calls: list[int] = []
    monkeypatch.setattr(ingest_stage, "release_free_memory", lambda: calls.append(1) or True)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"d{i}.txt").write_text(f"the cat {i} sat on the red apple\n", encoding="utf-8")
    kit = ragkit.open(tmp_path / "ws", encoder=tiny_encoder, create=True)
    try:
        report = kit.ingest(docs, commit_every=4)
    finally:
        kit.close()
    assert report.commits >= 3
    assert len(calls) == report.commits
