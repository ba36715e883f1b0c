"""The compiled RANSAC scoring of the floor search (lifting.lift.gravity._score) against the
numpy expression it replaced, kept here as the reference: equal inlier counts on random
scenes (a floor, walls, clutter, points below the floor) with the hypotheses `_ransac` draws,
and on the point sets the floor search scores on synthetic scenes without a given gravity.

The kernel's point-plane distance is the three products summed in order; numpy's came from
a BLAS matrix product, which may fuse the multiply-adds. The two can differ in the last bit,
so a point within an ulp of its tolerance could count differently: no input here (nor any
real frame of ../shared/data/real3d, checked when the kernel was written) comes that close.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lifting.lift.gravity as gravity
from lifting.lift import LiftConfig
from lifting.synthetic import NoiseConfig, SceneConfig, generate_scene
from synthetic_helpers import lift_scene

CFG = LiftConfig()
HYP = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def ref_score(p: np.ndarray, n: np.ndarray, d: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """Inlier counts of planes (n_i, d_i) over points p, zeroed where many points lie below."""
    dist = p @ n.T - d[None, :]  # (P, M): positive = below the plane (farther along gravity)
    tol = gravity._inlier_tol(p, cfg)[:, None]
    inl = (np.abs(dist) < tol).sum(axis=0)
    below = (dist > 3 * tol).mean(axis=0)
    return np.where(below < 0.02, inl, 0)


def hypotheses(p: np.ndarray, m: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """(M, 3) unit normals oriented down and (M,) offsets of planes through random triplets
    of p, as `_ransac` draws them (without its tilt and height filters: every kind of plane)."""
    tri = p[rng.integers(0, len(p), size=(m, 3))]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    norm = np.linalg.norm(n, axis=1)
    ok = norm > 1e-9
    n = n[ok] / norm[ok, None]
    n *= np.sign(n[:, 1:2] + 1e-12)
    return n, np.einsum("ij,ij->i", n, tri[ok][:, 0])


@st.composite
def scenes(draw):
    """(P, 3) camera-frame points: a floor at 0.5-2 m below the camera, optionally tilted,
    a wall, clutter above the floor and a few points below it, in shuffled order."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    h = draw(st.floats(0.5, 2.0))
    tilt = math.radians(draw(st.floats(0.0, 30.0)))
    n_floor = draw(st.integers(0, 1500))
    xz = rng.uniform([-3, 0.5], [3, 8], size=(n_floor, 2))
    y = h - xz[:, 1] * math.tan(tilt) + rng.normal(0, draw(st.floats(0.0, 0.03)), n_floor)
    parts = [np.c_[xz[:, 0], y, xz[:, 1]]]
    n_wall = draw(st.integers(0, 800))
    parts.append(np.c_[rng.uniform(-3, 3, n_wall), rng.uniform(-2, h, n_wall), np.full(n_wall, 6.0)])
    n_clutter = draw(st.integers(0, 500))
    parts.append(rng.uniform([-2, -1, 1], [2, h, 6], size=(n_clutter, 3)))
    n_below = draw(st.integers(0, 60))
    parts.append(rng.uniform([-2, h + 0.2, 1], [2, h + 1, 6], size=(n_below, 3)))
    p = np.concatenate(parts)
    p = p[rng.permutation(len(p))]
    return p, rng


@HYP
@given(scenes(), st.integers(1, 300))
def test_score_matches_reference(scene, m):
    p, rng = scene
    if len(p) < 3:
        return
    n, d = hypotheses(p, m, rng)
    assert np.array_equal(gravity._score(p, n, d, CFG), ref_score(p, n, d, CFG))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the reference's mean over no points
def test_score_of_no_points_or_no_planes():
    n, d = np.array([[0.0, 1.0, 0.0]]), np.array([1.0])
    assert np.array_equal(gravity._score(np.zeros((0, 3)), n, d, CFG), ref_score(np.zeros((0, 3)), n, d, CFG))
    p = np.random.default_rng(0).normal(size=(50, 3))
    assert gravity._score(p, np.zeros((0, 3)), np.zeros(0), CFG).shape == (0,)


def test_score_zeroes_a_plane_with_two_percent_below():
    # 1000 points: on y = 1 but k of them 0.5 m below it (1.9 %: scored; 2 %: not)
    rng = np.random.default_rng(1)
    n, d = np.array([[0.0, 1.0, 0.0]]), np.array([1.0])
    for k, want in ((19, 981), (20, 0)):
        p = np.c_[rng.uniform(-2, 2, 1000), np.ones(1000), rng.uniform(1, 5, 1000)]
        p[rng.choice(1000, k, replace=False), 1] = 1.5
        got = gravity._score(p, n, d, CFG)
        assert np.array_equal(got, ref_score(p, n, d, CFG))
        assert got[0] == want


def _scored_point_sets(n_scenes: int) -> list[tuple]:
    """The (points, normals, offsets) the floor search scores on `n_scenes` noisy synthetic
    scenes lifted without a given gravity (recorded by a spy around the real call)."""
    seen = []

    def spy(p, n, d, cfg):
        seen.append((p.copy(), n.copy(), d.copy()))
        return ref_score(p, n, d, cfg)

    mp = pytest.MonkeyPatch()
    mp.setattr(gravity, "_score", spy)
    try:
        for seed in range(n_scenes):
            sc = generate_scene(seed, SceneConfig(occlusion=True), NoiseConfig.realistic())
            lift_scene(sc, seed, masks=False, dataset_gravity=False)
    finally:
        mp.undo()
    return seen


def test_scene_point_sets_match_reference():
    sets = _scored_point_sets(6)
    assert len(sets) >= 6
    for p, n, d in sets:
        assert np.array_equal(gravity._score(p, n, d, CFG), ref_score(p, n, d, CFG))
