"""COCO segmentations (polygons, RLE with list or string counts): validate and decode.

Masks stay in their COCO form in `Object2D.segmentation` and are decoded here only where
needed. Decoding uses pycocotools (the reference implementation of COCO's RLE). Its C
decoder does not bounds-check run lengths, so every RLE is validated first (the total of
its runs must equal H * W); compressed string counts are expanded for that check by a
compiled (numba) port of pycocotools' `rleFrString` (pycocotools exposes no call that
returns them; a pure-Python loop cost ~1 ms per COCO mask), with the scalar port kept as
the exact fallback for absurd values. The runs of a string are cached (a lifted object's
mask is validated, then decoded: same string twice).

The lifting core decodes into the mask's tight crop (`decode_segmentation_crop`): polygons
through pycocotools' own rasteriser into RLE, then only the foreground runs are written,
so no (H, W) array is made per object.

Convention: masks are (H, W) bool in pixels of the stored image; row = y, column = x.
Polygons are flat [x0, y0, x1, y1, ...] lists in pixel-edge coordinates (COCO).
"""
from __future__ import annotations

import functools
import math
import warnings
from numbers import Real
from typing import Any

import numba
import numpy as np

#: A polygon needs at least three vertices.
MIN_POLYGON_COORDS = 6
#: pycocotools' rasteriser (`rleFrPoly`) upsamples every polygon 5x and allocates memory for
#: one entry per step along each edge, in C ints, without any check: a vertex at 1e12 px makes
#: it allocate terabytes or write out of bounds (a segfault that ends the whole process). So
#: a polygon reaches it only when (a) every vertex lies within the image extended by its own
#: size on each side (`mask_polygon_out_of_range`) and (b) the steps it will allocate,
#: sum over edges of 5 * max(|dx|, |dy|) + 1, stay within this budget
#: (`mask_polygon_too_complex`; about 24 bytes each: <= ~400 MB). A COCO polygon of a
#: 640x480 image costs at most a few tens of thousands of steps.
MAX_POLYGON_STEPS = 16_000_000


def _rle_string_to_counts_py(s: str | bytes) -> list[int]:
    """Scalar port of pycocotools `rleFrString` (exact Python ints; the fallback path)."""
    if isinstance(s, bytes):
        s = s.decode("ascii")
    counts: list[int] = []
    p = 0
    n = len(s)
    while p < n:
        x = 0
        k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("truncated RLE string")
            c = ord(s[p]) - 48
            if c < 0 or c > 63:
                raise ValueError(f"invalid RLE character {s[p]!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


@numba.njit(cache=True, nogil=True)
def _parse_rle_jit(c):  # numba: a Python loop cost ~1 ms per COCO mask, numpy ~0.1 ms
    """(run lengths (M,) int64, status) of the bytes `c` of a COCO RLE string (uint8):
    status 0 ok, 1 invalid character, 2 truncated, 3 too large for int64 (use the exact
    Python port)."""
    n = len(c)
    out = np.empty(n, dtype=np.int64)
    m = 0
    p = 0
    while p < n:
        x = np.int64(0)
        k = 0
        more = True
        while more:
            if p >= n:
                return out[:m], 2
            v = np.int64(c[p]) - 48
            if v < 0 or v > 63:
                return out[:m], 1
            if k >= 11:  # > 55 bits
                return out[:m], 3
            x |= (v & 0x1F) << (5 * k)
            more = (v & 0x20) != 0
            p += 1
            k += 1
            if not more and (v & 0x10) != 0:
                x |= np.int64(-1) << (5 * k)
        if m > 2:
            if abs(x) >= 2 ** 40 or abs(out[m - 2]) >= 2 ** 61:
                return out[:m], 3
            x += out[m - 2]
        out[m] = x
        m += 1
    return out[:m], 0


def _rle_string_to_runs(s: str | bytes) -> np.ndarray:
    """(M,) int64 run lengths of a COCO compressed RLE string (see `rle_string_to_counts`).

    Each run is 5-bit groups, low first, 0x20 = "more groups follow", 0x10 in the last
    group = negative; runs from the fourth on are stored as the difference to the run two
    before. Values beyond int64 come back as an object array of exact Python ints.
    """
    if isinstance(s, str):
        try:
            s = s.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("invalid RLE character (not ASCII)") from None
    runs, status = _parse_rle_jit(np.frombuffer(s, dtype=np.uint8))
    if status == 1:
        raise ValueError("invalid RLE character")
    if status == 2:
        raise ValueError("truncated RLE string")
    if status == 3:
        return np.asarray(_rle_string_to_counts_py(s), dtype=object)
    return runs


def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Run lengths of a COCO compressed RLE string (port of pycocotools `rleFrString`).

    Raises ValueError on characters outside the encoding's alphabet or a truncated run.
    """
    return [int(v) for v in _rle_string_to_runs(s)]


@functools.lru_cache(maxsize=256)
def _string_runs(counts: str | bytes) -> np.ndarray | None:
    """Run lengths of a string RLE (read-only), or None when it does not parse. Cached: a
    lifted object's mask is validated, then decoded (same string twice)."""
    try:
        runs = _rle_string_to_runs(counts)
    except (ValueError, UnicodeDecodeError):
        return None
    runs.flags.writeable = False
    return runs


def _string_rle_check(counts: str | bytes) -> tuple[bool, int, int, bool]:
    """(parsed, total of the runs, number of runs, any negative run) of a string RLE."""
    runs = _string_runs(counts)
    if runs is None:
        return False, 0, 0, False
    if len(runs) == 0:
        return True, 0, 0, False
    return True, int(runs.sum()), len(runs), bool(runs.min() < 0)


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is float or t is int or (isinstance(v, Real) and t is not bool)


def _validate_rle(seg: dict, height: int, width: int) -> str | None:
    size = seg.get("size")
    counts = seg.get("counts")
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(_is_number(v) and float(v).is_integer() for v in size)):
        return "mask_malformed"
    if int(size[0]) != int(height) or int(size[1]) != int(width):
        return "mask_rle_size_mismatch"
    if isinstance(counts, (str, bytes)):
        parsed, total, n_runs, negative = _string_rle_check(counts)
        if not parsed or negative:
            return "mask_malformed"
        if total != int(height) * int(width):
            return "mask_rle_counts_mismatch"
        return "mask_empty" if n_runs < 2 else None
    if isinstance(counts, (list, tuple)):
        if not all(_is_number(v) and float(v).is_integer() for v in counts):
            return "mask_malformed"
        runs = [int(v) for v in counts]
    else:
        return "mask_malformed"
    if any(r < 0 for r in runs):
        return "mask_malformed"
    if sum(runs) != int(height) * int(width):
        return "mask_rle_counts_mismatch"
    if len(runs) < 2:
        return "mask_empty"
    return None


def _validate_polygons(seg: list, height: int, width: int) -> str | None:
    if len(seg) == 0:
        return "mask_empty"
    # plain Python on the (short) vertex lists: numpy's per-call overhead was most of the
    # reader's time on COCO-size inputs; the exact rasteriser work is computed only when a
    # cheap upper bound (vertices x (5 x extent + 1)) says it might exceed the budget
    bound, far, outside, near = 0.0, False, 0, []
    for poly in seg:
        if not isinstance(poly, (list, tuple)):
            return "mask_malformed"
        if not all(map(_is_number, poly)):
            return "mask_malformed"
        if len(poly) % 2 != 0:
            return "mask_polygon_odd_length"
        if len(poly) < MIN_POLYGON_COORDS:
            return "mask_polygon_too_few_points"
        if not all(map(math.isfinite, poly)):
            return "mask_polygon_nonfinite"
        xs, ys = poly[0::2], poly[1::2]
        lox, hix, loy, hiy = min(xs), max(xs), min(ys), max(ys)
        if hix <= 0 or hiy <= 0 or lox >= width or loy >= height:
            outside += 1  # covers no pixel whatever its coordinates
        if lox < -width or hix > 2.0 * width or loy < -height or hiy > 2.0 * height:
            far = True
            continue
        near.append(poly)
        bound += len(xs) * (5.0 * max(hix - lox, hiy - loy) + 1.0)
    if bound > MAX_POLYGON_STEPS and _polygon_steps(near) > MAX_POLYGON_STEPS:
        return "mask_polygon_too_complex"
    if far:  # may not be rasterised; entirely outside the image it would have covered nothing
        return "mask_empty" if outside == len(seg) else "mask_polygon_out_of_range"
    return None


def _polygon_steps(polys: list) -> float:
    """pycocotools' rasterisation work of polygons: per edge 5 x max(|dx|, |dy|) + 1 steps."""
    steps = 0.0
    for poly in polys:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        d = np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)) * 5.0
        steps += float(np.sum(np.maximum(d[:, 0], d[:, 1]) + 1.0))
    return steps


def _to_rle(seg: Any, height: int, width: int):
    """One pycocotools RLE of a validated segmentation."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        rles = mask_utils.frPyObjects(seg, int(height), int(width))  # validated: >= 6 numbers each
        return mask_utils.merge(rles)
    if isinstance(seg.get("counts"), (list, tuple)):
        return mask_utils.frPyObjects(
            {"size": [int(v) for v in seg["size"]], "counts": [int(v) for v in seg["counts"]]},
            int(height), int(width))
    counts = seg["counts"]
    return {"size": [int(v) for v in seg["size"]],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def validate_segmentation(seg: Any, height: int, width: int, check_area: bool = True) -> str | None:
    """Reason code when a COCO segmentation cannot be used for an H x W image, else None.

    Args:
        seg: polygon list `[[x0, y0, x1, y1, ...], ...]` (pixel-edge coordinates) or RLE
            dict `{"size": [H, W], "counts": list[int] | str}`; None means "no mask" (valid).
        height, width: size of the stored image in pixels.
        check_area: also decode the area with pycocotools and report `mask_empty` when the
            mask covers no pixel of the image (e.g. a polygon entirely outside it).

    Reasons: `mask_malformed`, `mask_empty`, `mask_polygon_too_few_points`,
    `mask_polygon_odd_length`, `mask_polygon_nonfinite`, `mask_polygon_out_of_range` (a
    vertex farther outside the image than its own size), `mask_polygon_too_complex` (over
    `MAX_POLYGON_STEPS` of rasterisation work), `mask_rle_size_mismatch`,
    `mask_rle_counts_mismatch`. Nothing reaches pycocotools' C code before these checks.
    """
    if seg is None:
        return None
    if isinstance(seg, dict):
        reason = _validate_rle(seg, height, width)
    elif isinstance(seg, list):
        reason = _validate_polygons(seg, int(height), int(width))
    else:
        return "mask_malformed"
    if reason is not None or not check_area:
        return reason
    return None if _covers_a_pixel(seg, height, width) else "mask_empty"


def _covers_a_pixel(seg: Any, height: int, width: int) -> bool:
    """Whether a validated segmentation covers a pixel of the H x W image (pycocotools' area).

    Polygons are measured one by one: their union covers a pixel exactly when one of them
    does, and skipping pycocotools' merge of their RLEs takes a fifth off this check, the
    costliest of an annotation's."""
    from pycocotools import mask as mask_utils

    if isinstance(seg, list):
        return bool(mask_utils.area(mask_utils.frPyObjects(seg, int(height), int(width))).max() > 0)
    return int(mask_utils.area(_to_rle(seg, height, width))) > 0


def _require_valid(seg: Any, height: int, width: int) -> None:
    """Raise ValueError(reason) unless `seg` is a mask that may be decoded (validated without
    the area check, so malformed RLE never reaches pycocotools' unchecked C decoder)."""
    reason = validate_segmentation(seg, height, width, check_area=False)
    if reason is not None:
        raise ValueError(reason)
    if seg is None:
        raise ValueError("mask_missing")


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation into an (H, W) bool mask of the stored image.

    Raises ValueError(reason) when `validate_segmentation` (without the area check) rejects
    it, so malformed RLE never reaches pycocotools' unchecked C decoder.
    """
    from pycocotools import mask as mask_utils

    _require_valid(seg, height, width)
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips numpy 2's copy-keyword deprecation; harmless.
        warnings.simplefilter("ignore", DeprecationWarning)
        m = mask_utils.decode(_to_rle(seg, height, width))
    return np.ascontiguousarray(m.astype(bool)).reshape(int(height), int(width))


def crop_to_content(mask: np.ndarray) -> tuple[np.ndarray, int, int] | None:
    """(tight (h, w) crop, row0, col0) of a bool mask's pixels, or None when it has none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    r0, c0 = int(rows[0]), int(cols[0])
    return np.ascontiguousarray(mask[r0:rows[-1] + 1, c0:cols[-1] + 1], dtype=bool), r0, c0


@numba.njit(cache=True, nogil=True)
def _runs_crop_jit(runs, height):  # numba: numpy's full-size passes cost ~0.2 ms per mask
    """(tight crop, row0, col0) of column-major run lengths; an empty crop when no pixel."""
    r0, r1, c0, c1 = height, -1, -1, -1
    pos = np.int64(0)
    for i in range(len(runs)):
        s, e = pos, pos + runs[i]
        pos = e
        if i % 2 == 0 or e <= s:
            continue
        cs, ce = s // height, (e - 1) // height
        if c0 < 0:
            c0 = cs
        c1 = ce
        if cs == ce:
            r0, r1 = min(r0, s % height), max(r1, (e - 1) % height)
        else:
            r0, r1 = 0, height - 1
    if c0 < 0:
        return np.zeros((0, 0), dtype=np.bool_), 0, 0
    out = np.zeros((r1 - r0 + 1, c1 - c0 + 1), dtype=np.bool_)
    pos = 0
    for i in range(len(runs)):
        s, e = pos, pos + runs[i]
        pos = e
        if i % 2 == 1:
            for q in range(s, e):
                out[q % height - r0, q // height - c0] = True
    return out, r0, c0


def _runs_crop(runs: np.ndarray, height: int) -> tuple[np.ndarray, int, int] | None:
    """Tight crop of a column-major RLE (validated run lengths) without the full image:
    O(foreground pixels) instead of O(H x W)."""
    out, r0, c0 = _runs_crop_jit(np.ascontiguousarray(runs, dtype=np.int64), int(height))
    return None if out.size == 0 else (out, int(r0), int(c0))


def decode_segmentation_crop(seg: Any, height: int, width: int) -> tuple[np.ndarray, int, int] | None:
    """Decode a COCO segmentation into its tight crop: ((h, w) bool, row0, col0), or None
    when it covers no pixel of the image. Same pixels as `decode_segmentation`, without an
    (H, W) array (the lifting core needs the object's window only).

    Raises ValueError(reason) like `decode_segmentation`.
    """
    _require_valid(seg, height, width)
    if isinstance(seg, list):  # pycocotools' exact rasterisation into RLE: O(perimeter), no image
        seg = _to_rle(seg, height, width)
    counts = seg["counts"]
    runs = _string_runs(counts) if isinstance(counts, (str, bytes)) else np.asarray(counts, dtype=np.int64)
    if runs is None or runs.dtype == object:  # absurd encodings: exact Python-integer path
        return crop_to_content(decode_segmentation(seg, height, width))
    return _runs_crop(runs, int(height))


def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE dict (string counts, JSON-ready) of an (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def segmentation_area(seg: Any, height: int, width: int) -> int:
    """Number of mask pixels (inside the image) of a valid COCO segmentation (ValueError(reason)
    for one that may not reach pycocotools, see `validate_segmentation`)."""
    from pycocotools import mask as mask_utils

    _require_valid(seg, height, width)
    return int(mask_utils.area(_to_rle(seg, height, width)))
