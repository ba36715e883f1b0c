"""Chat prompts of the rephraser and of the size-priors builder, from qa_templates/*.j2.

- rephrase_system.j2: the rules (variable `with_reasoning`).
- rephrase_fewshot.j2: renders a JSON list of {"input": {...}, "output": {...}} examples;
  each becomes a user/assistant pair built by the same `rephrase_user_content` as real
  requests, so examples and requests look identical to the model.
- priors_system.j2, priors_user.j2 (variable `category`).

Templates render with StrictUndefined; a prompt is a list of {"role", "content"} dicts, and
its exact text is part of the cache key (editing a template invalidates the cache).
"""
from __future__ import annotations

import functools
import json

import jinja2

from lifting.resources import resource_dir


@functools.lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource_dir("qa_templates"))),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=False, autoescape=False)


def render(name: str, **values) -> str:
    """Render qa_templates/`name` with `values` (StrictUndefined), stripped."""
    return _env().get_template(name).render(**values).strip()


def rephrase_user_content(question: str, reasoning: str | None, answer: str | None) -> str:
    """The user turn of one rephrase request: a JSON object (question[, reasoning, answer])."""
    obj = {"question": question}
    if reasoning is not None:
        obj["reasoning"] = reasoning
        obj["answer"] = answer or ""
    return json.dumps(obj, ensure_ascii=False)


@functools.lru_cache(maxsize=2)
def _rephrase_prefix(with_reasoning: bool) -> tuple[tuple[str, str], ...]:
    msgs = [("system", render("rephrase_system.j2", with_reasoning=with_reasoning))]
    for ex in json.loads(render("rephrase_fewshot.j2", with_reasoning=with_reasoning)):
        i, o = ex["input"], ex["output"]
        msgs.append(("user", rephrase_user_content(i["question"], i.get("reasoning"), i.get("answer"))))
        ordered = {k: o[k] for k in ("question", "reasoning", "answer") if k in o}
        msgs.append(("assistant", json.dumps(ordered, ensure_ascii=False)))
    return tuple(msgs)


def fewshot_examples(with_reasoning: bool) -> list[dict]:
    """The few-shot examples as data (for checking that they pass the fidelity check)."""
    return json.loads(render("rephrase_fewshot.j2", with_reasoning=with_reasoning))


def rephrase_messages(question: str, reasoning: str | None, answer: str | None) -> list[dict]:
    """Full chat prompt (system, few-shot turns, request) for one question."""
    prefix = _rephrase_prefix(reasoning is not None)
    msgs = [{"role": r, "content": c} for r, c in prefix]
    msgs.append({"role": "user", "content": rephrase_user_content(question, reasoning, answer)})
    return msgs


@functools.lru_cache(maxsize=1)
def _priors_system() -> str:
    return render("priors_system.j2")


def priors_messages(category: str) -> list[dict]:
    """Chat prompt asking for the typical metric size of one category."""
    return [{"role": "system", "content": _priors_system()},
            {"role": "user", "content": render("priors_user.j2", category=category)}]
