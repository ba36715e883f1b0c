"""Exact 3D IoU of oriented boxes.

Two paths, chosen automatically by `iou_3d`:
- gravity-aligned boxes sharing an up axis: exact area of the intersection of the two
  ground footprints (convex polygon clipping) times the overlap along gravity;
- general oriented boxes: the intersection of two boxes is a convex polyhedron whose
  vertices are the corners of each box inside the other plus the crossings of each box's
  edges with the other's faces; its volume is that of their convex hull (scipy/Qhull).

The polygon clipping is written here (Sutherland-Hodgman, ~20 lines) rather than adding
shapely as a dependency for one convex-convex intersection.
"""
from __future__ import annotations

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
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _ccw(poly: np.ndarray) -> np.ndarray:
    x, y = poly[:, 0], poly[:, 1]
    signed = np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))
    return poly if signed >= 0 else poly[::-1]


def clip_convex_polygons(subject: np.ndarray, clip: np.ndarray) -> np.ndarray:
    """Intersection (M, 2) of two convex polygons (N, 2) by Sutherland-Hodgman clipping."""
    out = _ccw(np.asarray(subject, dtype=np.float64))
    clip = _ccw(np.asarray(clip, dtype=np.float64))
    n = len(clip)
    for i in range(n):
        if len(out) == 0:
            break
        a, b = clip[i], clip[(i + 1) % n]
        edge = b - a
        # inside: left of the directed edge a->b (cross >= 0)
        side = edge[0] * (out[:, 1] - a[1]) - edge[1] * (out[:, 0] - a[0])
        new = []
        m = len(out)
        for j in range(m):
            p, q = out[j], out[(j + 1) % m]
            sp, sq = side[j], side[(j + 1) % m]
            if sp >= 0:
                new.append(p)
            if (sp >= 0) != (sq >= 0):
                t = sp / (sp - sq)
                new.append(p + t * (q - p))
        out = np.array(new) if new else np.zeros((0, 2))
    return out


def _footprint(box: Box3D, up: np.ndarray, e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    """(4, 2) footprint of the box on the plane spanned by e1, e2 (perpendicular to up)."""
    c = box.corners()[:4]  # top face: the 4 corners with y = -h/2
    return np.stack([c @ e1, c @ e2], axis=1)


def _shares_up_axis(a: Box3D, b: Box3D) -> bool:
    return float(np.linalg.norm(np.cross(a.up_axis, b.up_axis))) < _PARALLEL_TOL


def iou_3d_gravity(a: Box3D, b: Box3D) -> float:
    """Exact IoU of two boxes whose y axes are parallel (both gravity-aligned)."""
    up = a.up_axis / np.linalg.norm(a.up_axis)
    e1 = a.R_cam[:, 0]
    e2 = np.cross(up, e1)
    inter_area = polygon_area(clip_convex_polygons(_footprint(a, up, e1, e2), _footprint(b, up, e1, e2)))
    ca, cb = a.center_cam @ up, b.center_cam @ up
    ha, hb = a.dimensions[1] / 2.0, b.dimensions[1] / 2.0
    overlap_h = max(0.0, min(ca + ha, cb + hb) - max(ca - ha, cb - hb))
    inter = inter_area * overlap_h
    union = a.volume + b.volume - inter
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
    ra = np.linalg.norm(a.dimensions) / 2.0
    rb = np.linalg.norm(b.dimensions) / 2.0
    if np.linalg.norm(a.center_cam - b.center_cam) > ra + rb:
        return 0.0
    if _shares_up_axis(a, b):
        return iou_3d_gravity(a, b)
    return iou_3d_general(a, b)
