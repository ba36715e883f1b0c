"""lifting/pointmap.py: the release's sizes, no upsampling, .npz bytes numpy reads back."""
from __future__ import annotations

import numpy as np
import pytest

from lifting.camera import make_K
from lifting.pointmap import map_size, npz_bytes, point_map, read_npz


def test_sizes_follow_the_release():
    assert map_size(1024, 683) == (640, 427)  # the release's demo: 1024x683 image, 640x427 map
    assert map_size(683, 1024) == (427, 640)
    assert map_size(640, 480) == (640, 480) and map_size(320, 240) == (320, 240)  # never upsampled
    assert map_size(1024, 683, None) == (1024, 683)


@pytest.mark.parametrize("compress", [False, True])
def test_full_size_map_is_the_back_projection_and_round_trips_through_npz(compress):
    H, W = 48, 64
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.5, 9.0, (H, W)).astype(np.float32)
    depth[rng.random((H, W)) < 0.1] = 0.0
    depth[0, 0] = np.nan
    K = make_K(70.0, 72.0, 31.2, 24.9)
    pcd, intr = point_map(depth, K, None)
    raw = npz_bytes(pcd, intr, compress=compress)
    pcd2, intr2 = read_npz(raw)
    assert np.array_equal(pcd2, pcd) and np.array_equal(intr2, intr)
    with np.load(__import__("io").BytesIO(raw)) as z:  # a plain numpy .npz
        assert sorted(z.files) == ["intr", "pcd"]
    valid = np.isfinite(depth) & (depth > 0)
    assert np.array_equal(pcd[..., 3] == 1, valid)
    jj, ii = np.meshgrid(np.arange(W), np.arange(H))
    want = np.stack([-(jj - K[0, 2]) / K[0, 0] * depth, -(ii - K[1, 2]) / K[1, 1] * depth, depth], -1)
    got = pcd[..., :3].astype(np.float64)
    assert np.all(np.abs(got - want)[valid] <= 2.0 ** -10 * np.abs(want[valid]) + 1e-6)
    assert np.all(got[~valid] == 0)
    np.testing.assert_allclose(intr, [[70 / W, 0, 31.2 / W], [0, 72 / H, 24.9 / H], [0, 0, 1]], rtol=1e-6)


def test_bad_depth_shape_is_refused():
    with pytest.raises(ValueError, match="depth must be"):
        point_map(np.zeros((4, 4, 1)), make_K(1, 1, 0, 0))


def test_float16_conversion_is_numpys_bit_for_bit():
    from lifting.pointmap import to_float16

    rng = np.random.default_rng(1)
    a = np.concatenate([rng.normal(0, 50, 10000), [65504.0, 65520.0, 1e-8, -0.0, 0.0, 2.0 ** -24, 1 / 3]]).astype(np.float32)
    assert np.array_equal(to_float16(a).view(np.uint16), a.astype(np.float16).view(np.uint16))
