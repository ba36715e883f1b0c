"""The N3D-VLM text form of a 3D box: ``Bbox(class,u,v,z,angle,sx,sy,sz)``.

- (u, v): pixel projection of the 3D centre, normalised by the image width/height to
  [0, 1] in pixel-edge coordinates (the image spans exactly [0, 1]); printed multiplied by
  `uv_scale` with `uv_decimals` places (lift3d's default: x1000 as integers).
- z: depth of the centre in metres; angle: yaw in radians (about gravity);
  sx, sy, sz: the metric extents w, h, l (h along gravity).

Two presets: `DEFAULT_PRECISION` (lift3d's own, ``Bbox(table,590,590,5.43,0.10,...)``) and
`N3D_PRECISION`, the released N3D-VLM's text (``Bbox(person,0.519,0.587,2.7535,0.0,0.3737,
0.3415,0.2675)``: u, v in [0, 1] rounded to 3 places, the rest to 4, printed as Python prints
a rounded float, i.e. without trailing zeros but with at least one decimal). The release
numbers its boxes one per line as ``bbox_0=Bbox(...)``; `bbox_lines` writes that and the
parsers accept the ``bbox_i=`` prefix.

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
    """How numbers are printed. The defaults are lift3d's own form (uv x1000 as integers,
    2 decimals), not the released N3D-VLM's: that is `N3D_PRECISION`.

    uv_scale: u, v are printed multiplied by this. uv_decimals: places of the printed u, v
    (0 = integers). trim_zeros: drop trailing zeros, keeping one decimal ("0.0", "0.37"),
    as Python's str(round(x, d)) prints; applies to every number printed with decimals.
    """

    uv_scale: int = 1000
    z_decimals: int = 2
    angle_decimals: int = 2
    size_decimals: int = 2
    uv_decimals: int = 0
    trim_zeros: bool = False


DEFAULT_PRECISION = BboxPrecision()
#: The released N3D-VLM's box text (see the module docstring).
N3D_PRECISION = BboxPrecision(uv_scale=1, z_decimals=4, angle_decimals=4, size_decimals=4, uv_decimals=3,
                              trim_zeros=True)
#: Named presets (the QA styles of lifting.qa.config use them).
PRESETS = {"lift3d": DEFAULT_PRECISION, "n3d": N3D_PRECISION}


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
        t = p.trim_zeros
        return "Bbox({},{},{},{},{},{},{},{})".format(
            self.category,
            _fmt_uv(self.u, p),
            _fmt_uv(self.v, p),
            _fmt(self.z, p.z_decimals, t),
            _fmt(self.angle, p.angle_decimals, t),
            _fmt(self.sx, p.size_decimals, t),
            _fmt(self.sy, p.size_decimals, t),
            _fmt(self.sz, p.size_decimals, t),
        )


def _fmt(x: float, d: int, trim: bool = False) -> str:
    s = f"{x:.{d}f}"
    if s.startswith("-") and float(s) == 0.0:  # no "-0.00"
        s = s[1:]
    if trim and "." in s:
        s = s.rstrip("0")
        if s.endswith("."):
            s += "0"
    return s


def _fmt_int(x: float) -> str:
    return str(int(round(x)))


def _fmt_uv(u: float, p: BboxPrecision) -> str:
    """A normalised u or v as printed: u * uv_scale with uv_decimals places."""
    if p.uv_decimals <= 0:
        return _fmt_int(u * p.uv_scale)
    return _fmt(u * p.uv_scale, p.uv_decimals, p.trim_zeros)


def _round_uv(u: float, p: BboxPrecision) -> float:
    return round(u * p.uv_scale, max(p.uv_decimals, 0)) / p.uv_scale


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
        u=_round_uv(u, p),
        v=_round_uv(v, p),
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
    t = p.trim_zeros
    return "Bbox({},{},{},{},{},{},{},{})".format(
        category,
        _fmt_uv(_round_uv(u, p), p),
        _fmt_uv(_round_uv(v, p), p),
        _fmt(float(center_cam[2]), p.z_decimals, t),
        _fmt(wrap_angle(yaw), p.angle_decimals, t),
        _fmt(float(dimensions[0]), p.size_decimals, t),
        _fmt(float(dimensions[1]), p.size_decimals, t),
        _fmt(float(dimensions[2]), p.size_decimals, t),
    )


def format_bbox(category: str, box: Box3D, K: np.ndarray, image_size: tuple[int, int],
                precision: BboxPrecision = DEFAULT_PRECISION) -> str:
    """``Bbox(class,u,v,z,angle,sx,sy,sz)`` text of a 3D box (see module docstring)."""
    return format_bbox_fields(category, box.center_cam, box.dimensions, box.yaw, K, image_size, precision)


def bbox_lines(boxes: list[str]) -> str:
    """The released N3D-VLM's answer form: ``bbox_0=Bbox(...)``, one box per line."""
    return "\n".join(f"bbox_{i}={b}" for i, b in enumerate(boxes))


_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
# the class name may hold commas and brackets, but never a newline or another "Bbox("
_BBOX_RE = re.compile(r"Bbox\((?P<cls>(?:(?!Bbox\()[^\n])*?)," + ",".join([_NUM] * 7) + r"\)")
_NUMBERED_RE = re.compile(r"bbox_\d+\s*=\s*")


def parse_bbox(text: str, precision: BboxPrecision | None = None) -> BboxText:
    """Parse exactly one ``Bbox(...)`` (optionally numbered ``bbox_i=Bbox(...)``); raises
    ValueError when `text` is not one.

    precision: how u, v were printed; None reads both presets: u, v written with a decimal
    point are already normalised (N3D_PRECISION), integers are x1000 (DEFAULT_PRECISION).
    """
    text = text.strip()
    numbered = _NUMBERED_RE.match(text)
    if numbered:
        text = text[numbered.end():]
    m = _BBOX_RE.fullmatch(text)
    if m is None:
        raise ValueError(f"not a Bbox(...) text: {text[:80]!r}")
    return _from_match(m, precision)


def find_bboxes(text: str, precision: BboxPrecision | None = None) -> list[BboxText]:
    """All ``Bbox(...)`` found in a longer text, in order (precision: see `parse_bbox`)."""
    return [_from_match(m, precision) for m in _BBOX_RE.finditer(text)]


def _uv_scale_of(token: str, precision: BboxPrecision | None) -> float:
    if precision is not None:
        return precision.uv_scale
    return N3D_PRECISION.uv_scale if "." in token else DEFAULT_PRECISION.uv_scale


def _from_match(m: re.Match, precision: BboxPrecision | None) -> BboxText:
    nums = [float(m.group(i)) for i in range(2, 9)]
    if not all(math.isfinite(x) for x in nums):
        raise ValueError("non-finite number in Bbox")
    return BboxText(
        category=m.group("cls").strip(),
        u=nums[0] / _uv_scale_of(m.group(2), precision),
        v=nums[1] / _uv_scale_of(m.group(3), precision),
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
