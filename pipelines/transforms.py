"""Thin Beam DoFns around the `lifting` library: read, prepare, lift, write, QA.

Every per-image element is a plain dict ("item") so that it crosses stages without
pickling custom classes:

    {'unit': int, 'record': ImageRecord dict, 'error': None | {'reason','detail','stage'},
     'depth': (H, W) float32 metres | None, 'K': (3, 3) | None, 'K_source': str,
     'depth_source': str, 'image': (H, W, 3) uint8 RGB | None (only for depth models)}

A failed item keeps flowing (with `error` set) down to the writer of its unit, so every
input image lands in exactly one of lifted / rejected / failed. Counters are Beam metrics
in namespace `lift3d` (`images_<status>`, `failed_<reason>`). No DoFn holds a lock: models
are shared per worker process by RunInference, everything else is per element.
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from pipelines.progress import ProgressTicker
from pipelines.sinks import ImageResult, write_qa_unit, write_repository_unit

log = logging.getLogger(__name__)
NS = "lift3d"


def _count(name: str, n: int = 1) -> None:
    Metrics.counter(NS, name).inc(n)


def failed_item(item: dict, reason: str, detail: str, stage: str) -> dict:
    """`item` marked as failed at `stage` with a stable `reason` (heavy arrays dropped)."""
    out = {k: v for k, v in item.items() if k not in ("depth", "image")}
    out["error"] = {"reason": reason, "detail": str(detail)[:500], "stage": stage}
    return out


class ReadUnitFn(beam.DoFn):
    """Unit -> (unit id, record dict) for each image of the unit (see lift_pipeline.Unit)."""

    def process(self, unit):
        for rec in unit.iter_records():
            yield {"unit": unit.unit_id, "record": rec, "error": None}


class PrepareSensorFn(beam.DoFn):
    """Sensor depth: read the record's depth file (metres) and take its K; no image decode.

    Failures (reason codes of lifting.sources.depth_io / image_io, plus `intrinsics_missing`
    and `depth_size_mismatch`) mark the item failed at stage `depth`.
    """

    def process(self, item):
        from lifting.sources.depth_io import read_depth
        from lifting.sources.image_io import InputError, image_size

        rec = item["record"]
        try:
            if not rec.get("depth_path"):
                yield failed_item(item, "depth_missing", "record has no depth_path (sensor depth)", "depth")
                return
            if rec.get("K") is None:
                yield failed_item(item, "intrinsics_missing", "record has no K (sensor depth)", "depth")
                return
            depth = read_depth(rec["depth_path"], rec.get("depth_scale") or 1000.0,
                               rec.get("depth_encoding") or "png16")
            w, h = rec.get("width"), rec.get("height")
            if not w or not h:
                w, h = image_size(rec["image_path"])
                rec = {**rec, "width": int(w), "height": int(h)}
        except InputError as e:
            _count(f"failed_{e.reason}")
            yield failed_item(item, e.reason, e.detail, "depth")
            return
        if depth.shape != (h, w):
            yield failed_item(item, "depth_size_mismatch", f"depth {depth.shape} vs image {(h, w)}", "depth")
            return
        yield {**item, "record": rec, "depth": depth.astype(np.float32, copy=False),
               "K": np.asarray(rec["K"], dtype=np.float64), "K_source": "dataset", "depth_source": "sensor"}


class DecodeImageFn(beam.DoFn):
    """Decode the image (H, W, 3) uint8 RGB for a depth model; failures at stage `decode`."""

    def __init__(self, max_pixels: int | None):
        self.max_pixels = max_pixels

    def process(self, item):
        from lifting.sources.image_io import InputError, read_image

        rec = item["record"]
        try:
            img = read_image(rec["image_path"], self.max_pixels)
        except InputError as e:
            _count(f"failed_{e.reason}")
            yield failed_item(item, e.reason, e.detail, "decode")
            return
        h, w = img.shape[:2]
        if (rec.get("width"), rec.get("height")) != (w, h):
            rec = {**rec, "width": int(w), "height": int(h)}
        yield {**item, "record": rec, "image": img}


def depth_png(depth: np.ndarray) -> bytes:
    """(H, W) float32 metres -> 16-bit PNG in millimetres (0 = invalid), deterministic."""
    from PIL import Image

    mm = np.clip(np.round(np.nan_to_num(depth, nan=0.0) * 1000.0), 0, 65535).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(mm).save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


class LiftFn(beam.DoFn):
    """Prepared item -> (unit id, ImageResult) via the lifting core.

    lift_fn: `lifting.lift.lift_image` (the default, resolved on the worker) or any callable
    with its signature. An unexpected exception on one image fails that image with reason
    `lift_exception` (logged with its traceback) instead of failing the whole job.
    """

    def __init__(self, lift_config: dict, lift_fn=None, write_depth: bool = False, progress_dir: str | None = None):
        self.lift_config = dict(lift_config)
        self.lift_fn = lift_fn
        self.write_depth = write_depth
        self.progress_dir = progress_dir

    def setup(self):
        from lifting.lift.config import LiftConfig
        from lifting.lift.core import LiftInputError

        self._input_error = LiftInputError

        if self.lift_fn is None:
            from lifting.lift import lift_image

            self.lift_fn = lift_image
        self._config = LiftConfig.from_dict(self.lift_config)
        self._ticker = ProgressTicker(self.progress_dir)

    def _result(self, item) -> ImageResult:
        from lifting.records import ImageRecord

        rec = item["record"]
        if item.get("error"):
            return ImageResult(rec["key"], "failed", error=item["error"], image_path=rec.get("image_path"))
        try:
            out = self.lift_fn(ImageRecord.from_dict(rec), item["depth"], item["K"], K_source=item["K_source"],
                               depth_source=item["depth_source"], masks=item.get("masks"), config=self._config)
        except self._input_error as e:  # the whole image is unusable: an expected data failure
            return ImageResult(rec["key"], "failed", image_path=rec.get("image_path"),
                               error={"reason": e.reason, "detail": str(getattr(e, "detail", e)), "stage": "lift"})
        except Exception as e:  # one bad image must not kill a days-long job; kept as data
            log.exception("lifting %s failed", rec["key"])
            return ImageResult(rec["key"], "failed", image_path=rec.get("image_path"),
                               error={"reason": "lift_exception", "detail": f"{type(e).__name__}: {e}",
                                      "stage": "lift"})
        status = "lifted" if out.get("status") == "lifted" else "rejected"
        dpng = depth_png(item["depth"]) if self.write_depth and status == "lifted" else None
        return ImageResult(rec["key"], status, record=out, image_path=rec.get("image_path"), depth_png=dpng)

    def process(self, item):
        res = self._result(item)
        _count(f"images_{res.status}")
        if res.error:
            _count(f"failed_{res.error['reason']}")
        self._ticker.tick()
        yield item["unit"], res

    def finish_bundle(self):
        self._ticker.flush()

    def teardown(self):
        self._ticker.flush()


def load_jpg(result: ImageResult, size: tuple[int, int] | None = None) -> tuple[bytes | None, str]:
    """The JPEG bytes to store for an image: the file itself when it is a JPEG as displayed.

    size: (width, height) the record describes. The original bytes are kept (lossless,
    deterministic) when the file is a JPEG whose size matches and whose EXIF orientation is
    upright; otherwise the image is decoded (EXIF applied), resized to `size` when it
    differs, and encoded as JPEG quality 95. Returns (bytes, '') or (None, reason).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = result.image_path
    if not path or not Path(path).is_file():
        return None, "image_missing_at_write"
    data = Path(path).read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            upright = im.getexif().get(0x0112, 1) == 1
            if im.format == "JPEG" and upright and (size is None or tuple(im.size) == tuple(size)):
                return data, ""
            im = ImageOps.exif_transpose(im).convert("RGB")
            if size is not None and tuple(im.size) != tuple(size):
                im = im.resize(tuple(size), Image.Resampling.LANCZOS)
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=95)
            return buf.getvalue(), ""
    except (UnidentifiedImageError, OSError, ValueError) as e:
        log.warning("cannot store %s: %s", path, e)
        return None, "image_unreadable_at_write"


def _load_for(result: ImageResult):
    rec = result.record or {}
    size = (rec["width"], rec["height"]) if rec.get("width") and rec.get("height") else None
    return load_jpg(result, size)


class WriteRepositoryUnitFn(beam.DoFn):
    """(unit id, [ImageResult]) -> the unit's shard and parts (sinks.write_repository_unit)."""

    def __init__(self, root: str):
        self.root = root

    def process(self, kv):
        unit_id, results = kv
        stats = write_repository_unit(Path(self.root), unit_id, list(results), _load_for)
        _count("shards_written")
        yield stats


def _numeric(stats) -> dict:
    """The int/float entries of a stats mapping (nested or textual ones are left out)."""
    return {k: v for k, v in (stats or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class QAUnitFn(beam.DoFn):
    """(unit id, repository shard path) -> the matching QA shard (sinks.write_qa_unit).

    Generates QA for every record of the shard (`lifting.qa.generate_qa`), optionally
    rephrases the unit's samples in one batch (`lifting.llm.Rephraser`), then writes.
    qa_fn / rephraser_factory: injectable for tests; default to the library's.
    """

    def __init__(self, root: str, qa_config: dict, rephrase_config: dict | None,
                 qa_fn=None, rephraser_factory=None, progress_dir: str | None = None):
        self.root = root
        self.qa_config = dict(qa_config)
        self.rephrase_config = rephrase_config
        self.qa_fn = qa_fn
        self.rephraser_factory = rephraser_factory
        self.progress_dir = progress_dir

    def setup(self):
        if self.qa_fn is None:
            from lifting.qa import QAConfig, generate_qa

            cfg = QAConfig.from_dict(self.qa_config) if hasattr(QAConfig, "from_dict") else QAConfig(**self.qa_config)
            self.qa_fn = lambda rec: generate_qa(rec, cfg)
        self._rephraser = None
        if self.rephrase_config is not None:
            if self.rephraser_factory is None:
                from lifting.llm import RephraseConfig, Rephraser

                cfg = (RephraseConfig.from_dict(self.rephrase_config) if hasattr(RephraseConfig, "from_dict")
                       else RephraseConfig(**self.rephrase_config))
                self._rephraser = Rephraser(cfg)
            else:
                self._rephraser = self.rephraser_factory(self.rephrase_config)
        self._ticker = ProgressTicker(self.progress_dir)

    def process(self, kv):
        from lifting.repository import RepositoryError, iter_shard_samples

        unit_id, shard_path = kv
        counts = {"records_in": 0, "records_without_qa": 0, "records_unreadable": 0}
        pairs = []
        try:
            samples = list(iter_shard_samples(shard_path))
        except RepositoryError as e:
            log.error("QA: cannot read %s: %s", shard_path, e)
            _count(f"shards_failed_{e.reason}")
            samples = []
            counts["records_unreadable"] += 1
        for s in samples:
            self._ticker.tick()
            if "json" not in s:
                counts["records_unreadable"] += 1
                continue
            counts["records_in"] += 1
            rec = json.loads(s["json"])
            qa = self.qa_fn(rec)
            if qa is None:
                counts["records_without_qa"] += 1
                continue
            pairs.append((qa, bytes(s.get("jpg", b""))))
        if self._rephraser is not None and pairs:
            before = _numeric(self._rephraser.stats())  # stats() is cumulative per worker
            rephrased = self._rephraser.rephrase_samples([q for q, _ in pairs])
            pairs = [(q, j) for q, (_, j) in zip(rephrased, pairs)]
            after = _numeric(self._rephraser.stats())
            counts.update({f"rephrase_{k}": v - before.get(k, 0) for k, v in after.items()})
        self._ticker.flush()
        yield write_qa_unit(Path(self.root), unit_id, pairs, counts)
