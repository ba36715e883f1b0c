"""The QA pipeline: 3D repository shards -> spatial QA training shards (OUT/qa).

    plan (driver): the repository's shards; QA unit N reads repository shard N and writes
                   qa/shard-N.tar (units already done are skipped)
    Create(units) -> Reshuffle -> QA unit (lifting.qa.generate_qa per record, optional
    lifting.llm.Rephraser over the unit's samples) -> write shard + stats
    finalize (driver): qa/manifest.json, qa/stats.json, qa/errors/, and with --benchmark N
                       qa/benchmark.jsonl built from the held-out images (whose QA is
                       left out of the training shards; `lift3d score` grades it)

Without rephrasing the output is a pure function of the repository and the QA config, so
repeated runs give byte-identical shards; with an LLM it depends on the model's answers.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os

import apache_beam as beam

from lifting import storage
from pipelines import options as opt
from pipelines import sinks
from pipelines.lift_pipeline import PlanError, _execute, versions
from pipelines.transforms import QAUnitFn

GROUPS = opt.QA_GROUPS
log = logging.getLogger(__name__)


def qa_units(repo: str) -> list[tuple[int, str]]:
    """(unit id, shard path) for every finished shard of the repository (local or URL), by name."""
    from lifting.repository import RepositoryError, list_shards

    try:
        shards = list_shards(repo)
    except RepositoryError as e:
        raise PlanError(f"repository folder not found: {repo}") from e
    if not shards:
        raise PlanError(f"no shard-NNNNNN.tar in {repo}")
    return [(int(storage.basename(p)[6:12]), p) for p in shards]


def _fingerprint(repo: str, units: list[tuple[int, str]]) -> str:
    man = storage.join(repo, "manifest.json")
    if storage.isfile(man):
        return hashlib.sha256(storage.read_bytes(man)).hexdigest()
    h = hashlib.sha256()
    for _, p in units:
        h.update(f"{storage.basename(p)}:{sinks.sha256_file(p)}\n".encode())
    return h.hexdigest()


def rephrase_config(s: opt.Settings) -> dict | None:
    """The Rephraser settings, or None when --rephrase is off; ValueError when incomplete."""
    if not s.qa.rephrase:
        return None
    if not s.llm.llm_base_url or not s.llm.llm_model:
        raise PlanError("--rephrase needs --llm-base-url and --llm-model")
    return {"base_url": s.llm.llm_base_url, "model": s.llm.llm_model, **s.rephrase_config}


#: File name of the LLM response cache in the QA output folder (see worker_rephrase_config).
LLM_CACHE = "llm_cache.sqlite"


def worker_rephrase_config(rcfg: dict | None, qa_out) -> dict | None:
    """The Rephraser settings the workers get: `rcfg` with `cache_path` defaulting to
    QA_OUT/llm_cache.sqlite (absolute), so that a re-run (after --overwrite, a crash or a
    change of the fidelity rules) re-uses every answer already paid for. A `cache_path` set
    in the config's `rephrase_config` section wins. Not part of the run identity: moving
    the cache does not change the output.

    SQLite needs a local file with working locks, which an object store cannot give: when
    QA_OUT is a URL the default is `llm_cache_dir(QA_OUT)/llm_cache.sqlite` on each
    machine instead (set `rephrase_config.cache_path` to a shared file system path to share
    it between machines)."""
    if rcfg is None:
        return None
    qa_out = os.fspath(qa_out)
    folder = llm_cache_dir(qa_out) if storage.is_url(qa_out) else os.path.abspath(qa_out)
    return {"cache_path": os.path.join(folder, LLM_CACHE), **rcfg}


def llm_cache_dir(qa_out: str) -> str:
    """Local folder of the LLM cache for a QA output URL: $LIFT3D_CACHE_DIR (default
    ~/.cache/lift3d) / llm / the first 16 hex digits of the URL's sha256."""
    base = os.environ.get("LIFT3D_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lift3d")
    return os.path.join(base, "llm", hashlib.sha256(qa_out.encode()).hexdigest()[:16])


def run_qa(s: opt.Settings, test_pipeline=None, qa_fn=None, rephraser_factory=None, stream=None) -> dict:
    """Generate QA shards for every repository shard not yet done; returns qa stats.json's dict."""
    repo = s.qa.repository or (storage.join(s.output.out, "repository") if s.output.out else None)
    if repo is None:
        raise PlanError("--repository is required")
    out = s.qa.qa_out or (storage.join(s.output.out, "qa") if s.output.out else None)
    if out is None:
        raise PlanError("--out is required")
    units = qa_units(repo)
    rcfg = rephrase_config(s)
    qcfg = qa_config(s)
    n_bench, heldout = benchmark_settings(s)
    config = {"qa_config": s.qa_config, "rephrase": rcfg, "benchmark": n_bench, "heldout_fraction": heldout}
    identity = {"config": config, "input_sha256": _fingerprint(repo, units), "units": len(units),
                "lift3d": versions({})["lift3d"]}
    with sinks.output_lock(out):  # one run at a time per output folder, and only a lift3d one
        return _qa_locked(s, repo, out, units, config, identity, rcfg, qcfg, n_bench, heldout, test_pipeline,
                          qa_fn, rephraser_factory, stream)


def _qa_locked(s, repo, out, units, config, identity, rcfg, qcfg, n_bench, heldout, test_pipeline, qa_fn,
               rephraser_factory, stream) -> dict:
    """run_qa's work once the output lock is held: resume, run, finalize."""
    sinks.prepare_output(out, identity, overwrite=s.output.overwrite)
    done = sinks.done_units(out)
    todo = [u for u in units if u[0] not in done]
    if todo:
        def build(p, pdir):
            return (p | "QAUnits" >> beam.Create(todo, reshuffle=False)
                    | "Spread" >> beam.Reshuffle()
                    | "QA" >> beam.ParDo(QAUnitFn(str(out), s.qa_config, worker_rephrase_config(rcfg, out),
                                                  qa_fn=qa_fn, rephraser_factory=rephraser_factory,
                                                  progress_dir=pdir, heldout_fraction=heldout,
                                                  heldout_seed=qcfg.seed)))

        total = _count_samples(repo, todo)
        _execute(build, s, test_pipeline, out, total, "qa", stream)
    models = {"llm": s.llm.llm_model} if rcfg else {}
    expected = [u for u, _ in units]
    extra = {}
    if n_bench:
        extra["benchmark"] = sinks.build_qa_benchmark(out, expected, n_bench, qcfg)
        if extra["benchmark"]["questions"] < n_bench:
            log.warning("benchmark: %d of %d questions from %d held-out image(s); raise --heldout-fraction for more",
                        extra["benchmark"]["questions"], n_bench, extra["benchmark"]["heldout_images"])
    return sinks.finalize_qa(out, config=config, versions=versions(models), expected_units=expected, extra=extra)


def qa_config(s: opt.Settings):
    """The run's lifting.qa.QAConfig from the `qa_config` section; ValueError for unknown keys."""
    from lifting.qa import QAConfig

    try:
        return QAConfig.from_dict(s.qa_config)
    except (TypeError, ValueError) as e:
        raise PlanError(f"bad qa_config section: {e}") from e


def benchmark_settings(s: opt.Settings) -> tuple[int | None, float]:
    """(questions wanted or None, held-out fraction in [0, 1)) from --benchmark / --heldout-fraction."""
    n = s.qa.benchmark
    if n is not None and n < 1:
        raise PlanError("--benchmark must be >= 1")
    frac = s.qa.heldout_fraction
    if frac is None:
        frac = 0.01 if n else 0.0
    if not 0.0 <= frac < 1.0:
        raise PlanError("--heldout-fraction must be in [0, 1)")
    if n and frac == 0.0:
        raise PlanError("--benchmark needs a --heldout-fraction above 0")
    return n, float(frac)


def _count_samples(repo: str, todo: list[tuple[int, str]]) -> int:
    """Images to process, from the repository manifest when present (else counted as shards)."""
    man = storage.join(repo, "manifest.json")
    if storage.isfile(man):
        by = {s["name"]: s["samples"] for s in sinks.read_json(man).get("shards", [])}
        return sum(by.get(storage.basename(p), 0) for _, p in todo)
    return len(todo)


def make_parser() -> argparse.ArgumentParser:
    """The flags of the QA pipeline (used by `run(argv)`)."""
    parser = argparse.ArgumentParser(prog="lift3d qa")
    opt.add_arguments(parser, GROUPS + ["output"])
    return parser


def run(argv: list[str] | None = None, test_pipeline=None, qa_fn=None, rephraser_factory=None) -> dict:
    """Beam-style entry point: parse `argv` and run; returns the QA stats."""
    args, extra = make_parser().parse_known_args(argv)
    return run_qa(opt.resolve(args, extra), test_pipeline=test_pipeline, qa_fn=qa_fn,
                  rephraser_factory=rephraser_factory)
