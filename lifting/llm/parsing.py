"""Lenient extraction of the JSON object an LLM was asked to answer with.

Servers in JSON mode return a bare object; others wrap it in a ``` fence, put prose
before or after it, or add a trailing comma. `extract_json_object` tries, in order: the
whole text, the first fenced block, then every '{' from the left with
`json.JSONDecoder.raw_decode` (which stops at the end of the first complete value, so
trailing prose is ignored). Returns None when no JSON object is found.
"""
from __future__ import annotations

import json
import re

_FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)```", re.S)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_DECODER = json.JSONDecoder()


def _loads_obj(text: str) -> dict | None:
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            v = json.loads(candidate)
        except ValueError:
            continue
        return v if isinstance(v, dict) else None
    return None


def extract_json_object(text: str | None) -> dict | None:
    """The first JSON object in an LLM answer (see module docstring), or None."""
    if not text:
        return None
    s = text.strip().lstrip("\ufeff")
    v = _loads_obj(s)
    if v is not None:
        return v
    m = _FENCE.search(s)
    if m:
        v = _loads_obj(m.group(1).strip())
        if v is not None:
            return v
    i = s.find("{")
    tries = 0
    while i != -1 and tries < 50:
        tries += 1
        for cand in (s[i:], _TRAILING_COMMA.sub(r"\1", s[i:])):
            try:
                v, _ = _DECODER.raw_decode(cand)
            except ValueError:
                continue
            if isinstance(v, dict):
                return v
        i = s.find("{", i + 1)
    return None
