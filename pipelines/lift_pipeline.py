"""The lift pipeline: 2D-annotated images -> the 3D object repository (OUT/repository).

    plan (driver): records sorted by key, cut into numbered units; units already done in
                   OUT (per-shard stats present) are skipped
    Create(units) -> ReadUnit -> Reshuffle -> depth: sensor file | decode + RunInference
    -> Lift (lifting.lift.lift_image, filters) -> GroupByKey(unit) -> write shard + parts
    finalize (driver): manifest.json, stats.json, index/objects.parquet, rejected/, errors/

The same code runs on the local runner (multi-process by default, see
pipelines.options.pipeline_options) and unchanged on Dataflow, Flink or Spark: the
output folder only has to be reachable by the workers (a shared or mounted file system).
`run(argv, test_pipeline=None)` follows the Beam examples so tests inject a TestPipeline.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam

from pipelines import options as opt
from pipelines import sinks
from pipelines.transforms import DecodeImageFn, LiftFn, PrepareSensorFn, ReadUnitFn, WriteRepositoryUnitFn

log = logging.getLogger(__name__)

NATIVE_SOURCES = ("coco", "objects365", "openimages", "omni3d", "images")


class PlanError(ValueError):
    """The input cannot be planned (bad path, empty input); the CLI shows it as one line."""


@dataclass(frozen=True)
class Unit:
    """One unit of work = one output shard.

    Either `records` (record dicts, inline: native sources read on the driver) or a slice
    [start, stop) of the Parquet index partition `partition`.
    """

    unit_id: int
    n_images: int
    records: tuple = ()
    partition: str | None = None
    start: int = 0
    stop: int | None = None

    def iter_records(self):
        """Record dicts of the unit, in key order."""
        if self.partition is None:
            yield from self.records
            return
        from lifting.sources.index import read_partition

        for i, rec in enumerate(read_partition(self.partition)):
            if not hasattr(rec, "objects") or (self.stop is not None and i >= self.stop):
                break  # a partition lists its records first, then its errors (read by the planner)
            if i >= self.start:
                yield rec.to_dict()


@dataclass
class Plan:
    """What the driver decided before starting the pipeline."""

    units: list[Unit]
    source_errors: list[dict]
    fingerprint: str  # sha256 of the input description (records or partitions)
    depth_backend: str  # 'sensor' or a model name/path

    @property
    def n_images(self) -> int:
        return sum(u.n_images for u in self.units)


def _chunks(records: list[dict], per_shard: int, target_bytes: float | None):
    """Cut key-sorted records into consecutive chunks by count and estimated image bytes."""
    chunk, size = [], 0
    for r in records:
        b = 0
        if target_bytes:
            try:
                b = os.path.getsize(r["image_path"])
            except OSError:
                b = 0
        if chunk and (len(chunk) >= per_shard or (target_bytes and size + b > target_bytes)):
            yield chunk
            chunk, size = [], 0
        chunk.append(r)
        size += b
    if chunk:
        yield chunk


def plan_units(s: opt.Settings) -> Plan:
    """Read the input description and cut it into units (deterministic for the same input).

    Native sources are read on the driver (`lifting.sources.open_source`): suited to files
    that fit in memory; for large datasets build a Parquet index once and use
    `--source index --index DIR` (each partition slice is read by a worker).
    Raises PlanError for unusable paths or an empty input.
    """
    i, o = s.input, s.output
    if o.samples_per_shard < 1:
        raise PlanError("--samples-per-shard must be >= 1")
    target = o.shard_target_mb * 1e6 if o.shard_target_mb else None
    if i.source is None:
        raise PlanError("--source is required (one of: " + ", ".join(opt.SOURCES) + ")")
    if i.source == "index":
        from lifting.sources.index import list_partitions

        if not i.index or not Path(i.index).is_dir():
            raise PlanError(f"index folder not found: {i.index}")
        import pyarrow.parquet as pq

        units, h, uid = [], hashlib.sha256(), 0
        remaining = i.limit
        for part in list_partitions(i.index):
            n = pq.ParquetFile(part).metadata.num_rows
            if remaining is not None:
                n = min(n, remaining)
                remaining -= n
            h.update(f"{Path(part).name}:{Path(part).stat().st_size}:{n}\n".encode())
            for start in range(0, n, o.samples_per_shard):
                stop = min(n, start + o.samples_per_shard)
                units.append(Unit(uid, stop - start, partition=str(part), start=start, stop=stop))
                uid += 1
        if not units:
            raise PlanError(f"no index partitions with images in {i.index}")
        errors = []
        err_path = Path(i.index) / "errors.parquet"
        if err_path.is_file():
            import json

            for row in pq.read_table(err_path).to_pylist():
                errors.append({"source": row["source"], "reason": row["reason"], "level": row["level"],
                               "image_id": None if row["image_id"] is None else json.loads(row["image_id"]),
                               "key": row["key"], "detail": row["detail"] or "",
                               "source_ann_id": None if row["source_ann_id"] is None else json.loads(row["source_ann_id"])})
            h.update(sinks.sha256_file(err_path).encode())
        backend = s.models.depth_model
        if backend == "auto":
            first = next(units[0].iter_records())
            backend = "sensor" if first.get("depth_path") else _default_depth_model()
        return Plan(units, errors, h.hexdigest(), backend)

    from lifting.sources import open_source

    for name, path in (("--annotations", i.annotations), ("--images", i.images)):
        if path is not None and not Path(path).exists():
            raise PlanError(f"{name} path not found: {path}")
    if i.source != "images" and not i.annotations:
        raise PlanError(f"--annotations is required for --source {i.source}")
    if not i.images:
        raise PlanError("--images is required")
    src = open_source(i.source, annotations=i.annotations, images=i.images)
    records, errors = [], []
    for r in src.iter_records():
        if hasattr(r, "objects"):
            records.append(r.to_dict())
        else:
            errors.append(r.to_dict())
    records.sort(key=lambda r: r["key"])
    if i.limit is not None:
        records = records[: i.limit]
    if not records:
        raise PlanError(f"no images to lift from {i.annotations or i.images}")
    units = [Unit(k, len(c), records=tuple(c)) for k, c in enumerate(_chunks(records, o.samples_per_shard, target))]
    h = hashlib.sha256()
    for r in records:
        h.update(sinks.canonical_json(r) + b"\n")
    for e in sorted(errors, key=sinks.canonical_json):
        h.update(sinks.canonical_json(e) + b"\n")
    backend = s.models.depth_model
    if backend == "auto":
        backend = "sensor" if all(r.get("depth_path") for r in records) else _default_depth_model()
    return Plan(units, errors, h.hexdigest(), backend)


def _default_depth_model() -> str:
    from lifting.models import DEFAULT_DEPTH_MODEL

    return DEFAULT_DEPTH_MODEL


def versions(models: dict) -> dict:
    """Versions for the manifest: package, code commit (when in a git checkout), models, packages."""
    from importlib import metadata

    def ver(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {"lift3d": ver("lift3d") or "0+unknown", "code": _git_commit(), "models": models,
            "packages": {n: ver(n) for n in ("apache-beam", "numpy", "pyarrow", "webdataset", "pillow",
                                             "torch", "transformers")}}


def _git_commit() -> str | None:
    """The checkout's HEAD commit, read from .git without running git (None elsewhere)."""
    git = Path(__file__).resolve().parents[1] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            p = git / ref
            if p.exists():
                return p.read_text().strip()
            for line in (git / "packed-refs").read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split()[0]
            return None
        return head
    except OSError:
        return None


def _depth_stage(items, plan: Plan, s: opt.Settings):
    """Items -> items with depth (H, W) float32 metres, K (3, 3), K_source, depth_source."""
    if plan.depth_backend == "sensor":
        return items | "SensorDepth" >> beam.ParDo(PrepareSensorFn())
    from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

    from pipelines.model_handlers import depth_model_handler, attach_depth

    decoded = items | "Decode" >> beam.ParDo(DecodeImageFn(s.input.max_pixels))
    ok, bad = decoded | "SplitDecoded" >> beam.Partition(lambda it, n: 1 if it.get("error") else 0, 2)
    handler = KeyedModelHandler(depth_model_handler(plan.depth_backend, device=s.models.device,
                                                    batch_size=s.models.batch_size))
    predicted = (ok | "ToExample" >> beam.Map(lambda it: ({k: v for k, v in it.items() if k != "image"}, it["image"]))
                 | "Depth" >> RunInference(handler)
                 | "AttachDepth" >> beam.Map(lambda kv: attach_depth(kv[0], kv[1])))
    return (predicted, bad) | "MergeDepth" >> beam.Flatten()


def build(p: beam.Pipeline, plan: Plan, todo: list[Unit], s: opt.Settings, root: Path, *,
          lift_fn=None, progress_dir: str | None = None):
    """Add the lift transforms for units `todo` to pipeline `p`; returns the per-unit stats PCollection."""
    items = (p | "Units" >> beam.Create(todo, reshuffle=False)
             | "ReadUnits" >> beam.ParDo(ReadUnitFn())
             | "Spread" >> beam.Reshuffle())
    prepared = _depth_stage(items, plan, s)
    return (prepared
            | "Lift" >> beam.ParDo(LiftFn(s.lift, lift_fn=lift_fn, write_depth=s.output.write_depth,
                                          progress_dir=progress_dir))
            | "GroupByUnit" >> beam.GroupByKey()
            | "WriteUnits" >> beam.ParDo(WriteRepositoryUnitFn(str(root))))


def run_lift(s: opt.Settings, test_pipeline=None, lift_fn=None, stream=None) -> dict:
    """Plan, run the pipeline for the units not yet done, finalize; returns stats.json's dict.

    Raises PlanError / sinks.OutputConflict / ValueError for user mistakes.
    """
    if not s.output.out:
        raise PlanError("--out is required")
    from lifting.lift.config import LiftConfig

    LiftConfig.from_dict(s.lift)  # unknown lifting options fail here, not on a worker
    plan = plan_units(s)
    root = Path(s.output.out) / "repository"
    config = {**opt.identity_dict(s, ["input", "models", "output"]), "lift": LiftConfig.from_dict(s.lift).to_dict()}
    config["models"]["depth_model"] = plan.depth_backend
    identity = {"config": config, "input_sha256": plan.fingerprint, "units": len(plan.units),
                "lift3d": versions({})["lift3d"]}
    sinks.prepare_output(root, identity, overwrite=s.output.overwrite)
    done = sinks.done_units(root)
    todo = [u for u in plan.units if u.unit_id not in done]
    if done:
        log.info("resuming: %d of %d units already done", len(plan.units) - len(todo), len(plan.units))
    if todo:
        _execute(lambda p, pdir: build(p, plan, todo, s, root, lift_fn=lift_fn, progress_dir=pdir),
                 s, test_pipeline, root, sum(u.n_images for u in todo), "lift", stream)
    models = {"depth": plan.depth_backend, "segmenter": s.models.segmenter}
    return sinks.finalize_repository(root, config=config, versions=versions(models),
                                     expected_units=[u.unit_id for u in plan.units],
                                     source_errors=plan.source_errors)


def _execute(build_fn, s: opt.Settings, test_pipeline, root: Path, total: int, label: str, stream) -> None:
    """Run a pipeline built by build_fn(p, progress_dir), with the progress display when local."""
    from pipelines.progress import ProgressDisplay

    if test_pipeline is not None:
        build_fn(test_pipeline, None)
        test_pipeline.run().wait_until_finish()
        return
    options = opt.pipeline_options(s, total)
    show = s.runner.progress and opt.is_local(options)
    pdir = root / "_progress" if show else None
    p = beam.Pipeline(options=options)
    build_fn(p, str(pdir) if pdir else None)
    try:
        if show:
            with ProgressDisplay(pdir, total, label, stream=stream):
                p.run().wait_until_finish()
        else:
            p.run().wait_until_finish()
    finally:
        if pdir is not None:
            shutil.rmtree(pdir, ignore_errors=True)


GROUPS = ["input", "models", "output", "runner"]


def make_parser() -> argparse.ArgumentParser:
    """The flags of the lift pipeline (used by `run(argv)`; the CLI adds the same groups)."""
    parser = argparse.ArgumentParser(prog="lift3d lift")
    opt.add_arguments(parser, GROUPS)
    return parser


def run(argv: list[str] | None = None, test_pipeline=None, lift_fn=None) -> dict:
    """Beam-style entry point: parse `argv` (lift3d flags + Beam options) and run; returns stats."""
    args, extra = make_parser().parse_known_args(argv)
    return run_lift(opt.resolve(args, extra), test_pipeline=test_pipeline, lift_fn=lift_fn)
