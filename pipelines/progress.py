"""Progress display on the local runner, and the final summary table.

Workers run in other processes, and the local runner reports Beam metrics only when the
pipeline ends, so progress goes through the file system: each DoFn instance owns one small
counter file in a progress folder (`ProgressTicker`, rewritten at most every half second,
no lock shared between workers), and a thread of the launching process (`ProgressDisplay`)
sums them and draws `done/total images, images/s, ETA` on stderr.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import uuid
from pathlib import Path


class ProgressTicker:
    """Counts items done in one worker and publishes the count to `folder/<id>.count`."""

    def __init__(self, folder: str | Path | None, min_interval_s: float = 0.5):
        self.folder = Path(folder) if folder else None
        self.count = 0
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._path = None

    def tick(self, n: int = 1) -> None:
        """Add `n` items; write the file when `min_interval_s` has passed since the last write."""
        self.count += n
        if self.folder is not None and time.monotonic() - self._last >= self.min_interval_s:
            self.flush()

    def flush(self) -> None:
        """Write the current count now (no-op without a folder); errors are ignored."""
        if self.folder is None:
            return
        try:
            if self._path is None:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.count"
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(str(self.count))
            os.replace(tmp, self._path)
        except OSError:
            pass
        self._last = time.monotonic()


def read_progress(folder: str | Path) -> int:
    """Sum of all counter files in `folder` (0 when absent)."""
    total = 0
    for p in Path(folder).glob("*.count"):
        try:
            total += int(p.read_text() or 0)
        except (OSError, ValueError):
            continue
    return total


def format_eta(seconds: float | None) -> str:
    """'1:02:03' style duration, '--:--' when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:d}:{sec:02d}"


def progress_line(label: str, done: int, total: int, elapsed_s: float) -> str:
    """One status line: `lift  120/500 images  12.3 img/s  ETA 0:31`."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    eta = (total - done) / rate if rate > 0 else None
    return f"{label}  {done}/{total} images  {rate:.1f} img/s  ETA {format_eta(eta)}"


class ProgressDisplay:
    """Background thread drawing progress from a folder of counter files on `stream`.

    On a terminal the line is redrawn in place every `interval_s`; otherwise a line is
    printed every `log_every_s`. Use as a context manager around `pipeline.run()`.
    """

    def __init__(self, folder: str | Path, total: int, label: str, stream=None,
                 interval_s: float = 0.5, log_every_s: float = 10.0):
        self.folder, self.total, self.label = Path(folder), total, label
        self.stream = stream or sys.stderr
        self.interval_s, self.log_every_s = interval_s, log_every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._t0 = time.monotonic()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __enter__(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        for p in self.folder.glob("*"):
            p.unlink(missing_ok=True)
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)
        self._draw(final=True)
        return False

    def _draw(self, final: bool = False) -> None:
        done = min(read_progress(self.folder), self.total)
        line = progress_line(self.label, done, self.total, time.monotonic() - self._t0)
        if self._tty:
            self.stream.write("\r" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def _loop(self) -> None:
        last_log = time.monotonic()
        while not self._stop.wait(self.interval_s):
            if self._tty or time.monotonic() - last_log >= self.log_every_s:
                self._draw()
                last_log = time.monotonic()


def format_table(rows: list[tuple[str, object]], title: str | None = None) -> str:
    """A two-column text table (name, value) for the final summary."""
    rows = [(str(a), str(b)) for a, b in rows]
    w1 = max([len(a) for a, _ in rows] + [4])
    w2 = max([len(b) for _, b in rows] + [5])
    bar = "+" + "-" * (w1 + 2) + "+" + "-" * (w2 + 2) + "+"
    out = [title] if title else []
    out.append(bar)
    out += [f"| {a:<{w1}} | {b:>{w2}} |" for a, b in rows]
    out.append(bar)
    return "\n".join(out)
