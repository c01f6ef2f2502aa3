"""The hub's HTTP and WebSocket API (FastAPI), over one open store and one live tail.

    GET  /api/calls?q=KFL&limit=N&before=CURSOR   stored calls, newest first, paged
    GET  /api/calls/{id}                          one call in full
    GET  /api/fields                              what a KFL filter can name
    WS   /api/live?q=KFL                          new calls as they are captured
    GET  /healthz, /readyz                        process up; store answering

Reads run in FastAPI's thread pool and take turns on the store (HubStore's lock).
Every error answer is `{"error": "...", "line": ..., "column": ...}` (position only for
KFL errors), never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from sinks.errors import SinkError
from wiretide.hub.auth import SUBPROTOCOL, Access
from wiretide.hub.live import LiveError, LiveTail, Subscription
from wiretide.hub.models import Call, CallPage, ErrorBody, KflField, KflFields, Status
from wiretide.hub.store import Cursor, CursorError, HubStore
from wiretide.kfl import KflError, parse, to_predicate, to_sql

_log = logging.getLogger("wiretide.hub")
DEFAULT_PAGE = 100
MAX_PAGE = 1000
MAX_FILTER = 10_000  # characters

_DESCRIPTION = """See the API calls Wiretide captured: stored ones through KFL queries,
new ones live.

**Live tail** (WebSocket, not listed below): `GET /api/live?q=KFL` upgraded to a
WebSocket. The hub sends JSON text messages: first `{"type": "ready"}` (every call
published from then on is seen), then `{"type": "call", "call": Call}` for each new call
the filter takes, `{"type": "dropped", "count": n}` when the client fell behind and
missed n calls. A bad filter gets `{"type": "error", "error", "line", "column"}` and the
socket closes with code 4400; a tail that cannot start or stops sends an error and
closes with 1011. Each filter runs in a process of its own on a time budget: one too
slow to evaluate (or stuck on one call) ends its own tail that way, and no one else's.

**Token**: a hub listening beyond loopback wants `Authorization: Bearer <token>` on
every /api request; a browser WebSocket offers the subprotocols
`["wiretide", "bearer.<token>"]` instead.
"""


class ApiError(Exception):
    """Answer `status` with an ErrorBody."""

    def __init__(
        self, status: int, error: str | ErrorBody, headers: dict[str, str] | None = None
    ) -> None:
        self.status = status
        self.body = error if isinstance(error, ErrorBody) else ErrorBody(error=error)
        self.headers = headers


def _error(status: int, body: ErrorBody, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _filter_error(text: str, ex: Exception) -> ErrorBody:
    """The 400 body for a filter. A KFL bug (any other exception) is logged with its
    traceback but still answered as a bad filter: the user gets one line, not a 500."""
    if isinstance(ex, KflError):
        return ErrorBody(error=str(ex), line=ex.line, column=ex.column)
    _log.error("KFL failed on filter %r", text, exc_info=ex)
    return ErrorBody(error=f"this filter could not be read (a KFL bug, please report it: {ex!r})")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "bad filter, cursor or parameter"},
    401: {"model": ErrorBody, "description": "token missing or wrong"},
    403: {"model": ErrorBody, "description": "request names a host beyond loopback"},
}
# Documents the token in the OpenAPI description; `Access` does the checking.
_BEARER = HTTPBearer(auto_error=False, description="needed when the hub listens beyond loopback")
_READ_ERRORS = {**_ERRORS, 503: {"model": ErrorBody, "description": "the store failed"}}


def create_app(store: HubStore, access: Access, tail: LiveTail) -> FastAPI:
    def require_access(request: Request) -> None:
        why = access.check_http(request.headers)
        if why is None:
            return
        if access.token is None:
            raise ApiError(403, why)
        raise ApiError(401, why, {"WWW-Authenticate": "Bearer"})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        yield
        await tail.close()

    app = FastAPI(
        title="Wiretide hub",
        version="1",
        description=_DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,  # operationId: list_calls, ...
    )
    app.state.settings = tail.settings  # what routes read (Kafka, data dir, rules file)
    # Only a hub that wants a token says so in its description.
    described = [Security(_BEARER)] if access.token is not None else []
    api = APIRouter(
        prefix="/api", dependencies=[Depends(require_access), *described], responses=_ERRORS
    )
    _answer_errors(app)
    _add_call_routes(api, store)
    _add_live_route(app, access, tail)
    _add_probes(app, store)
    from wiretide.hub.metrics import add_route as add_metrics_route

    add_metrics_route(app, store, tail.settings, require_access)  # GET /metrics

    from wiretide.hub.routes import routers

    for extra in routers(store):
        api.include_router(extra)
    app.include_router(api)
    _drop_default_422(app)
    # The web UI (built from ui/ by `npm run build`), at / after every API route.
    ui_dist = Path(__file__).with_name("ui_dist")
    if (ui_dist / "index.html").is_file():
        app.mount("/", StaticFiles(directory=ui_dist, html=True), name="ui")
    return app


def _answer_errors(app: FastAPI) -> None:
    """Every error answer is an ErrorBody."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, ex: ApiError) -> JSONResponse:
        return _error(ex.status, ex.body, ex.headers)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(_: Request, ex: RequestValidationError) -> JSONResponse:
        first = ex.errors()[0] if ex.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return _error(400, ErrorBody(error=f"{where}: {first.get('msg', 'invalid')}"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, ex: StarletteHTTPException) -> JSONResponse:
        return _error(ex.status_code, ErrorBody(error=str(ex.detail)), ex.headers)


def _add_call_routes(api: APIRouter, store: HubStore) -> None:
    @api.get("/calls", response_model=CallPage, responses=_READ_ERRORS)
    def list_calls(
        q: Annotated[str, Query(max_length=MAX_FILTER, description="KFL filter")] = "",
        limit: Annotated[
            int | None,
            Query(
                ge=1,
                le=MAX_PAGE,
                description=f"page size (default: the filter's limit(n), else {DEFAULT_PAGE})",
            ),
        ] = None,
        before: Annotated[
            str | None, Query(max_length=1000, description="`next` of the previous page")
        ] = None,
    ) -> dict[str, Any]:
        """Stored calls the filter takes, newest first, one page at a time."""
        try:
            query = parse(q)
            where, params = to_sql(query)
        except Exception as ex:
            raise ApiError(400, _filter_error(q, ex)) from None
        try:
            cursor = Cursor.decode(before) if before else None
        except CursorError as ex:
            raise ApiError(400, str(ex)) from None
        size = limit or min(DEFAULT_PAGE if query.limit is None else query.limit, MAX_PAGE)
        if size < 1:
            return {"calls": [], "next": None}
        try:
            page = store.page(where, params, size, cursor)
        except SinkError as ex:
            raise ApiError(503, str(ex)) from None
        return {"calls": page.calls, "next": page.next.encode() if page.next else None}

    @api.get(
        "/calls/{call_id}",
        response_model=Call,
        responses={**_READ_ERRORS, 404: {"model": ErrorBody, "description": "no such call"}},
    )
    def get_call(call_id: str) -> dict[str, Any]:
        """One call in full: headers and bodies, already redacted by the pipeline."""
        try:
            call = store.get(call_id)
        except SinkError as ex:
            raise ApiError(503, str(ex)) from None
        if call is None:
            raise ApiError(404, f"no call with id {call_id!r}")
        return call

    @api.get("/fields", response_model=KflFields)
    def fields() -> KflFields:
        """The fields, aliases and protocol names a KFL filter can use."""
        from wiretide.kfl.fields import ALIASES, FIELDS, PROTOCOLS

        aliases: dict[str, list[str]] = {}
        for alias, name in sorted(ALIASES.items()):
            aliases.setdefault(name, []).append(alias)
        return KflFields(
            fields=[
                KflField(name=s.name, type=s.type.value, doc=s.doc, aliases=aliases.get(s.name, []))
                for s in FIELDS.values()
            ],
            protocols=sorted(PROTOCOLS),
        )


def _add_live_route(app: FastAPI, access: Access, tail: LiveTail) -> None:
    @app.websocket("/api/live")
    async def live(websocket: WebSocket, q: str = "") -> None:
        offered = websocket.scope.get("subprotocols", [])
        why = access.check_websocket(websocket.headers, offered)
        if why is not None:
            status = 403 if access.token is None else 401
            await websocket.send_denial_response(_error(status, ErrorBody(error=why)))
            return
        await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
        if len(q) > MAX_FILTER:
            why = f"q: the filter is longer than {MAX_FILTER} characters"
            await websocket.send_json({"type": "error", "error": why})
            await websocket.close(code=4400, reason="bad filter")
            return
        try:
            to_predicate(parse(q))  # its evaluator compiles it again, in its own process
        except Exception as ex:
            await websocket.send_json({"type": "error", **_filter_error(q, ex).model_dump()})
            await websocket.close(code=4400, reason="bad filter")
            return
        try:
            sub = await tail.subscribe(q)
        except LiveError as ex:
            await websocket.send_json({"type": "error", "error": str(ex)})
            await websocket.close(code=1011, reason="live tail unavailable")
            return
        try:
            await _stream(websocket, sub)
        finally:
            await tail.unsubscribe(sub)


def _add_probes(app: FastAPI, store: HubStore) -> None:
    @app.get("/healthz", response_model=Status, tags=["probes"])
    def healthz() -> Status:
        """The process answers."""
        return Status(status="ok")

    @app.get(
        "/readyz",
        response_model=Status,
        tags=["probes"],
        responses={503: {"model": Status, "description": "the store does not answer"}},
    )
    def readyz() -> Any:
        """The store answers a query."""
        why = store.ping()
        if why is None:
            return Status(status="ready")
        return JSONResponse(Status(status="unavailable", error=why).model_dump(), 503)


async def _stream(websocket: WebSocket, sub: Subscription) -> None:
    """Send calls until the client leaves or the tail goes down."""
    await websocket.send_json({"type": "ready"})
    gone = asyncio.ensure_future(_until_closed(websocket))
    try:
        while not gone.done():
            nxt = asyncio.ensure_future(sub.next())
            await asyncio.wait({nxt, gone}, return_when=asyncio.FIRST_COMPLETED)
            if not nxt.done():
                nxt.cancel()
                break
            try:
                call = nxt.result()
            except LiveError as ex:
                await websocket.send_json({"type": "error", "error": str(ex)})
                await websocket.close(code=1011, reason="live tail stopped")
                return
            dropped = sub.take_dropped()
            if dropped:
                await websocket.send_json({"type": "dropped", "count": dropped})
            await websocket.send_json({"type": "call", "call": call})
    except WebSocketDisconnect:
        pass
    finally:
        gone.cancel()


async def _until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it closes."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


def _drop_default_422(app: FastAPI) -> None:
    """Parameter errors answer 400 with an ErrorBody (see `bad_parameter`); take FastAPI's
    422 out of the description so it promises only what the hub does."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path in schema.get("paths", {}).values():
                for operation in path.values():
                    operation.get("responses", {}).pop("422", None)
            for name in ("HTTPValidationError", "ValidationError"):
                schema.get("components", {}).get("schemas", {}).pop(name, None)
        return app.openapi_schema

    app.openapi = openapi
