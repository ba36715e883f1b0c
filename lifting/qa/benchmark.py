"""Held-out spatial QA benchmark (in the spirit of N3D-Bench) and its scorer.

`build_benchmark` draws a family-balanced set of open-ended, numeric, choice, count and
yes/no questions with ground-truth answers; `score` grades free-text predictions: numeric
answers are correct within +-25% of the ground truth (as SpatialRGPT-Bench and N3D-Bench
do), everything else exactly. Predictions are graded on their last non-empty line, where
a chain-of-thought model trained on our conversations writes its answer. Both text styles
are read: lift3d's ("reasoning\nanswer", "Yes"/"No") and N3D-VLM's
("<think>reasoning</think> answer", "That is True."/"That is False.").
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from lifting.qa.config import BENCHMARK_FAMILIES, DEFAULT_FAMILIES, FT_PER_M, QAConfig
from lifting.qa.engine import first_user_text, generate_qa, image_rng

log = logging.getLogger(__name__)

NUMERIC_TOLERANCE = 0.25

_INSTRUCTION = {
    "numeric": "Answer with a number in {unit_word}.",
    "yes_no": "Answer yes or no.",
    "choice": "Answer with one of the options.",
    "count": "Answer with a number.",
    "open": "",
}


def is_held_out(key: str, seed: int = 0, fraction: float = 0.01) -> bool:
    """Whether an image belongs to the held-out benchmark split (a function of key and seed)."""
    return image_rng(seed, key, "heldout").random() < fraction


def build_benchmark(records: Iterable[dict], n: int, config: QAConfig | None = None) -> list[dict]:
    """A balanced evaluation set of at most `n` questions from held-out image records.

    Args:
        records: image record dicts (schemas/image_record.schema.json) of the held-out split.
        n: number of questions wanted (fewer when the records do not provide them).
        config: QA configuration; its families are restricted to BENCHMARK_FAMILIES (no box
            lists) and the reasoning is not needed.
    Returns:
        items {qid, image_key, family, form, template_id, question, prompt, answer,
        answer_text, object_ids, params}, families interleaved round-robin (and the variants
        of a family interleaved), deterministic for a given (records, n, config.seed).
    """
    config = config or QAConfig()
    fams = {f: 1.0 for f in BENCHMARK_FAMILIES if config.families.get(f, DEFAULT_FAMILIES[f]) > 0}
    cfg = dataclasses.replace(config, families=fams, cot=False, max_per_family=1,
                              max_questions=max(1, min(config.max_questions, len(fams))))
    unit_word = "feet" if cfg.units == "imperial" else "metres"
    pools: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        sample = generate_qa(rec, cfg)
        if sample is None:
            continue
        for q in sample["questions"]:
            if q["form"] == "boxes":
                continue
            instr = _INSTRUCTION[q["form"]].format(unit_word=unit_word)
            prompt = first_user_text(q["question"] + (f" {instr}" if instr else ""), style=cfg.style)
            item = {
                "qid": q["qid"], "image_key": sample["image_key"], "family": q["family"], "form": q["form"],
                "template_id": q["template_id"], "question": q["question"], "prompt": prompt,
                "answer": q["answer"], "answer_text": q["answer_text"], "object_ids": q["object_ids"],
                "params": q["params"],
            }
            pools[q["family"]][q["params"]["variant"]].append(item)
    rng = image_rng(config.seed, "benchmark")
    queues: dict[str, list[list[dict]]] = {}
    for fam in sorted(pools):
        variants = []
        for v in sorted(pools[fam]):
            items = sorted(pools[fam][v], key=lambda it: it["qid"])
            rng.shuffle(items)
            variants.append(items)
        queues[fam] = variants
    out: list[dict] = []
    turn = {fam: 0 for fam in queues}
    while len(out) < n and queues:
        for fam in list(queues):
            variants = [v for v in queues[fam] if v]
            if not variants:
                del queues[fam]
                continue
            v = variants[turn[fam] % len(variants)]
            turn[fam] += 1
            out.append(v.pop())
            if len(out) >= n:
                break
    if len(out) < n:
        log.warning("benchmark: only %d of %d questions available", len(out), n)
    return out


def write_benchmark(items: list[dict], path: str | Path) -> None:
    """Write benchmark items as JSON Lines."""
    with open(path, "w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps(it, ensure_ascii=False) + "\n")


def read_benchmark(path: str | Path) -> list[dict]:
    """Read a benchmark written by `write_benchmark` (JSON Lines) or a JSON list."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# -- grading -----------------------------------------------------------------------------

_NUM_RE = re.compile(r"(-?\d+(?:\.\d+)?)\s*(cm|mm|meters?|metres?|m|feet|foot|ft|inches|inch|in|\")?(?![A-Za-z])",
                     re.IGNORECASE)
_TO_METRES = {"cm": 0.01, "mm": 0.001, "m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
              "ft": 1.0 / FT_PER_M, "foot": 1.0 / FT_PER_M, "feet": 1.0 / FT_PER_M,
              "in": 1.0 / (12 * FT_PER_M), "inch": 1.0 / (12 * FT_PER_M), "inches": 1.0 / (12 * FT_PER_M),
              '"': 1.0 / (12 * FT_PER_M)}
_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                     "thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty".split())}
_KEYWORDS = {
    "left_of": ["left"], "right_of": ["right"],
    "above": ["above", "higher", "over"], "below": ["below", "lower", "under", "beneath"],
    "in_front_of": ["in front", "front", "nearer", "closer"], "behind": ["behind", "farther", "further", "back"],
    "bigger": ["bigger", "larger", "greater"], "smaller": ["smaller"],
    "taller": ["taller", "higher"], "shorter": ["shorter", "lower"],
    "wider": ["wider", "broader"], "thinner": ["thinner", "narrower"],
    "left": ["left"], "right": ["right"], "ahead": ["ahead", "in front", "front"],
}


_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL)


def final_line(text: str) -> str:
    """The last non-empty line of a prediction (where the answer is), after removing any
    `<think>...</think>` block (N3D-VLM's reasoning)."""
    text = _THINK_RE.sub("\n", str(text))
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def parse_number(text: str, unit: str | None) -> float | None:
    """The last number in `text`, converted to `unit` ("m" or "ft") when it names a length
    unit; None when there is no number."""
    matches = list(_NUM_RE.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    value = float(m.group(1))
    u = (m.group(2) or "").lower()
    if u and unit in ("m", "ft") and u in _TO_METRES:
        metres = value * _TO_METRES[u]
        value = metres * (FT_PER_M if unit == "ft" else 1.0)
    return value


def parse_int(text: str) -> int | None:
    """The last integer (digits or a number word up to twenty) in `text`."""
    best = None
    for m in re.finditer(r"\b(\d+|" + "|".join(_WORDS) + r")\b", text.lower()):
        tok = m.group(1)
        best = int(tok) if tok.isdigit() else _WORDS[tok]
    return best


def _found(text: str, phrases: dict[str, list[str]]) -> set[str]:
    """Which keys of `phrases` occur in `text` (word boundaries, longest phrases first, a
    matched span is not reused)."""
    low = " " + text.lower() + " "
    cands = sorted(((p.lower(), k) for k, ps in phrases.items() for p in ps), key=lambda t: -len(t[0]))
    hit = set()
    for p, k in cands:
        pat = re.compile(r"(?<![a-z0-9])" + re.escape(p) + r"(?![a-z0-9])")
        if pat.search(low):
            hit.add(k)
            low = pat.sub(" # ", low)
    return hit


def _strip_the(s: str) -> list[str]:
    s = s.lower()
    return [s, s[4:]] if s.startswith("the ") else [s]


def grade(item: dict, prediction: str | None) -> bool:
    """Whether one prediction answers one benchmark item correctly."""
    if prediction is None:
        return False
    line = final_line(prediction)
    form, value = item["form"], item["answer"]["value"]
    params = item.get("params", {})
    if form == "numeric":
        x = parse_number(line, item["answer"].get("unit"))
        if x is None:
            return False
        return abs(x - value) <= NUMERIC_TOLERANCE * abs(value) + 1e-9
    if form == "yes_no":
        m = re.search(r"\b(yes|no|true|false)\b", line.lower())
        return m is not None and (m.group(1) in ("yes", "true")) == bool(value)
    if form == "count" or (form == "open" and item["answer"].get("unit") == "o'clock"):
        return parse_int(line) == value
    if form == "choice":
        if params.get("choice_kind") == "relation":
            phrases = {o: _KEYWORDS.get(o, [o]) for o in params["options"]}
        else:
            phrases = {o: _strip_the(t) for o, t in zip(params["options"], params["options_text"])}
        return _found(line, phrases) == {value}
    if form == "open":
        ref = params.get("referring", {})
        if isinstance(value, list):  # an order: every object named, in the right order
            low = line.lower()
            pos = []
            for oid in value:
                texts = _strip_the(ref[oid]["text"])
                idx = [low.find(t) for t in texts if low.find(t) >= 0]
                if not idx:
                    return False
                pos.append(min(idx))
            return pos == sorted(pos) and len(set(pos)) == len(pos)
        texts = {oid: _strip_the(r["text"]) for oid, r in ref.items()}
        found = _found(line, texts)
        return value in found and not (found - {value} - {params.get("anchor")})
    return False


def score(benchmark: list[dict], predictions: dict) -> dict:
    """Accuracy of predictions {qid: text} on a benchmark, overall, per family and per form.

    Numeric answers count within +-25% of the ground truth; choices, yes/no, counts,
    clock hours and orders exactly. A missing prediction counts as wrong.
    """
    per_family: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_form: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    correct = answered = 0
    for it in benchmark:
        pred = predictions.get(it["qid"])
        answered += pred is not None
        ok = grade(it, pred)
        correct += ok
        for table, k in ((per_family, it["family"]), (per_form, it["form"])):
            table[k][0] += 1
            table[k][1] += ok
    n = len(benchmark)

    def acc(t):
        return {k: {"n": v[0], "correct": v[1], "accuracy": v[1] / v[0] if v[0] else 0.0} for k, v in sorted(t.items())}

    return {
        "n": n,
        "answered": answered,
        "correct": correct,
        "accuracy": correct / n if n else 0.0,
        "per_family": acc(per_family),
        "per_form": acc(per_form),
    }
