"""Rephraser end to end against a scripted OpenAI-compatible server on 127.0.0.1.

The acceptance criteria of issue 8: a server that changes a number in 20% of its answers
gets exactly those rejected; a server failing half the time loses no sample and the retry
counters match the server's own count; a second run makes zero requests; the API key never
shows up in logs, outputs or stats.
"""
from __future__ import annotations

import copy
import json
import logging
import pickle
import re
import socket
import threading
import zlib

import pytest

from lifting.llm import RephraseConfig, Rephraser
from lifting.llm.loopback_server import LoopbackChatServer, Reply, chat_reply, faithful_rewrite, request_payload
from test_llm_client import BACKENDS, flaky


def identity(sample: dict) -> dict:
    """Stand-in for lifting.qa.assemble_conversation: one user/assistant pair per question."""
    sample["conversations"] = []
    for q in sample["questions"]:
        sample["conversations"] += [{"from": "human", "value": q["question"]},
                                    {"from": "gpt", "value": f"{q.get('reasoning') or ''}\n{q['answer_text']}"}]
    return sample


def make_samples(n: int, tag: str = "s") -> list[dict]:
    """n samples of 3 questions: numeric with reasoning, yes/no with reasoning, question only."""
    out = []
    for i in range(n):
        box = f"Bbox(chair,{100 + i % 800},{200 + i % 700},{1 + i / 100:.2f},0.10,0.50,0.90,0.45)"
        refs = {"a": {"text": "the chair", "category": "chair"}, "b": {"text": "the table", "category": "table"}}
        d = 0.5 + (i % 97) / 100
        out.append({"key": f"{tag}{i}", "questions": [
            {"qid": f"{tag}{i}-q0", "family": "metric_distance", "form": "numeric", "object_ids": ["a", "b"],
             "question": f"How far apart are the chair {box} and the table? ({tag} {i})",
             "reasoning": f"The chair is at (0.12, 0.35, {1 + i / 100:.2f}) m and the table at (0.40, 0.33, 1.95) m. "
                          f"The distance is {d:.2f} m.",
             "answer_text": f"{d:.2f} m", "answer": {"value": round(d, 2), "unit": "m"}, "params": {"referring": refs}},
            {"qid": f"{tag}{i}-q1", "family": "relation_size", "form": "yes_no", "object_ids": ["a", "b"],
             "question": f"Is the chair taller than the table? ({tag} {i})",
             "reasoning": f"The chair is {0.9 + i / 1000:.3f} m tall and the table 0.75 m, so the chair is taller. "
                          "The answer is yes.",
             "answer_text": "Yes", "answer": {"value": True, "unit": None}, "params": {"referring": refs}},
            {"qid": f"{tag}{i}-q2", "family": "multi_count", "form": "count", "object_ids": ["a"],
             "question": f"How many objects are within {1 + i % 5}.5 m of the chair? ({tag} {i})",
             "reasoning": None, "answer_text": "2", "answer": {"value": 2, "unit": None},
             "params": {"referring": {"a": refs["a"]}}},
        ]})
    return out


def good(req, seq):
    return chat_reply(faithful_rewrite(req), seq=seq, prompt_tokens=50, completion_tokens=20)


@pytest.fixture(scope="module")
def server():
    with LoopbackChatServer(good) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.responder = good
    server.reset_counters()
    return server


def rcfg(srv, **kw) -> RephraseConfig:
    base = dict(base_url=srv.url, model="rephrase-test", concurrency=32, timeout_s=5.0, max_retries=8, budget_s=30.0,
                backoff_base_s=0.005, backoff_max_s=0.05)
    base.update(kw)
    return RephraseConfig(**base)


def all_questions(samples):
    return [q for s in samples for q in s["questions"]]


# -- the 20% number-changing server ------------------------------------------------------------------
def _bump_number(text: str) -> str:
    """Change the last decimal number outside Bbox(...) by +1 (e.g. 1.95 -> 2.95)."""
    from lifting.bbox_text import _BBOX_RE

    spans = [m.span() for m in _BBOX_RE.finditer(text)]
    nums = [m for m in re.finditer(r"(?<![\w.])(\d+)\.(\d+)(?![\w])", text)
            if not any(a <= m.start() < b for a, b in spans)]
    x = nums[-1]
    return text[:x.start()] + f"{int(x.group(1)) + 1}.{x.group(2)}" + text[x.end():]


def test_server_changing_numbers_in_20_percent_gets_exactly_those_rejected(srv):
    changed: set[str] = set()
    lock = threading.Lock()

    def responder(req, seq):
        p = request_payload(req)
        ans = json.loads(faithful_rewrite(req))
        if zlib.crc32(p["question"].encode()) % 5 == 0:
            field = "reasoning" if "reasoning" in ans else "question"
            ans[field] = _bump_number(ans[field])
            with lock:
                changed.add(p["question"])
            return chat_reply(json.dumps(ans), seq=seq, kind="changed")
        return chat_reply(json.dumps(ans), seq=seq)

    srv.responder = responder
    samples = make_samples(100)
    before = copy.deepcopy(samples)
    with Rephraser(rcfg(srv)) as r:
        out = r.rephrase_samples(samples, assemble=identity)
        st = r.stats()
    assert samples == before  # inputs untouched
    assert len(out) == 100 and [s["key"] for s in out] == [s["key"] for s in samples]
    qs_in, qs_out = all_questions(samples), all_questions(out)
    assert 0.1 < len(changed) / len(qs_in) < 0.3
    for q_in, q_out in zip(qs_in, qs_out):
        if q_in["question"] in changed:
            assert (q_out["rephrased"], q_out["rephrase_status"]) == (False, "fidelity_number_changed")
            assert q_out["question"] == q_in["question"] and q_out["reasoning"] == q_in["reasoning"]
        else:
            assert (q_out["rephrased"], q_out["rephrase_status"]) == (True, "ok"), q_out
            assert q_out["question"] == "Tell me: " + q_in["question"]
            if q_in["reasoning"]:
                assert q_out["reasoning"] == "Let me work it out. " + q_in["reasoning"]
        assert q_out["answer_text"] == q_in["answer_text"] and q_out["answer"] == q_in["answer"]
    assert st["rejections_by_reason"] == {"fidelity_number_changed": len(changed)}
    assert st["rephrased"] == len(qs_in) - len(changed) and st["questions"] == len(qs_in)
    assert st["rejected_fidelity_number_changed"] == len(changed)
    assert srv.kinds["changed"] == len(changed) and st["requests"] == srv.requests == len(qs_in)
    # conversations were rebuilt from the final texts
    assert out[0]["conversations"][0]["value"] == out[0]["questions"][0]["question"]


# -- faults -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_server_failing_half_the_time_loses_no_sample(srv, backend):
    srv.responder = flaky(0.5, seed=7, timeout_delay=2.0, good=good)
    samples = make_samples(30, tag=backend)
    with Rephraser(rcfg(srv, http_backend=backend, timeout_s=1.0, max_retries=40, budget_s=60.0)) as r:
        out = r.rephrase_samples(samples, assemble=identity)
        st = r.stats()
    assert [s["key"] for s in out] == [s["key"] for s in samples]
    assert all(q["rephrased"] and q["rephrase_status"] == "ok" for q in all_questions(out))
    k = srv.kinds
    assert k["error_500"] + k["error_429"] + k["timeout"] + k["drop"] > 15
    assert st["errors_by_cause"] == {c: n for c, n in [("connection_error", k["drop"]), ("rate_limited", k["error_429"]),
                                                       ("server_error", k["error_500"]), ("timeout", k["timeout"])] if n}
    assert st["retries_by_cause"] == st["errors_by_cause"]
    assert st["requests"] == srv.requests == 90 + st["retries"]


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_endpoint_down_keeps_templates_and_every_sample():
    cfg = RephraseConfig(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m", concurrency=8, timeout_s=2.0,
                         max_retries=20, budget_s=30.0, backoff_base_s=0.01, backoff_max_s=0.05, breaker_threshold=8)
    samples = make_samples(40)
    with Rephraser(cfg) as r:
        out = r.rephrase_samples(samples, assemble=identity)
        st = r.stats()
    assert len(out) == 40
    for q_in, q_out in zip(all_questions(samples), all_questions(out)):
        assert (q_out["rephrased"], q_out["rephrase_status"]) == (False, "endpoint_unavailable")
        assert q_out["question"] == q_in["question"]
    assert st["status_counts"] == {"endpoint_unavailable": 120} and st["breaker_trips"] >= 1


def test_budget_exhausted_is_reported_per_question(srv):
    srv.responder = lambda req, seq: Reply(status=500, kind="e500")
    with Rephraser(rcfg(srv, max_retries=2)) as r:
        out = r.rephrase_samples(make_samples(3), assemble=identity)
    assert {q["rephrase_status"] for q in all_questions(out)} == {"budget_exhausted"}
    assert srv.requests == 9 * 3


@pytest.mark.parametrize("content,finish,status", [
    ('Sure, here you go:\n```json\n{{"question": "Tell me: {q}"}}\n```', "stop", "ok"),
    ('Tell me: {q}', "stop", "ok"),  # bare text for a question-only request
    ("I'm sorry, I can't do that {{", "stop", "malformed_response"),
    ('{{"question": "Tell me: {q}"', "length", "truncated_response"),
    ('{{"question": 42}}', "stop", "malformed_response"),
])
def test_response_parsing_question_only(srv, content, finish, status):
    def responder(req, seq):
        q = request_payload(req)["question"]
        return chat_reply(content.format(q=q), finish_reason=finish, seq=seq)

    srv.responder = responder
    samples = make_samples(2)
    for s in samples:
        s["questions"] = [s["questions"][2]]  # question-only
    with Rephraser(rcfg(srv, json_mode=False)) as r:
        out = r.rephrase_samples(samples, assemble=identity)
    for q_in, q_out in zip(all_questions(samples), all_questions(out)):
        assert q_out["rephrase_status"] == status
        assert q_out["question"] == ("Tell me: " + q_in["question"] if status == "ok" else q_in["question"])


def test_reasoning_missing_from_answer_is_malformed(srv):
    srv.responder = lambda req, seq: chat_reply(json.dumps({"question": "Tell me: " + request_payload(req)["question"]}))
    samples = make_samples(1)
    with Rephraser(rcfg(srv)) as r:
        out = r.rephrase_samples(samples, assemble=identity)
    assert [q["rephrase_status"] for q in out[0]["questions"]] == ["malformed_response", "malformed_response", "ok"]


@pytest.mark.parametrize("flip,status", [("reasoning", "fidelity_negation_changed"),
                                         ("answer", "fidelity_answer_changed")])
def test_flipped_yes_no_is_rejected(srv, flip, status):
    def responder(req, seq):
        ans = json.loads(faithful_rewrite(req))
        if ans.get("answer") == "Yes":
            if flip == "reasoning":
                ans["reasoning"] = ans["reasoning"].replace("The answer is yes.", "The answer is no.")
            else:
                ans["answer"] = "No"
        return chat_reply(json.dumps(ans), seq=seq)

    srv.responder = responder
    with Rephraser(rcfg(srv)) as r:
        out = r.rephrase_samples(make_samples(3), assemble=identity)
    for s in out:
        assert [q["rephrase_status"] for q in s["questions"]] == ["ok", status, "ok"]


# -- cache, de-duplication --------------------------------------------------------------------------
def test_second_run_makes_zero_requests(srv, tmp_path):
    cfg = rcfg(srv, cache_path=str(tmp_path / "llm_cache.sqlite"))
    samples = make_samples(40)
    with Rephraser(cfg) as r:
        first = r.rephrase_samples(samples, assemble=identity)
        assert r.stats()["requests"] == 120
    srv.reset_counters()
    with Rephraser(cfg) as r:
        second = r.rephrase_samples(samples, assemble=identity)
        st = r.stats()
    assert srv.requests == 0
    assert st["requests"] == 0 and st["cache_hits"] == 120 and st["cache_misses"] == 0
    assert second == first


def test_identical_questions_are_asked_once(srv):
    samples = make_samples(5) * 4  # the same 15 questions four times
    with Rephraser(rcfg(srv)) as r:
        out = r.rephrase_samples(samples, assemble=identity)
        st = r.stats()
    assert srv.requests == 15 and st["dedup_hits"] == 45
    assert all(q["rephrased"] for q in all_questions(out))


def test_rephraser_pickles_as_its_config(srv):
    r = Rephraser(rcfg(srv))
    r.rephrase_samples(make_samples(1), assemble=identity)
    r2 = pickle.loads(pickle.dumps(r))
    r.close()
    assert r2.config == r.config
    out = r2.rephrase_samples(make_samples(1, tag="p"), assemble=identity)
    r2.close()
    assert all(q["rephrased"] for q in all_questions(out))


def test_question_without_text_is_not_sent(srv):
    samples = make_samples(1)
    samples[0]["questions"][0]["question"] = ""
    with Rephraser(rcfg(srv)) as r:
        out = r.rephrase_samples(samples, assemble=identity)
    q = out[0]["questions"][0]
    assert (q["rephrased"], q["rephrase_status"]) == (False, None) and srv.requests == 2


# -- the API key ------------------------------------------------------------------------------------
def test_api_key_never_in_logs_outputs_or_stats(srv, tmp_path, monkeypatch, caplog):
    secret = "sk-proj-REPHRASE-SECRET-987654321"
    monkeypatch.setenv("MY_LLM_KEY", secret)
    caplog.set_level(logging.DEBUG)
    srv.responder = flaky(0.3, seed=3, timeout_delay=2.0, good=good)
    cfg = rcfg(srv, api_key_env="MY_LLM_KEY", cache_path=str(tmp_path / "c.sqlite"), timeout_s=1.0, max_retries=30)
    with Rephraser(cfg) as r:
        out = r.rephrase_samples(make_samples(10), assemble=identity)
        stats = r.stats()
    assert srv.headers_seen["authorization"] == f"Bearer {secret}"
    blob = json.dumps(out) + json.dumps(stats) + json.dumps(cfg.to_dict()) + repr(cfg) + caplog.text
    assert secret not in blob
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes()


# -- with the real QA engine ------------------------------------------------------------------------
def test_real_qa_samples_rephrased_assembled_and_valid(srv):
    try:
        from test_qa_scenes import random_record
        from lifting.qa import QAConfig, generate_qa
    except ImportError as e:
        pytest.skip(f"QA engine not importable: {e}")
    from lifting.resources import validation_error

    samples = [s for s in (generate_qa(random_record(i, n_objects=3 + i % 5), QAConfig(seed=5)) for i in range(12)) if s]
    with Rephraser(rcfg(srv)) as r:
        out = r.rephrase_samples(samples)  # default assemble: lifting.qa.assemble_conversation
        st = r.stats()
    assert st["rephrased"] == st["questions"] > 20
    for s in out:
        assert validation_error(s, "qa_sample") is None
        human = [c["value"] for c in s["conversations"] if c["from"] == "human"]
        assert all("Tell me: " in h for h in human)
        assert s["conversations"][0]["value"].startswith("<image>")
