"""QA engine entry points: one QA sample per image record, and the conversation forms.

Sampling is seeded from (config.seed, record["key"]) only, so a run's output does not
depend on worker count or processing order. Definitions: docs/QA_FAMILIES.md.
"""
from __future__ import annotations

import hashlib
import logging
import random

from lifting.qa.config import QAConfig
from lifting.qa.families import FAMILY_BUILDERS, LEFT_RIGHT_VALUES, Ctx, _pair_relation
from lifting.qa.scene import CAMERA_VIEW, OPPOSITE_VIEW, Scene
from lifting.qa.templates import TemplateBank, get_bank

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
IMAGE_TOKEN = "<image>"


def image_rng(seed: int, key: str, salt: str = "") -> random.Random:
    """The seeded generator of one image: a function of (seed, key, salt) only."""
    h = hashlib.blake2b(f"{seed}:{key}:{salt}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(h, "little"))


def units_statement(config: QAConfig) -> str:
    """The one sentence that states units and rounding in a sample."""
    unit = "feet" if config.units == "imperial" else "metres"
    return f"All distances and sizes are in {unit}, rounded to {config.decimals} decimals."


def generate_qa(record: dict, config: QAConfig | None = None, bank: TemplateBank | None = None) -> dict | None:
    """One QA sample (schemas/qa_sample.schema.json) for an image record, or None when the
    record has no kept object (or no family produced a valid question).

    Args:
        record: image record dict (schemas/image_record.schema.json); only objects with
            status "kept" are used. Boxes in the camera frame, metres.
        config: QA configuration; sampling depends on (config.seed, record["key"]) only.
        bank: template bank (default: qa_templates/, compiled once per process).
    """
    config = config or QAConfig()
    bank = bank or get_bank(style=config.style)
    if not any(o.get("status") == "kept" and o.get("box3d") for o in record.get("objects") or ()):
        return None
    rng = image_rng(config.seed, record["key"])
    scene = Scene(record, config, rng)
    ctx = Ctx(scene, rng, config, bank)
    weights = {f: float(w) for f, w in config.families.items() if w and w > 0 and f in FAMILY_BUILDERS}
    counts = {f: 0 for f in weights}
    questions: list[dict] = []
    while weights and len(questions) < config.max_questions:
        fams = list(weights)
        fam = rng.choices(fams, weights=[weights[f] for f in fams])[0]
        q = FAMILY_BUILDERS[fam](ctx)
        if q is None:
            del weights[fam]
            continue
        counts[fam] += 1
        if counts[fam] >= config.max_per_family:
            del weights[fam]
        questions.append(q)
    # Answers alternate within the image (Ctx.want_yes / want_left); an odd count would leave
    # one unpaired answer per image, whose sign is random across images. Dropping it makes
    # every image exactly balanced, hence every run, for any worker count or order.
    if ctx.n_yes % 2:
        _drop_last(questions, lambda q: q["form"] == "yes_no")
    if ctx.n_lr % 2 and len(questions) < config.max_questions:
        # first try to pair the unpaired left/right answer with one more (opposite) answer
        for fam, view, vp in (("relation_position", CAMERA_VIEW, {"type": "camera"}),
                              ("viewpoint_opposite", OPPOSITE_VIEW, {"type": "opposite"})):
            if config.families.get(fam, 0) > 0 and counts.get(fam, 0) < config.max_per_family:
                q = _pair_relation(ctx, fam, ("horizontal",), ("choice_relation",), view, vp)
                if q is not None:
                    counts[fam] += 1
                    questions.append(q)
                    break
    if ctx.n_lr % 2:
        _drop_last(questions, lambda q: q["form"] == "choice" and q["answer"]["value"] in LEFT_RIGHT_VALUES)
    if not questions:
        return None
    for i, q in enumerate(questions):
        q["qid"] = f"{record['key']}-q{i:02d}"
    sample = {
        "schema_version": SCHEMA_VERSION,
        "key": record["key"],
        "image_key": record["key"],
        "source": record.get("source", ""),
        "width": int(record["width"]),
        "height": int(record["height"]),
        "questions": questions,
        "units": config.units,
        "system_prompt": config.system_prompt,
        "preamble": units_statement(config) if ctx.has_numbers and config.style != "n3d" else None,
        "style": config.style,
    }
    return assemble_conversation(sample)


def _drop_last(questions: list[dict], pred) -> None:
    for i in range(len(questions) - 1, -1, -1):
        if pred(questions[i]):
            del questions[i]
            return


def assistant_text(question: dict, style: str = "lift3d") -> str:
    """The assistant turn of one question: reasoning (when present) then the answer; in the
    "n3d" style N3D-VLM's `<think>reasoning</think> answer`."""
    r = question.get("reasoning")
    if not r:
        return question["answer_text"]
    if style == "n3d":
        return f"<think>{r}</think> {question['answer_text']}"
    return f"{r}\n{question['answer_text']}"


def first_user_text(question_text: str, preamble: str | None = None, style: str = "lift3d") -> str:
    """The first user turn: the `<image>` token, the units statement when given, the
    question; N3D-VLM's prompts follow the token directly (`<image>Detect boxes. ...`)."""
    if style == "n3d":
        return f"{IMAGE_TOKEN}{preamble + ' ' if preamble else ''}{question_text}"
    return f"{IMAGE_TOKEN}\n{preamble} {question_text}" if preamble else f"{IMAGE_TOKEN}\n{question_text}"


def assemble_conversation(sample: dict) -> dict:
    """(Re)build `conversations` (LLaVA) and `messages` (OpenAI chat) from
    sample["questions"]; returns the same dict. The first user turn starts with the
    `<image>` token and, when the sample has one, the units statement (`preamble`)."""
    convs: list[dict] = []
    msgs: list[dict] = []
    style = sample.get("style") or "lift3d"
    if sample.get("system_prompt"):
        msgs.append({"role": "system", "content": sample["system_prompt"]})
    for i, q in enumerate(sample["questions"]):
        text = q["question"]
        if i == 0:
            text = first_user_text(text, sample.get("preamble"), style)
        reply = assistant_text(q, style)
        convs.append({"from": "human", "value": text})
        convs.append({"from": "gpt", "value": reply})
        msgs.append({"role": "user", "content": text})
        msgs.append({"role": "assistant", "content": reply})
    sample["conversations"] = convs
    sample["messages"] = msgs
    return sample
