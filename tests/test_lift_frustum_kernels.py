"""The compiled steps of box-only frustum segmentation (lifting.lift.frustum) against the
scipy/numpy implementation they replaced, kept here verbatim as the reference (`ref_*`):
the same neighbour distances and radius-graph components as scipy's cKDTree and
connected_components (numbering included), the same point selection and the same cluster
statistics (np.quantile / np.percentile bits), on random frustums and point sets
(hypothesis: blobs at several depths and spacings, scan lines, lone points, duplicates,
pixel lattices) and on the frustums `lift_image` segments on synthetic scenes with a depth
camera, LiDAR and stereo depth.

cKDTree may skip the distance test for pairs of tree nodes wholly within the radius, by a
bound it updates incrementally; a pair within an ulp or two of the radius could come out
differently there. No input here (nor any frustum of the real frames in
../shared/data/real3d, checked when the kernels were written) comes that close.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from lifting.lift import LiftConfig, frustum
from lifting.synthetic import NoiseConfig, SceneConfig, generate_scene
from synthetic_helpers import lift_scene

CFG = LiftConfig()
HYP = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
K = np.array([[720.0, 0.0, 610.0], [0.0, 720.0, 180.0], [0.0, 0.0, 1.0]])
SIZE = (1224, 370)

# ---------------------------------------------------------------- reference (scipy/numpy)


def ref_components(xyz: np.ndarray, uv: np.ndarray, K: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """(N,) component label of each frustum point (radius graph in (u, v, log z) space)."""
    n = len(xyz)
    if n == 1:
        return np.zeros(1, np.int64)
    a = np.stack([(uv[:, 0] - K[0, 2]) / K[0, 0], (uv[:, 1] - K[1, 2]) / K[1, 1]], axis=1)
    tree2 = cKDTree(a)
    # the typical spacing of neighbouring points (pixels for dense depth, scan lines and
    # azimuth steps for LiDAR), from the nearest neighbours of a sample
    sample = a[:: max(1, n // 300)]
    dist, _ = tree2.query(sample, k=min(4, n))
    spacing = float(np.median(dist[:, -1]))  # n >= 2 here, so k >= 2 and dist is (m, k)
    r = max(cfg.frustum_radius_spacings * spacing, 1.5 / K[0, 0])
    scale = r / cfg.frustum_depth_rel  # a relative depth jump of frustum_depth_rel is one radius
    q = np.column_stack([a, np.log(xyz[:, 2]) * scale])
    pairs = cKDTree(q).query_pairs(r, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, lab = connected_components(g, directed=False)
    return lab


def ref_choose(xyz, uv, b, K, cfg: LiftConfig, prior: tuple | None, image_size) -> np.ndarray | None:
    """Boolean selection of the object's points among the frustum points, or None.

    `prior`: (typical height m, log spread of heights, footprint diagonal m) of the
    category, or None for a generic one."""
    prior_h, prior_spread, diag = prior if prior is not None else (None, None, None)
    n = len(xyz)
    if n < cfg.frustum_min_points:
        return None
    lab = ref_components(xyz, uv, K, cfg)
    nlab = int(lab.max()) + 1
    counts = np.bincount(lab, minlength=nlab)
    big = counts >= max(cfg.frustum_min_points, cfg.boxseg_min_component_frac * n)
    if not big.any():
        big = counts == counts.max()
    x0, y0, x1, y1 = (float(v) for v in b)
    bw, bh = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    W, H = image_size
    # the depth the category's height predicts from the box height, when the box's top and
    # bottom are both inside the image (a cut box says nothing about the object's height)
    z_pred = None
    if prior_h is not None and y0 > 1 and y1 < H - 1:
        z_pred = K[1, 1] * prior_h / bh
    z = xyz[:, 2]
    score = np.zeros(nlab)
    med = np.full(nlab, np.inf)
    order = np.argsort(lab, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for c in np.flatnonzero(big):
        idx = order[bounds[c]:bounds[c + 1]]
        uc, vc = uv[idx, 0], uv[idx, 1]
        qu = np.quantile(uc, (0.02, 0.98))
        qv = np.quantile(vc, (0.02, 0.98))
        fu = (qu[1] - qu[0] + 1) / bw
        fv = (qv[1] - qv[0] + 1) / bh
        fill = min(fu, 1.0) * min(fv, 1.0)
        share = counts[c] / n
        med[c] = float(np.median(z[idx]))
        w = 1.0
        if z_pred is not None:
            dev = math.log(med[c] / z_pred) / prior_spread
            w = math.exp(-0.5 * dev * dev)
        score[c] = fill * (0.5 + share) * (0.25 + w)
    if not np.any(score > 0):
        return None
    good = score >= cfg.boxseg_near_score_frac * score.max()
    pick = int(np.argmin(np.where(good, med, np.inf)))
    zm = med[pick]
    keep = big & (np.abs(np.log(np.where(np.isfinite(med), med, 1e9) / zm)) <= cfg.component_merge_rel)
    keep[pick] = True
    sel = keep[lab]
    if diag is not None and sel.sum() >= 2 * cfg.frustum_min_points:
        # smooth depth (stereo, monocular) joins an object to what lies behind it through
        # smeared pixels: keep the points within the category's footprint diagonal of the
        # cluster's depth mode (+ the depth's own noise)
        zs = z[sel]
        lz = np.log(zs)
        bins = np.arange(lz.min(), lz.max() + 0.015, 0.015)
        if len(bins) > 3:
            hist, edges = np.histogram(lz, bins=bins)
            hist = np.convolve(hist, np.ones(3), mode="same")
            z_mode = float(np.exp(edges[int(np.argmax(hist))] + 0.0075))
            half = 0.6 * diag + cfg.frustum_depth_rel * z_mode
            sel &= np.abs(z - z_mode) <= half
    return sel


def ref_window_mean(depth, valid, v, u):
    """`_frustum`'s dense-depth smoothing as it was: mean of the valid 3x3 neighbours."""
    H, W = depth.shape
    acc = np.zeros(len(v))
    cnt = np.zeros(len(v))
    for dv in (-1, 0, 1):
        vv = np.clip(v + dv, 0, H - 1)
        for du in (-1, 0, 1):
            uu = np.clip(u + du, 0, W - 1)
            ok = valid[vv, uu]
            acc += np.where(ok, depth[vv, uu], 0.0)
            cnt += ok
    return acc / np.maximum(cnt, 1)


# ---------------------------------------------------------------- random frustums


@st.composite
def frustums(draw):
    """(xyz (N, 3), uv (N, 2) int, 2D box): blobs of pixels at several depths inside a box,
    on a dense grid (a strided depth camera) or scattered (LiDAR-like), optionally with
    duplicated pixels, in shuffled order."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    x0, y0 = draw(st.integers(0, 900)), draw(st.integers(0, 250))
    bw, bh = draw(st.integers(2, 300)), draw(st.integers(2, 120))
    parts = [np.zeros((0, 3))]
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 400))
        cu, cv = rng.uniform(x0, x0 + bw), rng.uniform(y0, y0 + bh)
        su, sv = rng.uniform(1, bw), rng.uniform(1, bh)
        u = np.clip(np.round(rng.normal(cu, su / 3, n)), x0, x0 + bw - 1)
        v = np.clip(np.round(rng.normal(cv, sv / 3, n)), y0, y0 + bh - 1)
        z = draw(st.floats(0.5, 60.0)) * np.exp(rng.normal(0, draw(st.floats(0.0, 0.1)), n))
        parts.append(np.c_[u, v, z])
    p = np.concatenate(parts)
    if draw(st.booleans()):  # a strided grid: every pixel once
        _, first = np.unique(p[:, :2], axis=0, return_index=True)
        p = p[np.sort(first)]
    if draw(st.booleans()):
        p = p[rng.permutation(len(p))]
    uv = p[:, :2].astype(np.int64)
    z = p[:, 2]
    xyz = np.c_[(uv[:, 0] - K[0, 2]) * z / K[0, 0], (uv[:, 1] - K[1, 2]) * z / K[1, 1], z]
    return xyz, uv, np.array([x0, y0, x0 + bw, y0 + bh], dtype=np.float64)


PRIORS = [None, (1.5, 0.15, 4.9), (0.9, 0.3, 1.0), (1.7, 0.1, 0.8)]


def assert_same_choice(xyz, uv, b, prior, image_size=SIZE, k=K):
    ref = ref_choose(xyz, uv, b, k, CFG, prior, image_size)
    got = frustum._choose(xyz, uv, b, k, CFG, prior, image_size)
    assert (ref is None) == (got is None)
    if ref is not None:
        assert np.array_equal(ref, got)


@HYP
@given(frustums())
def test_components_match_reference(fr):
    xyz, uv, _ = fr
    if len(xyz) == 0:
        return
    assert np.array_equal(frustum._components(xyz, uv, K, CFG), ref_components(xyz, uv, K, CFG))


@HYP
@given(frustums(), st.sampled_from(range(len(PRIORS))))
def test_choose_matches_reference(fr, i):
    assert_same_choice(*fr, PRIORS[i])


@HYP
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 500))
def test_root_labels_are_scipys_numbering(seed, n):
    rng = np.random.default_rng(seed)
    pairs = rng.integers(0, n, size=(rng.integers(0, 2 * n), 2))
    parent = np.arange(n)  # union-find, each root its tree's smallest member, as the kernels keep it

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)
    g = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, ref = connected_components(g, directed=False)
    assert np.array_equal(frustum._root_labels(parent), ref)


@HYP
@given(frustums())
def test_segment_statistics_match_numpy(fr):
    xyz, uv, _ = fr
    if len(xyz) == 0:
        return
    got = frustum._seg_stats(uv[:, 0].astype(np.float64), uv[:, 1].astype(np.float64), xyz[:, 2].copy())
    ref = np.r_[np.percentile(xyz[:, 2], [5, 50, 95]), np.quantile(uv[:, 0], (0.02, 0.98)),
                np.quantile(uv[:, 1], (0.02, 0.98))]
    assert np.array_equal(got, ref)


@HYP
@given(st.integers(0, 2 ** 32 - 1), st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.0),
       st.sampled_from([np.float32, np.float64]))
def test_window_mean_matches_reference(seed, h, w, valid_frac, dtype):
    rng = np.random.default_rng(seed)
    depth = (rng.uniform(0.3, 80.0, size=(h, w)) * np.exp(rng.normal(0, 0.3, size=(h, w)))).astype(dtype)
    valid = rng.uniform(size=(h, w)) < valid_frac
    v, u = np.nonzero(np.ones((h, w), dtype=bool))  # every pixel, the borders included
    assert np.array_equal(frustum._window_mean(depth, valid, v, u), ref_window_mean(depth, valid, v, u))


@st.composite
def point_sets(draw):
    """(N, 3) points as `_components` builds them (normalised image coordinates, scaled log
    depth): clumps, lines (LiDAR scan lines, one image column), lone far points,
    duplicates, optionally on a pixel lattice, in any order; N >= 2."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(1, 300))
        shape = draw(st.sampled_from(["clump", "row", "column", "point"]))
        c = rng.uniform(-0.8, 0.8, size=2)
        s = draw(st.floats(1e-4, 0.3))
        if shape == "clump":
            xy = rng.normal(c, s, size=(n, 2))
        elif shape == "row":
            xy = np.c_[rng.uniform(c[0] - s, c[0] + s, n), np.full(n, c[1])]
        elif shape == "column":
            xy = np.c_[np.full(n, c[0]), rng.uniform(c[1] - s, c[1] + s, n)]
        else:
            xy = np.repeat(c[None], n, axis=0)
        parts.append(np.c_[xy, rng.normal(draw(st.floats(-50.0, 50.0)), draw(st.floats(0.0, 5.0)), n)])
    p = np.concatenate(parts)
    if draw(st.booleans()):
        p[:, :2] = np.round(p[:, :2] * 720.0) / 720.0  # pixel centres of a 720 px focal length
    if len(p) < 2:
        p = np.r_[p, p]
    return p[rng.permutation(len(p))] if draw(st.booleans()) else p


@HYP
@given(point_sets())
def test_sample_spacing_is_ckdtrees(p):
    a = np.ascontiguousarray(p[:, :2])
    n = len(a)
    for step in {1, max(1, n // 300), 7}:
        k = min(4, n)
        dist, _ = cKDTree(a).query(a[::step], k=k)
        assert frustum._sample_spacing(a, step, k) == np.median(dist[:, -1])


@HYP
@given(point_sets(), st.floats(1e-4, 0.2))
def test_radius_labels_are_ckdtrees(p, r):
    q = np.ascontiguousarray(p)
    pairs = cKDTree(q).query_pairs(r, output_type="ndarray")
    g = coo_matrix((np.ones(len(pairs), np.int8), (pairs[:, 0], pairs[:, 1])), shape=(len(q), len(q)))
    _, ref = connected_components(g, directed=False)
    assert np.array_equal(frustum._radius_labels(q, r), ref)


def test_sample_spacing_of_a_lone_point_searches_all_points():
    # one point ~30 cells from a dense clump: its ring search gives up and scans every point
    rng = np.random.default_rng(11)
    a = np.r_[[[5.0, 5.0]], rng.uniform(0, 0.01, size=(2000, 2))]
    dist, _ = cKDTree(a).query(a[:1], k=4)
    assert frustum._sample_spacing(a, len(a), 4) == dist[0, -1]  # the sample: the lone point alone
    assert frustum._sample_spacing(a[-2:], 1, 2) == math.hypot(*(a[-1] - a[-2]))


# ---------------------------------------------------------------- frustums of synthetic scenes


def _scene_frustums(scenes) -> list[tuple]:
    """The arguments `lift_image` hands to `_choose` for every box-only object of the given
    (scene config, noise) pairs (recorded by a spy around the real call)."""
    seen = []
    real = frustum._choose

    def spy(xyz, uv, b, k, cfg, prior, image_size):
        seen.append((xyz.copy(), uv.copy(), np.array(b, dtype=np.float64), k.copy(), prior, image_size))
        return real(xyz, uv, b, k, cfg, prior, image_size)

    mp = pytest.MonkeyPatch()
    mp.setattr(frustum, "_choose", spy)
    try:
        for seed, (sc_cfg, noise, source) in enumerate(scenes):
            lift_scene(generate_scene(seed, sc_cfg, noise), seed, masks=False, depth_source=source)
    finally:
        mp.undo()
    return seen


def test_scene_frustums_match_reference():
    indoor, outdoor = SceneConfig.realistic_indoor(), SceneConfig.realistic_outdoor()
    scenes = [(SceneConfig(occlusion=True), NoiseConfig.realistic(), "sensor"),
              (indoor, NoiseConfig.kinect(), "sensor"), (indoor, NoiseConfig.kinect(), "sensor"),
              (outdoor, NoiseConfig.lidar(), "sensor:lidar"), (outdoor, NoiseConfig.lidar(), "sensor:lidar"),
              (outdoor, NoiseConfig.stereo(), "sensor:stereo"), (outdoor, NoiseConfig.stereo(), "sensor:stereo")]
    calls = _scene_frustums(scenes)
    assert len(calls) >= 30 and max(len(c[0]) for c in calls) > 500
    for xyz, uv, b, k, prior, image_size in calls:
        assert_same_choice(xyz, uv, b, prior, image_size, k)
        if len(xyz) >= 2:
            assert np.array_equal(frustum._components(xyz, uv, k, CFG), ref_components(xyz, uv, k, CFG))
