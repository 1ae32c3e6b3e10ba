"""The loop a parse worker runs (see :mod:`ragkit.connectors.pool`); kept apart so the worker
imports nothing but the connectors it needs."""

from __future__ import annotations

import contextlib
import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ragkit.connectors.base import parse_bytes
from ragkit.errors import ConnectorError

__all__ = ["serve"]


def serve(conn: Connection, memory_bytes: int) -> None:
    """Parse batches of files sent by the pool until it sends ``None`` or goes away; each file
    is answered as soon as it is parsed, so the pool knows which one a limit stopped.

    SIGINT is ignored because Ctrl-C reaches the whole process group: the pool, not the
    worker, decides when a worker stops, so the parent can report the file it was parsing.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_address_space(memory_bytes)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            headers = conn.recv()
        except EOFError:
            return  # the parent died: never outlive it
        if headers is None:
            return
        # Every file of the batch is received before the first answer goes back: the pool
        # sends them all at once and must never wait on a worker that waits on it.
        datas: list[bytes] = []
        try:
            for _ in headers:
                datas.append(conn.recv_bytes())
        except MemoryError:
            pass  # the file after the last one received did not fit: it fails below
        for header, data in zip(headers, datas, strict=False):
            reply = _parse(data, *header)
            try:
                conn.send(reply)
            except MemoryError:
                reply = ("memory", None)
                conn.send(reply)
            if reply[0] == "memory":
                return  # after running out of address space, a fresh worker is the safe choice
        if len(datas) < len(headers):
            conn.send(("memory", None))
            return


def _parse(data: bytes, fmt: str, path: str, uri: str, options: Any) -> tuple[str, Any]:
    try:
        return "ok", parse_bytes(data, fmt=fmt, path=Path(path), uri=uri, options=options)
    except ConnectorError as exc:
        return "error", exc.reason
    except MemoryError:
        return "memory", None
    except RecursionError:
        return "error", "nested too deeply to parse"
    except Exception as exc:  # a loader bug must fail one file, not the whole ingest
        return "error", f"the parser failed: {type(exc).__name__}: {exc}"


def _limit_address_space(extra: int) -> None:
    """Allow ``extra`` bytes of address space beyond what the worker maps after its imports."""
    if extra <= 0:
        return
    import resource

    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            base = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        base = 0
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = base + extra if hard == resource.RLIM_INFINITY else min(base + extra, hard)
    # Not enforceable everywhere (e.g. macOS); the wall-time limit still applies there.
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
