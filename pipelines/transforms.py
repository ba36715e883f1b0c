"""Thin Beam DoFns around the `lifting` library: read, prepare, lift, write, QA.

Every per-image element is a plain dict ("item") so that it crosses stages without
pickling custom classes:

    {'unit': int, 'record': ImageRecord dict, 'error': None | {'reason','detail','stage'},
     'depth': (H, W) float32 metres | None, 'K': (3, 3) | None, 'K_source': str,
     'depth_source': str, 'image': (H, W, 3) uint8 RGB | None (only for depth models)}

With a depth model, the items of a unit are first grouped into *depth batches*
(`ReadUnitBatchesFn`): lists of at most `batch_size` items whose images land on the same
network canvas (`canvas_key`), so that every batch runs as one forward pass. Only these
light lists cross the Reshuffle; images are decoded after it, in the same fused stage as
RunInference and the lifting core, so no image or depth array is ever pickled between
stages. Segmentation masks (`--segmenter sam`) are computed per image in that stage too.

A failed item keeps flowing (with `error` set) down to the writer of its unit, so every
input image lands in exactly one of lifted / rejected / failed. Counters are Beam metrics
in namespace `lift3d` (`images_<status>`, `failed_<reason>`). No DoFn holds a lock: models
are shared per worker process by RunInference, everything else is per element.
"""
from __future__ import annotations

import functools
import io
import json
import logging

import apache_beam as beam
import numpy as np
from apache_beam.metrics import Metrics

from lifting import storage
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


def canvas_key(backend: str, options: dict, width: int | None, height: int | None) -> str:
    """Which images can share one forward pass of depth backend `backend` (a string key).

    Depth Anything V2 letterboxes every W x H image onto a canvas that depends on its size
    only (`lifting.models.depth.plan_letterbox` with the backend's input_size, resize mode,
    patch 14 and canvas bucket); Depth Pro resizes every image to one square; other
    backends (MoGe) run image by image, so the image size is the key. Unknown sizes give
    'unknown' (those images are batched together and split by the estimator if needed).
    """
    if not width or not height:
        return "unknown"
    if backend.startswith("depth-anything-v2"):
        from lifting.models.depth import plan_letterbox

        try:
            lb = plan_letterbox(int(height), int(width), int(options.get("input_size") or 518),
                                options.get("resize_mode", "short_side"), 14, options.get("bucket", 56))
        except ValueError:
            return "unknown"
        return f"{lb.canvas_h}x{lb.canvas_w}"
    if backend == "depth-pro":
        return "square"
    return f"{int(height)}x{int(width)}"


#: Budget of a depth model's input: its canvas may hold at most this many times
#: input_size**2 pixels. Depth Anything resizes the *short* side to input_size, so a 600x2
#: image would become a 518x155,400 canvas (minutes of CPU and GBs for one image); such an
#: image fails as `image_aspect_unsupported` before it is decoded or batched.
MAX_CANVAS_AREA = 8


def depth_input_problem(backend: str, options: dict, width: int | None, height: int | None) -> str | None:
    """Why a W x H image cannot go through depth backend `backend` within the input budget
    (`MAX_CANVAS_AREA`), as one line, or None. Unknown sizes are left to decoding."""
    if not width or not height or not backend.startswith("depth-anything-v2"):
        return None  # Depth Pro resizes to one square; MoGe bounds its own token count
    from lifting.models.depth import plan_letterbox

    size = int(options.get("input_size") or 518)
    try:
        lb = plan_letterbox(int(height), int(width), size, options.get("resize_mode", "short_side"), 14,
                            options.get("bucket", 56))
    except ValueError as e:
        return str(e)
    if lb.canvas_h * lb.canvas_w > MAX_CANVAS_AREA * size * size:
        return (f"{width}x{height} image needs a {lb.canvas_w}x{lb.canvas_h} depth-model canvas "
                f"(> {MAX_CANVAS_AREA} x {size}^2 pixels; aspect ratio too extreme)")
    return None


class ReadUnitBatchesFn(beam.DoFn):
    """Unit -> lists of at most `batch_size` items that share a depth-model canvas.

    An image over the depth model's input budget (`depth_input_problem`) comes out alone,
    already failed (`image_aspect_unsupported`), and is never decoded.

    Items are grouped by `canvas_key(backend, options, width, height)` in the unit's key
    order; a record without a stored size gets it from the image header (no decoding).
    Deterministic: the same unit always gives the same batches.
    """

    def __init__(self, backend: str, options: dict, batch_size: int):
        self.backend, self.options, self.batch_size = backend, dict(options), max(1, int(batch_size))

    def process(self, unit):
        from lifting.sources.image_io import InputError, image_size

        groups: dict[str, list[dict]] = {}
        for rec in unit.iter_records():
            w, h = rec.get("width"), rec.get("height")
            if not w or not h:
                try:
                    w, h = image_size(rec["image_path"])
                except InputError:
                    w = h = None  # decoding will fail it with its reason
            item = {"unit": unit.unit_id, "record": rec, "error": None}
            why = depth_input_problem(self.backend, self.options, w, h)
            if why:  # alone in its batch; DecodeBatchFn passes it on as failed
                _count("failed_image_aspect_unsupported")
                yield [failed_item(item, "image_aspect_unsupported", why, "depth")]
                continue
            key = canvas_key(self.backend, self.options, w, h)
            group = groups.setdefault(key, [])
            group.append(item)
            if len(group) == self.batch_size:
                yield group
                groups[key] = []
        for group in groups.values():
            if group:
                yield group


def with_image_size(rec: dict, width: int, height: int) -> dict:
    """Record dict `rec` with `width`/`height` (pixels of the image as displayed) set and its
    normalised boxes made pixel boxes.

    OpenImages records come with width/height None and boxes as fractions of the image
    ([0, 1], flagged `attributes["bbox_normalized"]`); once the size is known they go
    through `lifting.sources.openimages.denormalize_boxes` (pixel edges, flag removed).
    Returns a new dict: `rec` may be shared with the plan (in-memory runner, retried
    bundles) and is never modified.
    """
    w, h = int(width), int(height)
    objs = rec.get("objects") or []
    if not any((o.get("attributes") or {}).get("bbox_normalized") for o in objs):
        return rec if (rec.get("width"), rec.get("height")) == (w, h) else {**rec, "width": w, "height": h}
    from lifting.records import ImageRecord
    from lifting.sources.openimages import denormalize_boxes

    own = {**rec, "objects": [{**o, "attributes": dict(o.get("attributes") or {}),
                               "bbox_xyxy": list(o.get("bbox_xyxy") or [])} for o in objs]}
    r = denormalize_boxes(ImageRecord.from_dict(own), w, h)
    return {**vars(r), "objects": [dict(vars(o)) for o in r.objects]}


def size_mismatch(rec: dict, width: int, height: int) -> str | None:
    """Why the image as displayed (W x H pixels, EXIF orientation applied) does not match the
    size its record states, or None (also when the record states none, as OpenImages').

    Boxes, masks and K are in the frame of the stated size: lifting them on an image of
    another size, or storing the image resized to it, would mislabel every object silently.
    """
    rw, rh = rec.get("width"), rec.get("height")
    if not rw or not rh or (int(rw), int(rh)) == (int(width), int(height)):
        return None
    hint = " (the stated size is the stored pixels before EXIF rotation)" if (rw, rh) == (height, width) else ""
    return f"image is {width}x{height} as displayed, the annotations say {rw}x{rh}{hint}"


def decode_item(item: dict, max_pixels: int | None) -> dict:
    """`item` with 'image' (H, W, 3) uint8 RGB (EXIF applied), the record's size set to it
    (normalised OpenImages boxes converted to pixels, see `with_image_size`), 'K' (3, 3)
    float64 from the record or None and 'focal_35mm' (EXIF, mm) when K is None;
    or the item failed at stage `decode` with the reader's reason code, or with
    `image_size_mismatch` when the record states another size (`size_mismatch`)."""
    from lifting.sources.image_io import InputError, read_exif_focal_35mm, read_image

    rec = item["record"]
    try:
        img = read_image(rec["image_path"], max_pixels)
    except InputError as e:
        _count(f"failed_{e.reason}")
        return failed_item(item, e.reason, e.detail, "decode")
    h, w = img.shape[:2]
    why = size_mismatch(rec, w, h)
    if why:
        _count("failed_image_size_mismatch")
        return failed_item(item, "image_size_mismatch", why, "decode")
    rec = with_image_size(rec, w, h)
    K = np.asarray(rec["K"], dtype=np.float64) if rec.get("K") is not None else None
    f35 = read_exif_focal_35mm(rec["image_path"]) if K is None else None
    return {**item, "record": rec, "image": img, "K": K, "focal_35mm": f35}


class DecodeBatchFn(beam.DoFn):
    """A depth batch (list of items) -> the decoded items as one list (main output) and
    each item that failed to decode on the tagged output 'failed'."""

    FAILED = "failed"

    def __init__(self, max_pixels: int | None):
        self.max_pixels = max_pixels

    def process(self, batch):
        ok = []
        for item in batch:
            out = item if item.get("error") else decode_item(item, self.max_pixels)
            if out.get("error"):
                yield beam.pvalue.TaggedOutput(self.FAILED, out)
            else:
                ok.append(out)
        if ok:
            yield ok


def attach_depth(result, keep_image: bool = False) -> dict:
    """PredictionResult(example=decoded item, inference=DepthPrediction) -> item with
    'depth' (H, W) float16 metres (0 = invalid), 'K' (3, 3), 'K_source', 'depth_source';
    the image is dropped unless `keep_image` (a segmenter still needs it)."""
    item, pred = result.example, result.inference
    out = {k: v for k, v in item.items() if k not in ("image", "focal_35mm") or (keep_image and k == "image")}
    out.update(depth=pred.depth, K=np.asarray(pred.K, dtype=np.float64), K_source=pred.K_source,
               depth_source=pred.depth_source)
    return out


def box_only_objects(record: dict, reject_crowd: bool = True) -> list[dict]:
    """The objects of a record dict that have no mask (and are not crowds): what a segmenter prompts."""
    return [o for o in record.get("objects", []) if o.get("segmentation") is None
            and not (reject_crowd and o.get("iscrowd"))]


def needs_segmenter(item: dict) -> bool:
    """Whether a (not failed) item has box-only objects for the segmenter."""
    return not item.get("error") and bool(box_only_objects(item["record"]))


class SegmenterInputFn(beam.DoFn):
    """Item -> item with 'boxes_xyxy' (N, 4) and 'box_ids' of its box-only objects, decoding
    the image when the depth stage did not (sensor depth); decode failures fail the item."""

    def __init__(self, max_pixels: int | None):
        self.max_pixels = max_pixels

    def process(self, item):
        if item.get("image") is None:
            decoded = decode_item(item, self.max_pixels)
            if decoded.get("error"):
                yield beam.pvalue.TaggedOutput(DecodeBatchFn.FAILED, decoded)
                return
            item = {**item, "image": decoded["image"], "record": decoded["record"]}
        objs = box_only_objects(item["record"])
        yield {**item, "boxes_xyxy": np.asarray([o["bbox_xyxy"] for o in objs], dtype=np.float64).reshape(-1, 4),
               "box_ids": [o["object_id"] for o in objs]}


def attach_masks(result) -> dict:
    """PredictionResult(example=item, inference=(N, H, W) bool masks) -> item with
    'masks' {object_id: (H, W) bool} (for lift_image(masks=...)); image and prompts dropped."""
    item, masks = result.example, result.inference
    out = {k: v for k, v in item.items() if k not in ("image", "boxes_xyxy", "box_ids")}
    out["masks"] = {oid: np.asarray(m, dtype=bool) for oid, m in zip(item["box_ids"], masks)}
    _count("objects_segmented", len(item["box_ids"]))
    return out


#: depth_source of a sensor record by its encoding: the lifting core trusts a stereo
#: matcher's depth less with range than a depth camera's (lifting.lift.core._fuse_depth)
SENSOR_KIND = {"disparity16": "sensor:stereo", "points": "sensor:lidar"}
#: ... or by what the record says of its sensor (extra.depth_sensor, e.g. lift3d synth's)
SENSOR_NAMES = {"stereo": "sensor:stereo", "lidar": "sensor:lidar", "mono": "sensor:mono"}


def sensor_depth_source(rec: dict) -> str:
    """`sensor`, or `sensor:stereo` / `sensor:lidar` / `sensor:mono` where the record's depth
    encoding or its `extra.depth_sensor` says which kind of sensor measured it."""
    kind = SENSOR_KIND.get(rec.get("depth_encoding") or "png16")
    return kind or SENSOR_NAMES.get(str((rec.get("extra") or {}).get("depth_sensor")), "sensor")


class PrepareSensorFn(beam.DoFn):
    """Sensor depth: read the record's depth file (metres) and take its K.

    The colour image is not decoded here (lifting needs only its size); it is decoded once,
    when its shard is written (`load_jpg`), and an image that does not decode fails there
    with the reader's reason. Failures here (reason codes of lifting.sources.depth_io /
    image_io, plus `intrinsics_missing`, `depth_size_mismatch` and `image_size_mismatch`:
    the image header, EXIF orientation applied, against the record's size) mark the item
    failed at stage `depth`.
    """

    def process(self, item):
        from lifting.sources.depth_io import read_record_depth
        from lifting.sources.image_io import InputError, image_size

        rec = item["record"]
        try:
            if not rec.get("depth_path"):
                yield failed_item(item, "depth_missing", "record has no depth_path (sensor depth)", "depth")
                return
            if rec.get("K") is None:
                yield failed_item(item, "intrinsics_missing", "record has no K (sensor depth)", "depth")
                return
            w, h = image_size(rec["image_path"])  # header only, as displayed (EXIF applied)
            why = size_mismatch(rec, w, h)
            if why:
                yield failed_item(item, "image_size_mismatch", why, "depth")
                return
            rec = with_image_size(rec, w, h)
            depth = read_record_depth(rec)  # point files project with K and the size
        except InputError as e:
            _count(f"failed_{e.reason}")
            yield failed_item(item, e.reason, e.detail, "depth")
            return
        if depth.shape != (h, w):
            yield failed_item(item, "depth_size_mismatch", f"depth {depth.shape} vs image {(h, w)}", "depth")
            return
        yield {**item, "record": rec, "depth": depth.astype(np.float32, copy=False),
               "K": np.asarray(rec["K"], dtype=np.float64), "K_source": "dataset",
               "depth_source": sensor_depth_source(rec)}


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
    with its signature. Masks from a segmenter (item 'masks') are passed on;
    ignore_annotation_masks drops the dataset's masks (`--segmenter none`). An unexpected exception on one image fails that image with reason
    `lift_exception` (logged with its traceback) instead of failing the whole job.
    """

    def __init__(self, lift_config: dict, lift_fn=None, write_depth: bool = False, progress_dir: str | None = None,
                 ignore_annotation_masks: bool = False):
        self.lift_config = dict(lift_config)
        self.lift_fn = lift_fn
        self.write_depth = write_depth
        self.progress_dir = progress_dir
        self.ignore_annotation_masks = ignore_annotation_masks

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
        rec = item["record"]
        n_in = len(rec.get("objects") or [])
        res = self._lift(item, rec)
        res.n_objects = n_in  # objects of the input record, whatever became of the image
        res.depth_path = rec.get("depth_path")
        return res

    def _lift(self, item, rec) -> ImageResult:
        from lifting.records import ImageRecord

        if item.get("error"):
            return ImageResult(rec["key"], "failed", error=item["error"], image_path=rec.get("image_path"))
        record = ImageRecord.from_dict(rec)
        if self.ignore_annotation_masks:  # --segmenter none: every object from its box
            for o in record.objects:
                o.segmentation = None
        try:
            out = self.lift_fn(record, item["depth"], item["K"], K_source=item["K_source"],
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
        # the depth the boxes were lifted from: a model's map at the scale its objects' sizes gave
        scale = np.float32(out.get("depth_rescale") or 1.0)
        dpng = depth_png(item["depth"] * scale if scale != 1 else item["depth"]) if self.write_depth and status == "lifted" else None
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


#: Re-encoding of stored images that are not kept byte for byte: fixed settings, no metadata,
#: so the same pixels always give the same bytes.
JPEG_QUALITY = 95
JPEG_SUBSAMPLING = "4:2:0"


def encode_jpg(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB -> baseline JPEG bytes (quality JPEG_QUALITY, 4:2:0, no EXIF/ICC),
    deterministic for the same pixels and Pillow/libjpeg build."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB").save(
        buf, format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING, optimize=False, progressive=False)
    return buf.getvalue()


def _plain_rgb_jpeg(data: bytes) -> bool:
    """True when `data` is a JPEG whose stored pixels are what a viewer shows: 3-channel
    RGB (not CMYK, grey or YCCK) with no EXIF rotation."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format == "JPEG" and im.mode == "RGB" and im.getexif().get(0x0112, 1) == 1
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return False


def load_jpg(result: ImageResult, size: tuple[int, int] | None = None,
             max_pixels: int | None = None) -> tuple[bytes | None, str]:
    """The JPEG bytes to store for an image, and '' (or None and a reason code).

    The file is always decoded first with `lifting.sources.image_io.read_image(path,
    max_pixels)` (EXIF orientation; CMYK, 16-bit, palette and alpha images to RGB; the pixel
    limit checked from the header), so an image that does not decode cleanly is never
    stored: the reader's reason is returned (`image_truncated`, `image_unreadable`,
    `image_too_large`, `image_missing`, ...). The original bytes are kept (lossless,
    deterministic) only for a plain RGB JPEG, upright, of the record's size; anything else is
    re-encoded from the decoded pixels (`encode_jpg`). An image whose displayed size is not
    `size` (W, H) is not stored (`image_size_mismatch`): it is never resized to fit.
    max_pixels: None = the reader's default limit (`image_io.DEFAULT_MAX_PIXELS`).
    """
    from lifting.sources.image_io import DEFAULT_MAX_PIXELS, InputError, read_image

    path = result.image_path
    if not path:
        return None, "image_missing_at_write"
    try:
        rgb = read_image(path, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        h, w = rgb.shape[:2]
        target = (w, h) if size is None else (int(size[0]), int(size[1]))
        if (w, h) != target:  # never stored resized: the record's boxes are in another frame
            log.warning("cannot store %s: %dx%d, the record says %dx%d", path, w, h, *target)
            return None, "image_size_mismatch"
        data = storage.read_bytes(path)
        if _plain_rgb_jpeg(data):
            return data, ""
        return encode_jpg(rgb), ""
    except InputError as e:
        log.warning("cannot store %s: %s", path, e)
        return None, e.reason
    except OSError as e:  # the file went away or became unreadable between the two reads
        log.warning("cannot store %s: %s", path, e)
        return None, "image_unreadable_at_write"


def _load_for(result: ImageResult, max_pixels: int | None = None):
    rec = result.record or {}
    size = (rec["width"], rec["height"]) if rec.get("width") and rec.get("height") else None
    return load_jpg(result, size, max_pixels)


class WriteRepositoryUnitFn(beam.DoFn):
    """(unit id, [ImageResult]) -> the unit's shard and parts (sinks.write_repository_unit);
    max_pixels: the decoding limit of `load_jpg` (--max-pixels)."""

    def __init__(self, root: str, max_pixels: int | None = None):
        self.root = root
        self.max_pixels = max_pixels

    def process(self, kv):
        unit_id, results = kv
        stats = write_repository_unit(self.root, unit_id, list(results),
                                      functools.partial(_load_for, max_pixels=self.max_pixels))
        _count("shards_written")
        yield stats


def _numeric(stats) -> dict:
    """The int/float entries of a stats mapping (nested or textual ones are left out)."""
    return {k: v for k, v in (stats or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class QAUnitFn(beam.DoFn):
    """(unit id, repository shard path) -> the matching QA shard (sinks.write_qa_unit).

    Generates QA for every record of the shard (`lifting.qa.generate_qa`), optionally
    rephrases the unit's samples in one batch (`lifting.llm.Rephraser`), then writes.
    Records of the held-out split (`lifting.qa.benchmark.is_held_out(key, heldout_seed,
    heldout_fraction)`) get no training QA; they are kept in the unit's parts for the
    benchmark built at finalize.
    qa_fn / rephraser_factory: injectable for tests; default to the library's.
    """

    def __init__(self, root: str, qa_config: dict, rephrase_config: dict | None,
                 qa_fn=None, rephraser_factory=None, progress_dir: str | None = None,
                 heldout_fraction: float = 0.0, heldout_seed: int = 0):
        self.root = root
        self.qa_config = dict(qa_config)
        self.rephrase_config = rephrase_config
        self.qa_fn = qa_fn
        self.rephraser_factory = rephraser_factory
        self.progress_dir = progress_dir
        self.heldout_fraction = float(heldout_fraction or 0.0)
        self.heldout_seed = int(heldout_seed)

    def setup(self):
        if self.qa_fn is None:
            from lifting.qa import QAConfig, generate_qa

            qcfg = QAConfig.from_dict(self.qa_config)
            self.qa_fn = lambda rec, _qcfg=qcfg: generate_qa(rec, _qcfg)  # bound now, not at call time
        self._rephraser = None
        if self.rephrase_config is not None:
            if self.rephraser_factory is None:
                from lifting.llm import RephraseConfig, Rephraser

                rcfg = (RephraseConfig.from_dict(self.rephrase_config) if hasattr(RephraseConfig, "from_dict")
                        else RephraseConfig(**self.rephrase_config))
                self._rephraser = Rephraser(rcfg)
            else:
                self._rephraser = self.rephraser_factory(self.rephrase_config)
        self._ticker = ProgressTicker(self.progress_dir)

    def process(self, kv):
        from lifting.repository import RepositoryError, iter_shard_samples

        unit_id, shard_path = kv
        from lifting.qa.benchmark import is_held_out

        counts = {"records_in": 0, "records_without_qa": 0, "records_unreadable": 0, "records_heldout": 0}
        pairs, heldout = [], []
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
            if self.heldout_fraction > 0 and is_held_out(rec["key"], self.heldout_seed, self.heldout_fraction):
                counts["records_heldout"] += 1
                heldout.append(rec)
                continue
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
        yield write_qa_unit(self.root, unit_id, pairs, counts, heldout_records=heldout)
