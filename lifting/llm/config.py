"""Settings of the LLM client (endpoint, sampling, throughput, faults) and their CLI flags.

The API key never lives in a config: a config names the environment variable that holds
it (`api_key_env`), and the key is read only when the HTTP client is built, so configs can
be logged, pickled into Beam workers and written to manifests without leaking it.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, fields

#: Used when the key variable is unset: local servers (vLLM, SGLang, llama.cpp, Ollama)
#: accept any key, and the `openai` client refuses to start without one.
NO_KEY_PLACEHOLDER = "EMPTY"


@dataclass
class LLMConfig:
    """An OpenAI-compatible chat-completions endpoint and how to call it.

    base_url: e.g. http://127.0.0.1:8000/v1 (vLLM/SGLang), http://127.0.0.1:11434/v1
        (Ollama); None = the client's default (OPENAI_BASE_URL or the hosted API).
    model: model name as the server knows it.
    api_key_env: name of the environment variable holding the key (never the key).
    temperature, top_p, seed, max_tokens: sampling parameters (part of the cache key).
    concurrency: requests in flight at once (keep a GPU server's batch full).
    timeout_s: limit of one HTTP attempt, seconds.
    max_retries: retries after the first attempt (429, 5xx, timeouts, connection errors).
    budget_s: overall limit of one request including every retry and backoff, seconds.
    backoff_base_s, backoff_max_s: exponential backoff with full jitter, capped.
    cache_path: SQLite file of the persistent response cache; None = in memory only.
    json_mode: ask for `response_format={"type": "json_object"}`; dropped automatically
        when the server rejects it (parsing stays lenient either way).
    http_backend: "auto" (aiohttp transport when installed, else httpx), "aiohttp", "httpx".
    breaker_threshold: consecutive connection failures (no HTTP answer at all) after which
        the endpoint counts as down for `breaker_cooldown_s`; requests then fail fast with
        `endpoint_unavailable` instead of each spending its whole budget.
    """

    base_url: str | None = None
    model: str = ""
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 0.7
    top_p: float | None = None
    seed: int | None = 0
    max_tokens: int = 512
    concurrency: int = 64
    timeout_s: float = 60.0
    max_retries: int = 8
    budget_s: float = 300.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    cache_path: str | None = None
    json_mode: bool = True
    http_backend: str = "auto"
    breaker_threshold: int = 16
    breaker_cooldown_s: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if self.timeout_s <= 0 or self.budget_s <= 0:
            raise ValueError("timeout_s and budget_s must be > 0")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.http_backend not in ("auto", "aiohttp", "httpx"):
            raise ValueError("http_backend must be auto, aiohttp or httpx")
        if self.api_key_env and not self.api_key_env.replace("_", "").isalnum():
            raise ValueError("api_key_env must be the NAME of an environment variable, not a key")

    def api_key(self) -> str:
        """The key from the environment (placeholder when unset). Never log or store it."""
        return os.environ.get(self.api_key_env, "") or NO_KEY_PLACEHOLDER

    def sampling_params(self) -> dict:
        """The request parameters that change an answer: part of every cache key."""
        p = {"temperature": self.temperature, "max_tokens": self.max_tokens, "seed": self.seed,
             "json_mode": bool(self.json_mode)}
        if self.top_p is not None:
            p["top_p"] = self.top_p
        return p

    def to_dict(self) -> dict:
        """JSON-ready settings for manifests and stats (holds the key's variable name only)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        """Build from a settings mapping (e.g. a YAML section); unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**d)


@dataclass
class RephraseConfig(LLMConfig):
    """LLMConfig plus what the rephraser does with the answers.

    rephrase_reasoning: also rephrase the `reasoning` text (else only `question`).
    max_length_ratio: reject rewrites longer than ratio x template (+40 chars) or shorter
        than template / ratio (-40 chars) as `fidelity_length_out_of_range`.
    """

    rephrase_reasoning: bool = True
    max_length_ratio: float = 3.0


def add_llm_arguments(parser: argparse.ArgumentParser, defaults: LLMConfig | None = None) -> None:
    """Add the `--llm-*` flags (shared by `lift3d qa --rephrase` and `lift3d priors`)."""
    d = defaults or LLMConfig()
    g = parser.add_argument_group("LLM endpoint (any OpenAI-compatible server)")
    g.add_argument("--llm-base-url", default=d.base_url,
                   help="e.g. http://127.0.0.1:8000/v1 for vLLM; default: OPENAI_BASE_URL or the hosted API")
    g.add_argument("--llm-model", default=d.model or None, help="model name as the server knows it")
    g.add_argument("--llm-api-key-env", default=d.api_key_env,
                   help="NAME of the environment variable holding the API key (the key is never logged)")
    g.add_argument("--llm-temperature", type=float, default=d.temperature)
    g.add_argument("--llm-seed", type=int, default=d.seed)
    g.add_argument("--llm-max-tokens", type=int, default=d.max_tokens)
    g.add_argument("--llm-concurrency", type=int, default=d.concurrency, help="requests in flight")
    g.add_argument("--llm-timeout", type=float, default=d.timeout_s, help="seconds per HTTP attempt")
    g.add_argument("--llm-retries", type=int, default=d.max_retries)
    g.add_argument("--llm-budget", type=float, default=d.budget_s,
                   help="seconds per request including retries and backoff")
    g.add_argument("--llm-cache", default=d.cache_path, help="SQLite response cache (default: in the output folder)")
    g.add_argument("--llm-no-json-mode", action="store_true", help="never send response_format=json_object")
    g.add_argument("--llm-http-backend", default=d.http_backend, choices=["auto", "aiohttp", "httpx"])


def config_from_args(args: argparse.Namespace, cls: type[LLMConfig] = LLMConfig, **overrides) -> LLMConfig:
    """Build `cls` from the flags added by `add_llm_arguments` (plus keyword overrides)."""
    kw = dict(base_url=args.llm_base_url, model=args.llm_model or "", api_key_env=args.llm_api_key_env,
              temperature=args.llm_temperature, seed=args.llm_seed, max_tokens=args.llm_max_tokens,
              concurrency=args.llm_concurrency, timeout_s=args.llm_timeout, max_retries=args.llm_retries,
              budget_s=args.llm_budget, cache_path=args.llm_cache, json_mode=not args.llm_no_json_mode,
              http_backend=args.llm_http_backend)
    kw.update(overrides)
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in kw.items() if k in names})
