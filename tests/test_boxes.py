"""Gravity-aligned 3D boxes (lifting/boxes.py): corners, frames, Omni3D conversion, projection."""
from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from scipy.spatial import ConvexHull, HalfspaceIntersection
from scipy.spatial.transform import Rotation

from lifting.boxes import (
    CORNER_SIGNS,
    EDGES,
    FACES,
    Box3D,
    gravity_frame,
    iou_2d,
    project_box,
    rot_y,
    wrap_angle,
    xywh_to_xyxy,
    xyxy_to_xywh,
    yaw_of,
)
from lifting.camera import NEAR_PLANE_M, make_K, project_points

K = make_K(500.0, 520.0, 319.5, 239.5)
W, H = 640, 480


def _random_gravity(rng, max_tilt_deg=30.0):
    """A unit 'down' vector within max_tilt_deg of the camera's +y."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    tilt = math.radians(rng.uniform(0, max_tilt_deg))
    return Rotation.from_rotvec(axis * tilt).apply([0.0, 1.0, 0.0])


def _random_box(rng, z=(2.0, 8.0), tilt=30.0):
    g = _random_gravity(rng, tilt)
    c = np.r_[rng.uniform(-1.5, 1.5, 2), rng.uniform(*z)]
    return Box3D.from_gravity(c, rng.uniform(0.1, 2.0, 3), rng.uniform(-math.pi, math.pi), g), g


# ----------------------------------------------------------------------------- corners
def test_corner_table_of_the_docstring():
    w, h, l = 2.0, 4.0, 6.0
    c = Box3D([0, 0, 0], [w, h, l], np.eye(3)).corners()
    expected = {
        0: (-1, -2, -3), 1: (1, -2, -3), 2: (1, -2, 3), 3: (-1, -2, 3),
        4: (-1, 2, -3), 5: (1, 2, -3), 6: (1, 2, 3), 7: (-1, 2, 3),
    }
    for i, xyz in expected.items():
        np.testing.assert_array_equal(c[i], xyz)
    # top face (0..3) is up: smaller y in a +y-down frame; 0->1 along +x; 0->3 along +z
    assert np.all(c[:4, 1] < c[4:, 1])
    assert c[1, 0] > c[0, 0] and c[3, 2] > c[0, 2]


def test_edges_and_faces_are_consistent_with_the_corners():
    # 12 distinct edges, each between corners differing in exactly one sign
    assert len({tuple(sorted(e)) for e in EDGES.tolist()}) == 12
    for i, j in EDGES:
        assert np.sum(CORNER_SIGNS[i] != CORNER_SIGNS[j]) == 1
    # 6 faces, each the 4 corners sharing one sign, counter-clockwise seen from outside
    rng = np.random.default_rng(0)
    box, _ = _random_box(rng)
    c = box.corners()
    assert sorted(tuple(sorted(f)) for f in FACES.tolist()) == sorted(
        tuple(sorted(np.flatnonzero(CORNER_SIGNS[:, a] == s).tolist())) for a in range(3) for s in (-1, 1))
    for f in FACES:
        p = c[f]
        normal = np.cross(p[1] - p[0], p[2] - p[1])
        assert normal @ (p.mean(axis=0) - box.center_cam) > 0, f"face {f} is not CCW from outside"
        # planar
        assert abs(np.linalg.det(np.stack([p[1] - p[0], p[2] - p[0], p[3] - p[0]]))) < 1e-9


def test_corners_volume_and_local_frame_of_a_rotated_box():
    rng = np.random.default_rng(1)
    for _ in range(20):
        box, _ = _random_box(rng)
        c = box.corners()
        np.testing.assert_allclose(box.to_local(c), CORNER_SIGNS * box.dimensions / 2, atol=1e-12)
        np.testing.assert_allclose(c.mean(axis=0), box.center_cam, atol=1e-12)
        assert box.volume == pytest.approx(np.prod(box.dimensions))
        assert ConvexHull(c).volume == pytest.approx(box.volume, rel=1e-9)
        # edge lengths are the dimensions
        np.testing.assert_allclose(np.linalg.norm(c[1] - c[0]), box.dimensions[0])
        np.testing.assert_allclose(np.linalg.norm(c[4] - c[0]), box.dimensions[1])
        np.testing.assert_allclose(np.linalg.norm(c[3] - c[0]), box.dimensions[2])


def test_contains():
    rng = np.random.default_rng(2)
    box, _ = _random_box(rng)
    half = box.dimensions / 2
    local = rng.uniform(-1.3, 1.3, (5000, 3)) * half
    pts = local @ box.R_cam.T + box.center_cam
    inside = np.all(np.abs(local) <= half, axis=1)
    assert 0 < inside.sum() < len(pts)
    np.testing.assert_array_equal(box.contains(pts), inside)
    assert box.contains(box.center_cam[None])[0]
    assert np.all(box.contains(box.corners(), tol=1e-9))
    # tol grows the box by tol metres on every side
    out = box.center_cam + box.R_cam[:, 0] * (half[0] + 0.01)
    assert not box.contains(out[None])[0]
    assert box.contains(out[None], tol=0.011)[0]


# ----------------------------------------------------------------------------- gravity frame
@pytest.mark.parametrize(
    "g",
    [[0, 1, 0], [0, 2, 0], [0.1, 1, 0.3], [0, 0.2, 1], [0, 0, 1], [0, 0, -1], [0, -1, 0], [1, 0, 0],
     [0.3, 0.2, -0.9], [1e-8, 1e-8, 1]],
)
def test_gravity_frame_is_a_rotation_with_y_down(g):
    R = gravity_frame(g)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    np.testing.assert_allclose(R[:, 1], np.asarray(g) / np.linalg.norm(g), atol=1e-12)
    fwd_h = np.array([0, 0, 1.0]) - R[:, 1][2] * R[:, 1]
    if np.linalg.norm(fwd_h) > 1e-3:  # +z is the camera's forward made horizontal
        np.testing.assert_allclose(R[:, 2], fwd_h / np.linalg.norm(fwd_h), atol=1e-9)


def test_gravity_frame_upright_is_identity_and_zero_raises():
    np.testing.assert_allclose(gravity_frame([0, 1, 0]), np.eye(3), atol=1e-15)
    for bad in ([0, 0, 0], [np.nan, 1, 0]):
        with pytest.raises(ValueError):
            gravity_frame(bad)


def test_from_gravity_axes_and_yaw():
    rng = np.random.default_rng(3)
    for _ in range(50):
        box, g = _random_box(rng)
        R = box.R_cam
        np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
        assert np.linalg.det(R) == pytest.approx(1.0)
        np.testing.assert_allclose(box.up_axis, g, atol=1e-12)
        assert yaw_of(R, g) == pytest.approx(box.yaw, abs=1e-12)
        assert -math.pi <= box.yaw < math.pi


def test_yaw_is_a_rotation_about_gravity():
    # yaw pi/2 for an upright camera: the box's x axis points along camera -z (rot_y convention)
    box = Box3D.from_gravity([0, 0, 5], [1, 1, 1], math.pi / 2)
    np.testing.assert_allclose(box.R_cam[:, 0], [0, 0, -1], atol=1e-12)
    np.testing.assert_allclose(box.R_cam[:, 2], [1, 0, 0], atol=1e-12)
    np.testing.assert_allclose(rot_y(0.3) @ rot_y(-0.3), np.eye(3), atol=1e-15)
    assert wrap_angle(math.pi) == pytest.approx(-math.pi)
    assert wrap_angle(3 * math.pi / 2) == pytest.approx(-math.pi / 2)


# ----------------------------------------------------------------------------- Omni3D
def test_omni3d_round_trip_with_tilted_gravity():
    rng = np.random.default_rng(4)
    for _ in range(50):
        box, g = _random_box(rng, tilt=40)
        ann = json.loads(json.dumps(box.to_omni3d()))  # must be plain JSON
        assert set(ann) >= {"center_cam", "dimensions", "R_cam", "bbox3D_cam", "yaw"}
        np.testing.assert_allclose(ann["bbox3D_cam"], box.corners(), atol=1e-12)
        for back in (Box3D.from_omni3d(ann), Box3D.from_omni3d(ann, gravity_cam=g)):
            np.testing.assert_allclose(back.center_cam, box.center_cam)
            np.testing.assert_allclose(back.dimensions, box.dimensions)
            np.testing.assert_allclose(back.R_cam, box.R_cam)
            assert wrap_angle(back.yaw - box.yaw) == pytest.approx(0.0, abs=1e-9)
        # rebuilding from (centre, dimensions, yaw, gravity) gives the same rotation
        again = Box3D.from_gravity(ann["center_cam"], ann["dimensions"], Box3D.from_omni3d(ann).yaw, g)
        np.testing.assert_allclose(again.R_cam, box.R_cam, atol=1e-9)


def test_with_gravity_yaw_re_expresses_the_yaw():
    g = _random_gravity(np.random.default_rng(5), 20)
    box = Box3D.from_gravity([0, 0, 4], [1, 2, 3], 0.7, g)
    upright = box.with_gravity_yaw([0, 1, 0])
    np.testing.assert_array_equal(upright.R_cam, box.R_cam)
    assert upright.with_gravity_yaw(g).yaw == pytest.approx(0.7)


# ----------------------------------------------------------------------------- projection
def test_project_box_in_front_is_min_max_of_corners():
    rng = np.random.default_rng(6)
    for _ in range(50):
        box, _ = _random_box(rng)
        uv, _ = project_points(box.corners(), K)
        got = project_box(box, K)
        expected = (*(uv.min(axis=0) + 0.5), *(uv.max(axis=0) + 0.5))  # pixel-edge coordinates
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_project_box_clips_to_the_image():
    rng = np.random.default_rng(7)
    n_clipped = 0
    for _ in range(200):
        box, _ = _random_box(rng, z=(1.5, 4.0))
        box = Box3D(box.center_cam + [rng.uniform(-3, 3), rng.uniform(-2, 2), 0], box.dimensions, box.R_cam)
        full = project_box(box, K)
        clipped = project_box(box, K, (W, H))
        ix0, iy0, ix1, iy1 = max(full[0], 0), max(full[1], 0), min(full[2], W), min(full[3], H)
        if ix1 <= ix0 or iy1 <= iy0:
            assert clipped is None
            continue
        np.testing.assert_allclose(clipped, (ix0, iy0, ix1, iy1), atol=1e-9)
        n_clipped += clipped != full
    assert n_clipped > 20
    assert project_box(Box3D([100, 0, 5], [1, 1, 1], np.eye(3)), K, (W, H)) is None


def test_project_box_entirely_behind_is_none():
    assert project_box(Box3D([0, 0, -3], [1, 1, 1], np.eye(3)), K) is None
    assert project_box(Box3D([0, 0, -3], [1, 1, 1], np.eye(3)), K, (W, H)) is None


def _straddling_boxes(n, seed):
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        c = np.r_[rng.uniform(-0.8, 0.8, 2), rng.uniform(-0.3, 0.6)]
        box = Box3D.from_gravity(c, rng.uniform(0.3, 1.5, 3), rng.uniform(-math.pi, math.pi),
                                 _random_gravity(rng, 20))
        z = box.corners()[:, 2]
        if z.min() < NEAR_PLANE_M - 0.05 and z.max() > NEAR_PLANE_M + 0.05:
            out.append(box)
    return out


def test_project_box_straddling_is_finite():
    """Regression (fixed): project_box returns (nan, nan, nan, nan) for about a third of boxes that cross
    the near plane (the clipped edge points get z slightly below NEAR_PLANE_M, see
    tests/test_camera.py::test_clipped_segment_lies_in_the_near_half_space)."""
    bad = []
    for box in _straddling_boxes(60, seed=8):
        r = project_box(box, K)
        if r is None or not np.all(np.isfinite(r)):
            bad.append((box.center_cam.round(3).tolist(), r))
    assert not bad, f"{len(bad)}/60 straddling boxes: {bad[:2]}"


def _exact_front_part_vertices(box, near):
    """Vertices of box ∩ {z >= near} by scipy half-space intersection (independent of EDGES)."""
    hs = []
    for k in range(3):
        n = box.R_cam[:, k]
        h = box.dimensions[k] / 2
        hs += [np.r_[n, -(n @ box.center_cam) - h], np.r_[-n, n @ box.center_cam - h]]
    hs.append([0.0, 0.0, -1.0, near])  # -z + near <= 0
    # an interior point: between the centre and the farthest corner, in front of the plane
    z_max_corner = box.corners()[np.argmax(box.corners()[:, 2])]
    inside_pt = 0.5 * (box.center_cam + z_max_corner)
    if inside_pt[2] <= near:
        inside_pt = 0.9 * z_max_corner + 0.1 * box.center_cam
    return HalfspaceIntersection(np.array(hs), inside_pt).intersections


def _dense_front_surface(box, near, n=120):
    """Surface points of the box with z >= near: a grid on every face plus the exact
    crossing of each face's grid lines with the plane z = near."""
    half = box.dimensions / 2
    s = np.linspace(-1, 1, n)
    pts = []
    for a in range(3):
        b, c = [i for i in range(3) if i != a]
        for sign in (-1, 1):
            uu, vv = np.meshgrid(s, s, indexing="ij")
            loc = np.zeros((n, n, 3))
            loc[..., a] = sign * half[a]
            loc[..., b] = uu * half[b]
            loc[..., c] = vv * half[c]
            cam = loc.reshape(-1, 3) @ box.R_cam.T + box.center_cam
            pts.append(cam[cam[:, 2] >= near])
            # along each grid line of the face (both directions), the point where z == near
            for p0, p1 in ((loc[:, 0], loc[:, -1]), (loc[0, :], loc[-1, :])):
                q0, q1 = p0 @ box.R_cam.T + box.center_cam, p1 @ box.R_cam.T + box.center_cam
                dz = q1[:, 2] - q0[:, 2]
                ok = np.abs(dz) > 1e-12
                t = np.where(ok, (near - q0[:, 2]) / np.where(ok, dz, 1), -1)
                ok &= (t >= 0) & (t <= 1)
                x = q0[ok] + t[ok, None] * (q1[ok] - q0[ok])
                x[:, 2] = near  # exactly on the plane
                pts.append(x)
    return np.concatenate(pts)


def test_project_box_straddling_matches_exact_and_dense_references():
    """Where project_box gives a finite answer for a box crossing the near plane, it is
    the 2D extent of the box's part in front of the plane."""
    near = NEAR_PLANE_M
    compared = 0
    for box in _straddling_boxes(40, seed=9):
        got = project_box(box, K)
        if got is None or not np.all(np.isfinite(got)):
            continue  # the NaN bug is asserted in test_project_box_straddling_is_finite
        compared += 1
        v = _exact_front_part_vertices(box, near)
        v[:, 2] = np.maximum(v[:, 2], near)
        uv = np.stack([K[0, 0] * v[:, 0] / v[:, 2] + K[0, 2], K[1, 1] * v[:, 1] / v[:, 2] + K[1, 2]], 1) + 0.5
        exact = np.r_[uv.min(0), uv.max(0)]
        scale = np.abs(exact).max()
        np.testing.assert_allclose(got, exact, atol=1e-6 * scale)
        # dense sampling of the surface: inside the result and reaching its extremes
        d = _dense_front_surface(box, near)
        duv = np.stack([K[0, 0] * d[:, 0] / d[:, 2] + K[0, 2], K[1, 1] * d[:, 1] / d[:, 2] + K[1, 2]], 1) + 0.5
        dense = np.r_[duv.min(0), duv.max(0)]
        assert np.all(duv >= np.array(got[:2]) - 1e-6 * scale)
        assert np.all(duv <= np.array(got[2:]) + 1e-6 * scale)
        np.testing.assert_allclose(dense, got, atol=0.03 * (np.array(got[2:]) - got[:2]).max())
    assert compared >= 15


def test_project_box_straddling_clipped_to_image_covers_the_visible_part():
    # a large box around the camera, seen through the image: clipped result is the image
    box = Box3D([0, 0, 0.2], [2, 2, 2], np.eye(3))
    r = project_box(box, K, (W, H))
    assert r is not None and np.all(np.isfinite(r))
    np.testing.assert_allclose(r, (0, 0, W, H))


# ----------------------------------------------------------------------------- 2D helpers
def test_iou_2d_and_conversions():
    assert iou_2d((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0
    assert iou_2d((0, 0, 2, 2), (1, 0, 3, 2)) == pytest.approx(1 / 3)
    assert iou_2d((0, 0, 1, 1), (1, 0, 2, 1)) == 0.0
    assert iou_2d(None, (0, 0, 1, 1)) == 0.0
    assert iou_2d((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    for b in itertools.product([0.5, 3.0], [1.0, 7.5], [2.0, 4.0], [1.0, 0.25]):
        assert xyxy_to_xywh(xywh_to_xyxy(b)) == pytest.approx(b)


def test_gravity_frame_does_not_depend_on_the_sign_of_zero_asked_before():
    from lifting.boxes import gravity_frame

    a = gravity_frame([0.0, 1.0, -0.0])
    b = gravity_frame([0.0, 1.0, 0.0])
    assert np.array_equal(np.signbit(a), np.signbit(b)) and np.array_equal(a, b)
