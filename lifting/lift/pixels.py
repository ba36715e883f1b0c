"""Pixel-level cleaning of an object's mask on the organised depth map.

Working on the image grid (rather than on an unorganised cloud) is what makes lifting
cheap: depth discontinuities, erosion and connected components are O(pixels of the 2D
box), instead of neighbour searches in 3D.

Convention:
    A crop is an (h, w) view of an (H, W) image with (row0, col0, rstep, cstep): crop pixel
    (i, j) is image pixel (row0 + i * rstep, col0 + j * cstep). Image coordinates follow
    `lifting.camera` (u = column, v = row, the centre of pixel (0, 0) is (0, 0)).

The steps are numba kernels (`_name`), with the public functions normalising their
inputs (contiguous arrays, one dtype each) so that each kernel compiles once. They
reproduce the former numpy / scipy.ndimage code exactly (masks and counts bit for bit,
depth smoothing with scipy's own running-mean arithmetic); tests/test_lift_pixels_kernels.py
keeps that code as the reference.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from lifting.lift.config import LiftConfig

# numba: per-call numpy/scipy overhead, not arithmetic, dominated the small object crops
# (1k-16k pixels); one compiled pass per step is several times faster.


def box_slices(b, shape: tuple[int, int]) -> tuple[slice, slice] | None:
    """(rows, cols) slices of the pixels a 2D box (x0, y0, x1, y1, pixel edges) covers in an
    image of `shape` (H, W), clipped to it; None when nothing of the box is inside."""
    h, w = shape
    x0 = math.floor(min(max(float(b[0]), 0.0), w))  # scalar math: np.clip costs ~10 us a call
    y0 = math.floor(min(max(float(b[1]), 0.0), h))
    x1 = math.ceil(min(max(float(b[2]), 0.0), w))
    y1 = math.ceil(min(max(float(b[3]), 0.0), h))
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


# --------------------------------------------------------------------------- image level


def _float_depth(depth) -> np.ndarray:
    """Contiguous float32/float64 depth (other dtypes become float64), without copying."""
    depth = np.asarray(depth)
    if depth.dtype not in (np.float32, np.float64):
        depth = depth.astype(np.float64)
    return np.ascontiguousarray(depth)


@njit(cache=True, nogil=True)
def _edges_of(z, rel):
    """(H, W) bool: both pixels of every 4-neighbour jump |z_a - z_b| > rel * min(z_a, z_b)
    of a float32 depth z (NaN where not valid, which compares False). Jumps go to padded
    arrays first and each edge pixel is written once, which lets the loops vectorise."""
    H, W = z.shape
    jx = np.zeros((H, W + 1), dtype=np.bool_)  # jx[i, j + 1]: jump between columns j and j + 1
    jy = np.zeros((H + 1, W), dtype=np.bool_)  # jy[i + 1, j]: jump between rows i and i + 1
    for i in range(H):
        for j in range(W - 1):
            a, b = z[i, j], z[i, j + 1]
            jx[i, j + 1] = abs(b - a) > rel * min(a, b)
    for i in range(H - 1):
        for j in range(W):
            a, b = z[i, j], z[i + 1, j]
            jy[i + 1, j] = abs(b - a) > rel * min(a, b)
    edge = np.empty((H, W), dtype=np.bool_)
    for i in range(H):
        for j in range(W):
            edge[i, j] = jx[i, j] | jx[i, j + 1] | jy[i, j] | jy[i + 1, j]
    return edge


@njit(cache=True, nogil=True)
def _valid(depth, lo, hi):
    """(H, W) bool: finite and lo <= z <= hi, compared in depth's dtype (as numpy compares
    with a Python float)."""
    H, W = depth.shape
    valid = np.empty((H, W), dtype=np.bool_)
    for i in range(H):
        for j in range(W):
            d = depth[i, j]
            valid[i, j] = np.isfinite(d) & (d >= lo) & (d <= hi)
    return valid


@njit(cache=True, nogil=True)
def _valid_and_edges(depth, lo, hi, rel):
    """`_valid` and the edges between valid pixels, depth read once."""
    H, W = depth.shape
    valid = np.empty((H, W), dtype=np.bool_)
    z = np.empty((H, W), dtype=np.float32)
    nan = np.float32(np.nan)
    for i in range(H):
        for j in range(W):
            d = depth[i, j]
            v = np.isfinite(d) & (d >= lo) & (d <= hi)
            valid[i, j] = v
            z[i, j] = np.float32(d) if v else nan
    return valid, _edges_of(z, rel)


@njit(cache=True, nogil=True)
def _depth_edges(depth, valid, rel):
    """The edges between the pixels that `valid` marks."""
    H, W = depth.shape
    z = np.empty((H, W), dtype=np.float32)
    nan = np.float32(np.nan)
    for i in range(H):
        for j in range(W):
            z[i, j] = np.float32(depth[i, j]) if valid[i, j] else nan
    return _edges_of(z, rel)


def valid_and_edges(depth: np.ndarray, cfg: LiftConfig) -> tuple[np.ndarray, np.ndarray]:
    """`valid_depth` and `depth_edges(depth, valid, cfg.depth_edge_rel)` in one pass.

    Args:
        depth: (H, W) metric z-depth, metres (float32 in the lifting core); NaN/0 invalid.
    Returns:
        valid: (H, W) bool; edges: (H, W) bool (see the two functions).
    """
    d = _float_depth(depth)
    t = d.dtype.type
    return _valid_and_edges(d, t(cfg.min_depth_m), t(cfg.max_depth_m), np.float32(cfg.depth_edge_rel))


def valid_depth(depth: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """(H, W) bool: finite depth inside [min_depth_m, max_depth_m] (compared in depth's dtype)."""
    d = _float_depth(depth)
    t = d.dtype.type
    return _valid(d, t(cfg.min_depth_m), t(cfg.max_depth_m))


def depth_edges(depth: np.ndarray, valid: np.ndarray, rel: float) -> np.ndarray:
    """(H, W) bool: pixels on a depth discontinuity (both sides of any 4-neighbour jump).

    A jump is |z_a - z_b| > rel * min(z_a, z_b) between two valid neighbours (float32).
    Flying pixels (values between foreground and background) jump to both sides and are marked.
    """
    return _depth_edges(_float_depth(depth), np.ascontiguousarray(valid, dtype=bool), np.float32(rel))


# --------------------------------------------------------------------------- object level


@njit(cache=True, nogil=True)
def _erode_square(mask, r):
    """scipy.ndimage.binary_erosion of an (h, w) bool mask by a (2r+1)^2 square, pixels
    outside counting as background: r erosions by a 3 x 3 square (the same with a zero
    border), each a 3-wide AND along rows then along columns. Returns (eroded, pixel count)."""
    h, w = mask.shape
    cur = mask
    rows = np.zeros((h, w), dtype=np.bool_)
    for _ in range(r):
        for i in range(h):
            for j in range(1, w - 1):
                rows[i, j] = cur[i, j - 1] & cur[i, j] & cur[i, j + 1]
        out = np.zeros((h, w), dtype=np.bool_)
        for i in range(1, h - 1):
            for j in range(w):
                out[i, j] = rows[i - 1, j] & rows[i, j] & rows[i + 1, j]
        cur = out
    n = 0
    for i in range(h):
        for j in range(w):
            n += cur[i, j]
    return cur, n


@njit(cache=True, nogil=True)
def _adaptive_erode(mask, area, erode_frac, erode_max_px, keep_frac):
    """See `adaptive_erode`; `area` is the mask's pixel count. Returns (mask, its pixel count)."""
    if area == 0:
        return mask, 0
    r = min(erode_max_px, int(np.rint(erode_frac * math.sqrt(area))))  # rint: Python's round
    while r > 0:
        er, n = _erode_square(mask, r)
        if n >= keep_frac * area:
            return er, n
        r -= 1
    return mask, area


@njit(cache=True, nogil=True)
def _main_components(mask, depth, merge_rel):
    """See `main_components`. Returns (kept mask, its pixel count).

    8-connected labelling of the row runs of the mask with union-find (a run touches the
    runs of the row above that overlap it widened by one pixel). Components are numbered by
    their first pixel in raster order, as scipy.ndimage.label numbers them, so ties for the
    largest go to the first one like np.argmax; per-component depth sums run in raster order
    in float64 like np.bincount.
    """
    h, w = mask.shape
    cap = h * ((w + 1) // 2) + 1
    r_row = np.empty(cap, dtype=np.int64)
    r_start = np.empty(cap, dtype=np.int64)
    r_end = np.empty(cap, dtype=np.int64)
    parent = np.empty(cap, dtype=np.int64)
    n_runs, prev_lo, prev_hi, n_px = 0, 0, 0, 0
    for i in range(h):
        row_lo = n_runs
        j = 0
        while j < w:
            if not mask[i, j]:
                j += 1
                continue
            start = j
            while j < w and mask[i, j]:
                j += 1
            r = n_runs
            r_row[r], r_start[r], r_end[r], parent[r] = i, start, j, r
            n_runs += 1
            n_px += j - start
            root = r
            # runs of the row above touching [start - 1, j] (8-connected); runs are sorted, so
            # those ending left of it are done with for this row too
            while prev_lo < prev_hi and r_end[prev_lo] < start:
                prev_lo += 1
            for q in range(prev_lo, prev_hi):
                if r_start[q] > j:
                    break
                a = q
                while parent[a] != a:  # find, halving the path (parents stay smaller)
                    parent[a] = parent[parent[a]]
                    a = parent[a]
                if a < root:
                    parent[root] = a
                    root = a
                elif a > root:
                    parent[a] = root
        prev_lo, prev_hi = row_lo, n_runs
    # parent[p] < p for every non-root, so one ascending pass resolves all roots; final
    # labels in order of each component's smallest run = its first pixel
    comp = np.empty(n_runs, dtype=np.int64)
    n = 0
    for p in range(n_runs):
        if parent[p] == p:
            comp[p] = n
            n += 1
        else:
            parent[p] = parent[parent[p]]
            comp[p] = comp[parent[p]]
    if n <= 1:
        return mask, n_px
    counts = np.zeros(n, dtype=np.int64)
    sums = np.zeros(n, dtype=np.float64)
    for p in range(n_runs):
        c = comp[p]
        counts[c] += r_end[p] - r_start[p]
        s = sums[c]
        for jj in range(r_start[p], r_end[p]):
            s += np.float64(depth[r_row[p], jj])
        sums[c] = s
    main = 0
    for c in range(1, n):
        if counts[c] > counts[main]:
            main = c
    zm = sums[main] / counts[main]
    keep = np.zeros(n, dtype=np.bool_)
    for c in range(n):
        keep[c] = abs(sums[c] / counts[c] - zm) <= merge_rel * zm and counts[c] >= 0.05 * counts[main]
    keep[main] = True
    out = np.zeros((h, w), dtype=np.bool_)
    n_px = 0
    for p in range(n_runs):
        if keep[comp[p]]:
            for jj in range(r_start[p], r_end[p]):
                out[r_row[p], jj] = True
            n_px += r_end[p] - r_start[p]
    return out, n_px


@njit(cache=True, nogil=True)
def _kth_smallest(x, k):
    """k-th smallest (0-based) of a 1-D float32 array of values >= 0 (no NaN): radix select
    on the bit patterns, whose unsigned order is the float order for non-negative floats
    (numba's np.partition cost 4x more on the object sizes)."""
    bits = x.view(np.uint32)
    prefix, shift_done = np.uint32(0), 32
    cand = bits
    for width in (11, 11, 10):
        shift = shift_done - width
        hist = np.zeros(1 << width, dtype=np.int64)
        low = np.uint32((1 << width) - 1)
        for v in cand:
            hist[(v >> np.uint32(shift)) & low] += 1
        b = 0
        while k >= hist[b]:
            k -= hist[b]
            b += 1
        prefix = prefix | (np.uint32(b) << np.uint32(shift))
        shift_done = shift
        if shift > 0:
            top = prefix >> np.uint32(shift)
            nxt = np.empty(hist[b], dtype=np.uint32)
            m = 0
            for v in cand:
                if (v >> np.uint32(shift)) == top:
                    nxt[m] = v
                    m += 1
            cand = nxt
    out = np.empty(1, dtype=np.uint32)
    out[0] = prefix
    return out.view(np.float32)[0]


@njit(cache=True, nogil=True)
def _relative_noise(depth, mask):
    """See `relative_noise` (float32 arithmetic and median exactly as numpy's)."""
    h, w = mask.shape
    if w < 3:
        return 0.0
    d2 = np.empty(h * (w - 2), dtype=np.float32)
    two, eps = np.float32(2.0), np.float32(1e-6)
    n = 0
    has_nan = False
    for i in range(h):
        for j in range(w - 2):
            if mask[i, j] and mask[i, j + 1] and mask[i, j + 2]:
                z1 = depth[i, j + 1]
                v = abs((depth[i, j] - two * z1 + depth[i, j + 2]) / max(z1, eps))
                has_nan |= np.isnan(v)
                d2[n] = v
                n += 1
    if n < 20:
        return 0.0
    if has_nan:  # np.median propagates NaN
        return np.nan
    d2 = d2[:n]
    half = n // 2
    med = _kth_smallest(d2, half)
    if n % 2 == 0:  # numpy: float32 mean of the two middle values
        below, lo = 0, np.float32(0.0)
        for v in d2:
            if v < med:
                below += 1
                lo = max(lo, v)
        if below < half:  # the (half - 1)-th value equals the half-th
            lo = med
        med = np.float32(np.float32(lo + med) / np.float32(2.0))
    return np.float64(np.float32(1.4826) * med) / math.sqrt(6.0)


@njit(cache=True, nogil=True)
def _masked_smooth(depth, mask, size):
    """See `masked_smooth` (size > 1). scipy's uniform_filter is separable, axis 0 then 1,
    each a float64 running sum along the line (new - old added at once) over a line padded
    with size//2 zeros before and size - 1 - size//2 after, divided by `size` per pixel and
    stored as float32 (scipy 1.17); repeated here in that order, so the result is the same
    to the bit. Axis 0 runs all columns at once (vectorised), axis 1 row by row."""
    h, w = mask.shape
    s1 = size // 2
    fs = np.float64(size)
    f0, f1 = np.float32(0.0), np.float32(1.0)
    xn = np.zeros((h + size - 1, w), dtype=np.float32)  # masked depth and mask, rows padded
    xd = np.zeros((h + size - 1, w), dtype=np.float32)
    for i in range(h):
        for j in range(w):
            m = mask[i, j]
            xn[s1 + i, j] = depth[i, j] if m else f0
            xd[s1 + i, j] = f1 if m else f0
    pn = np.zeros((h, w + size - 1), dtype=np.float32)  # axis-0 means, columns padded
    pd = np.zeros((h, w + size - 1), dtype=np.float32)
    an = np.zeros(w)
    ad = np.zeros(w)
    for b in range(size):
        for j in range(w):
            an[j] += np.float64(xn[b, j])
            ad[j] += np.float64(xd[b, j])
    for i in range(h):
        if i > 0:
            for j in range(w):
                an[j] += np.float64(xn[i - 1 + size, j]) - np.float64(xn[i - 1, j])
                ad[j] += np.float64(xd[i - 1 + size, j]) - np.float64(xd[i - 1, j])
        for j in range(w):
            pn[i, s1 + j] = np.float32(an[j] / fs)
            pd[i, s1 + j] = np.float32(ad[j] / fs)
    out = np.empty((h, w), dtype=np.float32)
    tn = np.empty(w)
    td = np.empty(w)
    eps = np.float32(1e-6)
    for i in range(h):
        a, c = 0.0, 0.0
        for b in range(size):
            a += np.float64(pn[i, b])
            c += np.float64(pd[i, b])
        tn[0], td[0] = a, c
        for j in range(1, w):
            a += np.float64(pn[i, j - 1 + size]) - np.float64(pn[i, j - 1])
            c += np.float64(pd[i, j - 1 + size]) - np.float64(pd[i, j - 1])
            tn[j], td[j] = a, c
        for j in range(w):
            num = np.float32(tn[j] / fs)
            den = np.float32(td[j] / fs)
            out[i, j] = num / max(den, eps) if den > 0 else depth[i, j]
    return out


@njit(cache=True, nogil=True)
def _object_points(mask, depth, valid, edges, row0, col0, rstep, cstep, K, params):
    """See `object_points`; `params` from `_params`. Returns (has mask pixels, pix,
    valid_frac, measured_frac, xyz)."""
    erode_frac, erode_max_px, keep_frac = params[0], int(params[1]), params[2]
    merge_rel, smooth_px, smooth_min_noise, max_points = params[3], int(params[4]), params[5], int(params[6])
    fx, fy, cx, cy = np.float32(K[0, 0]), np.float32(K[1, 1]), np.float32(K[0, 2]), np.float32(K[1, 2])
    h, w = mask.shape
    good = np.empty((h, w), dtype=np.bool_)
    n_mask, n_valid, n_measured, area = 0, 0, 0, 0
    for i in range(h):
        for j in range(w):
            m, v, z = mask[i, j], valid[i, j], depth[i, j]
            g = m & v & ~edges[i, j]
            good[i, j] = g
            n_mask += m
            n_valid += m & v
            n_measured += m & np.isfinite(z) & (z > 0)
            area += g
    if n_mask == 0:
        return False, good, 0.0, 0.0, np.zeros((0, 3), dtype=np.float64)
    valid_frac = n_valid / n_mask
    measured_frac = n_measured / n_mask
    pix, n = _adaptive_erode(good, area, erode_frac, erode_max_px, keep_frac)
    if n > 0:
        pix, n = _main_components(pix, depth, merge_rel)
    z = depth
    if n > 0 and smooth_px > 1 and _relative_noise(depth, pix) > smooth_min_noise:
        z = _masked_smooth(depth, pix, smooth_px)
    step = 1
    if n > max_points:  # deterministic stride subsample
        step = int(math.ceil(n / max_points))
    xyz = np.empty(((n + step - 1) // step, 3), dtype=np.float64)
    k, m = 0, 0  # k: index of the pixel in raster order; every step-th is taken
    for i in range(h):
        for j in range(w):
            if not pix[i, j]:
                continue
            if k == 0:
                zz = z[i, j]
                u = np.float32(col0 + j * cstep)  # as unproject_points: float32 pixel centres
                v = np.float32(row0 + i * rstep)
                xyz[m, 0] = (u - cx) / fx * zz
                xyz[m, 1] = (v - cy) / fy * zz
                xyz[m, 2] = zz
                m += 1
                k = step
            k -= 1
    return True, pix, valid_frac, measured_frac, xyz


def _crop(a, dtype) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=dtype)


def _params(cfg: LiftConfig) -> np.ndarray:
    """cfg's thresholds for `_object_points` as one float64 array (one argument to type
    instead of seven)."""
    return np.array([cfg.erode_frac, cfg.erode_max_px, cfg.erode_keep_frac, cfg.component_merge_rel,
                     cfg.smooth_px, cfg.smooth_min_noise, cfg.max_points], dtype=np.float64)


def object_points(mask: np.ndarray, depth: np.ndarray, valid: np.ndarray, edges: np.ndarray, row0: int, col0: int,
                  rstep: int, cstep: int, K: np.ndarray,
                  cfg: LiftConfig) -> tuple[np.ndarray | None, float, float, np.ndarray]:
    """Clean an object's mask inside its crop and back-project its pixels.

    Steps: the mask's fractions of in-range / measured depth; mask & valid & ~edges;
    `adaptive_erode`; `main_components`; depth smoothed inside the object (`masked_smooth`)
    when `relative_noise` > cfg.smooth_min_noise and cfg.smooth_px > 1; row-major pixels,
    stride-subsampled to cfg.max_points (step = ceil(n / max_points)); back-projection as
    `lifting.camera.unproject_points` (float32).

    Args:
        mask, valid, edges: (h, w) bool crops (any strides) of the object mask, `valid_depth`
            and `depth_edges`; depth: (h, w) crop of the z-depth, metres (used as float32).
        row0, col0, rstep, cstep: crop pixel (i, j) is image pixel (row0 + i*rstep, col0 + j*cstep).
        K: (3, 3) intrinsics; cfg: thresholds.
    Returns:
        pix: (h, w) bool object pixels, None when the mask has no pixel in the crop;
        valid_frac: fraction of mask pixels with valid depth; measured_frac: with any
        measured depth (finite and > 0), both 0.0 when pix is None;
        xyz: (N, 3) float64 camera-frame points, metres ((0, 3) when there is no pixel).
    """
    has, pix, vf, mf, xyz = _object_points(
        _crop(mask, np.bool_), _crop(depth, np.float32), _crop(valid, np.bool_), _crop(edges, np.bool_),
        int(row0), int(col0), int(rstep), int(cstep), np.ascontiguousarray(K, dtype=np.float64), _params(cfg))
    if not has:
        return None, 0.0, 0.0, xyz
    return pix, vf, mf, xyz


@njit(cache=True, nogil=True)
def _hidden_edges(pix, row0, col0, rstep, cstep, depth, valid, gap, frac, near):
    """See `hidden_edges`; `near` is 0.95 in depth's dtype."""
    h, w = pix.shape
    H, W = depth.shape
    last_row = np.full(w, -1, dtype=np.int64)
    n_rows, n_left, n_right = 0, 0, 0
    for i in range(h):
        first, last = -1, -1
        for j in range(w):
            if pix[i, j]:
                if first < 0:
                    first = j
                last = j
                last_row[j] = i
        if first < 0:
            continue
        n_rows += 1
        r = row0 + i * rstep
        c = col0 + first * cstep
        nb = c - gap
        if nb < 0 or (valid[r, nb] and depth[r, nb] < near * depth[r, c]):
            n_left += 1
        c = col0 + last * cstep
        nb = c + gap
        if nb >= W or (valid[r, nb] and depth[r, nb] < near * depth[r, c]):
            n_right += 1
    n_cols, n_below = 0, 0
    for j in range(w):
        if last_row[j] < 0:
            continue
        n_cols += 1
        r = row0 + last_row[j] * rstep
        c = col0 + j * cstep
        b = r + gap
        if b >= H:
            n_below += 1
        elif valid[b, c] and depth[b, c] < near * depth[r, c]:
            n_below += 1
    if n_rows == 0:
        return False, False, False
    return n_below / n_cols >= frac, n_left / n_rows >= frac, n_right / n_rows >= frac


def hidden_edges(pix: np.ndarray, row0: int, col0: int, rstep: int, cstep: int, depth: np.ndarray,
                 valid: np.ndarray, gap_px: int = 3, frac: float = 0.3) -> tuple[bool, bool, bool]:
    """Whether the object's bottom, left and right image edges are unobserved.

    An edge is unobserved in at least `frac` of its columns (bottom) or rows (sides) where
    the pixel `gap_px` beyond the object's last pixel is outside the image (cut by the
    border) or valid and nearer than 0.95 x the object's depth there (occluded).

    Args:
        pix: (h, w) bool object pixels of a crop; crop pixel (i, j) is image pixel
            (row0 + i*rstep, col0 + j*cstep).
        depth: (H, W) z-depth of the whole image, metres; valid: (H, W) bool.
        gap_px: >= 0 pixels between the object's edge and the pixel looked at.
    Returns:
        (bottom, left, right) bools; all False when pix is empty.
    """
    if gap_px < 0:
        raise ValueError(f"gap_px must be >= 0, got {gap_px}")
    d = _float_depth(depth)
    return _hidden_edges(_crop(pix, np.bool_), int(row0), int(col0), int(rstep), int(cstep), d,
                         _crop(valid, np.bool_), int(gap_px), float(frac), d.dtype.type(0.95))


# --------------------------------------------------------------------------- single steps


def adaptive_erode(mask: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """Erode a (h, w) bool mask by a radius that grows with its size; thin masks survive.

    radius = min(erode_max_px, round(erode_frac * sqrt(area))); reduced while the result
    would keep less than `erode_keep_frac` of the pixels (0 keeps the mask unchanged).
    Erosion by a (2r+1)^2 square, pixels outside the crop counting as background.
    """
    m = _crop(mask, np.bool_)
    return _adaptive_erode(m, int(m.sum()), float(cfg.erode_frac), int(cfg.erode_max_px),
                           float(cfg.erode_keep_frac))[0]


def main_components(mask: np.ndarray, depth: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """Keep the largest 8-connected component of a (h, w) mask plus any other component
    whose mean depth lies within `component_merge_rel` of it (parts of one object split
    by an occluder) and has at least 5 % of its pixels. Returns the kept (h, w) bool mask.

    Args:
        depth: (h, w) z-depth, metres (used as float32), finite on the mask.
    """
    return _main_components(_crop(mask, np.bool_), _crop(depth, np.float32), float(cfg.component_merge_rel))[0]


def masked_smooth(depth: np.ndarray, mask: np.ndarray, size: int) -> np.ndarray:
    """Mean of the depth over each pixel's size x size neighbours inside `mask` (h, w).

    Depth noise is per pixel, so averaging within the object (never across its mask,
    whose depth discontinuities were already removed) shrinks it by up to a factor `size`
    while keeping surfaces in place. Two separable box means (scipy.ndimage.uniform_filter,
    mode "constant", same arithmetic): O(pixels).
    Returns (h, w) float32, meaningful where `mask` is True (`depth` itself when size <= 1).
    """
    if size <= 1:
        return depth
    return _masked_smooth(_crop(depth, np.float32), _crop(mask, np.bool_), int(size))


def relative_noise(depth: np.ndarray, mask: np.ndarray) -> float:
    """Robust relative depth noise of an object, from second differences along rows.

    For three horizontal neighbours inside the mask, z[i-1] - 2 z[i] + z[i+1] is ~0 on any
    surface that is planar across three pixels and has standard deviation sqrt(6) sigma for
    independent per-pixel noise; the MAD of it relative to z estimates sigma / z.
    Needs 20 such triples (else 0.0); depth (h, w) metres, float32 arithmetic.
    """
    return float(_relative_noise(_crop(depth, np.float32), _crop(mask, np.bool_)))
