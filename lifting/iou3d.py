"""Exact 3D IoU of oriented boxes.

Two paths, chosen automatically by `iou_3d`:
- gravity-aligned boxes sharing an up axis: exact area of the intersection of the two
  ground footprints (convex polygon clipping) times the overlap along gravity;
- general oriented boxes: the intersection of two boxes is a convex polyhedron whose
  vertices are the corners of each box inside the other plus the crossings of each box's
  edges with the other's faces; its volume is that of their convex hull (scipy/Qhull).

The polygon clipping is written here (Sutherland-Hodgman, ~20 lines) rather than adding
shapely as a dependency for one convex-convex intersection. The gravity-aligned path runs
in scalar Python on the boxes' numbers: with 4-gons, numpy's per-call overhead (cross,
roll, stack on 2- and 3-vectors) was ~0.6 ms per pair, the scalar path is ~10x less and
the evaluation matches many pairs per image.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial import ConvexHull, QhullError

from lifting.boxes import EDGES, Box3D

#: Up axes count as parallel when |a x b| is below this (about 1e-9 rad): anything looser
#: sends slightly tilted pairs down the gravity-aligned path, which ignores the tilt.
_PARALLEL_TOL = 1e-9


def polygon_area(poly: np.ndarray) -> float:
    """Area of a simple polygon (N, 2) by the shoelace formula."""
    if len(poly) < 3:
        return 0.0
    return _area_xy(np.asarray(poly, dtype=np.float64).tolist())


def _signed2(pts: list) -> float:
    """Twice the signed area of a polygon given as [(x, y), ...] (> 0 counter-clockwise)."""
    n = len(pts)
    acc = 0.0
    for i in range(n):
        x0, y0 = pts[i]
        x1, y1 = pts[(i + 1) % n]
        acc += x0 * y1 - y0 * x1
    return acc


def _area_xy(pts: list) -> float:
    return 0.5 * abs(_signed2(pts)) if len(pts) >= 3 else 0.0


def _clip_xy(subject: list, clip: list) -> list:
    """Sutherland-Hodgman intersection of two convex polygons given as [(x, y), ...]."""
    out = subject if _signed2(subject) >= 0 else subject[::-1]
    clip = clip if _signed2(clip) >= 0 else clip[::-1]
    n = len(clip)
    for i in range(n):
        if not out:
            break
        ax, ay = clip[i]
        bx, by = clip[(i + 1) % n]
        ex, ey = bx - ax, by - ay
        # inside: left of the directed edge a->b (cross >= 0)
        side = [ex * (py - ay) - ey * (px - ax) for px, py in out]
        new = []
        m = len(out)
        for j in range(m):
            sp, sq = side[j], side[(j + 1) % m]
            p = out[j]
            if sp >= 0:
                new.append(p)
            if (sp >= 0) != (sq >= 0):
                q = out[(j + 1) % m]
                t = sp / (sp - sq)
                new.append((p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])))
        out = new
    return out


def clip_convex_polygons(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection (M, 2) of two convex polygons (N, 2) by Sutherland-Hodgman clipping."""
    sub = [tuple(p) for p in np.asarray(subject, dtype=np.float64).tolist()]
    clp = [tuple(p) for p in np.asarray(clip, dtype=np.float64).tolist()]
    out = _clip_xy(sub, clp)
    return np.array(out, dtype=np.float64) if out else np.zeros((0, 2))


def _footprint_xy(center: list, dims: list, R: list, e1: tuple, e2: tuple) -> list:
    """Top-face corners 0..3 of a box (centre (3,), dims (w, h, l), R (3, 3) nested lists,
    camera frame) projected on the plane axes e1, e2: [(x, y)] * 4."""
    hw, hh, hl = dims[0] / 2.0, dims[1] / 2.0, dims[2] / 2.0
    out = []
    for e in (e1, e2):
        c = center[0] * e[0] + center[1] * e[1] + center[2] * e[2]
        dx = (R[0][0] * e[0] + R[1][0] * e[1] + R[2][0] * e[2]) * hw
        dy = (R[0][1] * e[0] + R[1][1] * e[1] + R[2][1] * e[2]) * hh
        dz = (R[0][2] * e[0] + R[1][2] * e[1] + R[2][2] * e[2]) * hl
        base = c - dy  # top face: y = -h/2
        out.append((base - dx - dz, base + dx - dz, base + dx + dz, base - dx + dz))  # corner signs 0..3
    return list(zip(out[0], out[1]))


def _shares_up_axis(a: Box3D, b: Box3D) -> bool:
    ua, ub = a.R_cam[:, 1].tolist(), b.R_cam[:, 1].tolist()
    cx = ua[1] * ub[2] - ua[2] * ub[1]
    cy = ua[2] * ub[0] - ua[0] * ub[2]
    cz = ua[0] * ub[1] - ua[1] * ub[0]
    return math.sqrt(cx * cx + cy * cy + cz * cz) < _PARALLEL_TOL


def iou_3d_gravity(a: Box3D, b: Box3D) -> float:
    """Exact IoU of two boxes whose y axes are parallel (both gravity-aligned)."""
    Ra, Rb = a.R_cam.tolist(), b.R_cam.tolist()
    ux, uy, uz = Ra[0][1], Ra[1][1], Ra[2][1]
    n = math.sqrt(ux * ux + uy * uy + uz * uz)
    up = (ux / n, uy / n, uz / n)
    e1 = (Ra[0][0], Ra[1][0], Ra[2][0])
    e2 = (up[1] * e1[2] - up[2] * e1[1], up[2] * e1[0] - up[0] * e1[2], up[0] * e1[1] - up[1] * e1[0])
    ca_, cb_ = a.center_cam.tolist(), b.center_cam.tolist()
    da, db = a.dimensions.tolist(), b.dimensions.tolist()
    inter_area = _area_xy(_clip_xy(_footprint_xy(ca_, da, Ra, e1, e2), _footprint_xy(cb_, db, Rb, e1, e2)))
    ca = ca_[0] * up[0] + ca_[1] * up[1] + ca_[2] * up[2]
    cb = cb_[0] * up[0] + cb_[1] * up[1] + cb_[2] * up[2]
    ha, hb = da[1] / 2.0, db[1] / 2.0
    overlap_h = max(0.0, min(ca + ha, cb + hb) - max(ca - ha, cb - hb))
    inter = inter_area * overlap_h
    union = da[0] * da[1] * da[2] + db[0] * db[1] * db[2] - inter
    return float(inter / union) if union > 0 else 0.0


def _edge_face_crossings(a: Box3D, b: Box3D) -> np.ndarray:
    """Points where the 12 edges of `a` cross the 6 face planes of `b` and lie inside `b`."""
    c = a.corners()
    p0 = c[EDGES[:, 0]]
    d = c[EDGES[:, 1]] - p0  # (12, 3)
    # work in b's frame, where b's faces are the planes x, y, z = +-half
    l0 = b.to_local(p0)
    ld = d @ b.R_cam
    half = b.dimensions / 2.0
    pts = []
    for axis in range(3):
        for s in (-1.0, 1.0):
            denom = ld[:, axis]
            ok = np.abs(denom) > 1e-12
            t = np.where(ok, (s * half[axis] - l0[:, axis]) / np.where(ok, denom, 1.0), -1.0)
            ok &= (t >= 0.0) & (t <= 1.0)
            if ok.any():
                pts.append(p0[ok] + t[ok, None] * d[ok])
    if not pts:
        return np.zeros((0, 3))
    pts = np.concatenate(pts)
    return pts[b.contains(pts, tol=1e-9)]


def intersection_volume(a: Box3D, b: Box3D) -> float:
    """Exact volume (m^3) of the intersection of two oriented boxes."""
    parts = [
        a.corners()[b.contains(a.corners(), tol=1e-9)],
        b.corners()[a.contains(b.corners(), tol=1e-9)],
        _edge_face_crossings(a, b),
        _edge_face_crossings(b, a),
    ]
    pts = np.concatenate(parts)
    if len(pts) < 4:
        return 0.0
    try:
        return float(ConvexHull(pts).volume)
    except QhullError:  # flat (touching) intersection
        return 0.0


def iou_3d_general(a: Box3D, b: Box3D) -> float:
    """Exact IoU of two arbitrarily oriented boxes."""
    inter = intersection_volume(a, b)
    union = a.volume + b.volume - inter
    return float(inter / union) if union > 0 else 0.0


def iou_3d(a: Box3D, b: Box3D) -> float:
    """Exact 3D IoU; uses the fast gravity-aligned path when the up axes are parallel."""
    if a.volume <= 0 or b.volume <= 0:
        return 0.0
    # quick reject: bounding spheres apart
    da, db = a.dimensions.tolist(), b.dimensions.tolist()
    ra = math.sqrt(da[0] ** 2 + da[1] ** 2 + da[2] ** 2) / 2.0
    rb = math.sqrt(db[0] ** 2 + db[1] ** 2 + db[2] ** 2) / 2.0
    ca, cb = a.center_cam.tolist(), b.center_cam.tolist()
    if math.sqrt((ca[0] - cb[0]) ** 2 + (ca[1] - cb[1]) ** 2 + (ca[2] - cb[2]) ** 2) > ra + rb:
        return 0.0
    if _shares_up_axis(a, b):
        return iou_3d_gravity(a, b)
    return iou_3d_general(a, b)
