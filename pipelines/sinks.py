"""Sharded, resumable, byte-reproducible outputs: WebDataset shards, parts, manifest, stats.

Design (img2dataset-style; see DESIGN.md "Outputs"):

- The unit of work is a numbered *unit* (an index partition slice, or a fixed-size chunk of
  the key-sorted record stream). Unit N writes exactly `shard-N.tar` (zero-padded to six
  digits) plus its parts under `_parts/`: objects Parquet, rejected and errors JSON lines,
  and last `shard-N.stats.json`, whose presence marks the unit done.
- Every file goes through `lifting.storage` (local paths, or s3:// gs:// az:// hdfs:// URLs
  through fsspec) and appears under its final name whole or not at all: locally a
  `NAME.tmp-<random>` sibling renamed with `os.replace` (temporaries of a killed run are
  removed when the next run starts); on an object store one upload of the finished file.
  Object stores have no atomic rename, so nothing relies on one: a unit is done only when
  its stats file (the done-marker) exists, that file is written last, and a re-run writes
  every file of a unit without a marker again (same names, so partial leftovers are
  overwritten).
- Tars are written member by member exactly as `webdataset.TarWriter(encoder=False)`
  writes them (`tarfile` stream, one `KEY.EXT` member per field, fields in sorted order),
  with fixed metadata (mtime 0, uid/gid 0, uname/gname `lift3d`, mode 0444) and samples
  sorted by key, so the same samples give the same bytes. Hand-written on the standard
  library's `tarfile` because importing `webdataset` imports torch (~5 s per worker
  process on these machines); tests read the shards back with `webdataset`.
- `finalize_*` rebuilds manifest.json, stats.json, index/objects.parquet, rejected/ and
  errors/ from the parts of all done units, in unit order. Nothing there depends on the
  wall clock, the worker count or the order in which units finished.

Beam's `WriteToFiles` also writes to temporary names and renames, but it names shards by
bundle and cannot give one shard per unit with a done-marker; writing from a DoFn
(`write_unit`) keeps the shard assignment deterministic and resumable.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import logging
import os
import shutil
import tarfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lifting import storage
from lifting.resources import load_schema, validation_error

log = logging.getLogger(__name__)

PARTS = "_parts"
RUN_FILE = "_run.json"
TAR_USER = "lift3d"
SCHEMA_VERSION = 1


class OutputConflict(ValueError):
    """The output folder holds a run made with a different configuration or input."""


def shard_name(unit_id: int) -> str:
    """`shard-000042.tar` for unit 42 (six digits, schemas/manifest.schema.json)."""
    if not 0 <= unit_id <= 999_999:
        raise ValueError(f"unit id {unit_id} out of range 0..999999")
    return f"shard-{unit_id:06d}.tar"


def canonical_json(obj) -> bytes:
    """UTF-8 JSON with sorted keys and no spaces: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def pretty_json(obj) -> bytes:
    """Indented, key-sorted JSON for human-read files (manifest, stats); still deterministic."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")


def write_bytes_atomic(path, data: bytes) -> None:
    """Write `data` to `path` (local or URL) so that it appears whole or not at all
    (`lifting.storage.atomic_write`)."""
    storage.write_bytes(path, data)


def write_json_atomic(path, obj, pretty: bool = False) -> None:
    """Key-sorted JSON written atomically (see write_bytes_atomic)."""
    write_bytes_atomic(path, pretty_json(obj) if pretty else canonical_json(obj) + b"\n")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file (local or URL), read in 1 MiB chunks."""
    h = hashlib.sha256()
    with storage.open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    """What the manifest records about one finished shard."""

    name: str
    samples: int
    bytes: int
    sha256: str

    def to_dict(self) -> dict:
        return {"name": self.name, "samples": self.samples, "bytes": self.bytes, "sha256": self.sha256}


def write_tar_atomic(path, samples: Iterable[dict]) -> ShardInfo:
    """Write WebDataset samples to `path` (local or URL) reproducibly and atomically.

    samples: dicts {'__key__': KEY (no dots), EXT: bytes | str, ...}; written sorted by key
    (members of a sample sorted by extension, as TarWriter does). Metadata is fixed: mtime 0,
    uid/gid 0, uname/gname 'lift3d', mode 0444. Raises ValueError for duplicate or invalid
    keys and for field values that are not bytes/str (nothing is left under `path`).
    """
    path = os.fspath(path)
    name = storage.basename(path)
    ordered = sorted(samples, key=lambda s: s["__key__"])
    keys = [s["__key__"] for s in ordered]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name}: duplicate sample keys")
    for k in keys:
        if "." in k or "/" in k or not k:
            raise ValueError(f"{name}: invalid sample key {k!r}")
    with storage.atomic_write(path) as f:
        with tarfile.open(fileobj=f, mode="w|") as tar:
            for s in ordered:
                _add_sample(tar, s)
        f.flush()
        info = ShardInfo(name, len(ordered), os.path.getsize(f.name), sha256_file(f.name))
    return info


def _add_sample(tar: tarfile.TarFile, sample: dict) -> None:
    """Append one sample's members `KEY.EXT` (fields sorted, '_'-fields skipped) as TarWriter does."""
    key = sample["__key__"]
    fields = {}
    for k, v in sample.items():
        if k.startswith("_"):
            continue
        if isinstance(v, str):
            v = v.encode("utf-8")
        if not isinstance(v, (bytes, bytearray, memoryview)):
            raise ValueError(f"{key}.{k} doesn't map to bytes ({type(v).__name__})")
        fields[k] = bytes(v)
    for k in sorted(fields):
        ti = tarfile.TarInfo(f"{key}.{k}")
        ti.size = len(fields[k])
        ti.mtime = 0
        ti.mode = 0o444
        ti.uname = ti.gname = TAR_USER
        tar.addfile(ti, io.BytesIO(fields[k]))


# ---------------------------------------------------------------------------------------
# Record validation at the writer.

#: Keywords whose meaning is the same in JSON Schema draft-07 and 2020-12 (what the fast path may see).
_SAME_IN_DRAFT7 = {
    "$schema", "$id", "$ref", "$defs", "definitions", "$comment", "title", "description", "default", "examples",
    "type", "enum", "const", "properties", "required", "additionalProperties", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "items", "minItems", "maxItems", "uniqueItems",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength",
    "pattern", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
}
_ANNOTATIONS = {"$schema", "$id", "$comment", "title", "description", "default", "examples", "$defs", "definitions"}


def _draft7_compatible(schema) -> bool:
    """Whether a 2020-12 schema validates the same under draft-07 rules: only shared keywords,
    `items` as a single schema, and no `$ref` with sibling assertions (ignored by draft-07)."""
    if isinstance(schema, bool):
        return True
    if not isinstance(schema, dict) or not set(schema) <= _SAME_IN_DRAFT7:
        return False
    if "$ref" in schema and set(schema) - _ANNOTATIONS - {"$ref"}:
        return False
    subs = []
    for k in ("properties", "patternProperties", "$defs", "definitions"):
        subs += list(schema.get(k, {}).values())
    for k in ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else"):
        if k in schema:
            if k == "items" and not isinstance(schema[k], (dict, bool)):
                return False
            subs.append(schema[k])
    for k in ("allOf", "anyOf", "oneOf"):
        subs += list(schema.get(k, []))
    return all(_draft7_compatible(x) for x in subs)


@functools.lru_cache(maxsize=None)
def _fast_validator(name: str):
    """A fastjsonschema-compiled validator of schema `name`, or None (package absent, schema
    not draft-07 compatible). About 15x faster than jsonschema on image records."""
    try:
        import fastjsonschema
    except ImportError:
        return None
    schema = dict(load_schema(name))
    if not _draft7_compatible(schema):
        return None
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema.pop("$id", None)  # a relative $id breaks fastjsonschema's reference resolution
    return fastjsonschema.compile(schema)


def record_error(record: dict, name: str) -> str | None:
    """The first error of `record` against schema `name` as one line, or None when valid.

    Valid records pass a compiled (fastjsonschema) check; anything it rejects is re-checked
    by jsonschema (`lifting.resources.validation_error`), which has the final word and
    writes the message.
    """
    fast = _fast_validator(name)
    if fast is not None:
        import fastjsonschema

        try:
            fast(record)
            return None
        except fastjsonschema.JsonSchemaException:
            pass
    return validation_error(record, name)


# ---------------------------------------------------------------------------------------
# Run state: configuration check, done units, clean-up of temporaries.


LOCK_FILE = "_lock"


def check_owned(root) -> None:
    """OutputConflict unless `root` is missing, empty, or a lift3d output (it holds
    `_parts/`, where every run writes its identity and lock first).

    lift3d removes temporaries and rewrites manifest.json, stats.json, errors/ and shards in
    its output: in a folder of the user's that would delete or overwrite their files."""
    root = os.fspath(root)
    if not storage.isdir(root):
        if storage.exists(root):
            raise OutputConflict(f"{root} is a file, not an output folder; use another --out")
        return
    names = [storage.basename(p.rstrip("/")) for p in storage.listdir(root)]
    if names and PARTS not in names:
        shown = ", ".join(sorted(names)[:3]) + (", ..." if len(names) > 3 else "")
        raise OutputConflict(f"{root} already holds files that are not a lift3d output ({shown}); "
                             "lift3d will not write into it: use another --out")


@contextlib.contextmanager
def output_lock(root):
    """Hold the exclusive lock of output folder `root` for one run (OutputConflict at once,
    one line, when another run holds it; `check_owned` first).

    Local folders: `flock` on `root/_parts/_lock`, released when the run ends or its process
    dies (kill -9 included), so a stale lock never blocks a later run. Object stores have no
    lock primitive; there the identity check of `prepare_output` is the only guard."""
    root = os.fspath(root)
    check_owned(root)
    if storage.is_url(root):
        yield
        return
    import fcntl

    os.makedirs(os.path.join(root, PARTS), exist_ok=True)
    fd = os.open(os.path.join(root, PARTS, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputConflict(f"another lift3d run is writing to {root}; wait for it to finish "
                                 "or use another --out") from None
        yield
    finally:
        os.close(fd)  # closing releases the flock


def prepare_output(root, run_identity: dict, overwrite: bool = False) -> None:
    """Create `root` (local or URL), remove temporaries of a killed run, and pin the run identity.

    run_identity: JSON-ready dict of everything that changes the output (config, input
    description, code version). A folder made with a different identity raises
    OutputConflict unless `overwrite`, in which case its finished units are discarded.
    A folder that is not a lift3d output is refused even with `overwrite` (`check_owned`).
    Only local folders can hold temporaries (`storage.atomic_write` uploads whole files).
    """
    root = os.fspath(root)
    check_owned(root)
    storage.makedirs(root)
    if not storage.is_url(root):
        removed = 0
        for p in list(Path(storage.local(root)).rglob(f"*{storage.TMP_MARK}*")):
            p.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.info("%s: removed %d temporary file(s) of an interrupted run", root, removed)
    run_file = storage.join(root, PARTS, RUN_FILE)
    if storage.exists(run_file):
        old = json.loads(storage.read_text(run_file))
        run_identity = json.loads(canonical_json(run_identity))
        if old != run_identity:
            if not overwrite:
                diff = sorted(k for k in set(old) | set(run_identity) if old.get(k) != run_identity.get(k))
                if diff == ["config"]:
                    oc, nc = old.get("config", {}), run_identity["config"]
                    diff = [f"config.{k}" for k in sorted(set(oc) | set(nc)) if oc.get(k) != nc.get(k)]
                raise OutputConflict(
                    f"{root} holds a run with a different {', '.join(diff) or 'configuration'}; "
                    "use another --out, or --overwrite to discard it")
            for p in storage.glob(storage.join(root, PARTS, "*.stats.json")):
                storage.remove(p)
    write_json_atomic(run_file, run_identity, pretty=True)


def done_units(root) -> set[int]:
    """Unit ids whose per-shard stats file (the done-marker, written last) exists; the
    shard and parts of any other unit may be partial and are written again."""
    out = set()
    for p in storage.glob(storage.join(os.fspath(root), PARTS, "shard-*.stats.json")):
        try:
            out.add(int(storage.basename(p)[6:12]))
        except ValueError:
            continue
    return out


def input_stamps(paths: Iterable[str | None]) -> dict:
    """{path: storage.signature(path)[1:] or None when it cannot be read} of the given input files."""
    out = {}
    for p in paths:
        if p and p not in out:
            try:
                out[p] = storage.signature(p)[1:]
            except (OSError, ValueError):
                out[p] = None
    return out


def units_with_changed_inputs(root, units: Iterable[int]) -> set[int]:
    """Done units whose failed images' input files changed since the unit was written (size
    or mtime / ETag, `failed_inputs` of its done-marker): a re-run does them again, so an image
    the user repaired is retried, while units whose failures did not change are kept."""
    out = set()
    for u in units:
        stamps = read_json(part_path(root, u, "stats.json")).get("failed_inputs") or {}
        if stamps and input_stamps(stamps) != stamps:
            out.add(u)
    return out


def remove_stale_units(root, expected: Iterable[int]) -> int:
    """Remove `shard-N.tar` and `_parts/shard-N.*` of every unit N not in `expected` (left by an
    earlier run with more units): a trainer globbing shard-*.tar would read them. Returns how many."""
    root = os.fspath(root)
    keep = set(expected)
    removed = 0
    for pattern in (storage.join(root, "shard-*.tar"), storage.join(root, PARTS, "shard-*")):
        for p in storage.glob(pattern):
            try:
                unit = int(storage.basename(p)[6:12])
            except ValueError:
                continue
            if unit not in keep:
                storage.remove(p)
                removed += 1
    if removed:
        log.info("%s: removed %d file(s) of units that this run does not have", root, removed)
    return removed


def part_path(root, unit_id: int, suffix: str) -> str:
    """`root/_parts/shard-NNNNNN.<suffix>` (suffix e.g. 'stats.json', 'objects.parquet')."""
    return storage.join(os.fspath(root), PARTS, f"{shard_name(unit_id)[:-4]}.{suffix}")


def read_json(path):
    """The JSON value of file `path` (local or URL)."""
    return json.loads(storage.read_bytes(path))


# ---------------------------------------------------------------------------------------
# Repository units.

#: Column types of index/objects.parquet (one row per object, kept and rejected).
OBJECTS_SCHEMA = pa.schema([
    ("key", pa.string()), ("shard", pa.string()), ("source", pa.string()), ("image_id", pa.string()),
    ("object_id", pa.string()), ("category", pa.string()), ("category_raw", pa.string()),
    ("source_ann_id", pa.string()), ("status", pa.string()), ("reason", pa.string()),
    ("image_status", pa.string()), ("bbox_xyxy", pa.list_(pa.float64())),
    ("center_cam", pa.list_(pa.float64())), ("dimensions", pa.list_(pa.float64())),
    ("yaw", pa.float64()), ("depth_source", pa.string()), ("K_source", pa.string()),
    ("proj_iou", pa.float64()), ("n_points", pa.int64()),
])


def _s(v) -> str | None:
    return None if v is None else str(v)


def object_rows(record: dict, shard: str | None) -> list[dict]:
    """Index rows (OBJECTS_SCHEMA) for every object of a repository image record."""
    rows = []
    for o in record.get("objects", []):
        box = o.get("box3d") or {}
        q = o.get("quality") or {}
        rows.append({
            "key": record["key"], "shard": shard, "source": record.get("source"),
            "image_id": _s(record.get("image_id")), "object_id": o.get("object_id"),
            "category": o.get("category"), "category_raw": _s(o.get("category_raw")),
            "source_ann_id": _s(o.get("source_ann_id")), "status": o.get("status"),
            "reason": o.get("reason"), "image_status": record.get("status"),
            "bbox_xyxy": [float(x) for x in o.get("bbox_xyxy") or []] or None,
            "center_cam": [float(x) for x in box["center_cam"]] if box.get("center_cam") else None,
            "dimensions": [float(x) for x in box["dimensions"]] if box.get("dimensions") else None,
            "yaw": float(box["yaw"]) if box.get("yaw") is not None else None,
            "depth_source": record.get("depth_source"), "K_source": record.get("K_source"),
            "proj_iou": float(q["proj_iou"]) if q.get("proj_iou") is not None else None,
            "n_points": int(q["n_points"]) if q.get("n_points") is not None else None,
        })
    return rows


def _parquet_bytes(rows: list[dict]) -> bytes:
    table = pa.Table.from_pylist(rows, schema=OBJECTS_SCHEMA)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", write_statistics=True)
    return buf.getvalue()


def _jsonl(rows: Iterable[dict]) -> bytes:
    return b"".join(canonical_json(r) + b"\n" for r in rows)


@dataclass
class ImageResult:
    """What the lift stage hands the writer for one input image.

    status: 'lifted' | 'rejected' (the record says why) | 'failed' (no record; `error`
    holds {'reason', 'detail', 'stage'}). jpg: the stored image bytes (None for failed).
    depth_png: optional 16-bit depth PNG (millimetres) to store as KEY.depth.png.
    n_objects: objects of the *input* record (before lifting), so that the objects of an
    image that fails are still counted; None = unknown (then the record's objects, or 0).
    depth_path: the record's depth file, if any (stamped with the image when it fails).
    """

    key: str
    status: str
    record: dict | None = None
    error: dict | None = None
    image_path: str | None = None
    depth_png: bytes | None = None
    n_objects: int | None = None
    depth_path: str | None = None


def write_repository_unit(root, unit_id: int, results: Iterable[ImageResult],
                          load_jpg) -> dict:
    """Write unit `unit_id` of the repository: its shard, its parts, then its stats (last).

    results: every input image of the unit, exactly once (order irrelevant: sorted by key
    here). load_jpg(result) -> bytes | (None, reason): the JPEG to store for a record;
    a failure turns the image into a failed one. Each record is validated against
    schemas/image_record.schema.json; an invalid record is a failed image
    (`record_invalid`), never a crash. Returns the unit stats dict that was written.

    Objects are accounted for per unit: `objects_in` (objects of the input records,
    `ImageResult.n_objects`) = kept + rejected (index rows) + objects of the images that
    failed in the pipeline (`objects_of_failed_images_by_reason`, by the image's reason).
    """
    shard = shard_name(unit_id)
    results = sorted(results, key=lambda r: r.key)
    samples, rows, rejected, errors, failed_paths = [], [], [], [], []
    images = Counter()
    objects = Counter()
    failed_by_reason, rejected_by_reason, objects_failed_by_reason = Counter(), Counter(), Counter()
    for r in results:
        images["in"] += 1
        status, rec, err = r.status, r.record, r.error
        n_in = r.n_objects if r.n_objects is not None else len((rec or {}).get("objects") or [])
        objects["in"] += n_in
        if status in ("lifted", "rejected") and rec is not None:
            msg = record_error(rec, "image_record")
            if msg is not None:
                status, err = "failed", {"reason": "record_invalid", "detail": msg, "stage": "write"}
        jpg = None
        if status == "lifted":
            jpg, why = load_jpg(r)
            if jpg is None:
                status, err = "failed", {"reason": why, "detail": str(r.image_path), "stage": "write"}
        if status == "failed" or rec is None:
            err = err or {"reason": "unknown_failure", "detail": "", "stage": "unknown"}
            images["failed"] += 1
            failed_by_reason[err["reason"]] += 1
            if n_in:
                objects_failed_by_reason[err["reason"]] += n_in
            errors.append({"key": r.key, "level": "image", **err})
            failed_paths += [r.image_path, r.depth_path]
            continue
        images[status] += 1
        if status == "rejected":
            rejected_by_reason[rec.get("reason") or "no_object_kept"] += 1
            rejected.append({"key": r.key, "level": "image", "reason": rec.get("reason") or "no_object_kept"})
        in_shard = status == "lifted"
        for o in rec.get("objects", []):
            objects["total"] += 1
            objects[o["status"]] += 1
            if o["status"] == "rejected":
                objects["reason:" + str(o.get("reason"))] += 1
                rejected.append({"key": r.key, "level": "object", "object_id": o["object_id"],
                                 "category": o.get("category"), "reason": o.get("reason")})
        rows.extend(object_rows(rec, shard if in_shard else None))
        if in_shard:
            sample = {"__key__": r.key, "jpg": jpg, "json": canonical_json(rec)}
            if r.depth_png is not None:
                sample["depth.png"] = r.depth_png
            samples.append(sample)
    info = write_tar_atomic(storage.join(os.fspath(root), shard), samples)
    write_bytes_atomic(part_path(root, unit_id, "objects.parquet"), _parquet_bytes(rows))
    write_bytes_atomic(part_path(root, unit_id, "rejected.jsonl"), _jsonl(rejected))
    write_bytes_atomic(part_path(root, unit_id, "errors.jsonl"), _jsonl(errors))
    stats = {
        "unit": unit_id, "shard": info.to_dict(),
        "images": {"in": images["in"], "lifted": images["lifted"], "rejected": images["rejected"],
                   "failed": images["failed"]},
        "images_failed_by_reason": dict(failed_by_reason),
        "images_rejected_by_reason": dict(rejected_by_reason),
        "objects": {"total": objects["total"], "kept": objects["kept"], "rejected": objects["rejected"]},
        "objects_rejected_by_reason": {k[7:]: v for k, v in objects.items() if k.startswith("reason:")},
        "objects_in": objects["in"],
        "objects_of_failed_images_by_reason": dict(objects_failed_by_reason),
    }
    if failed_paths:  # a re-run retries the unit once one of these files changes
        stats["failed_inputs"] = input_stamps(sorted(p for p in failed_paths if p))
    write_json_atomic(part_path(root, unit_id, "stats.json"), stats)  # last: marks the unit done
    return stats


def _add(dst: dict, src: dict) -> None:
    for k, v in src.items():
        dst[k] = dst.get(k, 0) + v


def _manifest(kind: str, shard_infos: list[dict], config: dict, versions: dict) -> dict:
    return {
        "schema_version": SCHEMA_VERSION, "kind": kind, "shards": shard_infos,
        "totals": {"shards": len(shard_infos), "samples": sum(s["samples"] for s in shard_infos),
                   "bytes": sum(s["bytes"] for s in shard_infos)},
        "config": config, "versions": versions,
    }


def finalize_repository(root, *, config: dict, versions: dict, expected_units: Iterable[int],
                        source_errors: list[dict] | None = None, extra: dict | None = None) -> dict:
    """Rebuild manifest.json, stats.json, index/objects.parquet, rejected/, errors/ from parts.

    expected_units: every unit id of the run; a missing one raises RuntimeError (the
    pipeline did not finish it). source_errors: ErrorRecord dicts from reading the input
    (level 'image' count as failed images, level 'object' as objects dropped at read).
    extra: further JSON-ready entries of stats.json (e.g. 'models': which depth model and
    segmenter ran, and whether SAM fell back to depth-only box segmentation).
    Returns the stats dict. All files are written atomically and deterministically.
    Streams: the unit parts are read one at a time (the index in row groups of at most
    INDEX_ROW_GROUP rows), so memory does not grow with the number of images.

    Object accounting (`objects_accounting` in stats.json, with `balanced`):
        in = kept + rejected + of_failed_images + dropped_at_read
    where `in` counts the objects of the records that entered the pipeline (counted before
    lifting) plus the annotations dropped while reading; `objects_of_failed_images` (an
    int, and by the image's reason) counts the objects of images that failed inside the
    pipeline (decode, depth, lift, write).
    """
    root = os.fspath(root)
    expected = _check_done(root, expected_units)
    remove_stale_units(root, expected)
    source_errors = sorted(source_errors or [], key=canonical_json)
    images = {"in": 0, "lifted": 0, "rejected": 0, "failed": 0}
    objects = {"total": 0, "kept": 0, "rejected": 0}
    failed_by, rejected_by, objects_by, objects_failed_by = {}, {}, {}, {}
    objects_in = 0
    shard_infos = []
    for unit_id in expected:
        u = read_json(part_path(root, unit_id, "stats.json"))
        shard_infos.append(u["shard"])
        _add(images, u["images"])
        _add(objects, u["objects"])
        _add(failed_by, u["images_failed_by_reason"])
        _add(rejected_by, u["images_rejected_by_reason"])
        _add(objects_by, u["objects_rejected_by_reason"])
        failed_here = u.get("objects_of_failed_images_by_reason", {})
        _add(objects_failed_by, failed_here)
        # a unit written before `objects_in` existed: what it accounted for
        objects_in += u.get("objects_in", u["objects"]["total"] + sum(failed_here.values()))
    dropped_at_read = {}
    for e in source_errors:
        if e.get("level") == "image":
            images["in"] += 1
            images["failed"] += 1
            _add(failed_by, {e["reason"]: 1})
        else:
            _add(dropped_at_read, {e["reason"]: 1})
    n_dropped, n_failed = sum(dropped_at_read.values()), sum(objects_failed_by.values())
    accounting = {"in": objects_in + n_dropped, "kept": objects["kept"], "rejected": objects["rejected"],
                  "of_failed_images": n_failed, "dropped_at_read": n_dropped}
    accounting["balanced"] = (accounting["in"] == objects["kept"] + objects["rejected"] + n_failed + n_dropped
                              and objects["total"] == objects["kept"] + objects["rejected"])
    if not accounting["balanced"]:
        log.warning("%s: objects in != kept + rejected + of failed images + dropped at read: %s", root, accounting)
    stats = {
        "schema_version": SCHEMA_VERSION, "kind": "repository",
        "images": images, "images_failed_by_reason": failed_by, "images_rejected_by_reason": rejected_by,
        "objects": objects, "objects_rejected_by_reason": objects_by,
        "objects_dropped_at_read_by_reason": dropped_at_read,
        "objects_of_failed_images": n_failed, "objects_of_failed_images_by_reason": objects_failed_by,
        "objects_accounting": accounting,
        "shards": len(shard_infos), "samples": sum(s["samples"] for s in shard_infos),
        "balanced": images["in"] == images["lifted"] + images["rejected"] + images["failed"],
        **(extra or {}),
    }
    _concat_parquet(storage.join(root, "index", "objects.parquet"),
                    (part_path(root, u, "objects.parquet") for u in expected))
    read_errors = _jsonl({"key": e.get("key"), "level": e.get("level"), "reason": e["reason"],
                          "detail": e.get("detail", ""), "stage": "read",
                          "image_id": _s(e.get("image_id")), "source_ann_id": _s(e.get("source_ann_id"))}
                         for e in source_errors)
    _concat_files(storage.join(root, "rejected", "rejected.jsonl"),
                  (part_path(root, u, "rejected.jsonl") for u in expected))
    _concat_files(storage.join(root, "errors", "errors.jsonl"),
                  (part_path(root, u, "errors.jsonl") for u in expected), head=read_errors)
    manifest = _manifest("repository", shard_infos, config, versions)
    check_manifest(manifest)
    write_json_atomic(storage.join(root, "manifest.json"), manifest, pretty=True)
    write_json_atomic(storage.join(root, "stats.json"), stats, pretty=True)
    return stats


def _check_done(root: str, expected_units: Iterable[int]) -> list[int]:
    """The sorted unit ids; RuntimeError when one has no done-marker (the pipeline did not finish it)."""
    expected = sorted(set(expected_units))
    missing = sorted(set(expected) - done_units(root))
    if missing:
        raise RuntimeError(f"{len(missing)} unit(s) not finished, e.g. {shard_name(missing[0])}")
    return expected


#: Rows per row group of index/objects.parquet (units are merged until they reach it).
INDEX_ROW_GROUP = 131_072


def _concat_parquet(path: str, parts: Iterable[str]) -> None:
    """Write the rows of the Parquet files `parts`, in order, to `path` (OBJECTS_SCHEMA, zstd),
    holding at most about INDEX_ROW_GROUP rows in memory. Deterministic for the same parts."""
    with storage.atomic_write(path) as f:
        with pq.ParquetWriter(f, OBJECTS_SCHEMA, compression="zstd", write_statistics=True) as writer:
            pending, n = [], 0
            for part in parts:
                with storage.open(part, "rb") as pf:
                    t = pq.read_table(pf).cast(OBJECTS_SCHEMA)
                if t.num_rows:
                    pending.append(t)
                    n += t.num_rows
                if n >= INDEX_ROW_GROUP:
                    writer.write_table(pa.concat_tables(pending), row_group_size=INDEX_ROW_GROUP)
                    pending, n = [], 0
            if pending:
                writer.write_table(pa.concat_tables(pending), row_group_size=INDEX_ROW_GROUP)


def _concat_files(path: str, parts: Iterable[str], head: bytes = b"") -> None:
    """Write `head` then the bytes of files `parts`, in order, to `path`, streaming."""
    with storage.atomic_write(path) as f:
        f.write(head)
        for part in parts:
            with storage.open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)


def check_manifest(manifest: dict) -> None:
    """Raise ValueError when a manifest does not match schemas/manifest.schema.json."""
    msg = validation_error(manifest, "manifest")
    if msg is not None:
        raise ValueError(f"manifest invalid: {msg}")


# ---------------------------------------------------------------------------------------
# QA units.


def write_qa_unit(root, unit_id: int, samples: Iterable[tuple[dict, bytes]], counts: dict,
                  heldout_records: list[dict] | None = None) -> dict:
    """Write unit `unit_id` of the QA output: `shard-N.tar` (KEY.jpg + KEY.json), then stats.

    samples: (qa sample dict, jpg bytes); each dict is validated against
    schemas/qa_sample.schema.json — an invalid one is counted under
    `samples_invalid` and left out, never a crash. counts: the unit's other counters
    (records in, without QA, rephrase stats), stored as given. heldout_records: image
    records of the benchmark split (no training QA), kept as `shard-N.heldout.jsonl` in the
    parts for `build_qa_benchmark`. Returns the stats dict.
    """
    good, invalid, errors = [], 0, []
    n_questions, families = 0, Counter()
    for qa, jpg in samples:
        msg = record_error(qa, "qa_sample")
        if msg is not None:
            invalid += 1
            errors.append({"key": qa.get("key"), "reason": "qa_sample_invalid", "detail": msg})
            continue
        n_questions += len(qa["questions"])
        families.update(q["family"] for q in qa["questions"])
        good.append({"__key__": qa["key"], "jpg": jpg, "json": canonical_json(qa)})
    info = write_tar_atomic(storage.join(os.fspath(root), shard_name(unit_id)), good)
    write_bytes_atomic(part_path(root, unit_id, "errors.jsonl"), _jsonl(sorted(errors, key=canonical_json)))
    write_bytes_atomic(part_path(root, unit_id, "heldout.jsonl"),
                       _jsonl(sorted(heldout_records or [], key=lambda r: r["key"])))
    stats = {"unit": unit_id, "shard": info.to_dict(), "samples": info.samples, "samples_invalid": invalid,
             "questions": n_questions, "questions_by_family": dict(families), "counts": counts}
    write_json_atomic(part_path(root, unit_id, "stats.json"), stats)
    return stats


def iter_heldout_records(root, expected_units: Iterable[int]):
    """Image record dicts of the held-out split, in unit then key order (from the QA parts)."""
    for u in sorted(set(expected_units)):
        p = part_path(root, u, "heldout.jsonl")
        if storage.isfile(p):
            for line in storage.read_text(p).splitlines():
                if line.strip():
                    yield json.loads(line)


def build_qa_benchmark(root, expected_units: Iterable[int], n: int, qa_config) -> dict:
    """Build the held-out benchmark (`lifting.qa.benchmark.build_benchmark`, at most `n`
    questions) from the held-out records and write `root/benchmark.jsonl` atomically.

    qa_config: the lifting.qa.QAConfig of the run. Returns {'questions', 'heldout_images',
    'file'} for stats.json. Deterministic for the same records, n and config.
    """
    from lifting.qa.benchmark import build_benchmark, write_benchmark

    records = list(iter_heldout_records(root, expected_units))
    items = build_benchmark(records, n, qa_config)
    path = storage.join(os.fspath(root), "benchmark.jsonl")
    with storage.atomic_write(path) as f:
        f.close()
        write_benchmark(items, f.name)
        digest = sha256_file(f.name)
    return {"questions": len(items), "heldout_images": len(records), "file": storage.basename(path), "sha256": digest}


def finalize_qa(root, *, config: dict, versions: dict, expected_units: Iterable[int],
                extra: dict | None = None) -> dict:
    """Rebuild qa manifest.json, stats.json and errors/ from the finished units' parts
    (`extra`: further JSON-ready entries of stats.json, e.g. the benchmark summary)."""
    root = os.fspath(root)
    expected = _check_done(root, expected_units)
    remove_stale_units(root, expected)
    totals = {"samples": 0, "samples_invalid": 0, "questions": 0}
    families, counts, shard_infos = {}, {}, []
    for unit_id in expected:
        u = read_json(part_path(root, unit_id, "stats.json"))
        shard_infos.append(u["shard"])
        _add(totals, {k: u[k] for k in totals})
        _add(families, u["questions_by_family"])
        _add(counts, u["counts"])
    stats = {"schema_version": SCHEMA_VERSION, "kind": "qa", **totals, "questions_by_family": families,
             **counts, "shards": len(shard_infos), **(extra or {})}
    _concat_files(storage.join(root, "errors", "errors.jsonl"), (part_path(root, u, "errors.jsonl") for u in expected))
    manifest = _manifest("qa", shard_infos, config, versions)
    check_manifest(manifest)
    write_json_atomic(storage.join(root, "manifest.json"), manifest, pretty=True)
    write_json_atomic(storage.join(root, "stats.json"), stats, pretty=True)
    return stats
