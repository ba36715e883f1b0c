"""LLM calls of the data engine: rephrasing QA text and asking for category size priors.

Any OpenAI-compatible chat-completions endpoint (vLLM, SGLang, llama.cpp server, Ollama,
the hosted API) through the `openai` package (extra `lift3d[llm]`; `openai[aiohttp]` for
the fastest transport). Modules, one idea each:

    config.py       LLMConfig / RephraseConfig and the shared --llm-* CLI flags
    client.py       ChatClient: concurrency, de-duplication, retries, circuit breaker, stats
    retry.py        which errors are retried and the backoff with jitter
    cache.py        persistent SQLite (WAL) cache keyed by (model, prompt, parameters)
    parsing.py      lenient JSON extraction from answers
    fidelity.py     did the rewrite keep every number, unit, box, object, relation, answer?
    prompts.py      chat prompts from qa_templates/rephrase_*.j2 and priors_*.j2
    rephraser.py    Rephraser: QA samples in, rephrased samples out (never drops one)
    size_priors.py  `lift3d priors`: category sizes from the LLM, validated
    loop.py         private event loop thread for sync callers
    loopback_server.py  scripted OpenAI-compatible server on 127.0.0.1 (tests, benchmarks)
"""
from lifting.llm.cache import ResponseCache, cache_key
from lifting.llm.client import ChatClient, Completion
from lifting.llm.config import LLMConfig, RephraseConfig, add_llm_arguments, config_from_args
from lifting.llm.rephraser import Rephraser
from lifting.llm.size_priors import PriorsResult, build_priors, read_categories, validate_answer, write_priors

__all__ = ["LLMConfig", "RephraseConfig", "add_llm_arguments", "config_from_args", "ChatClient", "Completion",
           "ResponseCache", "cache_key", "Rephraser", "PriorsResult", "build_priors", "read_categories",
           "validate_answer", "write_priors"]
