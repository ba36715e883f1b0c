"""ChatClient against a real HTTP server on 127.0.0.1 speaking the OpenAI chat protocol.

Requests go through the real `openai` package (AsyncOpenAI) over both HTTP transports. The
server (lifting.llm.loopback_server) is started by these tests; its responders script
answers, delays, 429/500, dropped connections and malformed bodies, and it counts what it
did so the client's counters can be compared with it.
"""
from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing as mp
import random
import socket

import pytest

from lifting.llm.cache import CachedCompletion, ResponseCache, cache_key
from lifting.llm.client import ChatClient
from lifting.llm.config import LLMConfig, RephraseConfig
from lifting.llm.loopback_server import LoopbackChatServer, Reply, chat_reply
from lifting.llm.retry import RetryPolicy, parse_retry_after

BACKENDS = ["httpx"]
try:
    import aiohttp  # noqa: F401

    BACKENDS.insert(0, "aiohttp")
except ImportError:
    pass


def echo(req, seq):
    return chat_reply("echo:" + req["messages"][-1]["content"], seq=seq, prompt_tokens=7, completion_tokens=3)


@pytest.fixture(scope="module")
def server():
    with LoopbackChatServer(echo) as srv:
        yield srv


@pytest.fixture
def srv(server):
    server.responder = echo
    server.reset_counters()
    return server


def cfg(srv, **kw) -> LLMConfig:
    base = dict(base_url=srv.url, model="test-model", concurrency=16, timeout_s=5.0, max_retries=6, budget_s=20.0,
                backoff_base_s=0.005, backoff_max_s=0.05)
    base.update(kw)
    return LLMConfig(**base)


def prompts(n, tag="p"):
    return [[{"role": "user", "content": f"{tag}-{i}"}] for i in range(n)]


def run(client: ChatClient, ps):
    async def go():
        try:
            return await client.complete_many(ps)
        finally:
            await client.aclose()
    return asyncio.run(go())


# -- success path ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_answers_in_order_with_usage(srv, backend):
    c = ChatClient(cfg(srv, http_backend=backend))
    res = run(c, prompts(50))
    assert [r.content for r in res] == [f"echo:p-{i}" for i in range(50)]
    assert all(r.status == "ok" and r.finish_reason == "stop" and not r.from_cache for r in res)
    st = c.stats.as_dict()
    assert st["requests"] == srv.requests == 50
    assert st["prompt_tokens"] == 350 and st["completion_tokens"] == 150
    body = srv.bodies[0]
    assert body["model"] == "test-model" and body["seed"] == 0 and body["temperature"] == 0.7
    assert body["response_format"] == {"type": "json_object"}


def test_identical_prompts_are_sent_once(srv):
    ps = prompts(10) * 5
    c = ChatClient(cfg(srv))
    res = run(c, ps)
    assert srv.requests == 10
    assert [r.content for r in res] == [f"echo:p-{i % 10}" for i in range(50)]
    assert c.stats.as_dict()["dedup_hits"] == 40


def test_concurrency_limit_is_respected(srv):
    inflight = {"now": 0, "max": 0}
    # count in-flight requests on the server side through the delay
    import threading

    lock = threading.Lock()

    def responder(req, seq):
        with lock:
            inflight["now"] += 1
            inflight["max"] = max(inflight["max"], inflight["now"])
        r = chat_reply("x", seq=seq)
        r.delay_s = 0.05
        threading.Timer(0.045, lambda: _dec(inflight, lock)).start()
        return r

    srv.responder = responder
    run(ChatClient(cfg(srv, concurrency=4)), prompts(24))
    assert inflight["max"] <= 4
    assert inflight["max"] >= 2  # and it does run several at once


def _dec(d, lock):
    with lock:
        d["now"] -= 1


# -- faults --------------------------------------------------------------------------------------
def flaky(fail_prob: float, seed: int, timeout_delay: float, good=echo):
    """Fails ~fail_prob of requests with 500 / 429 / a delay past the client timeout / a dropped
    connection, chosen by a seeded RNG per request; the rest are answered by `good`."""
    rng = random.Random(seed)
    import threading

    lock = threading.Lock()

    def responder(req, seq):
        with lock:
            roll, kind = rng.random(), rng.randrange(4)
        if roll >= fail_prob:
            return good(req, seq)
        if kind == 0:
            return Reply(status=500, kind="error_500")
        if kind == 1:
            return Reply(status=429, headers={"retry-after-ms": "5"}, kind="error_429")
        if kind == 2:
            return Reply(status=200, body=None, delay_s=timeout_delay, kind="timeout")
        return Reply(drop=True, kind="drop")
    return responder


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_half_the_time_every_prompt_answered_and_retries_match_server(srv, backend):
    # timeout 1 s: long enough that a normal answer never times out on a loaded 2-core machine
    srv.responder = flaky(0.5, seed=1, timeout_delay=2.0)
    c = ChatClient(cfg(srv, http_backend=backend, timeout_s=1.0, max_retries=40, budget_s=60.0))
    res = run(c, prompts(100, backend))
    assert [r.content for r in res] == [f"echo:{backend}-{i}" for i in range(100)]
    st = c.stats.as_dict()
    k = srv.kinds
    assert k["error_500"] + k["error_429"] + k["timeout"] + k["drop"] > 30  # the script did fail a lot
    assert st["errors_by_cause"].get("server_error", 0) == k["error_500"]
    assert st["errors_by_cause"].get("rate_limited", 0) == k["error_429"]
    assert st["errors_by_cause"].get("timeout", 0) == k["timeout"]
    assert st["errors_by_cause"].get("connection_error", 0) == k["drop"]
    # every failure was followed by a retry (all prompts succeeded in the end)
    assert st["retries_by_cause"] == st["errors_by_cause"]
    assert st["requests"] == srv.requests == 100 + st["retries"]
    assert st["failures_by_reason"] == {}


def test_retries_exhausted_gives_budget_exhausted(srv):
    srv.responder = lambda req, seq: Reply(status=503, kind="error_503")
    c = ChatClient(cfg(srv, max_retries=3))
    res = run(c, prompts(5))
    assert all(r.status == "budget_exhausted" and r.content is None for r in res)
    assert all(r.attempts == 4 for r in res)
    assert srv.requests == 20
    st = c.stats.as_dict()
    assert st["retries_by_cause"] == {"server_error": 15} and st["failures_by_reason"] == {"budget_exhausted": 5}


def test_time_budget_bounds_a_request(srv):
    srv.responder = lambda req, seq: Reply(status=500, kind="error_500")
    c = ChatClient(cfg(srv, max_retries=1000, budget_s=0.5, backoff_base_s=0.05, backoff_max_s=0.1))
    import time

    t0 = time.monotonic()
    res = run(c, prompts(3))
    assert time.monotonic() - t0 < 3.0
    assert all(r.status == "budget_exhausted" for r in res)


def test_non_retryable_error_is_not_retried(srv):
    srv.responder = lambda req, seq: Reply(status=404, body={"error": {"message": "model not found"}}, kind="e404")
    c = ChatClient(cfg(srv))
    res = run(c, prompts(3))
    assert [r.status for r in res] == ["endpoint_rejected"] * 3
    assert srv.requests == 3 and c.stats.as_dict()["retries"] == 0


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize("backend", BACKENDS)
def test_endpoint_down_fails_fast_with_breaker(backend):
    import time

    c = ChatClient(LLMConfig(base_url=f"http://127.0.0.1:{_free_port()}/v1", model="m", concurrency=8,
                             timeout_s=2.0, max_retries=50, budget_s=60.0, backoff_base_s=0.01, backoff_max_s=0.05,
                             breaker_threshold=8, http_backend=backend))
    t0 = time.monotonic()
    res = run(c, prompts(200))
    assert time.monotonic() - t0 < 15.0
    assert all(r.status == "endpoint_unavailable" for r in res)
    st = c.stats.as_dict()
    assert st["breaker_trips"] >= 1 and st["breaker_fast_fails"] > 100
    assert st["failures_by_reason"] == {"endpoint_unavailable": 200}


def test_malformed_body_is_retried(srv):
    def responder(req, seq):
        if seq % 2 == 0:
            return Reply(status=200, body="{not json", kind="malformed")
        return echo(req, seq)

    srv.responder = responder
    c = ChatClient(cfg(srv, concurrency=1))
    res = run(c, prompts(5))
    assert all(r.status == "ok" for r in res)
    assert c.stats.as_dict()["retries_by_cause"] == {"malformed_body": 5}


def test_server_without_json_mode_falls_back(srv):
    def responder(req, seq):
        if "response_format" in req:
            return Reply(status=400, body={"error": {"message": "response_format is not supported"}}, kind="e400")
        return echo(req, seq)

    srv.responder = responder
    c = ChatClient(cfg(srv, concurrency=1))
    res = run(c, prompts(4))
    assert all(r.status == "ok" for r in res)
    st = c.stats.as_dict()
    assert st["json_mode_fallbacks"] == 1 and srv.kinds["e400"] == 1 and srv.requests == 5


def test_retry_after_parsing_and_backoff_bounds():
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({}) is None
    p = RetryPolicy(max_retries=5, base_s=0.5, max_s=4.0)
    rng = random.Random(0)
    for i in range(8):
        d = [p.delay(i, None, rng) for _ in range(200)]
        assert 0 <= min(d) and max(d) <= min(4.0, 0.5 * 2 ** i)
        assert max(d) > 0.5 * min(4.0, 0.5 * 2 ** i)  # jitter spreads over the whole range
    assert p.delay(0, 2.5) == 2.5 and p.delay(0, 100.0) == 4.0


# -- cache ---------------------------------------------------------------------------------------
def test_second_run_is_served_from_the_cache(srv, tmp_path):
    path = tmp_path / "cache.sqlite"
    c1 = ChatClient(cfg(srv, cache_path=str(path)))
    first = run(c1, prompts(30))
    assert srv.requests == 30
    srv.reset_counters()
    c2 = ChatClient(cfg(srv, cache_path=str(path)))
    second = run(c2, prompts(30))
    assert srv.requests == 0
    assert [r.content for r in second] == [r.content for r in first]
    st = c2.stats.as_dict()
    assert st["cache_hits"] == 30 and st["cache_misses"] == 0 and st["requests"] == 0
    assert st["cached_prompt_tokens"] == 30 * 7
    # a different sampling parameter is a different key
    c3 = ChatClient(cfg(srv, cache_path=str(path), temperature=0.2))
    run(c3, prompts(30))
    assert srv.requests == 30


def test_failures_are_not_cached(srv, tmp_path):
    path = str(tmp_path / "c.sqlite")
    srv.responder = lambda req, seq: Reply(status=500, kind="e500")
    run(ChatClient(cfg(srv, cache_path=path, max_retries=0)), prompts(3))
    srv.responder = echo
    srv.reset_counters()
    res = run(ChatClient(cfg(srv, cache_path=path)), prompts(3))
    assert srv.requests == 3 and all(r.status == "ok" for r in res)


def test_cache_key_depends_on_model_prompt_and_params():
    m = [{"role": "user", "content": "x"}]
    k = cache_key("a", m, {"t": 1})
    assert k == cache_key("a", [dict(m[0])], {"t": 1})
    assert len({k, cache_key("b", m, {"t": 1}), cache_key("a", m, {"t": 2}),
                cache_key("a", [{"role": "user", "content": "y"}], {"t": 1})}) == 4


def _writer(path, start, n):
    c = ResponseCache(path)
    for i in range(start, start + n, 10):
        c.put_many([(f"k{j}", "m", CachedCompletion(f"v{j}", "stop", 1, 1)) for j in range(i, i + 10)])
    c.close()


def test_cache_is_safe_for_several_processes(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, k * 300, 300)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    c = ResponseCache(path)
    got = c.get_many([f"k{j}" for j in range(1200)])
    assert len(got) == 1200 and got["k777"].content == "v777"
    assert len(c) == 1200


# -- the API key -----------------------------------------------------------------------------------
SECRET = "sk-lift3d-test-SECRET-0123456789"


def test_api_key_is_sent_but_never_logged_or_stored(srv, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LIFT3D_TEST_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "cache.sqlite"
    calls = {"n": 0}

    def responder(req, seq):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            return Reply(status=429, kind="e429")
        if calls["n"] == 5:
            return Reply(status=401, body={"error": {"message": "bad key"}}, kind="e401")
        return echo(req, seq)

    srv.responder = responder
    c = ChatClient(cfg(srv, api_key_env="LIFT3D_TEST_KEY", cache_path=str(path)))
    run(c, prompts(20))
    assert srv.headers_seen.get("authorization") == f"Bearer {SECRET}"  # the key does reach the server
    stats = json.dumps(c.stats.as_dict())
    config_text = json.dumps(c.config.to_dict()) + repr(c.config)
    assert SECRET not in caplog.text and SECRET not in stats and SECRET not in config_text
    for f in tmp_path.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f
    assert caplog.records  # logging did happen (debug logs of the openai client included)


def test_config_refuses_a_key_in_place_of_a_variable_name():
    with pytest.raises(ValueError):
        LLMConfig(model="m", api_key_env="sk-abc-123.456")
    with pytest.raises(ValueError):
        RephraseConfig.from_dict({"model": "m", "api_key": "sk-x"})
