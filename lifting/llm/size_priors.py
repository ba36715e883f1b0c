"""Category size priors asked from an LLM, validated, cached, written for lifting/priors.py.

`build_priors(categories, config)` sends one request per category (concurrent, cached,
retried like every LLM call here) with the prompts of qa_templates/priors_*.j2 and keeps
the answers that pass validation:
- parseable JSON with dims/min/max triples (lenient: [w, h, l] lists or {w, h, l} dicts;
  "typical"/"size" accepted for "dims") -> else `prior_malformed`;
- the answer names the category asked for, if it names one -> else `prior_wrong_category`;
- lifting.priors.parse_entry: positive finite (`prior_nonpositive`), min <= dims <= max
  per axis (`prior_inconsistent_range`), horizontal extents sorted so w >= l;
- every value within 0.01-50 m -> else `prior_out_of_range` (an answer in centimetres
  lands here);
- endpoint failures keep their client status (`endpoint_unavailable`, ...).

The document written is the LLM priors format that `lifting.priors.SizePriors.load(
extra_files=...)` reads: {"schema_version": 1, "categories": {name: {"dims", "min",
"max", "source": "llm:<model>"}}} in metres.
"""
from __future__ import annotations

import collections
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from lifting.llm.cache import ResponseCache
from lifting.llm.client import ChatClient
from lifting.llm.config import LLMConfig
from lifting.llm.loop import LoopThread
from lifting.llm.parsing import extract_json_object
from lifting.llm.prompts import priors_messages
from lifting.priors import SCHEMA_VERSION, normalise_category, parse_entry

log = logging.getLogger(__name__)

MIN_M, MAX_M = 0.01, 50.0
_AXES = (("w", "width"), ("h", "height"), ("l", "length", "depth"))


def read_categories(path: str | os.PathLike) -> list[str]:
    """Category names from a file: .json (a list of names, or COCO-style {"categories":
    [{"name": ...}]}) or text (one per line; blank lines and '#' comments skipped).
    Names are normalised (lifting.priors.normalise_category) and de-duplicated in order."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() == ".json":
        doc = json.loads(text)
        if isinstance(doc, dict):
            doc = doc.get("categories", [])
        names = [d.get("name", "") if isinstance(d, dict) else str(d) for d in doc]
    else:
        names = [ln.split("#", 1)[0] for ln in text.splitlines()]
    out = [normalise_category(n) for n in names]
    return list(dict.fromkeys(n for n in out if n))


def _triple(v) -> list[float] | None:
    if isinstance(v, dict):
        vals = []
        for names in _AXES:
            x = next((v[n] for n in names if n in v), None)
            if x is None:
                return None
            vals.append(x)
        v = vals
    if not isinstance(v, (list, tuple)) or len(v) != 3:
        return None
    try:
        return [float(x) for x in v]
    except (TypeError, ValueError):
        return None


def validate_answer(category: str, obj: dict | None) -> dict | str:
    """A priors entry {"dims", "min", "max"} (metres, w >= l) from a parsed answer, or a reason code."""
    if not isinstance(obj, dict):
        return "prior_malformed"
    named = obj.get("category")
    if isinstance(named, str) and named.strip():
        a, b = set(normalise_category(named).split()), set(category.split())
        if not (a & b) and not any(x.rstrip("s") == y.rstrip("s") for x in a for y in b):
            return "prior_wrong_category"
    raw = {"dims": _triple(next((obj[k] for k in ("dims", "typical", "size") if k in obj), None)),
           "min": _triple(obj.get("min")), "max": _triple(obj.get("max"))}
    if any(v is None for v in raw.values()):
        return "prior_malformed"
    parsed = parse_entry(raw)
    if isinstance(parsed, str):
        return parsed
    dims, lo, hi = parsed
    if not all(MIN_M <= x <= MAX_M for t in parsed for x in t):
        return "prior_out_of_range"
    return {"dims": _r(dims), "min": _r(lo), "max": _r(hi)}


def _r(t) -> list[float]:
    return [round(float(x), 4) for x in t]


@dataclass
class PriorsResult:
    """categories: name -> entry (with source); rejected: name -> reason; stats: counters."""

    categories: dict[str, dict] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)

    def document(self) -> dict:
        """The priors file content (lifting/priors.py extra-file format)."""
        return {"schema_version": SCHEMA_VERSION, "categories": dict(sorted(self.categories.items()))}


def build_priors(categories: list[str], config: LLMConfig, cache: ResponseCache | None = None) -> PriorsResult:
    """Ask the endpoint for the size of each category; see module docstring."""
    loop = LoopThread("lift3d-priors-loop")
    client = ChatClient(config, cache)
    try:
        comps = loop.run(client.complete_many([priors_messages(c) for c in categories])) if categories else []
        loop.run(client.aclose())
    finally:
        loop.close()
        client.cache.close()
    res = PriorsResult()
    reasons: collections.Counter = collections.Counter()
    source = f"llm:{config.model}"
    for cat, comp in zip(categories, comps):
        if comp.status != "ok":
            out: dict | str = comp.status
        elif comp.finish_reason == "length":
            out = "truncated_response"
        else:
            out = validate_answer(cat, extract_json_object(comp.content))
        if isinstance(out, str):
            res.rejected[cat] = out
            reasons[out] += 1
        else:
            out["source"] = source
            res.categories[cat] = out
    res.stats = {"categories": len(categories), "written": len(res.categories), "rejected": len(res.rejected),
                 "rejected_by_reason": dict(sorted(reasons.items())), "model": config.model,
                 **client.stats.as_dict()}
    return res


def write_priors(doc: dict, path: str | os.PathLike) -> None:
    """Write a priors document atomically (temp file + rename)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, p)
