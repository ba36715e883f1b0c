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
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from lifting.boxes import Box3D, gravity_frame, wrap_angle
from lifting.lift.config import LiftConfig


@dataclass(frozen=True)
class Fit:
    box: Box3D
    observed_dims: tuple[float, float, float]  # (w, h, l) before completion
    round: bool  # footprint fitted as a circle
    completed: bool  # extent along the view grown from the prior
    visible_fraction: float  # observed footprint area / final footprint area


def quantiles(x: np.ndarray, lo_pct: float, hi_pct: float) -> tuple[float, float]:
    """(lo, hi) order statistics of a 1-D array at the given percentiles (nearest rank, one
    np.partition): np.percentile's interpolation and overhead are not needed for trimming."""
    n = len(x)
    i = min(n - 1, max(0, int(round(lo_pct / 100.0 * (n - 1)))))
    j = min(n - 1, max(0, int(round(hi_pct / 100.0 * (n - 1)))))
    p = np.partition(x, (i, j))
    return float(p[i]), float(p[j])


def _extents(xz: np.ndarray, angles: np.ndarray, trim_pct: float):
    """Trimmed extents of (N, 2) points along the axes at `angles` (A,): (lo_a, hi_a, lo_b, hi_b, pa, pb)."""
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    pa = c * xz[:, 0] + s * xz[:, 1]  # (A, N)
    pb = -s * xz[:, 0] + c * xz[:, 1]
    qa = [quantiles(row, trim_pct, 100 - trim_pct) for row in pa]
    qb = [quantiles(row, trim_pct, 100 - trim_pct) for row in pb]
    lo_a, hi_a = np.array([q[0] for q in qa]), np.array([q[1] for q in qa])
    lo_b, hi_b = np.array([q[0] for q in qb]), np.array([q[1] for q in qb])
    return lo_a, hi_a, lo_b, hi_b, pa, pb


def _closeness(xz: np.ndarray, angles: np.ndarray, d0: float) -> np.ndarray:
    """(A,) how close the (pre-trimmed) points lie to the boundary of the rectangle at each angle."""
    c, s = np.cos(angles)[:, None], np.sin(angles)[:, None]
    pa = c * xz[:, 0] + s * xz[:, 1]  # (A, N)
    pb = -s * xz[:, 0] + c * xz[:, 1]
    lo_a, hi_a = pa.min(axis=1), pa.max(axis=1)
    lo_b, hi_b = pb.min(axis=1), pb.max(axis=1)
    da = np.minimum(np.abs(pa - lo_a[:, None]), np.abs(hi_a[:, None] - pa))
    db = np.minimum(np.abs(pb - lo_b[:, None]), np.abs(hi_b[:, None] - pb))
    return (1.0 / np.maximum(np.minimum(da, db), d0)).sum(axis=1)


def footprint_rect(xz: np.ndarray, trim_pct: float, max_points: int = 200) -> tuple[float, np.ndarray, np.ndarray]:
    """Oriented rectangle of (N, 2) footprint points (gravity-frame x, z), metres.

    The visible surface of a box is one face or two faces meeting at a corner (an "L"),
    so the orientation maximises the closeness of the points to the rectangle's sides
    (the L-shape criterion of LiDAR vehicle fitting, Zhang et al. 2017) over a 5-degree
    sweep refined to 1 and then 0.25 degree. For a complete footprint it agrees with the
    minimum-area rectangle; for an L it does not fall for the diagonal rectangle that
    the minimum-area criterion prefers. Extents are percentile-trimmed.

    Returns (theta, center (2,), extents (2,)); the first axis is (cos theta, sin theta).
    """
    pts = xz[:: max(1, int(np.ceil(len(xz) / max_points)))]
    # trim once, radially: drop the trim_pct farthest points from the median before the sweep
    r = np.linalg.norm(pts - np.median(pts, axis=0), axis=1)
    pts = pts[r <= quantiles(r, 0.0, 100 - trim_pct)[1]] if len(pts) > 20 else pts
    span = np.ptp(pts, axis=0).max()
    d0 = max(0.005, 0.01 * span)
    coarse = np.radians(np.arange(0.0, 90.0, 5.0))
    best = coarse[int(np.argmax(_closeness(pts, coarse, d0)))]
    fine = best + np.radians(np.arange(-4.0, 4.01, 1.0))
    best = fine[int(np.argmax(_closeness(pts, fine, d0)))]
    finer = best + np.radians(np.arange(-0.75, 0.76, 0.25))
    th = float(finer[int(np.argmax(_closeness(pts, finer, d0)))] % (math.pi / 2))
    lo_a, hi_a, lo_b, hi_b, _, _ = _extents(xz, np.array([th]), trim_pct)
    a = np.array([math.cos(th), math.sin(th)])
    b = np.array([-a[1], a[0]])
    center = a * (lo_a[0] + hi_a[0]) / 2 + b * (lo_b[0] + hi_b[0]) / 2
    return th, center, np.array([hi_a[0] - lo_a[0], hi_b[0] - lo_b[0]])


def fit_circle(xz: np.ndarray) -> tuple[np.ndarray, float, float] | None:
    """Algebraic (Kasa) circle fit of (N, 2) points: (center (2,), radius, rms residual)."""
    if len(xz) < 10:
        return None
    A = np.column_stack([xz, np.ones(len(xz))])
    b = -(xz ** 2).sum(axis=1)
    sol, *_ = np.linalg.lstsq(A, b, rcond=None)
    c = -sol[:2] / 2
    r2 = c @ c - sol[2]
    if not np.isfinite(r2) or r2 <= 0:
        return None
    r = math.sqrt(r2)
    res = np.linalg.norm(xz - c, axis=1) - r
    return c, r, float(np.sqrt(np.mean(res ** 2)))


def _front_outline(xz: np.ndarray, n_samples: int = 64, max_points: int = 250) -> np.ndarray | None:
    """Points sampled uniformly along the camera-facing part of the footprint's convex hull."""
    xz = xz[:: max(1, int(np.ceil(len(xz) / max_points)))]
    try:
        v = xz[ConvexHull(xz).vertices]  # counter-clockwise
    except (QhullError, ValueError):
        return None
    e = np.roll(v, -1, axis=0) - v
    normal = np.stack([e[:, 1], -e[:, 0]], axis=1)  # outward for a ccw polygon
    mid = v + e / 2
    front = np.einsum("ij,ij->i", normal, mid) < 0  # faces the camera at the origin
    if front.sum() < 2:
        return None
    length = np.linalg.norm(e, axis=1) * front
    s = np.linspace(0, length.sum(), n_samples, endpoint=False)
    cum = np.concatenate([[0.0], np.cumsum(length)])
    k = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(v) - 1)
    t = (s - cum[k]) / np.where(length[k] > 0, length[k], 1.0)
    return v[k] + t[:, None] * e[k]


def _is_round(xz: np.ndarray, extents: np.ndarray, cfg: LiftConfig):
    """(centre (2,), radius) when the camera-facing outline of the footprint is a circular arc.

    Fitting the outline's front part (not all points) is what separates a cylinder (arc)
    from a box seen at a corner (two straight edges) or face-on (one straight edge).
    """
    outline = _front_outline(xz)
    if outline is None:
        return None
    fc = fit_circle(outline)
    if fc is None:
        return None
    c, r, rms = fc
    if rms > cfg.round_residual * r or r > 1.2 * max(extents.max(), 1e-6) or r < 0.2 * extents.max():
        return None
    rel = outline - c
    ang = np.arctan2(rel[:, 1], rel[:, 0])
    lo, hi = quantiles(ang, 2, 98)
    span = hi - lo
    if np.linalg.norm(c) <= np.linalg.norm(xz.mean(axis=0)) or span < math.radians(60):
        return None
    return c, r


def fit_box(xyz_cam: np.ndarray, gravity_cam: np.ndarray, cfg: LiftConfig, *, floor_offset: float | None = None,
            prior_dims: np.ndarray | None = None, bottom_hidden: bool = False,
            prior_max_height: float | None = None, sides_hidden: tuple[bool, bool] = (False, False)) -> Fit:
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
    """
    R = gravity_frame(gravity_cam)
    pg = xyz_cam @ R  # gravity frame: x right, y down, z forward (horizontal)
    t = cfg.trim_pct
    top, bottom = quantiles(pg[:, 1], t, 100 - t)
    if floor_offset is not None:
        gap = floor_offset - bottom
        fits_prior = prior_max_height is None or floor_offset - top <= 1.25 * prior_max_height
        if -0.1 < gap < cfg.floor_snap_m or (bottom_hidden and gap > 0 and fits_prior):
            bottom = floor_offset  # resting on (or noisily under) the floor
    height = max(bottom - top, 1e-3)
    # the footprint from the sides only: a top face seen from above fills the rectangle's
    # interior and says nothing about the orientation
    sides = pg[:, 1] > top + 0.05 * height
    xz = pg[sides][:, [0, 2]] if sides.sum() >= 10 else pg[:, [0, 2]]
    th, center, ext = footprint_rect(xz, t)
    # a round footprint is at least a shallow arc (extent ratio >= 0.2); thinner ones are faces
    rnd = _is_round(xz, ext, cfg) if ext.min() >= 0.2 * ext.max() else None
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
                scale = float(np.clip(max(height, 1e-3) / ph, lo, hi))
            else:
                scale = float(np.clip(math.sqrt(max(height, 1e-3) / ph * max(lx, 1e-3) / across), lo, hi))
            target = along * scale
            if target > lz:
                final_l = target
                completed = True
            target_w = across * scale
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
        center_xz = center + zax * (final_l - obs[2]) / 2  # grow away from the camera
        vis = float(min(1.0, (obs[0] * obs[2]) / max(final_w * final_l, 1e-9))) if completed else 1.0
    yc = (top + bottom) / 2
    center_g = np.array([center_xz[0], yc, center_xz[1]])
    box = Box3D.from_gravity(center_g @ R.T, [final_w, height, final_l], wrap_angle(yaw), gravity_cam)
    return Fit(box, tuple(float(v) for v in obs), rnd is not None, completed, vis)
