"""The FastAPI application: routes, the bearer-token check and JSON errors.

``create_app(workspace)`` takes an open workspace rather than a path, so tests and embedders
inject their own encoder; ``ragkit serve`` opens the workspace and hands it over.
"""

from __future__ import annotations

import hmac
import logging
from importlib import resources
from typing import TYPE_CHECKING, Any

from ragkit.errors import MissingDependencyError, RagkitError

try:
    from fastapi import Depends, FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - the extra is part of dev
    raise MissingDependencyError("fastapi", "serve", "ragkit serve") from exc

from ragkit.server.models import BatchRequest, BatchResponse, ErrorOut, QueryRequest, QueryResponse
from ragkit.server.service import ApiError, QueryService, as_api_error

if TYPE_CHECKING:
    from ragkit.workspace import Workspace

__all__ = ["create_app"]

log = logging.getLogger("ragkit.server")
_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 401, 404, 422, 503)
}


def create_app(
    workspace: Workspace, *, api_key: str | None = None, concurrency: int = 4
) -> FastAPI:
    """An app answering from ``workspace``. With ``api_key``, every route but the page, the
    docs and ``/health`` wants ``Authorization: Bearer <api_key>``."""
    service = QueryService(workspace, concurrency=concurrency)
    app = FastAPI(
        title="ragkit",
        summary="Hybrid retrieval over one ragkit workspace.",
        version=_version(),
        responses=_ERRORS,
    )
    app.state.service = service

    async def authorized(request: Request) -> None:
        if api_key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), api_key.encode()):
            raise ApiError(401, "unauthorized", "send the API key as 'Authorization: Bearer KEY'")

    guarded = [Depends(authorized)]

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, error: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
        return _json_error(error.status, error.kind, error.message, headers)

    @app.exception_handler(RagkitError)
    async def _ragkit_error(request: Request, error: RagkitError) -> JSONResponse:
        mapped = as_api_error(error)
        return _json_error(mapped.status, mapped.kind, mapped.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in error.errors()
        ]
        return _json_error(422, "invalid_request", "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        return _json_error(error.status_code, "http_error", str(error.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        # Logged here with its traceback; the client gets one line, never the traceback.
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _json_error(500, "internal_error", f"{type(error).__name__}: the server log has it")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("ragkit.server").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(html)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Up and able to read its store (a damaged store answers 503)."""
        collections = await service.call(
            lambda: len(workspace.store.collections()), exclusive=False
        )
        return {"status": "ok", "collections": collections}

    @app.get("/stats", dependencies=guarded)
    async def stats() -> dict[str, Any]:
        """The workspace's status (counts, collections, last run) and this server's counters."""
        status = await service.call(workspace.status, exclusive=False)
        return {**_plain(status), "server": _plain(service.counters.__dict__)}

    @app.get("/collections", dependencies=guarded)
    async def collections() -> list[dict[str, Any]]:
        """Each collection with the aliases that point at it and the modes it answers."""
        return _plain(await service.call(service.collections))

    @app.post("/query", response_model=QueryResponse, dependencies=guarded)
    async def query(body: QueryRequest) -> dict[str, Any]:
        """The best-matching chunks for one text."""
        answer = await service.query([body.text], **_options(body))
        return {
            "text": body.text,
            "mode": answer.mode,
            "collection": answer.alias,
            "hits": answer.hits[0],
            "warnings": answer.warnings,
            "took_ms": answer.took_ms,
        }

    @app.post("/query/batch", response_model=BatchResponse, dependencies=guarded)
    async def query_batch(body: BatchRequest) -> dict[str, Any]:
        """Many texts with the same options, encoded as one batch; results in request order."""
        answer = await service.query(body.texts, **_options(body))
        return {
            "mode": answer.mode,
            "collection": answer.alias,
            "results": answer.hits,
            "warnings": answer.warnings,
            "took_ms": answer.took_ms,
        }

    return app


def _options(body: QueryRequest | BatchRequest) -> dict[str, Any]:
    return {
        "k": body.k,
        "mode": body.mode,
        "where": body.where,
        "collection": body.collection,
        "rerank": body.rerank,
    }


def _json_error(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)


def _plain(value: Any) -> Any:
    """JSON-safe copy (store rows hold paths and the like)."""
    import json

    return json.loads(json.dumps(value, default=str))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ragkit")
    except PackageNotFoundError:
        return "0"
