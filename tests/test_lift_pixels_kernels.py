"""The numba pixel kernels of lifting.lift.pixels against the numpy / scipy.ndimage code they
replaced, kept here as the reference: random masks and depths (hypothesis) and the real
objects of synthetic scenes. Masks, counts, fractions and flags must be identical, and so
must points and smoothed depth: the kernels repeat numpy's float32 arithmetic and the
float64 running sum of scipy's uniform filter (scipy 1.17). An older scipy that keeps a
running mean instead rounds differently in the last bit; then those two are compared to
1e-6 relative.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from lifting.camera import make_K, unproject_points
from lifting.lift.config import LiftConfig
from lifting.lift.pixels import (
    adaptive_erode,
    box_slices,
    depth_edges,
    hidden_edges,
    main_components,
    masked_smooth,
    object_points,
    relative_noise,
    valid_and_edges,
    valid_depth,
)
from lifting.synthetic import NoiseConfig, SceneConfig, generate_scene

# the reference computes on whole crops, NaN / inf included, before selecting the mask
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")

def _scipy_box_filter_is_running_sum() -> bool:
    """Whether scipy's uniform_filter1d divides a float64 running sum per pixel (what the
    kernel does) rather than updating a running mean (older scipy): the mean leaves a
    rounding residue of ~1e-17 once the window has passed the data, the sum returns to 0."""
    x = np.array([0.1, 0.7, 0.3, 0, 0, 0, 0], dtype=np.float32)
    return bool(ndimage.uniform_filter1d(x, 5, mode="constant")[-1] == 0.0)


SMOOTH_BIT_EXACT = _scipy_box_filter_is_running_sum()

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- reference (numpy)

_EIGHT = np.ones((3, 3), dtype=bool)


def ref_valid_depth(depth, cfg):
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth) & (depth >= cfg.min_depth_m) & (depth <= cfg.max_depth_m)


def ref_depth_edges(depth, valid, rel):
    z = np.where(valid, depth, np.nan).astype(np.float32)
    edge = np.zeros(z.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        jx = np.abs(z[:, 1:] - z[:, :-1]) > rel * np.fmin(z[:, 1:], z[:, :-1])
        jy = np.abs(z[1:, :] - z[:-1, :]) > rel * np.fmin(z[1:, :], z[:-1, :])
    edge[:, 1:] |= jx
    edge[:, :-1] |= jx
    edge[1:, :] |= jy
    edge[:-1, :] |= jy
    return edge


def ref_adaptive_erode(mask, cfg):
    area = int(mask.sum())
    if area == 0:
        return mask
    r = min(cfg.erode_max_px, int(round(cfg.erode_frac * math.sqrt(area))))
    while r > 0:
        k = 2 * r + 1
        er = ndimage.binary_erosion(mask, structure=np.ones((k, k), dtype=bool))
        if er.sum() >= cfg.erode_keep_frac * area:
            return er
        r -= 1
    return mask


def ref_main_components(mask, depth, cfg):
    lab, n = ndimage.label(mask, structure=_EIGHT)
    if n <= 1:
        return mask
    flat = lab.ravel()
    counts = np.bincount(flat, minlength=n + 1)
    counts[0] = 0
    main = int(np.argmax(counts))
    med = (np.bincount(flat, weights=depth.ravel().astype(np.float64), minlength=n + 1)[1:]
           / np.maximum(counts[1:], 1))
    zm = med[main - 1]
    keep = np.zeros(n + 1, dtype=bool)
    keep[1:] = (np.abs(med - zm) <= cfg.component_merge_rel * zm) & (counts[1:] >= 0.05 * counts[main])
    keep[main] = True
    return keep[lab]


def ref_masked_smooth(depth, mask, size):
    if size <= 1:
        return depth
    m = mask.astype(np.float32)
    num = ndimage.uniform_filter(np.where(mask, depth, 0).astype(np.float32), size, mode="constant")
    den = ndimage.uniform_filter(m, size, mode="constant")
    return np.where(den > 0, num / np.maximum(den, 1e-6), depth).astype(np.float32)


def ref_relative_noise(depth, mask):
    if mask.shape[1] < 3:
        return 0.0
    ok = mask[:, :-2] & mask[:, 1:-1] & mask[:, 2:]
    if ok.sum() < 20:
        return 0.0
    z = depth.astype(np.float32)
    d2 = (z[:, :-2] - 2 * z[:, 1:-1] + z[:, 2:])[ok] / np.maximum(z[:, 1:-1][ok], 1e-6)
    return float(1.4826 * np.median(np.abs(d2)) / np.sqrt(6.0))


def _step(s):
    return s.step or 1


def ref_object_pixels(mask, sl, depth, valid, edges, cfg):
    m = mask[sl]
    n_mask = int(m.sum())
    if n_mask == 0:
        return None, 0.0, 0.0
    good = m & valid[sl]
    valid_frac = float(good.sum()) / n_mask
    with np.errstate(invalid="ignore"):
        measured_frac = float((m & np.isfinite(depth[sl]) & (depth[sl] > 0)).sum()) / n_mask
    good &= ~edges[sl]
    good = ref_adaptive_erode(good, cfg)
    if good.any():
        good = ref_main_components(good, depth[sl], cfg)
    return good, valid_frac, measured_frac


def ref_points(pix, sl, depth, K, cfg):
    zc = depth[sl]
    if cfg.smooth_px > 1 and ref_relative_noise(zc, pix) > cfg.smooth_min_noise:
        zc = ref_masked_smooth(zc, pix, cfg.smooth_px)
    rows, cols = np.nonzero(pix)
    zs = zc[rows, cols]
    if len(rows) > cfg.max_points:
        step = int(np.ceil(len(rows) / cfg.max_points))
        rows, cols, zs = rows[::step], cols[::step], zs[::step]
    rows = rows * _step(sl[0]) + sl[0].start
    cols = cols * _step(sl[1]) + sl[1].start
    uv = np.stack([cols, rows], axis=1).astype(np.float32)
    return unproject_points(uv, zs, K).astype(np.float64)


def ref_bottom_hidden(pix, sl, depth, valid, gap_px=3, frac=0.3):
    H = depth.shape[0]
    cols = np.flatnonzero(pix.any(axis=0))
    if len(cols) == 0:
        return False
    h = pix.shape[0]
    last = (h - 1 - np.argmax(pix[::-1, cols], axis=0)) * _step(sl[0]) + sl[0].start
    c = cols * _step(sl[1]) + sl[1].start
    below = last + gap_px
    cut = below >= H
    b = np.minimum(below, H - 1)
    z_obj = depth[last, c]
    occl = valid[b, c] & (depth[b, c] < 0.95 * z_obj)
    return bool((cut | occl).mean() >= frac)


def ref_sides_hidden(pix, sl, depth, valid, gap_px=3, frac=0.3):
    W = depth.shape[1]
    rows = np.flatnonzero(pix.any(axis=1))
    if len(rows) == 0:
        return False, False
    sub = pix[rows]
    r = rows * _step(sl[0]) + sl[0].start
    first = np.argmax(sub, axis=1) * _step(sl[1]) + sl[1].start
    last = (sub.shape[1] - 1 - np.argmax(sub[:, ::-1], axis=1)) * _step(sl[1]) + sl[1].start
    out = []
    for edge, step in ((first, -gap_px), (last, gap_px)):
        nb = edge + step
        cut = (nb < 0) | (nb >= W)
        nbc = np.clip(nb, 0, W - 1)
        occl = valid[r, nbc] & (depth[r, nbc] < 0.95 * depth[r, edge])
        out.append(bool((cut | occl).mean() >= frac))
    return out[0], out[1]


# --------------------------------------------------------------------------- comparison helpers


def assert_same_depth(got, ref):
    """Equal to the bit (NaN equal to NaN), or to 1e-6 relative with an older scipy."""
    if SMOOTH_BIT_EXACT:
        np.testing.assert_array_equal(got, ref)
    else:
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)


def assert_same_points(xyz, ref):
    assert xyz.shape == ref.shape and xyz.dtype == np.float64
    assert_same_depth(xyz, ref)


def check_object(mask, sl, depth, valid, edges, K, cfg):
    """object_points + hidden_edges on crop `sl` == the reference, for one object."""
    pix_r, vf_r, mf_r = ref_object_pixels(mask, sl, depth, valid, edges, cfg)
    pix, vf, mf, xyz = object_points(mask[sl], depth[sl], valid[sl], edges[sl], sl[0].start, sl[1].start,
                                     _step(sl[0]), _step(sl[1]), K, cfg)
    assert (vf, mf) == (vf_r, mf_r)
    if pix_r is None:
        assert pix is None and xyz.shape == (0, 3)
        return None
    assert pix.dtype == bool and pix.shape == pix_r.shape
    np.testing.assert_array_equal(pix, pix_r)
    assert_same_points(xyz, ref_points(pix_r, sl, depth, K, cfg))
    ref_hidden = (ref_bottom_hidden(pix_r, sl, depth, valid), *ref_sides_hidden(pix_r, sl, depth, valid))
    assert hidden_edges(pix, sl[0].start, sl[1].start, _step(sl[0]), _step(sl[1]), depth, valid) == ref_hidden
    return pix


# --------------------------------------------------------------------------- random inputs


def random_scene(rng, H, W, n_blobs, hole_frac, noise_rel, thin):
    """(mask (H, W) bool, depth (H, W) float32): blobs at different depths over a background,
    depth noise, NaN / 0 / out-of-range holes; `thin` adds one-pixel lines."""
    depth = np.full((H, W), rng.uniform(3.0, 8.0), dtype=np.float64)
    mask = np.zeros((H, W), dtype=bool)
    yy, xx = np.mgrid[0:H, 0:W]
    for _ in range(n_blobs):
        cy, cx = rng.uniform(-2, H + 2), rng.uniform(-2, W + 2)
        ry, rx = rng.uniform(1, H / 2 + 2), rng.uniform(1, W / 2 + 2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
        if rng.random() < 0.5:  # a rectangle instead
            inside = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        z = rng.choice([rng.uniform(0.5, 3.0), rng.uniform(3.0, 6.0)])
        depth[inside] = z + 0.05 * (xx[inside] - cx) / W  # a slanted plane
        mask |= inside
        if rng.random() < 0.3:  # a hole in it
            mask &= ~(((yy - cy) / (ry / 2.5)) ** 2 + ((xx - cx) / (rx / 2.5)) ** 2 <= 1.0)
    if thin:
        mask[rng.integers(0, H), :] = True
        mask[:, rng.integers(0, W)] = True
    depth *= 1.0 + noise_rel * rng.standard_normal((H, W))
    holes = rng.random((H, W)) < hole_frac
    kinds = rng.integers(0, 4, size=(H, W))
    depth[holes & (kinds == 0)] = np.nan
    depth[holes & (kinds == 1)] = 0.0
    depth[holes & (kinds == 2)] = 500.0  # measured, out of range
    depth[holes & (kinds == 3)] = np.inf
    if rng.random() < 0.05:
        mask[:] = False
    return mask, depth.astype(np.float32)


def random_crop(rng, mask, rstep, cstep):
    """Mostly the mask's bounding box with a random margin (as the lifting core crops), else
    any crop of the image; strided by (rstep, cstep)."""
    H, W = mask.shape
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) and rng.random() < 0.7:
        y0, y1 = max(0, rows[0] - int(rng.integers(0, 4))), min(H, rows[-1] + 1 + int(rng.integers(0, 4)))
        x0, x1 = max(0, cols[0] - int(rng.integers(0, 4))), min(W, cols[-1] + 1 + int(rng.integers(0, 4)))
    else:
        y0, x0 = int(rng.integers(0, H)), int(rng.integers(0, W))
        y1, x1 = int(rng.integers(y0 + 1, H + 1)), int(rng.integers(x0 + 1, W + 1))
    return slice(int(y0), int(y1), rstep), slice(int(x0), int(x1), cstep)


config_strategy = st.builds(
    LiftConfig,
    erode_frac=st.sampled_from([0.01, 0.1, 0.3, 0.6]),
    erode_max_px=st.integers(0, 3),
    erode_keep_frac=st.sampled_from([0.0, 0.4, 0.8]),
    component_merge_rel=st.sampled_from([0.0, 0.08, 0.5]),
    smooth_px=st.sampled_from([0, 1, 2, 3, 4, 5, 6]),
    smooth_min_noise=st.sampled_from([0.0, 0.002, 1.0]),
    max_points=st.sampled_from([1, 7, 50, 3000]),
    depth_edge_rel=st.sampled_from([0.01, 0.04, 0.5]),
)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), H=st.integers(1, 64), W=st.integers(1, 64), n_blobs=st.integers(0, 5),
       hole_frac=st.sampled_from([0.0, 0.02, 0.2]), noise_rel=st.sampled_from([0.0, 0.001, 0.01, 0.05]),
       thin=st.booleans(), rstep=st.integers(1, 3), cstep=st.integers(1, 3), cfg=config_strategy)
def test_object_points_matches_reference(seed, H, W, n_blobs, hole_frac, noise_rel, thin, rstep, cstep, cfg):
    rng = np.random.default_rng(seed)
    mask, depth = random_scene(rng, H, W, n_blobs, hole_frac, noise_rel, thin)
    valid, edges = ref_valid_depth(depth, cfg), ref_depth_edges(depth, ref_valid_depth(depth, cfg), cfg.depth_edge_rel)
    sl = random_crop(rng, mask, rstep, cstep)
    K = make_K(rng.uniform(50, 500), rng.uniform(50, 500), rng.uniform(-5, W + 5), rng.uniform(-5, H + 5))
    check_object(mask, sl, depth, valid, edges, K, cfg)


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), H=st.integers(1, 40), W=st.integers(1, 40),
       hole_frac=st.sampled_from([0.0, 0.05, 0.3]), rel=st.sampled_from([0.0, 0.04, 0.3]),
       lo=st.sampled_from([0.1, 0.7, 2.0]), hi=st.sampled_from([0.7, 6.0, 100.0, math.inf]),
       f64=st.booleans())
def test_valid_and_edges_match_reference(seed, H, W, hole_frac, rel, lo, hi, f64):
    rng = np.random.default_rng(seed)
    _, depth = random_scene(rng, H, W, 3, hole_frac, 0.02, False)
    depth[rng.random((H, W)) < 0.05] = -1.0
    depth[rng.random((H, W)) < 0.05] = np.float32(0.7)  # exactly on a float32-rounded threshold
    if f64:
        depth = depth.astype(np.float64) * (1 + 1e-9)
    cfg = LiftConfig(min_depth_m=lo, max_depth_m=hi, depth_edge_rel=rel)
    valid, edges = valid_and_edges(depth, cfg)
    valid_r = ref_valid_depth(depth, cfg)
    np.testing.assert_array_equal(valid, valid_r)
    np.testing.assert_array_equal(valid_depth(depth, cfg), valid_r)
    np.testing.assert_array_equal(edges, ref_depth_edges(depth, valid_r, rel))
    other = rng.random((H, W)) < 0.7  # depth_edges with a validity of the caller's
    np.testing.assert_array_equal(depth_edges(depth, other, rel), ref_depth_edges(depth, other, rel))
    np.testing.assert_array_equal(depth_edges(depth[::2, ::-1], other[::2, ::-1], rel),
                                  ref_depth_edges(depth[::2, ::-1], other[::2, ::-1], rel))


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), H=st.integers(1, 40), W=st.integers(1, 40), density=st.floats(0.0, 1.0),
       cfg=config_strategy)
def test_single_steps_match_reference(seed, H, W, density, cfg):
    rng = np.random.default_rng(seed)
    mask, depth = random_scene(rng, H, W, 4, 0.0, 0.01, rng.random() < 0.3)
    mask &= rng.random((H, W)) < density + 0.3  # speckle: many small components, ties in size
    np.testing.assert_array_equal(adaptive_erode(mask, cfg), ref_adaptive_erode(mask, cfg))
    np.testing.assert_array_equal(main_components(mask, depth, cfg), ref_main_components(mask, depth, cfg))
    assert relative_noise(depth, mask) == ref_relative_noise(depth, mask)
    for size in (2, 3, 4, 5, 7):
        got, ref = masked_smooth(depth, mask, size), ref_masked_smooth(depth, mask, size)
        assert got.dtype == np.float32 and got.shape == ref.shape
        if SMOOTH_BIT_EXACT:  # everywhere, also outside the mask
            np.testing.assert_array_equal(got, ref)
        else:
            assert_same_depth(got[mask], ref[mask])


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), H=st.integers(1, 30), W=st.integers(1, 30), rstep=st.integers(1, 3),
       cstep=st.integers(1, 3), gap=st.integers(0, 4), frac=st.sampled_from([0.0, 0.3, 1.0]))
def test_hidden_edges_matches_reference(seed, H, W, rstep, cstep, gap, frac):
    rng = np.random.default_rng(seed)
    mask, depth = random_scene(rng, H, W, 3, 0.1, 0.02, False)
    valid = ref_valid_depth(depth, LiftConfig())
    y0, x0 = int(rng.integers(0, H)), int(rng.integers(0, W))
    sl = (slice(y0, H, rstep), slice(x0, W, cstep))
    pix = mask[sl] & (rng.random(mask[sl].shape) < 0.8)
    ref = (ref_bottom_hidden(pix, sl, depth, valid, gap, frac), *ref_sides_hidden(pix, sl, depth, valid, gap, frac))
    assert hidden_edges(pix, y0, x0, rstep, cstep, depth, valid, gap, frac) == ref


@SETTINGS
@given(seed=st.integers(0, 2**32 - 1), h=st.integers(1, 30), w=st.integers(1, 30), levels=st.integers(1, 6),
       nan=st.booleans())
def test_relative_noise_matches_numpy_median(seed, h, w, levels, nan):
    """Quantised depths give many equal second differences (ties at the median), odd and
    even counts; a NaN inside the mask propagates like np.median."""
    rng = np.random.default_rng(seed)
    depth = (2.0 + rng.integers(0, levels, size=(h, w)) * 0.01).astype(np.float32)
    if nan:
        depth[rng.integers(0, h), rng.integers(0, w)] = np.nan
    mask = rng.random((h, w)) < 0.9
    got, ref = relative_noise(depth, mask), ref_relative_noise(depth, mask)
    assert got == ref or (math.isnan(got) and math.isnan(ref))


def test_label_order_ties_go_to_the_first_component():
    """Two equal-size components: the one whose first pixel comes first in raster order is
    the main one, even when the other one's pixels come first in column order."""
    m = np.zeros((6, 8), dtype=bool)
    m[0, 5:8] = m[1, 5] = True  # 4 pixels, first in raster order, far
    m[2:4, 0:2] = True  # 4 pixels, near
    d = np.where(m, 1.0, 0.0).astype(np.float32)
    d[:2] = 5.0
    cfg = LiftConfig()
    np.testing.assert_array_equal(main_components(m, d, cfg), ref_main_components(m, d, cfg))
    assert main_components(m, d, cfg)[0, 5] and not main_components(m, d, cfg)[2, 0]


def test_u_shape_merges_late_into_one_component():
    """A U joins at its bottom: union-find must merge labels seen first as separate."""
    m = np.zeros((7, 9), dtype=bool)
    m[0:6, 1] = m[0:6, 7] = m[6, 1:8] = True
    m[0, 4] = True  # a separate dot at a different depth
    d = np.where(m, 2.0, 0.0).astype(np.float32)
    d[0, 4] = 9.0
    cfg = LiftConfig()
    out = main_components(m, d, cfg)
    np.testing.assert_array_equal(out, ref_main_components(m, d, cfg))
    assert out[0, 1] and out[0, 7] and not out[0, 4]


def test_empty_and_all_invalid_objects():
    cfg = LiftConfig()
    K = make_K(300.0, 300.0, 20.0, 15.0)
    depth = np.full((30, 40), np.nan, dtype=np.float32)
    valid, edges = valid_and_edges(depth, cfg)
    mask = np.zeros((30, 40), dtype=bool)
    pix, vf, mf, xyz = object_points(mask, depth, valid, edges, 0, 0, 1, 1, K, cfg)
    assert pix is None and (vf, mf) == (0.0, 0.0) and xyz.shape == (0, 3)
    mask[5:20, 5:25] = True
    pix, vf, mf, xyz = object_points(mask, depth, valid, edges, 0, 0, 1, 1, K, cfg)
    assert pix is not None and not pix.any() and (vf, mf) == (0.0, 0.0) and xyz.shape == (0, 3)
    assert hidden_edges(pix, 0, 0, 1, 1, depth, valid) == (False, False, False)


# --------------------------------------------------------------------------- synthetic scenes


def object_crop(mask, bbox, shape, cfg):
    """The strided crop `lifting.lift.core._lift_object` works on."""
    H, W = shape
    sl = box_slices(bbox, (H, W))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y0, y1 = min(sl[0].start, rows[0]), max(sl[0].stop, rows[-1] + 1)
    x0, x1 = min(sl[1].start, cols[0]), max(sl[1].stop, cols[-1] + 1)
    step = max(1, int(np.ceil(np.sqrt((y1 - y0) * (x1 - x0) / cfg.max_crop_pixels))))
    return slice(y0, y1, step), slice(x0, x1, step)


@lru_cache(maxsize=None)
def scene(seed: int):
    return generate_scene(seed, SceneConfig(n_objects=(4, 8), occlusion=True), NoiseConfig.realistic())


@pytest.mark.parametrize("seed", range(6))
def test_synthetic_scene_objects_match_reference(seed):
    sc = scene(seed)
    cfg = LiftConfig()
    depth = sc.depth_noisy.astype(np.float32)
    K = np.asarray(sc.K, dtype=np.float64)
    valid, edges = valid_and_edges(depth, cfg)
    valid_r = ref_valid_depth(depth, cfg)
    np.testing.assert_array_equal(valid, valid_r)
    np.testing.assert_array_equal(edges, ref_depth_edges(depth, valid_r, cfg.depth_edge_rel))
    n_points = 0
    for ob in sc.objects:
        if not ob.visible_pixels:
            continue
        mask = sc.mask(ob.instance_id)
        for c in (cfg, LiftConfig(smooth_min_noise=0.0, max_points=500)):  # smoothing and subsampling forced
            pix = check_object(mask, object_crop(mask, ob.bbox_xyxy, depth.shape, c), depth, valid, edges, K, c)
            n_points += 0 if pix is None else int(pix.sum())
    assert n_points > 1000
