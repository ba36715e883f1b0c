"""Fit a gravity-aligned 3D box to an object's cleaned points.

In the gravity frame (y down along gravity, z the camera's horizontal forward):
- height: percentile-trimmed extent along y, the bottom snapped to the floor when close;
- footprint: an oriented rectangle of the (x, z) points of the object's sides, by the
  L-shape closeness criterion (see `footprint_rect`), extents percentile-trimmed;
  a footprint that fits a circle well (cylinders, balls, round tables) gets a box facing
  the camera, like the synthetic ground truth convention;
- completion: depth and sensors see the front surface only, so the extent along the
  viewing direction is grown away from the camera to what the category's size prior
  (scaled by the observed size) expects — never shrinking what was observed.

The footprint geometry (order statistics, orientation sweep, convex hull, circle fit) runs
in numba kernels (`_name`, compiled on first use and cached on disk). The order statistics,
the sweep and the extents repeat the numpy expressions they replaced operation by operation,
summation order included (`kernels.pairwise_sum` is numpy's), and give the same bits; the outline
of the round test starts at the camera-facing chain of the hull rather than at qhull's
arbitrary first vertex, and its circle comes from 3x3 normal equations rather than lstsq
(equal to rounding). The numpy/scipy references are in tests/test_lift_fit_kernels.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from lifting.boxes import Box3D, gravity_frame, wrap_angle
from lifting.lift.config import LiftConfig
from lifting.lift.kernels import median, pairwise_sum, select


@dataclass(frozen=True)
class Fit:
    box: Box3D
    observed_dims: tuple[float, float, float]  # (w, h, l) before completion
    round: bool  # footprint fitted as a circle
    completed: bool  # extent along the view grown from the prior
    visible_fraction: float  # observed footprint area / final footprint area


# Hand-written numba kernels (numba: per-call numpy overhead, not arithmetic, dominated the
# ~200-point footprints: about a hundred small array operations per object).
_JIT = dict(cache=True, nogil=True)

#: The orientation sweep of `footprint_rect`, degrees: coarse angles, then offsets around the best.
_COARSE_DEG = np.arange(0.0, 90.0, 5.0)
_FINE_DEG = np.arange(-4.0, 4.01, 1.0)
_FINER_DEG = np.arange(-0.75, 0.76, 0.25)
_DEG = math.pi / 180.0  # np.radians(x) is x * _DEG


@njit(**_JIT)
def _rank(pct, n):
    """Nearest-rank index of the `pct` percentile among n values (round half to even, as round())."""
    return min(n - 1, max(0, round(pct / 100.0 * (n - 1))))


@njit(**_JIT)
def _order_stats(a, lo_pct, hi_pct):
    """(lo, hi) nearest-rank order statistics of (N,) finite `a`, N >= 1; reorders `a` in place."""
    n = a.size
    i, j = _rank(lo_pct, n), _rank(hi_pct, n)
    k1, k2 = min(i, j), max(i, j)
    select(a, 0, n - 1, k2)
    v2 = a[k2]
    select(a, 0, k2, k1)  # the k1-th smallest lies among the k2 + 1 smallest
    v1 = a[k1]
    return (v1, v2) if i <= j else (v2, v1)


@njit(**_JIT)
def _best_angle(px, pz, base, offsets_deg, d0):
    """Index of the first maximum, over the angles base + radians(offsets_deg), of the L-shape
    closeness of the points (px, pz) (N,): sum of 1 / max(distance to the nearer side of
    their bounding rectangle at that angle, d0)."""
    n = px.size
    pa, pb, terms = np.empty(n), np.empty(n), np.empty(n)
    best, best_k = -np.inf, 0
    for k in range(offsets_deg.size):
        ang = base + offsets_deg[k] * _DEG
        c, s = math.cos(ang), math.sin(ang)
        lo_a, hi_a, lo_b, hi_b = np.inf, -np.inf, np.inf, -np.inf
        for i in range(n):
            pa[i] = c * px[i] + s * pz[i]
            pb[i] = -s * px[i] + c * pz[i]
            lo_a, hi_a = min(lo_a, pa[i]), max(hi_a, pa[i])
            lo_b, hi_b = min(lo_b, pb[i]), max(hi_b, pb[i])
        for i in range(n):
            da = min(abs(pa[i] - lo_a), abs(hi_a - pa[i]))
            db = min(abs(pb[i] - lo_b), abs(hi_b - pb[i]))
            terms[i] = 1.0 / max(min(da, db), d0)
        v = pairwise_sum(terms, 0, n)
        if v > best:
            best, best_k = v, k
    return best_k


@njit(**_JIT)
def _footprint_rect(xz, trim_pct, max_points):
    """Kernel of `footprint_rect`: (theta, center x, center z, extent a, extent b)."""
    n = xz.shape[0]
    stride = max(1, -(-n // max_points))
    px, pz = xz[::stride, 0].copy(), xz[::stride, 1].copy()
    if px.size > 20:  # trim once, radially: drop the trim_pct farthest points from the median
        mx, mz = median(px.copy()), median(pz.copy())
        r = np.empty(px.size)
        for i in range(px.size):
            dx, dz = px[i] - mx, pz[i] - mz
            r[i] = math.sqrt(dx * dx + dz * dz)
        cut = _order_stats(r.copy(), 0.0, 100.0 - trim_pct)[1]
        m = 0
        for i in range(px.size):
            if r[i] <= cut:
                px[m], pz[m] = px[i], pz[i]
                m += 1
        px, pz = px[:m], pz[:m]
    lo_x, hi_x, lo_z, hi_z = px[0], px[0], pz[0], pz[0]
    for i in range(px.size):
        lo_x, hi_x, lo_z, hi_z = min(lo_x, px[i]), max(hi_x, px[i]), min(lo_z, pz[i]), max(hi_z, pz[i])
    d0 = max(0.005, 0.01 * max(hi_x - lo_x, hi_z - lo_z))
    best = _COARSE_DEG[_best_angle(px, pz, 0.0, _COARSE_DEG, d0)] * _DEG
    best = best + _FINE_DEG[_best_angle(px, pz, best, _FINE_DEG, d0)] * _DEG
    th = (best + _FINER_DEG[_best_angle(px, pz, best, _FINER_DEG, d0)] * _DEG) % (math.pi / 2)
    # trimmed extents of all points along the chosen axes a = (c, s), b = (-s, c)
    c, s = math.cos(th), math.sin(th)
    pa, pb = np.empty(n), np.empty(n)
    for i in range(n):
        pa[i] = c * xz[i, 0] + s * xz[i, 1]
        pb[i] = -s * xz[i, 0] + c * xz[i, 1]
    lo_a, hi_a = _order_stats(pa, trim_pct, 100.0 - trim_pct)
    lo_b, hi_b = _order_stats(pb, trim_pct, 100.0 - trim_pct)
    cx = c * (lo_a + hi_a) / 2 + -s * (lo_b + hi_b) / 2
    cz = s * (lo_a + hi_a) / 2 + c * (lo_b + hi_b) / 2
    return th, cx, cz, hi_a - lo_a, hi_b - lo_b


@njit(**_JIT)
def _hull(p):
    """(H,) vertex indices of the convex hull of (N, 2) points, counter-clockwise from the
    lexicographically smallest point (Andrew's monotone chain).

    Like qhull, vertices collinear with their neighbours to rounding (off the line by less
    than about 1e-13 of the largest coordinate) and repeated points are dropped, so a flat
    input gives H < 3 (qhull raises there).
    """
    n = p.shape[0]
    scale = 0.0
    for i in range(n):
        scale = max(scale, abs(p[i, 0]), abs(p[i, 1]))
    eps = 1e-13 * scale
    order = np.arange(n)  # sorted by x, then z: a shell sort (Knuth's gaps)
    gap = 1
    while gap < n // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for t in range(gap, n):
            i, u = order[t], t
            while u >= gap and (p[order[u - gap], 0] > p[i, 0]
                                or (p[order[u - gap], 0] == p[i, 0] and p[order[u - gap], 1] > p[i, 1])):
                order[u] = order[u - gap]
                u -= gap
            order[u] = i
        gap //= 3
    h = np.empty(2 * n + 1, np.int64)
    k, n_lower = 0, 0
    for t in range(2 * n - 1):  # the lower chain left to right, then the upper chain back
        i = order[t] if t < n else order[2 * n - 2 - t]
        floor = 2 if t < n else n_lower + 1
        while k >= floor:
            a, b = h[k - 2], h[k - 1]
            abx, abz, aix, aiz = p[b, 0] - p[a, 0], p[b, 1] - p[a, 1], p[i, 0] - p[a, 0], p[i, 1] - p[a, 1]
            if abx * aiz - abz * aix > eps * (abs(abx) + abs(abz) + abs(aix) + abs(aiz)):
                break  # a left turn
            k -= 1
        h[k] = i
        k += 1
        if t == n - 1:
            n_lower = k
    return h[: max(0, k - 1)]


@njit(**_JIT)
def _front_outline(xz, n_samples, max_points):
    """(n_samples, 2) points sampled uniformly along the camera-facing part of the convex hull
    of (N, 2) footprint points, or (0, 2) when the hull is flat or faces away.

    The samples start at the first vertex of that camera-facing chain, so they do not depend
    on where the hull's vertex cycle starts (scipy's qhull starts at an arbitrary vertex).
    """
    p = xz[:: max(1, -(-xz.shape[0] // max_points))]
    hv = _hull(p)
    m = hv.size
    if m < 3:
        return np.empty((0, 2))
    front = np.empty(m, np.bool_)
    n_front = 0
    for k in range(m):
        a, b = hv[k], hv[(k + 1) % m]
        ex, ez = p[b, 0] - p[a, 0], p[b, 1] - p[a, 1]
        # the outward normal (ez, -ex) of a ccw edge points at the camera (the origin)
        front[k] = ez * (p[a, 0] + ex / 2) - ex * (p[a, 1] + ez / 2) < 0
        n_front += front[k]
    if n_front < 2:
        return np.empty((0, 2))
    s0 = 0
    for k in range(m):
        if front[k] and not front[k - 1]:
            s0 = k
            break
    v, e, length = np.empty((m, 2)), np.empty((m, 2)), np.empty(m)
    for k in range(m):
        a, b = hv[(s0 + k) % m], hv[(s0 + k + 1) % m]
        v[k, 0], v[k, 1] = p[a, 0], p[a, 1]
        e[k, 0], e[k, 1] = p[b, 0] - p[a, 0], p[b, 1] - p[a, 1]
        length[k] = math.sqrt(e[k, 0] * e[k, 0] + e[k, 1] * e[k, 1]) * (1.0 if front[(s0 + k) % m] else 0.0)
    cum = np.empty(m + 1)
    cum[0] = 0.0
    for k in range(m):
        cum[k + 1] = cum[k] + length[k]
    step = pairwise_sum(length, 0, m) / n_samples
    out = np.empty((n_samples, 2))
    k = 0
    for i in range(n_samples):
        s = i * step
        while k < m and cum[k + 1] <= s:  # the last edge starting at or before s
            k += 1
        kk = min(k, m - 1)
        t = (s - cum[kk]) / (length[kk] if length[kk] > 0 else 1.0)
        out[i, 0] = v[kk, 0] + t * e[kk, 0]
        out[i, 1] = v[kk, 1] + t * e[kk, 1]
    return out


@njit(**_JIT)
def _solve3(M, rhs):
    """(ok, x (3,)) of the symmetric positive semi-definite 3x3 system M x = rhs (M is
    overwritten) by Gaussian elimination with partial pivoting; not ok when a pivot is below
    1e-12 of the trace."""
    tiny = 1e-12 * (M[0, 0] + M[1, 1] + M[2, 2])
    x = rhs.copy()
    for c in range(3):
        piv = c
        for r in range(c + 1, 3):
            if abs(M[r, c]) > abs(M[piv, c]):
                piv = r
        if not abs(M[piv, c]) > tiny:
            return False, x
        for j in range(3):
            M[c, j], M[piv, j] = M[piv, j], M[c, j]
        x[c], x[piv] = x[piv], x[c]
        for r in range(c + 1, 3):
            f = M[r, c] / M[c, c]
            for j in range(c, 3):
                M[r, j] -= f * M[c, j]
            x[r] -= f * x[c]
    for c in range(2, -1, -1):
        for j in range(c + 1, 3):
            x[c] -= M[c, j] * x[j]
        x[c] /= M[c, c]
    return True, x


@njit(**_JIT)
def _normal_equations(u, w, res):
    """(A^T A (3, 3), A^T res (3,)) of the Kasa design matrix A = [u, w, 1] (N, 3)."""
    M, g = np.zeros((3, 3)), np.zeros(3)
    for i in range(u.size):
        M[0, 0] += u[i] * u[i]
        M[0, 1] += u[i] * w[i]
        M[0, 2] += u[i]
        M[1, 1] += w[i] * w[i]
        M[1, 2] += w[i]
        g[0] += u[i] * res[i]
        g[1] += w[i] * res[i]
        g[2] += res[i]
    M[1, 0], M[2, 0], M[2, 1], M[2, 2] = M[0, 1], M[0, 2], M[1, 2], u.size
    return M, g


@njit(**_JIT)
def _fit_circle(p):
    """Kernel of `fit_circle`: (ok, center x, center z, radius, rms residual).

    The Kasa least squares [x, z, 1] (D, E, F) = -(x^2 + z^2) is solved by its 3x3 normal
    equations in centred, unit-RMS coordinates (the fit is translation and scale equivariant),
    refined once with the residual of the least squares itself. There the matrix is about
    diag(n/2, n/2, n) and its condition number that of the points' spread (< 1e3 for an arc
    that can pass the round test). Points on a line to 1e-6 give no circle, where lstsq
    returned a meaningless (minimum-norm) one.
    """
    n = p.shape[0]
    if n < 10:
        return False, 0.0, 0.0, 0.0, 0.0
    mx, mz = 0.0, 0.0
    for i in range(n):
        mx += p[i, 0]
        mz += p[i, 1]
    mx, mz = mx / n, mz / n
    ss = 0.0
    for i in range(n):
        ss += (p[i, 0] - mx) ** 2 + (p[i, 1] - mz) ** 2
    scale = math.sqrt(ss / n)
    if not scale > 0.0:
        return False, 0.0, 0.0, 0.0, 0.0
    u, w, b = np.empty(n), np.empty(n), np.empty(n)
    for i in range(n):
        u[i], w[i] = (p[i, 0] - mx) / scale, (p[i, 1] - mz) / scale
        b[i] = -(u[i] * u[i] + w[i] * w[i])
    M, g = _normal_equations(u, w, b)
    ok, x = _solve3(M.copy(), g)
    if not ok:
        return False, 0.0, 0.0, 0.0, 0.0
    for i in range(n):  # one step of iterative refinement, on the residual
        b[i] -= x[0] * u[i] + x[1] * w[i] + x[2]
    ok, dx = _solve3(M, _normal_equations(u, w, b)[1])
    D, E, F = x[0] + dx[0], x[1] + dx[1], x[2] + dx[2]
    r2 = (D / 2) ** 2 + (E / 2) ** 2 - F
    if not (math.isfinite(r2) and r2 > 0):
        return False, 0.0, 0.0, 0.0, 0.0
    cx, cz, r = mx - scale * D / 2, mz - scale * E / 2, scale * math.sqrt(r2)
    res2 = np.empty(n)
    for i in range(n):
        res2[i] = (math.sqrt((p[i, 0] - cx) ** 2 + (p[i, 1] - cz) ** 2) - r) ** 2
    return True, cx, cz, r, math.sqrt(pairwise_sum(res2, 0, n) / n)


@njit(**_JIT)
def _round_fit(xz, ext_max, round_residual):
    """Kernel of `_is_round`: (round, center x, center z, radius)."""
    outline = _front_outline(xz, 64, 250)
    if outline.shape[0] == 0:
        return False, 0.0, 0.0, 0.0
    ok, cx, cz, r, rms = _fit_circle(outline)
    if not ok or rms > round_residual * r or r > 1.2 * max(ext_max, 1e-6) or r < 0.2 * ext_max:
        return False, 0.0, 0.0, 0.0
    ang = np.empty(outline.shape[0])
    for i in range(outline.shape[0]):
        ang[i] = math.atan2(outline[i, 1] - cz, outline[i, 0] - cx)
    lo, hi = _order_stats(ang, 2.0, 98.0)
    mx, mz = 0.0, 0.0
    for i in range(xz.shape[0]):
        mx += xz[i, 0]
        mz += xz[i, 1]
    mx, mz = mx / xz.shape[0], mz / xz.shape[0]
    if math.sqrt(cx * cx + cz * cz) <= math.sqrt(mx * mx + mz * mz) or hi - lo < math.radians(60.0):
        return False, 0.0, 0.0, 0.0
    return True, cx, cz, r


@njit(**_JIT)
def _side_points(pg, y_min):
    """(M, 2) (x, z) of the (N, 3) gravity-frame points with y > y_min (below the top: the
    object's sides), or of all N points when fewer than 10 are."""
    n = pg.shape[0]
    m = 0
    for i in range(n):
        m += pg[i, 1] > y_min
    xz = np.empty((m if m >= 10 else n, 2))
    k = 0
    for i in range(n):
        if m < 10 or pg[i, 1] > y_min:
            xz[k, 0], xz[k, 1] = pg[i, 0], pg[i, 2]
            k += 1
    return xz


def _as_points(xz: np.ndarray) -> np.ndarray:
    """(N, 2) float64 C-contiguous copy-if-needed of `xz`, N >= 1 (one kernel specialisation)."""
    xz = np.ascontiguousarray(xz, dtype=np.float64)
    if xz.ndim != 2 or xz.shape[1] != 2 or len(xz) == 0:
        raise ValueError(f"expected (N >= 1, 2) points, got shape {xz.shape}")
    return xz


def quantiles(x: np.ndarray, lo_pct: float, hi_pct: float) -> tuple[float, float]:
    """(lo, hi) order statistics of a finite 1-D array at the given percentiles (nearest rank,
    by selection): np.percentile's interpolation and overhead are not needed for trimming."""
    a = np.array(x, dtype=np.float64)  # a copy: the kernel reorders it
    if a.ndim != 1 or len(a) == 0:
        raise ValueError(f"expected a non-empty 1-D array, got shape {a.shape}")
    return _order_stats(a, float(lo_pct), float(hi_pct))


def footprint_rect(xz: np.ndarray, trim_pct: float, max_points: int = 200) -> tuple[float, np.ndarray, np.ndarray]:
    """Oriented rectangle of (N, 2) footprint points (gravity-frame x, z), metres.

    The visible surface of a box is one face or two faces meeting at a corner (an "L"),
    so the orientation maximises the closeness of the points to the rectangle's sides
    (the L-shape criterion of LiDAR vehicle fitting, Zhang et al. 2017) over a 5-degree
    sweep refined to 1 and then 0.25 degree, on at most `max_points` points (a stride
    subsample, radially trimmed by `trim_pct`). For a complete footprint it agrees with the
    minimum-area rectangle; for an L it does not fall for the diagonal rectangle that
    the minimum-area criterion prefers. Extents are percentile-trimmed.

    Returns (theta, center (2,), extents (2,)); the first axis is (cos theta, sin theta).
    """
    th, cx, cz, ea, eb = _footprint_rect(_as_points(xz), float(trim_pct), int(max_points))
    return th, np.array([cx, cz]), np.array([ea, eb])


def fit_circle(xz: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """Algebraic (Kasa) circle fit of (N, 2) points: (center (2,), radius, rms residual), or
    None for fewer than 10 points or (nearly) collinear ones."""
    ok, cx, cz, r, rms = _fit_circle(_as_points(xz))
    return (np.array([cx, cz]), r, rms) if ok else None


def _is_round(xz: np.ndarray, extents: np.ndarray, cfg: LiftConfig):
    """(centre (2,), radius) when the camera-facing outline of the footprint is a circular arc.

    Fitting the outline's front part (not all points) is what separates a cylinder (arc)
    from a box seen at a corner (two straight edges) or face-on (one straight edge).
    """
    ok, cx, cz, r = _round_fit(_as_points(xz), float(np.max(extents)), float(cfg.round_residual))
    return (np.array([cx, cz]), r) if ok else None


def fit_box(xyz_cam: np.ndarray, gravity_cam: np.ndarray, cfg: LiftConfig, *, floor_offset: float | None = None,
            prior_dims: np.ndarray | None = None, bottom_hidden: bool = False,
            prior_max_height: float | None = None, sides_hidden: tuple[bool, bool] = (False, False),
            box_height_m: float | None = None, prior_length: float | None = None,
            prior_max_dims: np.ndarray | None = None, top_hidden: bool = False,
            prior_min_height: float | None = None, prior_surface: float = 1.0) -> Fit:
    """Gravity-aligned box (camera frame) of an object's cleaned points.

    Args:
        xyz_cam: (N, 3) cleaned camera-frame points, metres, N >= 3.
        gravity_cam: (3,) unit down vector.
        floor_offset: camera height above the floor along gravity (metres), when known.
        prior_dims: (3,) category prior (w, h, l) with w >= l, or None (no completion).
        bottom_hidden: the object's lower edge is not observed (cut by the image border or
            occluded by something nearer): its bottom then snaps to the floor from any
            height, as long as the box stays within `prior_max_height`.
        sides_hidden: (left, right) edges of the object in the image are not observed
            (occluded or cut by the border): the extent across the view may then also grow,
            towards the hidden side(s), up to what the prior expects.
        box_height_m: the metric height of the object's 2D box at the object's depth, when
            its top and bottom edges are both observed (neither cut nor occluded): depth
            misses parts of an object (floor band, sparse LiDAR beams, dark surfaces), the
            tight 2D box does not. The box then grows down to that height (less what a top
            face seen from above adds to the image height, from `prior_length`), and stands
            on the floor when it reaches it.
        prior_max_dims: (3,) the category's largest plausible (w, h, l): an extent along the
            view beyond it is smeared depth, cut back to the points' near part.
        top_hidden: the object's top is cut by the image border: a box standing on the floor
            grows upwards to the prior's typical height.
        prior_min_height: the category's least plausible height: a box observed thinner than
            it whose top stands at a plausible height above the floor reaches down to the
            floor (a night stand or table seen from above, its sides hidden or dark).
        prior_surface: where the visible surface lies in the category's box, as a fraction
            of the half-depth in front of its centre (`lifting.priors.Prior.surface`): a box
            completed along the view grows away from the camera from its near face (1.0), or
            partly towards the camera for an object seen at its middle (a person's torso).
    """
    R = gravity_frame(gravity_cam)
    pg = np.asarray(xyz_cam @ R, dtype=np.float64)  # gravity frame: x right, y down, z forward (horizontal)
    t = cfg.trim_pct
    top, bottom = quantiles(pg[:, 1], t, 100 - t)
    if box_height_m is not None and box_height_m > 0:
        dist = max(float(np.median(np.hypot(pg[:, 0], pg[:, 2]))), 1e-3)
        # camera height above the object's top (y down: top > 0 is below the camera): a top
        # face seen from above adds about drop * length / distance to the image height
        drop = max(top, 0.0)
        extra = drop * (prior_length or 0.0) / dist
        target = box_height_m - extra
        if prior_max_height is not None:
            target = min(target, 1.25 * prior_max_height)
        if extra < 0.3 * box_height_m and target > 1.15 * (bottom - top):
            bottom = top + target
            if floor_offset is not None and bottom > floor_offset:
                # below the floor: it stands on the floor and is as tall as its 2D box says,
                # so the top rises above the measured one (sparse returns miss roofs and the
                # tops of far objects; measured on KITTI LiDAR, clamping the bottom instead
                # cost 0.03 mean 3D IoU)
                top, bottom = min(floor_offset - target, top), floor_offset
    if floor_offset is not None:
        gap = floor_offset - bottom
        fits_prior = prior_max_height is None or floor_offset - top <= 1.25 * prior_max_height
        if -0.1 < gap < cfg.floor_snap_m or (bottom_hidden and gap > 0 and fits_prior):
            bottom = floor_offset  # resting on (or noisily under) the floor
            if top_hidden and prior_dims is not None and cfg.complete_with_priors:
                # standing on the floor and cut at the top: as tall as the category typically is
                top = min(top, bottom - float(prior_dims[1]))
        elif (prior_min_height is not None and cfg.complete_with_priors and bottom - top < prior_min_height
              and 0.8 * prior_min_height <= floor_offset - top <= 1.1 * (prior_max_height or np.inf)):
            bottom = floor_offset  # only its top seen, at the height the category stands
    height = max(bottom - top, 1e-3)
    # the footprint from the sides only: a top face seen from above fills the rectangle's
    # interior and says nothing about the orientation
    xz = _side_points(pg, top + 0.05 * height)
    th, center, ext = footprint_rect(xz, t)
    # a round footprint is at least a shallow arc (extent ratio >= 0.2); thinner ones are faces
    # ... and belongs to a category that can be round: an elongated prior footprint (a car,
    # whose curved rear bumper is an arc seen from behind) never is
    elongated = prior_dims is not None and max(prior_dims[0], prior_dims[2]) > 1.6 * min(prior_dims[0], prior_dims[2])
    rnd = _is_round(xz, ext, cfg) if ext.min() >= 0.2 * ext.max() and not elongated else None
    if rnd is not None:
        center, r = rnd
        yaw = math.atan2(center[0], center[1])
        w = l_ = 2 * r
        obs = (w, height, l_)
        final_w, final_l = w, l_
        completed = False
        vis = 1.0
        center_xz = center
    else:
        # box z axis: the rectangle axis closest to the viewing ray to the centre, pointing away
        a = np.array([math.cos(th), math.sin(th)])
        b = np.array([-a[1], a[0]])
        ray = center / max(np.linalg.norm(center), 1e-9)
        if abs(a @ ray) > abs(b @ ray):
            zax, lz, lx = a, ext[0], ext[1]
        else:
            zax, lz, lx = b, ext[1], ext[0]
        if zax @ ray < 0:
            zax = -zax
        yaw = math.atan2(zax[0], zax[1])
        if prior_max_dims is not None and lz > 1.1 * max(prior_max_dims[0], prior_max_dims[2]):
            # deeper than the category can be: smeared depth (stereo, monocular models, flying
            # pixels) behind the front surface. Keep the front: the robust near part of the
            # points along the view, the rest is left to the prior completion below.
            along = xz @ zax
            lo, hi = quantiles(along, 10, 90)
            lz = float(min(hi - lo, max(prior_max_dims[0], prior_max_dims[2])))
            center = center + zax * ((lo + lz / 2) - float(center @ zax))
        obs = (float(lx), float(height), float(lz))
        final_w, final_l = float(lx), float(lz)
        completed = False
        if cfg.complete_with_priors and prior_dims is not None:
            pw, ph, pl = (float(v) for v in prior_dims)
            # which prior horizontal extent does the across-view extent match (log-closest)?
            # objects mostly show their long side: take the side view (across = short side)
            # only when the observed across extent is clearly closer to the short side
            d_long = abs(math.log(max(lx, 1e-3) / pw))
            d_short = abs(math.log(max(lx, 1e-3) / pl))
            across, along = (pl, pw) if d_short + cfg.prior_front_bias < d_long else (pw, pl)
            lo, hi = cfg.prior_scale_clip
            if any(sides_hidden):  # the across extent is cut: scale from the height alone
                scale = min(max(max(height, 1e-3) / ph, lo), hi)
            else:
                scale = min(max(math.sqrt(max(height, 1e-3) / ph * max(lx, 1e-3) / across), lo), hi)
            target = along * scale
            if target > lz:
                final_l = target
                completed = True
            target_w = across * scale
            if not any(sides_hidden) and lx < 0.5 * target_w:
                # a sliver across the view (a far object's few points, a side face seen
                # edge-on): too thin to be the category's width; take the prior's, centred
                final_w = target_w
                completed = True
            if any(sides_hidden) and target_w > lx:
                final_w = target_w
                completed = True
                xax = np.array([zax[1], -zax[0]])  # box x in (x, z): rot_y(yaw) x axis
                cam_x = R[0, [0, 2]]  # the camera's +x (image right) in the gravity frame
                right = xax if xax @ cam_x >= 0 else -xax
                grow = final_w - lx
                if sides_hidden[0] and not sides_hidden[1]:
                    center = center - right * grow / 2
                elif sides_hidden[1] and not sides_hidden[0]:
                    center = center + right * grow / 2
        # grow away from the camera, so that the visible surface lies prior_surface of the
        # half-depth in front of the centre (and the box still holds what was seen)
        center_xz = center + zax * max((prior_surface * final_l - obs[2]) / 2, (obs[2] - final_l) / 2)
        vis = float(min(1.0, (obs[0] * obs[2]) / max(final_w * final_l, 1e-9))) if completed else 1.0
    yc = (top + bottom) / 2
    center_g = np.array([center_xz[0], yc, center_xz[1]])
    box = Box3D.from_gravity(center_g @ R.T, [final_w, height, final_l], wrap_angle(yaw), gravity_cam)
    return Fit(box, tuple(float(v) for v in obs), rnd is not None, completed, vis)
