"""``ragkit serve``: the workspace's query path behind an HTTP API and a search page.

FastAPI and uvicorn are an optional extra (``pip install 'ragkit[serve]'``) and load only when a
server is built, so ``import ragkit`` and ``ragkit --help`` never pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragkit.server.app import create_app
    from ragkit.server.background import serve_in_thread
    from ragkit.server.launch import is_loopback, run_server

__all__ = ["create_app", "is_loopback", "run_server", "serve_in_thread"]

_HOMES = {
    "create_app": "ragkit.server.app",
    "serve_in_thread": "ragkit.server.background",
    "run_server": "ragkit.server.launch",
    "is_loopback": "ragkit.server.launch",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(home), name)
