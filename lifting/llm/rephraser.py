"""Rephrase the question and reasoning texts of QA samples with an LLM, keeping every fact.

`Rephraser(config).rephrase_samples(samples)` returns new sample dicts (inputs are not
modified, as Beam requires) in which each question has
- `rephrased`: True when the LLM text was accepted,
- `rephrase_status`: "ok", or why the template text was kept: a fidelity reason
  (`fidelity_*`, see lifting/llm/fidelity.py), `malformed_response` (no usable JSON),
  `truncated_response` (finish_reason "length"), or an endpoint failure
  (`endpoint_unavailable`, `budget_exhausted`, `endpoint_rejected`); None when the
  question was not sent (empty text).
and `conversations`/`messages` rebuilt by `lifting.qa.assemble_conversation`. No sample is
ever dropped and no endpoint problem raises.

One request per question (question [+ reasoning + final answer]); identical prompts in a
call are sent once, prompts answered before (persistent cache) are not sent at all, and
requests run `config.concurrency` at a time. In Beam, create the Rephraser in
`DoFn.setup`, buffer elements in `process` and call `rephrase_samples` once per bundle in
`finish_bundle` (a Rephraser pickles as its config only and restarts lazily).
"""
from __future__ import annotations

import collections
import logging
from typing import Callable

from lifting.llm.cache import ResponseCache
from lifting.llm.client import ChatClient, ClientStats, Completion
from lifting.llm.config import RephraseConfig
from lifting.llm.fidelity import FieldContext, check_echoed_answer, check_field
from lifting.llm.loop import LoopThread
from lifting.llm.parsing import extract_json_object
from lifting.llm.prompts import rephrase_messages

log = logging.getLogger(__name__)

Assemble = Callable[[dict], dict]


def _default_assemble(sample: dict) -> dict:
    from lifting.qa import assemble_conversation  # written in parallel; imported when used

    return assemble_conversation(sample)


def question_refs(question: dict) -> tuple[str, ...]:
    """Referring texts and categories of a question's objects (params.referring of lifting.qa)."""
    refs: list[str] = []
    referring = (question.get("params") or {}).get("referring") or {}
    if isinstance(referring, dict):
        for r in referring.values():
            if isinstance(r, dict):
                refs += [str(r[k]) for k in ("text", "category") if r.get(k)]
    for r in question.get("object_refs") or ():
        refs.append(str(r))
    return tuple(dict.fromkeys(refs))


def sample_vocabulary(sample: dict) -> tuple[str, ...]:
    """Category names of every object the sample's questions refer to (and sample['objects'])."""
    names: list[str] = []
    for q in sample.get("questions") or ():
        referring = (q.get("params") or {}).get("referring") or {}
        if isinstance(referring, dict):
            names += [str(r["category"]) for r in referring.values() if isinstance(r, dict) and r.get("category")]
    objs = sample.get("objects") or ()
    for o in objs.values() if isinstance(objs, dict) else objs:
        if isinstance(o, dict) and o.get("category"):
            names.append(str(o["category"]))
    return tuple(dict.fromkeys(names))


class Rephraser:
    """LLM rephrasing of QA samples (see module docstring). Close it (or use `with`) when done."""

    def __init__(self, config: RephraseConfig, cache: ResponseCache | None = None):
        self.config = config
        self._cache = cache
        self._client: ChatClient | None = None
        self._loop: LoopThread | None = None
        self._status: collections.Counter = collections.Counter()
        self._c: collections.Counter = collections.Counter()

    # Beam pickles DoFns: carry the settings only, rebuild client and loop on first use.
    def __getstate__(self) -> dict:
        return {"config": self.config}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["config"])

    def __enter__(self) -> "Rephraser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ensure(self) -> None:
        if self._client is None:
            self._client = ChatClient(self.config, self._cache)
            self._loop = LoopThread()

    def close(self) -> None:
        """Release connections, flush and close the cache, stop the loop thread."""
        if self._client is not None and self._loop is not None:
            if self._loop.started:
                self._loop.run(self._client.aclose())
            self._loop.close()
            self._client.cache.close()
        self._client = None
        self._loop = None

    # -- public ---------------------------------------------------------------------------
    def rephrase_samples(self, samples: list[dict], assemble: Assemble | None = None) -> list[dict]:
        """Rephrased copies of `samples` (same order and count); see module docstring."""
        self._ensure()
        return self._loop.run(self.arephrase_samples(samples, assemble))

    async def arephrase_samples(self, samples: list[dict], assemble: Assemble | None = None) -> list[dict]:
        """Async form of `rephrase_samples`; call it from one event loop only."""
        self._ensure()
        assemble = assemble or _default_assemble
        out = []
        jobs: list[tuple[dict, dict, dict]] = []  # (question copy, sample, vocabulary holder)
        for s in samples:
            s2 = dict(s)
            s2["questions"] = [dict(q) for q in s.get("questions") or ()]
            vocab = sample_vocabulary(s2)
            for q in s2["questions"]:
                self._c["questions"] += 1
                if not isinstance(q.get("question"), str) or not q["question"].strip():
                    q["rephrased"], q["rephrase_status"] = False, None
                    self._c["not_sent"] += 1
                    continue
                jobs.append((q, s2, {"vocab": vocab}))
            out.append(s2)
        prompts = [self._messages(q) for q, _, _ in jobs]
        completions = await self._client.complete_many(prompts) if prompts else []
        for (q, _, extra), comp in zip(jobs, completions):
            self._apply(q, comp, extra["vocab"])
        return [assemble(s) or s for s in out]

    def stats(self) -> dict:
        """Counters for stats.json: questions, outcome counts, rejections by reason, requests,
        retries by cause, cache hits/misses, tokens. Never contains the API key."""
        d = {"questions": int(self._c["questions"]), "sent": int(self._c["questions"] - self._c["not_sent"]),
             "rephrased": int(self._status["ok"]), "not_rephrased": int(self._c["questions"] - self._status["ok"]),
             "unchanged_text": int(self._c["unchanged_text"]),
             "status_counts": dict(sorted(self._status.items())),
             "rejections_by_reason": {k: int(v) for k, v in sorted(self._status.items())
                                      if k.startswith("fidelity_") or k in ("malformed_response", "truncated_response")},
             "model": self.config.model}
        for k, v in d["rejections_by_reason"].items():
            d["rejected_" + k] = v
        d.update((self._client.stats if self._client is not None else ClientStats()).as_dict())
        return d

    # -- internals ------------------------------------------------------------------------
    def _with_reasoning(self, q: dict) -> bool:
        return self.config.rephrase_reasoning and isinstance(q.get("reasoning"), str) and bool(q["reasoning"].strip())

    def _messages(self, q: dict) -> list[dict]:
        if self._with_reasoning(q):
            return rephrase_messages(q["question"], q["reasoning"], str(q.get("answer_text") or ""))
        return rephrase_messages(q["question"], None, None)

    def _apply(self, q: dict, comp: Completion, vocab: tuple[str, ...]) -> None:
        status, new_q, new_r = self._judge(q, comp, vocab)
        self._status[status] += 1
        if status == "ok":
            if new_q == q["question"] and (new_r is None or new_r == q.get("reasoning")):
                self._c["unchanged_text"] += 1
            q["question"] = new_q
            if new_r is not None:
                q["reasoning"] = new_r
            q["rephrased"], q["rephrase_status"] = True, "ok"
        else:
            q["rephrased"], q["rephrase_status"] = False, status

    def _judge(self, q: dict, comp: Completion, vocab: tuple[str, ...]) -> tuple[str, str | None, str | None]:
        """(status, new question, new reasoning or None) for one completion."""
        if comp.status != "ok":
            return comp.status, None, None
        if comp.finish_reason == "length":
            return "truncated_response", None, None
        with_r = self._with_reasoning(q)
        obj = extract_json_object(comp.content)
        if obj is None:
            text = (comp.content or "").strip().strip('"').strip()
            if with_r or not text or "{" in text or "\n" in text:
                return "malformed_response", None, None
            obj = {"question": text}  # a bare rewritten question from a server without JSON mode
        new_q = obj.get("question")
        new_r = obj.get("reasoning") if with_r else None
        if not isinstance(new_q, str) or (with_r and not isinstance(new_r, str)):
            return "malformed_response", None, None
        new_q, new_r = new_q.strip(), new_r.strip() if isinstance(new_r, str) else None
        answer_text = str(q.get("answer_text") or "")
        value = (q.get("answer") or {}).get("value") if isinstance(q.get("answer"), dict) else None
        refs = question_refs(q)
        ratio = self.config.max_length_ratio
        reason = check_field(q["question"], new_q, FieldContext(refs, vocab, max_length_ratio=ratio))
        if reason is None and with_r:
            reason = check_field(q["reasoning"], new_r, FieldContext(refs, vocab, answer_text, value, True, ratio))
            if reason is None:
                reason = check_echoed_answer(answer_text, value, obj.get("answer"))
        if reason is not None:
            return reason, None, None
        return "ok", new_q, new_r
