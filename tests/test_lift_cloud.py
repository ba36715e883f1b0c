"""Point-cloud cleaning (grid outliers, grid clustering, voxels) and the RLE string parser."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import lifting.lift.cloud as cloud
from lifting.lift import LiftConfig
from lifting.masks import _rle_string_to_counts_py, encode_mask, rle_string_to_counts


def _face(rng, n=1500, z=3.0):
    """Points on a 1 m x 1 m fronto-parallel face at depth z, 2 mm noise."""
    u = rng.uniform(-0.5, 0.5, size=(n, 2))
    return np.c_[u, np.full(n, z)] + rng.normal(0, 0.002, size=(n, 3))


def test_voxel_downsample_keeps_one_point_per_occupied_voxel():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 1, size=(5000, 3))
    idx = cloud.voxel_downsample(xyz, 0.1)
    keys = np.floor(xyz / 0.1).astype(int)
    assert len(idx) == len({tuple(k) for k in keys})
    assert len({tuple(k) for k in keys[idx]}) == len(idx)


def test_grid_outliers_drop_isolated_points_and_keep_the_surface():
    rng = np.random.default_rng(1)
    face = _face(rng)
    stray = rng.uniform([-2, -2, 1], [2, 2, 6], size=(30, 3))  # scattered flying points
    keep = cloud.grid_outliers(np.r_[face, stray], cell=0.05, std_ratio=2.0)
    assert keep[:len(face)].mean() > 0.97
    assert keep[len(face):].mean() < 0.2


def test_grid_outliers_agree_with_knn_reference_on_what_is_removed():
    rng = np.random.default_rng(2)
    face = _face(rng)
    stray = rng.uniform([-2, -2, 1], [2, 2, 6], size=(30, 3))
    xyz = np.r_[face, stray]
    grid = cloud.grid_outliers(xyz, cell=0.05, std_ratio=2.0)
    knn = cloud.statistical_outliers(xyz, k=8, std_ratio=2.0)
    assert (grid == knn).mean() > 0.95


def test_main_cluster_keeps_the_largest_blob():
    # one compiled path now; the former dense/sparse branches are the references in
    # test_lift_cloud_kernels.py, checked there on this same cloud
    rng = np.random.default_rng(3)
    big = _face(rng, 2000, z=3.0)
    small = _face(rng, 300, z=4.0) * [0.3, 0.3, 1.0]  # a smaller blob 1 m behind
    keep = cloud.main_cluster(np.r_[big, small], radius=0.1)
    assert keep[:2000].all() and not keep[2000:].any()


def test_clean_points_keeps_an_object_and_drops_a_far_blob():
    rng = np.random.default_rng(5)
    obj = _face(rng, 3000, z=3.0)
    far = _face(rng, 500, z=5.0) * [0.2, 0.2, 1.0]
    out = cloud.clean_points(np.r_[obj, far], LiftConfig())
    assert np.all(out[:, 2] < 3.1) and len(out) > 300


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(st.booleans(), min_size=1, max_size=400), st.integers(1, 40))
def test_vectorised_rle_string_parser_matches_the_scalar_one(bits, width):
    h = max(1, len(bits) // width + (len(bits) % width > 0))
    m = np.zeros(h * width, dtype=np.uint8)
    m[:len(bits)] = bits
    rle = encode_mask(m.reshape(h, width).astype(bool))
    s = rle["counts"]
    assert list(rle_string_to_counts(s)) == list(_rle_string_to_counts_py(s))
