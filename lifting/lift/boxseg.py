"""Segment box-only objects (no mask) from depth, reasoning about all boxes of an image together.

The dominant failure of box-only lifting is keeping an occluder in front of the object or
the background behind it (DESIGN.md, lessons on real RGB-D). So, per image:
1. inside each 2D box, split the valid pixels into depth-continuous 8-connected
   components (depth discontinuities and floor pixels removed);
2. score each component by how well its own pixel extent fills the 2D box (a tight box is
   touched by its object on all sides) and how much of the box's centre it covers; take
   the nearest component among those scoring close to the best (background fills boxes
   too, but lies behind);
3. order the objects by the depth of their choice and redo step 2 from near to far,
   removing pixels already claimed by a nearer object (occlusion order).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from lifting.lift.config import LiftConfig
from lifting.lift.pixels import box_slices

_EIGHT = np.ones((3, 3), dtype=bool)


def _choose(cand: np.ndarray, depth: np.ndarray, cfg: LiftConfig):
    """Pick the object component in a box crop. Returns (mask (h, w) bool, median depth) or None."""
    h, w = cand.shape
    if h == 0 or w == 0 or not cand.any():
        return None
    lab, n = ndimage.label(cand, structure=_EIGHT)
    if n == 0:
        return None
    counts = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    big = counts >= max(10, cfg.boxseg_min_component_frac * h * w)
    if not big.any():
        return None
    sl = ndimage.find_objects(lab)
    fill = np.array([((s[0].stop - s[0].start) / h) * ((s[1].stop - s[1].start) / w) if s else 0.0 for s in sl])
    cy0, cy1, cx0, cx1 = h // 4, max(h // 4 + 1, 3 * h // 4), w // 4, max(w // 4 + 1, 3 * w // 4)
    centre = lab[cy0:cy1, cx0:cx1]
    ccount = np.bincount(centre.ravel(), minlength=n + 1)[1:] / max(centre.size, 1)
    flat = lab.ravel()
    med = np.bincount(flat, weights=depth.ravel().astype(np.float64), minlength=n + 1)[1:] / np.maximum(counts, 1)
    score = np.where(big, fill * (0.5 + ccount), 0.0)
    good = score >= cfg.boxseg_near_score_frac * score.max()
    pick = int(np.argmin(np.where(good, med, np.inf)))
    zm = med[pick]
    # parts of the same object split by an occluder: similar depth, reasonably large
    keep = big & (np.abs(med - zm) <= cfg.component_merge_rel * zm)
    keep[pick] = True
    table = np.concatenate([[False], keep])
    return table[lab], float(zm)


def segment_boxes(boxes_xyxy: np.ndarray, depth: np.ndarray, candidates: np.ndarray,
                  cfg: LiftConfig) -> list[tuple[np.ndarray, int, int] | None]:
    """Masks for box-only objects of one image.

    Args:
        boxes_xyxy: (N, 4) 2D boxes, pixel-edge coordinates.
        depth: (H, W) metres.
        candidates: (H, W) bool, pixels that may belong to an object (valid depth, not on a
            depth discontinuity, not floor).
    Returns:
        N masks as (box crop (h, w) bool, row0, col0) in the image, or None where no object
        component was found.
    """
    n = len(boxes_xyxy)
    slices = [box_slices(b, depth.shape) or (slice(0, 0), slice(0, 0)) for b in boxes_xyxy]
    first = [_choose(candidates[s], depth[s], cfg) for s in slices]
    order = sorted(range(n), key=lambda i: first[i][1] if first[i] is not None else np.inf)
    claimed = np.zeros(depth.shape, dtype=bool)
    out: list[np.ndarray | None] = [None] * n
    for i in order:
        s = slices[i]
        ch = _choose(candidates[s] & ~claimed[s], depth[s], cfg)
        if ch is None:
            continue
        claimed[s] |= ch[0]
        out[i] = (ch[0], s[0].start, s[1].start)
    return out
