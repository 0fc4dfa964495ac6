"""Local SageMaker-compatible endpoint: the container contract and the runtime API, over HTTP.

Routes (aiohttp):

* ``GET /ping``: 200 once every worker has loaded the model, 503 before (container health
  check);
* ``POST /invocations``: the container contract, served by :mod:`endpoint.inference`;
* ``POST /endpoints/{EndpointName}/invocations``: the ``InvokeEndpoint`` runtime API, so
  ``boto3.client("sagemaker-runtime", endpoint_url="http://127.0.0.1:PORT")
  .invoke_endpoint(EndpointName=..., Body=..., ContentType=...)`` works unchanged;
* ``GET /execution-parameters``: batch-transform hints (max payload 6 MB).

As the real service does: a body over 6 MB (6 * 1024 * 1024 bytes) is answered 413; a
malformed body, an empty request or an unsupported content type / Accept 400 with a
``ValidationError`` (header ``x-amzn-ErrorType`` and body ``{"__type", "message"}``, which
botocore's rest-json parser turns into ``client.exceptions.ValidationError``); a model not
loaded yet 503 ``ServiceUnavailable`` (botocore retries it); an unexpected handler failure 424
``ModelError`` (500 on the container route). Successful responses carry ``Content-Type`` and
``x-Amzn-Invoked-Production-Variant``; every response carries ``x-amzn-RequestId``. On the
container route bad input is 400, an unsupported content type 415 and an unsupported Accept
406, as the SageMaker inference toolkit answers. JSON nested deeper than the parser allows
is a malformed body (400), and the message of an unexpected failure stays in the server's log:
the client gets a fixed one.

A body that is not complete ``body_timeout_s`` (default 10 s) after its headers is answered
408 ``RequestTimeout`` and its connection closed, so a client that sends headers and stalls
holds nothing for long; an idle connection is closed after ``idle_timeout_s`` (default 30 s).

Optional bearer token: with ``--auth-token-file F`` (or ``$ENDPOINT_AUTH_TOKEN_FILE``, or the
token itself in ``$ENDPOINT_AUTH_TOKEN``) every route but ``/ping`` (the health check) needs
``Authorization: Bearer <token>``; a request without it is answered 401
``MissingAuthenticationToken``, one with another token 401 ``UnrecognizedClientException``
(tokens are compared in constant time). The stream's scorer sends it when
``SENTIMENT_ENDPOINT__AUTH_TOKEN`` is set.

Several worker processes share one listening socket (pre-fork: the socket is bound before the
workers are forked and the kernel hands each connection to one of them). Every worker loads the
model in the background after it starts serving, so ``/ping`` says when it is ready: 200 only
once every worker has loaded the model (a shared count), since the kernel may hand the next
request to any of them; the supervisor replaces a worker that dies and stops them all on
SIGTERM / SIGINT. Workers also exit when the supervisor disappears.

Public API::

    serve(host="127.0.0.1", port=8080, workers=1, model_dir=None, *, variant="AllTraffic",
          endpoint_name=None, load_delay_s=0.0) -> None      # blocks until SIGTERM / SIGINT
    create_app(config: ServerConfig) -> aiohttp.web.Application  # one worker's app
    ServerConfig(model_dir, variant="AllTraffic", endpoint_name=None, load_delay_s=0.0,
                 max_body_bytes=MAX_BODY_BYTES, body_timeout_s=10.0, idle_timeout_s=30.0,
                 auth_token=None)
    read_auth_token(path=None, env=os.environ) -> str | None
    MAX_BODY_BYTES, DEFAULT_PORT, PORT_ENV ("SAGEMAKER_BIND_TO_PORT"), DEFAULT_VARIANT,
    TOKEN_ENV ("ENDPOINT_AUTH_TOKEN"), TOKEN_FILE_ENV ("ENDPOINT_AUTH_TOKEN_FILE")
    python -m endpoint.server [--host H] [--port P] [--workers N] [--model-dir DIR]
                              [--variant NAME] [--endpoint-name NAME] [--load-delay S]
                              [--body-timeout S] [--idle-timeout S] [--auth-token-file F]
    (port: --port, else $SAGEMAKER_BIND_TO_PORT, else 8080)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import multiprocessing
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from .inference import (
    InvalidInput,
    UnsupportedAccept,
    UnsupportedContentType,
    default_model_dir,
    handle,
    model_fn,
)
from .model import ModelInfo

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_VARIANT",
    "MAX_BODY_BYTES",
    "PORT_ENV",
    "TOKEN_ENV",
    "TOKEN_FILE_ENV",
    "ServerConfig",
    "create_app",
    "main",
    "read_auth_token",
    "serve",
]

log = logging.getLogger("endpoint.server")

#: InvokeEndpoint's payload limit.
MAX_BODY_BYTES = 6 * 1024 * 1024
DEFAULT_PORT = 8080
PORT_ENV = "SAGEMAKER_BIND_TO_PORT"
DEFAULT_VARIANT = "AllTraffic"
TOKEN_ENV = "ENDPOINT_AUTH_TOKEN"  # noqa: S105 - a variable name, not a secret
TOKEN_FILE_ENV = "ENDPOINT_AUTH_TOKEN_FILE"  # noqa: S105 - a variable name
#: Past this much of an oversize body, stop reading it and close the connection.
_DRAIN_LIMIT = 64 * 1024 * 1024
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_ERROR_NAMESPACE = "http://internal.amazon.com/coral/com.amazonaws.sagemaker.runtime/"


@dataclass(frozen=True)
class ServerConfig:
    """What one worker serves. ``endpoint_name``: answer only that name on the runtime route
    (others: 400 "not found", as the service does); None accepts any name. ``load_delay_s``
    waits before loading the model (simulates a slow container start: ``/ping`` is 503 and
    invocations are 503 ``ServiceUnavailable`` meanwhile). ``body_timeout_s``: the whole body
    must arrive within this (else 408); ``idle_timeout_s``: close a connection idle this long.
    ``auth_token``: when set, every route but ``/ping`` asks for ``Bearer <auth_token>``."""

    model_dir: Path = field(default_factory=default_model_dir)
    variant: str = DEFAULT_VARIANT
    endpoint_name: str | None = None
    load_delay_s: float = 0.0
    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    auth_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.body_timeout_s <= 0 or self.idle_timeout_s <= 0:
            raise ValueError("body_timeout_s and idle_timeout_s must be > 0")
        if self.auth_token is not None and not self.auth_token:
            raise ValueError("auth_token must not be empty")


class _State:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.model: ModelInfo | None = None
        self.load_error: str | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self.loader: asyncio.Task[None] | None = None
        #: with several workers: the count (shared by all) of those that have loaded the
        #: model once, and how many there are
        self.started: tuple[Any, int] | None = None


_STATE = web.AppKey("endpoint_state", _State)


def _request_id() -> str:
    return str(uuid.uuid4())


def _error(status: int, code: str, message: str, request_id: str, **extra: object) -> web.Response:
    """An error in the shape of the service's rest-json errors."""
    body = {"__type": code, "message": message, **extra}
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        headers={
            "Content-Type": "application/json",
            "x-amzn-ErrorType": f"{code}:{_ERROR_NAMESPACE}",
            "x-amzn-RequestId": request_id,
        },
    )


class _BodyTimeout(Exception):
    """The body did not arrive in time."""


async def _read_body(request: web.Request, limit: int, timeout_s: float) -> bytes | None:
    """The body, or None when it is longer than ``limit`` (read and dropped up to a bound,
    so the client sees the 413 instead of a reset connection). Raises :class:`_BodyTimeout`
    when the whole body has not arrived ``timeout_s`` after the headers."""
    if request.content_length is not None and request.content_length > _DRAIN_LIMIT:
        return None
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > limit:
                    if size > _DRAIN_LIMIT:
                        break
                    continue
                chunks.append(chunk)
    except TimeoutError:
        raise _BodyTimeout from None
    return None if size > limit else b"".join(chunks)


def read_auth_token(
    path: str | Path | None = None, env: Mapping[str, str] = os.environ
) -> str | None:
    """The bearer token to ask for: the first line of ``path`` (else of the file named by
    ``$ENDPOINT_AUTH_TOKEN_FILE``), else ``$ENDPOINT_AUTH_TOKEN``; None: no check. An empty
    token is refused (``ValueError``): it would look like a check and be none."""
    if path is None and env.get(TOKEN_FILE_ENV):
        path = env[TOKEN_FILE_ENV]
    if path is not None:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        token = lines[0].strip() if lines else ""
        where = f"the token file {path}"
    elif TOKEN_ENV in env:
        token, where = env[TOKEN_ENV].strip(), f"${TOKEN_ENV}"
    else:
        return None
    if not token:
        raise ValueError(f"{where} is empty")
    return token


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPEN_ROUTES = frozenset({"/ping"})


def _bearer_check(token: str) -> Any:
    expected = token.encode("utf-8")

    @web.middleware
    async def check(request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path in _OPEN_ROUTES:
            return await handler(request)
        given = request.headers.get("Authorization", "")
        scheme, _, credentials = given.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            response = _error(
                401, "MissingAuthenticationToken", "Missing bearer token.", _request_id()
            )
        elif not hmac.compare_digest(credentials.strip().encode("utf-8"), expected):
            response = _error(
                401, "UnrecognizedClientException", "The bearer token is invalid.", _request_id()
            )
        else:
            return await handler(request)
        response.headers["WWW-Authenticate"] = 'Bearer realm="endpoint"'
        return response

    return check


async def _ping(request: web.Request) -> web.Response:
    state = request.app[_STATE]
    if state.model is None:
        return web.Response(status=503, text=state.load_error or "model loading\n")
    if state.started is not None and state.started[0].value < state.started[1]:
        loaded, workers = state.started[0].value, state.started[1]
        return web.Response(status=503, text=f"model loaded in {loaded} of {workers} workers\n")
    return web.Response(status=200, text="\n")


async def _execution_parameters(request: web.Request) -> web.Response:
    doc = {
        "MaxConcurrentTransforms": os.cpu_count() or 1,
        "BatchStrategy": "MULTI_RECORD",
        "MaxPayloadInMB": request.app[_STATE].config.max_body_bytes // (1024 * 1024),
    }
    return web.json_response(doc)


async def _container_invocations(request: web.Request) -> web.Response:
    return await _invoke(request, runtime=False)


async def _runtime_invocations(request: web.Request) -> web.Response:
    return await _invoke(request, runtime=True)


async def _invoke(request: web.Request, *, runtime: bool) -> web.Response:
    state = request.app[_STATE]
    config = state.config
    rid = _request_id()
    if runtime:
        refused = _check_endpoint_name(request.match_info["name"], config, rid)
        if refused is not None:
            return refused
    body = await _receive(request, config, rid)
    if isinstance(body, web.Response):
        return body
    model = state.model
    if model is None:
        return _error(
            503,
            "ServiceUnavailable",
            state.load_error or "The model is not loaded yet; try again shortly.",
            rid,
        )
    content_type = request.headers.get("Content-Type")
    accept = request.headers.get("Accept")
    loop = asyncio.get_running_loop()
    try:
        out, out_type = await loop.run_in_executor(
            state.executor, handle, body, content_type, accept, model
        )
    except InvalidInput as err:
        return _error(_invalid_input_status(err, runtime), "ValidationError", str(err), rid)
    except Exception:
        # The details (which may quote the request) stay in this log, with the request id.
        log.exception("handler failed (request %s)", rid)
        return _handler_failure(rid, runtime)
    return web.Response(
        body=out,
        headers={
            "Content-Type": out_type,
            "x-Amzn-Invoked-Production-Variant": config.variant,
            "x-amzn-RequestId": rid,
        },
    )


def _check_endpoint_name(name: str, config: ServerConfig, rid: str) -> web.Response | None:
    """The runtime route's answer to an invalid or foreign endpoint name (None: served)."""
    if not _ENDPOINT_NAME.match(name):
        return _error(400, "ValidationError", f"invalid endpoint name {name!r}", rid)
    if config.endpoint_name is not None and name != config.endpoint_name:
        return _error(400, "ValidationError", f"Endpoint {name} not found.", rid)
    return None


async def _receive(request: web.Request, config: ServerConfig, rid: str) -> bytes | web.Response:
    """The request body, or the answer when it is too slow (408) or too large (413)."""
    try:
        body = await _read_body(request, config.max_body_bytes, config.body_timeout_s)
    except _BodyTimeout:
        timed_out = _error(
            408,
            "RequestTimeout",
            f"The request body did not arrive within {config.body_timeout_s:g} s.",
            rid,
        )
        timed_out.force_close()
        return timed_out
    if body is None:
        return _error(
            413,
            "ValidationError",
            f"Request body is larger than the limit of {config.max_body_bytes} bytes.",
            rid,
        )
    return body


def _invalid_input_status(err: InvalidInput, runtime: bool) -> int:
    """400 on the runtime route; the container route answers as the inference toolkit does
    (406 for an unsupported Accept, 415 for an unsupported content type)."""
    if not runtime:
        if isinstance(err, UnsupportedAccept):
            return 406
        if isinstance(err, UnsupportedContentType):
            return 415
    return 400


def _handler_failure(rid: str, runtime: bool) -> web.Response:
    """The answer to an unexpected handler failure, with a fixed message: 500
    ``InternalFailure`` on the container route, 424 ``ModelError`` on the runtime route."""
    message = f"model handler failed (request {rid})"
    if not runtime:
        return _error(500, "InternalFailure", message, rid)
    return _error(
        424,
        "ModelError",
        f'Received server error (500) from primary with message "{message}".',
        rid,
        OriginalStatusCode=500,
        OriginalMessage=message,
    )


async def _load_model(app: web.Application) -> None:
    state = app[_STATE]
    if state.config.load_delay_s > 0:
        await asyncio.sleep(state.config.load_delay_s)
    loop = asyncio.get_running_loop()
    try:
        state.model = await loop.run_in_executor(state.executor, model_fn, state.config.model_dir)
    except (OSError, ValueError, KeyError, ImportError) as err:
        state.load_error = f"model failed to load from {state.config.model_dir}: {err}"
        log.error("%s", state.load_error)  # noqa: TRY400 - the message says it all
    else:
        log.info("model %s %s loaded", state.model.name, state.model.version)
        if state.started is not None:
            with state.started[0].get_lock():
                state.started[0].value += 1


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[_STATE]
    state.loader = asyncio.create_task(_load_model(app))
    yield
    state.loader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await state.loader
    state.executor.shutdown(wait=False, cancel_futures=True)


def create_app(
    config: ServerConfig | None = None, *, started: tuple[Any, int] | None = None
) -> web.Application:
    """One worker's application; the model loads in the background once it starts.
    ``started``: with several workers, a count shared by all of those that have loaded the
    model (a ``multiprocessing.Value``) and how many workers there are."""
    config = config or ServerConfig()
    # Bodies are read by hand (6 MB limit, 413); this only bounds aiohttp's own readers.
    middlewares = [_bearer_check(config.auth_token)] if config.auth_token is not None else []
    app = web.Application(client_max_size=config.max_body_bytes + 1, middlewares=middlewares)
    app[_STATE] = _State(config)
    app[_STATE].started = started
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/ping", _ping)
    app.router.add_get("/execution-parameters", _execution_parameters)
    app.router.add_post("/invocations", _container_invocations)
    app.router.add_post("/endpoints/{name}/invocations", _runtime_invocations)
    return app


# -- processes ------------------------------------------------------------------------------


async def _watch_parent(parent: int) -> None:
    while True:
        await asyncio.sleep(1.0)
        if os.getppid() != parent:
            break
    log.warning("supervisor %d is gone; worker %d stops", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)


def _run_worker(
    sock: socket.socket,
    config: ServerConfig,
    parent: int | None,
    started: tuple[Any, int] | None = None,
) -> None:
    app = create_app(config, started=started)
    if parent is not None:

        async def watchdog(app: web.Application) -> AsyncIterator[None]:
            task = asyncio.create_task(_watch_parent(parent))
            yield
            task.cancel()

        app.cleanup_ctx.append(watchdog)
    web.run_app(
        app,
        sock=sock,
        print=None,
        access_log=None,
        shutdown_timeout=5.0,
        keepalive_timeout=config.idle_timeout_s,
    )


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    workers: int = 1,
    model_dir: str | Path | None = None,
    *,
    variant: str = DEFAULT_VARIANT,
    endpoint_name: str | None = None,
    load_delay_s: float = 0.0,
    body_timeout_s: float = 10.0,
    idle_timeout_s: float = 30.0,
    auth_token: str | None = None,
) -> None:
    """Serve until SIGTERM / SIGINT with ``workers`` processes on ``host:port``.

    The model directory is checked once here (a broken one fails at once, not in every
    worker); ``port=0`` picks a free port (logged). ``auth_token``: see :class:`ServerConfig`."""
    if workers < 1:
        raise ValueError("workers must be >= 1")
    model_path = Path(model_dir) if model_dir is not None else default_model_dir()
    model_fn(model_path)
    config = ServerConfig(
        model_dir=model_path,
        variant=variant,
        endpoint_name=endpoint_name,
        load_delay_s=load_delay_s,
        body_timeout_s=body_timeout_s,
        idle_timeout_s=idle_timeout_s,
        auth_token=auth_token,
    )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    bound = sock.getsockname()[1]
    log.info(
        "serving on http://%s:%d with %d worker(s)%s",
        host,
        bound,
        workers,
        ", bearer token required" if auth_token is not None else "",
    )
    try:
        if workers == 1:
            _run_worker(sock, config, parent=None)
        else:
            _supervise(sock, config, workers)
    finally:
        sock.close()


def _supervise(sock: socket.socket, config: ServerConfig, workers: int) -> None:
    ctx = multiprocessing.get_context("fork")
    me = os.getpid()
    # workers that have loaded the model once: /ping answers 200 when all of them have (a
    # replacement adds one more; the others go on serving meanwhile)
    loaded = ctx.Value("i", 0)

    def start() -> Any:
        p = ctx.Process(
            target=_run_worker, args=(sock, config, me, (loaded, workers)), daemon=False
        )
        p.start()
        return p

    procs = [start() for _ in range(workers)]
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    restarts: list[float] = []
    try:
        while not stop.wait(0.2):
            for i, p in enumerate(procs):
                if p.is_alive():
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 10.0] + [now]
                if len(restarts) > 3 * workers:
                    raise RuntimeError("workers keep dying; giving up")
                log.warning("worker %s exited with %s; starting another", p.pid, p.exitcode)
                procs[i] = start()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(timeout=10.0)
            if p.is_alive():
                p.kill()
                p.join()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m endpoint.server",
        description="Local SageMaker-compatible endpoint (container contract and runtime API).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port (default ${PORT_ENV}, else {DEFAULT_PORT}; 0: any free port)",
    )
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--model-dir", type=Path, default=None, help="default: shipped model")
    parser.add_argument("--variant", default=DEFAULT_VARIANT, help="production variant name")
    parser.add_argument("--endpoint-name", default=None, help="only answer this endpoint name")
    parser.add_argument(
        "--load-delay", type=float, default=0.0, help="seconds to wait before loading the model"
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=10.0,
        help="seconds a request body may take to arrive (else 408; default 10)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=30.0,
        help="close a connection idle this many seconds (default 30)",
    )
    parser.add_argument(
        "--auth-token-file",
        type=Path,
        default=None,
        help=f"require 'Authorization: Bearer <first line of this file>' (default "
        f"${TOKEN_FILE_ENV}, else the token in ${TOKEN_ENV}; none: no check)",
    )
    args = parser.parse_args(argv)
    port = args.port if args.port is not None else int(os.environ.get(PORT_ENV, DEFAULT_PORT))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(process)d %(message)s")
    try:
        serve(
            args.host,
            port,
            args.workers,
            args.model_dir,
            variant=args.variant,
            endpoint_name=args.endpoint_name,
            load_delay_s=args.load_delay,
            body_timeout_s=args.body_timeout,
            idle_timeout_s=args.idle_timeout,
            auth_token=read_auth_token(args.auth_token_file),
        )
    except (OSError, ValueError) as err:  # no model, bad model, port taken, no token
        log.error("cannot serve: %s", err)  # noqa: TRY400 - the message says it all
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
