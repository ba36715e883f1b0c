"""Pinhole intrinsics, back-projection and projection (lifting/camera.py).

Checked against closed forms and against the pixel-centre convention of camera.py: the
centre of pixel (0, 0) is at (0, 0), so an image W pixels wide spans [-0.5, W - 0.5].
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from lifting.camera import (
    NEAR_PLANE_M,
    K_from_exif_35mm,
    K_from_fov,
    backproject,
    clip_segment_to_near_plane,
    crop_K,
    fov_from_K,
    make_K,
    pixel_grid,
    project_points,
    scale_K,
    unproject_points,
    validate_K,
)


def _random_K(rng, w=640, h=480):
    f = rng.uniform(300, 1500)
    return make_K(f, f * rng.uniform(0.9, 1.1), rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h)


# ----------------------------------------------------------------------------- intrinsics
@pytest.mark.parametrize("fov", [1.0, 30.0, 60.0, 90.0, 120.0, 179.0])
@pytest.mark.parametrize("size", [(640, 480), (1920, 1080), (37, 91)])
def test_fov_round_trip(fov, size):
    w, h = size
    K = K_from_fov(w, h, fov)
    assert fov_from_K(K, w) == pytest.approx(fov, abs=1e-9)
    assert K[0, 0] == K[1, 1]
    assert (K[0, 2], K[1, 2]) == ((w - 1) / 2, (h - 1) / 2)


def test_fov_90_closed_form_and_edge_rays():
    # 90 deg: f = W / 2; the rays through the two outer pixel EDGES are at +-45 deg
    K = K_from_fov(640, 480, 90.0)
    assert K[0, 0] == pytest.approx(320.0)
    left_edge = unproject_points(np.array([-0.5, 239.5]), np.float32(1.0), K)
    right_edge = unproject_points(np.array([639.5, 239.5]), np.float32(1.0), K)
    assert math.degrees(math.atan2(right_edge[0], right_edge[2])) == pytest.approx(45.0, abs=1e-4)
    assert math.degrees(math.atan2(left_edge[0], left_edge[2])) == pytest.approx(-45.0, abs=1e-4)


@pytest.mark.parametrize("fov", [0.0, -5.0, 180.0, 200.0])
def test_fov_out_of_range_raises(fov):
    with pytest.raises(ValueError):
        K_from_fov(640, 480, fov)


def test_exif_35mm_known_cases():
    # A 3:2 sensor has the 36 x 24 mm aspect: the 35 mm-equivalent focal length maps the
    # 36 mm frame width to the image width, so f_px = focal / 36 * W exactly.
    K = K_from_exif_35mm(6000, 4000, 36.0)
    assert K[0, 0] == pytest.approx(6000.0, rel=1e-12)
    K = K_from_exif_35mm(6000, 4000, 50.0)
    assert K[0, 0] == pytest.approx(50.0 / 36.0 * 6000.0, rel=1e-12)
    # 4:3 phone (documented diagonal convention): 26 mm on 4000 x 3000 -> diag 5000 px
    K = K_from_exif_35mm(4000, 3000, 26.0)
    assert K[0, 0] == pytest.approx(26.0 / math.hypot(36, 24) * 5000.0, rel=1e-12)
    assert K[1, 1] == K[0, 0]
    assert (K[0, 2], K[1, 2]) == (1999.5, 1499.5)
    # 24 mm equivalent on 3:2 is the classic 73.7 deg horizontal FoV
    assert fov_from_K(K_from_exif_35mm(3000, 2000, 24.0), 3000) == pytest.approx(
        math.degrees(2 * math.atan(18 / 24)), abs=1e-9)
    with pytest.raises(ValueError):
        K_from_exif_35mm(4000, 3000, 0.0)


@pytest.mark.parametrize("dst", [(320, 240), (1280, 960), (100, 333), (641, 479)])
def test_scale_K_matches_resized_pixel_centres(dst):
    rng = np.random.default_rng(3)
    src = (640, 480)
    K = _random_K(rng, *src)
    K2 = scale_K(K, src, dst)
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    pts = np.c_[rng.uniform(-2, 2, (200, 2)), rng.uniform(0.5, 10, 200)]
    uv, _ = project_points(pts, K)
    uv2, _ = project_points(pts, K2)
    # pixel-centre convention: u' = (u + 0.5) * s - 0.5
    np.testing.assert_allclose(uv2[:, 0], (uv[:, 0] + 0.5) * sx - 0.5, atol=1e-9)
    np.testing.assert_allclose(uv2[:, 1], (uv[:, 1] + 0.5) * sy - 0.5, atol=1e-9)
    # image edges map to image edges
    corner, _ = project_points(unproject_points(np.array([-0.5, -0.5]), np.float32(2.0), K).astype(np.float64), K2)
    np.testing.assert_allclose(corner, [-0.5, -0.5], atol=1e-4)
    # FoV is preserved by a uniform resize
    if abs(sx - sy) < 1e-12:
        assert fov_from_K(K2, dst[0]) == pytest.approx(fov_from_K(K, src[0]))


def test_scale_K_round_trip_and_fov_consistency():
    K = K_from_fov(640, 480, 63.0)
    back = scale_K(scale_K(K, (640, 480), (224, 168)), (224, 168), (640, 480))
    np.testing.assert_allclose(back, K, atol=1e-12)
    # K_from_fov at the new size is what scale_K gives
    np.testing.assert_allclose(scale_K(K, (640, 480), (320, 240)), K_from_fov(320, 240, 63.0), atol=1e-9)


def test_crop_K_shifts_projection():
    rng = np.random.default_rng(4)
    K = _random_K(rng)
    pts = np.c_[rng.uniform(-1, 1, (50, 2)), rng.uniform(1, 5, 50)]
    uv, _ = project_points(pts, K)
    uvc, _ = project_points(pts, crop_K(K, 100, 37))
    np.testing.assert_allclose(uvc, uv - [100, 37], atol=1e-9)


# ----------------------------------------------------------------------------- validate_K
@pytest.mark.parametrize(
    "K, size, reason",
    [
        (make_K(500, 500, 320, 240), (640, 480), None),
        (make_K(500, 500, 320, 240), (None, None), None),
        (np.eye(2), (640, 480), "bad_intrinsics_shape"),
        ([[1, 2, 3], [4, 5]], (640, 480), "bad_intrinsics_shape"),
        (None, (640, 480), "bad_intrinsics_shape"),
        ("not a matrix", (640, 480), "bad_intrinsics_shape"),
        (make_K(np.nan, 500, 320, 240), (640, 480), "bad_intrinsics_nonfinite"),
        (make_K(500, 500, np.inf, 240), (640, 480), "bad_intrinsics_nonfinite"),
        (make_K(0, 500, 320, 240), (640, 480), "bad_intrinsics_focal"),
        (make_K(500, -1, 320, 240), (640, 480), "bad_intrinsics_focal"),
        (make_K(500, 500, 5000, 240), (640, 480), "bad_intrinsics_principal_point"),
        (make_K(500, 500, 320, -1000), (640, 480), "bad_intrinsics_principal_point"),
    ],
)
def test_validate_K_reasons(K, size, reason):
    assert validate_K(K, *size) == reason


def test_validate_K_accepts_generated_intrinsics():
    assert validate_K(K_from_fov(640, 480, 60), 640, 480) is None
    assert validate_K(K_from_exif_35mm(4000, 3000, 26), 4000, 3000) is None


# ----------------------------------------------------------------------------- projection
def test_pixel_grid_convention():
    u, v = pixel_grid(3, 4)
    assert u.shape == v.shape == (3, 4)
    assert u[0].tolist() == [0, 1, 2, 3] and v[:, 0].tolist() == [0, 1, 2]


def test_backproject_project_round_trip():
    rng = np.random.default_rng(5)
    H, W = 60, 80
    K = _random_K(rng, W, H)
    depth = rng.uniform(0.2, 20.0, (H, W)).astype(np.float32)
    xyz = backproject(depth, K)
    assert xyz.shape == (H, W, 3)
    np.testing.assert_array_equal(xyz[..., 2], depth)  # z-depth, not range
    uv, z = project_points(xyz, K)
    u, v = pixel_grid(H, W)
    np.testing.assert_allclose(uv[..., 0], u, atol=2e-3)
    np.testing.assert_allclose(uv[..., 1], v, atol=2e-3)
    np.testing.assert_allclose(z, depth, rtol=1e-6)
    # the principal point back-projects onto the optical axis
    p = unproject_points(np.array([K[0, 2], K[1, 2]]), np.float32(3.0), K)
    np.testing.assert_allclose(p, [0, 0, 3], atol=1e-6)


def test_backproject_closed_form():
    K = make_K(100.0, 200.0, 1.0, 2.0)
    depth = np.full((3, 4), 2.0, dtype=np.float32)
    xyz = backproject(depth, K)
    # pixel (u=3, v=0): x = (3 - 1) / 100 * 2, y = (0 - 2) / 200 * 2
    np.testing.assert_allclose(xyz[0, 3], [0.04, -0.02, 2.0], rtol=1e-6)
    with pytest.raises(ValueError):
        backproject(np.zeros((2, 3, 1)), K)


def test_project_behind_camera_is_nan():
    K = make_K(500, 500, 320, 240)
    pts = np.array([[0.1, 0.2, 2.0], [0.1, 0.2, -2.0], [0.0, 0.0, 0.0], [1.0, 1.0, NEAR_PLANE_M / 2]])
    uv, z = project_points(pts, K)
    assert np.all(np.isfinite(uv[0]))
    assert np.all(np.isnan(uv[1:]))
    np.testing.assert_array_equal(z, pts[:, 2])
    np.testing.assert_allclose(uv[0], [320 + 500 * 0.05, 240 + 500 * 0.1])


def test_clip_segment_to_near_plane():
    near = 0.1
    # crossing: the clipped end lies on the plane and on the original line
    p0, p1 = np.array([1.0, 2.0, -1.0]), np.array([3.0, -2.0, 1.0])
    q0, q1 = clip_segment_to_near_plane(p0, p1, near)
    assert q0[2] == pytest.approx(near)
    t = (near - p0[2]) / (p1[2] - p0[2])
    np.testing.assert_allclose(q0, p0 + t * (p1 - p0))
    np.testing.assert_array_equal(q1, p1)
    # the same segment reversed clips the other end
    r0, r1 = clip_segment_to_near_plane(p1, p0, near)
    np.testing.assert_array_equal(r0, p1)
    np.testing.assert_allclose(r1, q0)
    # entirely in front: unchanged; entirely behind: None
    a, b = np.array([0.0, 0, 1]), np.array([1.0, 1, 2])
    out = clip_segment_to_near_plane(a, b, near)
    np.testing.assert_array_equal(out[0], a)
    np.testing.assert_array_equal(out[1], b)
    assert clip_segment_to_near_plane(-a, -b, near) is None


def test_clipped_segment_lies_in_the_near_half_space():
    """clip_segment_to_near_plane promises the half-space z >= near.

    The crossing point is computed as p0 + t (p1 - p0), whose z is `near` only up to
    rounding and often lands just below it (e.g. 0.0009999999999999731); project_points
    then treats that point as behind the camera (NaN). This is the root cause of
    project_box returning NaN (tests/test_boxes.py::test_project_box_straddling_is_finite).
    """
    K = make_K(500, 500, 320, 240)
    rng = np.random.default_rng(6)
    below, n_nan = 0, 0
    for _ in range(200):
        p0 = np.r_[rng.uniform(-1, 1, 2), rng.uniform(-1, -0.01)]
        p1 = np.r_[rng.uniform(-1, 1, 2), rng.uniform(0.01, 2)]
        for a, b in ((p0, p1), (p1, p0)):
            q0, q1 = clip_segment_to_near_plane(a, b)
            below += int(min(q0[2], q1[2]) < NEAR_PLANE_M)
            uv, _ = project_points(np.stack([q0, q1]), K)
            n_nan += int(not np.all(np.isfinite(uv)))
    assert below == 0 and n_nan == 0, (
        f"{below}/400 clipped segments end below the near plane, {n_nan}/400 project to NaN")
