"""A fault-injecting HTTP proxy in front of an S3 server (the SeaweedFS harness), on 127.0.0.1.

Clients point their S3 endpoint at ``proxy.endpoint_url``; every request is forwarded as it came
(method, path, headers with ``Host`` unchanged, so SigV4 signatures still verify upstream) and
the answer sent back. A test switches faults on at run time::

    with FaultyS3Proxy(seaweedfs.endpoint_url) as proxy:
        proxy.fail(500, "InternalError", seconds=6)        # every PUT for 6 s
        proxy.fail(400, "InvalidRequest", requests=3)      # the next 3 PUTs
        proxy.heal()

A failing request is answered as S3 answers errors: the status, ``Content-Type:
application/xml`` and an ``<Error><Code>..</Code><Message>..</Message>..</Error>`` body, so
botocore raises the ``ClientError`` it raises against AWS (500 ``InternalError`` is retriable
for botocore and for the lake writer; 400 ``InvalidRequest`` is not). The request body is read
in full first, so keep-alive connections stay in step. ``injected`` counts the answers faked.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self
from urllib.parse import urlsplit
from xml.sax.saxutils import escape

from tests.servers.base import Managed

__all__ = ["FaultyS3Proxy"]

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

_MESSAGES = {
    "InternalError": "We encountered an internal error. Please try again.",
    "SlowDown": "Please reduce your request rate.",
    "ServiceUnavailable": "Please reduce your request rate.",
    "InvalidRequest": "Invalid Request",
    "AccessDenied": "Access Denied",
    "KeyTooLongError": "Your key is too long",
}


@dataclass(slots=True)
class _Fault:
    status: int
    code: str
    methods: frozenset[str]
    path_contains: str
    remaining: int | None
    until: float | None

    def live(self, now: float) -> bool:
        """Not expired, and requests left to fail."""
        if self.until is not None and now >= self.until:
            return False
        return self.remaining is None or self.remaining > 0

    def applies(self, method: str, path: str, now: float) -> bool:
        return self.live(now) and method in self.methods and self.path_contains in path


class FaultyS3Proxy(Managed):
    """Forwards to ``upstream`` (``http://host:port``); see the module docstring."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        if parts.scheme != "http" or parts.hostname is None:
            raise ValueError(f"upstream must be http://host:port, got {upstream!r}")
        self._upstream = (parts.hostname, parts.port or 80)
        self._lock = threading.Lock()
        self._fault: _Fault | None = None
        self.injected: Counter[tuple[str, int]] = Counter()
        self.forwarded: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- faults --------------------------------------------------------------------------------

    def fail(
        self,
        status: int = 500,
        code: str = "InternalError",
        *,
        requests: int | None = None,
        seconds: float | None = None,
        methods: tuple[str, ...] = ("PUT",),
        path_contains: str = "",
    ) -> None:
        """Answer ``status``/``code`` to requests of ``methods`` (whose path contains
        ``path_contains``): the next ``requests`` of them, or all for ``seconds``, or all until
        :meth:`heal` when neither is given. Replaces the fault in force."""
        if requests is not None and requests < 1:
            raise ValueError("requests must be at least 1")
        if seconds is not None and seconds <= 0:
            raise ValueError("seconds must be positive")
        with self._lock:
            self._fault = _Fault(
                status,
                code,
                frozenset(m.upper() for m in methods),
                path_contains,
                requests,
                None if seconds is None else time.monotonic() + seconds,
            )

    def heal(self) -> None:
        """Forward everything again."""
        with self._lock:
            self._fault = None

    @property
    def failing(self) -> bool:
        """Whether a fault is still in force (not expired, requests left)."""
        with self._lock:
            f = self._fault
            return f is not None and f.live(time.monotonic())

    def injected_total(self) -> int:
        with self._lock:
            return sum(self.injected.values())

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self._lock:
            f = self._fault
            if f is None or not f.applies(method, path, time.monotonic()):
                return None
            if f.remaining is not None:
                f.remaining -= 1
            self.injected[(method, f.status)] += 1
            return f

    # -- serving -------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the tests read counters, not logs."""

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                fault = proxy._take_fault(self.command, self.path)
                if fault is not None:
                    self._error(fault)
                    return
                try:
                    status, reason, headers, data = proxy._forward(
                        self.command, self.path, list(self.headers.items()), body
                    )
                except OSError as err:
                    self._error(_Fault(503, "ServiceUnavailable", frozenset(), "", None, None))
                    self.log_error("upstream failed: %s", err)
                    return
                proxy.forwarded[self.command] += 1
                self.send_response(status, reason)
                for name, value in headers:
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                if self.command == "HEAD":
                    length = next(
                        (v for n, v in headers if n.lower() == "content-length"), str(len(data))
                    )
                    self.send_header("Content-Length", length)
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, fault: _Fault) -> None:
                request_id = uuid.uuid4().hex[:16].upper()
                message = _MESSAGES.get(fault.code, fault.code)
                resource = escape(self.path.split("?", 1)[0])
                data = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n'
                    f"<Error><Code>{escape(fault.code)}</Code>"
                    f"<Message>{escape(message)}</Message>"
                    f"<Resource>{resource}</Resource>"
                    f"<RequestId>{request_id}</RequestId></Error>"
                ).encode()
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("x-amz-request-id", request_id)
                if self.command == "HEAD":
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="faulty-s3", daemon=True)
        self._thread.start()
        return self

    def _forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        host, port = self._upstream
        conn = http.client.HTTPConnection(host, port, timeout=60)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                    continue
                conn.putheader(name, value)
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            conn.close()

    def close(self) -> None:
        """Stop serving; safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
