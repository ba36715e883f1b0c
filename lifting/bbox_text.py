"""The N3D-VLM text form of a 3D box: ``Bbox(class,u,v,z,angle,sx,sy,sz)``.

- (u, v): pixel projection of the 3D centre, normalised by the image width/height to
  [0, 1] in pixel-edge coordinates (the image spans exactly [0, 1]); printed multiplied by
  `uv_scale` (1000 by default) as integers.
- z: depth of the centre in metres; angle: yaw in radians (about gravity);
  sx, sy, sz: the metric extents w, h, l (h along gravity).

`format_bbox` and `parse_bbox` are the only serialiser and parser; for every precision,
``format(parse(text)) == text`` and the parsed numbers equal the rounded originals.
The class name may contain any character except a newline (and the text "Bbox("); it is
stripped of surrounding spaces. Parsing anchors on the seven trailing numbers, so commas
or brackets inside a class name do not confuse it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from lifting.boxes import Box3D, wrap_angle
from lifting.camera import NEAR_PLANE_M, unproject_points


@dataclass(frozen=True)
class BboxPrecision:
    """How numbers are printed. Defaults follow N3D-VLM: uv x1000 integers, 2 decimals."""

    uv_scale: int = 1000
    z_decimals: int = 2
    angle_decimals: int = 2
    size_decimals: int = 2


DEFAULT_PRECISION = BboxPrecision()


@dataclass(frozen=True)
class BboxText:
    """The numbers of one ``Bbox(...)``, as printed (already rounded). u, v in [0, 1]."""

    category: str
    u: float
    v: float
    z: float
    angle: float
    sx: float
    sy: float
    sz: float

    def to_text(self, precision: BboxPrecision = DEFAULT_PRECISION) -> str:
        p = precision
        return "Bbox({},{},{},{},{},{},{},{})".format(
            self.category,
            _fmt_int(self.u * p.uv_scale),
            _fmt_int(self.v * p.uv_scale),
            _fmt(self.z, p.z_decimals),
            _fmt(self.angle, p.angle_decimals),
            _fmt(self.sx, p.size_decimals),
            _fmt(self.sy, p.size_decimals),
            _fmt(self.sz, p.size_decimals),
        )


def _fmt(x: float, d: int) -> str:
    s = f"{x:.{d}f}"
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s  # no "-0.00"


def _fmt_int(x: float) -> str:
    return str(int(round(x)))


def _round(x: float, d: int) -> float:
    return float(_fmt(x, d))


def bbox_from_box(category: str, box: Box3D, K: np.ndarray, image_size: tuple[int, int],
                  precision: BboxPrecision = DEFAULT_PRECISION) -> BboxText:
    """Text-form numbers of a 3D box, rounded to `precision`.

    Args:
        category: class name (no newline).
        box: 3D box in the camera frame.
        K: (3, 3) intrinsics of the image.
        image_size: (W, H) of the image in pixels.
    """
    category = _check_category(category)
    c = box.center_cam
    u, v = _uv(float(c[0]), float(c[1]), float(c[2]), K, image_size)
    p = precision
    return BboxText(
        category=category,
        u=round(u * p.uv_scale) / p.uv_scale,
        v=round(v * p.uv_scale) / p.uv_scale,
        z=_round(box.center_cam[2], p.z_decimals),
        angle=_round(wrap_angle(box.yaw), p.angle_decimals),
        sx=_round(box.dimensions[0], p.size_decimals),
        sy=_round(box.dimensions[1], p.size_decimals),
        sz=_round(box.dimensions[2], p.size_decimals),
    )


def _check_category(category: str) -> str:
    category = category.strip()  # the parser strips it too: keep format(parse(t)) == t
    if "\n" in category or "Bbox(" in category or not category:
        raise ValueError(f"category must be non-empty, one line and not contain 'Bbox(': {category!r}")
    return category


def _uv(x: float, y: float, z: float, K, image_size: tuple[int, int]) -> tuple[float, float]:
    """Normalised pixel-edge (u, v) of a camera-frame point (metres), in scalar float64 with
    the same operations, in the same order, as `lifting.camera.project_points` (so the
    result is bit-identical); ValueError when the point is behind the near plane."""
    w, h = image_size
    if not z >= NEAR_PLANE_M:  # also NaN
        raise ValueError("box centre is behind the camera")
    u = (float(K[0][0]) * x / z + float(K[0][2]) + 0.5) / w
    v = (float(K[1][1]) * y / z + float(K[1][2]) + 0.5) / h
    if not (math.isfinite(u) and math.isfinite(v)):
        raise ValueError("box centre is behind the camera")
    return u, v


def format_bbox_fields(category: str, center_cam, dimensions, yaw: float, K, image_size: tuple[int, int],
                       precision: BboxPrecision = DEFAULT_PRECISION) -> str:
    """``Bbox(...)`` text from plain numbers: the scalar fast path of `format_bbox`.

    Args:
        center_cam: (3,) box centre, camera frame, metres (any sequence of floats).
        dimensions: (3,) w, h, l in metres. yaw: radians about gravity.
        K: (3, 3) intrinsics (array or nested lists). image_size: (W, H) pixels.
    Returns exactly the text `format_bbox` gives for the same box (same float operations;
    a 2-decimal string re-read and re-printed at 2 decimals is itself, so printing the
    unrounded number once equals printing the rounded one).
    """
    category = _check_category(category)
    u, v = _uv(float(center_cam[0]), float(center_cam[1]), float(center_cam[2]), K, image_size)
    p = precision
    s = p.uv_scale
    return "Bbox({},{},{},{},{},{},{},{})".format(
        category,
        _fmt_int(round(u * s) / s * s),
        _fmt_int(round(v * s) / s * s),
        _fmt(float(center_cam[2]), p.z_decimals),
        _fmt(wrap_angle(yaw), p.angle_decimals),
        _fmt(float(dimensions[0]), p.size_decimals),
        _fmt(float(dimensions[1]), p.size_decimals),
        _fmt(float(dimensions[2]), p.size_decimals),
    )


def format_bbox(category: str, box: Box3D, K: np.ndarray, image_size: tuple[int, int],
                precision: BboxPrecision = DEFAULT_PRECISION) -> str:
    """``Bbox(class,u,v,z,angle,sx,sy,sz)`` text of a 3D box (see module docstring)."""
    return format_bbox_fields(category, box.center_cam, box.dimensions, box.yaw, K, image_size, precision)


_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
# the class name may hold commas and brackets, but never a newline or another "Bbox("
_BBOX_RE = re.compile(r"Bbox\((?P<cls>(?:(?!Bbox\()[^\n])*?)," + ",".join([_NUM] * 7) + r"\)")


def parse_bbox(text: str, precision: BboxPrecision = DEFAULT_PRECISION) -> BboxText:
    """Parse exactly one ``Bbox(...)``; raises ValueError when `text` is not one."""
    m = _BBOX_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a Bbox(...) text: {text[:80]!r}")
    return _from_match(m, precision)


def find_bboxes(text: str, precision: BboxPrecision = DEFAULT_PRECISION) -> list[BboxText]:
    """All ``Bbox(...)`` found in a longer text, in order."""
    return [_from_match(m, precision) for m in _BBOX_RE.finditer(text)]


def _from_match(m: re.Match, precision: BboxPrecision) -> BboxText:
    nums = [float(m.group(i)) for i in range(2, 9)]
    if not all(math.isfinite(x) for x in nums):
        raise ValueError("non-finite number in Bbox")
    return BboxText(
        category=m.group("cls").strip(),
        u=nums[0] / precision.uv_scale,
        v=nums[1] / precision.uv_scale,
        z=nums[2],
        angle=nums[3],
        sx=nums[4],
        sy=nums[5],
        sz=nums[6],
    )


def box_from_bbox(b: BboxText, K: np.ndarray, image_size: tuple[int, int], gravity_cam=(0.0, 1.0, 0.0)) -> Box3D:
    """The 3D box described by a parsed ``Bbox`` (inverse of `bbox_from_box`, up to rounding)."""
    w, h = image_size
    uv = np.array([b.u * w - 0.5, b.v * h - 0.5])
    center = unproject_points(uv, np.float32(b.z), K).astype(np.float64)
    return Box3D.from_gravity(center, [b.sx, b.sy, b.sz], b.angle, gravity_cam)
