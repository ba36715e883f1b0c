"""COCO segmentations (polygons, RLE with list or string counts): validate and decode.

Masks stay in their COCO form in `Object2D.segmentation` and are decoded here only where
needed. Decoding uses pycocotools (the reference implementation of COCO's RLE). Its C
decoder does not bounds-check run lengths, so every RLE is validated first (the total of
its runs must equal H * W); compressed string counts are expanded for that check by a
vectorised numpy port of pycocotools' `rleFrString` (pycocotools exposes no call that
returns them; a pure-Python loop cost ~1 ms per COCO mask), with the scalar port kept as
the exact fallback for absurd values. The check of a string is cached (a lifted object's
mask is validated, then decoded: same string twice).

Convention: masks are (H, W) bool in pixels of the stored image; row = y, column = x.
Polygons are flat [x0, y0, x1, y1, ...] lists in pixel-edge coordinates (COCO).
"""
from __future__ import annotations

import functools
import math
import warnings
from numbers import Real
from typing import Any

import numpy as np

#: A polygon needs at least three vertices.
MIN_POLYGON_COORDS = 6


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


def _rle_string_to_runs(s: str | bytes) -> np.ndarray:
    """(M,) int64 run lengths of a COCO compressed RLE string (see `rle_string_to_counts`).

    Each run is 5-bit groups, low first, 0x20 = "more groups follow", 0x10 in the last
    group = negative; runs from the fourth on are stored as the difference to the run two
    before (so even and odd runs are each a cumulative sum of their deltas).
    """
    if isinstance(s, str):
        try:
            s = s.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError("invalid RLE character (not ASCII)") from None
    c = np.frombuffer(s, dtype=np.uint8).astype(np.int64) - 48
    if len(c) == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63:
        raise ValueError("invalid RLE character")
    more = (c & 0x20) != 0
    if more[-1]:
        raise ValueError("truncated RLE string")
    ends = np.flatnonzero(~more)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    glen = ends - starts + 1
    if glen.max() > 11:  # > 55 bits: leave it to exact Python integers
        return np.asarray(_rle_string_to_counts_py(s), dtype=object)
    k = np.arange(len(c)) - np.repeat(starts, glen)
    d = np.add.reduceat((c & 0x1F) << (5 * k), starts)
    neg = (c[ends] & 0x10) != 0
    d = np.where(neg, d - (np.int64(1) << (5 * glen)), d)
    if len(d) > 3:
        if np.abs(d).max() >= 2 ** 40 or len(d) >= 2 ** 22:  # cumulative sums could overflow int64
            return np.asarray(_rle_string_to_counts_py(s), dtype=object)
        d[1::2] = np.cumsum(d[1::2])
        d[2::2] = np.cumsum(d[2::2])
    return d


def rle_string_to_counts(s: str | bytes) -> list[int]:
    """Run lengths of a COCO compressed RLE string (port of pycocotools `rleFrString`).

    Raises ValueError on characters outside the encoding's alphabet or a truncated run.
    """
    return [int(v) for v in _rle_string_to_runs(s)]


@functools.lru_cache(maxsize=256)
def _string_rle_check(counts: str | bytes) -> tuple[bool, int, int, bool]:
    """(parsed, total of the runs, number of runs, any negative run) of a string RLE."""
    try:
        runs = _rle_string_to_runs(counts)
    except (ValueError, UnicodeDecodeError):
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


def _validate_polygons(seg: list) -> str | None:
    if len(seg) == 0:
        return "mask_empty"
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
    return None


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
    `mask_polygon_odd_length`, `mask_polygon_nonfinite`, `mask_rle_size_mismatch`,
    `mask_rle_counts_mismatch`.
    """
    if seg is None:
        return None
    if isinstance(seg, dict):
        reason = _validate_rle(seg, height, width)
    elif isinstance(seg, list):
        reason = _validate_polygons(seg)
    else:
        return "mask_malformed"
    if reason is not None or not check_area:
        return reason
    from pycocotools import mask as mask_utils

    if int(mask_utils.area(_to_rle(seg, height, width))) <= 0:
        return "mask_empty"
    return None


def decode_segmentation(seg: Any, height: int, width: int) -> np.ndarray:
    """Decode a COCO segmentation into an (H, W) bool mask of the stored image.

    Raises ValueError(reason) when `validate_segmentation` (without the area check) rejects
    it, so malformed RLE never reaches pycocotools' unchecked C decoder.
    """
    from pycocotools import mask as mask_utils

    reason = validate_segmentation(seg, height, width, check_area=False)
    if reason is not None:
        raise ValueError(reason)
    if seg is None:
        raise ValueError("mask_missing")
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips numpy 2's copy-keyword deprecation; harmless.
        warnings.simplefilter("ignore", DeprecationWarning)
        m = mask_utils.decode(_to_rle(seg, height, width))
    return np.ascontiguousarray(m.astype(bool)).reshape(int(height), int(width))


def encode_mask(mask: np.ndarray) -> dict:
    """COCO RLE dict (string counts, JSON-ready) of an (H, W) bool mask."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def segmentation_area(seg: Any, height: int, width: int) -> int:
    """Number of mask pixels (inside the image) of a valid COCO segmentation."""
    from pycocotools import mask as mask_utils

    return int(mask_utils.area(_to_rle(seg, height, width)))
