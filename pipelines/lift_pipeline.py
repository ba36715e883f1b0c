"""The lift pipeline: 2D-annotated images -> the 3D object repository (OUT/repository).

    plan (driver): records sorted by key, cut into numbered units; units already done in
                   OUT (per-shard stats present) are skipped; models resolved and checked
    sensor depth:  Create(units) -> ReadUnit (one item per image) -> Reshuffle
                   -> read depth file + K
    depth model:   Create(units) -> ReadUnitBatches (lists of images sharing a network
                   canvas) -> Reshuffle -> decode -> RunInference(DepthModelHandler, one
                   model per worker process, or per machine with --large-model)
    [--segmenter sam: RunInference(SegmenterModelHandler) on box-only objects]
    -> Lift (lifting.lift.lift_image, filters) -> GroupByKey(unit) -> write shard + parts
    finalize (driver): manifest.json, stats.json, index/objects.parquet, rejected/, errors/

Only records (light dicts) cross the Reshuffle: images and depth maps are made and used
inside one fused stage and never pickled between stages.

The same code runs on the local runner (multi-process by default, see
pipelines.options.pipeline_options), on a Dask cluster (`--runner dask [--dask-address
tcp://...]`) and unchanged on Dataflow, Flink or Spark: inputs and output are local paths
or object-store URLs (s3://, gs://, ... through lifting.storage) that every worker reaches.
`run(argv, test_pipeline=None)` follows the Beam examples so tests inject a TestPipeline.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam

from lifting import storage
from pipelines import options as opt
from pipelines import sinks
from pipelines.transforms import (
    DecodeBatchFn,
    LiftFn,
    PrepareSensorFn,
    ReadUnitBatchesFn,
    ReadUnitFn,
    SegmenterInputFn,
    WriteRepositoryUnitFn,
    attach_depth,
    attach_masks,
    needs_segmenter,
)

log = logging.getLogger(__name__)

NATIVE_SOURCES = ("coco", "objects365", "openimages", "omni3d", "images")
DEFAULT_DEPTH_MODEL = "depth-anything-v2"
SAM_SIZES = ("base", "large", "huge")


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
        from lifting.sources.index import read_partition_slice

        for rec in read_partition_slice(self.partition, self.start, self.stop):
            yield record_dict(rec)


@dataclass
class Models:
    """The models of a run, resolved and checked on the driver.

    depth: 'sensor' or a depth backend name (lifting.models.registry); depth_options: its
    constructor options (weights, device, input_size, ...). segmenter: what was asked
    (annotation | sam | sam-official | none); segmenter_used: what runs — the same, or
    'depth_box' when SAM was asked but its package or weights are missing
    (segmenter_fallback then says why).
    """

    depth: str
    depth_options: dict
    segmenter: str = "annotation"
    segmenter_used: str = "annotation"
    segmenter_options: dict | None = None
    segmenter_fallback: str | None = None

    @property
    def runs_segmenter(self) -> bool:
        return self.segmenter_used in ("sam", "sam-official")

    def describe(self) -> dict:
        """JSON-ready summary for the manifest's versions and stats.json."""
        return {"depth": self.depth, "depth_weights": self.depth_options.get("weights"),
                "segmenter": self.segmenter, "segmenter_used": self.segmenter_used,
                "segmenter_weights": (self.segmenter_options or {}).get("weights"),
                "segmenter_fallback": self.segmenter_fallback}


@dataclass
class Plan:
    """What the driver decided before starting the pipeline."""

    units: list[Unit]
    source_errors: list[dict]
    fingerprint: str  # sha256 of the input description (records or partitions)
    depth_backend: str  # 'sensor' or a model name/path, as asked ('auto' resolved)

    @property
    def n_images(self) -> int:
        return sum(u.n_images for u in self.units)


def record_dict(rec) -> dict:
    """An ImageRecord as the plain dict `ImageRecord.to_dict()` gives, without deep copies.

    `dataclasses.asdict` deep-copies every polygon/RLE list, which made reading the input
    about a fifth of the lifting time on the driver; the record is not used afterwards, so
    sharing its lists is safe.
    """
    d = dict(vars(rec))
    d["objects"] = [dict(vars(o)) for o in rec.objects]
    return d


def _chunks(records: list[dict], per_shard: int, target_bytes: float | None):
    """Cut key-sorted records into consecutive chunks by count and estimated image bytes."""
    chunk, size = [], 0
    for r in records:
        b = 0
        if target_bytes:
            try:
                b = storage.getsize(r["image_path"])
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

    Small native inputs are read on the driver (`lifting.sources.open_source`) and their
    records travel inside the units. A COCO/Objects365/OpenImages/Omni3D input larger than
    --plan-in-memory-mb is first converted, streaming, into a Parquet index in OUT/_index
    (`index_for`) and planned from it like `--source index --index DIR` (`plan_index`):
    units are then partition slices that the workers read, so neither the driver nor the
    pipeline graph ever holds every record. Raises PlanError for unusable paths or an
    empty input.
    """
    i, o = s.input, s.output
    if o.samples_per_shard < 1:
        raise PlanError("--samples-per-shard must be >= 1")
    target = o.shard_target_mb * 1e6 if o.shard_target_mb else None
    if i.source is None:
        raise PlanError("--source is required (one of: " + ", ".join(opt.SOURCES) + ")")
    if i.source == "index":
        if not i.index or not storage.isdir(i.index):
            raise PlanError(f"index folder not found: {i.index}")
        return plan_index(i.index, s)

    from lifting.sources import REAL3D_SOURCES, open_source

    for name, path in (("--annotations", i.annotations), ("--images", i.images)):
        if path is not None and not storage.exists(path):
            raise PlanError(f"{name} path not found: {path}")
    if i.source != "images" and not i.annotations:
        raise PlanError(f"--annotations is required for --source {i.source}")
    if not i.images and i.source not in REAL3D_SOURCES:
        raise PlanError("--images is required")
    if i.sensor_depth and i.source not in REAL3D_SOURCES:
        raise PlanError(f"--sensor-depth applies to {', '.join(REAL3D_SOURCES)}, not --source {i.source}")
    annotations, src_options = source_options(i.source, i.annotations)
    if i.sensor_depth:
        src_options["sensor_depth"] = i.sensor_depth
    src = open_source(i.source, annotations=annotations, images=i.images, **src_options)
    if i.source in INDEXABLE_SOURCES and src.input_bytes() > i.plan_in_memory_mb * 1e6:
        return plan_index(index_for(s, annotations, src_options), s)
    records, errors = [], []
    for r in src.iter_records():
        if hasattr(r, "objects"):
            records.append(record_dict(r))
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


#: Native sources that a large input turns into a Parquet index first (see `index_for`).
INDEXABLE_SOURCES = ("coco", "objects365", "openimages", "omni3d")
#: Where `index_for` builds the index: OUT/_index (next to repository/ and qa/).
INDEX_DIR = "_index"
#: Processes that assemble the index's buckets when --workers is not given (assembling is
#: two thirds of a build: 1.05M COCO annotations take 37 s on 2 cores with two); each holds
#: one bucket (~360 MB peak), so driver and workers stay within ~1 GB (more with --workers).
INDEX_WORKERS = 2


def index_workers(s: opt.Settings) -> int:
    """Worker processes of the index build (`build_index(workers=)`): --workers when given,
    else INDEX_WORKERS (or the number of cores, if fewer)."""
    return s.runner.workers or min(INDEX_WORKERS, os.cpu_count() or 1)


def index_for(s: opt.Settings, annotations: str | None, src_options: dict) -> str:
    """The Parquet index of the run's native input, built once (streaming, flat memory:
    lifting.sources.index.build_index, its buckets assembled by `index_workers(s)`
    processes) into OUT/_index and reused while the input files are unchanged (same
    `_SUMMARY.json` fingerprint). When OUT is a URL the index is built in a
    local temporary folder and uploaded. Returns the index folder (path or URL)."""
    from lifting.sources.index import build_index, read_summary

    i = s.input
    dest = storage.join(s.output.out, INDEX_DIR)
    if not storage.is_url(dest):
        summary = build_index(i.source, annotations=annotations, images=i.images, out_dir=dest,
                              workers=index_workers(s), **src_options)
    else:
        with tempfile.TemporaryDirectory(prefix="lift3d-index-") as tmp:
            local = os.path.join(tmp, INDEX_DIR)
            try:  # reuse: the store's summary is copied next to the build folder first
                os.makedirs(local)
                storage.write_bytes(os.path.join(local, "_SUMMARY.json"),
                                    storage.read_bytes(storage.join(dest, "_SUMMARY.json")))
            except FileNotFoundError:
                pass
            summary = build_index(i.source, annotations=annotations, images=i.images, out_dir=local,
                                  workers=index_workers(s), **src_options)
            if not summary.get("reused"):
                names = sorted(n for n in os.listdir(local) if n.endswith(".parquet")) + ["_SUMMARY.json"]
                for n in names:  # the summary last: an index without it is incomplete
                    with open(os.path.join(local, n), "rb") as src, storage.atomic_write(storage.join(dest, n)) as f:
                        shutil.copyfileobj(src, f, 1 << 20)
        summary = read_summary(dest)
    log.info("planning from the Parquet index %s (%d images, %d annotations%s)", dest, summary["images_in"],
             summary["annotations_in"], ", reused" if summary.get("reused") else "")
    return dest


def plan_index(index: str, s: opt.Settings) -> Plan:
    """Units of a Parquet index (lifting.sources.index): slices of at most
    --samples-per-shard images of each partition, read by the workers. The driver reads only
    the partitions' footers and the index's error table: its memory does not grow with
    the number of images."""
    from lifting.sources.index import list_partitions
    import pyarrow.parquet as pq

    i, o = s.input, s.output
    units, h, uid = [], hashlib.sha256(), 0
    remaining = i.limit
    for part in list_partitions(index):
        with storage.open(part, "rb") as f:
            n = pq.ParquetFile(f).metadata.num_rows
        if remaining is not None:
            n = min(n, remaining)
            remaining -= n
        h.update(f"{storage.basename(part)}:{storage.getsize(part)}:{n}\n".encode())
        for start in range(0, n, o.samples_per_shard):
            stop = min(n, start + o.samples_per_shard)
            units.append(Unit(uid, stop - start, partition=str(part), start=start, stop=stop))
            uid += 1
    if not units:
        raise PlanError(f"no index partitions with images in {index}")
    errors = []
    err_path = storage.join(index, "errors.parquet")
    if storage.isfile(err_path):
        import json

        with storage.open(err_path, "rb") as f:
            err_rows = pq.read_table(f).to_pylist()
        for row in err_rows:
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


def _one_csv(folder: str, pattern: str, what: str, prefer: str | None = None) -> str | None:
    """The single CSV of `folder` (local or URL) matching glob `pattern` (among several, the
    only one whose name contains `prefer`); None when there is none; SourceConfigError when
    ambiguous."""
    from lifting.sources import SourceConfigError

    found = [p for p in storage.glob(storage.join(folder, pattern)) if storage.isfile(p)]
    if len(found) > 1 and prefer:
        found = [p for p in found if prefer in storage.basename(p)] or found
    if len(found) > 1:
        names = ", ".join(storage.basename(p) for p in found)
        raise SourceConfigError(f"openimages: several {what} CSVs in {folder} ({names}); "
                                "pass the box CSV itself as --annotations")
    return found[0] if found else None


def source_options(source: str, annotations: str | None) -> tuple[str | None, dict]:
    """(annotations, extra open_source options) for `--source source --annotations annotations`.

    OpenImages needs two CSVs: `--annotations` is the box CSV (`*bbox*.csv`, e.g.
    `oidv6-train-annotations-bbox.csv`) or the folder holding it, and the class descriptions
    (`*class-descriptions*.csv`, the `-boxable` one when there are several) are taken from
    the same folder. Image-level label and image-list CSVs are not read (they list images
    without boxes). Other sources take `--annotations` as it is. Raises
    lifting.sources.SourceConfigError (a user error) when a file is missing or ambiguous.
    """
    if source != "openimages" or not annotations:
        return annotations, {}
    from lifting.sources import SourceConfigError

    is_dir = storage.isdir(annotations)
    folder = annotations if is_dir else storage.dirname(annotations)
    boxes = _one_csv(folder, "*bbox*.csv", "box") if is_dir else annotations
    if boxes is None:
        raise SourceConfigError(f"openimages: no box CSV (*bbox*.csv) in {folder}")
    classes = _one_csv(folder, "*class-descriptions*.csv", "class descriptions", prefer="boxable")
    if classes is None:
        raise SourceConfigError(f"openimages: no class descriptions CSV (*class-descriptions*.csv, MID,name) "
                                f"in {folder}, next to the box CSV")
    return str(boxes), {"class_descriptions": str(classes)}


def _default_depth_model() -> str:
    return DEFAULT_DEPTH_MODEL


def _checkpoint_backend(folder: Path) -> str:
    """Depth backend of a local transformers checkpoint folder, from its config.json."""
    import json

    try:
        cfg = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise PlanError(f"--depth-model {folder}: not a checkpoint folder with a readable config.json ({e})") from e
    kind = cfg.get("model_type")
    if kind == "depth_anything":
        return "depth-anything-v2-outdoor" if float(cfg.get("max_depth") or 20) > 40 else "depth-anything-v2"
    if kind == "depth_pro":
        return "depth-pro"
    raise PlanError(f"--depth-model {folder}: unsupported checkpoint type {kind!r} (depth_anything or depth_pro)")


def _check_backend(kind: str, name: str, weights: str | None) -> str | None:
    """None when backend `name` can run here (packages import, weights found), else why not (one line)."""
    from lifting.models.registry import backend_status, get_info

    st = backend_status(get_info(kind, name), weights)
    if not st["packages_ok"]:
        return f"{name} needs the package(s) {', '.join(st['missing_packages'])}"
    if st["needs_weights"] and not st["weights_found"]:
        looked = "; ".join(st["looked_in"][:3])
        return f"{name} weights not found (looked in: {looked}); get them with: {st['get_with']}"
    return None


def _weights_found(kind: str, name: str, weights: str | None) -> str | None:
    """The weights file or folder backend `name` will load (explicit path or local cache), or None."""
    from lifting.models.registry import backend_status, get_info

    return backend_status(get_info(kind, name), weights).get("weights_path")


def unreadable_weights(path: str | os.PathLike | None) -> str | None:
    """None when every `*.safetensors` of weights `path` (a file, or the files of a folder)
    opens, else '<file>: <safetensors error>' (one line).

    `safetensors.safe_open` reads the header and checks that the tensors it declares fit in
    the file (a truncated download fails here) without loading any tensor, so this costs
    milliseconds on the driver instead of a failure on a worker after work began. Files in
    other formats (.bin, .pth) are not checked.
    """
    if not path:
        return None
    from safetensors import SafetensorError, safe_open

    p = Path(path)
    files = [p] if p.is_file() else sorted(p.glob("*.safetensors")) if p.is_dir() else []
    for f in files:
        if f.suffix != ".safetensors":
            continue
        try:
            with safe_open(str(f), framework="numpy") as h:
                h.keys()
        except (SafetensorError, OSError, ValueError) as e:
            return f"{f}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return None


def resolve_models(s: opt.Settings, depth_backend: str) -> Models:
    """Resolve and check the depth model and the segmenter on the driver.

    depth_backend: 'sensor', a backend name or a local checkpoint folder. A model that
    cannot run (unknown name, package or weights missing) is a PlanError (one line) for
    depth; for SAM it is a fallback to depth-only box segmentation, logged once here and
    recorded in the manifest config and stats.json. Weights that are found but do not open
    (a truncated or corrupt `*.safetensors`, see `unreadable_weights`) are a PlanError for
    both, raised before any work starts.
    """
    from lifting.models.registry import get_info

    m = s.models
    weights = m.depth_weights
    try:
        name = get_info("depth", depth_backend).name
    except ValueError as e:
        if not Path(depth_backend).is_dir():
            raise PlanError(f"--depth-model: {e}, or a local checkpoint folder") from e
        if weights:
            raise PlanError("give the checkpoint either as --depth-model FOLDER or as --depth-weights, not both") from e
        weights, name = depth_backend, _checkpoint_backend(Path(depth_backend))
    depth_options: dict = {}
    if name != "sensor":
        why = _check_backend("depth", name, weights)
        if why:
            raise PlanError(f"depth model {why}; or pass --depth-weights PATH")
        bad = unreadable_weights(_weights_found("depth", name, weights))
        if bad:
            raise PlanError(f"depth model {name}: unreadable safetensors weights {bad} (a truncated or corrupt "
                            "download?); fetch them again or pass other --depth-weights")
        depth_options = {"device": m.device, "max_batch_size": max(1, m.batch_size)}
        if weights:
            depth_options["weights"] = str(Path(weights).resolve())
        if m.depth_input_size:
            depth_options["input_size"] = int(m.depth_input_size)
    models = Models(name, depth_options, segmenter=m.segmenter, segmenter_used=m.segmenter)
    if m.segmenter in ("sam", "sam-official"):
        seg_opts: dict = {"device": m.device}
        if m.segmenter_model in SAM_SIZES and m.segmenter == "sam":
            seg_opts["size"] = m.segmenter_model
        elif m.segmenter_model:
            seg_opts["weights"] = str(Path(m.segmenter_model).resolve())
        models.segmenter_options = seg_opts
        why = _check_backend("segment", m.segmenter, seg_opts.get("weights"))
        if why is None and m.segmenter == "sam" and "size" in seg_opts and seg_opts["size"] != "huge":
            from lifting.models.segment import SAM_REPOS
            from lifting.models.weights import find_weights

            path, looked = find_weights(SAM_REPOS[seg_opts["size"]], None, None)
            why = None if path else f"sam weights not found (looked in: {'; '.join(looked[:3])})"
        if why is None:  # found: a corrupt file is the user's to fix, not a reason to fall back
            bad = unreadable_weights(_weights_found("segment", m.segmenter, seg_opts.get("weights"))
                                     if "size" not in seg_opts else _sam_size_weights(seg_opts["size"]))
            if bad:
                raise PlanError(f"segmenter {m.segmenter}: unreadable safetensors weights {bad} (a truncated or "
                                "corrupt download?); fetch them again or pass other --segmenter-model")
        if why is not None:
            models.segmenter_used, models.segmenter_fallback = "depth_box", why
            log.warning("segmenter %s unavailable (%s): falling back to depth-only box segmentation for objects "
                        "without masks (flagged in stats.json and the manifest config)", m.segmenter, why)
    return models


def _sam_size_weights(size: str) -> str | None:
    """Local weights folder of the Hugging Face SAM checkpoint of `size` (base/large/huge), or None."""
    from lifting.models.segment import SAM_REPOS
    from lifting.models.weights import find_weights

    path, _ = find_weights(SAM_REPOS[size], None, None)
    return str(path) if path else None


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


def _prepared_items(p_units, models: Models, s: opt.Settings):
    """Units -> prepared items: depth (H, W) metres, K (3, 3), K_source, depth_source
    (+ 'masks' from the segmenter), or failed items; see pipelines.transforms."""
    from apache_beam.ml.inference.base import RunInference

    from pipelines.model_handlers import DepthModelHandler, SegmenterModelHandler

    if models.depth == "sensor":
        items = (p_units | "ReadUnits" >> beam.ParDo(ReadUnitFn())
                 | "Spread" >> beam.Reshuffle()
                 | "SensorDepth" >> beam.ParDo(PrepareSensorFn()))
    else:
        handler = DepthModelHandler(models.depth, models.depth_options, large_model=s.models.large_model)
        decoded = (p_units
                   | "ReadUnitBatches" >> beam.ParDo(ReadUnitBatchesFn(models.depth, models.depth_options,
                                                                       s.models.batch_size))
                   | "Spread" >> beam.Reshuffle()
                   | "Decode" >> beam.ParDo(DecodeBatchFn(s.input.max_pixels)).with_outputs(
                       DecodeBatchFn.FAILED, main="ok"))
        keep = models.runs_segmenter
        predicted = (decoded.ok
                     | "Depth" >> RunInference(handler.with_no_batching())
                     | "AttachDepth" >> beam.Map(attach_depth, keep_image=keep))
        items = (predicted, decoded[DecodeBatchFn.FAILED]) | "MergeDepth" >> beam.Flatten()
    if not models.runs_segmenter:
        return items
    seg_handler = SegmenterModelHandler(models.segmenter_used, models.segmenter_options, min_batch_size=1,
                                        max_batch_size=1, large_model=s.models.large_model)
    todo, rest = items | "NeedsMasks" >> beam.Partition(lambda it, n: 0 if needs_segmenter(it) else 1, 2)
    prompts = todo | "SegmenterInput" >> beam.ParDo(SegmenterInputFn(s.input.max_pixels)).with_outputs(
        DecodeBatchFn.FAILED, main="ok")
    segmented = (prompts.ok | "Segment" >> RunInference(seg_handler)
                 | "AttachMasks" >> beam.Map(attach_masks))
    return (segmented, prompts[DecodeBatchFn.FAILED], rest) | "MergeMasks" >> beam.Flatten()


def build(p: beam.Pipeline, plan: Plan, todo: list[Unit], s: opt.Settings, root: str, *,
          lift_fn=None, progress_dir: str | None = None, models: Models | None = None):
    """Add the lift transforms for units `todo` to pipeline `p`; returns the per-unit stats PCollection."""
    models = models or Models("sensor", {})
    units = p | "Units" >> beam.Create(todo, reshuffle=False)
    prepared = _prepared_items(units, models, s)
    return (prepared
            | "Lift" >> beam.ParDo(LiftFn(s.lift, lift_fn=lift_fn, write_depth=s.output.write_depth,
                                          progress_dir=progress_dir,
                                          ignore_annotation_masks=models.segmenter == "none"))
            | "GroupByUnit" >> beam.GroupByKey()
            | "WriteUnits" >> beam.ParDo(WriteRepositoryUnitFn(str(root), s.input.max_pixels)))


def run_lift(s: opt.Settings, test_pipeline=None, lift_fn=None, stream=None) -> dict:
    """Plan, run the pipeline for the units not yet done, finalize; returns stats.json's dict.

    Raises PlanError / sinks.OutputConflict / ValueError for user mistakes.
    """
    if not s.output.out:
        raise PlanError("--out is required")
    from lifting.lift.config import LiftConfig

    LiftConfig.from_dict(s.lift)  # unknown lifting options fail here, not on a worker
    plan = plan_units(s)
    models = resolve_models(s, plan.depth_backend)
    root = storage.join(s.output.out, "repository")
    config = {**opt.identity_dict(s, ["input", "models", "output"]), "lift": LiftConfig.from_dict(s.lift).to_dict()}
    config["models"].update(depth_model=models.depth, depth_weights=models.depth_options.get("weights"),
                            segmenter_used=models.segmenter_used, segmenter_fallback=models.segmenter_fallback)
    identity = {"config": config, "input_sha256": plan.fingerprint, "units": len(plan.units),
                "lift3d": versions({})["lift3d"]}
    with sinks.output_lock(root):  # one run at a time per output folder, and only a lift3d one
        return _lift_locked(s, plan, models, root, config, identity, test_pipeline, lift_fn, stream)


def _lift_locked(s: opt.Settings, plan: Plan, models: Models, root: str, config: dict, identity: dict,
                 test_pipeline, lift_fn, stream) -> dict:
    """run_lift's work once the output lock is held: resume, run, finalize."""
    sinks.prepare_output(root, identity, overwrite=s.output.overwrite)
    done = sinks.done_units(root)
    retry = sinks.units_with_changed_inputs(root, done)
    if retry:
        log.info("%d finished unit(s) have failed images whose files changed since: running them again", len(retry))
        done -= retry
    todo = [u for u in plan.units if u.unit_id not in done]
    if done:
        log.info("resuming: %d of %d units already done", len(plan.units) - len(todo), len(plan.units))
    if todo:
        _execute(lambda p, pdir: build(p, plan, todo, s, root, lift_fn=lift_fn, progress_dir=pdir, models=models),
                 s, test_pipeline, root, sum(u.n_images for u in todo), "lift", stream)
    return sinks.finalize_repository(root, config=config, versions=versions(models.describe()),
                                     expected_units=[u.unit_id for u in plan.units],
                                     source_errors=plan.source_errors, extra={"models": models.describe()})


def _execute(build_fn, s: opt.Settings, test_pipeline, root: str, total: int, label: str, stream) -> None:
    """Run a pipeline built by build_fn(p, progress_dir), with the progress display when local
    (its tick files live in ROOT/_progress, or in a local temporary folder when ROOT is a URL)."""
    from pipelines.progress import ProgressDisplay

    if test_pipeline is not None:
        build_fn(test_pipeline, None)
        test_pipeline.run().wait_until_finish()
        return
    options = opt.pipeline_options(s, total)
    show = s.runner.progress and opt.is_local(options)
    pdir = None
    if show:
        pdir = Path(tempfile.mkdtemp(prefix="lift3d-progress-")) if storage.is_url(root) else Path(root) / "_progress"
    from pipelines.local_runner import runner_for

    p = beam.Pipeline(runner=runner_for(options), options=options)
    build_fn(p, str(pdir) if pdir else None)
    try:
        if show:
            with ProgressDisplay(pdir, total, label, stream=stream):
                _run_to_end(p)
        else:
            _run_to_end(p)
    finally:
        if pdir is not None:
            shutil.rmtree(pdir, ignore_errors=True)


def _run_to_end(p: beam.Pipeline) -> None:
    """Run `p` and wait for it; a Dask runner's client is closed afterwards (else it keeps
    reconnecting to a cluster that may already be gone).

    Ctrl-C (SIGINT) while it runs raises KeyboardInterrupt here, whatever Beam wrapped it in
    (its runners re-raise it as `RuntimeError: KeyboardInterrupt [while running ...]` with
    the worker's traceback): the CLI prints one line and exits 130. Units that did not finish
    have no done-marker, so the same command resumes."""
    interrupted = []
    previous = None
    quiet = _QuietInterrupt()
    excepthook = threading.excepthook
    handlers = list(logging.getLogger().handlers)
    for h in handlers:  # Beam logs the interrupted bundle's traceback at ERROR before re-raising
        h.addFilter(quiet)
    if threading.current_thread() is threading.main_thread():
        def on_sigint(signum, frame):
            from pipelines.local_runner import kill_workers

            interrupted.append(signum)
            threading.excepthook = lambda args: None  # the runner's threads see their workers die
            kill_workers()
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        result = p.run()
        try:
            result.wait_until_finish()
        finally:
            client = getattr(result, "client", None)
            if client is not None and hasattr(client, "close"):
                client.close()
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        if interrupted or "KeyboardInterrupt" in str(e)[:200]:
            raise KeyboardInterrupt from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        threading.excepthook = excepthook
        for h in handlers:
            h.removeFilter(quiet)


class _QuietInterrupt(logging.Filter):
    """Drops log records about a KeyboardInterrupt (the user pressed Ctrl-C: one line says so)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, KeyboardInterrupt) or "KeyboardInterrupt" in str(record.msg)[:200])


GROUPS = opt.LIFT_GROUPS


def make_parser() -> argparse.ArgumentParser:
    """The flags of the lift pipeline (used by `run(argv)`; the CLI adds the same groups)."""
    parser = argparse.ArgumentParser(prog="lift3d lift")
    opt.add_arguments(parser, GROUPS)
    return parser


def run(argv: list[str] | None = None, test_pipeline=None, lift_fn=None) -> dict:
    """Beam-style entry point: parse `argv` (lift3d flags + Beam options) and run; returns stats."""
    args, extra = make_parser().parse_known_args(argv)
    return run_lift(opt.resolve(args, extra), test_pipeline=test_pipeline, lift_fn=lift_fn)
