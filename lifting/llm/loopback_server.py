"""A scripted OpenAI chat-completions server on 127.0.0.1, for tests, benchmarks and dry runs.

It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) for the real `openai`
client: `POST /v1/chat/completions` and `GET /v1/models`. Every request is answered by a
`responder(request_json, seq) -> Reply` callable, which scripts the answer: a normal
completion, an HTTP error (429/500 with optional Retry-After), a delay (to provoke client
timeouts), a malformed body, or a dropped connection. The server counts what it did, so a
test can compare the client's counters with the server's own.

Hand-written on asyncio instead of http.server/aiohttp because the benchmark needs a
keep-alive server that handles thousands of requests per second on one core, with no
extra dependency. Binds to 127.0.0.1 only.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class Reply:
    """One scripted answer.

    status: HTTP status; body: dict (sent as JSON), str/bytes (sent verbatim, e.g. a
    malformed body) or None (an OpenAI-style error body for status >= 400);
    delay_s: seconds to wait before answering (a timeout when longer than the client's);
    drop: close the connection without answering (a connection error on the client);
    kind: label the server counts this reply under (e.g. "ok", "changed", "error_500").
    """

    status: int = 200
    body: Any = None
    delay_s: float = 0.0
    headers: dict = field(default_factory=dict)
    drop: bool = False
    kind: str = "ok"


def completion_body(content: str, model: str = "scripted", prompt_tokens: int = 10, completion_tokens: int = 5,
                    finish_reason: str = "stop", seq: int = 0) -> dict:
    """An OpenAI `chat.completion` object whose single choice says `content`."""
    return {
        "id": f"chatcmpl-{seq}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "finish_reason": finish_reason,
                     "message": {"role": "assistant", "content": content}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def chat_reply(content: str, **kw) -> Reply:
    """A 200 reply carrying `content` as the assistant message (kwargs: see completion_body)."""
    kind = kw.pop("kind", "ok")
    return Reply(status=200, body=completion_body(content, **kw), kind=kind)


Responder = Callable[[dict, int], Reply]


class LoopbackChatServer:
    """Scripted chat-completions server on 127.0.0.1:<free port>.

    Use as a context manager (runs its own event loop in a daemon thread) or call
    `serve_forever()` in a dedicated process. `url` is the `base_url` for the client
    (`http://127.0.0.1:PORT/v1`). Counters: `requests` (chat requests received), `kinds`
    (Counter of Reply.kind), `statuses` (Counter of HTTP status sent or 'drop'), `bodies`
    (the last `keep_bodies` request JSONs), `headers_seen` (last request's headers).
    """

    def __init__(self, responder: Responder, port: int = 0, keep_bodies: int = 100_000):
        self.responder = responder
        self.port = port
        self.requests = 0
        self.kinds: collections.Counter = collections.Counter()
        self.statuses: collections.Counter = collections.Counter()
        self.bodies: collections.deque = collections.deque(maxlen=keep_bodies)
        self.headers_seen: dict = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def reset_counters(self) -> None:
        with self._lock:
            self.requests = 0
            self.kinds.clear()
            self.statuses.clear()
            self.bodies.clear()

    # -- lifecycle ---------------------------------------------------------------------
    def __enter__(self) -> "LoopbackChatServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Serve in a daemon thread; returns once the port is bound."""
        self._thread = threading.Thread(target=self._thread_main, name="loopback-chat-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("loopback server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.run_until_complete(self._bind())
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def serve_forever(self, on_ready: Callable[[int], None] | None = None) -> None:
        """Serve in the calling thread until the process ends (for a server process)."""
        async def main():
            await self._bind()
            if on_ready is not None:
                on_ready(self.port)
            await asyncio.Event().wait()

        asyncio.run(main())

    async def _bind(self) -> None:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, self.port, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]

    # -- HTTP ----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
                headers = {}
                for ln in lines[1:]:
                    if ":" in ln:
                        k, v = ln.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0") or 0)
                body = await reader.readexactly(n) if n else b""
                keep = await self._route(method, path, headers, body, writer)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            try:
                writer.close()
            except RuntimeError:  # loop already closing
                pass

    async def _route(self, method: str, path: str, headers: dict, body: bytes, writer) -> bool:
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path.endswith("/models"):
            self._send(writer, 200, {"object": "list", "data": [{"id": "scripted", "object": "model",
                                                                 "created": 0, "owned_by": "lift3d"}]}, {})
            return True
        if method != "POST" or not path.endswith("/chat/completions"):
            self._send(writer, 404, {"error": {"message": "not found", "type": "invalid_request_error"}}, {})
            return True
        try:
            req = json.loads(body)
        except ValueError:
            self._send(writer, 400, {"error": {"message": "bad json", "type": "invalid_request_error"}}, {})
            return True
        with self._lock:
            seq = self.requests
            self.requests += 1
            self.bodies.append(req)
            self.headers_seen = headers
        try:
            reply = self.responder(req, seq)
        except Exception as e:  # a bug in a test's responder: answer 500 and say so
            log.exception("responder failed")
            reply = Reply(status=500, body={"error": {"message": f"responder: {e}"}}, kind="responder_error")
        with self._lock:
            self.kinds[reply.kind] += 1
            self.statuses["drop" if reply.drop else reply.status] += 1
        if reply.delay_s > 0:
            await asyncio.sleep(reply.delay_s)
        if reply.drop:
            writer.transport.abort()
            return False
        body_out = reply.body
        if body_out is None and reply.status >= 400:
            body_out = {"error": {"message": f"scripted {reply.status}", "type": "server_error", "code": None}}
        self._send(writer, reply.status, body_out, reply.headers)
        await writer.drain()
        return True

    @staticmethod
    def _send(writer, status: int, body: Any, headers: dict) -> None:
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body or b""
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(data)}\r\n{extra}connection: keep-alive\r\n\r\n".encode("latin-1") + data)


def request_payload(req: dict) -> dict:
    """The JSON object of the last user turn of a rephrase request ({} when not JSON)."""
    for m in reversed(req.get("messages") or []):
        if m.get("role") == "user":
            try:
                v = json.loads(m.get("content") or "")
            except ValueError:
                return {}
            return v if isinstance(v, dict) else {}
    return {}


def faithful_rewrite(req: dict, prefix: str = "Tell me:") -> str:
    """A rephrase answer that keeps every fact: `prefix` + the question (and "Let me work it
    out." + the reasoning, with the answer echoed), as the JSON object the rephraser asks for."""
    p = request_payload(req)
    out = {"question": f"{prefix} {p.get('question', '')}"}
    if "reasoning" in p:
        out["reasoning"] = f"Let me work it out. {p['reasoning']}"
        out["answer"] = p.get("answer", "")
    return json.dumps(out)
