"""What ``ragkit serve`` does once its options are parsed: check the binding, open the
workspace, load the encoder before the first request, run uvicorn."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ragkit.errors import ConfigError

__all__ = ["is_loopback", "resolve_api_key", "run_server"]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_api_key(host: str, api_key_env: str | None) -> str | None:
    """The bearer token from ``api_key_env``, required when ``host`` is reachable from other
    machines: an open search API over a team's documents must be a deliberate choice."""
    if api_key_env is None:
        if not is_loopback(host):
            raise ConfigError(
                f"binding {host} exposes the workspace beyond this machine; pass "
                "--api-key-env VAR naming an environment variable that holds a bearer token"
            )
        return None
    key = os.environ.get(api_key_env, "")
    if not key.strip():
        raise ConfigError(
            f"environment variable {api_key_env} is unset or empty; put the key there"
        )
    return key


def run_server(
    workspace: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str | None = None,
    concurrency: int = 4,
) -> None:
    import uvicorn

    import ragkit
    from ragkit.server.app import create_app

    api_key = resolve_api_key(host, api_key_env)
    kit = ragkit.open(workspace, create=False)
    kit.encoder  # noqa: B018 - loaded now, so the first request does not wait for the model
    app = create_app(kit, api_key=api_key, concurrency=concurrency)
    try:
        uvicorn.run(app, host=host, port=port, log_level="info", lifespan="off")
    finally:
        kit.close()
