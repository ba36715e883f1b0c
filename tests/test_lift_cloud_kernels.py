"""The compiled point-cloud cleaning (lifting.lift.cloud) against the numpy/scipy
implementation it replaced, kept here as the reference: exact masks and indices on random
clouds (hypothesis: blobs at several depths, isolated outliers, duplicates, points on cube
boundaries, spans that take the reference's sparse branch, float32 and float64) and on the
object clouds of synthetic scenes.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

import lifting.lift.core as core
from lifting.lift import LiftConfig
from lifting.lift import cloud
from lifting.synthetic import NoiseConfig, SceneConfig, generate_scene
from synthetic_helpers import lift_scene

# ---------------------------------------------------------------- reference (numpy/scipy)

#: Grids up to this many cells are labelled densely (scipy.ndimage.label), larger ones
#: through a sparse graph of occupied cells.
REF_DENSE_MAX_CELLS = 1_000_000

#: Half of the 26-neighbourhood (the other half is the same edges reversed).
REF_HALF_NEIGHBOURS = np.array(
    [(dx, dy, dz) for dx in (-1, 0, 1) for dy in (-1, 0, 1) for dz in (-1, 0, 1) if (dx, dy, dz) > (0, 0, 0)]
)


def ref_voxel_downsample(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """(M,) indices of one point per occupied voxel of edge `voxel` metres (the first one met)."""
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int64)
    q = np.floor(xyz / voxel).astype(np.int64)
    q -= q.min(axis=0)
    dims = q.max(axis=0) + 1
    flat = (q[:, 0] * dims[1] + q[:, 1]) * dims[2] + q[:, 2]
    _, first = np.unique(flat, return_index=True)
    return np.sort(first)


def ref_grid(xyz: np.ndarray, cell: float):
    """Occupied cubes of edge `cell`: (sorted keys (M,), point -> cube index (N,), key strides)."""
    q = np.floor(xyz / cell).astype(np.int64)
    q -= q.min(axis=0) - 1
    d1 = int(q[:, 1].max()) + 2
    d2 = int(q[:, 2].max()) + 2
    key = (q[:, 0] * d1 + q[:, 1]) * d2 + q[:, 2]
    uniq, inv = np.unique(key, return_inverse=True)
    return uniq, inv, (d1, d2)


def ref_neighbour_pairs(uniq: np.ndarray, strides: tuple[int, int], offsets: np.ndarray):
    """(src, dst) indices of occupied cubes that are neighbours by one of `offsets` (K, 3)."""
    d1, d2 = strides
    delta = (offsets[:, 0] * d1 + offsets[:, 1]) * d2 + offsets[:, 2]  # (K,)
    nk = (uniq[None, :] + delta[:, None]).ravel()
    j = np.minimum(np.searchsorted(uniq, nk), len(uniq) - 1)
    hit = uniq[j] == nk
    src = np.tile(np.arange(len(uniq)), len(offsets))[hit]
    return src, j[hit]


def ref_grid_outliers(xyz: np.ndarray, cell: float, std_ratio: float) -> np.ndarray:
    """(N,) bool inlier mask: neighbour counts over the 27 cubes >= mean - std_ratio * std."""
    n = len(xyz)
    if n < 10:
        return np.ones(n, dtype=bool)
    uniq, inv, strides = ref_grid(xyz, cell)
    cnt = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    src, dst = ref_neighbour_pairs(uniq, strides, REF_HALF_NEIGHBOURS)
    hood = cnt + np.bincount(src, weights=cnt[dst], minlength=len(uniq)) \
        + np.bincount(dst, weights=cnt[src], minlength=len(uniq))
    per_point = hood[inv]
    return per_point >= per_point.mean() - std_ratio * per_point.std()


def ref_main_cluster(xyz: np.ndarray, radius: float, dense_max_cells: int = REF_DENSE_MAX_CELLS) -> np.ndarray:
    """(N,) bool mask of the largest 26-connected cluster of cubes of edge `radius`: dense
    ndimage.label for grids up to `dense_max_cells` cells, else a sparse graph."""
    n = len(xyz)
    if n < 3:
        return np.ones(n, dtype=bool)
    q = np.floor(xyz / radius).astype(np.int64)
    q -= q.min(axis=0)
    dims = q.max(axis=0) + 1
    if int(np.prod(dims)) <= dense_max_cells:  # small grid: dense 26-connected labelling
        occ = np.zeros(tuple(dims), dtype=bool)
        occ[q[:, 0], q[:, 1], q[:, 2]] = True
        lab, k = ndimage.label(occ, structure=np.ones((3, 3, 3), dtype=bool))
        pl = lab[q[:, 0], q[:, 1], q[:, 2]]
        return pl == np.argmax(np.bincount(pl, minlength=k + 1)[1:]) + 1
    uniq, inv, strides = ref_grid(xyz, radius)
    m = len(uniq)
    if m == 1:
        return np.ones(n, dtype=bool)
    src, dst = ref_neighbour_pairs(uniq, strides, REF_HALF_NEIGHBOURS)
    g = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(m, m))
    _, lab = connected_components(g, directed=False)
    big = np.argmax(np.bincount(lab, weights=np.bincount(inv, minlength=m)))
    return lab[inv] == big


def ref_clean_points(xyz: np.ndarray, cfg: LiftConfig) -> np.ndarray:
    """(M, 3) voxel-downsampled, outlier-free points of the main cluster."""
    if len(xyz) == 0:
        return xyz
    z = float(np.median(xyz[:, 2]))
    voxel = max(cfg.voxel_min_m, cfg.voxel_rel * z)
    pts = xyz[ref_voxel_downsample(xyz, voxel)]
    if cfg.sor_std is not None:
        pts = pts[ref_grid_outliers(pts, cfg.sor_cell_voxels * voxel, cfg.sor_std)]
    radius = max(cfg.cluster_min_m, cfg.cluster_rel * z, 2.0 * voxel)
    return pts[ref_main_cluster(pts, radius)]


# ---------------------------------------------------------------- comparisons


def assert_same_voxels(xyz, voxel):
    got, ref = cloud.voxel_downsample(xyz, voxel), ref_voxel_downsample(xyz, voxel)
    assert got.dtype == np.int64 and np.array_equal(got, ref)


def assert_same_outliers(xyz, cell, std_ratio):
    got, ref = cloud.grid_outliers(xyz, cell, std_ratio), ref_grid_outliers(xyz, cell, std_ratio)
    assert got.dtype == bool and np.array_equal(got, ref)


def assert_same_cluster(xyz, radius):
    got = cloud.main_cluster(xyz, radius)
    assert got.dtype == bool
    assert np.array_equal(got, ref_main_cluster(xyz, radius, dense_max_cells=0))  # sparse branch
    q = np.floor(xyz / radius).astype(np.int64) if len(xyz) else np.zeros((0, 3), dtype=np.int64)
    if len(xyz) and np.prod(q.max(axis=0) - q.min(axis=0) + 1) <= REF_DENSE_MAX_CELLS:
        assert np.array_equal(got, ref_main_cluster(xyz, radius))  # dense branch


def assert_same_clean(xyz, cfg):
    got, ref = cloud.clean_points(xyz, cfg), ref_clean_points(xyz, cfg)
    assert got.dtype == ref.dtype and got.shape == ref.shape
    assert np.array_equal(got, ref)


CONFIGS = [LiftConfig(), replace(LiftConfig(), sor_std=None), replace(LiftConfig(), sor_std=1.0, voxel_rel=0.02),
           replace(LiftConfig(), voxel_min_m=0.01, cluster_rel=0.01, cluster_min_m=0.01)]


@st.composite
def clouds(draw):
    """(N, 3) float64 or float32 clouds: blobs at several depths, isolated outliers over a
    span of up to 500 m (the reference's sparse branch), optionally snapped to a lattice
    (points exactly on cube boundaries), with duplicated points, in shuffled order."""
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    parts = [np.zeros((0, 3))]
    for _ in range(draw(st.integers(0, 4))):
        n = draw(st.integers(1, 400))
        centre = [rng.uniform(-2, 2), rng.uniform(-1, 1), draw(st.floats(0.3, 30.0))]
        parts.append(rng.normal(centre, draw(st.floats(0.002, 1.0)), size=(n, 3)))
    span = draw(st.sampled_from([3.0, 50.0, 500.0]))
    parts.append(rng.uniform([-span, -span, 0.1], [span, span, span], size=(draw(st.integers(0, 20)), 3)))
    xyz = np.concatenate(parts)
    if draw(st.booleans()):
        step = draw(st.sampled_from([0.001, 0.004, 0.01, 0.024, 0.1]))
        xyz = np.round(xyz / step) * step
    if len(xyz) and draw(st.booleans()):
        xyz = np.concatenate([xyz, xyz[rng.integers(0, len(xyz), size=draw(st.integers(1, 50)))]])
    if draw(st.booleans()):
        xyz = xyz[rng.permutation(len(xyz))]
    return xyz.astype(draw(st.sampled_from([np.float64, np.float32])))


EDGES = st.one_of(st.sampled_from([0.004, 0.01, 0.024, 0.03, 0.072, 0.1, 0.3]), st.floats(0.003, 0.5))
HYP = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@HYP
@given(clouds(), EDGES)
def test_voxel_downsample_matches_reference(xyz, voxel):
    assert_same_voxels(xyz, voxel)


@HYP
@given(clouds(), EDGES, st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0]), st.floats(0.0, 4.0)))
def test_grid_outliers_match_reference(xyz, cell, std_ratio):
    assert_same_outliers(xyz, cell, std_ratio)


@HYP
@given(clouds(), EDGES)
def test_main_cluster_matches_both_reference_branches(xyz, radius):
    assert_same_cluster(xyz, radius)


@HYP
@given(clouds(), st.sampled_from(range(len(CONFIGS))))
def test_clean_points_matches_reference(xyz, i):
    assert_same_clean(xyz, CONFIGS[i])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 10])
@pytest.mark.parametrize("same", [False, True])
def test_tiny_clouds_match_reference(n, dtype, same):
    rng = np.random.default_rng(n)
    xyz = np.repeat(rng.normal([0, 0, 2], 0.05, size=(1, 3)), n, axis=0) if same \
        else rng.normal([0, 0, 2], 0.05, size=(n, 3))
    xyz = xyz.astype(dtype)
    for edge in (0.01, 0.05, 1.0):
        assert_same_voxels(xyz, edge)
        assert_same_outliers(xyz, edge, 1.0)
        assert_same_cluster(xyz, edge)
    for cfg in CONFIGS:
        assert_same_clean(xyz, cfg)
    assert cloud.clean_points(xyz, LiftConfig()).dtype == dtype


def test_float32_cubes_are_numpys_float32_quotients():
    # float32(0.7) / 0.1 is 7.0 in float32 but 6.99999988... in float64: the kernels must bin
    # float32 input as numpy's float32 division did
    xyz = np.array([[0.7, 0.0, 1.0], [0.65, 0.0, 1.0], [0.71, 0.0, 1.0]], dtype=np.float32)
    assert np.floor(np.float64(xyz[0, 0]) / 0.1) == 6.0
    assert np.array_equal(cloud.voxel_downsample(xyz, 0.1), [0, 1])
    assert np.array_equal(cloud.voxel_downsample(xyz.astype(np.float64), 0.1), [0, 2])
    assert_same_voxels(xyz, 0.1)
    assert_same_voxels(xyz.astype(np.float64), 0.1)


@pytest.mark.parametrize("reverse", [False, True])
def test_main_cluster_ties_go_to_the_smallest_cube(reverse):
    # two blobs with the same number of points: both reference branches keep the one whose
    # lowest cube comes first in (x, y, z) order, whatever the point order
    rng = np.random.default_rng(7)
    a = rng.normal([0, 0, 3], 0.02, size=(200, 3))
    b = a + [1.0, -0.5, 0.0]
    xyz = np.r_[b, a] if reverse else np.r_[a, b]
    keep = cloud.main_cluster(xyz, 0.05)
    assert keep.sum() == 200 and np.all(xyz[keep, 0] < 0.5)
    assert_same_cluster(xyz, 0.05)


@pytest.mark.parametrize("dense", [True, False])
def test_main_cluster_keeps_the_largest_blob_like_both_reference_branches(dense):
    rng = np.random.default_rng(3)
    u = rng.uniform(-0.5, 0.5, size=(2000, 2))
    big = np.c_[u, np.full(2000, 3.0)] + rng.normal(0, 0.002, size=(2000, 3))
    u = rng.uniform(-0.5, 0.5, size=(300, 2))
    small = (np.c_[u, np.full(300, 4.0)] + rng.normal(0, 0.002, size=(300, 3))) * [0.3, 0.3, 1.0]
    xyz = np.r_[big, small]
    ref = ref_main_cluster(xyz, 0.1, dense_max_cells=REF_DENSE_MAX_CELLS if dense else 0)
    keep = cloud.main_cluster(xyz, 0.1)
    assert keep[:2000].all() and not keep[2000:].any()
    assert np.array_equal(keep, ref)


def test_reference_dense_and_sparse_branches_agree_with_the_kernel():
    rng = np.random.default_rng(4)
    xyz = np.concatenate([rng.normal(c, 0.1, size=(400, 3)) for c in ([0, 0, 3], [0.35, 0, 3], [2, 1, 5])])
    dense = ref_main_cluster(xyz, 0.08)
    sparse = ref_main_cluster(xyz, 0.08, dense_max_cells=0)
    assert np.array_equal(dense, sparse)
    assert np.array_equal(cloud.main_cluster(xyz, 0.08), dense)


# ---------------------------------------------------------------- object clouds of synthetic scenes


def _scene_clouds(n_scenes: int) -> list[np.ndarray]:
    """The (N, 3) clouds `lift_image` hands to clean_points for every object of `n_scenes`
    noisy synthetic scenes with occlusions (recorded by a spy around the real call)."""
    seen = []

    def spy(xyz, cfg):
        seen.append(np.array(xyz, copy=True))
        return cloud.clean_points(xyz, cfg)

    mp = pytest.MonkeyPatch()
    mp.setattr(core, "clean_points", spy)
    try:
        for seed in range(n_scenes):
            sc = generate_scene(seed, SceneConfig(occlusion=True), NoiseConfig.realistic())
            lift_scene(sc, seed, masks=True)
    finally:
        mp.undo()
    return seen


def test_real_object_clouds_match_reference():
    clouds_ = _scene_clouds(8)
    assert len(clouds_) >= 30 and max(len(c) for c in clouds_) > 500
    for xyz in clouds_:
        for x in (xyz, xyz.astype(np.float32)):
            for cfg in CONFIGS:
                assert_same_clean(x, cfg)
            z = float(np.median(x[:, 2]))
            for edge in (0.004, 0.008 * z, 0.024 * z):
                assert_same_voxels(x, edge)
                assert_same_outliers(x, edge, 3.0)
                assert_same_cluster(x, 3 * edge)
