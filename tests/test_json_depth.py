"""lifting.sources.json_depth.DepthGuard against a byte-at-a-time reference scanner, over
random JSON-like texts (brackets inside strings, escaped quotes, runs of backslashes across
chunk boundaries) cut into random chunks."""
from __future__ import annotations

import random

import pytest

from lifting.sources.json_depth import DepthGuard, JSONTooDeep, check_depth


def _reference(text: bytes, limit: int) -> int | None:
    """Offset of the byte opening a level beyond `limit`, or None (the definition)."""
    depth, in_string, escaped = 0, False, False
    for i, c in enumerate(text):
        ch = chr(c)
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return i
        elif ch in "]}":
            depth -= 1
    return None


def _random_text(rng: random.Random) -> bytes:
    parts = []
    for _ in range(rng.randint(1, 300)):
        r = rng.random()
        if r < 0.3:
            parts.append(rng.choice(["[", "{", "]", "}"]))
        elif r < 0.6:
            body = "".join(rng.choice(['a', '[', ']', '{', '\\\\', '\\"', ' ', '}']) for _ in range(rng.randint(0, 8)))
            parts.append(f'"{body}"')
        else:
            parts.append(rng.choice(["1", ",", ":", " ", "null", "2.5"]))
    return "".join(parts).encode()


@pytest.mark.parametrize("seed", range(300))
def test_depth_guard_matches_the_reference_for_any_chunking(seed):
    rng = random.Random(seed)
    text = _random_text(rng)
    limit = rng.randint(1, 8)
    want = _reference(text, limit)
    guard = DepthGuard(limit)
    got = None
    i = 0
    try:
        while i < len(text):
            k = rng.randint(1, 40)
            guard.feed(text[i:i + k])
            i += k
    except JSONTooDeep as e:
        got = e.offset
    assert got == want
    try:
        check_depth(text, limit, chunk=rng.randint(1, 64))
        whole = None
    except JSONTooDeep as e:
        whole = e.offset
    assert whole == want
