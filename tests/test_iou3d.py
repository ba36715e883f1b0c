"""Exact 3D IoU (lifting/iou3d.py) against an independent implementation and closed forms.

The reference below intersects the 12 half-spaces of the two boxes with scipy's
HalfspaceIntersection (interior point from a Chebyshev-centre linear programme) and takes
the volume of the hull of the resulting vertices; it shares no code with lifting.iou3d
(which builds the vertex set from corners and edge/face crossings). A Monte-Carlo count
checks the reference itself.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.spatial import ConvexHull, HalfspaceIntersection
from scipy.spatial.transform import Rotation

from lifting.boxes import Box3D, rot_y
from lifting.iou3d import (
    clip_convex_polygons,
    intersection_volume,
    iou_3d,
    iou_3d_general,
    iou_3d_gravity,
    polygon_area,
)


# ----------------------------------------------------------------------------- reference
def _halfspaces(box: Box3D) -> np.ndarray:
    """(6, 4) rows [n, d] with n.x + d <= 0 inside the box."""
    rows = []
    for k in range(3):
        n = box.R_cam[:, k]
        h = box.dimensions[k] / 2
        rows += [np.r_[n, -(n @ box.center_cam) - h], np.r_[-n, n @ box.center_cam - h]]
    return np.array(rows)


def ref_intersection(a: Box3D, b: Box3D) -> float:
    hs = np.vstack([_halfspaces(a), _halfspaces(b)])
    A, d = hs[:, :3], hs[:, 3]
    # Chebyshev centre: max r s.t. A x + r |A| <= -d
    res = linprog(np.r_[0, 0, 0, -1.0], A_ub=np.c_[A, np.linalg.norm(A, axis=1)], b_ub=-d,
                  bounds=[(None, None)] * 3 + [(0, None)])
    if res.status != 0 or res.x[3] < 1e-9:
        return 0.0
    return float(ConvexHull(HalfspaceIntersection(hs, res.x[:3]).intersections).volume)


def ref_iou(a: Box3D, b: Box3D) -> float:
    inter = ref_intersection(a, b)
    return inter / (a.volume + b.volume - inter)


def mc_iou(a: Box3D, b: Box3D, n: int, rng) -> float:
    """Monte-Carlo IoU: uniform points in a's box, then in b's box (no code shared)."""
    def sample(box):
        loc = (rng.random((n, 3)) - 0.5) * box.dimensions
        return loc @ box.R_cam.T + box.center_cam

    def inside(box, p):
        loc = (p - box.center_cam) @ box.R_cam
        return np.all(np.abs(loc) <= box.dimensions / 2, axis=1)

    frac_a = inside(b, sample(a)).mean()  # inter / vol_a
    frac_b = inside(a, sample(b)).mean()  # inter / vol_b
    inter = 0.5 * (frac_a * a.volume + frac_b * b.volume)
    return inter / (a.volume + b.volume - inter)


def _rand_rot(rng):
    return Rotation.from_quat(rng.normal(size=4)).as_matrix()


def _random_general_pair(rng):
    a = Box3D(rng.normal(0, 0.3, 3) + [0, 0, 4], rng.uniform(0.2, 2.0, 3), _rand_rot(rng))
    b = Box3D(rng.normal(0, 0.3, 3) + [0, 0, 4], rng.uniform(0.2, 2.0, 3), _rand_rot(rng))
    return a, b


def _random_gravity_pair(rng):
    axis = rng.normal(size=3)
    g = Rotation.from_rotvec(axis / np.linalg.norm(axis) * rng.uniform(0, 0.6)).apply([0, 1, 0])
    c = np.array([0, 0, 4.0])
    a = Box3D.from_gravity(c + rng.normal(0, 0.3, 3), rng.uniform(0.2, 2.0, 3), rng.uniform(-4, 4), g)
    b = Box3D.from_gravity(c + rng.normal(0, 0.3, 3), rng.uniform(0.2, 2.0, 3), rng.uniform(-4, 4), g)
    return a, b


# ----------------------------------------------------------------------------- reference vs MC
def test_reference_agrees_with_monte_carlo():
    rng = np.random.default_rng(0)
    n_overlap = 0
    for _ in range(4):
        a, b = _random_general_pair(rng)
        r = ref_iou(a, b)
        n_overlap += r > 0.05
        assert mc_iou(a, b, 150_000, rng) == pytest.approx(r, abs=5e-3)
    assert n_overlap >= 2


# ----------------------------------------------------------------------------- random pairs
def test_general_boxes_match_reference():
    rng = np.random.default_rng(1)
    errs, n_overlap = [], 0
    for _ in range(200):
        a, b = _random_general_pair(rng)
        ref = ref_iou(a, b)
        n_overlap += ref > 0.05
        errs.append(abs(iou_3d(a, b) - ref))
        errs.append(abs(intersection_volume(a, b) - ref_intersection(a, b)) / min(a.volume, b.volume))
    assert n_overlap > 120  # the test exercises real overlaps, not just disjoint pairs
    assert max(errs) < 1e-4


def test_gravity_aligned_pairs_match_reference_on_both_paths():
    rng = np.random.default_rng(2)
    worst = 0.0
    n_overlap = 0
    for _ in range(200):
        a, b = _random_gravity_pair(rng)
        ref = ref_iou(a, b)
        n_overlap += ref > 0.05
        for got in (iou_3d(a, b), iou_3d_gravity(a, b), iou_3d_general(a, b)):
            worst = max(worst, abs(got - ref))
    assert n_overlap > 80
    assert worst < 1e-4


def test_antiparallel_up_axes_take_the_gravity_path_correctly():
    # the same physical box described with its y axis flipped (rotation by pi about x)
    rng = np.random.default_rng(3)
    flip = np.diag([1.0, -1.0, -1.0])
    for _ in range(50):
        a, b = _random_gravity_pair(rng)
        b2 = Box3D(b.center_cam, b.dimensions, b.R_cam @ flip)
        np.testing.assert_allclose(np.sort(b2.corners(), axis=0), np.sort(b.corners(), axis=0), atol=1e-12)
        assert iou_3d(a, b2) == pytest.approx(ref_iou(a, b), abs=1e-4)


def test_nearly_parallel_up_axes_are_exact():
    """Regression (fixed): iou_3d sends boxes to the gravity-aligned path when | |up_a . up_b| - 1 | < 1e-6,
    i.e. up axes up to ~1.4e-3 rad (0.08 deg) apart; that path then ignores the tilt and the
    IoU of tall boxes is off by ~1e-2 (e.g. a predicted box under a floor-fit gravity vs the
    GT under the dataset's gravity)."""
    rng = np.random.default_rng(4)
    worst = 0.0
    for _ in range(100):
        g = np.array([0.0, 1.0, 0.0])
        g2 = Rotation.from_rotvec([1.0e-3, 0, 0]).apply(g)  # 0.057 deg
        a = Box3D.from_gravity(rng.normal(0, 0.05, 3) + [0, 0, 3], [0.1, 2.0, 0.1], rng.uniform(-3, 3), g)
        b = Box3D.from_gravity(rng.normal(0, 0.05, 3) + [0, 0, 3], [0.1, 2.0, 0.1], rng.uniform(-3, 3), g2)
        worst = max(worst, abs(iou_3d(a, b) - ref_iou(a, b)))
    assert worst < 1e-4, f"IoU error {worst:.4f} for up axes 1e-3 rad apart"


def test_symmetry():
    rng = np.random.default_rng(5)
    for pair in (_random_general_pair, _random_gravity_pair):
        for _ in range(50):
            a, b = pair(rng)
            assert iou_3d(a, b) == pytest.approx(iou_3d(b, a), abs=1e-12)


# ----------------------------------------------------------------------------- closed forms
UNIT = np.array([1.0, 1.0, 1.0])


def _frames():
    """Identity, a pure yaw, a tilted gravity frame and a general rotation."""
    rng = np.random.default_rng(6)
    return [np.eye(3), rot_y(0.4), Box3D.from_gravity([0, 0, 0], UNIT, 0.3, [0.2, 1, -0.1]).R_cam, _rand_rot(rng)]


@pytest.mark.parametrize("fi", range(4))
def test_identical_is_one(fi):
    R = _frames()[fi]
    a = Box3D([0.3, -0.2, 5], [0.5, 1.2, 2.0], R)
    assert iou_3d(a, a) == pytest.approx(1.0, abs=1e-9)
    assert iou_3d_general(a, a) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("fi", range(4))
@pytest.mark.parametrize("axis", range(3))
def test_half_shift_is_one_third(fi, axis):
    R = _frames()[fi]
    dims = np.array([0.6, 1.4, 2.2])
    a = Box3D([0, 0, 5], dims, R)
    b = Box3D(a.center_cam + R[:, axis] * dims[axis] / 2, dims, R)
    assert iou_3d(a, b) == pytest.approx(1 / 3, abs=1e-9)
    assert iou_3d_general(a, b) == pytest.approx(1 / 3, abs=1e-9)


@pytest.mark.parametrize("fi", range(4))
@pytest.mark.parametrize("axis", range(3))
def test_touching_faces_and_disjoint_are_zero(fi, axis):
    R = _frames()[fi]
    dims = np.array([0.6, 1.4, 2.2])
    a = Box3D([0, 0, 5], dims, R)
    touching = Box3D(a.center_cam + R[:, axis] * dims[axis], dims, R)
    apart = Box3D(a.center_cam + R[:, axis] * dims[axis] * 1.01, dims, R)
    far = Box3D(a.center_cam + [10, 0, 0], dims, R)
    for b in (touching, apart, far):
        assert iou_3d(a, b) == pytest.approx(0.0, abs=1e-9)
        assert iou_3d_general(a, b) == pytest.approx(0.0, abs=1e-9)


def test_rotated_45_degrees_unit_cube_closed_form():
    # footprint: unit square and the same square rotated 45 deg about its centre; their
    # intersection is a regular octagon of area 1 - 4 * (1 - 1/sqrt2)^2 / 2 = 2 (sqrt2 - 1)
    octagon = 2.0 * (math.sqrt(2.0) - 1.0)
    assert 1 - 2 * (1 - 1 / math.sqrt(2)) ** 2 == pytest.approx(octagon)
    expected = octagon / (2.0 - octagon)
    for g in ([0, 1, 0], [0.3, 1, 0.2]):
        a = Box3D.from_gravity([0, 0, 3], UNIT, 0.0, g)
        b = Box3D.from_gravity([0, 0, 3], UNIT, math.pi / 4, g)
        assert iou_3d(a, b) == pytest.approx(expected, abs=1e-12)
        assert iou_3d_general(a, b) == pytest.approx(expected, abs=1e-9)
    # taller boxes: the footprint term is unchanged, heights overlap fully
    a = Box3D.from_gravity([0, 0, 3], [1, 3, 1], 0.2)
    b = Box3D.from_gravity([0, 0, 3], [1, 3, 1], 0.2 + math.pi / 4)
    assert iou_3d(a, b) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fi", range(4))
def test_containment_is_the_volume_ratio(fi):
    R = _frames()[fi]
    big = Box3D([0, 0, 5], [2.0, 3.0, 4.0], R)
    small = Box3D(big.center_cam + R @ [0.3, -0.5, 0.7], [0.5, 0.7, 0.9], R)
    ratio = small.volume / big.volume
    assert iou_3d(big, small) == pytest.approx(ratio, abs=1e-12)
    assert iou_3d_general(big, small) == pytest.approx(ratio, abs=1e-12)
    # a small box with any orientation well inside the big one
    tilted = Box3D(big.center_cam, [0.5, 0.7, 0.9], _rand_rot(np.random.default_rng(fi)))
    assert iou_3d(big, tilted) == pytest.approx(ratio, abs=1e-12)


def test_degenerate_boxes_are_zero():
    a = Box3D([0, 0, 5], [1, 1, 1], np.eye(3))
    flat = Box3D([0, 0, 5], [1, 0, 1], np.eye(3))
    assert iou_3d(a, flat) == 0.0
    assert iou_3d(flat, flat) == 0.0


# ----------------------------------------------------------------------------- 2D helpers
def test_polygon_clipping_closed_forms():
    sq = np.array([[0, 0], [1, 0], [1, 1], [0, 1.0]])
    assert polygon_area(sq) == 1.0
    assert polygon_area(sq[::-1]) == 1.0
    assert polygon_area(clip_convex_polygons(sq, sq + [0.5, 0.5])) == pytest.approx(0.25)
    assert polygon_area(clip_convex_polygons(sq, sq[::-1] + [0.5, 0])) == pytest.approx(0.5)
    assert polygon_area(clip_convex_polygons(sq, sq + [2, 0])) == 0.0
    tri = np.array([[0, 0], [2, 0], [0, 2.0]])
    assert polygon_area(clip_convex_polygons(sq, tri)) == pytest.approx(1.0)
    assert polygon_area(clip_convex_polygons(tri, sq + [0.5, 0.5])) == pytest.approx(0.5)
