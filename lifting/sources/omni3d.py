"""Omni3D-style RGB-D / 3D ground truth JSON, and raw colour + depth folders.

`omni3d` (Omni3DSource) reads COCO-format JSON in the Omni3D style (DESIGN.md):
  image: `id`, `file_name` (or Omni3D's `file_path`), `width`, `height`, `K` (3x3,
         pixels), optional `depth_file` (relative to the images folder like file_name),
         `depth_scale` (units per metre, default 1000), `depth_encoding` ("png16" |
         "sunrgbd"), `gravity_cam` / `gravity` (3-vector "down" in the camera frame).
  annotation: `category_id`, a 2D box - COCO `bbox` [x,y,w,h], else Omni3D's
         `bbox2D_tight`, `bbox2D_trunc` or `bbox2D_proj` ([x0,y0,x1,y1], -1 = missing) -
         and optional GT `center_cam` (3, metres), `dimensions` [w, h, l] (metres),
         `R_cam` (3x3 box -> camera), `bbox3D_cam` (8x3). `valid3D: false` keeps the 2D
         object without GT. The GT goes to `Object2D.gt_box3d` with `yaw` about the image's
         gravity (upright default [0, 1, 0]). The same reader serves `lift3d eval`.
  Extra reason codes: bad_intrinsics_shape / _nonfinite / _focal / _principal_point,
  depth_bad_scale, depth_bad_encoding, depth_path_invalid / depth_path_outside_root
  (`Source.path_problem`), depth_missing / depth_empty (check_files) (image);
  gt_box3d_invalid (object).

`rgbd` (RGBDFolderSource) turns a raw RGB-D folder into image records without objects
(for the tagging + open-vocabulary detection path), with sensor depth and intrinsics:
  images=ROOT, annotations=an association file (Redwood `rgbd.match`: "depth/x.png
  color/x.jpg"; TUM `associate.py` output: "t rgb/x.png t depth/y.png") or None to pair
  ROOT/{color,rgb,image}/* with ROOT/depth/* by file stem. Options: `intrinsics` (an Open3D
  PinholeCameraIntrinsic JSON - column-major - or a 3x3 list), `depth_scale` (1000;
  TUM 5000), `depth_encoding` ("png16" | "sunrgbd").
"""
from __future__ import annotations

import json
import math
import os
from typing import Iterator

import numpy as np

from lifting.boxes import DEFAULT_GRAVITY, yaw_of
from lifting.camera import validate_K
from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import (Group, Source, SourceConfigError, check_bbox_xyxy, check_bbox_xywh, is_float_text,
                             is_number)
from lifting.sources.coco import IMAGE_KEYS, CocoSource
from lifting.sources.image_io import IMAGE_EXTENSIONS

DEPTH_ENCODINGS = ("png16", "sunrgbd")
OMNI3D_IMAGE_KEYS = IMAGE_KEYS | {"file_path", "K", "depth_file", "depth_scale", "depth_encoding",
                                  "gravity_cam", "gravity"}
GT_KEYS = ("center_cam", "dimensions", "R_cam", "bbox3D_cam")
OMNI3D_ANN_KEYS = {"id", "image_id", "category_id", "bbox", "segmentation", "iscrowd",
                   "bbox2D_tight", "bbox2D_trunc", "bbox2D_proj", *GT_KEYS,
                   "segmentation_pts", "lidar_pts"}


def _vec(v, n: int) -> np.ndarray | None:
    if not isinstance(v, (list, tuple)) or len(v) != n or not all(is_number(x) for x in v):
        return None
    a = np.asarray(v, dtype=np.float64)
    return a if np.all(np.isfinite(a)) else None


def _mat(v, rows: int, cols: int) -> np.ndarray | None:
    if not isinstance(v, (list, tuple)) or len(v) != rows:
        return None
    out = [_vec(r, cols) for r in v]
    return None if any(r is None for r in out) else np.stack(out)


def gt_box3d_from_ann(ann: dict, gravity_cam=None) -> tuple[dict | None, str | None]:
    """Omni3D GT fields of an annotation -> (gt_box3d dict, None), (None, None) or (None, reason).

    gt_box3d: center_cam (3,) metres camera frame, dimensions [w, h, l] metres, R_cam (3, 3)
    box -> camera, yaw (radians about `gravity_cam`, default [0, 1, 0]), bbox3D_cam (8, 3)
    when given. Returns (None, None) when there is no GT or `valid3D` is false.
    """
    if not any(k in ann for k in ("center_cam", "dimensions", "R_cam")) or ann.get("valid3D") is False:
        return None, None
    c = _vec(ann.get("center_cam"), 3)
    d = _vec(ann.get("dimensions"), 3)
    R = _mat(ann.get("R_cam"), 3, 3)
    if c is None or d is None or R is None:
        return None, "gt_box3d_invalid"
    if np.any(d <= 0):
        return None, "gt_box3d_invalid"
    if not np.allclose(R.T @ R, np.eye(3), atol=1e-2) or np.linalg.det(R) <= 0:
        return None, "gt_box3d_invalid"
    g = DEFAULT_GRAVITY if gravity_cam is None else np.asarray(gravity_cam, dtype=np.float64)
    box = {"center_cam": c.tolist(), "dimensions": d.tolist(), "R_cam": R.tolist(),
           "yaw": float(yaw_of(R, g))}
    if "bbox3D_cam" in ann:
        corners = _mat(ann.get("bbox3D_cam"), 8, 3)
        if corners is None:
            return None, "gt_box3d_invalid"
        box["bbox3D_cam"] = corners.tolist()
    return box, None


def _gravity(img: dict) -> list[float] | None:
    for k in ("gravity_cam", "gravity"):
        g = _vec(img.get(k), 3)
        if g is not None and np.linalg.norm(g) > 1e-9:
            return (g / np.linalg.norm(g)).tolist()
    return None


class Omni3DSource(CocoSource):
    """Omni3D-style JSON (module docstring); options as `CocoSource`."""

    name = "omni3d"
    image_keys = OMNI3D_IMAGE_KEYS
    ann_keys = OMNI3D_ANN_KEYS

    def file_name_of(self, img: dict) -> str | None:
        for k in ("file_name", "file_path"):
            v = img.get(k)
            if isinstance(v, str) and v:
                return v
        return None

    def image_fields(self, img: dict, width: int, height: int) -> tuple[dict, str | None]:
        out: dict = {}
        if img.get("K") is not None:
            reason = validate_K(img["K"], width, height)
            if reason:
                return {"_detail": f"K={img['K']!r}"[:300]}, reason
            out["K"] = np.asarray(img["K"], dtype=np.float64).tolist()
        if img.get("depth_file"):
            if not isinstance(img["depth_file"], str):
                return {"_detail": "depth_file is not a string"}, "image_missing_field"
            bad = self.path_problem(img["depth_file"], "depth")
            if bad:
                return {"_detail": bad[1]}, bad[0]
            scale = img.get("depth_scale", 1000.0)
            if not is_number(scale) or not math.isfinite(scale) or scale <= 0:
                return {"_detail": f"depth_scale={scale!r}"}, "depth_bad_scale"
            enc = img.get("depth_encoding", "png16")
            if enc not in DEPTH_ENCODINGS:
                return {"_detail": f"depth_encoding={enc!r}"}, "depth_bad_encoding"
            path = self.image_path(img["depth_file"])
            problem = self.file_problem(path, "depth")
            if problem:
                return {"_detail": path}, problem
            out.update(depth_path=path, depth_scale=float(scale), depth_encoding=enc)
        g = _gravity(img)
        if g is not None:
            out["gravity_cam"] = g
        return out, None

    def object_bbox(self, ann: dict, width: int, height: int):
        if "bbox" in ann:
            return check_bbox_xywh(ann["bbox"], width, height, self.bbox_tolerance)
        for k in ("bbox2D_tight", "bbox2D_trunc", "bbox2D_proj"):
            b = ann.get(k)
            if isinstance(b, (list, tuple)) and len(b) == 4 and all(is_number(v) for v in b):
                if all(v == -1 for v in b):
                    continue
                return check_bbox_xyxy(*(float(v) for v in b), width, height, self.bbox_tolerance)
        return None, "bbox_malformed"

    def object_fields(self, ann: dict, image: ImageRecord) -> tuple[dict, str | None]:
        box, reason = gt_box3d_from_ann(ann, image.gravity_cam)
        if reason:
            return {"_detail": "center_cam/dimensions/R_cam/bbox3D_cam"}, reason
        return ({"gt_box3d": box} if box is not None else {}), None


# -- raw RGB-D folders ----------------------------------------------------------------------

def read_open3d_intrinsics(path) -> tuple[list[list[float]], int | None, int | None]:
    """(K (3, 3) pixels, width, height) of an Open3D PinholeCameraIntrinsic JSON.

    Open3D stores `intrinsic_matrix` as 9 numbers in column-major order.
    """
    with open(path, encoding="utf-8") as f:
        d = json.load(f)
    m = np.asarray(d["intrinsic_matrix"], dtype=np.float64).reshape(3, 3).T
    return m.tolist(), d.get("width"), d.get("height")


_COLOR_DIRS = ("color", "rgb", "image", "images")


class RGBDFolderSource(Source):
    """Raw colour + depth folder (see module docstring); one ImageRecord per colour frame."""

    name = "rgbd"

    def __init__(self, annotations=None, images=None, *, intrinsics=None, depth_scale: float = 1000.0,
                 depth_encoding: str = "png16", **kw):
        super().__init__(annotations=annotations, images=images, **kw)
        if self.images is None:
            raise SourceConfigError("rgbd: images= (the dataset root folder) is required")
        if depth_encoding not in DEPTH_ENCODINGS:
            raise SourceConfigError(f"rgbd: depth_encoding must be one of {DEPTH_ENCODINGS}")
        if not (is_number(depth_scale) and math.isfinite(depth_scale) and depth_scale > 0):
            raise SourceConfigError(f"rgbd: depth_scale must be positive, got {depth_scale!r}")
        self.depth_scale = float(depth_scale)
        self.depth_encoding = depth_encoding
        self.K = None
        self.size = (None, None)
        if isinstance(intrinsics, (str, os.PathLike)):
            self.K, w, h = read_open3d_intrinsics(intrinsics)
            self.size = (w, h)
        elif intrinsics is not None:
            self.K = np.asarray(intrinsics, dtype=np.float64).reshape(3, 3).tolist()
        if self.K is not None and validate_K(self.K):
            raise SourceConfigError(f"rgbd: unusable intrinsics ({validate_K(self.K)})")

    def _pairs(self) -> Iterator[tuple[str, str]]:
        if self.annotations:
            with open(self.annotations, encoding="utf-8") as f:
                for line in f:
                    if line.lstrip().startswith("#"):
                        continue
                    paths = [t for t in line.split() if not is_float_text(t)]
                    if len(paths) != 2:
                        continue
                    depth = next((p for p in paths if "depth" in p.lower()), paths[1])
                    color = paths[0] if depth is paths[1] else paths[1]
                    yield color, depth
            return
        cdir = next((d for d in _COLOR_DIRS if os.path.isdir(os.path.join(self.images, d))), None)
        if cdir is None or not os.path.isdir(os.path.join(self.images, "depth")):
            raise SourceConfigError(f"rgbd: {self.images} has no color/ (or rgb/) and depth/ folders")
        depth = {os.path.splitext(n)[0]: n for n in os.listdir(os.path.join(self.images, "depth"))}
        for n in sorted(os.listdir(os.path.join(self.images, cdir))):
            if n.lower().endswith(IMAGE_EXTENSIONS):
                stem = os.path.splitext(n)[0]
                yield f"{cdir}/{n}", (f"depth/{depth[stem]}" if stem in depth else "")

    def iter_items(self) -> Iterator[tuple]:
        for color, depth in self._pairs():
            yield "image", color, {"color": color, "depth": depth}

    def assemble(self, group: Group) -> Iterator[ImageRecord | ErrorRecord]:
        for _, dup in group.images[1:]:
            yield self.error("duplicate_image_id", "image", image_id=group.image_id, detail=dup["color"])
        p = group.images[0][1]
        bad = self.path_problem(p["color"], "image") or (self.path_problem(p["depth"], "depth") if p["depth"] else None)
        if bad:
            yield self.error(bad[0], "image", image_id=group.image_id, detail=bad[1])
            return
        path = self.image_path(p["color"])
        problem = self.file_problem(path, "image")
        if not p["depth"]:
            problem = problem or "depth_missing"
        depth = self.image_path(p["depth"]) if p["depth"] else None
        if not problem and depth:
            problem = self.file_problem(depth, "depth")
        if problem:
            yield self.error(problem, "image", image_id=group.image_id, detail=p["depth"] or path)
            return
        yield ImageRecord(key=self.key(group.image_id), source=self.name,
                          image_id=group.image_id, image_path=path, width=self.size[0], height=self.size[1],
                          K=self.K, depth_path=depth, depth_scale=self.depth_scale,
                          depth_encoding=self.depth_encoding)
