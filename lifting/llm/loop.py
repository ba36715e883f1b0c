"""A private asyncio event loop in a daemon thread, for calling async code from sync code.

The rephraser and the priors builder are called synchronously (from a Beam DoFn, a CLI, a
test) but keep an async HTTP client whose connections must stay on one loop across calls.
`LoopThread.run(coro)` submits the coroutine to the loop thread and waits for its result;
it works whether or not the calling thread already runs an event loop.
"""
from __future__ import annotations

import asyncio
import os
import threading
from typing import Any, Awaitable


class LoopThread:
    """Owns one event loop running in a daemon thread, started on first use."""

    def __init__(self, name: str = "lift3d-llm-loop"):
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._pid != os.getpid():  # forked: the loop thread did not come along
                self._loop = self._thread = None
                self._pid = os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def main():
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(target=main, name=self.name, daemon=True)
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Awaitable[Any]) -> Any:
        """Run `coro` on the loop thread and return its result (exceptions propagate)."""
        loop = self._start()
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop thread")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    @property
    def started(self) -> bool:
        return self._loop is not None

    def close(self) -> None:
        """Stop the loop and join its thread (pending tasks are cancelled)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return

        async def _cancel_rest():
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_cancel_rest(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(10)
        loop.close()
