"""Pixel-level cleaning of an object's mask on the organised depth map.

Working on the image grid (rather than on an unorganised cloud) is what makes lifting
cheap: depth discontinuities, erosion and connected components are O(pixels of the 2D
box) with scipy.ndimage, instead of neighbour searches in 3D.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from lifting.lift.config import LiftConfig

_EIGHT = np.ones((3, 3), dtype=bool)


def box_slices(b, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the pixels a 2D box (x0, y0, x1, y1, pixel edges) covers in an
    image of `shape` (H, W), clipped to it; None when nothing of the box is inside."""
    h, w = shape
    x0 = int(np.clip(np.floor(b[0]), 0, w))
    y0 = int(np.clip(np.floor(b[1]), 0, h))
    x1 = int(np.clip(np.ceil(b[2]), 0, w))
    y1 = int(np.clip(np.ceil(b[3]), 0, h))
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


def valid_depth(depth: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """(H, W) bool: finite depth inside [min_depth_m, max_depth_m]."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth >= cfg.min_depth_m) & (depth <= cfg.max_depth_m)


def depth_edges(depth: np.ndarray, valid: np.ndarray, rel: float) -> np.ndarray:
    """(H, W) bool: pixels on a depth discontinuity (both sides of any 4-neighbour jump).

    A jump is |z_a - z_b| > rel * min(z_a, z_b) between two valid neighbours. Flying
    pixels (values between foreground and background) jump to both sides and are marked.
    """
    z = np.where(valid, depth, np.nan).astype(np.float32)
    edge = np.zeros(z.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        jx = np.abs(z[:, 1:] - z[:, :-1]) > rel * np.fmin(z[:, 1:], z[:, :-1])
        jy = np.abs(z[1:, :] - z[:-1, :]) > rel * np.fmin(z[1:, :], z[:-1, :])
    edge[:, 1:] |= jx
    edge[:, :-1] |= jx
    edge[1:, :] |= jy
    edge[:-1, :] |= jy
    return edge


def adaptive_erode(mask: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """Erode a (h, w) bool mask by a radius that grows with its size; thin masks survive.

    radius = min(erode_max_px, round(erode_frac * sqrt(area))); reduced while the result
    would keep less than `erode_keep_frac` of the pixels (0 keeps the mask unchanged).
    """
    area = int(mask.sum())
    if area == 0:
        return mask
    r = min(cfg.erode_max_px, int(round(cfg.erode_frac * math.sqrt(area))))
    while r > 0:
        k = 2 * r + 1
        er = ndimage.binary_erosion(mask, structure=np.ones((k, k), dtype=bool))
        if er.sum() >= cfg.erode_keep_frac * area:
            return er
        r -= 1
    return mask


def main_components(mask: np.ndarray, depth: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """Keep the largest 8-connected component of a (h, w) mask plus any other component
    whose mean depth lies within `component_merge_rel` of it (parts of one object split
    by an occluder). Returns the kept (h, w) bool mask."""
    lab, n = ndimage.label(mask, structure=_EIGHT)
    if n <= 1:
        return mask
    flat = lab.ravel()
    counts = np.bincount(flat, minlength=n + 1)
    counts[0] = 0
    main = int(np.argmax(counts))
    # mean depth per component (O(pixels), unlike per-label medians)
    med = (np.bincount(flat, weights=depth.ravel().astype(np.float64), minlength=n + 1)[1:]
           / np.maximum(counts[1:], 1))
    zm = med[main - 1]
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = (np.abs(med - zm) <= cfg.component_merge_rel * zm) & (counts[1:] >= 0.05 * counts[main])
    keep[main] = True
    return keep[lab]


def masked_smooth(depth: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Mean of the depth over each pixel's size x size neighbours inside `mask` (h, w).

    Depth noise is per pixel, so averaging within the object (never across its mask,
    whose depth discontinuities were already removed) shrinks it by up to a factor `size`
    while keeping surfaces in place. Two box filters (scipy.ndimage.uniform_filter): O(pixels).
    Returns (h, w) float32, meaningful where `mask` is True.
    """
    if size <= 1:
        return depth
    m = mask.astype(np.float32)
    num = ndimage.uniform_filter(np.where(mask, depth, 0).astype(np.float32), size, mode="constant")
    den = ndimage.uniform_filter(m, size, mode="constant")
    return np.where(den > 0, num / np.maximum(den, 1e-6), depth).astype(np.float32)


def relative_noise(depth: np.ndarray, mask: np.ndarray) -> float:
    """Robust relative depth noise of an object, from second differences along rows.

    For three horizontal neighbours inside the mask, z[i-1] - 2 z[i] + z[i+1] is ~0 on any
    surface that is planar across three pixels and has standard deviation sqrt(6) sigma for
    independent per-pixel noise; the MAD of it relative to z estimates sigma / z.
    """
    if mask.shape[1] < 3:
        return 0.0
    ok = mask[:, :-2] & mask[:, 1:-1] & mask[:, 2:]
    if ok.sum() < 20:
        return 0.0
    z = depth.astype(np.float32)
    d2 = (z[:, :-2] - 2 * z[:, 1:-1] + z[:, 2:])[ok] / np.maximum(z[:, 1:-1][ok], 1e-6)
    return float(1.4826 * np.median(np.abs(d2)) / np.sqrt(6.0))
