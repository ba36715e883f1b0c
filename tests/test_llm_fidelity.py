"""Fidelity checker and lenient JSON parsing of LLM rewrites (lifting/llm/fidelity.py, parsing.py).

One test per rejection reason, plus acceptance of real paraphrases, the few-shot examples of
qa_templates/rephrase_fewshot.j2, and (when the QA engine is importable) every question the
real QA templates produce.
"""
from __future__ import annotations

import json
import random

import pytest

from lifting.llm.fidelity import (FieldContext, check_echoed_answer, check_field, compare_quantities, quantities)
from lifting.llm.parsing import extract_json_object
from lifting.llm.prompts import fewshot_examples, rephrase_messages
from lifting.llm.rephraser import question_refs, sample_vocabulary

BOX_A = "Bbox(chair,412,630,2.35,0.12,0.52,0.91,0.55)"
BOX_B = "Bbox(table,702,588,3.10,-0.40,1.20,0.75,0.80)"
Q = f"Which is closer to the camera, the red chair {BOX_A} or the table {BOX_B}?"
R = "The red chair is at a depth of 2.35 m and the table at 3.10 m. 2.35 m is less than 3.10 m, so the red chair is closer."
REFS = ("the red chair", "chair", "the table", "table")
VOCAB = ("chair", "table", "lamp")


def qctx():
    return FieldContext(REFS, VOCAB)


def rctx(answer="the red chair", value="the red chair"):
    return FieldContext(REFS, VOCAB, answer, value, True)


# -- acceptance ------------------------------------------------------------------------------
@pytest.mark.parametrize("rewrite", [
    f"Between the red chair {BOX_A} and the table {BOX_B}, which one is closer to the camera?",
    f"Of the red chair {BOX_A} and the table {BOX_B}, which is closer to the camera?",
    # spacing inside a Bbox may change, its numbers may not
    f"Between the red chair {BOX_A.replace(',', ', ')} and the table {BOX_B}, which is closer?",
])
def test_faithful_question_rewrites_are_accepted(rewrite):
    assert check_field(Q, rewrite, qctx()) is None


@pytest.mark.parametrize("rewrite", [
    "The red chair sits 2.35 m away while the table is 3.10 metres away; since 2.35 m is less than 3.10 m, the red chair is closer.",
    "The red chair is 235 cm deep in the scene and the table 3.10 m. As 2.35 m is less than 310 cm, the red chair is closer.",
    "The table is at 3.10 m and the red chair at 2.35 m. Because 2.35 m is less than 3.10 m, the red chair is closer.",
])
def test_faithful_reasoning_rewrites_are_accepted(rewrite):
    assert check_field(R, rewrite, rctx()) is None


def test_reordered_referring_expression_is_accepted():
    ctx = FieldContext(("the left chair",), ())
    assert check_field("How tall is the left chair?", "What is the height of the chair on the left?", ctx) is None
    assert check_field("How tall is the left chair?", "What is the height of the chair?", ctx) == "fidelity_object_missing"


def test_unit_may_be_spelled_out_on_a_bare_tuple_number():
    t = "The centres are (-1.30, 1.13, 6.59) and (0.63, 1.16, 2.12) m."
    r = "The centres sit at (-1.30 m, 1.13 m, 6.59 m) and at (0.63 m, 1.16 m, 2.12 m)."
    assert check_field(t, r, FieldContext()) is None


@pytest.mark.parametrize("a,b,same", [
    ("1.5 m", "150 cm", True), ("1.5 m", "1.50 metres", True), ("1.5 m", "1500 mm", True),
    ("45°", "45 degrees", True), ("12%", "12 percent", True), ("2 chairs", "two chairs", True),
    ("a 3D box", "a box in 3D", True), ("1.5 m", "1.52 m", False), ("1.5 m", "1.5 ft", False),
    ("1.5 m", "1.5", False), ("2 chairs", "3 chairs", False), ("2 chairs", "chairs", False),
    ("0.79 rad", "45 degrees", False), ("(0.1, 0.2) m", "(0.1, 0.25) m", False),
])
def test_quantities_compare_by_value_and_unit(a, b, same):
    assert (compare_quantities(quantities(a), quantities(b)) is None) is same


# -- one test per rejection reason ------------------------------------------------------------
def test_changed_bbox_is_rejected():
    bad = Q.replace("2.35,0.12", "2.36,0.12")
    assert check_field(Q, bad, qctx()) == "fidelity_bbox_changed"
    assert check_field(Q, Q.replace(" " + BOX_B, ""), qctx()) == "fidelity_bbox_changed"


def test_changed_number_is_rejected():
    assert check_field(R, R.replace("3.10 m.", "3.15 m."), rctx()) == "fidelity_number_changed"
    assert check_field(R, R + " It is 2 m wide.", rctx()) == "fidelity_number_changed"  # added


def test_changed_unit_is_rejected():
    assert check_field("It is 1.5 m tall.", "It is 1.5 ft tall.", FieldContext()) == "fidelity_unit_changed"
    assert check_field("It is 1.5 m tall.", "It is 1.5 tall.", FieldContext()) == "fidelity_unit_changed"


def test_missing_object_is_rejected():
    assert check_field("Is the red chair above the table?", "Is the chair above the table?",
                       FieldContext(REFS, VOCAB)) == "fidelity_object_missing"


def test_added_object_is_rejected():
    assert check_field("Is the chair above the table?", "Is the chair above the table next to the lamp?",
                       FieldContext(REFS, VOCAB)) == "fidelity_object_added"


@pytest.mark.parametrize("t,r", [
    ("Is the chair to the left of the table?", "Is the chair to the right of the table?"),
    ("Is the chair above the table?", "Is the chair below the table?"),
    ("Is the chair closer than the table?", "Is the table farther than the chair?"),
    ("Which is bigger, the chair or the table?", "Which is smaller, the chair or the table?"),
])
def test_flipped_relation_is_rejected(t, r):
    assert check_field(t, r, FieldContext(REFS, VOCAB)) == "fidelity_relation_changed"


def test_dropped_negation_is_rejected():
    assert check_field("The chair is not above the table.", "The chair is above the table.",
                       FieldContext(REFS, VOCAB)) == "fidelity_negation_changed"
    assert check_field("The chair is not above the table.", "The chair isn't above the table.",
                       FieldContext(REFS, VOCAB)) is None


def test_changed_final_answer_is_rejected():
    t = "The chair is 1.62 m tall and the table 0.84 m, so the chair is taller. The answer is yes."
    ctx = FieldContext(REFS, VOCAB, "Yes", True, True)
    assert check_field(t, "The chair measures 1.62 m and the table 0.84 m, so the chair is taller. Yes.", ctx) is None
    assert check_field(t, "The chair measures 1.62 m and the table 0.84 m, so the chair is taller. No wait, yes? no.",
                       ctx) in ("fidelity_answer_changed", "fidelity_negation_changed")
    flipped = "The chair measures 1.62 m and the table 0.84 m, so the chair is taller. The answer: no, it is."
    assert check_field(t, flipped.replace("no, it is", "no"), ctx) in ("fidelity_answer_changed", "fidelity_negation_changed")
    # choice answers: the winner must still be named where the template reasoning names it
    assert check_field(R, "The chair is at a depth of 2.35 m and the table at 3.10 m; 2.35 m is less than 3.10 m.",
                       rctx()) in ("fidelity_object_missing", "fidelity_answer_changed")


def test_echoed_answer_is_checked():
    assert check_echoed_answer("Yes", True, "yes") is None
    assert check_echoed_answer("Yes", True, "No") == "fidelity_answer_changed"
    assert check_echoed_answer("0.32 m", 0.32, "0.32 meters") is None
    assert check_echoed_answer("0.32 m", 0.32, "0.33 m") == "fidelity_answer_changed"
    assert check_echoed_answer("The red chair.", "the red chair", "the red chair") is None
    assert check_echoed_answer("The red chair.", "the red chair", "the table") == "fidelity_answer_changed"
    assert check_echoed_answer("3", 3, None) is None  # not echoed: nothing to compare
    assert check_echoed_answer("3", 3, {"n": 3}) == "fidelity_answer_changed"


def test_length_out_of_range_is_rejected():
    t = "How tall is the chair?"
    assert check_field(t, t + " Please think about it carefully." * 10, FieldContext(("the chair",))) == \
        "fidelity_length_out_of_range"


def test_empty_rewrite_is_malformed():
    assert check_field(Q, "  ", qctx()) == "malformed_response"
    assert check_field(Q, None, qctx()) == "malformed_response"


# -- templates and real QA --------------------------------------------------------------------
@pytest.mark.parametrize("with_reasoning", [True, False])
def test_fewshot_examples_pass_their_own_check(with_reasoning):
    """The examples teach the model the rules: each must pass the checker."""
    exs = fewshot_examples(with_reasoning)
    assert len(exs) >= 2
    for ex in exs:
        i, o = ex["input"], ex["output"]
        assert check_field(i["question"], o["question"], FieldContext()) is None, i["question"]
        if with_reasoning:
            assert check_field(i["reasoning"], o["reasoning"], FieldContext((), (), i["answer"], None, True)) is None
            assert check_echoed_answer(i["answer"], None, o["answer"]) is None
    msgs = rephrase_messages("How tall is the lamp?", "The lamp is 1.2 m tall.", "1.2 m" if with_reasoning else None) \
        if with_reasoning else rephrase_messages("How tall is the lamp?", None, None)
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert len(msgs) == 2 + 2 * len(exs)
    assert json.loads(msgs[-1]["content"])["question"] == "How tall is the lamp?"


def _real_samples(n=40):
    try:
        from test_qa_scenes import random_record
        from lifting.qa import QAConfig, generate_qa
    except ImportError as e:  # the QA engine is developed in parallel
        pytest.skip(f"QA engine not importable: {e}")
    out = [generate_qa(random_record(i, n_objects=2 + i % 8, n_rejected=i % 3), QAConfig(seed=3)) for i in range(n)]
    return [s for s in out if s]


def _change_one_number(text: str, rng: random.Random) -> str | None:
    import re

    from lifting.llm.fidelity import strip_bboxes

    plain = strip_bboxes(text)
    nums = [m for m in re.finditer(r"(?<![\w.])\d+\.\d+", plain)]
    if not nums:
        return None
    m = rng.choice(nums)
    new = f"{float(m.group()) + 0.01:.{len(m.group().split('.')[1])}f}"
    return text.replace(m.group(), new, 1) if text.count(m.group()) == plain.count(m.group()) else None


def test_real_qa_templates_faithful_rewrites_pass_and_changed_numbers_fail():
    """Every question of the real QA templates: a faithful rewrite passes; a number changed
    in its reasoning is caught."""
    rng = random.Random(0)
    samples = _real_samples()
    n_q = n_changed = 0
    for s in samples:
        vocab = sample_vocabulary(s)
        for q in s["questions"]:
            n_q += 1
            refs = question_refs(q)
            assert check_field(q["question"], "Tell me: " + q["question"], FieldContext(refs, vocab)) is None, q["question"]
            if not q["reasoning"]:
                continue
            ctx = FieldContext(refs, vocab, q["answer_text"], q["answer"]["value"], True)
            assert check_field(q["reasoning"], "Step by step. " + q["reasoning"], ctx) is None, q["reasoning"]
            changed = _change_one_number(q["reasoning"], rng)
            if changed is not None and changed != q["reasoning"]:
                n_changed += 1
                assert check_field(q["reasoning"], changed, ctx) == "fidelity_number_changed", changed
    assert n_q > 100 and n_changed > 50


# -- parsing -------------------------------------------------------------------------------
@pytest.mark.parametrize("text,expected", [
    ('{"question": "a"}', {"question": "a"}),
    ('```json\n{"question": "a"}\n```', {"question": "a"}),
    ('Sure! Here is the rewrite:\n{"question": "a {b}"}\nHope this helps.', {"question": "a {b}"}),
    ('{"question": "a", "reasoning": "b",}', {"question": "a", "reasoning": "b"}),
    ('Here: ```\n{"question": "x"}```', {"question": "x"}),
    ("I cannot help with that.", None),
    ('["not", "an", "object"]', None),
    ("", None),
    (None, None),
])
def test_extract_json_object(text, expected):
    assert extract_json_object(text) == expected
