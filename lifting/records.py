"""The normalised records every source yields and every stage consumes.

A source (COCO, Objects365, OpenImages, Omni3D-style RGB-D, plain folder) turns its native
files into a stream of `ImageRecord`, each with its `Object2D` list. Records are plain
dataclasses that convert to and from JSON-ready dicts (`to_dict` / `from_dict`), so they
cross Beam stages and land on disk without pickling custom classes.

2D boxes are `bbox_xyxy` in pixel-edge coordinates of the stored image (pixel i spans
[i, i+1], as COCO's [x, y, w, h] does). Masks are kept in their COCO form (`segmentation`:
a polygon list or an RLE dict) and decoded by `lifting.masks` only where needed.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

_KEY_BAD = re.compile(r"[^A-Za-z0-9_-]+")


def make_key(source: str, image_id: Any) -> str:
    """Shard key for an image: `{source}_{image_id}` with anything but [A-Za-z0-9_-] replaced.

    WebDataset splits member names at the first dot, so keys never contain one. When the
    text had to change (dots, slashes, spaces, any non-ASCII letter), the first 10 hex digits
    of the SHA-1 of the exact text are appended: `猫.jpg` and `犬.jpg` (both `-jpg` once
    replaced) get distinct keys, and the same id always gets the same key. Ids that are
    already safe (COCO's integers, OpenImages' hex ids) keep the plain form.
    """
    text = f"{source}_{image_id}"
    key = _KEY_BAD.sub("-", text).strip("-")
    if key == text:
        return key
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{key}-{digest}" if key else digest


@dataclass
class Object2D:
    """One annotated (or detected) object of an image, before lifting."""

    object_id: str  # unique within the run: f"{image key}-{index}"
    category: str  # normalised name for text ("dining table", "sneakers")
    bbox_xyxy: list[float]  # pixel-edge coordinates of the stored image
    category_raw: str | None = None  # the dataset's own name or MID
    category_id: int | str | None = None
    segmentation: Any = None  # COCO polygon list or RLE dict, or None (box only)
    source_ann_id: int | str | None = None
    iscrowd: bool = False
    attributes: dict = field(default_factory=dict)  # e.g. OpenImages IsGroupOf, IsDepiction
    gt_box3d: dict | None = None  # Omni3D-style center_cam, dimensions, R_cam (ground truth)
    score: float | None = None  # detector confidence, None for annotations

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Object2D":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ImageRecord:
    """One image with its 2D objects and whatever camera information the dataset gives."""

    key: str  # shard key, no dots (see make_key)
    source: str  # coco | objects365 | openimages | omni3d | images | synthetic
    image_id: int | str
    image_path: str  # absolute path or URL-like location of the image file
    width: int | None = None  # as stored (None until decoded, for plain folders)
    height: int | None = None
    K: list[list[float]] | None = None  # (3, 3) intrinsics when the dataset gives them
    depth_path: str | None = None  # sensor depth (RGB-D sources)
    depth_scale: float | None = None  # depth PNG units per metre (1000 = millimetres)
    depth_encoding: str = "png16"  # lifting.sources.depth_io.ENCODINGS (png16, sunrgbd, disparity16, points, ...)
    depth_params: dict | None = None  # what an encoding needs beyond the scale (see depth_io.read_record_depth)
    gravity_cam: list[float] | None = None  # dataset-provided "down" in the camera frame
    objects: list[Object2D] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)  # image-level labels usable as detector prompts
    extra: dict = field(default_factory=dict)  # source-specific pass-through (license, url, ...)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["objects"] = [o.to_dict() for o in self.objects]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ImageRecord":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["objects"] = [Object2D.from_dict(o) for o in d.get("objects", [])]
        return cls(**kw)


@dataclass
class ErrorRecord:
    """An input that could not become an image record, or an object dropped while reading.

    `reason` is a stable snake_case code (e.g. `image_missing`, `bbox_out_of_image`);
    `detail` is a human-readable line. `level` says what was lost: the whole image or one
    object of it.
    """

    source: str
    reason: str
    level: str  # "image" | "object"
    image_id: int | str | None = None
    key: str | None = None
    source_ann_id: int | str | None = None
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)
