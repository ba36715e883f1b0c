"""QA templates: every phrasing renders, undefined values are errors, a new phrasing is a
one-file change."""
from __future__ import annotations

import shutil

import jinja2
import pytest

from lifting.qa import QAConfig, generate_qa
from lifting.qa.config import DEFAULT_FAMILIES
from lifting.qa.templates import TemplateBank, get_bank
from test_qa_scenes import random_record


def test_one_file_per_family_with_several_phrasings_and_a_reasoning_and_answer():
    bank = get_bank()
    assert set(bank.questions) == set(DEFAULT_FAMILIES)
    for fam, variants in bank.questions.items():
        assert sum(len(v) for v in variants.values()) >= 3, fam
        for v in variants:
            assert v in bank.reasoning[fam] or "default" in bank.reasoning[fam], (fam, v)
            assert v in bank.answers[fam] or "default" in bank.answers[fam], (fam, v)


@pytest.mark.parametrize("units", ["metric", "imperial"])
def test_every_template_is_rendered(units):
    bank = get_bank()
    expected = {tid for vs in bank.questions.values() for lst in vs.values() for tid, _ in lst}
    seen = set()
    cfg = QAConfig(units=units, max_per_family=4, max_questions=40)
    for s in range(120):
        sample = generate_qa(random_record(s, n_objects=4 + s % 5), QAConfig(**{**cfg.__dict__, "seed": s}))
        for q in sample["questions"]:
            seen.add(q["template_id"])
            assert q["question"].strip() and q["answer_text"].strip() and q["reasoning"].strip()
            assert "  " not in q["question"] and "{" not in q["question"] + q["reasoning"]
        if seen >= expected:
            break
    assert expected - seen == set()


def test_undefined_values_raise():
    bank = get_bank()
    _, macro = bank.questions["relation_position"]["yes_no"][0]
    with pytest.raises(jinja2.UndefinedError):
        macro({"a": "the cup", "relation": "left_of"})  # no "b"


def test_adding_a_phrasing_is_one_file_change(tmp_path):
    d = tmp_path / "qa_templates"
    shutil.copytree(get_bank().directory, d)
    with open(d / "relation_position.j2", "a") as f:
        f.write('{% macro q_yes_no_9(q) %}NEW PHRASING: is {{ q.a }} {{ REL[q.relation] }} {{ q.b }}?{% endmacro %}\n')
    bank = TemplateBank(d)
    assert "relation_position.yes_no.9" in [t for t, _ in bank.questions["relation_position"]["yes_no"]]
    hits = 0
    for s in range(40):
        sample = generate_qa(random_record(s), QAConfig(families={"relation_position": 1.0}, max_per_family=4), bank=bank)
        hits += sum(q["template_id"] == "relation_position.yes_no.9" and q["question"].startswith("NEW PHRASING")
                    for q in sample["questions"])
    assert hits > 0


def test_badly_named_question_macro_is_reported(tmp_path):
    (tmp_path / "detection.j2").write_text("{% macro q_all(q) %}x{% endmacro %}")
    with pytest.raises(ValueError, match="q_<variant>_<n>"):
        TemplateBank(tmp_path)
