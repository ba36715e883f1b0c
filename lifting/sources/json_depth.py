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
_SPECIAL = np.zeros(256, dtype=bool)
_SPECIAL[[ord("["), ord("{"), ord("]"), ord("}"), _QUOTE, _BACKSLASH]] = True


#: Largest single value accepted: one string, or one element of a top-level list (an image,
#: an annotation: COCO's largest polygon annotations are ~100 KB). A parser builds each such
#: value whole in memory, so one 2 GB annotation would cost GBs whatever the file's layout.
MAX_JSON_VALUE_BYTES = 32 << 20
#: nesting level of an element of a top-level list (document 1, list 2, element 3)
_ITEM_LEVEL = 3


class JSONOverBudget(ValueError):
    """A JSON text exceeds what the readers accept (`offset`: the byte where it does)."""

    def __init__(self, message: str, limit: int, offset: int):
        super().__init__(f"{message} at byte {offset}")
        self.limit, self.offset = limit, offset


class JSONTooDeep(JSONOverBudget):
    """A JSON text nests deeper than the guard's limit."""

    def __init__(self, limit: int, offset: int):
        super().__init__(f"nesting deeper than {limit} levels", limit, offset)


class JSONValueTooLarge(JSONOverBudget):
    """One string, or one element of a top-level list, is larger than the guard's limit."""

    def __init__(self, what: str, limit: int, offset: int):
        super().__init__(f"{what} larger than {limit >> 20} MB", limit, offset)


class DepthGuard:
    """Stateful scanner of consecutive chunks of one JSON text (`feed` each chunk in order)."""

    def __init__(self, limit: int = MAX_JSON_DEPTH, max_value_bytes: int = MAX_JSON_VALUE_BYTES):
        self.limit = limit
        self.max_value = max_value_bytes
        self.depth = 0  # nesting level after the bytes fed so far
        self.in_string = False
        self.backslashes = 0  # backslashes ending the previous chunk (inside a string)
        self.offset = 0
        self.item_open_at: int | None = None  # offset of the open top-level-list element
        self.string_open_at: int | None = None  # offset of the open string's quote

    def feed(self, data: bytes) -> None:
        """Account for the next chunk; JSONTooDeep when it opens a level beyond the limit.

        Only the bytes that can matter (quotes, backslashes, brackets: a few % of an
        annotation file) are looked at after one table lookup over the chunk."""
        n = len(data)
        if n == 0:
            return
        b = np.frombuffer(data, dtype=np.uint8)
        spos = np.flatnonzero(_SPECIAL[b])
        if spos.size == 0:
            self.backslashes = 0
            self.offset += n
            self._check_open(self.offset)
            return
        sb = b[spos]
        m = spos.size
        bs = sb == _BACKSLASH
        adjacent = np.zeros(m, dtype=bool)  # the previous special byte is the byte just before
        adjacent[1:] = np.diff(spos) == 1
        carry = self.backslashes if self.in_string and spos[0] == 0 else 0
        # run length of backslashes ending at each special byte (carried over from the last chunk)
        start = bs & ~(adjacent & np.concatenate(([False], bs[:-1])))
        idx = np.arange(m)
        last_start = np.maximum.accumulate(np.where(start, idx, -1))
        run = np.where(bs, idx - last_start + 1, 0)
        if carry:
            run = np.where(bs & (last_start == 0), run + carry, run)
        before = np.zeros(m, dtype=np.int64)  # backslashes right before each special byte
        before[1:] = np.where(adjacent[1:] & bs[:-1], run[:-1], 0)
        before[0] = carry
        quote = (sb == _QUOTE) & (before % 2 == 0)  # an unescaped quote toggles "in a string"
        # outside strings a backslash is invalid JSON (the parser refuses it); escapes only
        # matter inside, where an odd run before a quote escapes it
        toggles = np.cumsum(quote)
        inside = (toggles - quote + int(self.in_string)) % 2 == 1  # state before each byte
        step = np.where(inside | quote, 0, _OPEN[sb]).astype(np.int64)
        levels = self.depth + np.cumsum(step)
        if levels.max() > self.limit:
            at = int(np.argmax(levels > self.limit))
            raise JSONTooDeep(self.limit, self.offset + int(spos[at]))
        # sizes of the values a parser would build whole: elements of a top-level list
        # (opened going from level 2 to 3, closed going back) and strings (between quotes)
        before_level = levels - step
        at = self.offset + spos
        self.item_open_at = self._pair(at[(before_level == _ITEM_LEVEL - 1) & (levels == _ITEM_LEVEL)],
                                       at[(before_level == _ITEM_LEVEL) & (levels == _ITEM_LEVEL - 1)],
                                       self.item_open_at, "a list element")
        self.string_open_at = self._pair(at[quote & ~inside], at[quote & inside], self.string_open_at, "a string")
        self.depth = int(levels[-1])
        self.in_string = bool((int(toggles[-1]) + int(self.in_string)) % 2)
        self.backslashes = int(run[-1]) if (self.in_string and spos[-1] == n - 1) else 0
        self.offset += n
        self._check_open(self.offset)

    def _pair(self, opens: np.ndarray, closes: np.ndarray, carried: int | None, what: str) -> int | None:
        """Check the values closed in this chunk (opens and closes alternate, the first close
        ending the value `carried` over from earlier chunks); returns the one left open."""
        if carried is not None:
            opens = np.concatenate(([carried], opens))
        k = min(len(opens), len(closes))
        if k:
            sizes = closes[:k] - opens[:k]
            if sizes.max() > self.max_value:
                i = int(np.argmax(sizes > self.max_value))
                raise JSONValueTooLarge(what, self.max_value, int(opens[i]))
        return int(opens[k]) if len(opens) > k else None

    def _check_open(self, end: int) -> None:
        """A value still open at byte `end` may not have grown beyond the limit either."""
        for start, what in ((self.item_open_at, "a list element"), (self.string_open_at, "a string")):
            if start is not None and end - start > self.max_value:
                raise JSONValueTooLarge(what, self.max_value, start)


def check_depth(data: bytes, limit: int = MAX_JSON_DEPTH, chunk: int = 1 << 22,
                max_value_bytes: int = MAX_JSON_VALUE_BYTES) -> None:
    """JSONTooDeep when the JSON text `data` nests deeper than `limit` levels, and
    JSONValueTooLarge when one string or top-level-list element is larger than
    `max_value_bytes` (scanned in chunks of `chunk` bytes: the scan's own arrays stay small
    whatever the text's size)."""
    guard = DepthGuard(limit, max_value_bytes)
    view = memoryview(data)
    for i in range(0, len(data), chunk):
        guard.feed(view[i:i + chunk])
