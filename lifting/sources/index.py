"""Group a source's streamed items by image, in memory or through disk; the Parquet index.

Scale: Objects365's train JSON holds ~1.7M images and ~25M boxes in several GB, the
OpenImages box CSV ~15M rows in ~2 GB, and COCO-format files put `images` before or
after `annotations`. Nothing here holds a whole input in memory:

1. The source streams its items once (ijson / csv). Each item is appended to bucket
   `crc32(shard key of its image id) % B` on disk (its payload as JSON: `_spill`), and
   each annotation id to id-bucket `crc32(ann id) % B`. B = ceil(input bytes /
   bucket_bytes) (64 MB by default), so a bucket is a bounded slice of the input whatever
   its total size. Inputs smaller than `in_memory_bytes` skip the disk and form a single
   in-memory bucket.
2. Duplicate annotation ids are found per id-bucket (first occurrence wins); only the set
   of duplicate positions is kept in memory.
3. Each bucket is read back, its items grouped by image id (payloads stay JSON bytes
   until their group is assembled), and `source.assemble(group)` runs per image in input order.

Parquet index layout (`build_index(...)` -> OUT_DIR):
    part-00000.parquet ...  one file per bucket; each holds whole images. One row per
                            image: key, image_id (JSON text: keeps int vs str), image_path,
                            width, height, n_objects, categories (list<string>) for cheap
                            filtering, and `record`: the ImageRecord as JSON (objects nested
                            inside). A JSON column because segmentation (polygons | RLE),
                            image_id (int | str) and gt_box3d are union-typed; it
                            round-trips ImageRecord exactly.
    errors.parquet          every ErrorRecord, with the `partition` it belongs to (one row
                            group per partition, so reading one partition's errors reads
                            only its row group).
    _SUMMARY.json           written last: counts by reason, the accounting identity, the
                            partition list and the input fingerprint. An index whose
                            fingerprint matches is reused instead of rebuilt.
`list_partitions(dir)` + `read_partition(path)` let a pipeline read partitions in
parallel; reading all partitions yields every record and error exactly once.

Hand-written rather than a library: the grouping is a plain hash partition of items;
pyarrow's dataset writer would need the whole table's schema up front and cannot hold
the union-typed payloads.
"""
from __future__ import annotations

import contextlib
import gc
import json
import logging
import math
import multiprocessing
import os
import shutil
import struct
import tempfile
import time
import zlib
from typing import Iterator

from dataclasses import dataclass, fields

from lifting import storage
from lifting.records import ErrorRecord, ImageRecord, Object2D
from lifting.sources import Group, Source, SourceConfigError, StatsCounter, open_source

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
_OBJ_FIELDS = fields(Object2D)
_SEP = (",", ":")
#: item kinds as spilled (a code) and the Group list each goes to
_KIND = {"image": 0, "ann": 1, "aux": 2}
_KIND_PART = ("images", "anns", "aux")
#: head of a spilled item: kind code, stream position, then the byte lengths of its group
#: key (the JSON text of its image id) and of its payload's JSON text (UTF-8), which follow
_ITEM_HEAD = struct.Struct("<BqII")


#: one encoder for every record (json.dumps with non-default arguments builds a new one per call)
_dumps = json.JSONEncoder(separators=_SEP, ensure_ascii=False, allow_nan=True).encode


def _bucket_of(text: str, n: int) -> int:
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) % n if n > 1 else 0


def n_buckets_for(source: Source) -> int:
    """Number of buckets: 1 (in memory) for small inputs, else ceil(bytes / bucket_bytes)."""
    forced = source.options.get("buckets")
    if forced:
        return max(1, int(forced))
    size = source.input_bytes()
    if size <= source.in_memory_bytes:
        return 1
    return max(2, math.ceil(size / max(1, source.bucket_bytes)))


def _expected_images(source: Source, group: Group) -> int:
    if group.images:
        return len(group.images)
    return 1 if source.implicit_images and (group.anns or group.aux) else 0


def _assemble(source: Source, group: Group, counter: StatsCounter, seen_keys: set) -> Iterator:
    """Records of one group; an image whose key is already in `seen_keys` becomes `duplicate_key`.

    Two different ids can share a key (7 and "7", "a.b" and "a-b": `make_key`), and a shard
    cannot hold two samples with one key. The first image (in bucket order) keeps the key;
    the later one is an image-level `duplicate_key` error and its objects
    `parent_image_failed`, so the accounting identity still holds. Items are bucketed by
    key, so colliding ids always meet in the same bucket.
    """
    counter.images_in += _expected_images(source, group)
    counter.annotations_in += len(group.anns)
    for rec in source.assemble(group):
        if isinstance(rec, ImageRecord):
            if rec.key in seen_keys:
                yield from _count_all(counter, _key_collision(source, rec))
                continue
            seen_keys.add(rec.key)
        counter.count_record(rec)
        yield rec


def _key_collision(source: Source, rec: ImageRecord) -> list[ErrorRecord]:
    detail = f"image id {rec.image_id!r} maps to key {rec.key}, which an earlier image already has; the first is kept"
    out = [source.error("duplicate_key", "image", image_id=rec.image_id, detail=detail)]
    out += [source.error("parent_image_failed", "object", image_id=rec.image_id, ann_id=o.source_ann_id,
                         detail="image failed: duplicate_key") for o in rec.objects]
    return out


def _count_all(counter: StatsCounter, recs: list) -> Iterator:
    for r in recs:
        counter.count_record(r)
        yield r


def _count_stream_error(counter: StatsCounter, rec: ErrorRecord) -> None:
    if rec.level == "image":
        counter.images_in += 1
    else:
        counter.annotations_in += 1
    counter.count_record(rec)


def iter_buckets(source: Source, counter: StatsCounter, n: int | None = None,
                 spill_dir: str | None = None) -> Iterator[tuple[int, Iterator]]:
    """(bucket index, lazy records of that bucket) for every bucket of `source`, in order.

    Consume each bucket's iterator before advancing to the next. `counter` receives every
    input and outcome. With n == 1 the grouping is in memory.
    """
    source.ensure_prepared()
    n = n_buckets_for(source) if n is None else n
    if n <= 1:
        yield 0, _in_memory(source, counter)
        return
    own_tmp = spill_dir is None
    base = tempfile.mkdtemp(prefix="lift3d-spill-", dir=source.spill_dir) if own_tmp else spill_dir
    os.makedirs(base, exist_ok=True)
    try:
        yield from _spilled(source, counter, n, base)
    finally:
        if own_tmp:
            shutil.rmtree(base, ignore_errors=True)
        else:
            for name in os.listdir(base):
                if name.startswith(("items-", "ids-")):
                    os.remove(os.path.join(base, name))


def iter_source_records(source: Source, counter: StatsCounter) -> Iterator[ImageRecord | ErrorRecord]:
    """All records of `source`, bucket after bucket (used by `Source.iter_records`)."""
    for _, records in iter_buckets(source, counter):
        yield from records


def _in_memory(source: Source, counter: StatsCounter) -> Iterator:
    groups: dict[str, Group] = {}
    first_ann: dict[str, int] = {}
    dups: set[int] = set()
    for seq, item in enumerate(source.iter_items()):
        kind, gid, payload = item
        if kind == "error":
            _count_stream_error(counter, payload)
            yield payload
            continue
        gkey = _dumps(gid)
        g = groups.get(gkey)
        if g is None:
            g = groups[gkey] = Group(image_id=gid)
        if kind == "ann":
            g.anns.append((seq, payload))
            aid = source.ann_id(payload)
            if aid is not None:
                akey = _dumps(aid)
                if akey in first_ann:
                    dups.add(seq)
                else:
                    first_ann[akey] = seq
        elif kind == "image":
            g.images.append((seq, payload))
        else:
            g.aux.append((seq, payload))
    del first_ann
    frozen = frozenset(dups)
    seen_keys: set = set()
    for gkey in list(groups):  # popped as assembled (see _SpilledBucket.records)
        g = groups.pop(gkey)
        g.dup_ann_seqs = frozen
        yield from _assemble(source, g, counter, seen_keys)


def _spilled(source: Source, counter: StatsCounter, n: int, base: str) -> Iterator[tuple[int, Iterator]]:
    """(bucket, lazy records) of each of `n` buckets, through files in `base`."""
    for b, bucket in enumerate(_spill(source, counter, n, base)):
        yield b, bucket.records(source, counter)


@dataclass(frozen=True)
class _SpilledBucket:
    """One bucket on disk: what assembling it needs, small enough to send to a worker."""

    path: str  # its items file (see `_spill`)
    dups: frozenset  # seqs of its annotations whose id was seen earlier in the input
    stream_errors: tuple  # ErrorRecords of items without an image id (all in bucket 0)

    def records(self, source: Source, counter: StatsCounter) -> Iterator:
        """The bucket's records in input order (its items file is removed once read)."""
        yield from self.stream_errors
        raw: dict[bytes, list] = {}
        for kind, seq, gkey, blob in _read_items(self.path):
            raw.setdefault(gkey, []).append((kind, seq, blob))
        os.remove(self.path)
        seen_keys: set = set()
        for gkey in list(raw):  # not next(iter(raw)): a dict emptied from the front is scanned again each time
            entries = raw.pop(gkey)
            g = Group(image_id=json.loads(gkey.decode("utf-8", "surrogatepass")), dup_ann_seqs=self.dups)
            for kind, seq, blob in entries:
                getattr(g, _KIND_PART[kind]).append((seq, json.loads(blob.decode("utf-8", "surrogatepass"))))
            del entries
            yield from _assemble(source, g, counter, seen_keys)


def _spill(source: Source, counter: StatsCounter, n: int, base: str) -> list[_SpilledBucket]:
    """Stream `source` into `n` bucket files in `base` and find its duplicate annotation ids
    (module docstring, steps 1-2); `counter` receives the items that have no image id.

    Payloads are spilled as JSON text (big ints, NaN and lone surrogates round-trip), not
    with marshal or pickle: no code-carrying format is read anywhere in the source tree
    (tests/test_reliability_security.py), even one this build wrote itself.
    """
    items = [open(_items_path(base, b), "wb", buffering=1 << 16) for b in range(n)]
    # surrogatepass: raw input text may hold lone surrogates ("\\udcff" in JSON); the
    # records built from it are checked by the source, the spill files only carry it
    ids = [open(_ids_path(base, b), "w", encoding="utf-8", errors="surrogatepass", buffering=1 << 16)
           for b in range(n)]
    stream_errors: list[ErrorRecord] = []
    try:
        for seq, item in enumerate(source.iter_items()):
            kind, gid, payload = item
            if kind == "error":
                _count_stream_error(counter, payload)
                stream_errors.append(payload)
                continue
            gkey = _dumps(gid).encode("utf-8", "surrogatepass")
            blob = _dumps(payload).encode("utf-8", "surrogatepass")
            # bucket by shard key, not by id: ids with the same key meet in one bucket
            bucket = _bucket_of(source.key(gid), n)
            items[bucket].write(_ITEM_HEAD.pack(_KIND[kind], seq, len(gkey), len(blob)) + gkey + blob)
            if kind == "ann":
                aid = source.ann_id(payload)
                if aid is not None:
                    akey = _dumps(aid)
                    ids[_bucket_of(akey, n)].write(f"{seq}\t{bucket}\t{akey}\n")
    finally:
        for f in items + ids:
            f.close()
    dups = _duplicate_ann_seqs(base, n)
    return [_SpilledBucket(_items_path(base, b), frozenset(dups[b]), tuple(stream_errors) if b == 0 else ())
            for b in range(n)]


def _duplicate_ann_seqs(base: str, n: int) -> list[set[int]]:
    """Per items bucket, the seqs of annotations whose id occurred earlier in the input (the
    first occurrence wins), read from the id-bucket files (removed once read)."""
    dups: list[set[int]] = [set() for _ in range(n)]
    for b in range(n):
        first: set[str] = set()
        with open(_ids_path(base, b), encoding="utf-8", errors="surrogatepass") as f:
            for line in f:
                seq, bucket, akey = line.rstrip("\n").split("\t", 2)
                if akey in first:
                    dups[int(bucket)].add(int(seq))
                else:
                    first.add(akey)
        os.remove(_ids_path(base, b))
    return dups


def _ids_path(base: str, bucket: int) -> str:
    return os.path.join(base, f"ids-{bucket:05d}.tsv")


def _items_path(base: str, bucket: int) -> str:
    return os.path.join(base, f"items-{bucket:05d}.bin")


def _read_items(path: str) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(kind code, seq, group key, payload JSON bytes) of each item of a spill file, in order."""
    with open(path, "rb", buffering=1 << 16) as f:
        while head := f.read(_ITEM_HEAD.size):
            kind, seq, n_key, n_blob = _ITEM_HEAD.unpack(head)
            body = f.read(n_key + n_blob)
            yield kind, seq, body[:n_key], body[n_key:]


# -- Parquet index --------------------------------------------------------------------------

def _schemas():
    import pyarrow as pa

    part = pa.schema([
        ("key", pa.string()), ("image_id", pa.string()), ("image_path", pa.string()),
        ("width", pa.int32()), ("height", pa.int32()), ("n_objects", pa.int32()),
        ("categories", pa.list_(pa.string())), ("record", pa.string()),
    ])
    errors = pa.schema([
        ("partition", pa.int32()), ("source", pa.string()), ("reason", pa.string()),
        ("level", pa.string()), ("image_id", pa.string()), ("key", pa.string()),
        ("source_ann_id", pa.string()), ("detail", pa.string()),
    ])
    return part, errors


def _fingerprint(source: Source, name: str, options: dict) -> dict:
    for p in source.input_paths():
        if p and not storage.exists(p):
            raise SourceConfigError(f"{source.name}: input file not found: {p}")
    files = [storage.signature(p) for p in source.input_paths() if p]
    opts = {k: v for k, v in sorted(options.items()) if isinstance(v, (str, int, float, bool, type(None)))}
    return {"format": INDEX_FORMAT, "source": name, "inputs": files, "images": source.images, "options": opts}


def record_dict(rec: ImageRecord) -> dict:
    """`rec.to_dict()` without dataclasses.asdict's deep copy (the hot spot when indexing)."""
    d = {f.name: getattr(rec, f.name) for f in fields(ImageRecord)}
    d["objects"] = [{f.name: getattr(o, f.name) for f in _OBJ_FIELDS} for o in rec.objects]
    return d


def _image_rows(recs: list[ImageRecord]) -> dict:
    return {
        "key": [r.key for r in recs],
        "image_id": [_dumps(r.image_id) for r in recs],
        "image_path": [r.image_path for r in recs],
        "width": [r.width for r in recs],
        "height": [r.height for r in recs],
        "n_objects": [len(r.objects) for r in recs],
        "categories": [sorted({o.category for o in r.objects}) for r in recs],
        "record": [_dumps(record_dict(r)) for r in recs],
    }


def _error_rows(errs: list[ErrorRecord], partition: int) -> dict:
    return {
        "partition": [partition] * len(errs),
        "source": [e.source for e in errs],
        "reason": [e.reason for e in errs],
        "level": [e.level for e in errs],
        "image_id": [None if e.image_id is None else _dumps(e.image_id) for e in errs],
        "key": [e.key for e in errs],
        "source_ann_id": [None if e.source_ann_id is None else _dumps(e.source_ann_id) for e in errs],
        "detail": [e.detail for e in errs],
    }


def _part_name(bucket: int) -> str:
    return f"part-{bucket:05d}.parquet"


def _partitions(source: Source, counter: StatsCounter, out_dir: str, spill_dir: str, row_group_images: int,
                workers: int) -> Iterator[tuple[int, int, list[ErrorRecord]]]:
    """Write the partition file of every bucket of `source` into `out_dir`; yields (bucket,
    images written, the bucket's ErrorRecords) in bucket order. `counter` receives every
    input and outcome."""
    n = n_buckets_for(source)
    if n > 1 and workers > 1:
        yield from _partitions_in_workers(source, counter, n, out_dir, spill_dir, row_group_images, workers)
        return
    for b, records in iter_buckets(source, counter, n, spill_dir=spill_dir):
        yield (b, *_write_partition(os.path.join(out_dir, _part_name(b)), records, row_group_images))


def _partitions_in_workers(source: Source, counter: StatsCounter, n: int, out_dir: str, spill_dir: str,
                           row_group_images: int, workers: int) -> Iterator[tuple[int, int, list[ErrorRecord]]]:
    """`_partitions` with the spilled buckets assembled and written by `workers` processes.

    Assembling (checking every annotation, building and serialising the records) is about
    two thirds of a build and each bucket is independent of the others, so it spreads over
    the cores; streaming the input into the buckets stays in this process. Each partition
    file is written by the same code from the same items as in one process, so the index
    is the same, byte for byte. The workers are spawned (no state forked from a driver
    that may run threads) and get the prepared source by pickle.
    """
    from concurrent.futures import ProcessPoolExecutor

    os.makedirs(spill_dir, exist_ok=True)
    buckets = _spill(source, counter, n, spill_dir)
    pool = ProcessPoolExecutor(min(workers, n), mp_context=multiprocessing.get_context("spawn"))
    try:
        futures = [pool.submit(_index_bucket, source, bucket, os.path.join(out_dir, _part_name(b)), row_group_images)
                   for b, bucket in enumerate(buckets)]
        for b in range(n):
            n_imgs, errs, counts = futures[b].result()
            futures[b] = None  # its errors are not kept once handed on
            counter.merge(counts)
            yield b, n_imgs, errs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _index_bucket(source: Source, bucket: _SpilledBucket, path: str,
                  row_group_images: int) -> tuple[int, list[ErrorRecord], dict]:
    """A worker's task in `_partitions_in_workers`: assemble one spilled bucket and write its
    partition file; returns (images written, its ErrorRecords, its counts as
    `StatsCounter.summary()` gives them)."""
    counter = StatsCounter()
    with _gc_paused():
        n_imgs, errs = _write_partition(path, bucket.records(source, counter), row_group_images)
    return n_imgs, errs, counter.summary()


def _write_partition(path: str, records: Iterator, row_group_images: int) -> tuple[int, list[ErrorRecord]]:
    """Write the ImageRecords of one bucket's `records` to the partition file `path`, in row
    groups of `row_group_images` (one empty group when there are none); returns (images
    written, the bucket's ErrorRecords)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _schemas()[0]
    imgs: list[ImageRecord] = []
    errs: list[ErrorRecord] = []
    n_imgs = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for rec in records:
            if isinstance(rec, ImageRecord):
                imgs.append(rec)
                if len(imgs) >= row_group_images:
                    w.write_table(pa.Table.from_pydict(_image_rows(imgs), schema))
                    n_imgs += len(imgs)
                    imgs = []
            else:
                errs.append(rec)
        if imgs or n_imgs == 0:
            w.write_table(pa.Table.from_pydict(_image_rows(imgs), schema))
            n_imgs += len(imgs)
    return n_imgs, errs


@contextlib.contextmanager
def _gc_paused():
    """Python's cyclic garbage collector off for the block (back on after, if it was on).

    Indexing makes millions of short-lived, acyclic containers (parsed items, records), and
    each time the survivors grow by a quarter the collector walks every one of them: a
    tenth of the build's CPU time on 1M annotations. Reference counting still frees them
    all; the few cycles the libraries make wait for the collector's next run after the block.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def build_index(source_name: str, annotations=None, images=None, out_dir=None, *,
                overwrite: bool = False, row_group_images: int = 2000, workers: int = 1, **opts) -> dict:
    """Convert one annotation source once, streaming, into a Parquet index (module docstring).

    Args:
        source_name, annotations, images, **opts: as for `lifting.sources.open_source`.
        out_dir: index folder (created). An index with a matching `_SUMMARY.json`
            fingerprint is reused unless `overwrite`.
        row_group_images: images per Parquet row group (bounds reader memory).
        workers: processes that assemble and write the partitions of an input spilled
            to several buckets (`_partitions_in_workers`; each holds one bucket); 1 = this
            process. The index is the same, byte for byte, whatever their number.

    Returns the summary dict (also written to OUT_DIR/_SUMMARY.json): stats as in
    `Source.stats()`, `partitions`, `elapsed_s`, `annotations_per_s`, `reused`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if out_dir is None:
        raise SourceConfigError("build_index needs out_dir")
    out_dir = os.fspath(out_dir)
    source = open_source(source_name, annotations=annotations, images=images, **opts)
    fp = _fingerprint(source, source_name, opts)  # before prepare(): reuse never reads the input
    summary_path = os.path.join(out_dir, "_SUMMARY.json")
    if not overwrite and os.path.exists(summary_path):
        with open(summary_path, encoding="utf-8") as f:
            old = json.load(f)
        if old.get("fingerprint") == fp:
            old["reused"] = True
            return old
    source.ensure_prepared()
    os.makedirs(out_dir, exist_ok=True)
    for name in os.listdir(out_dir):
        if name.startswith("part-") or name in ("errors.parquet", "_SUMMARY.json"):
            os.remove(os.path.join(out_dir, name))
    err_schema = _schemas()[1]
    t0 = time.perf_counter()
    counter = StatsCounter()
    partitions = []
    spill = os.path.join(out_dir, "_spill")
    err_writer = pq.ParquetWriter(os.path.join(out_dir, "errors.parquet"), err_schema, compression="zstd")
    try:
        with _gc_paused():
            for b, n_imgs, errs in _partitions(source, counter, out_dir, spill, row_group_images, workers):
                if errs:
                    err_writer.write_table(pa.Table.from_pydict(_error_rows(errs, b), err_schema))
                partitions.append({"path": _part_name(b), "images": n_imgs, "errors": len(errs)})
                del errs
    finally:
        err_writer.close()
        shutil.rmtree(spill, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    summary = counter.summary()
    summary.update({
        "source": source_name, "partitions": partitions, "elapsed_s": round(elapsed, 3),
        "annotations_per_s": round(summary["annotations_in"] / elapsed, 1) if elapsed > 0 else None,
        "fingerprint": fp, "reused": False,
    })
    if not summary["accounting_ok"]:
        log.error("index %s: accounting identity violated: %s", out_dir, summary)
    tmp = summary_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1)
    os.replace(tmp, summary_path)
    return summary


def list_partitions(index_dir) -> list[str]:
    """Absolute paths (or URLs, see lifting.storage) of the partition files of a complete
    index (sorted)."""
    index_dir = storage.abspath(index_dir)
    if not storage.exists(storage.join(index_dir, "_SUMMARY.json")):
        raise SourceConfigError(f"{index_dir} is not a complete lift3d index (no _SUMMARY.json)")
    return storage.glob(storage.join(index_dir, "part-*.parquet"))


def read_partition(path, batch_size: int = 500) -> Iterator[ImageRecord | ErrorRecord]:
    """The ImageRecords of one partition file, then the ErrorRecords assigned to it."""
    import pyarrow.parquet as pq

    path = os.fspath(path)
    with storage.open(path, "rb") as f:
        pf = pq.ParquetFile(f)
        for batch in pf.iter_batches(batch_size=batch_size, columns=["record"]):
            for text in batch.column(0).to_pylist():
                yield ImageRecord.from_dict(json.loads(text))
    partition = int(storage.basename(path)[len("part-"):-len(".parquet")])
    err_path = storage.join(storage.dirname(path), "errors.parquet")
    if not storage.exists(err_path):
        return
    with storage.open(err_path, "rb") as f:
        table = pq.read_table(f, filters=[("partition", "==", partition)])
    for row in table.to_pylist():
        yield ErrorRecord(
            source=row["source"], reason=row["reason"], level=row["level"],
            image_id=None if row["image_id"] is None else json.loads(row["image_id"]),
            key=row["key"],
            source_ann_id=None if row["source_ann_id"] is None else json.loads(row["source_ann_id"]),
            detail=row["detail"] or "")


def read_partition_slice(path, start: int = 0, stop: int | None = None) -> Iterator[ImageRecord]:
    """The ImageRecords [start, stop) of one partition file (local or URL), reading only the
    row groups that hold them (a partition of many units is not read once per unit)."""
    import pyarrow.parquet as pq

    with storage.open(os.fspath(path), "rb") as f:
        pf = pq.ParquetFile(f)
        first = 0
        for rg in range(pf.num_row_groups):
            n = pf.metadata.row_group(rg).num_rows
            if stop is not None and first >= stop:
                break
            if first + n > start:
                texts = pf.read_row_group(rg, columns=["record"]).column(0).to_pylist()
                lo, hi = max(start - first, 0), n if stop is None else min(n, stop - first)
                for text in texts[lo:hi]:
                    yield ImageRecord.from_dict(json.loads(text))
            first += n


def read_summary(index_dir) -> dict:
    """The `_SUMMARY.json` of an index."""
    return json.loads(storage.read_bytes(storage.join(os.fspath(index_dir), "_SUMMARY.json")))


class IndexSource(Source):
    """Reads a Parquet index back (`open_source("index", annotations=INDEX_DIR)`)."""

    name = "index"

    def input_paths(self) -> list[str]:
        return [storage.join(self.annotations, "_SUMMARY.json")] if self.annotations else []

    def iter_records(self) -> Iterator[ImageRecord | ErrorRecord]:
        self.ensure_prepared()
        summary = read_summary(self.annotations)
        counter = StatsCounter()
        counter.images_in = summary["images_in"]
        counter.annotations_in = summary["annotations_in"]
        for part in list_partitions(self.annotations):
            for rec in read_partition(part):
                counter.count_record(rec)
                yield rec
        self._stats = counter.summary()
