"""Dataset sources: native annotation files -> one stream of ImageRecord / ErrorRecord.

    from lifting.sources import open_source
    src = open_source("coco", annotations="instances_val2017.json", images="val2017/")
    for rec in src.iter_records():      # ImageRecord or ErrorRecord, streaming
        ...
    src.stats()                         # counts by reason, and the accounting identity

Sources (registry names): `coco`, `objects365`, `omni3d` (COCO-format JSON, see coco.py),
`openimages` (official CSVs), `images` (alias `folder`: a plain folder of images),
`rgbd` (raw colour/depth folders: Redwood, TUM, SUN RGB-D, NYU conventions), `index`
(a Parquet index written by `lifting.sources.index.build_index`), and the real 3D datasets
in their native layouts with GT boxes: `kitti`, `sunrgbd`, `nuscenes` (see real3d.py).

How a source works (the contract every reader implements, see `Source`):
    1. `prepare()` loads the small tables (categories, class descriptions) in memory.
    2. `iter_items()` streams the native files once and yields items
       ("image", image_id, payload) - one input image entry,
       ("ann", image_id, payload)   - one input annotation,
       ("aux", image_id, payload)   - side information (OpenImages image-level labels),
       ("error", level, ErrorRecord) - an entry that cannot even be grouped (no image id).
    3. The engine (`lifting.sources.index`) groups the items by image id - in memory for
       small inputs, through on-disk buckets for large ones - and calls
       `assemble(group)` once per image id, which validates and yields exactly one
       ImageRecord or image-level ErrorRecord per input image and, for every input
       annotation, an Object2D or an object-level ErrorRecord.

Accounting identity (checked by `stats()` after iteration):
    images_in      == images_ok  + image_errors
    annotations_in == objects_ok + object_errors
Nothing is dropped without a record; reason codes are stable snake_case strings.
"""
from __future__ import annotations

import importlib
import logging
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from numbers import Real
from typing import Any, Iterator

from lifting import storage
from lifting.records import ErrorRecord, ImageRecord, make_key

log = logging.getLogger(__name__)

#: registry name -> "module:Class"
REGISTRY: dict[str, str] = {
    "coco": "lifting.sources.coco:CocoSource",
    "objects365": "lifting.sources.objects365:Objects365Source",
    "omni3d": "lifting.sources.omni3d:Omni3DSource",
    "openimages": "lifting.sources.openimages:OpenImagesSource",
    "images": "lifting.sources.folder:FolderSource",
    "folder": "lifting.sources.folder:FolderSource",
    "rgbd": "lifting.sources.omni3d:RGBDFolderSource",
    "index": "lifting.sources.index:IndexSource",
    "kitti": "lifting.sources.kitti:KittiSource",
    "sunrgbd": "lifting.sources.sunrgbd:SunRGBDSource",
    "nuscenes": "lifting.sources.nuscenes:NuScenesSource",
}
#: Readers of real 3D datasets in their native layouts (lifting.sources.real3d): their
#: --images defaults from --annotations, and they take the option `sensor_depth`.
REAL3D_SOURCES = ("kitti", "sunrgbd", "nuscenes")


class SourceConfigError(ValueError):
    """A mistake in how a source was opened (unknown name, missing file, bad option).

    Not a data failure: those become ErrorRecords. The CLI turns this into a UserError.
    """


@dataclass
class Group:
    """Everything the input says about one image id, in input order (seq = stream position)."""

    image_id: Any
    images: list[tuple[int, dict]] = field(default_factory=list)
    anns: list[tuple[int, dict]] = field(default_factory=list)
    aux: list[tuple[int, dict]] = field(default_factory=list)
    dup_ann_seqs: frozenset = frozenset()  # seqs of annotations whose id was seen earlier

    @property
    def first_seq(self) -> int:
        return min(s for part in (self.images, self.anns, self.aux) for s, _ in part[:1])


class Source:
    """Base class of every dataset reader (see the module docstring for the contract).

    Options common to all sources:
        check_files (bool, default False): stat image (and depth) files while reading and
            report `image_missing` / `image_empty` / `image_unreadable`; never decodes.
        bbox_tolerance (float px, default 1.0): boxes sticking out of the image by at
            most this much are clipped; more is `bbox_exceeds_image`.
        in_memory_bytes (int): inputs up to this size are grouped in memory, larger ones
            through on-disk buckets (see lifting.sources.index).
        spill_dir (str): where the buckets go (default: a temporary folder).
    """

    name = "source"
    #: True when images exist only implicitly through their annotations (OpenImages).
    implicit_images = False

    def __init__(self, annotations=None, images=None, *, check_files: bool = False,
                 bbox_tolerance: float = 1.0, in_memory_bytes: int = 32 << 20,
                 bucket_bytes: int = 64 << 20, spill_dir: str | None = None, **options):
        self.annotations = os.fspath(annotations) if annotations is not None else None
        self.images = storage.abspath(images) if images is not None else None
        self.check_files = bool(check_files)
        self.bbox_tolerance = float(bbox_tolerance)
        self.in_memory_bytes = int(in_memory_bytes)
        self.bucket_bytes = int(bucket_bytes)
        self.spill_dir = spill_dir
        self.options = options
        self._stats: dict | None = None
        self._prepared = False

    # -- to implement -------------------------------------------------------------------
    def input_paths(self) -> list[str]:
        """The native files this source reads (for sizes and the index fingerprint)."""
        return [self.annotations] if self.annotations else []

    def prepare(self) -> None:
        """Load small in-memory tables (categories). Called once before `iter_items`."""

    def iter_items(self) -> Iterator[tuple]:
        """Stream (kind, image_id, payload) items; see the module docstring."""
        raise NotImplementedError

    def ann_id(self, payload: dict):
        """The source annotation id of an "ann" payload (for duplicate detection) or None."""
        return None

    def assemble(self, group: Group) -> Iterator[ImageRecord | ErrorRecord]:
        """Records of one image id (exactly one image outcome per input image entry)."""
        raise NotImplementedError

    # -- provided -----------------------------------------------------------------------
    def ensure_prepared(self) -> None:
        if not self._prepared:
            for p in self.input_paths():
                if p and not storage.exists(p):
                    raise SourceConfigError(f"{self.name}: input file not found: {p}")
            self.prepare()
            self._prepared = True

    def input_bytes(self) -> int:
        """Total size in bytes of the native input files."""
        return sum(storage.getsize(p) for p in self.input_paths() if p and storage.isfile(p))

    def key(self, image_id) -> str:
        return make_key(self.name, image_id)

    def error(self, reason: str, level: str, image_id=None, ann_id=None, detail: str = "") -> ErrorRecord:
        """An ErrorRecord of this source (key filled in when the image id is known).

        Text taken from the input (ids, detail) is made UTF-8 safe (`safe_text`), so an
        error record can always be written as JSON whatever the input held.
        """
        key = self.key(image_id) if image_id is not None else None
        return ErrorRecord(source=self.name, reason=reason, level=level, image_id=_jsonable_id(image_id),
                           key=key, source_ann_id=_jsonable_id(ann_id), detail=safe_text(str(detail)[:500]))

    def image_path(self, file_name: str) -> str:
        """Absolute location (path or URL, see lifting.storage) of an image file named
        relative to the images folder."""
        if "://" in file_name:
            return file_name
        if self.images is None or (os.path.isabs(file_name) and not storage.is_url(self.images)):
            return os.path.abspath(file_name)
        return storage.normpath(storage.join(self.images, file_name))

    def path_problem(self, name: Any, prefix: str = "image") -> tuple[str, str] | None:
        """(reason, detail) when a file name taken from the input must not be opened, else None.

        Policy (trust nothing from third-party annotation files):
          `{prefix}_path_invalid`: not a non-empty string, contains NUL, or is not valid
              Unicode (lone surrogates: JSON escapes such as "\\udcff" or non-UTF-8 bytes read
              with surrogateescape) - such a name cannot be written to UTF-8 outputs faithfully.
          `{prefix}_path_outside_root`: with an images folder, the normalised path
              (`normpath(join(images, name))`) is not inside it: `..` escapes
              ("../../etc/passwd") and absolute paths elsewhere ("/etc/passwd"). An
              absolute path that lies inside the folder is accepted. The check is lexical:
              symbolic links inside the folder are the operator's and are followed.
        Names with "://" (remote URLs) are not local paths and are left to the reader.
        """
        if not isinstance(name, str) or not name:
            return f"{prefix}_path_invalid", f"file name {name!r} is not a non-empty string"
        if "\x00" in name:
            return f"{prefix}_path_invalid", f"file name {safe_text(name)!r} contains a NUL character"
        if not is_utf8_text(name):
            return f"{prefix}_path_invalid", f"file name {safe_text(name)!r} is not valid UTF-8"
        if "://" in name or self.images is None:
            return None
        if storage.is_url(self.images):  # '/x' and '..' are judged inside the bucket's key space
            import posixpath

            root = storage.normpath(self.images).split("://", 1)[1]
            path = posixpath.normpath(posixpath.join(root, name))
            inside = posixpath.commonpath([path, root]) == root
        else:
            path = os.path.normpath(os.path.join(self.images, name))
            root = os.path.normpath(self.images)
            inside = os.path.commonpath([path, root]) == root
        if not inside:
            return f"{prefix}_path_outside_root", f"file name {name!r} resolves outside {root}"
        return None

    def file_problem(self, path: str, prefix: str = "image") -> str | None:
        """Reason code when `path` is missing, empty or unreadable (only with check_files)."""
        if not self.check_files or "://" in path:
            return None
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return f"{prefix}_missing"
        except OSError:
            return f"{prefix}_unreadable"
        if not os.path.isfile(path):
            return f"{prefix}_unreadable"
        if st.st_size == 0:
            return f"{prefix}_empty"
        if not os.access(path, os.R_OK):
            return f"{prefix}_unreadable"
        return None

    def iter_records(self) -> Iterator[ImageRecord | ErrorRecord]:
        """Every record of the source, streaming; `stats()` is filled when it is exhausted."""
        from lifting.sources.index import iter_source_records

        self.ensure_prepared()
        counter = StatsCounter()
        yield from iter_source_records(self, counter)
        self._stats = counter.summary()

    def stats(self) -> dict:
        """Counts of the last complete iteration (see `StatsCounter.summary`)."""
        if self._stats is None:
            raise RuntimeError("stats() is available after iter_records() has been exhausted")
        return self._stats


class StatsCounter:
    """Counts inputs and outcomes; `summary()` states the accounting identity."""

    def __init__(self):
        self.images_in = 0
        self.annotations_in = 0
        self.images_ok = 0
        self.objects_ok = 0
        self.reasons: Counter = Counter()
        self.levels: Counter = Counter()

    def count_record(self, rec) -> None:
        if isinstance(rec, ImageRecord):
            self.images_ok += 1
            self.objects_ok += len(rec.objects)
        else:
            self.levels[rec.level] += 1
            self.reasons[f"{rec.level}:{rec.reason}"] += 1

    def merge(self, d: dict) -> None:
        self.images_in += d["images_in"]
        self.annotations_in += d["annotations_in"]
        self.images_ok += d["images_ok"]
        self.objects_ok += d["objects_ok"]
        self.levels["image"] += d["image_errors"]
        self.levels["object"] += d["object_errors"]
        for k, v in d["errors_by_reason"].items():
            self.reasons[k] += v

    def summary(self) -> dict:
        """images/annotations in, ok, errors by level and by "level:reason", identity flag."""
        ie, oe = self.levels["image"], self.levels["object"]
        return {
            "images_in": self.images_in,
            "annotations_in": self.annotations_in,
            "images_ok": self.images_ok,
            "objects_ok": self.objects_ok,
            "image_errors": ie,
            "object_errors": oe,
            "errors_by_reason": dict(sorted(self.reasons.items())),
            "accounting_ok": (self.images_in == self.images_ok + ie
                              and self.annotations_in == self.objects_ok + oe),
        }


def open_source(name: str, annotations=None, images=None, **options) -> Source:
    """A Source by registry name (see REGISTRY); options go to its constructor."""
    target = REGISTRY.get(name)
    if target is None:
        raise SourceConfigError(f"unknown source {name!r}; known: {', '.join(sorted(REGISTRY))}")
    mod_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(mod_name), cls_name)
    return cls(annotations=annotations, images=images, **options)


# -- shared validation helpers ------------------------------------------------------------

def is_utf8_text(s: str) -> bool:
    """True when `s` encodes to UTF-8 (no lone surrogates); ASCII is checked without encoding."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_text(s: str) -> str:
    """`s` unchanged when it is valid Unicode, else with lone surrogates written as \\udcXX escapes.

    JSON input may hold escaped lone surrogates ("\\udcff") and CSVs read with
    surrogateescape hold undecodable bytes as such; neither can be written as UTF-8.
    """
    if is_utf8_text(s):
        return s
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _jsonable_id(v):
    if isinstance(v, str):
        return safe_text(v)
    if v is None or isinstance(v, int) and not isinstance(v, bool):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return str(v)


def is_number(v: Any) -> bool:
    """A real number that is not a bool."""
    t = type(v)  # the common types first: the ABC check costs ~1 us a call, per coordinate
    return t is float or t is int or (isinstance(v, Real) and t is not bool)


def is_float_text(t: str) -> bool:
    """Whether a token of a text file parses as a number (`float(t)` succeeds)."""
    try:
        float(t)
        return True
    except ValueError:
        return False


def positive_int(v: Any) -> int | None:
    """v as a positive int when it is an integral number > 0, else None."""
    if is_number(v) and math.isfinite(v) and float(v).is_integer() and v > 0:
        return int(v)
    return None


def check_bbox_xyxy(x0, y0, x1, y1, width: int | None, height: int | None,
                    tolerance: float) -> tuple[list[float] | None, str | None]:
    """Validate a pixel-edge box against a W x H image; clip overshoot within `tolerance` px.

    Returns (bbox_xyxy, None) or (None, reason) with reason in `bbox_nonfinite`,
    `bbox_non_positive_size`, `bbox_out_of_image`, `bbox_exceeds_image`.
    """
    vals = (x0, y0, x1, y1)
    if not all(math.isfinite(v) for v in vals):
        return None, "bbox_nonfinite"
    if x1 <= x0 or y1 <= y0:
        return None, "bbox_non_positive_size"
    if width is None or height is None:
        return [float(v) for v in vals], None
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        return None, "bbox_out_of_image"
    if x0 < -tolerance or y0 < -tolerance or x1 > width + tolerance or y1 > height + tolerance:
        return None, "bbox_exceeds_image"
    out = [max(0.0, float(x0)), max(0.0, float(y0)), min(float(width), float(x1)), min(float(height), float(y1))]
    if out[2] <= out[0] or out[3] <= out[1]:
        return None, "bbox_out_of_image"
    return out, None


def check_bbox_xywh(b: Any, width: int | None, height: int | None,
                    tolerance: float) -> tuple[list[float] | None, str | None]:
    """COCO [x, y, w, h] (pixel edges) -> validated bbox_xyxy, or (None, reason).

    Reasons: `bbox_malformed` (not 4 numbers) plus those of `check_bbox_xyxy`.
    """
    if not isinstance(b, (list, tuple)) or len(b) != 4 or not all(is_number(v) for v in b):
        return None, "bbox_malformed"
    x, y, w, h = (float(v) for v in b)
    return check_bbox_xyxy(x, y, x + w, y + h, width, height, tolerance)
