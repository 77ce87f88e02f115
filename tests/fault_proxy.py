"""A fault-injecting HTTP proxy for tests: forwards requests to an upstream server (the GCS emulator) and, at a
seeded rate, answers some of them the way a flaky object store does.

``with FaultProxy("127.0.0.1:9023", rate=0.15, seed=1) as proxy: ...`` serves at ``proxy.url``; point
``STORAGE_EMULATOR_HOST`` at it. Faults hit requests of every kind (media GETs, listings, metadata GETs, multipart
and resumable uploads, the PUTs of resumable sessions, DELETEs). The kinds (:data:`KINDS`):

* ``429``, ``500``, ``503``: an error answer, without forwarding;
* ``reset_before``: the connection is reset (RST, no answer) before the request is forwarded;
* ``reset_after``: the request is forwarded and done upstream, then the connection is reset: the "request
  succeeded but the answer was lost" case, which is what makes retried writes interesting;
* ``stall``: the answer comes after ``stall_s`` seconds;
* ``truncate``: the answer is forwarded with its full ``Content-Length`` but only half its body, then the
  connection is reset (the client sees a short read).

Whether and how a request is faulted is drawn from ``random.Random`` seeded with ``seed``, the request (method,
path and query without the bucket, the object name of an upload) and how often that same request was seen, so a
run is reproducible even when a client sends in parallel (resumable sessions aside: their ids are random).
:meth:`FaultProxy.fail_next` queues faults for the next matching requests, for tests that need one exact fault.

The emulator ignores generation preconditions. Real GCS answers 412 to a create-only upload
(``ifGenerationMatch=0``) of an object that exists, including a retried one whose first attempt landed; so with
``preconditions=True`` (the default) the proxy does that itself: before forwarding a create-only upload it asks
upstream whether the object exists and, if so, answers 412 (counted in ``summary()["preconditions"]``).
The emulator also forgets a resumable upload session once it completes, and drops the connection on a retried
final PUT (whose first answer was lost); GCS answers that PUT with the object again, and so does the proxy, which
replays the answer that completed the session. When upstream cannot be reached the proxy answers 502.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable
from urllib.parse import parse_qs, quote, urlsplit

KINDS = ("429", "500", "503", "reset_before", "reset_after", "stall", "truncate")
_REASONS = {412: "conditionNotMet", 429: "rateLimitExceeded", 500: "backendError", 502: "badGateway",
            503: "backendError"}


def _error_body(status: int) -> bytes:
    """A JSON error as GCS sends it."""
    message = "At least one of the pre-conditions you specified did not hold." if status == 412 else \
        f"injected fault {status}"
    return json.dumps({"error": {"code": status, "message": message,
                                 "errors": [{"reason": _REASONS[status], "message": message}]}}).encode()


def _upload_name(query: dict[str, list[str]], body: bytes) -> str | None:
    """The object name of a JSON-API upload: the ``name`` query parameter, or the ``name`` of the JSON metadata
    (the whole body of a resumable initiation, the first part of a multipart upload)."""
    if "name" in query:
        return query["name"][0]
    start = body.find(b"{")
    if start < 0:
        return None
    try:
        meta, _ = json.JSONDecoder().raw_decode(body[start:].decode("utf-8", "replace"))
    except ValueError:
        return None
    return meta.get("name") if isinstance(meta, dict) else None


class FaultProxy:
    """Forward to ``upstream`` (``host:port``), faulting each request with probability ``rate`` (a fault of one
    of ``kinds``, drawn uniformly); :attr:`counts` counts the injected faults by ``(kind, method)``."""

    def __init__(self, upstream: str, *, rate: float = 0.15, seed: int = 0, kinds: Iterable[str] = KINDS,
                 stall_s: float = 0.3, preconditions: bool = True) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.rate = rate
        self.seed = seed
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        self.stall_s = stall_s
        self.preconditions = preconditions
        self.counts: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[str] = Counter()
        self.precondition_failures = 0
        self._seen: Counter[str] = Counter()
        self._completed: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self._queued: list[tuple[str, str | None, str | None]] = []
        self._lock = threading.Lock()
        self._create_lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                kind = proxy._draw(self.command, self.path, body)
                if kind in ("429", "500", "503"):
                    return self._answer(int(kind), {"Content-Type": "application/json"}, _error_body(int(kind)))
                if kind == "reset_before":
                    return self._reset()
                status, headers, data = proxy._forward(self.command, self.path, self.headers, body)
                if kind == "reset_after" or (kind == "truncate" and len(data) < 2):
                    return self._reset()
                if kind == "stall":
                    time.sleep(proxy.stall_s)
                self._answer(status, headers, data[: len(data) // 2] if kind == "truncate" else data,
                             length=len(data))
                if kind == "truncate":
                    self.wfile.flush()
                    self._reset()

            def _answer(self, status: int, headers: dict[str, str], data: bytes, length: int | None = None) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data) if length is None else length))
                self.end_headers()
                self.wfile.write(data)

            def _reset(self) -> None:
                """Close with RST and no (further) answer."""
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def finish(self) -> None:
                try:
                    super().finish()
                except (OSError, ValueError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def __enter__(self) -> "FaultProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def fail_next(self, kind: str, *, method: str | None = None, path_contains: str | None = None) -> None:
        """Inject ``kind`` into the next request of ``method`` whose path (with query) contains ``path_contains``
        (each call queues one fault; queued faults come before the random ones)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._lock:
            self._queued.append((kind, method, path_contains))

    def summary(self) -> dict[str, Any]:
        """``{"requests": n, "injected": n, "by_kind": {...}, "by_method": {...}, "preconditions": n}``: requests
        seen, faults injected (by kind and by method) and 412s answered for create-only uploads."""
        with self._lock:
            by_kind: Counter[str] = Counter()
            by_method: Counter[str] = Counter()
            for (kind, method), n in self.counts.items():
                by_kind[kind] += n
                by_method[method] += n
            return {"requests": sum(self.requests.values()), "injected": sum(self.counts.values()),
                    "by_kind": dict(by_kind), "by_method": dict(by_method),
                    "preconditions": self.precondition_failures}

    def _draw(self, method: str, path: str, body: bytes) -> str | None:
        """The fault for this request, or None; counts it. The draw depends on the request without its bucket
        (tests make a fresh one each run), with the object name of an upload, and on how often it was seen."""
        parts = urlsplit(path)
        name = _upload_name(parse_qs(parts.query), body) if parts.path.startswith("/upload/") else None
        key = f"{method} {re.sub(r'/b/[^/]+', '/b/-', parts.path)}?{parts.query} {name or ''}"
        with self._lock:
            self.requests[method] += 1
            queued = next((i for i, (_, m, p) in enumerate(self._queued)
                           if (m is None or m == method) and (p is None or p in path)), None)
            kind = self._queued.pop(queued)[0] if queued is not None else None
            if queued is None:
                rng = random.Random(f"{self.seed}|{key}|{self._seen[key]}")
                self._seen[key] += 1
                if self.kinds and rng.random() < self.rate:
                    kind = rng.choice(self.kinds)
            if kind is not None:
                self.counts[(kind, method)] += 1
            return kind

    def _forward(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send the request upstream; create-only uploads of existing objects get 412 instead, PUTs to completed
        resumable sessions the answer that completed them (see above)."""
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if method == "PUT" and "upload_id" in query:
            session = query["upload_id"][0]
            with self._lock:
                completed = self._completed.get(session)
            if completed is not None:
                return completed
            answer = self._send(method, path, headers, body)
            if answer[0] in (200, 201):
                with self._lock:
                    self._completed[session] = answer
            return answer
        if self.preconditions and method == "POST" and parts.path.startswith("/upload/") and \
                query.get("ifGenerationMatch") == ["0"]:
            name = _upload_name(query, body)
            bucket = parts.path.split("/b/", 1)[1].split("/", 1)[0]
            with self._create_lock:
                if name is not None and self._exists(bucket, name):
                    with self._lock:
                        self.precondition_failures += 1
                    return 412, {"Content-Type": "application/json"}, _error_body(412)
                return self._send(method, path, headers, body)
        return self._send(method, path, headers, body)

    def _exists(self, bucket: str, name: str) -> bool:
        status, _, _ = self._send("GET", f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}", {}, b"")
        return status == 200

    def _send(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request upstream (the client's ``Host`` kept, so the emulator's session URLs point at the proxy)."""
        conn = http.client.HTTPConnection(self.upstream, timeout=30)
        try:
            conn.request(method, path, body=body, headers={k: v for k, v in headers.items()
                                                           if k.lower() != "connection"})
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            return 502, {"Content-Type": "application/json"}, _error_body(502)
        finally:
            conn.close()
        dropped = ("transfer-encoding", "connection", "content-length")
        return resp.status, {k: v for k, v in resp.getheaders() if k.lower() not in dropped}, data
