"""lifting.sources.json_depth.DepthGuard against a byte-at-a-time reference scanner, over
random JSON-like texts (brackets inside strings, escaped quotes, runs of backslashes across
chunk boundaries) cut into random chunks."""
from __future__ import annotations

import random

import pytest

from lifting.sources.json_depth import DepthGuard, JSONTooDeep, check_depth


def _events(text: bytes):
    """(offset, event, depth after it) of the structural bytes of a JSON-like text, one byte
    at a time (the definition the guard is checked against): "open" / "close" of a bracket
    outside strings, "string" / "end_string" at the quotes that open and close a string."""
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
                yield i, "end_string", depth
            continue
        if ch == '"':
            in_string = True
            yield i, "string", depth
        elif ch in "[{":
            depth += 1
            yield i, "open", depth
        elif ch in "]}":
            depth -= 1
            yield i, "close", depth


def _reference(text: bytes, limit: int) -> int | None:
    """Offset of the byte opening a level beyond `limit`, or None."""
    return next((i for i, ev, depth in _events(text) if ev == "open" and depth > limit), None)


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


def _feed_in_chunks(guard, text: bytes, rng: random.Random) -> None:
    """Feed `text` to a DepthGuard in random chunks of 1-40 bytes."""
    i = 0
    while i < len(text):
        k = rng.randint(1, 40)
        guard.feed(text[i:i + k])
        i += k


@pytest.mark.parametrize("seed", range(300))
def test_depth_guard_matches_the_reference_for_any_chunking(seed):
    rng = random.Random(seed)
    text = _random_text(rng)
    limit = rng.randint(1, 8)
    want = _reference(text, limit)
    got = None
    try:
        _feed_in_chunks(DepthGuard(limit), text, rng)
    except JSONTooDeep as e:
        got = e.offset
    assert got == want
    try:
        check_depth(text, limit, chunk=rng.randint(1, 64))
        whole = None
    except JSONTooDeep as e:
        whole = e.offset
    assert whole == want


def _largest_values(text: bytes) -> int:
    """Largest size (bytes, from its opening to its closing byte) of a string or of an element
    of a top-level list (level 2 -> 3), including values still open at the end."""
    item_at = string_at = None
    big = 0
    for i, ev, depth in _events(text):
        if ev == "string":
            string_at = i
        elif ev == "end_string":
            big, string_at = max(big, i - string_at), None
        elif ev == "open" and depth == 3:
            item_at = i
        elif ev == "close" and depth == 2 and item_at is not None:
            big, item_at = max(big, i - item_at), None
    return max([big] + [len(text) - start for start in (item_at, string_at) if start is not None])


@pytest.mark.parametrize("seed", range(300))
def test_value_size_budget_matches_the_reference_for_any_chunking(seed):
    """A string or a top-level-list element larger than the budget is refused, whatever the
    chunking; nothing smaller is."""
    from lifting.sources.json_depth import JSONValueTooLarge

    rng = random.Random(1000 + seed)
    text = _random_text(rng)
    budget = rng.randint(4, 60)
    too_big = _largest_values(text) > budget
    raised = False
    try:
        _feed_in_chunks(DepthGuard(limit=10_000, max_value_bytes=budget), text, rng)
    except JSONValueTooLarge:
        raised = True
    assert raised == too_big, (text, budget, _largest_values(text))
