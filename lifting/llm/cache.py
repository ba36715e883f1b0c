"""Persistent cache of chat completions, keyed by (model, prompt, sampling parameters).

One SQLite file per run folder (stdlib `sqlite3`, WAL journal): several worker processes
may read and write it at once; writers wait (busy timeout) instead of failing, and rows are
written in batches inside one transaction. Only answers the server actually gave (HTTP
200) are stored: a failed request is asked again on the next run, a paid answer never is.
The raw assistant text is stored, not the rephrased result, so a change of the fidelity
rules or parser re-uses every paid answer.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS completions (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    content TEXT,
    finish_reason TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
)
"""


def cache_key(model: str, messages: list[dict], params: dict) -> str:
    """sha256 hex of the canonical JSON of (model, messages, params)."""
    blob = json.dumps({"model": model, "messages": messages, "params": params}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedCompletion:
    """What is stored for one key: the assistant text and the usage it cost."""

    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int


class ResponseCache:
    """SQLite-backed map key -> CachedCompletion. path=None keeps it in memory.

    Safe to use from one thread per instance (the client's event-loop thread) and from
    several processes on the same file. Re-opens itself after a fork.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = str(path) if path is not None else None
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            if self.path is not None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            conn = sqlite3.connect(self.path or ":memory:", timeout=60.0, isolation_level=None,
                                   check_same_thread=False)
            if self.path is not None:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute(_SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: list[str]) -> dict[str, CachedCompletion]:
        """Entries for the keys that are cached (others are absent from the result)."""
        out: dict[str, CachedCompletion] = {}
        if not keys:
            return out
        with self._lock:
            db = self._db()
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                q = "SELECT key, content, finish_reason, prompt_tokens, completion_tokens FROM completions " \
                    f"WHERE key IN ({','.join('?' * len(chunk))})"
                for k, c, f, pt, ct in db.execute(q, chunk):
                    out[k] = CachedCompletion(c, f, int(pt), int(ct))
        return out

    def put_many(self, items: list[tuple[str, str, CachedCompletion]]) -> None:
        """Store (key, model, entry) rows in one transaction; an existing key is kept."""
        if not items:
            return
        now = time.time()
        rows = [(k, m, e.content, e.finish_reason, e.prompt_tokens, e.completion_tokens, now) for k, m, e in items]
        with self._lock:
            db = self._db()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR IGNORE INTO completions VALUES (?,?,?,?,?,?,?)", rows)
                db.execute("COMMIT")
            except sqlite3.Error:
                db.execute("ROLLBACK")
                raise

    def __len__(self) -> int:
        with self._lock:
            return int(self._db().execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
