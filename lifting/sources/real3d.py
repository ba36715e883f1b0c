"""Shared machinery of the readers of real 3D datasets in their native layouts (KITTI,
SUN RGB-D, nuScenes): frames -> ImageRecords with K, a sensor depth source and GT boxes.

A reader subclasses `Real3DSource` and implements `frames()`, which yields one `Frame` per
image (or an `ErrorRecord` for an image that cannot be read at all). The base class turns
frames into the source contract's items, validates every 2D box, K and GT box, and yields
exactly one ImageRecord or image-level ErrorRecord per frame and one Object2D or
object-level ErrorRecord per annotated object (the accounting of `lifting.sources`).

GT boxes are converted by the reader into the project's convention (DESIGN.md): centre in
the OpenCV camera frame of the image (metres), dimensions [w, h, l] with w along the box's
x axis, h along gravity (the box's y axis, pointing down), l along its z axis, and R_cam
(box -> camera, a proper rotation). `gt_box_dict` builds that from a centre, the box's
x axis and the down vector, so each reader only states its dataset's convention once.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from lifting.boxes import yaw_of
from lifting.camera import validate_K
from lifting.records import ErrorRecord, ImageRecord, Object2D
from lifting.sources import Group, Source, SourceConfigError, check_bbox_xyxy
from lifting.sources.categories import normalize_category

#: Object reasons of the real-data readers (besides those of `check_bbox_xyxy`).
#:   gt_box3d_invalid: the native 3D box is not finite or has a non-positive size;
#:   ignored_category: a "don't care" region or a class the dataset marks as not an object.


@dataclass
class GTObject3D:
    """One annotated object of a frame, already in the project's conventions."""

    ann_id: str
    category_raw: str
    bbox_xyxy: list[float] | None  # modal 2D box, pixel edges of the stored image
    gt_box3d: dict | None  # see gt_box_dict; None when the dataset gives no 3D box
    attributes: dict = field(default_factory=dict)  # truncated, occluded, visibility, ...
    segmentation: object = None  # COCO polygon list / RLE when the dataset has masks
    ignore: str | None = None  # a reason code: the object is counted as an error, not lifted


@dataclass
class Frame:
    """One image of a real 3D dataset (paths absolute)."""

    image_id: str
    image_path: str
    width: int
    height: int
    K: list[list[float]]
    depth_path: str | None
    depth_encoding: str = "png16"
    depth_scale: float | None = None
    depth_params: dict | None = None
    gravity_cam: list[float] | None = None
    objects: list[GTObject3D] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def gt_box_dict(center_cam, dims_whl, x_axis_cam, down_cam, gravity_cam=None) -> dict:
    """GT box in the project's convention from its centre and two of its axes.

    Args:
        center_cam: (3,) box centre (the geometric centre, not the bottom), camera frame, metres.
        dims_whl: (w, h, l) metres: w along `x_axis_cam`, h along `down_cam`, l along x cross down.
        x_axis_cam: (3,) the box's x axis in the camera frame (need not be exactly orthogonal
            to `down_cam`: it is orthogonalised).
        down_cam: (3,) the box's "down" axis (gravity for gravity-aligned boxes).
        gravity_cam: the image's gravity for the yaw (default: `down_cam`).
    Returns:
        {"center_cam", "dimensions", "R_cam", "yaw"} with R_cam = [x, y=down, z = x cross y].
    """
    y = np.asarray(down_cam, dtype=np.float64)
    y = y / np.linalg.norm(y)
    x = np.asarray(x_axis_cam, dtype=np.float64)
    x = x - (x @ y) * y
    x = x / np.linalg.norm(x)
    z = np.cross(x, y)
    R = np.stack([x, y, z], axis=1)
    g = y if gravity_cam is None else np.asarray(gravity_cam, dtype=np.float64)
    return {"center_cam": [float(v) for v in center_cam], "dimensions": [float(v) for v in dims_whl],
            "R_cam": R.tolist(), "yaw": float(yaw_of(R, g))}


def _box_ok(b: dict | None) -> bool:
    if b is None:
        return True
    c, d, R = (np.asarray(b[k], dtype=np.float64) for k in ("center_cam", "dimensions", "R_cam"))
    return bool(np.all(np.isfinite(c)) and np.all(np.isfinite(R)) and np.all(np.isfinite(d)) and np.all(d > 0)
                and abs(np.linalg.det(R) - 1.0) < 1e-3)


def category_name(raw: str) -> str:
    """Normalised text name of a dataset class ("traffic_cone" -> "traffic cone", "Car" -> "car")."""
    return normalize_category(str(raw).replace("_", " ").replace(".", " "))


def require_dir(path: str | None, what: str, name: str) -> str:
    if not path or not os.path.isdir(path):
        raise SourceConfigError(f"{name}: {what} folder not found: {path}")
    return path


class Real3DSource(Source):
    """Base of the real-dataset readers: implement `frames()` (see module docstring)."""

    name = "real3d"
    #: depth variants a reader offers (option `sensor_depth`), the first is the default
    depth_kinds: tuple[str, ...] = ()

    def __init__(self, annotations=None, images=None, *, sensor_depth: str | None = None, **kw):
        super().__init__(annotations=annotations, images=images, **kw)
        if sensor_depth is not None and sensor_depth not in self.depth_kinds:
            raise SourceConfigError(f"{self.name}: sensor_depth must be one of {', '.join(self.depth_kinds)}, "
                                    f"got {sensor_depth!r}")
        self.sensor_depth = sensor_depth or (self.depth_kinds[0] if self.depth_kinds else None)

    def input_paths(self) -> list[str]:
        return [self.annotations] if self.annotations and os.path.isfile(self.annotations) else []

    def frames(self) -> Iterator[Frame | ErrorRecord]:
        raise NotImplementedError

    def ann_id(self, payload: dict):
        return payload.get("ann_id")

    def iter_items(self) -> Iterator[tuple]:
        for fr in self.frames():
            if isinstance(fr, ErrorRecord):
                yield "error", fr.level, fr
                continue
            head = {k: v for k, v in fr.__dict__.items() if k != "objects"}
            yield "image", fr.image_id, head
            for o in fr.objects:
                yield "ann", fr.image_id, dict(o.__dict__)

    def assemble(self, group: Group) -> Iterator[ImageRecord | ErrorRecord]:
        gid = group.image_id
        if not group.images:
            for _, a in group.anns:
                yield self.error("unknown_image_id", "object", image_id=gid, ann_id=a.get("ann_id"))
            return
        for _, dup in group.images[1:]:
            yield self.error("duplicate_image_id", "image", image_id=gid, detail=dup.get("image_path", ""))
        fr = group.images[0][1]
        W, H = fr["width"], fr["height"]
        bad_k = validate_K(fr["K"], W, H)
        problem = bad_k or self.file_problem(fr["image_path"], "image")
        if not problem and fr.get("depth_path"):
            problem = self.file_problem(fr["depth_path"], "depth")
        if problem:
            yield self.error(problem, "image", image_id=gid, detail=fr["image_path"])
            for _, a in group.anns:
                yield self.error("parent_image_failed", "object", image_id=gid, ann_id=a.get("ann_id"))
            return
        key = self.key(gid)
        objects = []
        for seq, a in group.anns:
            aid = a.get("ann_id")
            if seq in group.dup_ann_seqs:
                yield self.error("duplicate_ann_id", "object", image_id=gid, ann_id=aid)
                continue
            if a.get("ignore"):
                yield self.error(a["ignore"], "object", image_id=gid, ann_id=aid, detail=a.get("category_raw", ""))
                continue
            b = a.get("bbox_xyxy")
            if b is None:
                yield self.error("bbox_malformed", "object", image_id=gid, ann_id=aid)
                continue
            bbox, reason = check_bbox_xyxy(*(float(v) for v in b), W, H, self.bbox_tolerance)
            if reason:
                yield self.error(reason, "object", image_id=gid, ann_id=aid, detail=str(b))
                continue
            if not _box_ok(a.get("gt_box3d")):
                yield self.error("gt_box3d_invalid", "object", image_id=gid, ann_id=aid)
                continue
            objects.append(Object2D(object_id=f"{key}-{len(objects)}", category=category_name(a["category_raw"]),
                                    bbox_xyxy=bbox, category_raw=a["category_raw"], segmentation=a.get("segmentation"),
                                    source_ann_id=aid, attributes=dict(a.get("attributes") or {}),
                                    gt_box3d=a.get("gt_box3d")))
        yield ImageRecord(key=key, source=self.name, image_id=gid, image_path=fr["image_path"], width=W, height=H,
                          K=[list(map(float, r)) for r in fr["K"]], depth_path=fr.get("depth_path"),
                          depth_scale=fr.get("depth_scale"), depth_encoding=fr.get("depth_encoding") or "png16",
                          depth_params=fr.get("depth_params"), gravity_cam=fr.get("gravity_cam"), objects=objects,
                          extra={"file_name": os.path.basename(fr["image_path"]), **(fr.get("extra") or {})})
