"""Bounded JSON parsing: the nesting depth of a JSON text, measured before it is parsed.

`json.load` recurses once per nesting level (a `RecursionError` traceback at ~1,000 levels)
and ijson builds arbitrarily deep objects (50 MB of `[[[[...` took 7.5 GB), while no
annotation format read here nests deeper than about 8 levels (COCO: document > list >
annotation > segmentation > polygon). `DepthGuard` scans the bytes in the order a parser
reads them, chunk by chunk, with numpy (strings and their escapes are skipped, so brackets
inside file names do not count), and raises `JSONTooDeep` as soon as a chunk would open a
level beyond the limit: the parser never sees such input, and memory stays that of one chunk.
"""
from __future__ import annotations

import numpy as np

#: Deepest nesting accepted in an annotation file (COCO needs 5; Omni3D's 3x3 R_cam in an
#: annotation needs 5; generous room for pass-through fields).
MAX_JSON_DEPTH = 64

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN = np.zeros(256, dtype=np.int8)
_OPEN[[ord("["), ord("{")]] = 1
_OPEN[[ord("]"), ord("}")]] = -1


class JSONTooDeep(ValueError):
    """A JSON text nests deeper than the guard's limit (`offset`: the byte where it does)."""

    def __init__(self, limit: int, offset: int):
        super().__init__(f"nesting deeper than {limit} levels at byte {offset}")
        self.limit, self.offset = limit, offset


class DepthGuard:
    """Stateful scanner of consecutive chunks of one JSON text (`feed` each chunk in order)."""

    def __init__(self, limit: int = MAX_JSON_DEPTH):
        self.limit = limit
        self.depth = 0  # nesting level after the bytes fed so far
        self.in_string = False
        self.backslashes = 0  # backslashes ending the previous chunk (inside a string)
        self.offset = 0

    def feed(self, data: bytes) -> None:
        """Account for the next chunk; JSONTooDeep when it opens a level beyond the limit."""
        n = len(data)
        if n == 0:
            return
        b = np.frombuffer(data, dtype=np.uint8)
        pos = np.arange(n)
        # run length of backslashes ending at each byte (carried over from the last chunk)
        bs = b == _BACKSLASH
        last_other = np.maximum.accumulate(np.where(bs, -1, pos))
        run = np.where(bs, pos - last_other, 0)
        run = np.where(bs & (last_other < 0), run + self.backslashes, run)
        before = np.concatenate(([self.backslashes if self.in_string else 0], run[:-1]))
        quote = (b == _QUOTE) & (before % 2 == 0)  # an unescaped quote toggles "in a string"
        # outside strings a backslash is invalid JSON (the parser refuses it); escapes only
        # matter inside, where an odd run before a quote escapes it
        toggles = np.cumsum(quote)
        inside = (toggles - quote + int(self.in_string)) % 2 == 1  # state before each byte
        step = np.where(inside | quote, 0, _OPEN[b]).astype(np.int64)
        levels = self.depth + np.cumsum(step)
        if levels.size and levels.max() > self.limit:
            at = int(np.argmax(levels > self.limit))
            raise JSONTooDeep(self.limit, self.offset + at)
        self.depth = int(levels[-1])
        self.in_string = bool((int(toggles[-1]) + int(self.in_string)) % 2)
        self.backslashes = int(run[-1]) if self.in_string else 0
        self.offset += n


def check_depth(data: bytes, limit: int = MAX_JSON_DEPTH) -> None:
    """JSONTooDeep when the JSON text `data` nests deeper than `limit` levels."""
    DepthGuard(limit).feed(data)
